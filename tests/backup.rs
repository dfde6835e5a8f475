//! Backups on the default path, through the binary: provision installs the host's backup job
//! (its systemd timer written below the host's root: the test hosts have no systemd); `backup
//! run` sends the same script the timer runs through SSM; the host archives its data, signs
//! its own S3 requests with the instance role (the emulator's IMDS) and uploads through a
//! proxy on its veth; `backup list|verify` read S3 only; `pos restore --from latest` brings the
//! data back after damage, byte for byte. A second app whose rule is its own quiesce command
//! shows a backup taken while the POS writes is consistent by that rule.
//!
//! Looser than AWS: moto does not check the upload's SigV4 signature (tests/vpn_host.rs and
//! `the_upload_is_signed_as_aws_checks_it` below check it against botocore's signer), and
//! never runs lifecycle rules (the rules are read back; expiry itself is AWS's).

mod common;
use common::host::{Setup, TestHost};
use common::{Proxy, Rig, REGION};
use std::collections::BTreeMap;
use std::path::Path;

const SHOP: &str = "56780001";
const SHOP2: &str = "56780002";

/// A host bound to SHOP's instance, its agent given IMDS and S3 through a proxy on its veth
/// (which the caller keeps alive), and a stack with `pos` (the app's section).
fn setup(rig: Rig, shop: &'static str, name: &str, index: u8, pos: &str) -> (Setup, Proxy) {
    let h = TestHost::up(name, index, true);
    let proxy = Proxy::start_on(&h.root_side(), rig.emu.port);
    h.bind(&rig, shop, "qa");
    h.finish_userdata();
    let url = proxy.url();
    h.agent_env(&[
        ("POSCLOUD_IMDS_URL", url.as_str()),
        ("POSCLOUD_S3_URL", &format!("{url}/")),
    ]);
    h.agent_start();
    h.console(None);
    let (_, sum) = h.pos_artifact("echo v1 >/opt/pos/app/version\n");
    let base = std::fs::read_to_string(common::repo().join("stacks/qa.toml")).unwrap();
    let stack = rig.home.path().join(format!("{shop}.toml"));
    std::fs::write(&stack, base + &pos.replace("SUM", &sum)).unwrap();
    (
        Setup::new(rig, h, shop, stack.to_string_lossy().into_owned()),
        proxy,
    )
}

const RTI: &str = "\n[pos]\napp = \"rti\"\nimage = \"poscloud/base:test\"\nartifact_url = \"file:///srv/pos-rti.tar\"\nartifact_sha256 = \"SUM\"\nmemory = \"256m\"\n";

/// Every entry below `dir` (names, content, modes), MANIFEST.sha256 aside (a restore adds it).
fn tree(dir: &Path) -> BTreeMap<Vec<u8>, common::data::Entry> {
    let mut t = common::data::snapshot(dir);
    t.remove(b"MANIFEST.sha256".as_slice());
    t
}

fn bucket() -> String {
    poscloud::aws::s3::output_bucket_name("123456789012", REGION)
}

