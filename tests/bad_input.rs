//! Bad input gets a clear error and the usage exit code, and changes nothing: the recording
//! proxy sees no write call (for most cases no call at all).

mod common;
use common::Rig;

/// Environment changes for one case: set (Some) or removed (None).
type Env<'a> = Vec<(&'a str, Option<&'a str>)>;

#[test]
fn bad_inputs_are_refused_before_any_write() {
    let rig = Rig::new();
    let file = |name: &str, from: &str, to: &str| rig.stack_file(name, from, to);
    let stacks = [
        (
            "net.toml",
            "network = \"192.168.222.0/24\"",
            "network = \"192.168.222.0/33\"",
        ),
        (
            "outside.toml",
            "pos_ip = \"192.168.222.233\"",
            "pos_ip = \"10.1.2.233\"",
        ),
        (
            "gateway.toml",
            "pos_ip = \"192.168.222.233\"",
            "pos_ip = \"192.168.222.1\"",
        ),
        (
            "bcast.toml",
            "pos_ip = \"192.168.222.233\"",
            "pos_ip = \"192.168.222.255\"",
        ),
        ("disk.toml", "disk_gb = 100", "disk_gb = 8"),
        ("type.toml", "small = \"t3.large\"", "small = \"t3large\""),
        (
            "world.toml",
            "admin_cidrs = []",
            "admin_cidrs = [\"0.0.0.0/0\"]",
        ),
        (
            "hostbits.toml",
            "admin_cidrs = []",
            "admin_cidrs = [\"203.0.113.5/24\"]",
        ),
        (
            "unknown.toml",
            "disk_gb = 100",
            "disk_gb = 100\nflavour = \"large\"",
        ),
        (
            "owner.toml",
            "owner = \"125523088429\"",
            "owner = \"centos\"",
        ),
        (
            "public.toml",
            "network = \"192.168.222.0/24\"",
            "network = \"8.8.8.0/24\"",
        ),
    ]
    .map(|(n, a, b)| file(n, a, b));
    // A stack with a POS, and a public host key file for --target cases.
    let pos_stack = rig.stack_file(
        "pos.toml",
        "termination_protection = false",
        &format!(
            "termination_protection = false\n[pos]\napp = \"rti\"\nversion = \"1.0\"\nartifact_url = \"https://a.example/r.tar\"\nartifact_sha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    );
    let cut_stack = rig.stack_file(
        "cut.toml",
        "termination_protection = false",
        &format!(
            "termination_protection = false\n[pos]\napp = \"rti\"\nversion = \"1.0\"\nartifact_url = \"https://a.example/r.tar\"\nartifact_sha256 = \"{}\"\n[cutover]\ndata_dir = \"/usr2/../etc\"\n",
            "0".repeat(64)
        ),
    );
    // TOML type errors and a missing field: line, column and key path, not a byte offset.
    let bad4 = rig.stack_file("bad4.toml", "disk_gb = 100", "disk_gb = \"100\"");
    let bad4_want = format!("{bad4}:3:11: disk_gb: invalid type: string \"100\", expected i64");
    let nourl = rig.stack_file(
        "nourl.toml",
        "termination_protection = false",
        "termination_protection = false\n[pos]\napp = \"rti\"\nversion = \"1.0\"\n",
    );
    let nourl_want = format!("{nourl}:13:1: [pos]: missing field `artifact_url`");
    // A shops file with two bad rows (one of them by its stack file): both named.
    let shops = rig.home.path().join("shops.csv");
    std::fs::write(
        &shops,
        format!("shop,env,stack\n12345678,qa\n1234567x,qa\n23456789,qa,{bad4}\n"),
    )
    .unwrap();
    let shops = shops.to_string_lossy().into_owned();
    let hk = rig.home.path().join("host.pub");
    std::fs::write(
        &hk,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIx5OTVkxcwfrtp9ibVqL7gTTxNyUsbTZDK2uHxFpmDT host\n",
    )
    .unwrap();
    let hk = hk.to_string_lossy().into_owned();
    let p = "provision";
    let cases: Vec<(Vec<&str>, Env, &str)> = vec![
        (vec![p, "--shop", "1234567"], vec![], "exactly 8 digits"),
        (vec![p, "--shop", "123456789"], vec![], "exactly 8 digits"),
        (
            vec![p, "--shop", "12345678; rm -rf /"],
            vec![],
            "exactly 8 digits",
        ),
        (vec![p, "--shop", "abcdefgh"], vec![], "exactly 8 digits"),
        (
            vec![p, "--shop", "12345678", "--env", "staging"],
            vec![],
            "invalid value 'staging'",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", "/nonexistent/x.toml"],
            vec![],
            "cannot read stack file",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", "huge"],
            vec![],
            "unknown stack \"huge\"",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[0]],
            vec![],
            "`network`",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[1]],
            vec![],
            "outside the network",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[2]],
            vec![],
            "reserved by AWS",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[3]],
            vec![],
            "reserved by AWS",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[4]],
            vec![],
            "`disk_gb`: 8 GB is outside",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[5]],
            vec![],
            "`sizes.small`",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[6]],
            vec![],
            "whole internet",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[7]],
            vec![],
            "did you mean 203.0.113.0/24",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[8]],
            vec![],
            "unknown field `flavour`",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[9]],
            vec![],
            "`ami.owner`",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &stacks[10]],
            vec![],
            "not a private",
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &bad4],
            vec![],
            bad4_want.as_str(),
        ),
        (
            vec![p, "--shop", "12345678", "--stack", &nourl],
            vec![],
            nourl_want.as_str(),
        ),
        (
            vec![p, "--shop", "12345678", "--size", "huge"],
            vec![],
            "invalid value 'huge'",
        ),
        (
            vec![p, "--shop", "12345678", "--output", "yaml"],
            vec![],
            "invalid value 'yaml'",
        ),
        (
            vec![p, "--shop", "12345678", "--region", "moon-base"],
            vec![],
            "not an AWS region",
        ),
        (
            vec![p, "--shop", "12345678", "--endpoint-url", "ftp://example"],
            vec![],
            "must start with http",
        ),
        (
            vec![p, "--shop", "12345678", "--env", "qa"],
            vec![("AWS_ACCESS_KEY_ID", None), ("AWS_SECRET_ACCESS_KEY", None)],
            "no usable AWS credentials",
        ),
        (
            vec![p, "--shop", "12345678", "--env", "qa"],
            vec![("AWS_REGION", None)],
            "no AWS region",
        ),
        (
            vec![
                p,
                "--shop",
                "12345678",
                "--env",
                "qa",
                "--journal",
                "/proc/1/nope/journal.jsonl",
            ],
            vec![],
            "journal",
        ),
        (
            vec!["teardown", "--shop", "1234"],
            vec![],
            "exactly 8 digits",
        ),
        (
            vec!["status", "--shop", "12345678", "--stack", &stacks[4]],
            vec![],
            "disk_gb",
        ),
        (
            vec!["plan", "--shop", "12345678", "--env", "test"],
            vec![],
            "invalid value 'test'",
        ),
        (
            vec![p, "--shop", "12345678", "--target", "http://10.0.0.1"],
            vec![],
            "use ssh://user@host",
        ),
        (
            vec![p, "--shop", "12345678", "--target", "ssh://root@10.0.0.1"],
            vec![],
            "--target needs --host-key-file",
        ),
        (
            vec![
                p,
                "--shop",
                "12345678",
                "--env",
                "qa",
                "--restore-from",
                "file:///srv/b/",
            ],
            vec![],
            "has no [pos] section",
        ),
        (
            vec![
                p,
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--restore-from",
                "s3://b/x.zip",
            ],
            vec![],
            "an s3 source is s3://bucket/key",
        ),
        (
            vec![
                p,
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--restore-from",
                "s3://Bad_Bucket/x.tar.gz",
            ],
            vec![],
            "an s3 source is s3://bucket/key",
        ),
        (
            vec![
                p,
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--restore-from",
                "s3://backups/x.tar.gz",
                "--target",
                "ssh://root@10.0.0.1",
                "--host-key-file",
                &hk,
            ],
            vec![],
            "needs AWS",
        ),
        (
            vec![
                "image",
                "delete",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--image",
                "Bad Image",
            ],
            vec![],
            "not an image reference",
        ),
        (
            vec!["image", "build", "--shop", "12345678", "--env", "qa"],
            vec![],
            "has no `version`",
        ),
        (
            vec![
                "vpn",
                "create",
                "--shop",
                "12345678",
                "--location",
                "Main Store",
                "--peer-ip",
                "5.6.7.8",
                "--peer-net",
                "10.50.0.0/24",
            ],
            vec![],
            "--location",
        ),
        (
            vec![
                "vpn",
                "create",
                "--shop",
                "12345678",
                "--location",
                "main",
                "--peer-ip",
                "10.1.1.1",
                "--peer-net",
                "10.50.0.0/24",
            ],
            vec![],
            "not a public unicast address",
        ),
        (
            vec![
                "vpn",
                "create",
                "--shop",
                "12345678",
                "--location",
                "main",
                "--peer-ip",
                "5.6.7.8",
                "--peer-net",
                "192.168.222.0/25",
            ],
            vec![],
            "overlaps the POS network",
        ),
        (
            vec![
                "vpn",
                "create",
                "--shop",
                "12345678",
                "--location",
                "main",
                "--peer-ip",
                "5.6.7.8",
                "--peer-net",
                "10.50.0.0/24,10.50.0.0/16",
            ],
            vec![],
            "overlaps 10.50.0.0/24",
        ),
        (
            vec![
                "vpn",
                "create",
                "--shop",
                "12345678",
                "--location",
                "main",
                "--peer-ip",
                "5.6.7.8",
                "--peer-net",
                "10.50.0.0/24",
                "--ike-version",
                "1",
                "--proposal",
                "aes128-sha1-modp1024",
            ],
            vec![],
            "is weak",
        ),
        (
            vec![
                "vpn",
                "create",
                "--shop",
                "12345678",
                "--location",
                "main",
                "--peer-ip",
                "5.6.7.8",
                "--peer-net",
                "10.50.0.0/24",
                "--target",
                "ssh://root@10.0.0.1",
                "--host-key-file",
                &hk,
            ],
            vec![],
            "--target is not supported",
        ),
        (
            vec![
                "vpn",
                "sheet",
                "--shop",
                "12345678",
                "--location",
                "main",
                "--reveal",
            ],
            vec![],
            "only to a terminal",
        ),
        (
            vec!["vpn", "stop", "--shop", "12345678", "--location", "../x"],
            vec![],
            "--location",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "root@10.5.0.9",
                "--from-host-key-file",
                &hk,
            ],
            vec![],
            "use ssh://user@host[:port]",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@10.5.0.9/usr2",
                "--from-host-key-file",
                &hk,
            ],
            vec![],
            "no path here",
        ),
        (
            vec![
                "cutover",
                "plan",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@10.5.0.9",
            ],
            vec![],
            "--from-host-key-file",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@shop-server",
                "--from-host-key-file",
                &hk,
            ],
            vec![],
            "give --from-lan",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@10.5.0.9",
                "--from-host-key-file",
                &hk,
                "--from-lan",
                "10.5.0.300",
            ],
            vec![],
            "--from-lan \"10.5.0.300\"",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@10.5.0.9",
                "--from-host-key-file",
                &hk,
                "--app",
                "daisy",
            ],
            vec![],
            "but the stack's POS is rti",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--env",
                "qa",
                "--from",
                "ssh://root@10.5.0.9",
                "--from-host-key-file",
                &hk,
            ],
            vec![],
            "no [pos] section",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &cut_stack,
                "--from",
                "ssh://root@10.5.0.9",
                "--from-host-key-file",
                &hk,
            ],
            vec![],
            "`cutover.data_dir`",
        ),
        (
            vec![
                "cutover",
                "run",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@10.5.0.9",
                "--from-host-key-file",
                &hk,
                "--until",
                "lunch",
            ],
            vec![],
            "invalid value 'lunch'",
        ),
        (
            vec![
                "cutover",
                "rollback",
                "--shop",
                "12345678",
                "--stack",
                &pos_stack,
                "--from",
                "ssh://root@10.5.0.9",
                "--from-host-key-file",
                &hk,
                "--target",
                "ssh://root@10.0.0.1",
                "--host-key-file",
                &hk,
            ],
            vec![],
            "--target is not supported",
        ),
        // Reports.
        (
            vec!["report", "billing", "--month", "2026-13"],
            vec![],
            "use YYYY-MM",
        ),
        (
            vec!["report", "billing", "--month", "2999-01"],
            vec![],
            "has not begun",
        ),
        (
            vec!["report", "billing", "--stack", &stacks[5]],
            vec![],
            "t3large",
        ),
        (
            vec!["report", "compliance", "--max-psk-age", "a year"],
            vec![],
            "--max-psk-age",
        ),
        (
            vec!["report", "compliance", "--shop", "1234"],
            vec![],
            "exactly 8 digits",
        ),
        (
            vec!["report", "compliance", "--stack", &stacks[6]],
            vec![],
            "0.0.0.0/0",
        ),
    ];
    assert!(cases.len() >= 30);
    for (args, env, expect) in &cases {
        rig.proxy.reset();
        let r = rig.run_env(args, env);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(expect),
            "{args:?}: expected {expect:?} in:\n{}",
            r.stderr
        );
        assert_eq!(rig.proxy.writes(), Vec::<String>::new(), "{args:?} wrote");
        assert!(
            rig.proxy.calls().is_empty(),
            "{args:?} called AWS: {:?}",
            rig.proxy.calls()
        );
    }
    assert!(rig.tagged("12345678", "prod").is_empty() && rig.tagged("12345678", "qa").is_empty());

    rig.proxy.reset();
    let r = rig.run(&[p, "--shops-file", &shops]);
    assert_eq!(r.code, 2, "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines[0].starts_with(&format!("error: {shops}:3: shop \"1234567x\"")),
        "{}",
        r.stderr
    );
    assert_eq!(lines[1], format!("{shops}:4: {bad4_want}"), "{}", r.stderr);
    assert_eq!(lines[2], "(2 bad rows; nothing was changed)");
    assert!(rig.proxy.calls().is_empty(), "{:?}", rig.proxy.calls());
}

