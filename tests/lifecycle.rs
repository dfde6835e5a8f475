//! Provision → verify every property through the SDK → converged re-runs make zero writes →
//! teardown → nothing left. Against the moto emulator (see tests/common for its limits).

mod common;
use common::Rig;

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

const SHOP: &str = "12345678";

#[test]
fn qa_stack_lifecycle() {
    let rig = Rig::new();
    let before = rig.inventory();

    rig.provision_infra(SHOP, "qa")
        .ok()
        .stdout_has("POS private IP  192.168.222.233");
    let first_writes = rig.proxy.ok_writes();
    assert!(
        first_writes.contains(&"RunInstances".to_string()),
        "{first_writes:?}"
    );
    // Exactly the writes a fresh stack needs: lock + 21 changes (the output bucket's take
    // 3 calls) + a record of each of the 10 ids EC2 made (SSM `id/<role>`) + the alert
    // topic and its two alarms (found by name: no record) + unlock.
    assert_eq!(first_writes.len(), 38, "{first_writes:?}");
    let records = rig.block(
        rig.ssm
            .get_parameters_by_path()
            .path(format!("/poscloud/{SHOP}/qa/id"))
            .send(),
    );
    let mut roles: Vec<String> = records
        .unwrap()
        .parameters()
        .iter()
        .filter_map(|p| p.name()?.rsplit('/').next().map(str::to_string))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "eip-host",
            "eip-pos",
            "eni-pos",
            "host",
            "igw",
            "route-table",
            "sg-host",
            "sg-pos",
            "subnet",
            "vpc"
        ]
    );

    // Every property, read back through the SDK (not through poscloud).
    rig.block(async {
        let fs = vec![
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:poscloud:shop")
                .values(SHOP)
                .build(),
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:poscloud:env")
                .values("qa")
                .build(),
        ];
        let vpcs = rig
            .ec2
            .describe_vpcs()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(vpcs.vpcs().len(), 1);
        let vpc = &vpcs.vpcs()[0];
        assert_eq!(vpc.cidr_block(), Some("192.168.222.0/24"));
        let tag = |tags: &[aws_sdk_ec2::types::Tag], k: &str| {
            tags.iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        assert_eq!(tag(vpc.tags(), "poscloud:shop").as_deref(), Some(SHOP));
        assert_eq!(tag(vpc.tags(), "poscloud:env").as_deref(), Some("qa"));
        assert_eq!(tag(vpc.tags(), "poscloud:role").as_deref(), Some("vpc"));
        assert_eq!(
            tag(vpc.tags(), "Name").as_deref(),
            Some("poscloud-12345678-qa-vpc")
        );

        let subnets = rig
            .ec2
            .describe_subnets()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(subnets.subnets().len(), 1);
        assert_eq!(subnets.subnets()[0].cidr_block(), Some("192.168.222.0/24"));

        let rtbs = rig
            .ec2
            .describe_route_tables()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        let rtb = &rtbs.route_tables()[0];
        let igws = rig
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        let igw = &igws.internet_gateways()[0];
        assert_eq!(igw.attachments()[0].vpc_id(), vpc.vpc_id());
        assert!(rtb
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id() == igw.internet_gateway_id()));
        assert!(rtb
            .associations()
            .iter()
            .any(|a| a.subnet_id() == subnets.subnets()[0].subnet_id()));

        // Security groups: host has no inbound (no admin CIDRs in qa.toml), pos none either.
        let sgs = rig
            .ec2
            .describe_security_groups()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(sgs.security_groups().len(), 2);
        for g in sgs.security_groups() {
            assert!(
                g.ip_permissions().is_empty(),
                "{:?} has inbound rules",
                g.group_id()
            );
            assert_eq!(g.vpc_id(), vpc.vpc_id());
        }
        let sg_of = |role: &str| {
            sgs.security_groups()
                .iter()
                .find(|g| tag(g.tags(), "poscloud:role").as_deref() == Some(role))
                .and_then(|g| g.group_id())
                .unwrap()
                .to_string()
        };
        let (sg_host, sg_pos) = (sg_of("sg-host"), sg_of("sg-pos"));

        // The instance: two ENIs, eth1 = 192.168.222.233 in SG pos, eth0 in SG host.
        let res = rig
            .ec2
            .describe_instances()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        let insts: Vec<_> = res
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .collect();
        assert_eq!(insts.len(), 1);
        let i = insts[0];
        assert_eq!(
            i.image_id(),
            Some("ami-0c7b6d5a1e2f3a4b5"),
            "newest CentOS 7 fixture"
        );
        assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.large"));
        assert_eq!(
            i.metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str()),
            Some("required")
        );
        assert_eq!(
            i.metadata_options()
                .and_then(|m| m.http_put_response_hop_limit()),
            Some(1)
        );
        assert!(i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .unwrap()
            .ends_with("/poscloud/poscloud-12345678-qa"));
        let nics = i.network_interfaces();
        assert_eq!(nics.len(), 2);
        let by_index = |idx: i32| {
            nics.iter()
                .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(idx))
                .unwrap()
        };
        let (eth0, eth1) = (by_index(0), by_index(1));
        assert_eq!(eth1.private_ip_address(), Some("192.168.222.233"));
        assert_eq!(eth1.groups()[0].group_id(), Some(sg_pos.as_str()));
        assert_eq!(eth0.groups()[0].group_id(), Some(sg_host.as_str()));
        assert_ne!(eth0.private_ip_address(), Some("192.168.222.233"));

        // Root volume: 100 GB gp3 encrypted.
        let vol_id = i.block_device_mappings()[0]
            .ebs()
            .unwrap()
            .volume_id()
            .unwrap();
        let vols = rig
            .ec2
            .describe_volumes()
            .volume_ids(vol_id)
            .send()
            .await
            .unwrap();
        let v = &vols.volumes()[0];
        assert_eq!(v.size(), Some(100));
        assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
        assert_eq!(v.encrypted(), Some(true));

        // Termination protection: off for qa.
        let attr = rig
            .ec2
            .describe_instance_attribute()
            .instance_id(i.instance_id().unwrap())
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .unwrap();
        assert_eq!(
            attr.disable_api_termination().and_then(|a| a.value()),
            Some(false)
        );

        // Two Elastic IPs, one on each ENI.
        let eips = rig
            .ec2
            .describe_addresses()
            .set_filters(Some(fs.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(eips.addresses().len(), 2);
        let on = |eni: Option<&str>| {
            eips.addresses()
                .iter()
                .filter(|a| a.network_interface_id() == eni)
                .count()
        };
        assert_eq!(on(eth0.network_interface_id()), 1);
        assert_eq!(on(eth1.network_interface_id()), 1);

        // The role has the SSM core policy; user-data is there and holds no private key.
        let pol = rig
            .iam
            .list_attached_role_policies()
            .role_name("poscloud-12345678-qa")
            .send()
            .await
            .unwrap();
        assert!(pol
            .attached_policies()
            .iter()
            .any(|p| p.policy_name() == Some("AmazonSSMManagedInstanceCore")));
        assert_eq!(
            pol.attached_policies().len(),
            1,
            "only the SSM core managed policy"
        );
        // Its inline policy reaches only its own S3 prefix and SSM path.
        let inline = rig
            .iam
            .get_role_policy()
            .role_name("poscloud-12345678-qa")
            .policy_name("poscloud-stack-scope")
            .send()
            .await
            .unwrap();
        let doc = percent_decode(inline.policy_document());
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let resources: Vec<&str> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Resource"].as_str().unwrap())
            .collect();
        let bucket = "poscloud-ssm-output-123456789012-us-east-1";
        assert_eq!(
            resources,
            [
                format!("arn:aws:s3:::{bucket}/12345678/qa/*"),
                format!("arn:aws:s3:::{bucket}"),
                "arn:aws:ssm:us-east-1:123456789012:parameter/poscloud/12345678/qa/*".to_string(),
            ]
        );
        // The SSM output bucket: encrypted, public access blocked.
        let s3 = &rig.s3;
        let enc = s3
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
        assert_eq!(
            rule.apply_server_side_encryption_by_default()
                .unwrap()
                .sse_algorithm()
                .as_str(),
            "AES256"
        );
        let pab = s3
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let pab = pab.public_access_block_configuration().unwrap();
        assert_eq!(
            (
                pab.block_public_acls(),
                pab.ignore_public_acls(),
                pab.block_public_policy(),
                pab.restrict_public_buckets()
            ),
            (Some(true), Some(true), Some(true), Some(true))
        );
        let ud = rig
            .ec2
            .describe_instance_attribute()
            .instance_id(i.instance_id().unwrap())
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        use base64::Engine;
        let ud = base64::engine::general_purpose::STANDARD
            .decode(ud.user_data().and_then(|u| u.value()).unwrap())
            .unwrap();
        let ud = String::from_utf8(ud).unwrap();
        assert!(ud.starts_with("#cloud-config\n"));
        assert!(!ud.contains("PRIVATE KEY") && !ud.contains("testing"));

        // The lock was released.
        assert!(rig
            .ssm
            .get_parameter()
            .name("/poscloud/12345678/qa/lock")
            .send()
            .await
            .is_err());
    });

    // A converged stack: provision and plan make no write call at all.
    rig.provision_infra(SHOP, "qa")
        .ok()
        .stdout_has("nothing to do")
        .no_aws_write();
    let plan = rig
        .run(&["plan", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .no_aws_write()
        .json();
    assert_eq!(plan["writes"], 0, "{plan}");
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .no_aws_write()
        .json();
    assert_eq!(status["drifted"], 0, "{status}");
    assert_eq!(status["exists"], true, "{status}");

    // The journal recorded every write with the user.
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    let writes: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "write")
        .collect();
    assert!(writes.iter().all(|w| w["user"] == "tester"));
    // Refused attempts are recorded too: here only the eventual consistency the AWS model
    // shows (a write naming a resource made moments ago), each retried until it was done.
    let (ok, refused): (Vec<_>, Vec<_>) = writes.iter().partition(|w| w["result"] == "ok");
    assert_eq!(ok.len(), 38);
    assert!(
        refused.iter().all(|w| {
            let r = w["result"].as_str().unwrap();
            r.contains(".NotFound") || r.contains("IncorrectInstanceState")
        }),
        "{refused:?}"
    );
    assert!(writes
        .iter()
        .any(|w| w["op"] == "RunInstances" && w["resource"].as_str().unwrap().starts_with("i-")));

    // Teardown removes everything, verified independently; a second teardown is fine.
    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok()
        .stdout_has("nothing tagged remains");
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
    assert_eq!(
        rig.inventory(),
        before,
        "no VPC, EIP, ENI, instance, SG or IAM object more than before"
    );
    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok()
        .stdout_has("does not exist");
}

