//! The bootstrap phase end to end: the emulator for AWS, a test host (real sshd, Docker API
//! from podman, strongSwan's swanctl) standing in for the EC2 instance, reached with
//! `--ssh`. The same SSH transport code runs as against a real host; only cloud-init does
//! not run here, so the test writes the user-data marker it would leave.

mod common;
use common::host::TestHost;
use common::Rig;

const SHOP: &str = "45678901";

fn provision(rig: &Rig, h: &TestHost, extra: &[&str]) -> common::Run {
    let key = h.client_key.to_string_lossy().into_owned();
    let host_key = h.host_key_pub.to_string_lossy().into_owned();
    let addr = h.ssh_address();
    let mut args = vec![
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--until",
        "bootstrap",
        "--ssh",
        &addr,
        "--ssh-key",
        &key,
        "--host-key-file",
        &host_key,
    ];
    args.extend_from_slice(extra);
    rig.run(&args)
}

#[test]
fn bootstrap_runs_once_is_skipped_then_redone() {
    let rig = Rig::new();
    let h = TestHost::up("boot1", 21, true);
    h.finish_userdata();

    let out = provision(&rig, &h, &[]).ok();
    assert!(
        out.stderr.contains("bootstrap: Docker daemon answers"),
        "live output shown: {}",
        out.stderr
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("bootstrap") && l.contains(" done ")),
        "{}",
        out.stdout
    );
    let marker = h.root.join("var/lib/poscloud/phases/bootstrap.done");
    let first = std::fs::read_to_string(&marker).expect("marker on the host");
    assert!(
        first.contains("\"shop\":\"45678901\"") && first.contains("strongSwan"),
        "{first}"
    );

    // The phase and the pinned key are recorded in SSM; status shows the phase.
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .json();
    let phase = &status["phases"]["bootstrap"];
    assert!(phase["done_at"].is_string(), "{status}");
    assert!(
        phase["result"]["docker"].as_str().unwrap().len() > 1,
        "{phase}"
    );
    assert_eq!(phase["target"], format!("ssh://{}", h.ssh_address()));
    let pinned = rig.block(async {
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
    });
    let expected = std::fs::read_to_string(&h.host_key_pub).unwrap();
    assert!(
        expected.starts_with(&pinned),
        "pinned {pinned} vs {expected}"
    );

    // Done: a re-run does no remote work (no SSH login) and no AWS write.
    let logins = h.accepted_logins();
    rig.proxy.reset();
    let again = provision(&rig, &h, &[]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(
        h.accepted_logins(),
        logins,
        "no SSH connection on a converged re-run"
    );
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    // --redo bootstrap runs it again.
    std::fs::remove_file(&marker).unwrap();
    provision(&rig, &h, &["--redo", "bootstrap"]).ok();
    assert!(h.accepted_logins() > logins);
    assert!(marker.exists(), "redone");

    // A different host key for this stack is refused: the pin in SSM wins.
    let wrong = h.wrong_host_key_pub.to_string_lossy().into_owned();
    let key = h.client_key.to_string_lossy().into_owned();
    let addr = h.ssh_address();
    let r = rig.run(&[
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--ssh",
        &addr,
        "--ssh-key",
        &key,
        "--host-key-file",
        &wrong,
        "--redo",
        "bootstrap",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("differs from the one pinned"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_failed_userdata_stops_bootstrap_with_its_reason() {
    let rig = Rig::new();
    let h = TestHost::up("boot2", 22, true);
    let state = h.root.join("var/lib/poscloud");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("userdata.failed"),
        "step docker: yum install docker-ce failed\n",
    )
    .unwrap();
    let r = provision(&rig, &h, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("bootstrap failed on ssh://"),
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
    // The lock was released even though the phase failed.
    assert_eq!(
        rig.count_parameters(),
        1,
        "only the pinned host key remains"
    );
}

#[test]
fn over_ssm_the_emulator_accepts_the_command_but_runs_nothing() {
    // moto's SendCommand reports Success at once and runs nothing, so the script's result
    // line never comes back: the phase must fail plainly, not pretend it ran.
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
    assert!(r.stderr.contains("without a result line"), "{}", r.stderr);
    let w = rig.proxy.writes();
    assert!(w.contains(&"SendCommand".to_string()), "{w:?}");
    assert!(!w.contains(&"PutParameter".to_string()) || rig.count_parameters() == 0);
}
