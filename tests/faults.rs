//! Fault injection: the recording proxy between poscloud and the emulator fails 20 % of all
//! calls (throttling in each protocol's own wire format, HTTP 500 and 503, connections
//! dropped without an answer, slow answers), half of them after the emulator has done the
//! work, when the client learns nothing or an error: the case in which simply sending a
//! create again makes a second VPC or Elastic IP. On top of the random ones, the first call
//! of every create and of the other writes named below is answered with a fault after it
//! was carried out, so that each of them surely meets a lost answer.
//!
//! Provision must converge to exactly one stack, teardown must leave nothing, and the user
//! must see progress and retry notes, never a panic or a debug dump of an SDK error.
//!
//! Where the emulator is looser than AWS (so what passes here is checked less strictly
//! than AWS would check it):
//! - moto is strongly consistent: a resource is in Describe answers the moment its create
//!   returns. On AWS it may show a moment later, which is why poscloud waits at least a
//!   second before it looks for what a failed create may have made.
//! - moto ignores the RunInstances ClientToken: only the tag lookup prevents a second
//!   instance here; on AWS the token does as well.
//! - moto's AssociateRouteTable and AssociateAddress (same interface) simply succeed again
//!   where AWS answers Resource.AlreadyAssociated; poscloud accepts both.
//! - moto never throttles by itself, and AWS never throttles *after* doing the work: the
//!   proxy's after-write throttles stand for any answer lost on the way back.

mod common;
use common::{FaultAt, FaultKind, Faults, Rig, Run, ALL_FAULTS};
use std::collections::BTreeMap;

const SHOP: &str = "34567890";
const BUCKET: &str = "poscloud-ssm-output-123456789012-us-east-1";
const DOWN: &[&str] = &["teardown", "--shop", SHOP, "--env", "qa", "--yes"];

/// Writes whose first call is carried out and then answered with a fault, and which.
const LOSE_ON_PROVISION: &[(&str, FaultKind)] = &[
    ("PutParameter", FaultKind::Reset),
    ("CreateVpc", FaultKind::Reset),
    ("CreateInternetGateway", FaultKind::Status500),
    ("AttachInternetGateway", FaultKind::Reset),
    ("CreateSubnet", FaultKind::Throttle),
    ("CreateRouteTable", FaultKind::Status503),
    ("CreateRoute", FaultKind::Reset),
    ("AssociateRouteTable", FaultKind::Status500),
    ("CreateSecurityGroup", FaultKind::Reset),
    ("AuthorizeSecurityGroupIngress", FaultKind::Reset),
    ("AuthorizeSecurityGroupEgress", FaultKind::Status500),
    ("RevokeSecurityGroupEgress", FaultKind::Reset),
    ("PutRolePolicy", FaultKind::Reset),
    ("CreateRole", FaultKind::Reset),
    ("AttachRolePolicy", FaultKind::Status500),
    ("CreateInstanceProfile", FaultKind::Throttle),
    ("AddRoleToInstanceProfile", FaultKind::Reset),
    ("CreateNetworkInterface", FaultKind::Status500),
    ("RunInstances", FaultKind::Reset),
    ("AllocateAddress", FaultKind::Throttle),
    ("AssociateAddress", FaultKind::Reset),
    ("CreateTopic", FaultKind::Reset),
    ("PutMetricAlarm", FaultKind::Status500),
];

const LOSE_ON_TEARDOWN: &[(&str, FaultKind)] = &[
    ("PutParameter", FaultKind::Throttle),
    ("DisassociateAddress", FaultKind::Reset),
    ("ReleaseAddress", FaultKind::Status500),
    ("TerminateInstances", FaultKind::Reset),
    ("DeleteNetworkInterface", FaultKind::Reset),
    ("DeleteSecurityGroup", FaultKind::Status503),
    ("DisassociateRouteTable", FaultKind::Reset),
    ("DeleteRouteTable", FaultKind::Throttle),
    ("DeleteSubnet", FaultKind::Reset),
    ("DetachInternetGateway", FaultKind::Reset),
    ("DeleteInternetGateway", FaultKind::Status500),
    ("DeleteVpc", FaultKind::Reset),
    ("RemoveRoleFromInstanceProfile", FaultKind::Reset),
    ("DeleteInstanceProfile", FaultKind::Throttle),
    ("DetachRolePolicy", FaultKind::Reset),
    ("DeleteRolePolicy", FaultKind::Status500),
    ("DeleteRole", FaultKind::Reset),
    ("DeleteParameter", FaultKind::Reset),
    ("DeleteAlarms", FaultKind::Reset),
    ("DeleteTopic", FaultKind::Throttle),
];

fn faults(seed: u64, lose_first: &[(String, FaultKind)]) -> Faults {
    Faults {
        percent: 20,
        seed,
        kinds: ALL_FAULTS.to_vec(),
        lose_first: lose_first.to_vec(),
    }
}

fn owned(list: &[(&str, FaultKind)]) -> Vec<(String, FaultKind)> {
    list.iter().map(|(a, k)| (a.to_string(), *k)).collect()
}

