//! Drift made behind poscloud's back with the test's own SDK client (signed with the rig's
//! truth key, as a person in the console): `status` shows it; provision fixes what it can
//! (IMDSv2 back to required, in place), and the runbook names the manual fix for each one it
//! leaves. `--detailed-exitcode` on status and plan; status of a shop in another env.

mod common;
use aws_sdk_ec2::types::{Filter, HttpTokensState, IpPermission, UserIdGroupPair};
use common::{repo, Rig};

const SHOP: &str = "12345678";

fn tag(role: &str) -> Filter {
    Filter::builder()
        .name("tag:poscloud:role")
        .values(role)
        .build()
}

fn http_tokens(rig: &Rig) -> String {
    let iid = rig.instance_id(SHOP, "qa");
    rig.block(async {
        let out = rig
            .ec2
            .describe_instances()
            .instance_ids(iid)
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0]
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default()
    })
}

/// The resource rows of `status` text: the lines indented by two, phases and notes aside.
fn rows(text: &str) -> Vec<&str> {
    text.lines()
        .skip(1)
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter(|l| !l.starts_with("  phase ") && !l.starts_with("  !"))
        .filter(|l| !l.starts_with("  locked"))
        .collect()
}

/// Every row's status word (ok, drifted, missing) starts at the same column.
fn assert_aligned(text: &str) {
    let cols: Vec<usize> = rows(text)
        .iter()
        .map(|l| {
            ["ok", "drifted", "missing"]
                .iter()
                .filter_map(|w| l.find(&format!(" {w}")).map(|i| i + 1))
                .max()
                .unwrap_or_else(|| panic!("no status in {l:?}"))
        })
        .collect();
    assert!(
        cols.windows(2).all(|w| w[0] == w[1]),
        "columns {cols:?}:\n{text}"
    );
    // The phase rows share the label column: their state starts where the ids do.
    let vpc = text.lines().find(|l| l.starts_with("  VPC ")).unwrap();
    let ids = vpc
        .find(" vpc-")
        .or_else(|| vpc.find(" -"))
        .map(|i| i + 1)
        .unwrap();
    for l in text.lines().filter(|l| l.starts_with("  phase ")) {
        let at = l.find(" done ").or_else(|| l.find(" not run")).unwrap() + 1;
        assert_eq!(at, ids, "{l:?} not aligned with the ids:\n{text}");
    }
}

