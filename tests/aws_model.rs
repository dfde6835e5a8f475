//! poscloud against AWS's documented behaviour (tests/rig/aws_model.py in front of moto):
//! lists that leave new resources out, ids unknown for a moment after their create, IAM
//! propagation, instances pending and shutting down for seconds, interfaces in use after
//! their instance ended. Every other test runs with the small delays of `common::STRICT`;
//! these set the model themselves. The tests' own checks read moto as it is (the rig's
//! clients bypass the model), so they see what really exists.

mod common;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use common::Rig;

const SHOP: &str = "56781234";

fn teardown(rig: &Rig) -> common::Run {
    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
}

#[test]
fn runs_right_after_a_provision_find_what_the_lists_do_not_show_yet() {
    let rig = Rig::new();
    let before = rig.inventory();
    // Lists show nothing of the stack for a minute, longer than this test: what poscloud
    // finds, it finds by the ids it recorded.
    rig.set_model(
        r#"{"list_lag": 60, "read_lag": 0.5, "write_lag": 0.3, "pending": 0.5,
            "shutting_down": 0.5, "eni_detach": 0.5, "iam_propagation": 1.0,
            "dependencies": true, "client_token": true, "termination_protection": true}"#,
    );
    rig.provision_infra(SHOP, "qa").ok();
    rig.assert_one_stack(SHOP, "qa", "fresh");
    let pos_ip = rig.pos_eip();

    // The re-run a moment later: nothing to do, no write, the same POS address (the one
    // every florist's router is configured with).
    rig.proxy.reset();
    let again = rig.provision_infra(SHOP, "qa").ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());
    rig.assert_one_stack(SHOP, "qa", "re-run");
    assert_eq!(rig.pos_eip(), pos_ip);

    // A teardown a moment later removes all of it, the records last.
    let down = teardown(&rig).ok();
    assert!(down.stdout.contains("nothing tagged remains"), "{down:?}");
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
    assert_eq!(rig.inventory(), before);
}

#[test]
fn a_provision_and_teardown_wait_out_realistic_aws_delays() {
    let rig = Rig::new();
    let before = rig.inventory();
    // The delays the issue measured AWS with (IAM propagation 10 s, pending 8 s,
    // shutting-down 8 s), a few seconds of list lag, and in-use answered the other way.
    rig.set_model(
        r#"{"list_lag": 3, "read_lag": 1, "write_lag": 0.5, "pending": 8,
            "shutting_down": 8, "eni_detach": 3, "iam_propagation": 10,
            "in_use": "InvalidParameterValue", "dependencies": true, "client_token": true,
            "termination_protection": true}"#,
    );
    let up = rig.provision_infra(SHOP, "qa").ok();
    assert!(up.stderr.contains("IAM propagation"), "{}", up.stderr);
    rig.assert_one_stack(SHOP, "qa", "with realistic delays");
    rig.proxy.reset();
    let again = rig.provision_infra(SHOP, "qa").ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    let down = teardown(&rig).ok();
    assert!(down.stdout.contains("nothing tagged remains"), "{down:?}");
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
    assert_eq!(rig.inventory(), before);
    // eth1 stayed in use for seconds after its instance ended (answered as
    // InvalidParameterValue "… is currently in use"): waited out, not failed.
    let refused = rig
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.action == "DeleteNetworkInterface" && c.status == 400)
        .count();
    assert!(refused > 0, "the model did not refuse any delete");
}

#[test]
fn a_protected_instance_is_not_terminated_and_teardown_lifts_the_protection_first() {
    let rig = Rig::new();
    // prod: launched with DisableApiTermination, which the model honours as AWS does.
    rig.run(&[
        "provision",
        "--shop",
        SHOP,
        "--env",
        "prod",
        "--until",
        "infra",
        "--yes",
    ])
    .ok();
    let iid = rig.instance_id(SHOP, "prod");
    // Only RunInstances asked for protection: no ModifyInstanceAttribute was needed.
    let writes = rig.proxy.ok_writes();
    assert!(
        !writes.iter().any(|w| w == "ModifyInstanceAttribute"),
        "{writes:?}"
    );
    // Through the model (poscloud's view), AWS refuses to terminate it.
    let conf = rig.block(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(rig.emu.url())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load(),
    );
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let refused = rig.block(ec2.terminate_instances().instance_ids(&iid).send());
    let code = refused
        .err()
        .and_then(|e| e.into_service_error().code().map(str::to_string));
    assert_eq!(code.as_deref(), Some("OperationNotPermitted"));
    rig.run(&[
        "teardown",
        "--shop",
        SHOP,
        "--env",
        "prod",
        "--yes",
        "--allow-prod",
    ])
    .ok();
    assert_eq!(rig.tagged(SHOP, "prod"), Vec::<String>::new());
}

#[test]
fn an_interrupted_provision_holds_its_lock_a_moment_then_releases_it_and_a_rerun_converges() {
    use std::time::{Duration, Instant};
    let rig = Rig::new();
    // Slow writes, so that Ctrl-C comes while creates are in flight.
    rig.proxy.set_write_delay(Duration::from_millis(300));
    let child = rig
        .command(&common::infra_args(SHOP, "qa"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The lock and the first creates are through.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.proxy.ok_writes().len() < 3 {
        assert!(Instant::now() < deadline, "provision never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // 130, as a shell reports Ctrl-C (the lock released first).
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: holding the lock"), "{err}");
    assert!(err.contains("the same command resumes"), "{err}");
    // It held the lock about LIST_LAG (5 s) before releasing it, and released it.
    assert!(
        sent.elapsed() >= Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(rig.count_parameters(), 0, "the lock was left: {err}");

    // The same command resumes without --break-lock and makes nothing twice.
    rig.proxy.set_write_delay(Duration::ZERO);
    rig.provision_infra(SHOP, "qa").ok();
    rig.assert_one_stack(SHOP, "qa", "after an interrupted provision");
}
