//! The bootstrap phase end to end: the emulator for AWS, a test host (real sshd, Docker API
//! from podman, strongSwan's swanctl) standing in for the EC2 instance. The default path:
//! SSM Run Command, run on the test host by the agent stand-in (tests/rig/ssm-agent.py),
//! with the online check on and the host key pinned from the console. And `--ssh` (a
//! sandbox's or an edge host's path), logging in as `centos` and running through sudo.
//! cloud-init does not run on a test host: `TestHost::boot` leaves what it would (the
//! user-data marker, the agent online, the host keys on the console).

mod common;
use common::host::TestHost;
use common::Rig;

const SHOP: &str = "45678901";

/// `provision … --until bootstrap` with `extra`.
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--until",
        "bootstrap",
    ];
    args.extend_from_slice(extra);
    args
}

fn provision(rig: &Rig, extra: &[&str]) -> common::Run {
    rig.run(&args(extra))
}

/// `provision … --until bootstrap` over `--ssh` with the host's own key pinned.
fn provision_ssh(rig: &Rig, h: &TestHost, extra: &[&str]) -> common::Run {
    rig.poscloud(args(extra))
        .args(h.ssh_args())
        .args(h.host_key_args())
        .run()
}

fn pinned(rig: &Rig) -> String {
    rig.block(async {
        rig.ssm
            .get_parameter()
            .name("/poscloud/45678901/qa/host-key")
            .send()
            .await
            .unwrap()
            .parameter()
            .unwrap()
            .value()
            .unwrap()
            .to_string()
    })
}

#[test]
fn bootstrap_over_ssm_runs_once_is_skipped_then_redone() {
    let rig = Rig::new();
    let h = TestHost::up("boot1", 21, true);
    h.boot(&rig, SHOP, "qa");
    let logins = h.accepted_logins(); // testhost.sh's own check

    let out = provision(&rig, &[]).ok();
    assert!(
        out.stderr.contains("bootstrap: Docker daemon answers"),
        "the script's output shown: {}",
        out.stderr
    );
    let calls: Vec<String> = rig.proxy.calls().into_iter().map(|c| c.action).collect();
    for action in [
        "DescribeInstanceInformation",
        "SendCommand",
        "GetCommandInvocation",
        "GetConsoleOutput",
    ] {
        assert!(calls.contains(&action.to_string()), "{action}: {calls:?}");
    }
    assert_eq!(h.accepted_logins(), logins, "no SSH on the default path");
    let marker = h.root.join("var/lib/poscloud/phases/bootstrap.done");
    let first = std::fs::read_to_string(&marker).expect("marker on the host");
    assert!(
        first.contains("\"shop\":\"45678901\"") && first.contains("strongSwan"),
        "{first}"
    );
    // The agent ran it as root, as `sh -c` of its _script.sh, from its orchestration dir.
    let orch = h.root.join("var/lib/amazon/ssm");
    assert!(orch.is_dir(), "the agent's orchestration directory");

    // The phase is recorded in SSM with the SSM target; the key came from the console.
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .json();
    let phase = &status["phases"]["bootstrap"];
    assert!(phase["done_at"].is_string(), "{status}");
    assert!(
        phase["target"].as_str().unwrap().starts_with("ssm://i-"),
        "{phase}"
    );
    let expected = std::fs::read_to_string(&h.host_key_pub).unwrap();
    let pin = pinned(&rig);
    assert!(expected.starts_with(&pin), "pinned {pin} vs {expected}");
    assert!(
        out.stderr.contains("from the console output"),
        "{}",
        out.stderr
    );

    // Done: a re-run sends no command and writes nothing.
    rig.proxy.reset();
    let again = provision(&rig, &[]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    // --redo bootstrap runs it again; the console still shows the pinned key.
    std::fs::remove_file(&marker).unwrap();
    provision(&rig, &["--redo", "bootstrap"]).ok();
    assert!(marker.exists(), "redone");

    // The console now shows another key (the instance is not the host whose key was
    // pinned): refused, and the pin stays.
    h.console(Some(&h.wrong_host_key_pub));
    let r = provision(&rig, &["--redo", "bootstrap"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not the one pinned"), "{}", r.stderr);
    assert_eq!(pinned(&rig), pin);
}

#[test]
fn the_host_key_is_waited_for_until_the_console_shows_it() {
    let rig = Rig::new();
    let h = TestHost::up("boot3", 23, true);
    h.bind(&rig, SHOP, "qa");
    h.finish_userdata();
    h.agent_start();
    let mut child = rig
        .command(&args(&[]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The console shows the block only some seconds after the user-data ended: here once
    // poscloud says it waits for it (plus a second).
    use std::io::BufRead;
    let mut err = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        err.push_str(&line);
        err.push('\n');
        if line.contains("waiting for the console output") {
            break;
        }
    }
    assert!(err.contains("waiting for the console output"), "{err}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    h.console(None);
    for line in lines {
        err.push_str(&line.unwrap());
        err.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{err}");
    let expected = std::fs::read_to_string(&h.host_key_pub).unwrap();
    assert!(expected.starts_with(&pinned(&rig)));
}

#[test]
fn bootstrap_over_ssh_logs_in_as_centos_and_uses_sudo() {
    let rig = Rig::new();
    let h = TestHost::up("boot4", 24, true);
    assert_eq!(h.user, "centos");
    h.finish_userdata();
    let out = provision_ssh(&rig, &h, &[]).ok();
    assert!(h.accepted_logins() > 0);
    assert!(
        std::fs::read_to_string(h.dir.path().join("sshd.log"))
            .unwrap()
            .contains("Accepted publickey for centos"),
        "logged in as centos"
    );
    let marker = h.root.join("var/lib/poscloud/phases/bootstrap.done");
    assert!(marker.exists(), "{}", out.stderr);
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        status["phases"]["bootstrap"]["target"],
        format!("ssh://{}", h.ssh_address())
    );

    // A different host key for this stack is refused: the pin in SSM wins.
    rig.poscloud(args(&["--redo", "bootstrap"]))
        .args(h.ssh_args())
        .args(["--host-key-file", &h.wrong_host_key_pub.to_string_lossy()])
        .run()
        .status(1)
        .stderr_has("differs from the one pinned");
}

#[test]
fn a_failed_userdata_stops_bootstrap_with_its_reason() {
    let rig = Rig::new();
    let h = TestHost::up("boot2", 22, true);
    h.bind(&rig, SHOP, "qa");
    h.agent_start();
    let state = h.root.join("var/lib/poscloud");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("userdata.failed"),
        "step docker: yum install docker-ce failed\n",
    )
    .unwrap();
    let r = provision(&rig, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("bootstrap failed on ssm://i-"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("yum install docker-ce failed"),
        "{}",
        r.stderr
    );
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .json();
    assert!(
        status["phases"]["bootstrap"].is_null(),
        "not recorded as done"
    );
    // The lock was released even though the phase failed; no host key was pinned (the
    // console is read only after a successful bootstrap).
    assert_eq!(rig.count_parameters(), 0);
}

#[test]
fn an_instance_without_a_registered_agent_is_refused_by_send_command() {
    // AWS refuses SendCommand for an instance whose agent never registered
    // (InvalidInstanceId); so does the stand-in. Without the online check poscloud sends at
    // once and must fail plainly, not pretend the script ran.
    let rig = Rig::new();
    let r = rig.run(&[
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--until",
        "bootstrap",
        "--no-ssm-online-check",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("InvalidInstanceId"), "{}", r.stderr);
    assert_eq!(rig.count_parameters(), 0, "nothing recorded, lock released");
}