#[test]
fn prod_has_termination_protection_and_guarded_teardown() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "prod").ok();
    let iid = rig.instance_id(SHOP, "prod");
    let protected = |rig: &Rig| {
        rig.block(async {
            rig.ec2
                .describe_instance_attribute()
                .instance_id(&iid)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
                .send()
                .await
                .unwrap()
                .disable_api_termination()
                .and_then(|a| a.value())
        })
    };
    assert_eq!(protected(&rig), Some(true));

    // The env defaults to prod: teardown refuses without an explicit --env.
    rig.run(&["teardown", "--shop", SHOP, "--yes", "--allow-prod"])
        .status(4)
        .stderr_has("explicit env")
        .no_aws_write();
    // Explicit prod, but no terminal to type the shop code at and no --allow-prod.
    rig.run(&["teardown", "--shop", SHOP, "--env", "prod", "--yes"])
        .status(4)
        .stderr_has("--allow-prod")
        .no_aws_write();
    assert_eq!(
        protected(&rig),
        Some(true),
        "protection untouched by refused teardowns"
    );

    rig.run(&[
        "teardown",
        "--shop",
        SHOP,
        "--env",
        "prod",
        "--yes",
        "--allow-prod",
    ])
    .ok()
    .stderr_has("lift termination protection");
    assert_eq!(rig.tagged(SHOP, "prod"), Vec::<String>::new());
}