#[test]
fn teardown_without_a_terminal_needs_yes() {
    let rig = Rig::new();
    rig.provision_infra("12345678", "dev").ok();
    rig.proxy.reset();
    let r = rig.run(&["teardown", "--shop", "12345678", "--env", "dev"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());
}

#[test]
fn region_limits_are_checked_before_any_write() {
    let rig = Rig::new();
    // The emulator's region has its default VPC, so a limit of 1 is already used up.
    let stack = rig.stack_file("quota.toml", "vpcs_per_region = 5", "vpcs_per_region = 1");
    let r = rig.run(&[
        "provision",
        "--shop",
        "12345678",
        "--env",
        "qa",
        "--until",
        "infra",
        "--stack",
        &stack,
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("1 of 1 VPCs in use"), "{}", r.stderr);
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    // Elastic IPs: the emulator reports 5; take 4 so the stack's 2 do not fit.
    rig.block(async {
        for _ in 0..4 {
            rig.ec2
                .allocate_address()
                .domain(aws_sdk_ec2::types::DomainType::Vpc)
                .send()
                .await
                .unwrap();
        }
    });
    let r = rig.provision_infra("12345678", "qa");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("4 of 5 Elastic IPs in use; this stack needs 2 more"),
        "{}",
        r.stderr
    );
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());
}

#[test]
fn json_errors_are_one_document() {
    let rig = Rig::new();
    let r = rig.run(&[
        "status", "--shop", "12345678", "--env", "qa", "--output", "json", "--region", "nowhere",
    ]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["exit_code"], 2);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("not an AWS region"));
}
