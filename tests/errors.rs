//! Errors that say where and what next: a mistyped profile or region is named before any AWS
//! call; failures that cannot heal fail at the first attempt with a hint; `-v` shows every
//! AWS call. Only loopback is ever contacted: where a command could reach AWS's own
//! endpoints, every service's endpoint is pointed at the recording proxy instead.

mod common;
use common::{Poscloud, Rig, Run};
use std::process::{Child, Command, Stdio};

/// Every service poscloud calls, sent to `url` by the SDK's per-service endpoint variables
/// (which poscloud does not see as --endpoint-url, so its region check applies).
fn service_endpoints<'r>(cmd: Poscloud<'r>, url: &str) -> Poscloud<'r> {
    ["EC2", "IAM", "SSM", "S3", "STS"]
        .iter()
        .fold(cmd, |c, s| c.env(&format!("AWS_ENDPOINT_URL_{s}"), url))
        .env_remove("AWS_ENDPOINT_URL")
}

/// A loopback URL nobody listens on.
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// AWS configuration files with profiles `default` (a region only) and `florist` (no
/// region) in the config file, `qa` (keys only) in the credentials file.
struct Profiles {
    config: String,
    credentials: String,
}

impl Profiles {
    fn write(rig: &Rig) -> Profiles {
        let config = rig.home.path().join("aws-config");
        let credentials = rig.home.path().join("aws-credentials");
        std::fs::write(
            &config,
            "[default]\nregion = us-east-1\n[profile florist]\noutput = json\n",
        )
        .unwrap();
        std::fs::write(
            &credentials,
            "[qa]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )
        .unwrap();
        Profiles {
            config: config.to_string_lossy().into_owned(),
            credentials: credentials.to_string_lossy().into_owned(),
        }
    }

    /// `poscloud ARGS` with these files.
    fn poscloud<'r>(&self, rig: &'r Rig, args: &[&str]) -> Poscloud<'r> {
        rig.poscloud(args)
            .env("AWS_CONFIG_FILE", &self.config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
    }

    /// The run is refused as a mistyped profile `floris`, before any AWS call.
    fn refuses_floris(&self, r: Run) {
        let (c, k) = (&self.config, &self.credentials);
        r.status(2)
            .stderr_first_line(&format!(
                "error: AWS profile `floris` is not in {c} or {k} (did you mean florist?); known profiles: default, florist, qa"
            ))
            .stderr_has("next: pass --profile")
            .no_aws_call();
    }
}

#[test]
fn a_mistyped_profile_in_aws_profile_is_named_with_the_known_ones() {
    let rig = Rig::offline();
    let p = Profiles::write(&rig);
    p.refuses_floris(
        p.poscloud(&rig, &["list"])
            .env("AWS_PROFILE", "floris")
            .run(),
    );
}

#[test]
fn a_mistyped_profile_in_the_flag_is_named_with_the_known_ones() {
    let rig = Rig::offline();
    let p = Profiles::write(&rig);
    p.refuses_floris(p.poscloud(&rig, &["list", "--profile", "floris"]).run());
}

#[test]
fn a_mistyped_profile_beside_a_region_is_named_with_the_known_ones() {
    // With a region the SDK's credential chain failed in the middle of a long dump.
    let rig = Rig::offline();
    let p = Profiles::write(&rig);
    let r = p
        .poscloud(&rig, &["list", "--region", "eu-west-1"])
        .env("AWS_PROFILE", "floris")
        .env_remove("AWS_REGION")
        .run();
    p.refuses_floris(r);
}

#[test]
fn a_profile_without_a_region_is_named_in_the_error() {
    let rig = Rig::offline();
    let p = Profiles::write(&rig);
    let r = p
        .poscloud(&rig, &["list"])
        .env("AWS_PROFILE", "florist")
        .env_remove("AWS_REGION")
        .run()
        .status(2)
        .no_aws_call();
    let want = format!("error: no AWS region: profile `florist` in {}", p.config);
    if !r.first_line().starts_with(&want) {
        r.fail(format_args!("the first line does not start with {want:?}"));
    }
}

#[test]
fn profiles_that_exist_in_either_file_are_taken() {
    let rig = Rig::new();
    let p = Profiles::write(&rig);
    for profile in ["qa", "florist", "default"] {
        p.poscloud(&rig, &["list"])
            .env("AWS_PROFILE", profile)
            .run()
            .ok();
    }
}

const STATUS: [&str; 5] = ["status", "--shop", "12345678", "--env", "qa"];

/// Refused as the mistyped region us-esat-1, before any call.
fn refuses_us_esat_1(r: Run) {
    let r = r.status(2).no_aws_call();
    let want = "error: unknown region `us-esat-1` (did you mean us-east-1?)";
    if !r.first_line().starts_with(want) {
        r.fail(format_args!("the first line does not start with {want:?}"));
    }
}

