//! The stage script on a test host with a real container engine (podman's Docker API): the
//! container is hardened, eth1 (a veth standing for the second ENI) is handed to it with the
//! POS address, the artifact's checksum is checked before anything is installed.

mod common;
use common::host::TestHost;
use poscloud::remote::{no_sink, Inputs, Outcome, Script};
use std::time::Duration;

fn stage(h: &TestHost, container: &str, url: &str, sha: &str) -> Outcome {
    let inputs = Inputs::new()
        .set("SHOP", "12345678")
        .unwrap()
        .set("APP", "rti")
        .unwrap()
        .set("MOUNT_POINT", "/usr2")
        .unwrap()
        .set("HEALTH_CMD", "test -f /opt/pos/.installed")
        .unwrap()
        .set("IMAGE", "poscloud/base:test")
        .unwrap()
        .set("CONTAINER", container)
        .unwrap()
        .set("POS_IP", "192.168.222.233")
        .unwrap()
        .set("PREFIX", "24")
        .unwrap()
        .set("GATEWAY", "192.168.222.1")
        .unwrap()
        .set("DATA_DIR", "/var/lib/poscloud/data/rti")
        .unwrap()
        .set("ARTIFACT_URL", url)
        .unwrap()
        .set("ARTIFACT_SHA256", sha)
        .unwrap()
        .set("MEMORY", "256m")
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        h.remote()
            .run(&Script::Pos, &inputs, Duration::from_secs(300), no_sink()),
    )
    .unwrap()
}

fn docker(h: &TestHost, args: &[&str]) -> String {
    h.docker(args).1
}

#[test]
fn stage_hands_eth1_to_a_hardened_container_and_installs_a_verified_artifact() {
    let h = TestHost::up("stg1", 42, true);
    let (url, sha) = h.pos_artifact("echo installed >/opt/pos/app/installed-by-test\n");
    assert!(
        h.pos_silent(),
        "nothing answers on the POS address before stage"
    );

    // A wrong checksum: refused before any container or install exists.
    let bad = stage(&h, "pos", &url, &"0".repeat(64));
    assert_eq!(bad.exit_code, 3, "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checksum mismatch"));
    assert_eq!(docker(&h, &["ps", "-aq"]), "", "no container was created");

    let out = stage(&h, "pos", &url, &sha);
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let result = out.result().expect("result line");
    assert_eq!(result["pos_ip"], "192.168.222.233");
    assert!(h.pos_answers(), "the POS address answers through eth1");
    assert_eq!(
        docker(
            &h,
            &["exec", "pos", "cat", "/opt/pos/app/installed-by-test"]
        ),
        "installed"
    );
    assert_eq!(
        docker(
            &h,
            &["exec", "pos", "ip", "-4", "-o", "addr", "show", "eth1"]
        )
        .split_whitespace()
        .nth(3),
        Some("192.168.222.233/24")
    );

    // Hardened run options, read back from the engine.
    let hc = docker(&h, &["inspect", "-f", "{{.HostConfig.Privileged}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}}", "pos"]);
    assert!(hc.starts_with("false "), "{hc}");
    assert!(hc.contains("no-new-privileges"), "{hc}");
    assert!(
        hc.contains("unless-stopped")
            && hc.contains(" 1024 ")
            && hc.ends_with(&(256 * 1024 * 1024).to_string()),
        "{hc}"
    );
    let caps = docker(&h, &["inspect", "-f", "{{.HostConfig.CapAdd}}", "pos"]);
    assert!(
        !caps.to_uppercase().contains("SYS_ADMIN") && !caps.to_uppercase().contains("NET_ADMIN"),
        "{caps}"
    );

    // The data directory is the host's, mounted at /usr2.
    docker(
        &h,
        &["exec", "pos", "sh", "-c", "echo order-1 > /usr2/orders.txt"],
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("var/lib/poscloud/data/rti/orders.txt")).unwrap(),
        "order-1\n"
    );

    // Again: nothing replaced or reinstalled, eth1 still in place, data kept.
    let id = docker(&h, &["inspect", "-f", "{{.Id}}", "pos"]);
    let again = stage(&h, "pos", &url, &sha);
    assert_eq!(
        again.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(again.stdout_text().contains("already installed"));
    assert_eq!(docker(&h, &["inspect", "-f", "{{.Id}}", "pos"]), id);
    assert!(h.pos_answers());
    assert!(h.root.join("var/lib/poscloud/data/rti/orders.txt").exists());
    assert!(h.root.join("var/lib/poscloud/phases/stage.done").exists());
}

