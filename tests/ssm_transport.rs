//! The SSM Run Command transport against the emulator. moto's SendCommand runs nothing and
//! reports Success at once, so this proves the request (document, parameters, timeouts,
//! output bucket), the polling and the reading of long output from S3 — not execution,
//! which the SSH tests on real test hosts cover with the same runner and payload.

mod common;
use common::Rig;
use poscloud::aws::{Aws, Connect};
use poscloud::journal::Journal;
use poscloud::remote::ssm::{stdout_key, SsmTarget, STDOUT_LIMIT};
use poscloud::remote::{no_sink, Inputs, Remote, Script};
use std::time::Duration;

fn connect(rig: &Rig) -> Aws {
    // The library reads credentials from the standard chain, here the environment.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    rig.block(Aws::connect(
        &Connect {
            region: Some(common::REGION.into()),
            profile: None,
            endpoint_url: Some(rig.proxy.url()),
        },
        Journal::none(),
    ))
    .unwrap()
}

#[test]
fn run_command_request_polling_and_long_output() {
    let rig = Rig::new();
    rig.provision_infra("56789012", "dev").ok();
    let aws = connect(&rig);
    let id = poscloud::spec::StackId {
        shop: "56789012".parse().unwrap(),
        env: poscloud::spec::Env::Dev,
    };
    let d = rig.block(aws.discover(&id)).unwrap();
    let instance = d.instance().unwrap().id.clone();
    let bucket = d.output.name.clone();
    assert!(d.output.exists);

    let target = SsmTarget {
        aws: &aws,
        instance_id: instance.clone(),
        check_online: false,
        output: Some((bucket.clone(), "56789012/dev/ssm".into())),
    };
    let remote = Remote::Ssm(target);
    let script = Script {
        name: "hello.sh",
        body: "echo \"hello $WHO\"\n",
    };
    let inputs = Inputs::new().set("WHO", "O'Brien $(id)").unwrap();
    rig.proxy.reset();
    let out = rig
        .block(remote.run(&script, &inputs, Duration::from_secs(300), no_sink()))
        .unwrap();
    assert_eq!(out.exit_code, 0, "moto reports Success");

    let calls = rig.proxy.calls();
    let send = calls
        .iter()
        .find(|c| c.action == "SendCommand")
        .expect("SendCommand sent");
    let req: serde_json::Value = serde_json::from_str(&send.body).unwrap();
    assert_eq!(req["DocumentName"], "AWS-RunShellScript");
    assert_eq!(req["InstanceIds"], serde_json::json!([instance]));
    assert_eq!(
        req["Parameters"]["executionTimeout"],
        serde_json::json!(["300"])
    );
    assert_eq!(req["TimeoutSeconds"], 600, "delivery timeout");
    assert_eq!(req["OutputS3BucketName"], bucket);
    assert_eq!(req["OutputS3KeyPrefix"], "56789012/dev/ssm");
    assert_eq!(req["Comment"], "poscloud hello.sh");
    let command = req["Parameters"]["commands"][0].as_str().unwrap();
    assert!(command.starts_with("bash -c '"), "{command}");
    assert!(
        !command.contains("O'Brien") && !command.contains("$(id)"),
        "inputs travel encoded"
    );
    assert!(
        calls.iter().any(|c| c.action == "GetCommandInvocation"),
        "the invocation was polled"
    );

    // Beyond the API's 24 000 characters the agent's copy in S3 is read. The emulator's
    // agent writes nothing, so the test puts the object where the agent would.
    let Remote::Ssm(target) = &remote else {
        unreachable!()
    };
    let full = "x".repeat(100_000) + "\nPOSCLOUD_RESULT {\"ok\":true}\n";
    let key = stdout_key("56789012/dev/ssm", "cmd-0123", &instance);
    assert_eq!(
        key,
        format!(
            "56789012/dev/ssm/cmd-0123/{instance}/awsrunShellScript/0.awsrunShellScript/stdout"
        )
    );
    rig.block(
        rig.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(full.clone().into_bytes().into())
            .send(),
    )
    .unwrap();
    let cut: String = full.chars().take(STDOUT_LIMIT).collect();
    let got = rig.block(target.full_stdout("cmd-0123", cut)).unwrap();
    assert_eq!(got, full);

    // Teardown removes the stack's objects from the shared bucket, and leaves the bucket.
    rig.run(&["teardown", "--shop", "56789012", "--env", "dev", "--yes"])
        .ok();
    let left = rig
        .block(
            rig.s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix("56789012/")
                .send(),
        )
        .unwrap();
    assert_eq!(left.key_count(), Some(0));
    rig.block(rig.s3.head_bucket().bucket(&bucket).send())
        .expect("the shared bucket stays");
}
