//! Fleet reports against the emulator: billing hours from a journal with known events and
//! EC2's state; compliance passing on a fresh stack and flagging each rule when the
//! emulator's state is changed to break it.

mod common;

use common::Rig;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Appends journal lines as poscloud writes them (one successful write each).
fn journal_writes(rig: &Rig, lines: &[(&str, &str, &str, &str)]) {
    rig.journal_writes(lines);
    // A line cut short by a crash is skipped, not fatal.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(rig.journal())
        .unwrap();
    writeln!(f, "{{\"time\":\"2026-10-03T").unwrap();
}
fn row<'a>(doc: &'a Value, shop: &str) -> Option<&'a Value> {
    doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shop"] == shop)
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 0.0001)
}

#[test]
fn billing_hours_from_the_journal_and_ec2_state() {
    let rig = Rig::new();
    // A live stack (its own journal lines are real: provision wrote them, in this month).
    rig.provision_infra("33333333", "qa").ok();
    journal_writes(
        &rig,
        &[
            // Launched before October, stopped on the 2nd, started on the 5th at noon,
            // terminated on the 6th: 24 h + 12 h running; volume and two IPs Oct 1 → Oct 6.
            (
                "2026-09-30T20:00:00Z",
                "11111111/qa",
                "AllocateAddress",
                "eipalloc-a1",
            ),
            (
                "2026-09-30T20:00:01Z",
                "11111111/qa",
                "AllocateAddress",
                "eipalloc-a2",
            ),
            (
                "2026-09-30T20:00:00Z",
                "11111111/qa",
                "RunInstances",
                "i-aaa",
            ),
            (
                "2026-10-02T00:00:00Z",
                "11111111/qa",
                "StopInstances",
                "i-aaa",
            ),
            (
                "2026-10-05T12:00:00Z",
                "11111111/qa",
                "StartInstances",
                "i-aaa",
            ),
            (
                "2026-10-06T00:00:00Z",
                "11111111/qa",
                "TerminateInstances",
                "i-aaa",
            ),
            (
                "2026-10-06T00:00:00Z",
                "11111111/qa",
                "ReleaseAddress",
                "eipalloc-a1",
            ),
            (
                "2026-10-06T00:00:00Z",
                "11111111/qa",
                "ReleaseAddress",
                "eipalloc-a2",
            ),
            // September only: not in October's bill.
            (
                "2026-09-01T00:00:00Z",
                "22222222/dev",
                "RunInstances",
                "i-bbb",
            ),
            (
                "2026-09-02T00:00:00Z",
                "22222222/dev",
                "TerminateInstances",
                "i-bbb",
            ),
            // History begins with a stop (journal started late): counted from Oct 1, noted.
            (
                "2026-10-01T10:00:00Z",
                "44444444/prod",
                "StopInstances",
                "i-ccc",
            ),
        ],
    );

    let doc = rig
        .run(&[
            "--output", "json", "report", "billing", "--month", "2026-10",
        ])
        .ok()
        .json();
    let a = row(&doc, "11111111").expect("11111111 billed");
    assert!(close(&a["running_hours"], 36.0), "{a}");
    assert!(close(&a["volume_hours"], 120.0), "{a}");
    assert!(close(&a["public_ipv4_hours"], 240.0), "{a}");
    // stacks/qa.toml: t3.large 0.0832/h, gp3 0.08/GB-month (100 GB, 744 h in October),
    // public IPv4 0.005/h.
    assert!(close(&a["instance_usd"], 36.0 * 0.0832), "{a}");
    assert!(close(&a["ebs_usd"], 100.0 * 0.08 * 120.0 / 744.0), "{a}");
    assert!(close(&a["public_ipv4_usd"], 1.2), "{a}");
    assert!(close(&a["total_usd"], 5.4855), "{a}");
    assert!(a["notes"].as_array().unwrap().is_empty(), "{a}");
    assert!(row(&doc, "22222222").is_none(), "{doc}");
    let c = row(&doc, "44444444").expect("44444444 billed");
    assert!(close(&c["running_hours"], 10.0), "{c}");
    assert!(
        c["notes"][0]
            .as_str()
            .unwrap()
            .contains("journal starts after"),
        "{c}"
    );
    // The live stack was made after October (now): not on October's bill, not even with
    // zeros (issue 17 item 14; it was listed with zeros before).
    assert!(row(&doc, "33333333").is_none(), "{doc}");
    // Subtotals per env; the journal covers all of October (Sep 1 to now): no note.
    assert!(
        close(&doc["subtotals"]["qa"]["running_hours"], 36.0),
        "{doc}"
    );
    assert!(
        close(&doc["subtotals"]["prod"]["running_hours"], 10.0),
        "{doc}"
    );
    assert!(close(&doc["totals"]["running_hours"], 46.0), "{doc}");
    assert_eq!(doc["notes"], json!([]), "{doc}");

    // The CSV holds data rows only: no TOTAL row among them (it was the last line before).
    let csv = rig
        .run(&["report", "billing", "--month", "2026-10", "--csv"])
        .ok()
        .stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("shop,env,instance_type,running_hours"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "header and two stacks: {csv}");
    // Rows by env (prod, qa, dev), then shop.
    assert!(
        lines[1].starts_with("44444444,prod,t3.large,10.00,"),
        "{csv}"
    );
    assert_eq!(
        lines[2], "11111111,qa,t3.large,36.00,120.00,240.00,3.00,1.29,1.20,5.49",
        "{csv}"
    );
    // --totals: labelled rows after the data, in the same columns.
    let csv = rig
        .run(&[
            "report", "billing", "--month", "2026-10", "--csv", "--totals",
        ])
        .ok()
        .stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(lines[3].starts_with("subtotal,prod,,10.00,"), "{csv}");
    assert_eq!(
        lines[4], "subtotal,qa,,36.00,120.00,240.00,3.00,1.29,1.20,5.49",
        "{csv}"
    );
    assert!(lines[5].starts_with("total,all,,46.00,"), "{csv}");
    // --totals is for the CSV (the table always has them).
    rig.run(&["report", "billing", "--totals"]).status(2);
    // The table: data, a rule, then each env's subtotal and the TOTAL on lines of their own.
    let table = rig
        .run(&["report", "billing", "--month", "2026-10"])
        .ok()
        .stdout;
    let lines: Vec<&str> = table.lines().collect();
    let at = |p: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {table}"))
    };
    assert!(
        at("44444444") < at("11111111") && at("11111111") < at("-----"),
        "{table}"
    );
    assert!(
        at("-----") < at("subtotal   prod") && at("subtotal   qa") < at("TOTAL"),
        "{table}"
    );
    assert!(lines[at("subtotal   qa")].ends_with("5.49"), "{table}");
    assert!(lines[at("TOTAL")].contains("46.00"), "{table}");

    // A journal that covers only part of the month says so, in the table, the JSON and (on
    // stderr) with the CSV: it begins after October began and ends before it ended.
    let part = rig.journal().with_file_name("part.jsonl");
    std::fs::write(
        &part,
        [
            ("2026-10-10T08:00:00Z", "RunInstances"),
            ("2026-10-20T08:00:00Z", "TerminateInstances"),
        ]
        .iter()
        .map(|(t, op)| {
            json!({"time": t, "run": "1-1", "user": "tester", "host": "test",
                   "command": "provision --shop 66666666 --env dev", "event": "write",
                   "op": op, "resource": "i-ddd", "result": "ok"})
            .to_string()
                + "\n"
        })
        .collect::<String>(),
    )
    .unwrap();
    let part = part.to_str().unwrap();
    let doc = rig
        .run(&[
            "--output",
            "json",
            "--journal",
            part,
            "report",
            "billing",
            "--month",
            "2026-10",
        ])
        .ok()
        .json();
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("begins 2026-10-10T08:00:00Z, after 2026-10 began"),
        "{doc}"
    );
    assert!(
        notes.contains("ends 2026-10-20T08:00:00Z, before 2026-10 ended"),
        "{doc}"
    );
    assert!(close(
        &row(&doc, "66666666").unwrap()["running_hours"],
        240.0
    ));
    let text = rig.run(&["--journal", part, "report", "billing", "--month", "2026-10"]);
    assert!(text.stdout.contains("note: the journal"), "{text:?}");
    let csv = rig.run(&[
        "--journal",
        part,
        "report",
        "billing",
        "--month",
        "2026-10",
        "--csv",
    ]);
    assert!(csv.stderr.contains("after 2026-10 began"), "{csv:?}");
    assert!(!csv.stdout.contains("journal"), "{csv:?}");
    // November (past) began after the journal's last line: what happened in it is missing.
    let doc = rig
        .run(&[
            "--output",
            "json",
            "--journal",
            part,
            "report",
            "billing",
            "--month",
            "2026-11",
        ])
        .ok()
        .json();
    assert!(
        doc["notes"].to_string().contains("before 2026-11 ended"),
        "{doc}"
    );

    // This month: the live instance stopped outside poscloud (as from the console). EC2's
    // state reason says when; its running hours stop growing, its IPs keep costing.
    // EC2's times have whole seconds: let the instance run for two of them first.
    std::thread::sleep(Duration::from_secs(2));
    let instance = rig.block(async {
        let r = rig.ec2.describe_instances().send().await.unwrap();
        let i = r.reservations()[0].instances()[0]
            .instance_id()
            .unwrap()
            .to_string();
        rig.ec2
            .stop_instances()
            .instance_ids(&i)
            .send()
            .await
            .unwrap();
        i
    });
    let now = || {
        let doc = rig
            .run(&["--output", "json", "report", "billing"])
            .ok()
            .json();
        row(&doc, "33333333").unwrap().clone()
    };
    let first = now();
    std::thread::sleep(Duration::from_secs(2));
    let second = now();
    assert!(first["running_hours"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(
        first["running_hours"], second["running_hours"],
        "{instance} stopped"
    );
    assert!(
        second["public_ipv4_hours"].as_f64() > first["public_ipv4_hours"].as_f64(),
        "{first} {second}"
    );
    let list = rig.run(&["--output", "json", "list"]).ok().json();
    assert_eq!(
        list["stacks"][0]["running_hours_this_month"], second["running_hours"],
        "{list}"
    );
    assert!(rig.run(&["list"]).ok().stdout.contains("RUN H"));

    // Bad months: usage error, no AWS call.
    for bad in ["2026-13", "10-2026", "2999-01"] {
        rig.run(&["report", "billing", "--month", bad])
            .status(2)
            .stderr_has("--month")
            .no_aws_call();
    }
}

/// RFC 4180 CSV (quoted fields with doubled quotes), as a spreadsheet reads it.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

fn days_ago(d: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(d * 86_400))
        .to_string()
}