#[test]
fn imdsv2_drift_is_fixed_by_provision_and_exit_codes_say_drift() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    rig.proxy.reset();
    let status = |extra: &[&str]| {
        let mut a = vec!["status", "--shop", SHOP, "--env", "qa"];
        a.extend_from_slice(extra);
        rig.run(&a)
    };
    let clean = status(&["--detailed-exitcode"]).ok().stdout_has("no drift");
    assert_aligned(&clean.stdout);

    // Someone allows metadata without a token.
    let iid = rig.instance_id(SHOP, "qa");
    rig.block(async {
        rig.ec2
            .modify_instance_metadata_options()
            .instance_id(&iid)
            .http_tokens(HttpTokensState::Optional)
            .send()
            .await
            .unwrap();
    });
    assert_eq!(http_tokens(&rig), "optional");

    // Without the flag drift is no failure.
    let drifted = status(&[])
        .ok()
        .stdout_has("      ! needs: require IMDSv2 (metadata tokens)")
        .stdout_has("1 resource(s) drifted (1 finding(s))");
    let row = rows(&drifted.stdout)
        .into_iter()
        .find(|l| l.contains(&iid))
        .unwrap_or_else(|| panic!("no instance row:\n{}", drifted.stdout));
    assert!(
        row.contains(" drifted ") && row.ends_with("running"),
        "{row:?}"
    );
    assert_aligned(&drifted.stdout);
    let json = status(&["--output", "json"]).no_aws_write().json();
    assert_eq!(json["drifted"], 1, "{json}");
    assert_eq!(json["findings"], 1, "{json}");
    status(&["--detailed-exitcode"]).status(2).no_aws_write();
    rig.run(&["plan", "--shop", SHOP, "--env", "qa", "--detailed-exitcode"])
        .status(2)
        .stdout_has("- require IMDSv2")
        .stdout_lacks("drift: IMDSv2")
        .no_aws_write();

    // Provision sets it back in place, with one call; then nothing is left to do.
    rig.proxy.reset();
    let fixed = rig.provision_infra(SHOP, "qa").ok();
    let writes = rig.proxy.ok_writes();
    assert!(
        writes.contains(&"ModifyInstanceMetadataOptions".to_string())
            && !writes.contains(&"RunInstances".to_string()),
        "{writes:?}\n{}",
        fixed.stdout
    );
    assert_eq!(http_tokens(&rig), "required");
    assert_eq!(rig.instance_id(SHOP, "qa"), iid, "the same instance");
    status(&["--detailed-exitcode"]).ok();
    rig.run(&["plan", "--shop", SHOP, "--env", "qa", "--detailed-exitcode"])
        .ok();

    // With the flag every error exits 1, bad input too; without, bad input stays 2.
    for args in [
        &["status", "--shop", "1234", "--env", "qa"][..],
        &["plan", "--shop", SHOP, "--env", "test"],
        &[
            "status", "--shop", SHOP, "--env", "qa", "--region", "nowhere",
        ],
    ] {
        rig.run(args).status(2);
        rig.poscloud(args)
            .arg("--detailed-exitcode")
            .run()
            .status(1)
            .stderr_has("error");
    }

    // Prod left out by mistake: no list of `missing`, but where the shop is.
    for extra in [&[][..], &["--detailed-exitcode"]] {
        rig.poscloud(["status", "--shop", SHOP])
            .args(extra)
            .run()
            .status(1)
            .stderr_has(
                "shop 12345678 has no prod stack in account 123456789012 (environment credentials), us-east-1; it exists in: qa (run with --env qa)",
            )
            .stdout_lacks("missing")
            .no_aws_write();
    }
    rig.run(&["status", "--shop", "99998888", "--env", "dev"])
        .status(1)
        .stderr_has("shop 99998888 has no dev stack in account 123456789012 (environment credentials), us-east-1, nor in any other env")
        .no_aws_write();

    // `list` labels the two addresses: the POS one under POS IP.
    let list = rig.run(&["list"]).ok();
    let header = list.stdout.lines().next().unwrap();
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with(SHOP))
        .unwrap()
        .to_string();
    let (host_col, pos_col) = (
        header.find("HOST IP").expect("HOST IP header"),
        header.find("POS IP").expect("POS IP header"),
    );
    assert_eq!(line[pos_col..].trim(), rig.pos_eip(), "{header}\n{line}");
    assert!(
        line[host_col..pos_col]
            .trim()
            .parse::<std::net::Ipv4Addr>()
            .is_ok(),
        "{header}\n{line}"
    );
}

/// The runbook's drift table: each row's first `status says` fragment, split at `…`.
fn runbook_patterns() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repo().join("docs/runbooks/reports.md")).unwrap();
    let table = text
        .split("## Drift")
        .nth(1)
        .expect("a Drift section in docs/runbooks/reports.md");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let (cell, fix) = l[1..].split_once('|')?;
            assert!(fix.trim().len() > 20, "no fix in {l:?}");
            let frag = cell.split('`').nth(1)?;
            Some(frag.split('…').map(str::to_string).collect())
        })
        .collect()
}

fn in_runbook(patterns: &[Vec<String>], finding: &str) -> bool {
    patterns.iter().any(|p| {
        let mut rest = finding;
        p.iter().all(|piece| match rest.find(piece.as_str()) {
            Some(i) => {
                rest = &rest[i + piece.len()..];
                true
            }
            None => false,
        })
    })
}

/// The findings provision leaves (not `needs:`), and the summary line.
fn left_findings(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("! "))
        .filter(|f| !f.starts_with("needs: "))
        .map(str::to_string)
        .collect()
}

/// The counts add up: resources drifted = rows saying so, findings = the `!` lines under them.
fn assert_counts(text: &str) {
    let drifted = rows(text).iter().filter(|l| l.contains(" drifted")).count();
    let findings = text.lines().filter(|l| l.starts_with("      ! ")).count();
    let want = format!("{drifted} resource(s) drifted ({findings} finding(s))");
    assert!(text.contains(&want), "want {want:?}:\n{text}");
}

