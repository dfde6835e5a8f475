//! `provision --shops-file FILE --parallel N` on the emulator (the AWS part, `--until
//! infra`): ten shops, one made to fail (its stack names an image that does not exist). The
//! other nine converge, each exactly once; the failure is named; the exit code says so.
//!
//! Ten shops need 10 VPCs and 20 Elastic IPs, past AWS's defaults (5 and 5): the rig's
//! Service Quotas has raised values applied (`Rig::set_quotas`, as after an approved
//! `quota request`), which the preflight reads; moto does not throttle: the proxy throttles one call, to
//! show that a quiet shop's retry notes reach the batch's output under the shop's name.

mod common;
use common::{FaultKind, Faults, Rig};

#[test]
fn a_shops_retries_are_shown_under_its_name_in_a_batch() {
    let rig = Rig::new();
    let stack = common::repo().join("stacks/qa.toml");
    let stack = stack.to_string_lossy();
    let file = rig.home.path().join("shops.csv");
    std::fs::write(
        &file,
        format!("shop,env,stack\n84100001,qa,{stack}\n84100002,qa,{stack}\n"),
    )
    .unwrap();
    // One at a time: the first shop makes the first DescribeVpcs, which is throttled once.
    rig.proxy.set_faults(Some(Faults {
        percent: 0,
        seed: 1,
        kinds: Vec::new(),
        lose_first: vec![("DescribeVpcs".into(), FaultKind::Throttle)],
    }));
    let out = rig.run(&[
        "provision",
        "--shops-file",
        &file.to_string_lossy(),
        "--parallel",
        "1",
        "--until",
        "infra",
    ]);
    rig.proxy.set_faults(None);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The shop's own runs are quiet; their notes reach the batch's output, named.
    assert!(
        out.stderr.contains(
            "↻ shop 84100001 (qa): EC2 DescribeVpcs: throttled (HTTP 503), retrying (attempt 2 of 8)"
        ),
        "{}",
        out.stderr
    );
    // The one throttle is the first shop's: never shown under the second (which may have
    // notes of its own, e.g. IAM propagation of its new instance profile).
    assert!(
        !out.stderr
            .contains("84100002 (qa): EC2 DescribeVpcs: throttled"),
        "{}",
        out.stderr
    );
}

#[test]
fn ten_shops_at_four_at_a_time_one_failure_is_reported_and_the_others_converge() {
    let rig = Rig::new();
    rig.set_quotas(&[("vpc/L-F678F1CE", 50), ("ec2/L-0263D0A3", 100)]);
    let good = common::repo()
        .join("stacks/qa.toml")
        .to_string_lossy()
        .into_owned();
    let base = std::fs::read_to_string(&good).unwrap();
    let broken = rig.home.path().join("noimage.toml");
    std::fs::write(
        &broken,
        base.replace("CentOS Linux 7 x86_64 - *", "No Such Image *"),
    )
    .unwrap();
    let broken = broken.to_string_lossy().into_owned();
    let shops: Vec<String> = (1..=10).map(|i| format!("840000{i:02}")).collect();
    let mut csv = String::from("shop,env,stack\n# wave 1\n");
    for (i, s) in shops.iter().enumerate() {
        let stack = if i == 6 { &broken } else { &good };
        csv.push_str(&format!("{s},qa,{stack}\n"));
    }
    let file = rig.home.path().join("shops.csv");
    std::fs::write(&file, csv).unwrap();
    let file = file.to_string_lossy().into_owned();

    let args = [
        "--output",
        "json",
        "provision",
        "--shops-file",
        &file,
        "--parallel",
        "4",
        "--until",
        "infra",
    ];
    let out = rig.run(&args);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let doc = out.json();
    assert_eq!(doc["total"], 10, "{doc}");
    assert_eq!(doc["failed"], 1, "{doc}");
    let rows = doc["shops"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> = rows.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["shop"], "84000007");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("No Such Image"),
        "{doc}"
    );
    assert!(
        out.stderr.contains("1 of 10 shops failed"),
        "{}",
        out.stderr
    );

    // Each good shop has one stack (one VPC, one instance), the failed one nothing.
    for s in &shops {
        let tagged = rig.tagged(s, "qa");
        if s == "84000007" {
            assert!(tagged.is_empty(), "{s}: {tagged:?}");
        } else {
            assert_eq!(
                tagged.iter().filter(|t| t.starts_with("vpc ")).count(),
                1,
                "{s}: {tagged:?}"
            );
            assert_eq!(
                tagged.iter().filter(|t| t.starts_with("instance ")).count(),
                1,
                "{s}: {tagged:?}"
            );
        }
    }
    let inv = rig.inventory();
    assert_eq!(inv.live_instances, 9, "{inv:?}");
    assert_eq!(inv.eips, 18, "{inv:?}");

    // Text output: the table names the failure; a run again makes no write for the nine.
    rig.proxy.reset();
    let again = rig.run(&args[2..]);
    assert_eq!(again.code, 1);
    assert!(
        again.stdout.contains("84000007   qa    FAILED"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("9 of 10 shops provisioned, 1 failed"),
        "{}",
        again.stdout
    );
    // The failed shop is an error line, not a warning.
    assert!(
        again.stderr.contains("error: [") && again.stderr.contains(": FAILED ("),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("warning: ["), "{}", again.stderr);
    // SECONDS right-aligned under its header, one decimal.
    let mut table = again.stdout.lines();
    let header = table.next().unwrap();
    let end = header.find("SECONDS").unwrap() + "SECONDS".len();
    for row in table.take(10) {
        let secs = row[..end].rsplit(' ').next().unwrap();
        assert!(
            secs.contains('.') && secs.parse::<f64>().is_ok(),
            "{header}\n{row}"
        );
        assert_eq!(row.as_bytes()[end], b' ', "{header}\n{row}");
    }
    assert_eq!(
        rig.proxy.writes(),
        Vec::<String>::new(),
        "converged shops wrote"
    );

    // A bad row is refused before any AWS call.
    std::fs::write(
        rig.home.path().join("bad.csv"),
        "84000001,qa\n8400000x,qa\n",
    )
    .unwrap();
    rig.proxy.reset();
    let bad = rig.run(&[
        "provision",
        "--shops-file",
        &rig.home.path().join("bad.csv").to_string_lossy(),
    ]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("bad.csv:2: shop"), "{}", bad.stderr);
    assert!(rig.proxy.calls().is_empty());
}

