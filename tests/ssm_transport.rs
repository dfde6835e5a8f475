//! The SSM Run Command transport against the emulator with the agent stand-in
//! (tests/rig/emulator.py, tests/rig/ssm-agent.py): commands really run on the test host
//! that stands for the instance, as the agent runs them (root, `sh -c` of a script file, the
//! agent's environment), with AWS's statuses, output cuts and S3 key layout. What the
//! stand-in cannot be (the real agent, its ec2messages channel, the instance role's S3
//! upload) is in docs/testing.md.

mod common;
use common::host::TestHost;
use common::{Faults, Rig};
use poscloud::aws::{Aws, Connect};
use poscloud::journal::Journal;
use poscloud::remote::ssm::{stdout_key, SsmTarget, STDOUT_LIMIT};
use poscloud::remote::{no_sink, Inputs, Program, Remote};
use std::time::{Duration, Instant};

const SHOP: &str = "56789012";

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
        poscloud::ui::Notify::default(),
    ))
    .unwrap()
}

/// A dev stack whose instance is a test host, reached through poscloud's own SSM transport
/// (the library, not the binary: no stack file, so not `common::host::Setup`).
struct Ssm {
    rig: Rig,
    h: TestHost,
    aws: Aws,
    instance: String,
    bucket: String,
}

fn ssm_host(name: &str, index: u8) -> Ssm {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "dev").ok();
    let h = TestHost::up(name, index, false);
    h.bind(&rig, SHOP, "dev");
    h.agent_start();
    let aws = connect(&rig);
    let id = poscloud::spec::StackId {
        shop: SHOP.parse().unwrap(),
        env: poscloud::spec::Env::Dev,
    };
    let d = rig.block(aws.discover(&id)).unwrap();
    let instance = d.instance().unwrap().id.clone();
    let bucket = d.output.name.clone();
    assert!(d.output.exists);
    Ssm {
        rig,
        h,
        aws,
        instance,
        bucket,
    }
}

impl Ssm {
    fn remote(&self) -> Remote<'_> {
        Remote::Ssm(SsmTarget {
            aws: &self.aws,
            instance_id: self.instance.clone(),
            check_online: true,
            output: Some((self.bucket.clone(), format!("{SHOP}/dev/ssm"))),
        })
    }

    fn invocation(
        &self,
        command_id: &str,
    ) -> aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput {
        self.rig
            .block(
                self.rig
                    .ssm
                    .get_command_invocation()
                    .command_id(command_id)
                    .instance_id(&self.instance)
                    .send(),
            )
            .unwrap()
    }

    /// ListCommandInvocations for the instance, newest first.
    fn invocations(
        &self,
        details: bool,
    ) -> aws_sdk_ssm::operation::list_command_invocations::ListCommandInvocationsOutput {
        self.rig
            .block(
                self.rig
                    .ssm
                    .list_command_invocations()
                    .instance_id(&self.instance)
                    .details(details)
                    .send(),
            )
            .unwrap()
    }

    /// Sends a raw command with the SDK (no poscloud in between).
    fn send(&self, command: &str, execution_timeout: u32, delivery_timeout: i32) -> String {
        self.rig
            .block(
                self.rig
                    .ssm
                    .send_command()
                    .document_name("AWS-RunShellScript")
                    .instance_ids(&self.instance)
                    .parameters("commands", vec![command.to_string()])
                    .parameters("executionTimeout", vec![execution_timeout.to_string()])
                    .timeout_seconds(delivery_timeout)
                    .send(),
            )
            .unwrap()
            .command()
            .unwrap()
            .command_id()
            .unwrap()
            .to_string()
    }

    /// Polls until the invocation leaves Pending/InProgress; returns its status text.
    fn wait_end(&self, command_id: &str) -> String {
        let mut status = String::new();
        assert!(
            common::eventually(common::SETTLE, || {
                status = self
                    .invocation(command_id)
                    .status()
                    .unwrap()
                    .as_str()
                    .to_string();
                !matches!(status.as_str(), "Pending" | "InProgress")
            }),
            "{command_id} still {status}"
        );
        status
    }

    fn ping_status(&self) -> Option<String> {
        let out = self
            .rig
            .block(
                self.rig
                    .ssm
                    .describe_instance_information()
                    .filters(
                        aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                            .key("InstanceIds")
                            .values(&self.instance)
                            .build()
                            .unwrap(),
                    )
                    .send(),
            )
            .unwrap();
        out.instance_information_list()
            .first()
            .and_then(|i| i.ping_status())
            .map(|p| p.as_str().to_string())
    }
}

