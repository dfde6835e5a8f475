//! Errors that say where and what next: a mistyped profile or region is named before any AWS
//! call; failures that cannot heal fail at the first attempt with a hint; `-v` shows every
//! AWS call. Only loopback is ever contacted: where a command could reach AWS's own
//! endpoints, every service's endpoint is pointed at the recording proxy instead.

mod common;
use common::{Rig, Run};
use std::process::{Child, Command, Stdio};

/// Every service poscloud calls, sent to `url` by the SDK's per-service endpoint variables
/// (which poscloud does not see as --endpoint-url, so its region check applies).
fn service_endpoints(url: &str) -> Vec<(String, Option<String>)> {
    let mut env: Vec<(String, Option<String>)> = ["EC2", "IAM", "SSM", "S3", "STS"]
        .iter()
        .map(|s| (format!("AWS_ENDPOINT_URL_{s}"), Some(url.to_string())))
        .collect();
    env.push(("AWS_ENDPOINT_URL".into(), None));
    env
}

fn run_env(rig: &Rig, args: &[&str], env: &[(String, Option<String>)]) -> Run {
    let env: Vec<(&str, Option<&str>)> = env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    rig.run_env(args, &env)
}

fn first_line(r: &Run) -> &str {
    r.stderr.lines().next().unwrap_or("")
}

#[test]
fn a_mistyped_profile_is_named_with_the_known_ones() {
    let rig = Rig::new();
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
    let (c, k) = (config.to_string_lossy(), credentials.to_string_lossy());
    let files = vec![
        ("AWS_CONFIG_FILE".to_string(), Some(c.to_string())),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_string(),
            Some(k.to_string()),
        ),
    ];
    let with = |extra: &[(&str, Option<&str>)]| {
        let mut env = files.clone();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string))),
        );
        env
    };
    let want = format!(
        "error: AWS profile `floris` is not in {c} or {k} (did you mean florist?); known profiles: default, florist, qa"
    );
    for (args, env) in [
        (vec!["list"], with(&[("AWS_PROFILE", Some("floris"))])),
        (vec!["list", "--profile", "floris"], with(&[])),
        // With a region the SDK's credential chain failed in the middle of a long dump.
        (
            vec!["list", "--region", "eu-west-1"],
            with(&[("AWS_PROFILE", Some("floris")), ("AWS_REGION", None)]),
        ),
    ] {
        rig.proxy.reset();
        let r = run_env(&rig, &args, &env);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert_eq!(first_line(&r), want, "{args:?}");
        assert!(r.stderr.contains("next: pass --profile"), "{}", r.stderr);
        assert!(
            rig.proxy.calls().is_empty(),
            "{args:?}: {:?}",
            rig.proxy.calls()
        );
    }

    // A profile without a region: the message names the profile it looked in.
    let r = run_env(
        &rig,
        &["list"],
        &with(&[("AWS_PROFILE", Some("florist")), ("AWS_REGION", None)]),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        first_line(&r).starts_with(&format!("error: no AWS region: profile `florist` in {c}")),
        "{}",
        r.stderr
    );
    assert!(rig.proxy.calls().is_empty());

    // Profiles that exist, in either file, are taken.
    for profile in ["qa", "florist", "default"] {
        let r = run_env(&rig, &["list"], &with(&[("AWS_PROFILE", Some(profile))]));
        assert_eq!(r.code, 0, "{profile}: {r:?}");
    }
}