#[test]
fn every_drift_provision_leaves_is_in_the_runbook() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    let iid = rig.instance_id(SHOP, "qa");
    let role = format!("poscloud-{SHOP}-qa");
    rig.block(async {
        let ec2 = &rig.ec2;
        // An extra managed policy on the role.
        rig.iam
            .attach_role_policy()
            .role_name(&role)
            .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
            .send()
            .await
            .unwrap();
        // The default route sent to another gateway.
        let rtb = ec2
            .describe_route_tables()
            .filters(tag("route-table"))
            .send()
            .await
            .unwrap()
            .route_tables()[0]
            .route_table_id()
            .unwrap()
            .to_string();
        let other = ec2.create_internet_gateway().send().await.unwrap();
        let other = other
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .unwrap()
            .to_string();
        ec2.replace_route()
            .route_table_id(&rtb)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&other)
            .send()
            .await
            .unwrap();
        // A host rule naming the POS group.
        let group = |role: &'static str| async move {
            ec2.describe_security_groups()
                .filters(tag(role))
                .send()
                .await
                .unwrap()
                .security_groups()[0]
                .group_id()
                .unwrap()
                .to_string()
        };
        let (host_sg, pos_sg) = (group("sg-host").await, group("sg-pos").await);
        ec2.authorize_security_group_ingress()
            .group_id(&host_sg)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&pos_sg).build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // The POS address moved to eth0.
        let inst = ec2
            .describe_instances()
            .instance_ids(&iid)
            .send()
            .await
            .unwrap();
        let eth0 = inst.reservations()[0].instances()[0]
            .network_interfaces()
            .iter()
            .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
            .and_then(|n| n.network_interface_id())
            .unwrap()
            .to_string();
        let pos_alloc = ec2
            .describe_addresses()
            .filters(tag("eip-pos"))
            .send()
            .await
            .unwrap()
            .addresses()[0]
            .allocation_id()
            .unwrap()
            .to_string();
        ec2.associate_address()
            .allocation_id(&pos_alloc)
            .network_interface_id(&eth0)
            .allow_reassociation(true)
            .send()
            .await
            .unwrap();
        // And the host stopped.
        ec2.stop_instances()
            .instance_ids(&iid)
            .send()
            .await
            .unwrap();
    });
    assert!(common::eventually(
        std::time::Duration::from_secs(30),
        || {
            let s = rig.run(&["status", "--shop", SHOP, "--env", "qa"]);
            s.stdout.contains("instance is stopped")
        }
    ));
    let aws_made = rig.run(&["status", "--shop", SHOP, "--env", "qa"]).ok();
    // The stack file changed instead (a range, an address, a size cannot change in place).
    let base = std::fs::read_to_string(repo().join("stacks/qa.toml")).unwrap();
    let changed = base
        .replace("192.168.222.", "192.168.223.")
        .replace("disk_gb = 100", "disk_gb = 120")
        .replace("small = \"t3.large\"", "small = \"m5.xlarge\"");
    assert_ne!(changed, base);
    let file = rig.home.path().join("moved.toml");
    std::fs::write(&file, changed).unwrap();
    let file_made = rig
        .run(&[
            "status",
            "--shop",
            SHOP,
            "--env",
            "qa",
            "--stack",
            file.to_str().unwrap(),
        ])
        .ok();

    let patterns = runbook_patterns();
    let mut left = Vec::new();
    for out in [&aws_made, &file_made] {
        assert_aligned(&out.stdout);
        assert_counts(&out.stdout);
        left.extend(left_findings(&out.stdout));
    }
    for want in [
        "extra policy attached: arn:aws:iam::aws:policy/ReadOnlyAccess",
        "0.0.0.0/0 goes to igw-",
        "1 rule(s) naming other groups",
        "associated with eni-",
        "instance is stopped",
        "CIDR is 192.168.222.0/24, stack says 192.168.223.0/24",
        "address is 192.168.222.233, stack says 192.168.223.233",
        "instance type is t3.large, stack says m5.xlarge",
        "root volume is 100 GB, stack says 120 GB",
    ] {
        assert!(
            left.iter().any(|f| f.contains(want)),
            "{want:?} not shown:\n{}\n{}",
            aws_made.stdout,
            file_made.stdout
        );
    }
    for f in &left {
        assert!(
            in_runbook(&patterns, f),
            "docs/runbooks/reports.md names no fix for {f:?}"
        );
    }
    // The runbook's fix for the ones made in AWS is what the drift says: the route table
    // and extra policy fixes name the exact commands.
    let runbook = std::fs::read_to_string(repo().join("docs/runbooks/reports.md")).unwrap();
    for cmd in [
        "aws ec2 replace-route",
        "aws iam detach-role-policy",
        "aws ec2 start-instances",
        "aws ec2 disassociate-address",
    ] {
        assert!(runbook.contains(cmd), "{cmd}");
    }
    assert!(!runbook.contains("sets it back to required (drift)"));
}