/// What the user saw must read as progress and retries, never as a crash or a debug dump.
fn assert_readable(what: &str, run: &Run) {
    for bad in [
        "panicked",
        "backtrace",
        "RUST_BACKTRACE",
        "Error {",
        "ServiceError",
        "DispatchFailure",
        "ConnectorError",
        "Some(",
    ] {
        assert!(
            !run.stderr.contains(bad) && !run.stdout.contains(bad),
            "{what}: output shows {bad:?}:\n{}\n{}",
            run.stderr,
            run.stdout
        );
    }
    assert!(
        run.stderr.contains("retrying (attempt "),
        "{what}: no retry note on stderr:\n{}",
        run.stderr
    );
}

fn summary(injected: &[common::Injected]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in injected {
        *m.entry(format!("{:?} {:?}", i.kind, i.at)).or_default() += 1;
    }
    m
}

#[test]
fn provision_and_teardown_converge_with_a_fifth_of_calls_failing() {
    let rig = Rig::new();
    let before = rig.inventory();
    // SSH from an admin network and POS egress to one network only: the plan then adds an
    // inbound and an outbound rule and revokes the default outbound one, all under faults.
    let stack = rig.stack_file(
        "faults.toml",
        "admin_cidrs = []",
        "admin_cidrs = [\"203.0.113.0/24\"]",
    );
    let text = std::fs::read_to_string(&stack).unwrap().replace(
        "pos_egress_cidrs = [\"0.0.0.0/0\"]",
        "pos_egress_cidrs = [\"198.51.100.0/24\"]",
    );
    std::fs::write(&stack, text).unwrap();
    let up_args = [
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--stack",
        &stack,
        "--until",
        "infra",
    ];
    let mut lose = owned(LOSE_ON_PROVISION);
    // The shared output bucket (S3 is recorded as METHOD /path): its create, then its
    // public-access block (the same path; only the first PUT loses its answer).
    lose.push((format!("PUT /{BUCKET}/"), FaultKind::Reset));

    rig.proxy.set_faults(Some(faults(0x5eed_0001, &lose)));
    let up = rig.run(&up_args);
    eprintln!("provision under faults:\n{}", up.stderr);
    let injected = rig.proxy.injected();
    let calls = rig.proxy.calls().len();
    rig.proxy.set_faults(None);
    assert_eq!(
        up.code,
        0,
        "provision under faults failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        summary(&injected),
        up.stdout,
        up.stderr
    );
    assert_readable("provision", &up);
    assert!(
        up.stdout.contains("POS private IP  192.168.222.233"),
        "{}",
        up.stdout
    );

    // The faults really happened: about a fifth of the calls, every kind, and each listed
    // write was carried out and then answered with an error or nothing.
    let random = injected.len() - lose.len();
    assert!(
        random * 100 >= calls * 10,
        "only {random} random faults in {calls} calls: {:?}",
        summary(&injected)
    );
    for kind in ALL_FAULTS {
        assert!(
            injected.iter().any(|i| i.kind == kind),
            "no {kind:?} fault: {:?}",
            summary(&injected)
        );
    }
    assert!(injected.iter().any(|i| i.at == FaultAt::Before));
    for (action, _) in &lose {
        assert!(
            injected
                .iter()
                .any(|i| i.action == *action && i.is_lost_write()),
            "{action} never lost its answer: {injected:?}"
        );
    }

    rig.assert_one_stack(SHOP, "qa", "after provision under faults");
    let after = rig.inventory();
    assert_eq!(after.vpcs, before.vpcs + 1);
    assert_eq!(after.eips, before.eips + 2);
    assert_eq!(after.enis, before.enis + 2);
    assert_eq!(after.live_instances, before.live_instances + 1);
    // Two groups of the stack and the new VPC's default group.
    assert_eq!(after.security_groups, before.security_groups + 3);
    assert_eq!(after.roles, before.roles + 1);
    assert_eq!(after.instance_profiles, before.instance_profiles + 1);

    // Converged to the profile, not just to one of everything: a clean re-run has nothing
    // to do (every rule, route, association and policy is there).
    rig.proxy.reset();
    let again = rig.run(&up_args).ok();
    assert!(
        again.stdout.contains("nothing to do"),
        "{}\n{}",
        again.stdout,
        again.stderr
    );
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    rig.proxy.reset();
    rig.proxy
        .set_faults(Some(faults(0x5eed_0002, &owned(LOSE_ON_TEARDOWN))));
    let down = rig.run(DOWN);
    eprintln!("teardown under faults:\n{}", down.stderr);
    let injected = rig.proxy.injected();
    rig.proxy.set_faults(None);
    assert_eq!(
        down.code,
        0,
        "teardown under faults failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        summary(&injected),
        down.stdout,
        down.stderr
    );
    assert_readable("teardown", &down);
    for (action, _) in LOSE_ON_TEARDOWN {
        assert!(
            injected
                .iter()
                .any(|i| i.action == *action && i.is_lost_write()),
            "{action} never lost its answer: {injected:?}"
        );
    }
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
    assert_eq!(
        rig.inventory(),
        before,
        "no VPC, EIP, ENI, instance, SG or IAM object more than before"
    );
}