/// `report compliance` as JSON: (exit code, the failing rules of the one stack).
fn failing(rig: &Rig) -> (i32, Vec<String>) {
    let r = rig.run(&["--output", "json", "report", "compliance"]);
    let doc = r.json();
    let failed = doc["stacks"][0]["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (r.code, failed)
}

#[test]
fn compliance_passes_a_fresh_stack_and_flags_each_broken_rule() {
    let rig = Rig::new();
    const SHOP: &str = "55555555";
    // With an alert e-mail: the alarms rule passes only when someone is told.
    let stack = rig.stack_with_alerts("prod", "ops@example.com");
    let mut args = common::infra_args(SHOP, "prod");
    args.extend(["--stack", &stack]);
    rig.run(&args).ok();

    let fresh = rig.run(&["report", "compliance"]).ok();
    for rule in [
        "imdsv2",
        "volume-encrypted",
        "sg-exposure",
        "termination-protection",
    ] {
        assert!(
            fresh
                .stdout
                .lines()
                .any(|l| l.contains("pass") && l.contains(rule)),
            "{rule}: {}",
            fresh.stdout
        );
    }
    assert!(
        fresh.stdout.contains("1 stack(s) checked, 0 failing"),
        "{}",
        fresh.stdout
    );

    let instance = rig.block(async {
        let r = rig.ec2.describe_instances().send().await.unwrap();
        r.reservations()[0].instances()[0]
            .instance_id()
            .unwrap()
            .to_string()
    });
    let mut expected: Vec<&str> = Vec::new();
    let mut broke = |rules: &[&'static str], rig: &Rig| {
        let rule = rules.join(", ");
        expected.extend(rules);
        let (code, failed) = failing(rig);
        assert_eq!(code, 1, "{rule}: a failing rule exits 1");
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut got = failed.clone();
        got.sort();
        assert_eq!(got, want, "after breaking {rule}");
    };

    // IMDSv1 turned back on.
    rig.block(async {
        rig.ec2
            .modify_instance_metadata_options()
            .instance_id(&instance)
            .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
            .send()
            .await
            .unwrap();
    });
    broke(&["imdsv2"], &rig);

    // Termination protection off on prod.
    rig.block(async {
        rig.ec2
            .modify_instance_attribute()
            .instance_id(&instance)
            .disable_api_termination(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(false)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    broke(&["termination-protection"], &rig);

    // RDP open to the world on the host group.
    rig.open_inbound("sg-host", "tcp", 3389, "0.0.0.0/0");
    broke(&["sg-exposure"], &rig);
    let text = rig.run(&["report", "compliance"]);
    assert!(
        text.stdout
            .contains("tcp/3389 0.0.0.0/0 (the whole internet)"),
        "{}",
        text.stdout
    );

    // SSH reachable, but no host key pinned.
    rig.open_inbound("sg-host", "tcp", 22, "203.0.113.0/24");
    broke(&["host-key-pinned"], &rig);

    // A VPN location whose key is 400 days old and whose proposals are weak.
    let record = json!({"name": "shopfront", "peer_ip": "198.51.100.7",
        "peer_nets": ["10.20.0.0/24"], "ike_version": 2,
        "proposals": "aes128-sha1-modp1024", "esp_proposals": "aes256gcm16-ecp256",
        "created_at": days_ago(400), "psk_rotated_at": days_ago(400)});
    rig.block(async {
        rig.ssm
            .put_parameter()
            .name(format!("/poscloud/{SHOP}/prod/vpn/shopfront"))
            .value(record.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
    });
    broke(&["vpn-psk-age", "vpn-proposals"], &rig);

    // The host's last OS update (the bootstrap record) 60 days ago.
    let bootstrap = json!({"done_at": days_ago(60), "by": "tester", "target": "ssm",
        "result": {"docker": "26.1.4", "strongswan": "5.7.2", "kernel": "3.10.0-1160",
                   "userdata": {"finished": days_ago(60), "ssm_agent": "3.3.0",
                                "reboot_required": true}}});
    rig.block(async {
        rig.ssm
            .put_parameter()
            .name(format!("/poscloud/{SHOP}/prod/phase/bootstrap"))
            .value(bootstrap.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    });
    broke(&["os-patched"], &rig);
    let text = rig.run(&["report", "compliance"]);
    assert!(text.stdout.contains("docker 26.1.4") && text.stdout.contains("reboot required"));
    assert!(
        text.stdout.contains("shopfront: key 400 days old"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("weak: shopfront: sha1, modp1024"),
        "{}",
        text.stdout
    );

    // The root volume swapped for an unencrypted one.
    rig.block(async {
        let r = rig.ec2.describe_instances().send().await.unwrap();
        let i = &r.reservations()[0].instances()[0];
        let root = i.root_device_name().unwrap().to_string();
        let old = i
            .block_device_mappings()
            .iter()
            .find(|b| b.device_name() == Some(root.as_str()))
            .and_then(|b| b.ebs())
            .and_then(|e| e.volume_id())
            .unwrap()
            .to_string();
        let zone = i
            .placement()
            .unwrap()
            .availability_zone()
            .unwrap()
            .to_string();
        rig.ec2
            .detach_volume()
            .volume_id(&old)
            // AWS finds the instance from the volume; the emulator needs it named.
            .instance_id(&instance)
            .send()
            .await
            .unwrap();
        let v = rig
            .ec2
            .create_volume()
            .availability_zone(zone)
            .size(100)
            .encrypted(false)
            .send()
            .await
            .unwrap();
        rig.ec2
            .attach_volume()
            .volume_id(v.volume_id().unwrap())
            .instance_id(&instance)
            .device(root)
            .send()
            .await
            .unwrap();
    });
    broke(&["volume-encrypted"], &rig);

    // An alarm deleted (the test's own CloudWatch client).
    rig.block(async {
        rig.cloudwatch
            .delete_alarms()
            .alarm_names(format!("poscloud-{SHOP}-prod-alarm-system"))
            .send()
            .await
            .unwrap();
    });
    broke(&["alarms"], &rig);

    // Every rule fails now. The text starts with a stacks × rules grid; each FAIL line of the
    // details says the fix, with the stack's own names in it.
    let text = rig.run(&["report", "compliance"]).status(1);
    let lines: Vec<&str> = text.stdout.lines().collect();
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        head,
        [
            "STACK",
            "imdsv2",
            "volume-encrypted",
            "sg-exposure",
            "termination-protection",
            "vpn-psk-age",
            "vpn-proposals",
            "os-patched",
            "host-key-pinned",
            "backup-age",
            "alarms"
        ],
        "{}",
        text.stdout
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], format!("{SHOP}/prod"), "{}", text.stdout);
    // backup-age: n/a, the stack has no POS (tests/backup.rs breaks and passes it).
    assert_eq!(cells[1..9], ["FAIL"; 8], "{}", text.stdout);
    assert_eq!(cells[9], "n/a", "{}", text.stdout);
    assert_eq!(cells[10], "FAIL", "{}", text.stdout);
    // Each cell under its rule's name.
    assert_eq!(
        lines[1].find("FAIL").unwrap(),
        lines[0].find("imdsv2").unwrap()
    );
    assert_eq!(
        lines[1].rfind("FAIL").unwrap(),
        lines[0].find("alarms").unwrap()
    );
    let fails: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.trim_start().starts_with("FAIL "))
        .collect();
    assert_eq!(fails.len(), 9, "{}", text.stdout);
    for l in &fails {
        assert!(l.contains("; fix: "), "{l}");
    }
    let fix_of = |rule: &str| {
        let l = fails.iter().find(|l| l.contains(rule)).unwrap();
        l.split_once("; fix: ").unwrap().1.to_string()
    };
    assert_eq!(
        fix_of("imdsv2"),
        format!(
            "`poscloud provision --shop {SHOP} --env prod --region {}` requires it again in place (the instance keeps running)",
            common::REGION
        )
    );
    assert!(
        fix_of("termination-protection").contains(&format!(
            "`poscloud provision --shop {SHOP} --env prod --region {}` turns it back on",
            common::REGION
        )),
        "{}",
        text.stdout
    );
    assert!(fix_of("vpn-psk-age").contains("poscloud vpn rotate"));

    // --csv: one row per stack and rule, a spreadsheet's filter away from the failures.
    let csv = rig.run(&["report", "compliance", "--csv"]).status(1);
    // backup-age is n/a here (no POS: tests/backup.rs checks it), every other rule FAILs.
    let rows: Vec<_> = parse_csv(&csv.stdout)
        .into_iter()
        .filter(|r| r[2] != "backup-age" || r[3] != "n/a")
        .collect();
    assert_eq!(
        rows[0],
        ["shop", "env", "rule", "status", "detail", "fix"],
        "{}",
        csv.stdout
    );
    assert_eq!(rows.len(), 10, "{}", csv.stdout);
    for r in &rows[1..] {
        assert_eq!((r[0].as_str(), r[1].as_str()), (SHOP, "prod"), "{r:?}");
        assert_eq!(r[3], "FAIL", "{r:?}");
        assert!(!r[4].is_empty() && !r[5].is_empty(), "{r:?}");
    }
    // Details with commas and semicolons survive as one field each.
    let sg = rows.iter().find(|r| r[2] == "sg-exposure").unwrap();
    assert!(
        sg[4].contains("tcp/3389 0.0.0.0/0 (the whole internet)"),
        "{sg:?}"
    );
    assert_eq!(rows[1][5], fix_of("imdsv2"));

    // Only the asked shop, and the usage code for a bad one.
    rig.run(&["report", "compliance", "--shop", "99999999"])
        .ok()
        .stdout_has("0 stack(s) checked");
    rig.run(&["report", "compliance", "--max-psk-age", "forever"])
        .status(2);
}
