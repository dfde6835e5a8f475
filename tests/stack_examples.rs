//! The example stacks (stacks/examples/*.toml) an engineer copies for a real shop: each
//! parses and validates with a [pos] section for its app, renders the host's user-data with
//! no AWS call, and the runbooks point to them. No AWS.

use poscloud::spec::{Env, StackId, StackSpec};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("stacks/examples"))
        .expect("stacks/examples/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn there_is_an_example_for_rti_and_for_daisy() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["daisy.toml", "rti.toml"]);
}

#[test]
fn every_example_validates_with_a_pos_for_its_app() {
    for file in examples() {
        let app = file.file_stem().unwrap().to_string_lossy().into_owned();
        for env in [Env::Prod, Env::Qa] {
            let id = StackId {
                shop: "12345678".parse().unwrap(),
                env,
            };
            let spec = StackSpec::load(id, Some(file.to_str().unwrap()), None)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let pos = spec
                .pos
                .as_ref()
                .unwrap_or_else(|| panic!("{}: no [pos]", file.display()));
            assert_eq!(pos.app.name, app, "{}", file.display());
            // Media built from the app's own kickstart (the build phase runs).
            let media = pos.media.as_ref().expect("a version: media are built");
            assert_eq!(
                media.kickstart_source,
                format!("bootstrap/kickstart/{app}.ks")
            );
            assert!(pos.artifact_url.starts_with("https://"));
            // The cutover settings are the app's (data where its media mount it).
            let cut = spec.cutover.for_app(&pos.app);
            let data = if app == "daisy" { "/d" } else { "/usr2" };
            assert_eq!(cut.data_dir, data, "{}", file.display());
            assert!(cut.stop.contains(&app) && cut.start.contains(&app));
            assert!(spec.termination_protection, "an example for a real shop");
        }
    }
}

#[test]
fn every_example_renders_user_data_with_no_aws_call() {
    for file in examples() {
        let home = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_poscloud"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            // No AWS: an endpoint that refuses any call would make it fail.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .args([
                "userdata",
                "--shop",
                "12345678",
                "--env",
                "prod",
                "--region",
                "us-east-1",
            ])
            .arg("--stack")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", file.display());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("#cloud-config"), "{}", file.display());
    }
}

/// A changed key in an example is refused with the key named: the test above is not
/// passing on files that are never really read.
#[test]
fn a_broken_copy_of_an_example_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("stacks/examples/rti.toml")).unwrap();
    let broken = dir.path().join("shop.toml");
    std::fs::write(&broken, text.replace("app = \"rti\"", "app = \"rtii\"")).unwrap();
    let id = StackId {
        shop: "12345678".parse().unwrap(),
        env: Env::Prod,
    };
    let e = StackSpec::load(id, Some(broken.to_str().unwrap()), None).unwrap_err();
    assert!(e.to_string().contains("pos.app"), "{e}");
}

#[test]
fn the_runbooks_say_when_an_example_is_needed() {
    let provision = std::fs::read_to_string(repo().join("docs/runbooks/provision.md")).unwrap();
    for want in [
        "stacks/examples/rti.toml",
        "stacks/examples/daisy.toml",
        "[pos]",
    ] {
        assert!(
            provision.contains(want),
            "docs/runbooks/provision.md does not mention {want}"
        );
    }
    let check = std::fs::read_to_string(repo().join("scripts/check-userdata.sh")).unwrap();
    assert!(check.contains("stacks/examples/*.toml"));
}