/// Sets the stack's VPC creation tag `days` days back, as if it had been made then.
fn age(rig: &Rig, shop: &str, env: &str, days: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86400);
    let when = humantime::format_rfc3339_seconds(when).to_string();
    rig.block(async {
        let vpcs = rig
            .ec2
            .describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:poscloud:shop")
                    .values(shop)
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:poscloud:env")
                    .values(env)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
        rig.ec2
            .create_tags()
            .resources(vpc)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("poscloud:created")
                    .value(when)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn bulk_teardown_removes_only_old_enough_stacks_of_the_env_and_never_prod() {
    let rig = Rig::new();
    rig.set_quotas(&[("vpc/L-F678F1CE", 50), ("ec2/L-0263D0A3", 100)]);
    let stack = common::repo().join("stacks/qa.toml");
    let stack = stack.to_string_lossy();
    let mix = [
        ("85000001", "qa", 10),
        ("85000002", "qa", 2),
        ("85000003", "qa", 30),
        ("85000004", "dev", 10),
        ("85000005", "prod", 400),
    ];
    let mut csv = String::new();
    for (shop, env, _) in mix {
        csv.push_str(&format!("{shop},{env},{stack}\n"));
    }
    let file = rig.home.path().join("mix.csv");
    std::fs::write(&file, csv).unwrap();
    rig.run(&[
        "provision",
        "--shops-file",
        &file.to_string_lossy(),
        "--until",
        "infra",
        "--yes",
    ])
    .ok();
    for (shop, env, days) in mix {
        age(&rig, shop, env, days);
    }

    // The list first, and a dry run changes nothing.
    rig.proxy.reset();
    let dry = rig
        .run(&["teardown", "--env", "qa", "--older-than", "7d", "--dry-run"])
        .ok();
    assert!(
        dry.stdout.contains("85000001") && dry.stdout.contains("85000003"),
        "{}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains("85000002"),
        "too young: {}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains("85000004"),
        "another env: {}",
        dry.stdout
    );
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    // Without a terminal it needs --yes.
    let ask = rig.run(&["teardown", "--env", "qa", "--older-than", "7d"]);
    assert_eq!(ask.code, 2, "{}", ask.stderr);

    let out = rig
        .run(&[
            "--output",
            "json",
            "teardown",
            "--env",
            "qa",
            "--older-than",
            "7d",
            "--yes",
            "--parallel",
            "2",
        ])
        .ok();
    assert_eq!(
        out.json()["removed"].as_array().unwrap().len(),
        2,
        "{}",
        out.stdout
    );
    assert!(rig.tagged("85000001", "qa").is_empty());
    assert!(rig.tagged("85000003", "qa").is_empty());
    assert!(!rig.tagged("85000002", "qa").is_empty(), "too young: kept");
    assert!(
        !rig.tagged("85000004", "dev").is_empty(),
        "another env: kept"
    );
    assert!(!rig.tagged("85000005", "prod").is_empty(), "prod: kept");

    // Prod is refused outright, before any AWS call.
    rig.proxy.reset();
    let prod = rig.run(&[
        "teardown",
        "--env",
        "prod",
        "--older-than",
        "7d",
        "--yes",
        "--allow-prod",
    ]);
    assert_eq!(prod.code, 4, "{}", prod.stderr);
    assert!(
        prod.stderr.contains("never removes prod"),
        "{}",
        prod.stderr
    );
    assert!(rig.proxy.calls().is_empty());
    assert!(!rig.tagged("85000005", "prod").is_empty());

    // Nothing old enough left in qa: says so.
    let none = rig
        .run(&["teardown", "--env", "qa", "--older-than", "7d", "--yes"])
        .ok();
    assert!(none.stdout.contains("no qa stack"), "{}", none.stdout);
}