#[test]
fn drift_is_reported_and_fixed() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    // Someone opens RDP to the world on the host group and detaches the POS address.
    rig.open_inbound("sg-host", "tcp", 3389, "0.0.0.0/0");
    rig.block(async {
        let eip = rig
            .ec2
            .describe_addresses()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:poscloud:role")
                    .values("eip-pos")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .addresses()[0]
            .association_id()
            .unwrap()
            .to_string();
        rig.ec2
            .disassociate_address()
            .association_id(eip)
            .send()
            .await
            .unwrap();
    });
    rig.run(&["status", "--shop", SHOP, "--env", "qa"])
        .ok()
        .stdout_has("revoke inbound tcp/3389 0.0.0.0/0")
        .stdout_has("associate Elastic IP with eth1")
        .stdout_has("2 resource(s) drifted");

    let mut w = rig.provision_infra(SHOP, "qa").ok().writes();
    w.sort();
    assert_eq!(
        w,
        [
            "AssociateAddress",
            "DeleteParameter",
            "PutParameter",
            "RevokeSecurityGroupIngress"
        ]
    );
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .json();
    assert_eq!(status["drifted"], 0, "{status}");
}

#[test]
fn list_dry_run_json_and_docs_generation() {
    let rig = Rig::new();
    // Dry runs change nothing.
    let dry = rig
        .run(&[
            "provision",
            "--shop",
            "11111111",
            "--env",
            "dev",
            "--dry-run",
            "--output",
            "json",
        ])
        .ok()
        .no_aws_write();
    assert_eq!(dry.json()["dry_run"], true);
    // 21 changes of the infra + the alert topic and its two alarms (no alert_email: no
    // subscription).
    assert_eq!(dry.json()["writes"], 25);
    assert!(
        (dry.json()["monthly_cost_usd"]["total_month"]
            .as_f64()
            .unwrap()
            - 76.04)
            .abs()
            < 0.01
    );

    rig.provision_infra("11111111", "dev").ok();
    rig.run(&[
        "provision",
        "--shop",
        "22222222",
        "--env",
        "qa",
        "--until",
        "infra",
        "--output",
        "json",
    ])
    .ok()
    .json();
    let list = rig.run(&["list", "--output", "json"]).ok().json();
    let stacks = list["stacks"].as_array().unwrap();
    let names: Vec<String> = stacks
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["shop"].as_str().unwrap(),
                s["env"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["11111111/dev", "22222222/qa"]);
    assert!(stacks
        .iter()
        .all(|s| s["state"] == "running" && s["public_ips"].as_array().unwrap().len() == 2));
    // Infra only: no phase recorded, no VPN; launch time and creation time known.
    assert!(
        stacks.iter().all(|s| s["phases"] == serde_json::json!([])
            && s["vpn_locations"] == 0
            && s["launch_time"].is_string()
            && s["created"].is_string()),
        "{list}"
    );
    rig.run(&["list"])
        .ok()
        .stdout_has("22222222   qa")
        .stdout_has("LAUNCHED")
        .stdout_has("PHASES");

    rig.run(&[
        "teardown",
        "--shop",
        "11111111",
        "--env",
        "dev",
        "--dry-run",
    ])
    .ok()
    .stdout_has("would remove")
    .stdout_has("instance i-")
    .no_aws_write();
    assert!(!rig.tagged("11111111", "dev").is_empty());

    // Completions and man page come from the clap definitions.
    rig.run(&["completions", "bash"])
        .ok()
        .stdout_has("provision")
        .stdout_has("--shop");
    rig.run(&["man"]).ok().stdout_has(".TH poscloud");
}
