//! `poscloud host connect`: finds the stack's instance in the emulator and hands over to
//! `aws ssm start-session` (a stand-in `aws` first on PATH records its arguments and exits
//! with a code of its own, which must come back as poscloud's: the session replaced
//! poscloud). Missing tools are named before any AWS call. Needs no test host.

mod common;
use common::{Rig, REGION};
use std::path::{Path, PathBuf};

const SHOP: &str = "31415926";

/// A directory with stand-ins: `aws` records its argv (one per line) in `record` and exits 7;
/// `session-manager-plugin` when `plugin`.
fn standins(dir: &Path, record: &Path, aws: bool, plugin: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join(format!("bin-{aws}-{plugin}"));
    std::fs::create_dir_all(&bin).unwrap();
    let mut tools = Vec::new();
    if aws {
        tools.push((
            "aws",
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit 7\n",
                record.display()
            ),
        ));
    }
    if plugin {
        tools.push(("session-manager-plugin", "#!/bin/sh\nexit 0\n".to_string()));
    }
    for (name, text) in tools {
        let f = bin.join(name);
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn run(rig: &Rig, bin: &Path, path_rest: bool, args: &[&str]) -> common::Run {
    let mut path = bin.as_os_str().to_owned();
    if path_rest {
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
    }
    rig.poscloud(args).env("PATH", path).run()
}

fn recorded(record: &Path) -> Option<Vec<String>> {
    std::fs::read_to_string(record)
        .ok()
        .map(|s| s.lines().map(str::to_string).collect())
}

#[test]
fn host_connect_runs_an_ssm_session_on_the_stacks_instance() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    let instance = rig.instance_id(SHOP, "qa");
    // A named profile, as an engineer has one per account (credentials from the environment).
    let aws_dir = rig.home.path().join(".aws");
    std::fs::create_dir_all(&aws_dir).unwrap();
    std::fs::write(
        aws_dir.join("config"),
        format!("[profile shopops]\nregion = {REGION}\n"),
    )
    .unwrap();
    let record = rig.home.path().join("aws-argv");
    let bin = standins(rig.home.path(), &record, true, true);
    let connect = [
        "host",
        "connect",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--profile",
        "shopops",
    ];

    let want: Vec<String> = [
        "ssm",
        "start-session",
        "--target",
        &instance,
        "--region",
        REGION,
        "--profile",
        "shopops",
        "--endpoint-url",
        &rig.proxy.url(),
    ]
    .map(String::from)
    .to_vec();

    // --print: the command, nothing run.
    let mut args = connect.to_vec();
    args.push("--print");
    let r = run(&rig, &bin, true, &args).ok();
    assert_eq!(r.stdout, format!("aws {}\n", want.join(" ")));
    assert_eq!(recorded(&record), None, "--print ran aws");
    let mut json = args.clone();
    json.extend(["--output", "json"]);
    let r = run(&rig, &bin, true, &json).ok();
    let v = r.json();
    assert_eq!(v["instance"], instance.as_str());
    assert_eq!(v["command"][0], "aws");
    assert_eq!(v["command"][4], instance.as_str());

    // The session: aws got exactly these arguments, and its exit code is poscloud's.
    let writes_before = rig.proxy.writes().len();
    let r = run(&rig, &bin, true, &connect);
    assert_eq!(r.code, 7, "the session's exit code: {}", r.stderr);
    assert_eq!(
        recorded(&record).as_deref(),
        Some(&want[..]),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&instance),
        "says which instance: {}",
        r.stderr
    );
    assert_eq!(
        rig.proxy.writes().len(),
        writes_before,
        "host connect wrote to AWS"
    );
    // Who opened a shell where is in the journal.
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    let line = journal
        .lines()
        .rfind(|l| l.contains("\"event\":\"session\""))
        .expect("a session line in the journal");
    assert!(
        line.contains(&instance) && line.contains("host connect"),
        "{line}"
    );

    // A stopped instance: no session, and the message says why.
    std::fs::remove_file(&record).unwrap();
    rig.block(rig.ec2.stop_instances().instance_ids(&instance).send())
        .unwrap();
    let r = run(&rig, &bin, true, &connect);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("needs it running"), "{}", r.stderr);
    assert_eq!(recorded(&record), None);
}

#[test]
fn host_connect_names_what_is_missing_before_any_aws_call() {
    let rig = Rig::new();
    let record = rig.home.path().join("aws-argv");
    let connect = ["host", "connect", "--shop", SHOP, "--env", "qa"];

    // Only stand-ins on PATH: the real aws (if any) is not found.
    let no_plugin = standins(rig.home.path(), &record, true, false);
    let r = run(&rig, &no_plugin, false, &connect);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("`session-manager-plugin`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("`aws`"), "aws is there: {}", r.stderr);
    let nothing = standins(rig.home.path(), &record, false, false);
    let r = run(&rig, &nothing, false, &connect);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("`aws`") && r.stderr.contains("`session-manager-plugin`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--print"),
        "says the way around: {}",
        r.stderr
    );
    assert!(
        rig.proxy.calls().is_empty(),
        "an AWS call before the tools were checked"
    );

    // A shop with no stack: said so, nothing run.
    let both = standins(rig.home.path(), &record, true, true);
    let r = run(&rig, &both, true, &connect);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("has no instance"), "{}", r.stderr);
    assert!(r.stderr.contains("poscloud list"), "{}", r.stderr);
    assert_eq!(recorded(&record), None);
}