#[test]
fn an_unknown_region_is_refused_before_any_call() {
    let rig = Rig::new();
    let status = ["status", "--shop", "12345678", "--env", "qa"];
    let proxied = service_endpoints(&rig.proxy.url());
    for (args, env) in [
        ([&status[..], &["--region", "us-esat-1"]].concat(), vec![]),
        (
            status.to_vec(),
            vec![("AWS_REGION".to_string(), Some("us-esat-1".to_string()))],
        ),
    ] {
        rig.proxy.reset();
        let env = [proxied.clone(), env].concat();
        let r = run_env(&rig, &args, &env);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(
            first_line(&r)
                .starts_with("error: unknown region `us-esat-1` (did you mean us-east-1?)"),
            "{}",
            r.stderr
        );
        assert!(rig.proxy.calls().is_empty(), "{:?}", rig.proxy.calls());
    }

    // `userdata` (no AWS call) checks the region as well; a region newer than this build
    // is allowed explicitly.
    let userdata = [
        "userdata",
        "--shop",
        "12345678",
        "--env",
        "qa",
        "--region",
        "us-esat-1",
    ];
    let r = rig.run(&userdata);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("unknown region `us-esat-1`"),
        "{}",
        r.stderr
    );
    let allow = [("POSCLOUD_ALLOW_REGION", Some("us-esat-1"))];
    rig.run_env(&userdata, &allow).ok();

    // Behind --endpoint-url any region of the right form is taken: here the region passes
    // and the call then meets the closed port (moto itself knows only AWS's regions).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let r = rig.run(
        &[
            &status[..],
            &["--region", "us-esat-1", "--endpoint-url", &url],
        ]
        .concat(),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("cannot reach AWS in us-esat-1"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_refused_endpoint_fails_at_the_first_attempt_with_a_hint() {
    let rig = Rig::new();
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let r = rig.run(&[
        "-v",
        "status",
        "--shop",
        "12345678",
        "--env",
        "qa",
        "--endpoint-url",
        &url,
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("cannot reach AWS in us-east-1"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    // A refused connection cannot heal by asking again: no retries (8 attempts would take
    // most of a minute).
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "next: nothing accepts connections there (not retried): is the endpoint right"
        ),
        "{}",
        r.stderr
    );
    // The -v log: each call (status asks several at once) made one attempt, no answer.
    let calls: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(" DEBUG AWS "))
        .collect();
    assert!(!calls.is_empty(), "{}", r.stderr);
    for c in calls {
        assert!(
            c.contains(": no answer (")
                && c.contains("Connection refused")
                && c.ends_with(", 1 attempt"),
            "{c}"
        );
    }
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
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
    let rig = Rig::new();
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
        let r = rig.run_env(
            &list,
            &[
                ("AWS_ACCESS_KEY_ID", Some(creds.0)),
                ("AWS_SECRET_ACCESS_KEY", Some(creds.1)),
            ],
        );
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(hint), "{}", r.stderr);
        let calls: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains(" DEBUG AWS "))
            .collect();
        assert!(!calls.is_empty(), "{}", r.stderr);
        for c in calls {
            assert!(c.contains(": HTTP 40") && c.ends_with(", 1 attempt"), "{c}");
        }
        assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
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
    let r = rig
        .run(&["status", "--shop", "12345678", "--env", "qa"])
        .ok();
    assert!(!r.stderr.contains(" DEBUG AWS "), "no call log without -v");
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
    let r = run_env(
        &rig,
        &[&status[..], &["--region", "us-esat-1"]].concat(),
        &service_endpoints(&rig.proxy.url()),
    );
    assert_eq!(r.code, 2, "{r:?}");
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
    // The text on stderr stays as it was: message, then the next step.
    assert!(
        r.stderr
            .contains("not one of AWS's regions\n  next: check --region"),
        "{}",
        r.stderr
    );

    // An AWS endpoint nobody answers at: classified where the SDK's error became ours.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let r = rig.run(&[&status[..], &["--endpoint-url", &url]].concat());
    assert_eq!(r.code, 1, "{r:?}");
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
    let r = rig.run(&[&status[..], &["--region", "nowhere"]].concat());
    assert_eq!(r.code, 2, "{r:?}");
    let doc = r.json();
    assert_eq!(doc["kind"], "invalid-input", "{doc}");
    assert!(doc["next"].is_null(), "{doc}");
}
