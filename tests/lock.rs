//! One run per shop+env: the SSM lock (PutParameter without overwrite).

mod common;
use common::Rig;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SHOP: &str = "34567890";

#[test]
fn a_held_lock_stops_provision_and_teardown_and_names_the_holder() {
    let rig = Rig::new();
    let holder = r#"{"user":"alice","host":"laptop-7","pid":4242,"command":"provision --shop 34567890 --env qa","since":"2026-11-23T01:00:00Z"}"#;
    rig.block(async {
        rig.ssm
            .put_parameter()
            .name("/poscloud/34567890/qa/lock")
            .value(holder)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
    });
    let r = rig.provision_infra(SHOP, "qa");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("alice@laptop-7 (pid 4242"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("stale"),
        "another machine's lock is not judged stale"
    );
    assert!(r.stderr.contains("--break-lock"), "{}", r.stderr);
    // The only write was the failed attempt to take the lock: nothing was created.
    assert_eq!(rig.proxy.writes(), ["PutParameter"]);
    assert_eq!(
        rig.tagged(SHOP, "qa"),
        ["parameter /poscloud/34567890/qa/lock"]
    );

    let r = rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("alice@laptop-7"), "{}", r.stderr);

    let s = rig.run(&["status", "--shop", SHOP, "--env", "qa"]).ok();
    assert!(
        s.stdout.contains("locked by alice@laptop-7"),
        "{}",
        s.stdout
    );

    let r = rig
        .run(&[
            "provision",
            "--shop",
            SHOP,
            "--env",
            "qa",
            "--break-lock",
            "--until",
            "infra",
        ])
        .ok();
    assert!(
        r.stderr
            .contains("breaking the lock of shop 34567890 (qa) held by alice@laptop-7"),
        "{}",
        r.stderr
    );
    assert_eq!(rig.count_parameters(), 0, "lock released at the end");
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    assert!(journal.contains("\"event\":\"lock-broken\"") && journal.contains("laptop-7"));
}

#[test]
fn two_provisions_at_once_exactly_one_proceeds() {
    let rig = Rig::new();
    // Slow every write down so the two runs overlap for seconds, not milliseconds.
    rig.proxy.set_write_delay(Duration::from_millis(150));
    let args = [
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--until",
        "infra",
    ];
    let a = rig
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = rig
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    assert_eq!(codes, [0, 3], "a: {a:?}\nb: {b:?}");
    let loser = if a.status.code() == Some(3) { &a } else { &b };
    let msg = String::from_utf8_lossy(&loser.stderr);
    assert!(msg.contains("is locked by tester@"), "{msg}");
    assert_eq!(rig.count(SHOP, "qa", "vpc"), 1);
    assert_eq!(rig.count(SHOP, "qa", "instance"), 1);
    assert_eq!(rig.count(SHOP, "qa", "eip"), 2);
}

#[test]
fn teardown_is_refused_while_a_provision_runs() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    // Drift gives the next provision work to do; slow writes keep it running a while.
    rig.open_inbound("sg-pos", "udp", 500, "0.0.0.0/0");
    rig.proxy.set_write_delay(Duration::from_millis(1500));
    let up = rig
        .command(&[
            "provision",
            "--shop",
            SHOP,
            "--env",
            "qa",
            "--until",
            "infra",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig.count_parameters() == 0 {
        assert!(Instant::now() < deadline, "provision never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"]);
    assert_eq!(down.code, 3, "{down:?}");
    assert!(
        down.stderr.contains("provision --shop 34567890"),
        "{}",
        down.stderr
    );
    let up = up.wait_with_output().unwrap();
    assert!(up.status.success(), "{up:?}");
    assert_eq!(
        rig.count(SHOP, "qa", "instance"),
        1,
        "teardown changed nothing"
    );
}