#[test]
fn commands_run_on_the_host_as_the_agent_runs_them() {
    let s = ssm_host("ssmt1", 28);
    let remote = s.remote();
    let script = Program {
        name: "hello.sh",
        body: r#"echo "hello $WHO"
echo "uid=$(id -u) bash=${BASH_VERSION} home=${HOME-unset} instance=${AWS_SSM_INSTANCE_ID-}"
echo oops >&2
exit 3
"#,
    };
    let inputs = Inputs::new().set("WHO", "O'Brien $(id)").unwrap();
    s.rig.proxy.reset();
    s.rig
        .block(remote.wait_ready(Duration::from_secs(60)))
        .expect("the agent is online");
    let out = s
        .rig
        .block(remote.run(&script, &inputs, Duration::from_secs(300), no_sink()))
        .unwrap();
    let text = out.stdout_text();
    assert_eq!(out.exit_code, 3, "{text}");
    assert!(text.contains("hello O'Brien $(id)"), "{text}");
    assert!(
        text.contains(&format!(
            "uid=0 bash=4.2.45(2)-release home=unset instance={}",
            s.instance
        )),
        "root, CentOS 7's bash, the agent's environment: {text}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "oops");

    // The request poscloud sent.
    let calls = s.rig.proxy.calls();
    let send = calls
        .iter()
        .find(|c| c.action == "SendCommand")
        .expect("SendCommand sent");
    let req: serde_json::Value = serde_json::from_str(&send.body).unwrap();
    assert_eq!(req["DocumentName"], "AWS-RunShellScript");
    assert_eq!(req["InstanceIds"], serde_json::json!([s.instance]));
    assert_eq!(
        req["Parameters"]["executionTimeout"],
        serde_json::json!(["300"])
    );
    assert_eq!(req["TimeoutSeconds"], 600, "delivery timeout");
    assert_eq!(req["OutputS3BucketName"], s.bucket);
    assert_eq!(req["OutputS3KeyPrefix"], "56789012/dev/ssm");
    assert_eq!(req["Comment"], "poscloud hello.sh");
    let command = req["Parameters"]["commands"][0].as_str().unwrap();
    assert!(command.starts_with("bash -c '"), "{command}");
    assert!(
        !command.contains("O'Brien") && !command.contains("$(id)"),
        "inputs travel encoded"
    );
    let actions: Vec<&str> = calls.iter().map(|c| c.action.as_str()).collect();
    assert!(
        actions.contains(&"DescribeInstanceInformation"),
        "{actions:?}"
    );
    assert!(actions.contains(&"GetCommandInvocation"), "{actions:?}");
    let listed = s.invocations(true);
    let inv = &listed.command_invocations()[0];
    assert_eq!(inv.status().unwrap().as_str(), "Failed");
    assert_eq!(inv.comment(), Some("poscloud hello.sh"));
    let plugin = &inv.command_plugins()[0];
    assert_eq!(plugin.response_code(), 3);
    assert!(plugin.output().unwrap().contains("hello O'Brien"));
    assert!(plugin
        .standard_output_url()
        .unwrap()
        .ends_with("/awsrunShellScript/0.awsrunShellScript/stdout"));

    // Beyond the API's 24 000 characters, poscloud reads the agent's copy in S3.
    let big = Program {
        name: "big.sh",
        body: "head -c 100000 /dev/zero | tr '\\0' x; echo; echo 'POSCLOUD_RESULT {\"ok\":true}'\n",
    };
    let out = s
        .rig
        .block(remote.run(&big, &Inputs::new(), Duration::from_secs(300), no_sink()))
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.len(), 100_000 + 1 + 27 + 1);
    assert_eq!(out.result().unwrap()["ok"], true);
    let last = s.invocations(false);
    let id = last.command_invocations()[0]
        .command_id()
        .unwrap()
        .to_string();
    let api = s.invocation(&id);
    assert_eq!(
        api.standard_output_content().unwrap().chars().count(),
        STDOUT_LIMIT,
        "the API cuts at 24 000 characters"
    );
    let key = stdout_key("56789012/dev/ssm", &id, &s.instance);
    let obj = s
        .rig
        .block(s.rig.s3.get_object().bucket(&s.bucket).key(&key).send())
        .expect("the whole output in the bucket under the agent's layout");
    let body = s.rig.block(obj.body.collect()).unwrap().into_bytes();
    assert_eq!(body.len(), out.stdout.len());

    // Teardown removes the stack's objects from the shared bucket, and leaves the bucket.
    s.rig
        .run(&["teardown", "--shop", SHOP, "--env", "dev", "--yes"])
        .ok();
    let left = s
        .rig
        .block(
            s.rig
                .s3
                .list_objects_v2()
                .bucket(&s.bucket)
                .prefix("56789012/")
                .send(),
        )
        .unwrap();
    assert_eq!(left.key_count(), Some(0));
}