/// The keys under `prefix` of the region's bucket, as the test's own S3 client sees them.
fn keys(rig: &Rig, prefix: &str) -> Vec<String> {
    rig.rt
        .block_on(
            rig.s3
                .list_objects_v2()
                .bucket(bucket())
                .prefix(prefix)
                .send(),
        )
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

fn started_at(h: &TestHost) -> String {
    h.docker(&["inspect", "-f", "{{.State.StartedAt}}", "pos"])
        .1
}

#[test]
fn backup_then_damage_then_restore_latest_gives_the_data_back() {
    let (s, proxy) = setup(Rig::new(), SHOP, "bkup1", 44, RTI);
    let out = s.run(&["provision"]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("backup") && l.contains(" done ")),
        "{}",
        out.stdout
    );
    // The job as systemd would run it: the script, its settings, a daily timer.
    let timer = s.h.root.join("etc/systemd/system/poscloud-backup.timer");
    let t = std::fs::read_to_string(&timer).unwrap();
    assert!(t.contains("OnCalendar=*-*-* 08:00:00"), "{t}");
    let conf = std::fs::read_to_string(s.h.root.join("etc/poscloud/backup.conf")).unwrap();
    assert!(
        conf.contains("DAILY_DAYS=7\n") && conf.contains(&format!("PREFIX={SHOP}/qa/backups/\n")),
        "{conf}"
    );
    // The bucket expires what is tagged poscloud:keep=7d after 7 days.
    let rules = s
        .rig
        .rt
        .block_on(
            s.rig
                .s3
                .get_bucket_lifecycle_configuration()
                .bucket(bucket())
                .send(),
        )
        .unwrap();
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.id() == Some("poscloud-backup-keep-7d"))
        .expect("a 7-day rule");
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(7));
    let tag = rule.filter().and_then(|f| f.tag()).expect("a tag filter");
    assert_eq!((tag.key(), tag.value()), ("poscloud:keep", "7d"));

    // The florist's data: odd names, binary, empty, nested.
    let data = s.h.root.join("var/lib/poscloud/data/rti");
    std::fs::create_dir_all(data.join("sub dir/ünï")).unwrap();
    for i in 0..30u32 {
        let body: Vec<u8> = (0..i * 101).map(|b| (b * 7 % 251) as u8).collect();
        std::fs::write(data.join(format!("sub dir/ünï/order {i}.dat")), body).unwrap();
    }
    std::fs::write(data.join("new\nline"), b"n").unwrap();
    std::fs::write(data.join("back\\slash"), b"b").unwrap();
    std::fs::write(data.join("-leading"), b"").unwrap();
    let original = tree(&data);
    let files = original
        .values()
        .filter(|e| matches!(e, common::data::Entry::File { .. }))
        .count();

    // No backup yet: the compliance rule says so (exit 1), and passes after the first.
    let rule = |out: &common::Run| {
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let checks = doc["stacks"][0]["checks"].as_array().unwrap().clone();
        checks
            .into_iter()
            .find(|c| c["rule"] == "backup-age")
            .unwrap()
    };
    let c = s
        .rig
        .poscloud(["report", "compliance", "--shop", SHOP, "--output", "json"])
        .run()
        .status(1);
    assert_eq!(rule(&c)["status"], "fail", "{}", c.stdout);
    assert!(
        rule(&c)["detail"]
            .as_str()
            .unwrap()
            .contains("no complete backup"),
        "{}",
        c.stdout
    );

    let before = started_at(&s.h);
    let out = s.run(&["backup", "run"]).ok();
    assert!(
        out.stdout.contains(&format!("{files} files")),
        "{}",
        out.stdout
    );
    // The POS was stopped for the copy and runs again.
    assert_ne!(started_at(&s.h), before, "the POS was restarted");
    assert!(s.h.pos_answers(), "the POS answers after the backup");

    // In S3, under the shop's prefix: the archive and its summary, encrypted and tagged.
    let objects = keys(&s.rig, &format!("{SHOP}/qa/backups/"));
    assert_eq!(objects.len(), 2, "{objects:?}");
    for k in &objects {
        let head = s
            .rig
            .rt
            .block_on(s.rig.s3.head_object().bucket(bucket()).key(k).send())
            .unwrap();
        assert_eq!(
            head.server_side_encryption().map(|e| e.as_str()),
            Some("AES256"),
            "{k}"
        );
        let tags = s
            .rig
            .rt
            .block_on(s.rig.s3.get_object_tagging().bucket(bucket()).key(k).send())
            .unwrap();
        assert!(
            tags.tag_set()
                .iter()
                .any(|t| t.key() == "poscloud:keep" && t.value() == "7d"),
            "{k}"
        );
    }

    // list: the backup with its counts; JSON too.
    let list = s.run(&["backup", "list"]).ok();
    assert!(
        list.stdout.contains("daily") && list.stdout.contains(" ok"),
        "{}",
        list.stdout
    );
    let json = s
        .poscloud(["backup", "list", "--output", "json"])
        .run()
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let b = &doc["backups"][0]["summary"];
    assert_eq!(b["files"], files as u64, "{doc}");
    assert_eq!(b["result"], "ok");
    let first = b["stamp"].as_str().unwrap().to_string();

    let c = s
        .rig
        .poscloud(["report", "compliance", "--shop", SHOP, "--output", "json"])
        .run();
    assert_eq!(rule(&c)["status"], "pass", "{}", c.stdout);

    // report performance: the data volume as this month's newest backup measured it.
    let perf = s
        .rig
        .poscloud(["report", "performance", "--output", "json"])
        .run()
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&perf.stdout).unwrap();
    let row = doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["shop"] == SHOP)
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(row["data_bytes"], b["data_bytes"], "{doc}");
    assert_eq!(row["disk_used_percent"], b["disk_used_pct"], "{doc}");

    // verify: good.
    let v = s.run(&["backup", "verify"]).ok();
    assert!(v.stdout.contains("good"), "{}", v.stdout);

    // Killed while the host backs up: its command goes on there; the same command is stopped
    // by the dead run's lock (exit 3), and with --break-lock makes a complete backup (its copy
    // of the script waits for the first); the data is untouched and the POS runs.
    let sent = s.h.agent_commands("poscloud backup.sh").len();
    let mut child = s
        .poscloud(["backup", "run"])
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = common::eventually(common::SETTLE, || {
        s.h.agent_commands("poscloud backup.sh").len() > sent || child.try_wait().unwrap().is_some()
    });
    assert!(
        running && child.try_wait().unwrap().is_none(),
        "backup.sh never ran"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    s.run(&["backup", "run"]).status(3);
    s.run(&["backup", "run", "--break-lock"]).ok();
    let runs = s.h.agent_commands("poscloud backup.sh");
    assert!(runs.iter().all(|(_, ended)| *ended), "{runs:?}");
    assert_eq!(tree(&data), original, "a backup never changes the data");
    assert!(s.h.pos_answers(), "the POS answers after the killed backup");
    let json = s
        .poscloud(["backup", "list", "--output", "json"])
        .run()
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let stamp = doc["backups"][0]["summary"]["stamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stamp > first, "the newest backup first: {doc}");

    // Damage: a file deleted, one corrupted, one added.
    std::fs::remove_file(data.join("sub dir/ünï/order 3.dat")).unwrap();
    std::fs::write(data.join("sub dir/ünï/order 7.dat"), b"garbage").unwrap();
    std::fs::write(data.join("stray"), b"x").unwrap();
    // The host downloads with a presigned URL: poscloud signs it for the proxy it can reach.
    let r = s
        .poscloud(["pos", "restore", "--from", "latest"])
        .env("AWS_ENDPOINT_URL", proxy.url())
        .run()
        .ok();
    assert!(
        r.stderr.contains(&format!("restoring backup {stamp}")),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&data), original, "byte-identical after the restore");
    assert!(s.h.pos_answers(), "the POS answers on the restored data");

    // backup:TIME names the same one; a time with no backup is named.
    let none = s
        .poscloud(["pos", "restore", "--from", "backup:2020-01-01T00:00:00Z"])
        .run()
        .status(2);
    assert!(
        none.stderr.contains("no complete backup 20200101T000000Z"),
        "{}",
        none.stderr
    );

    // A corrupted archive in S3 is found by verify (exit 1), and named.
    let key = format!("{SHOP}/qa/backups/{stamp}.tar.gz");
    s.rig
        .rt
        .block_on(
            s.rig
                .s3
                .put_object()
                .bucket(bucket())
                .key(&key)
                .body(b"not gzip".to_vec().into())
                .send(),
        )
        .unwrap();
    let bad = s.run(&["backup", "verify", "--backup", &stamp]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("does not verify") && bad.stderr.contains("sha256"),
        "{}",
        bad.stderr
    );

    // Teardown of a qa stack removes its backups too (qa keeps none after it).
    s.run(&["teardown", "--yes"]).ok();
    let left = keys(&s.rig, &format!("{SHOP}/"));
    assert!(left.is_empty(), "{left:?}");
}

