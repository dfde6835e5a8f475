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
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(rig.journal())
        .unwrap();
    for (time, stack, op, resource) in lines {
        let (shop, env) = stack.split_once('/').unwrap();
        let line = json!({"time": time, "run": "1-1", "user": "tester", "host": "test",
                          "command": format!("provision --shop {shop} --env {env}"),
                          "event": "write", "op": op, "resource": resource, "result": "ok"});
        writeln!(f, "{line}").unwrap();
    }
    // A line cut short by a crash is skipped, not fatal.
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
    // The live stack was made in November: on October's bill with nothing.
    let live = row(&doc, "33333333").expect("live stack listed");
    assert!(close(&live["total_usd"], 0.0), "{live}");

    let csv = rig
        .run(&["report", "billing", "--month", "2026-10", "--csv"])
        .ok()
        .stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("shop,env,instance_type,running_hours"),
        "{csv}"
    );
    assert!(
        lines.contains(&"11111111,qa,t3.large,36.00,120.00,240.00,3.00,1.29,1.20,5.49"),
        "{csv}"
    );
    assert!(lines.last().unwrap().starts_with("TOTAL,,,46.00,"), "{csv}");

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
        rig.proxy.reset();
        let r = rig.run(&["report", "billing", "--month", bad]);
        assert_eq!(r.code, 2, "{bad}: {r:?}");
        assert!(r.stderr.contains("--month"), "{bad}: {}", r.stderr);
        assert!(rig.proxy.calls().is_empty(), "{bad}");
    }
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
    rig.provision_infra(SHOP, "prod").ok();

    let fresh = rig.run(&["report", "compliance"]);
    assert_eq!(fresh.code, 0, "{fresh:?}");
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

    // Only the asked shop, and the usage code for a bad one.
    let other = rig.run(&["report", "compliance", "--shop", "99999999"]);
    assert_eq!(other.code, 0, "{other:?}");
    assert!(
        other.stdout.contains("0 stack(s) checked"),
        "{}",
        other.stdout
    );
    let bad = rig.run(&["report", "compliance", "--max-psk-age", "forever"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}
