//! Desired (StackSpec) vs discovered (AWS) → the steps provision takes. Pure: no AWS calls.

use crate::resources::discover::Discovered;
use crate::spec::StackSpec;

// The plan's vocabulary, kept with the resource modules that make its steps.
pub use crate::resources::change::{resource_label, Action, Change, Plan, Step};

/// The plan: each resource module's steps, in the order they are shown (and roughly the
/// order of their dependencies).
pub fn build(spec: &StackSpec, d: &Discovered, region: &str) -> Plan {
    use crate::resources::*;
    let mut steps = Vec::new();
    steps.extend(network::plan(spec, d));
    steps.extend(subnet::plan(spec, d));
    steps.extend(security_groups::plan(spec, d));
    steps.extend(bucket::plan(spec, d));
    steps.extend(iam::plan(spec, d, region));
    steps.extend(eni::plan(spec, d));
    steps.extend(instance::plan(spec, d));
    steps.extend(eips::plan(d));
    steps.extend(alarms::plan(spec, d, region));
    Plan { steps }
}

/// The plan on fixture values: the built-in qa stack against an empty region, against the
/// stack as provision leaves it, and against that stack changed behind poscloud's back.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::tags::Role;
    use crate::resources::change::step;
    use crate::resources::discover::*;
    use crate::resources::iam::{scope_policy, SSM_CORE_POLICY};
    use crate::resources::security_groups::desired_rules;
    use crate::spec::{Env, StackId};
    use aws_sdk_ec2::types as ec2;

    const REGION: &str = "us-east-1";

    fn spec() -> StackSpec {
        let id = StackId {
            shop: "12345678".parse().unwrap(),
            env: Env::Qa,
        };
        StackSpec::load(id, None, None).unwrap()
    }

    /// The instance as EC2 describes it (through the SDK's own type, so that the fixture
    /// goes through `Instance::from_sdk` like a discovered one).
    fn instance(spec: &StackSpec, state: ec2::InstanceStateName) -> Instance {
        let eni = |index: i32, id: &str, ip: &str| {
            ec2::InstanceNetworkInterface::builder()
                .network_interface_id(id)
                .private_ip_address(ip)
                .attachment(
                    ec2::InstanceNetworkInterfaceAttachment::builder()
                        .device_index(index)
                        .build(),
                )
                .build()
        };
        let sdk = ec2::Instance::builder()
            .instance_id("i-1")
            .state(ec2::InstanceState::builder().name(state).build())
            .instance_type(spec.instance_type.as_str().into())
            .image_id("ami-1")
            .network_interfaces(eni(0, "eni-host", "192.168.222.10"))
            .network_interfaces(eni(1, "eni-pos", &spec.pos_ip.to_string()))
            .iam_instance_profile(
                ec2::IamInstanceProfile::builder()
                    .arn("arn:aws:iam::123456789012:instance-profile/p")
                    .build(),
            )
            .metadata_options(
                ec2::InstanceMetadataOptionsResponse::builder()
                    .http_tokens(ec2::HttpTokensState::Required)
                    .http_put_response_hop_limit(2)
                    .build(),
            )
            .build();
        let mut i = Instance::from_sdk(&sdk);
        i.root_volume = Some(Volume {
            id: "vol-1".into(),
            size_gb: spec.disk_gb,
            volume_type: VolumeKind::Gp3,
            encrypted: true,
        });
        i.termination_protection = spec.termination_protection;
        i
    }

    /// The stack as a finished provision leaves it: every resource as the spec says.
    fn provisioned(spec: &StackSpec) -> Discovered {
        let net = spec.network.to_string();
        let name = iam_name(&spec.id);
        let mut d = Discovered {
            account: "123456789012".into(),
            output: OutputBucket {
                name: "poscloud-ssm-123456789012-us-east-1".into(),
                exists: true,
                encrypted: true,
                public_access_blocked: true,
                ..Default::default()
            },
            ..Default::default()
        };
        d.vpcs.push(Vpc {
            id: "vpc-1".into(),
            cidr: net.clone(),
        });
        d.igws.push(Igw {
            id: "igw-1".into(),
            attached_vpc: Some("vpc-1".into()),
        });
        d.subnets.push(Subnet {
            id: "subnet-1".into(),
            cidr: net,
        });
        d.route_tables.push(RouteTable {
            id: "rtb-1".into(),
            default_gateway: Some("igw-1".into()),
            associations: vec![("rtbassoc-1".into(), "subnet-1".into())],
        });
        for (role, id) in [(Role::SgHost, "sg-host"), (Role::SgPos, "sg-pos")] {
            let (ingress, egress) = desired_rules(spec, role);
            d.security_groups.push(SecurityGroup {
                id: id.into(),
                role,
                ingress,
                egress,
                other_rules: 0,
            });
        }
        d.enis.push(Eni {
            id: "eni-pos".into(),
            role: Some(Role::EniPos),
            private_ip: Some(spec.pos_ip.to_string()),
            groups: vec!["sg-pos".into()],
            attached_to: Some("i-1".into()),
            status: "in-use".into(),
        });
        d.instances
            .push(instance(spec, ec2::InstanceStateName::Running));
        for (role, eni) in [(Role::EipHost, "eni-host"), (Role::EipPos, "eni-pos")] {
            d.eips.push(Eip {
                allocation_id: format!("eipalloc-{eni}"),
                role: Some(role),
                public_ip: "198.51.100.7".into(),
                association_id: Some(format!("eipassoc-{eni}")),
                eni_id: Some(eni.into()),
            });
        }
        d.iam_role = Some(IamRole {
            name: name.clone(),
            policies: vec![SSM_CORE_POLICY.into()],
            scope_policy: Some(scope_policy(&spec.id, &d.account, REGION, &d.output.name)),
        });
        d.instance_profile = Some(InstanceProfile {
            arn: format!("arn:aws:iam::123456789012:instance-profile/{name}"),
            name: name.clone(),
            roles: vec![name],
        });
        let topic = crate::resources::alarms::topic_arn(&spec.id, &d.account, REGION);
        d.alert_topic = Some(AlertTopic {
            arn: topic.clone(),
            subscriptions: vec![],
        });
        for role in crate::resources::alarms::ROLES {
            d.alarms.push(alarm(spec, role, &topic, "i-1"));
        }
        d
    }

    /// An alarm as PutMetricAlarm leaves it.
    fn alarm(spec: &StackSpec, role: Role, topic: &str, instance: &str) -> Alarm {
        let w = crate::resources::alarms::wanted(role, topic, REGION);
        Alarm {
            role,
            name: crate::aws::tags::name(&spec.id, role),
            namespace: "AWS/EC2".into(),
            metric: w.metric.into(),
            instance: Some(instance.into()),
            statistic: Some(w.statistic.into()),
            period: Some(w.period),
            evaluation_periods: Some(w.evaluation_periods),
            threshold: Some(w.threshold),
            comparison: Some(w.comparison.into()),
            alarm_actions: w.alarm_actions,
            ok_actions: w.ok_actions,
            actions_enabled: true,
            state: "OK".into(),
        }
    }

    fn step_of(plan: &Plan, role: Role) -> &Step {
        plan.steps
            .iter()
            .find(|s| s.resource == role)
            .unwrap_or_else(|| panic!("no step for {role:?}: {plan:#?}"))
    }

    /// Every step but `role`'s is untouched: no change, no drift.
    fn only(plan: &Plan, role: Role) -> &Step {
        for s in plan.steps.iter().filter(|s| s.resource != role) {
            assert_eq!(s.action, Action::Exists, "{s:#?}");
            assert!(s.drift.is_empty(), "{s:#?}");
        }
        step_of(plan, role)
    }

    #[test]
    fn an_empty_region_creates_every_resource_in_dependency_order() {
        let spec = spec();
        let plan = build(&spec, &Discovered::default(), REGION);
        let order: Vec<Role> = plan.steps.iter().map(|s| s.resource).collect();
        assert_eq!(
            order,
            [
                Role::Vpc,
                Role::Igw,
                Role::Subnet,
                Role::RouteTable,
                Role::SgHost,
                Role::SgPos,
                Role::OutputBucket,
                Role::IamRole,
                Role::InstanceProfile,
                Role::EniPos,
                Role::Host,
                Role::EipHost,
                Role::EipPos,
                Role::AlertTopic,
                Role::AlarmSystem,
                Role::AlarmInstance,
            ]
        );
        for s in &plan.steps {
            assert_eq!(s.action, Action::Create, "{s:#?}");
            assert!(s.id.is_none() && s.drift.is_empty(), "{s:#?}");
            assert!(!s.changes.is_empty(), "{s:#?}");
        }
        let net = spec.network.to_string();
        assert_eq!(
            step_of(&plan, Role::Vpc).changes,
            [Change::CreateVpc { cidr: net.clone() }]
        );
        assert_eq!(
            step_of(&plan, Role::Igw).changes,
            [Change::CreateIgw, Change::AttachIgw]
        );
        assert_eq!(
            step_of(&plan, Role::Subnet).changes,
            [Change::CreateSubnet { cidr: net }]
        );
        assert_eq!(
            step_of(&plan, Role::RouteTable).changes,
            [
                Change::CreateRouteTable,
                Change::AddDefaultRoute,
                Change::AssociateRouteTable
            ]
        );
        assert_eq!(
            step_of(&plan, Role::EniPos).changes,
            [Change::CreatePosEni {
                ip: spec.pos_ip.to_string()
            }]
        );
        assert_eq!(
            step_of(&plan, Role::Host).changes,
            [Change::Launch {
                instance_type: spec.instance_type.clone(),
                disk_gb: spec.disk_gb,
            }]
        );
        assert_eq!(
            step_of(&plan, Role::EipPos).changes,
            [
                Change::AllocateEip { role: Role::EipPos },
                Change::AssociateEip { role: Role::EipPos }
            ]
        );
        // A new group starts with AWS's allow-all egress: what the stack does not allow
        // is revoked, what it wants is authorized.
        let host_sg = &step_of(&plan, Role::SgHost).changes;
        assert_eq!(
            host_sg[0],
            Change::CreateSecurityGroup { role: Role::SgHost }
        );
        let (want_in, _) = desired_rules(&spec, Role::SgHost);
        if !want_in.is_empty() {
            assert!(host_sg.contains(&Change::Authorize {
                role: Role::SgHost,
                ingress: true,
                rules: want_in,
            }));
        }
        assert_eq!(
            plan.writes(),
            plan.steps.iter().map(|s| s.changes.len()).sum::<usize>()
        );
        assert_eq!(plan.count(|c| matches!(c, Change::AllocateEip { .. })), 2);
    }

    #[test]
    fn the_stack_as_provisioned_plans_nothing() {
        let spec = spec();
        let d = provisioned(&spec);
        let plan = build(&spec, &d, REGION);
        assert_eq!(plan.writes(), 0, "{plan:#?}");
        for s in &plan.steps {
            assert_eq!(s.action, Action::Exists, "{s:#?}");
            assert!(s.id.is_some() && s.drift.is_empty(), "{s:#?}");
        }
        assert_eq!(step_of(&plan, Role::Host).id.as_deref(), Some("i-1"));
        // The scope policy names the region: another region's is a change (as are the
        // alarms, whose recover action and topic name it; the fixture's topic is REGION's).
        let mut d = d;
        d.alert_topic = None;
        d.alarms.clear();
        let elsewhere = build(&spec, &d, "eu-west-1");
        assert_eq!(
            step_of(&elsewhere, Role::IamRole).changes,
            [Change::PutScopePolicy]
        );
        for s in elsewhere.steps.iter().filter(|s| {
            !matches!(
                s.resource,
                Role::IamRole | Role::AlertTopic | Role::AlarmSystem | Role::AlarmInstance
            )
        }) {
            assert_eq!(s.action, Action::Exists, "{s:#?}");
        }
    }

    #[test]
    fn what_poscloud_sets_in_place_is_a_change_of_an_update() {
        let spec = spec();
        let mut d = provisioned(&spec);
        let i = &mut d.instances[0];
        i.termination_protection = !spec.termination_protection;
        i.http_tokens = Some(HttpTokens::Optional);
        let plan = build(&spec, &d, REGION);
        let host = only(&plan, Role::Host);
        assert_eq!(host.action, Action::Update);
        assert_eq!(
            host.changes,
            [
                Change::SetTerminationProtection {
                    on: spec.termination_protection
                },
                Change::RequireImdsv2
            ]
        );
        assert!(host.drift.is_empty(), "{host:#?}");
    }

    #[test]
    fn what_needs_a_person_is_drift_not_a_change() {
        let spec = spec();
        let mut d = provisioned(&spec);
        let mut i = instance(&spec, ec2::InstanceStateName::Stopped);
        i.instance_type = "t3.nano".into();
        i.profile_arn = None;
        i.interfaces.retain(|(index, _, _)| *index == 0);
        i.interfaces
            .push((1, "eni-other".into(), "192.168.222.9".into()));
        i.root_volume = Some(Volume {
            id: "vol-1".into(),
            size_gb: spec.disk_gb - 1,
            volume_type: VolumeKind::Gp2,
            encrypted: false,
        });
        d.instances = vec![i];
        let plan = build(&spec, &d, REGION);
        let host = only(&plan, Role::Host);
        assert_eq!(host.action, Action::Exists, "{host:#?}");
        assert!(host.changes.is_empty());
        assert_eq!(
            host.drift,
            [
                "instance is stopped".to_string(),
                format!(
                    "instance type is t3.nano, stack says {}",
                    spec.instance_type
                ),
                "root volume vol-1 is not encrypted".to_string(),
                "root volume is gp2, not gp3".to_string(),
                format!(
                    "root volume is {} GB, stack says {} GB",
                    spec.disk_gb - 1,
                    spec.disk_gb
                ),
                "no instance profile attached".to_string(),
                "eth1 is eni-other, not the stack's eni-pos".to_string(),
            ]
        );
        // A pending instance is on its way up: not drift.
        d.instances = vec![instance(&spec, ec2::InstanceStateName::Pending)];
        let plan = build(&spec, &d, REGION);
        assert!(step_of(&plan, Role::Host).drift.is_empty());
    }

    #[test]
    fn a_network_changed_by_hand_is_drift() {
        let spec = spec();
        let mut d = provisioned(&spec);
        d.vpcs[0].cidr = "10.9.0.0/16".into();
        let plan = build(&spec, &d, REGION);
        let vpc = only(&plan, Role::Vpc);
        assert_eq!(
            vpc.drift,
            [format!("CIDR is 10.9.0.0/16, stack says {}", spec.network)]
        );
        assert!(vpc.changes.is_empty());

        // The default route sent elsewhere: drift (poscloud does not take a route over);
        // a missing association: a change.
        let mut d = provisioned(&spec);
        d.route_tables[0].default_gateway = Some("nat-1".into());
        d.route_tables[0].associations.clear();
        let plan = build(&spec, &d, REGION);
        let rtb = only(&plan, Role::RouteTable);
        assert_eq!(
            rtb.drift,
            ["0.0.0.0/0 goes to nat-1, not the stack's internet gateway"]
        );
        assert_eq!(rtb.changes, [Change::AssociateRouteTable]);
        assert_eq!(rtb.action, Action::Update);

        // A detached gateway is attached again.
        let mut d = provisioned(&spec);
        d.igws[0].attached_vpc = None;
        let plan = build(&spec, &d, REGION);
        assert_eq!(only(&plan, Role::Igw).changes, [Change::AttachIgw]);

        // eth1 with another address, an address on another interface.
        let mut d = provisioned(&spec);
        d.enis[0].private_ip = Some("192.168.222.9".into());
        d.eips[1].eni_id = Some("eni-other".into());
        let plan = build(&spec, &d, REGION);
        assert_eq!(
            step_of(&plan, Role::EniPos).drift,
            [format!(
                "address is 192.168.222.9, stack says {}",
                spec.pos_ip
            )]
        );
        assert_eq!(
            step_of(&plan, Role::EipPos).drift,
            ["associated with eni-other, not eth1"]
        );
        assert_eq!(plan.writes(), 0);
    }

    #[test]
    fn a_rule_opened_by_hand_is_revoked_and_foreign_rules_are_drift() {
        let spec = spec();
        let mut d = provisioned(&spec);
        let opened = Rule {
            protocol: "tcp".into(),
            from_port: Some(3389),
            to_port: Some(3389),
            cidr: "0.0.0.0/0".into(),
        };
        let sg = &mut d.security_groups[1];
        assert_eq!(sg.role, Role::SgPos);
        sg.ingress.push(opened.clone());
        sg.other_rules = 2;
        let plan = build(&spec, &d, REGION);
        let pos = only(&plan, Role::SgPos);
        assert_eq!(pos.action, Action::Update);
        assert_eq!(
            pos.changes,
            [Change::Revoke {
                role: Role::SgPos,
                ingress: true,
                rules: vec![opened],
            }]
        );
        assert_eq!(
            pos.drift,
            ["2 rule(s) naming other groups, prefix lists or IPv6 ranges; remove them by hand"]
        );
    }

    #[test]
    fn iam_and_the_bucket_are_put_right_in_place() {
        let spec = spec();
        let mut d = provisioned(&spec);
        let role = d.iam_role.as_mut().unwrap();
        role.policies = vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()];
        role.scope_policy = None;
        d.instance_profile.as_mut().unwrap().roles.clear();
        d.output.public_access_blocked = false;
        let plan = build(&spec, &d, REGION);
        let iam = step_of(&plan, Role::IamRole);
        assert_eq!(
            iam.changes,
            [
                Change::AttachPolicy {
                    arn: SSM_CORE_POLICY.into()
                },
                Change::PutScopePolicy
            ]
        );
        assert_eq!(
            iam.drift,
            ["extra policy attached: arn:aws:iam::aws:policy/AdministratorAccess"]
        );
        assert_eq!(
            step_of(&plan, Role::InstanceProfile).changes,
            [Change::AddRoleToProfile]
        );
        assert_eq!(
            step_of(&plan, Role::OutputBucket).changes,
            [Change::SecureOutputBucket]
        );
        assert_eq!(plan.writes(), 4);
    }

    #[test]
    fn a_step_is_created_updated_or_left_by_its_id_and_changes() {
        let s = step(Role::Vpc, None, vec![], vec![]);
        assert_eq!(s.action, Action::Create);
        let s = step(Role::Vpc, Some("vpc-1"), vec![Change::AttachIgw], vec![]);
        assert_eq!((s.action, s.id.as_deref()), (Action::Update, Some("vpc-1")));
        let s = step(Role::Vpc, Some("vpc-1"), vec![], vec!["drift".into()]);
        assert_eq!(s.action, Action::Exists);
        assert_eq!(
            [Action::Create, Action::Update, Action::Exists].map(Action::as_str),
            ["create", "update", "exists"]
        );
    }

    #[test]
    fn changes_read_as_sentences() {
        let shown = [
            Change::CreateVpc {
                cidr: "192.168.222.0/24".into(),
            },
            Change::AttachPolicy {
                arn: SSM_CORE_POLICY.into(),
            },
            Change::AssociateEip {
                role: Role::EipHost,
            },
            Change::AssociateEip { role: Role::EipPos },
            Change::SetTerminationProtection { on: false },
        ]
        .map(|c| c.to_string());
        assert_eq!(
            shown,
            [
                "create VPC 192.168.222.0/24",
                "attach policy AmazonSSMManagedInstanceCore",
                "associate Elastic IP with eth0",
                "associate Elastic IP with eth1",
                "turn termination protection off",
            ]
        );
    }

    #[test]
    fn alarms_follow_the_instance_and_the_topic_the_stack_file() {
        let mut spec = spec();
        // A new stack: the topic, the address, both alarms after the launch.
        spec.alert_email = Some("ops@example.com".into());
        let plan = build(&spec, &Discovered::default(), REGION);
        assert_eq!(
            step_of(&plan, Role::AlertTopic).changes,
            [
                Change::CreateAlertTopic,
                Change::SubscribeAlerts {
                    email: "ops@example.com".into()
                }
            ]
        );
        let put = |role| Change::PutAlarm {
            role,
            why: String::new(),
        };
        assert_eq!(
            step_of(&plan, Role::AlarmSystem).changes,
            [put(Role::AlarmSystem)]
        );
        let launch = Change::Launch {
            instance_type: "t".into(),
            disk_gb: 1,
        };
        let system = put(Role::AlarmSystem);
        assert!(crate::resources::alarms::needs(&system, &launch));
        assert!(crate::resources::alarms::needs(
            &system,
            &Change::CreateAlertTopic
        ));

        // The instance replaced: the alarm is set again, naming the new one.
        let mut d = provisioned(&spec);
        d.alert_topic
            .as_mut()
            .unwrap()
            .subscriptions
            .push(Subscription {
                protocol: "email".into(),
                endpoint: "ops@example.com".into(),
                arn: Some("arn:aws:sns:us-east-1:123456789012:t:1".into()),
            });
        assert_eq!(build(&spec, &d, REGION).writes(), 0);
        d.alarms[0].instance = Some("i-old".into());
        let plan = build(&spec, &d, REGION);
        let step = only(&plan, Role::AlarmSystem);
        assert_eq!(step.action, Action::Update);
        assert_eq!(
            step.changes,
            [Change::PutAlarm {
                role: Role::AlarmSystem,
                why: "watches i-old, not the stack's i-1".into()
            }]
        );

        // Its recover action removed by hand: set again.
        let mut d2 = d.clone();
        d2.alarms[0].instance = Some("i-1".into());
        d2.alarms[0]
            .alarm_actions
            .retain(|a| !a.ends_with(":ec2:recover"));
        assert!(matches!(
            only(&build(&spec, &d2, REGION), Role::AlarmSystem).changes[..],
            [Change::PutAlarm { .. }]
        ));

        // Another address in the stack file: the new one subscribed, the old one removed.
        spec.alert_email = Some("night@example.com".into());
        d.alarms[0].instance = Some("i-1".into());
        let plan = build(&spec, &d, REGION);
        assert_eq!(
            only(&plan, Role::AlertTopic).changes,
            [
                Change::SubscribeAlerts {
                    email: "night@example.com".into()
                },
                Change::UnsubscribeAlerts {
                    email: "ops@example.com".into()
                }
            ]
        );
        // A pending one has no ARN to unsubscribe: drift for a person.
        d.alert_topic.as_mut().unwrap().subscriptions[0].arn = None;
        let plan = build(&spec, &d, REGION);
        let topic = only(&plan, Role::AlertTopic);
        assert_eq!(topic.drift.len(), 1, "{topic:#?}");
        assert_eq!(topic.changes.len(), 1, "{topic:#?}");
    }
}
