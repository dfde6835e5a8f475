//! `provision --shops-file FILE --parallel N` on the emulator (the AWS part, `--until
//! infra`): ten shops, one made to fail (its stack names an image that does not exist). The
//! other nine converge, each exactly once; the failure is named; the exit code says so.
//!
//! Looser than AWS: moto reports a fixed limit of 5 Elastic IPs, so the stack sets
//! `quotas.elastic_ips_per_region`; moto does not throttle, so the SDK's retries are not
//! exercised here.

mod common;
use common::Rig;

#[test]
fn ten_shops_at_four_at_a_time_one_failure_is_reported_and_the_others_converge() {
    let rig = Rig::new();
    let quotas = "vpcs_per_region = 5";
    let more = "vpcs_per_region = 50\nelastic_ips_per_region = 100";
    let good = rig.stack_file("batch.toml", quotas, more);
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
