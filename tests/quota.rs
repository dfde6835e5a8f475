//! The region's quotas on the emulator: `quota show` and `quota request` against the rig's
//! Service Quotas (tests/rig/emulator.py: applied values from the AWS model, AWS's defaults
//! otherwise, requests recorded and listed), and the preflight that refuses a provision past
//! a quota before any write.
//!
//! Looser than AWS: the rig never decides a request (AWS approves or denies it, maybe after
//! a support case); "approved" is a test setting the applied value (`Rig::set_quotas`).

mod common;
use common::Rig;

const S: &str = "12345678";
const VPCS: &str = "vpc/L-F678F1CE";
const EIPS: &str = "ec2/L-0263D0A3";

fn quota<'a>(doc: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    doc["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {doc}"))
}

/// Fills the region with VPCs up to `n` (moto's default VPC is one of them).
fn vpcs_in_use(rig: &Rig, n: usize) {
    rig.block(async {
        let have = rig.ec2.describe_vpcs().send().await.unwrap().vpcs().len();
        for i in have..n {
            rig.ec2
                .create_vpc()
                .cidr_block(format!("10.{}.0.0/16", 100 + i))
                .send()
                .await
                .unwrap();
        }
    });
}

fn eips_in_use(rig: &Rig, n: usize) {
    rig.block(async {
        for _ in 0..n {
            rig.ec2
                .allocate_address()
                .domain(aws_sdk_ec2::types::DomainType::Vpc)
                .send()
                .await
                .unwrap();
        }
    });
}

#[test]
fn show_gives_the_defaults_then_the_applied_values_with_their_use() {
    let rig = Rig::new();
    let doc = rig
        .run(&["quota", "show", "--output", "json"])
        .ok()
        .no_aws_write()
        .json();
    let v = quota(&doc, "vpcs");
    assert_eq!(v["code"], "L-F678F1CE", "{doc}");
    assert_eq!(v["service"], "vpc", "{doc}");
    assert_eq!(v["value"], 5, "{doc}");
    assert_eq!(v["source"], "default", "{doc}");
    // moto's default VPC counts, as on AWS.
    assert_eq!(v["in_use"], 1, "{doc}");
    assert_eq!(v["stacks_more"], 4, "{doc}");
    let e = quota(&doc, "eips");
    assert_eq!(e["code"], "L-0263D0A3", "{doc}");
    assert_eq!(
        (e["value"].clone(), e["source"].clone()),
        (5.into(), "default".into())
    );
    assert_eq!(e["in_use"], 0, "{doc}");
    assert_eq!(e["stacks_more"], 2, "{doc}");

    rig.set_quotas(&[(VPCS, 20), (EIPS, 12)]);
    eips_in_use(&rig, 3);
    let r = rig.run(&["quota", "show"]).ok();
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{}", r.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("VPCs per Region").contains("vpc/L-F678F1CE 20 applied 1 19 19 -"),
        "{}",
        r.stdout
    );
    assert!(
        line("EC2-VPC Elastic IPs").contains("ec2/L-0263D0A3 12 applied 3 9 4 -"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_request_is_filed_once_and_shown_while_open() {
    let rig = Rig::new();
    let r = rig.run(&["quota", "request", "--vpcs", "20"]).ok();
    assert_eq!(r.writes(), ["RequestServiceQuotaIncrease"], "{}", r.stderr);
    assert!(
        r.stdout
            .contains("VPCs per Region (vpc/L-F678F1CE) in us-east-1, now 5 (default): requested to 20 PENDING (request "),
        "{}",
        r.stdout
    );

    let doc = rig.run(&["quota", "show", "--output", "json"]).ok().json();
    let reqs = quota(&doc, "vpcs")["requests"].as_array().unwrap().clone();
    assert_eq!(reqs.len(), 1, "{doc}");
    assert_eq!(reqs[0]["desired"], 20, "{doc}");
    assert_eq!(reqs[0]["status"], "CASE_OPENED", "{doc}");
    assert_eq!(reqs[0]["open"], true, "{doc}");
    assert!(
        quota(&doc, "eips")["requests"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{doc}"
    );

    // Again, with the Elastic IPs too: the open VPC request is shown, only the new one filed.
    let again = rig
        .run(&[
            "quota", "request", "--vpcs", "20", "--eips", "10", "--output", "json",
        ])
        .ok();
    assert_eq!(
        again.writes(),
        ["RequestServiceQuotaIncrease"],
        "{}",
        again.stderr
    );
    let doc = again.json();
    let rs = doc["requests"].as_array().unwrap();
    assert_eq!(rs[0]["outcome"], "already_open", "{doc}");
    assert_eq!(rs[0]["request"]["id"], reqs[0]["id"], "{doc}");
    assert_eq!(rs[1]["outcome"], "filed", "{doc}");
    assert_eq!(rs[1]["quota"]["code"], "L-0263D0A3", "{doc}");

    let third = rig
        .run(&["quota", "request", "--vpcs", "30"])
        .ok()
        .no_aws_write();
    assert!(
        third
            .stdout
            .contains("already open, nothing filed: to 20 CASE_OPENED"),
        "{}",
        third.stdout
    );
}

#[test]
fn a_value_not_above_the_current_one_is_refused_without_a_write() {
    let rig = Rig::new();
    rig.run(&["quota", "request", "--vpcs", "5"])
        .status(2)
        .stderr_has(
            "--vpcs 5: VPCs per Region (vpc L-F678F1CE) in us-east-1 is 5 already (default)",
        )
        .stderr_has("nothing was requested")
        .no_aws_write();
    rig.set_quotas(&[(EIPS, 20)]);
    // One bad value stops the other too: nothing filed.
    rig.run(&["quota", "request", "--vpcs", "10", "--eips", "15"])
        .status(2)
        .stderr_has(
            "--eips 15: EC2-VPC Elastic IPs (ec2 L-0263D0A3) in us-east-1 is 20 already (applied)",
        )
        .no_aws_write();
}

#[test]
fn a_region_at_its_vpc_quota_is_refused_before_any_write_until_the_quota_is_raised() {
    let rig = Rig::new();
    vpcs_in_use(&rig, 5);
    rig.provision_infra(S, "qa")
        .status(1)
        .stderr_has(
            "us-east-1: quota VPCs per Region (vpc L-F678F1CE) is 5 (AWS's default), 5 in use; this provision needs 1 more",
        )
        .stderr_has("`poscloud quota request --vpcs 10 --region us-east-1`")
        .no_aws_write();

    // AWS approved a raise: the same provision passes.
    rig.set_quotas(&[(VPCS, 6)]);
    rig.provision_infra(S, "qa").ok();
    rig.assert_one_stack(S, "qa", "after the raise");
}

#[test]
fn elastic_ips_past_the_quota_name_the_open_request() {
    let rig = Rig::new();
    eips_in_use(&rig, 4);
    rig.provision_infra(S, "qa")
        .status(1)
        .stderr_has(
            "quota EC2-VPC Elastic IPs (ec2 L-0263D0A3) is 5 (AWS's default), 4 in use; this provision needs 2 more",
        )
        .stderr_has("`poscloud quota request --eips 10 --region us-east-1`")
        .no_aws_write();
    rig.run(&["quota", "request", "--eips", "10"]).ok();
    rig.provision_infra(S, "qa")
        .status(1)
        .stderr_has("a request to raise it to 10 is open (CASE_OPENED, request ")
        .no_aws_write();
}