/// An app whose rule is its own quiesce command: the writer in the container stops between
/// two writes when asked, and the archive holds a consistent pair although it never stopped
/// writing before or after.
#[test]
fn a_backup_while_the_pos_writes_is_consistent_by_the_apps_rule() {
    let rig = Rig::new();
    let dir = rig.home.path();
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::write(dir.join("apps/ledger.ks"), "%packages\n%end\n").unwrap();
    std::fs::write(
        dir.join("apps/ledger.toml"),
        r#"description = "a POS that writes pairs"
kickstart = "ledger.ks"
mount_point = "/ledger"
health_check = "test -f /opt/pos/.installed"
services = ["ledger"]
[cutover]
data_dir = "/ledger"
[backup]
consistency = "command"
quiesce = "touch /ledger/.quiesce; i=0; while [ ! -f /ledger/.quiesced ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -f /ledger/.quiesced"
resume = "rm -f /ledger/.quiesce /ledger/.quiesced"
"#,
    )
    .unwrap();
    let pos = RTI.replace("\"rti\"", "\"ledger\"");
    let (s, _proxy) = setup(rig, SHOP2, "bkup2", 45, &pos);
    s.run(&["provision"]).ok();
    // The writer: pairs a and b always equal between iterations; it pauses when asked.
    let (ok, _) = s.h.docker(&[
        "exec",
        "-d",
        "pos",
        "sh",
        "-c",
        "i=0; while :; do if [ -f /ledger/.quiesce ]; then touch /ledger/.quiesced; sleep 0.05; continue; fi; i=$((i+1)); echo $i > /ledger/a; echo $i > /ledger/b; done",
    ]);
    assert!(ok);
    let data = s.h.root.join("var/lib/poscloud/data/ledger");
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || {
            std::fs::read_to_string(data.join("a"))
                .is_ok_and(|a| a.trim().parse::<u64>().unwrap_or(0) > 10)
        }
    ));
    let out = s.run(&["backup", "run"]).ok();
    assert!(
        out.stderr.contains("quiesced by the app's own command"),
        "{}",
        out.stderr
    );

    // The archive, read as the test's own S3 client sees it: a == b.
    let archives: Vec<String> = keys(&s.rig, &format!("{SHOP2}/qa/backups/"))
        .into_iter()
        .filter(|k| k.ends_with(".tar.gz"))
        .collect();
    let body = s
        .rig
        .rt
        .block_on(async {
            s.rig
                .s3
                .get_object()
                .bucket(bucket())
                .key(&archives[0])
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
        })
        .unwrap()
        .into_bytes();
    let mut files = BTreeMap::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&body[..]));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut text = String::new();
        if e.header().entry_type().is_file() {
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            files.insert(name, text);
        }
    }
    assert_eq!(files["a"], files["b"], "a consistent pair in the archive");
    assert!(
        files.contains_key(".quiesced"),
        "taken while the app said it was quiesced: {files:?}"
    );
    // Resumed: the writer goes on.
    let at_backup: u64 = files["a"].trim().parse().unwrap();
    assert!(
        common::eventually(std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(data.join("a"))
                .is_ok_and(|a| a.trim().parse::<u64>().unwrap_or(0) > at_backup)
        }),
        "the writer resumed"
    );
}