#[test]
fn an_unknown_region_flag_is_refused_before_any_call() {
    let rig = Rig::offline();
    let cmd = rig.poscloud(STATUS).args(["--region", "us-esat-1"]);
    refuses_us_esat_1(service_endpoints(cmd, &rig.proxy.url()).run());
}

#[test]
fn an_unknown_region_in_aws_region_is_refused_before_any_call() {
    let rig = Rig::offline();
    let cmd = rig.poscloud(STATUS).env("AWS_REGION", "us-esat-1");
    refuses_us_esat_1(service_endpoints(cmd, &rig.proxy.url()).run());
}

#[test]
fn userdata_checks_the_region_too_and_a_newer_one_may_be_allowed() {
    // `userdata` makes no AWS call; a region newer than this build is allowed explicitly.
    let rig = Rig::offline();
    let userdata = [
        "userdata",
        "--shop",
        "12345678",
        "--env",
        "qa",
        "--region",
        "us-esat-1",
    ];
    rig.run(&userdata)
        .status(2)
        .stderr_has("unknown region `us-esat-1`");
    rig.poscloud(userdata)
        .env("POSCLOUD_ALLOW_REGION", "us-esat-1")
        .run()
        .ok();
}

#[test]
fn behind_an_endpoint_url_any_region_of_the_right_form_is_taken() {
    // The region passes and the call then meets the closed port (moto itself knows only
    // AWS's regions).
    let rig = Rig::offline();
    let url = closed_port_url();
    rig.poscloud(STATUS)
        .args(["--region", "us-esat-1", "--endpoint-url", &url])
        .run()
        .status(1)
        .stderr_has("cannot reach AWS in us-esat-1");
}

#[test]
fn a_refused_endpoint_fails_at_the_first_attempt_with_a_hint() {
    let rig = Rig::offline();
    let url = closed_port_url();
    let r = rig
        .poscloud(["-v"])
        .args(STATUS)
        .args(["--endpoint-url", &url])
        .run()
        .status(1)
        .stderr_has("cannot reach AWS in us-east-1")
        .stderr_has(&url)
        // A refused connection cannot heal by asking again: no retries (8 attempts would
        // take most of a minute).
        .stderr_lacks("retrying")
        .stderr_has("next: nothing accepts connections there (not retried): is the endpoint right");
    // The -v log: each call (status asks several at once) made one attempt, no answer.
    let calls: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(" DEBUG AWS "))
        .collect();
    assert!(!calls.is_empty(), "{r:?}");
    for c in calls {
        assert!(
            c.contains(": no answer (")
                && c.contains("Connection refused")
                && c.ends_with(", 1 attempt"),
            "{c}"
        );
    }
}

/// An emulator that checks credentials as AWS does (moto's IAM authentication, on after the
/// first `free` requests): a key it does not know is refused, a known one without a policy
/// is denied. Stopped (by PID) when dropped.
struct AuthEmulator {
    child: Child,
    url: String,
}

impl AuthEmulator {
    fn start(free: u32) -> AuthEmulator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(common::repo().join(".venv/bin/python"))
            .arg(common::repo().join("tests/rig/emulator.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the emulator");
        let url = format!("http://127.0.0.1:{port}");
        assert!(
            common::eventually(std::time::Duration::from_secs(60), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "the emulator did not start on {port}"
        );
        AuthEmulator { child, url }
    }
}

impl Drop for AuthEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn refused_credentials_and_missing_permissions_fail_at_once_with_a_hint() {
    // The AWS behind poscloud is this one, not the rig's.
    let rig = Rig::offline();
    // Two free requests: the user and its access key, made here.
    let emu = AuthEmulator::start(2);
    let (key, secret) = rig.block(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&emu.url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "setup", "setup", None, None, "tests",
            ))
            .load()
            .await;
        let iam = aws_sdk_iam::Client::new(&conf);
        iam.create_user()
            .user_name("night-shift")
            .send()
            .await
            .unwrap();
        let k = iam
            .create_access_key()
            .user_name("night-shift")
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        (k.access_key_id, k.secret_access_key)
    });
    let list = ["-v", "list", "--endpoint-url", emu.url.as_str()];
    for (creds, hint) in [
        (
            ("AKIAUNKNOWNKEY000000", "wrong"),
            "next: the credentials were refused",
        ),
        (
            (key.as_str(), secret.as_str()),
            "next: these credentials lack a permission",
        ),
    ] {
        let r = rig
            .poscloud(list)
            .env("AWS_ACCESS_KEY_ID", creds.0)
            .env("AWS_SECRET_ACCESS_KEY", creds.1)
            .run()
            .status(1)
            .stderr_has(hint)
            .stderr_lacks("retrying");
        let calls: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains(" DEBUG AWS "))
            .collect();
        assert!(!calls.is_empty(), "{}", r.stderr);
        for c in calls {
            assert!(c.contains(": HTTP 40") && c.ends_with(", 1 attempt"), "{c}");
        }
    }
}