#[test]
fn timeouts_the_agent_offline_and_oversized_commands() {
    let s = ssm_host("ssmt2", 29);
    assert_eq!(s.ping_status().as_deref(), Some("Online"));

    // Past executionTimeout the agent kills the command.
    let id = s.send("sleep 30", 2, 30);
    assert_eq!(s.wait_end(&id), "TimedOut");
    assert_eq!(
        s.invocation(&id).status_details(),
        Some("ExecutionTimedOut")
    );

    // Parameters past the stand-in's limit are refused at the API (poscloud's own limit,
    // COMMAND_LIMIT, is half of it; a unit test keeps every script under that).
    let err = s
        .rig
        .block(
            s.rig
                .ssm
                .send_command()
                .document_name("AWS-RunShellScript")
                .instance_ids(&s.instance)
                .parameters("commands", vec!["#".repeat(70_000)])
                .send(),
        )
        .unwrap_err();
    assert!(
        format!("{:?}", err).contains("ValidationException"),
        "{err:?}"
    );

    // The agent stops: ConnectionLost; a command sent now is never delivered and ends as
    // DeliveryTimedOut after TimeoutSeconds, and does not run when the agent comes back.
    s.h.agent_stop();
    assert_eq!(s.ping_status().as_deref(), Some("ConnectionLost"));
    let marker = s.h.root.join("late");
    let id = s.send(&format!("touch {}", marker.display()), 60, 30);
    let start = Instant::now();
    assert_eq!(s.invocation(&id).status().unwrap().as_str(), "Pending");
    assert_eq!(s.wait_end(&id), "TimedOut");
    assert!(start.elapsed() >= Duration::from_secs(25));
    assert_eq!(s.invocation(&id).status_details(), Some("DeliveryTimedOut"));
    s.h.agent_start();
    assert_eq!(s.ping_status().as_deref(), Some("Online"));
    let id2 = s.send("true", 60, 30);
    assert_eq!(s.wait_end(&id2), "Success");
    assert!(!marker.exists(), "a withdrawn command never runs");
}

/// A script that records when it runs and fails loudly if another copy runs beside it.
const SLOW: Program = Program {
    name: "slow.sh",
    body: r#"r=$POSCLOUD_ROOT/runs
mkdir -p "$r"
if ! mkdir "$r/running" 2>/dev/null; then echo overlap >>"$r/log"; fi
echo "start $(date +%s.%N)" >>"$r/log"
sleep "$SECS"
echo "end $(date +%s.%N)" >>"$r/log"
rmdir "$r/running"
echo 'POSCLOUD_RESULT {"ok":true}'
"#,
};

#[test]
fn one_copy_at_a_time_after_a_lost_answer_or_an_interrupted_run() {
    let s = ssm_host("ssmt3", 30);
    let remote = s.remote();
    let inputs = Inputs::new().set("SECS", "3").unwrap();
    let log = s.h.root.join("runs/log");

    // The SDK resends a SendCommand whose answer was lost: two commands reach the host.
    s.rig.proxy.set_faults(Some(Faults {
        percent: 0,
        seed: 1,
        kinds: vec![],
        lose_first: vec![("SendCommand".into(), common::FaultKind::Status500)],
    }));
    let out = s
        .rig
        .block(remote.run(&SLOW, &inputs, Duration::from_secs(120), no_sink()))
        .unwrap();
    s.rig.proxy.set_faults(None);
    assert_eq!(out.exit_code, 0);
    let sent = s.invocations(false);
    let ids: Vec<String> = sent
        .command_invocations()
        .iter()
        .map(|i| i.command_id().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "the lost answer made the SDK send it again");
    for id in &ids {
        s.wait_end(id);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("overlap"), "{text}");
    assert_eq!(text.matches("start").count(), 2, "{text}");

    // poscloud stops waiting (killed, Ctrl-C) while its command goes on; the next run's
    // copy waits for the first to end.
    std::fs::remove_file(&log).unwrap();
    let interrupted = s.rig.block(async {
        tokio::time::timeout(
            Duration::from_secs(1),
            remote.run(&SLOW, &inputs, Duration::from_secs(120), no_sink()),
        )
        .await
    });
    assert!(interrupted.is_err(), "gave up waiting while it runs");
    let again = s
        .rig
        .block(remote.run(&SLOW, &inputs, Duration::from_secs(120), no_sink()))
        .unwrap();
    assert_eq!(again.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already runs on this host"),
        "{:?}",
        String::from_utf8_lossy(&again.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("overlap"), "{text}");
    let lines: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(lines, ["start", "end", "start", "end"], "{text}");

    // A read-only action (ACTION=status) takes no lock: it runs beside a copy that runs.
    std::fs::remove_file(&log).unwrap();
    let interrupted = s.rig.block(async {
        tokio::time::timeout(
            Duration::from_secs(1),
            remote.run(&SLOW, &inputs, Duration::from_secs(120), no_sink()),
        )
        .await
    });
    assert!(interrupted.is_err());
    let status = Inputs::new()
        .set("SECS", "0")
        .unwrap()
        .set("ACTION", "status")
        .unwrap();
    let beside = s
        .rig
        .block(remote.run(&SLOW, &status, Duration::from_secs(120), no_sink()))
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&beside.stderr).contains("already runs"),
        "a status waited behind a running copy"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("overlap"), "it ran beside the first: {text}");
}