/// The host's S3 upload (aws-py.sh's SigV4, under CentOS 7's python 2.7 and 3.6) against a
/// stand-in that checks each signature with botocore's S3 signer, as S3 does.
#[test]
fn the_upload_is_signed_as_aws_checks_it() {
    for (version, py) in common::host_pythons() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("var/lib/poscloud/data/rti");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("orders"), b"1\n").unwrap();
        let work = tempfile::tempdir().unwrap();
        let port_file = work.path().join("port");
        let log = work.path().join("log");
        let mut server = std::process::Command::new(common::repo().join(".venv/bin/python"))
            .arg(common::repo().join("tests/rig/sigv4-check.py"))
            .args([&port_file, &log])
            .spawn()
            .unwrap();
        assert!(common::eventually(
            std::time::Duration::from_secs(10),
            || port_file.exists()
        ));
        let url = format!(
            "http://127.0.0.1:{}",
            std::fs::read_to_string(&port_file).unwrap()
        );
        let run = |action: &str, extra: &[(&str, &str)]| {
            std::process::Command::new(common::host_bash())
                .arg(common::repo().join("bootstrap/backup.sh"))
                .env_clear()
                .env(
                    "PATH",
                    format!(
                        "{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        py.path().display()
                    ),
                )
                .env("POSCLOUD_ROOT", root.path())
                .env("POSCLOUD_IMDS_URL", &url)
                .env("POSCLOUD_S3_URL", format!("{url}/"))
                .env("DOCKER_HOST", "unix:///nonexistent.sock")
                .env("ACTION", action)
                .envs(extra.iter().copied())
                .output()
                .unwrap()
        };
        let install = run(
            "install",
            &[
                ("SHOP", "12345678"),
                ("ENV", "prod"),
                ("APP", "rti"),
                ("DATA_DIR", "/var/lib/poscloud/data/rti"),
                ("CONSISTENCY", "stop"),
                ("BUCKET", "poscloud-output-123456789012-us-east-1"),
                ("PREFIX", "12345678/prod/backups/"),
                ("REGION", "us-east-1"),
                ("SCHEDULE", "*-*-* 02:30:00"),
                ("DAILY_DAYS", "30"),
                ("MONTHLY_DAYS", "372"),
            ],
        );
        assert!(install.status.success(), "{install:?}");
        let out = run("run", &[]);
        let _ = server.kill();
        let _ = server.wait();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "python {version}: {text}");
        // The first backup of a prod month is its monthly one, kept 372 days.
        assert!(text.contains("(monthly, kept 372 days)"), "{text}");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "archive and summary: {lines:?}");
        for l in &lines {
            assert_eq!(
                l["ok"], true,
                "python {version}: the signature S3 computes: {l}"
            );
            assert_eq!(l["headers"]["x-amz-server-side-encryption"], "AES256");
            assert_eq!(l["headers"]["x-amz-tagging"], "poscloud%3Akeep=372d");
        }
        assert!(
            lines[0]["path"].as_str().unwrap().ends_with(".tar.gz"),
            "the archive first"
        );
    }
}
