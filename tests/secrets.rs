//! No AWS credential in anything poscloud writes: its output (at every verbosity, down to
//! the SDK's trace), the journal, the host's user-data, or the SSM commands it sends (the
//! scripts and inputs the test host's agent received, decoded). The credentials are generated
//! for this run, so a hit can only come from poscloud passing them on. (VPN keys are
//! scanned in vpn.rs and vpn_host.rs, including every /proc/*/cmdline while they run.)

mod common;

use base64::Engine;
use common::host::TestHost;
use common::Rig;
use std::io::Read;

/// 40 characters from the OS random generator, like an AWS secret access key.
fn generated(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect()
}

#[test]
fn no_aws_credential_in_output_journal_user_data_or_commands() {
    let rig = Rig::new();
    let h = TestHost::up("sec1", 15, true);
    h.boot(&rig, "66666666", "qa");
    let secret = generated(60);
    let token = generated(60);
    assert!(secret.len() == 40 && token.len() == 40);
    let creds = [
        ("AWS_SECRET_ACCESS_KEY", Some(secret.as_str())),
        ("AWS_SESSION_TOKEN", Some(token.as_str())),
    ];
    let mut seen = String::new();
    let runs: &[(&[&str], Option<&str>)] = &[
        (
            &[
                "provision",
                "--shop",
                "66666666",
                "--env",
                "qa",
                "--until",
                "bootstrap",
                "-vv",
            ],
            None,
        ),
        // The SDK's own trace output: requests, signing, connection pool.
        (
            &["status", "--shop", "66666666", "--env", "qa"],
            Some("trace"),
        ),
        (&["list", "-vv"], None),
        (&["--output", "json", "report", "compliance"], Some("trace")),
        (&["report", "billing", "-vv"], None),
        (&["plan", "--shop", "66666666", "--env", "qa", "-vv"], None),
        (
            &[
                "teardown", "--shop", "66666666", "--env", "qa", "--yes", "-vv",
            ],
            Some("trace"),
        ),
    ];
    for (args, log) in runs {
        let mut env = creds.to_vec();
        env.push(("POSCLOUD_LOG", *log));
        // Compliance exits 1 here: the stack has no alert_email (rule `alarms`).
        let code = if args.contains(&"compliance") { 1 } else { 0 };
        let r = rig.poscloud(*args).envs(env).run().status(code);
        seen.push_str(&r.stdout);
        seen.push_str(&r.stderr);
    }
    // The runs said something (the scan is not of empty output): requests were logged.
    assert!(seen.len() > 10_000, "{} bytes of output", seen.len());
    assert!(
        seen.contains("RunInstances"),
        "the verbose output names the calls"
    );
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    assert!(journal.contains("RunInstances"));

    // The user-data as EC2 holds it (provision again to have an instance to read it from).
    rig.provision_infra("66666667", "qa").ok();
    let user_data = rig.block(async {
        let r = rig.ec2.describe_instances().send().await.unwrap();
        let id = r
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
            .and_then(|i| i.instance_id())
            .unwrap()
            .to_string();
        let a = rig
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let b64 = a.user_data().and_then(|v| v.value()).unwrap().to_string();
        String::from_utf8_lossy(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .into_owned()
    });
    assert!(user_data.contains("#cloud-config"), "{user_data:.200}");

    // What the host's agent received: each command's payload (name, inputs, script) decoded.
    let mut sent = String::new();
    for e in std::fs::read_dir(h.dir.path().join("ssm/work")).unwrap() {
        let job: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path().join("job.json")).unwrap())
                .unwrap();
        let command = job["commands"][0].as_str().unwrap();
        sent.push_str(command);
        let payload: Vec<&str> = command
            .lines()
            .skip_while(|l| !l.ends_with("<<'POSCLOUD_PAYLOAD'"))
            .skip(2)
            .take(2)
            .collect();
        assert_eq!(payload.len(), 2, "{command:.300}");
        for b64 in payload {
            let gz = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap();
            sent.push_str(&text);
        }
    }
    assert!(
        sent.contains("SHOP=66666666") && sent.contains("Docker daemon answers"),
        "the decoded commands hold the inputs and the script"
    );

    for (what, text) in [
        ("output", &seen),
        ("journal", &journal),
        ("user-data", &user_data),
        ("SSM commands", &sent),
    ] {
        for (name, value) in [("secret access key", &secret), ("session token", &token)] {
            assert!(
                !text.contains(value.as_str()),
                "the {name} is in the {what}"
            );
        }
    }
}