#[test]
fn verbose_shows_every_aws_call_and_steps_and_journal_have_milliseconds() {
    let rig = Rig::new();
    rig.proxy.reset();
    let r = rig
        .run(&[
            "-v",
            "--output",
            "json",
            "provision",
            "--shop",
            "12345678",
            "--env",
            "qa",
            "--until",
            "infra",
        ])
        .ok();
    r.json(); // stdout is still the one JSON document
    let calls: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(" DEBUG AWS "))
        .collect();
    // One line per call the proxy saw (no faults: one attempt each).
    assert_eq!(calls.len(), rig.proxy.calls().len(), "{}", r.stderr);
    for c in &calls {
        // 2026-12-01T18:40:01.123456Z DEBUG AWS EC2 CreateVpc: HTTP 200 in 12ms, 1 attempt
        let time = c.split_whitespace().next().unwrap();
        assert!(
            humantime::parse_rfc3339(time).is_ok() && time.contains('.'),
            "no timestamp: {c}"
        );
        assert!(c.contains(": HTTP ") && c.ends_with(", 1 attempt"), "{c}");
    }
    // Service and operation, and the resource where the request names one.
    for want in [
        "AWS EC2 CreateVpc: HTTP 200 in ",
        "AWS IAM GetInstanceProfile poscloud-12345678-qa: HTTP 404 in ",
        "AWS EC2 CreateSubnet vpc-",
        "AWS IAM CreateRole poscloud-12345678-qa",
        "AWS SSM PutParameter /poscloud/12345678/qa/",
    ] {
        assert!(calls.iter().any(|c| c.contains(want)), "{want}: {calls:#?}");
    }

    // Text mode: no call log without -v; a new stack's steps in milliseconds, not 0.0s.
    rig.run(&STATUS).ok().stderr_lacks(" DEBUG AWS ");
    let r = rig.provision_infra("23456789", "qa").ok();
    let steps: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with('✓')).collect();
    assert!(!steps.is_empty(), "{}", r.stderr);
    for s in steps {
        let took = s.rsplit_once('(').unwrap().1.trim_end_matches(')');
        let ok = took
            .strip_suffix("ms")
            .is_some_and(|n| n.parse::<u32>().is_ok())
            || took
                .strip_suffix('s')
                .and_then(|n| n.split_once('.'))
                .is_some_and(|(_, f)| f.len() == 3);
        assert!(ok, "{s}");
    }

    // Journal lines: RFC 3339 with milliseconds.
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    for line in journal.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["time"].as_str().unwrap();
        assert!(t.len() == 24 && &t[19..20] == ".", "{t}");
    }
}

#[test]
fn json_errors_carry_their_kind_and_next_step_as_fields() {
    let rig = Rig::new();
    let status = [
        "status", "--shop", "12345678", "--env", "qa", "--output", "json",
    ];
    // Bad input: the message without its advice, the advice as its own field.
    // (AWS's own endpoints, as a user has them: a custom one takes any region name.)
    let r = service_endpoints(
        rig.poscloud(status).args(["--region", "us-esat-1"]),
        &rig.proxy.url(),
    )
    .run()
    .status(2)
    // The text on stderr stays as it was: message, then the next step.
    .stderr_has("not one of AWS's regions\n  next: check --region");
    let doc = r.json();
    assert_eq!(doc["kind"], "invalid-input", "{doc}");
    assert_eq!(doc["exit_code"], 2, "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(error.starts_with("unknown region `us-esat-1`"), "{doc}");
    assert!(!error.contains("next:"), "{doc}");
    assert!(
        doc["next"]
            .as_str()
            .unwrap()
            .starts_with("check --region, AWS_REGION"),
        "{doc}"
    );

    // An AWS endpoint nobody answers at: classified where the SDK's error became ours.
    let r = rig
        .poscloud(status)
        .args(["--endpoint-url", &closed_port_url()])
        .run()
        .status(1);
    let doc = r.json();
    assert_eq!(doc["kind"], "unreachable", "{doc}");
    assert!(
        doc["next"]
            .as_str()
            .unwrap()
            .starts_with("nothing accepts connections there"),
        "{doc}"
    );

    // An error without advice has a null next.
    let r = rig
        .poscloud(status)
        .args(["--region", "nowhere"])
        .run()
        .status(2);
    let doc = r.json();
    assert_eq!(doc["kind"], "invalid-input", "{doc}");
    assert!(doc["next"].is_null(), "{doc}");
}