/// A third POS app is a file: `apps/sap.toml` beside the stack file, written here and known
/// to no code, is built, staged and checked with its own values (kickstart, mount point,
/// health command); an app that exists nowhere is refused before anything runs.
#[test]
fn an_app_defined_only_by_a_file_beside_the_stack_is_staged() {
    let rig = common::Rig::new();
    let h = TestHost::up_root("app1", 6, true);
    let dir = rig.home.path().join("shop");
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::copy(
        common::repo().join("tests/fixtures/media-test.ks"),
        dir.join("apps/sap.ks"),
    )
    .unwrap();
    std::fs::write(
        dir.join("apps/sap.toml"),
        r#"description = "A third POS application"
kickstart = "sap.ks"
mount_point = "/sapdata"
health_check = "test -f /opt/pos/.installed && test -d /sapdata"
services = ["sapd"]
[cutover]
data_dir = "/opt/sap"
"#,
    )
    .unwrap();
    let (url, sum) = h.pos_artifact("echo sap >/opt/pos/app/which\n");
    let base = std::fs::read_to_string(common::repo().join("stacks/qa.toml")).unwrap();
    let stack = dir.join("edge.toml");
    let pos = format!(
        "\n[pos]\napp = \"sap\"\nversion = \"1.0\"\nartifact_url = \"{url}\"\nartifact_sha256 = \"{sum}\"\nmemory = \"256m\"\n"
    );
    std::fs::write(&stack, base.clone() + &pos).unwrap();
    let target = format!("ssh://{}", h.ssh_address());
    let key = h.client_key.to_string_lossy().into_owned();
    let hk = h.host_key_pub.to_string_lossy().into_owned();
    let run = |stack: &std::path::Path, extra: &[&str]| {
        let stack = stack.to_string_lossy().into_owned();
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(extra);
        a.extend(["--shop", "82000006", "--env", "qa", "--stack", &stack]);
        a.extend([
            "--target",
            &target,
            "--ssh-key",
            &key,
            "--host-key-file",
            &hk,
        ]);
        rig.run(&a)
    };

    // An app nobody defined: exit 2, the known ones listed, nothing run on the host.
    let other = dir.join("other.toml");
    std::fs::write(&other, base + &pos.replace("\"sap\"", "\"nosuch\"")).unwrap();
    let bad = run(&other, &["provision"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    for want in [
        "pos.app",
        "\"nosuch\"",
        "rti, daisy, sap",
        "apps/nosuch.toml",
    ] {
        assert!(bad.stderr.contains(want), "{want}: {}", bad.stderr);
    }
    let bad = run(
        &stack,
        &[
            "pos",
            "restore",
            "--from",
            "file:///srv/b/",
            "--app",
            "nosuch",
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("rti, daisy, sap"), "{}", bad.stderr);
    assert!(
        !h.root.join("var/lib/poscloud/phases").exists(),
        "nothing ran on the host"
    );

    let out = run(&stack, &["provision"]).ok().json();
    let phases = &out["phases"];
    assert_eq!(phases["build"]["result"]["source"], "built", "{phases}");
    let image = phases["build"]["result"]["image"].as_str().unwrap();
    assert!(image.starts_with("poscloud/sap:1.0-"), "{image}");
    let stage = &phases["stage"]["result"];
    assert_eq!(stage["mount"], "/sapdata", "{stage}");
    assert_eq!(stage["data_dir"], "/var/lib/poscloud/data/sap", "{stage}");
    assert_eq!(
        phases["ready"]["result"]["health_cmd"],
        "test -f /opt/pos/.installed && test -d /sapdata"
    );
    assert_eq!(
        docker(
            &h,
            &[
                "inspect",
                "-f",
                "{{index .Config.Labels \"poscloud.app\"}}",
                "pos"
            ]
        ),
        "sap"
    );
    // The host's data directory is the app's, mounted where its file says.
    docker(&h, &["exec", "pos", "sh", "-c", "echo 1 > /sapdata/orders"]);
    assert_eq!(
        std::fs::read_to_string(h.root.join("var/lib/poscloud/data/sap/orders")).unwrap(),
        "1\n"
    );
    assert!(h.pos_answers(), "the POS answers on its address");
}
