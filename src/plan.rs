//! Desired (StackSpec) vs discovered (AWS) → the steps provision takes. Pure: no AWS calls.

use crate::aws::discover::{Discovered, Rule};
use crate::aws::iam::SSM_CORE_POLICY;
use crate::aws::tags::Role;
use crate::spec::StackSpec;
use serde::Serialize;
use std::fmt;

/// One write provision would make. IDs are looked up when it runs, so a change can depend
/// on a resource created by an earlier change of the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    CreateVpc {
        cidr: String,
    },
    CreateIgw,
    AttachIgw,
    CreateSubnet {
        cidr: String,
    },
    CreateRouteTable,
    AddDefaultRoute,
    AssociateRouteTable,
    CreateSecurityGroup {
        role: Role,
    },
    Authorize {
        role: Role,
        ingress: bool,
        rules: Vec<Rule>,
    },
    Revoke {
        role: Role,
        ingress: bool,
        rules: Vec<Rule>,
    },
    CreateOutputBucket {
        name: String,
    },
    SecureOutputBucket,
    CreateRole,
    PutScopePolicy,
    AttachPolicy {
        arn: String,
    },
    CreateInstanceProfile,
    AddRoleToProfile,
    CreatePosEni {
        ip: String,
    },
    Launch {
        instance_type: String,
        disk_gb: i32,
    },
    SetTerminationProtection {
        on: bool,
    },
    AllocateEip {
        role: Role,
    },
    AssociateEip {
        role: Role,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |ingress: &bool| if *ingress { "inbound" } else { "outbound" };
        let list = |rules: &[Rule]| {
            rules
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Change::CreateVpc { cidr } => write!(f, "create VPC {cidr}"),
            Change::CreateIgw => write!(f, "create internet gateway"),
            Change::AttachIgw => write!(f, "attach internet gateway to the VPC"),
            Change::CreateSubnet { cidr } => write!(f, "create subnet {cidr}"),
            Change::CreateRouteTable => write!(f, "create route table"),
            Change::AddDefaultRoute => write!(f, "route 0.0.0.0/0 to the internet gateway"),
            Change::AssociateRouteTable => write!(f, "associate route table with the subnet"),
            Change::CreateSecurityGroup { role } => {
                write!(f, "create security group {}", role.as_str())
            }
            Change::Authorize { ingress, rules, .. } => {
                write!(f, "allow {} {}", dir(ingress), list(rules))
            }
            Change::Revoke { ingress, rules, .. } => {
                write!(f, "revoke {} {}", dir(ingress), list(rules))
            }
            Change::CreateOutputBucket { .. } => write!(
                f,
                "create the region's shared bucket (encrypted, public access blocked)"
            ),
            Change::SecureOutputBucket => {
                write!(f, "encrypt by default and block all public access")
            }
            Change::CreateRole => write!(f, "create IAM role"),
            Change::PutScopePolicy => {
                write!(f, "allow its own S3 prefix and SSM path (inline policy)")
            }
            Change::AttachPolicy { arn } => {
                write!(f, "attach policy {}", arn.rsplit('/').next().unwrap_or(arn))
            }
            Change::CreateInstanceProfile => write!(f, "create instance profile"),
            Change::AddRoleToProfile => write!(f, "put the role in the instance profile"),
            Change::CreatePosEni { ip } => write!(f, "create eth1 with {ip}"),
            Change::Launch {
                instance_type,
                disk_gb,
            } => write!(
                f,
                "launch {instance_type}, {disk_gb} GB gp3 encrypted, IMDSv2 required"
            ),
            Change::SetTerminationProtection { on } => write!(
                f,
                "turn termination protection {}",
                if *on { "on" } else { "off" }
            ),
            Change::AllocateEip { .. } => write!(f, "allocate Elastic IP"),
            Change::AssociateEip { role } => write!(
                f,
                "associate Elastic IP with {}",
                if *role == Role::EipHost {
                    "eth0"
                } else {
                    "eth1"
                }
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Exists,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Exists => "exists",
        }
    }
}

/// One resource of the stack: what it is, what exists, what provision will do to it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub resource: Role,
    pub id: Option<String>,
    pub action: Action,
    pub changes: Vec<Change>,
    /// Differences provision does not change (they need a person: resize, re-encrypt, start).
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn writes(&self) -> usize {
        self.steps.iter().map(|s| s.changes.len()).sum()
    }
    pub fn count(&self, pred: impl Fn(&Change) -> bool) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.changes)
            .filter(|c| pred(c))
            .count()
    }
}

fn step(resource: Role, id: Option<&str>, changes: Vec<Change>, drift: Vec<String>) -> Step {
    let action = match (id, changes.is_empty()) {
        (None, _) => Action::Create,
        (Some(_), false) => Action::Update,
        (Some(_), true) => Action::Exists,
    };
    Step {
        resource,
        id: id.map(str::to_string),
        action,
        changes,
        drift,
    }
}

fn all_traffic(cidr: &str) -> Rule {
    Rule {
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        cidr: cidr.into(),
    }
}

/// Rule changes that make `current` equal `desired`.
fn rule_changes(role: Role, ingress: bool, current: &[Rule], desired: &[Rule]) -> Vec<Change> {
    let missing: Vec<Rule> = desired
        .iter()
        .filter(|r| !current.contains(r))
        .cloned()
        .collect();
    let extra: Vec<Rule> = current
        .iter()
        .filter(|r| !desired.contains(r))
        .cloned()
        .collect();
    let mut out = Vec::new();
    if !extra.is_empty() {
        out.push(Change::Revoke {
            role,
            ingress,
            rules: extra,
        });
    }
    if !missing.is_empty() {
        out.push(Change::Authorize {
            role,
            ingress,
            rules: missing,
        });
    }
    out
}

/// Desired security group rules: host = SSH from the admin CIDRs only, all outbound;
/// pos = no inbound at all, outbound to the stack's egress CIDRs.
pub fn desired_rules(spec: &StackSpec, role: Role) -> (Vec<Rule>, Vec<Rule>) {
    let mut ingress: Vec<Rule> = match role {
        Role::SgHost => spec
            .admin_cidrs
            .iter()
            .map(|c| Rule {
                protocol: "tcp".into(),
                from_port: Some(22),
                to_port: Some(22),
                cidr: c.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut egress: Vec<Rule> = match role {
        Role::SgHost => vec![all_traffic("0.0.0.0/0")],
        _ => spec
            .pos_egress_cidrs
            .iter()
            .map(|c| all_traffic(&c.to_string()))
            .collect(),
    };
    ingress.sort();
    egress.sort();
    (ingress, egress)
}

pub fn build(spec: &StackSpec, d: &Discovered, region: &str) -> Plan {
    let mut steps = Vec::new();
    let net = spec.network.to_string();

    // VPC
    let vpc = d.vpc();
    let mut drift = Vec::new();
    if let Some(v) = vpc {
        if v.cidr != net {
            drift.push(format!("CIDR is {}, stack says {net}", v.cidr));
        }
    }
    let changes = if vpc.is_none() {
        vec![Change::CreateVpc { cidr: net.clone() }]
    } else {
        vec![]
    };
    steps.push(step(Role::Vpc, vpc.map(|v| v.id.as_str()), changes, drift));

    // Internet gateway, attached to the VPC
    let igw = d.igw();
    let mut changes = Vec::new();
    if igw.is_none() {
        changes.push(Change::CreateIgw);
    }
    let attached = match (igw, vpc) {
        (Some(g), Some(v)) => g.attached_vpc.as_deref() == Some(v.id.as_str()),
        _ => false,
    };
    if !attached {
        changes.push(Change::AttachIgw);
    }
    steps.push(step(Role::Igw, igw.map(|g| g.id.as_str()), changes, vec![]));

    // Subnet
    let subnet = d.subnet();
    let mut drift = Vec::new();
    if let Some(s) = subnet {
        if s.cidr != net {
            drift.push(format!("CIDR is {}, stack says {net}", s.cidr));
        }
    }
    let changes = if subnet.is_none() {
        vec![Change::CreateSubnet { cidr: net.clone() }]
    } else {
        vec![]
    };
    steps.push(step(
        Role::Subnet,
        subnet.map(|s| s.id.as_str()),
        changes,
        drift,
    ));

    // Route table: default route to the IGW, associated with the subnet
    let rtb = d.route_table();
    let mut changes = Vec::new();
    if rtb.is_none() {
        changes.push(Change::CreateRouteTable);
    }
    let route_ok = match (rtb, igw) {
        (Some(t), Some(g)) => t.default_gateway.as_deref() == Some(g.id.as_str()),
        _ => false,
    };
    let mut drift = Vec::new();
    if !route_ok {
        if let Some(gw) = rtb.and_then(|t| t.default_gateway.as_deref()) {
            drift.push(format!(
                "0.0.0.0/0 goes to {gw}, not the stack's internet gateway"
            ));
        } else {
            changes.push(Change::AddDefaultRoute);
        }
    }
    let assoc_ok = match (rtb, subnet) {
        (Some(t), Some(s)) => t.associations.iter().any(|(_, sn)| *sn == s.id),
        _ => false,
    };
    if !assoc_ok {
        changes.push(Change::AssociateRouteTable);
    }
    steps.push(step(
        Role::RouteTable,
        rtb.map(|t| t.id.as_str()),
        changes,
        drift,
    ));

    // Security groups
    for (role, _) in [(Role::SgHost, ()), (Role::SgPos, ())] {
        let sg = d.sg(role);
        let (want_in, want_out) = desired_rules(spec, role);
        let mut changes = Vec::new();
        let (cur_in, cur_out) = match sg {
            Some(g) => (g.ingress.clone(), g.egress.clone()),
            None => {
                changes.push(Change::CreateSecurityGroup { role });
                (Vec::new(), vec![all_traffic("0.0.0.0/0")])
            }
        };
        changes.extend(rule_changes(role, true, &cur_in, &want_in));
        changes.extend(rule_changes(role, false, &cur_out, &want_out));
        let mut drift = Vec::new();
        if let Some(g) = sg.filter(|g| g.other_rules > 0) {
            drift.push(format!(
                "{} rule(s) naming other groups, prefix lists or IPv6 ranges; remove them by hand",
                g.other_rules
            ));
        }
        steps.push(step(role, sg.map(|g| g.id.as_str()), changes, drift));
    }

    // The account's SSM output bucket (shared; created once per region)
    let out = &d.output;
    let mut changes = Vec::new();
    if !out.exists {
        changes.push(Change::CreateOutputBucket {
            name: out.name.clone(),
        });
    }
    if !(out.encrypted && out.public_access_blocked) {
        changes.push(Change::SecureOutputBucket);
    }
    steps.push(step(
        Role::OutputBucket,
        out.exists.then_some(out.name.as_str()),
        changes,
        vec![],
    ));

    // IAM role with the SSM core policy and its scope policy, and its instance profile
    let role = d.iam_role.as_ref();
    let mut changes = Vec::new();
    if role.is_none() {
        changes.push(Change::CreateRole);
    }
    if !role.is_some_and(|r| r.policies.iter().any(|p| p == SSM_CORE_POLICY)) {
        changes.push(Change::AttachPolicy {
            arn: SSM_CORE_POLICY.into(),
        });
    }
    let scope = crate::aws::iam::scope_policy(&spec.id, &d.account, region, &out.name);
    if role.and_then(|r| r.scope_policy.as_ref()) != Some(&scope) {
        changes.push(Change::PutScopePolicy);
    }
    let drift = role
        .map(|r| {
            r.policies
                .iter()
                .filter(|p| *p != SSM_CORE_POLICY)
                .map(|p| format!("extra policy attached: {p}"))
                .collect()
        })
        .unwrap_or_default();
    steps.push(step(
        Role::IamRole,
        role.map(|r| r.name.as_str()),
        changes,
        drift,
    ));

    let profile = d.instance_profile.as_ref();
    let mut changes = Vec::new();
    if profile.is_none() {
        changes.push(Change::CreateInstanceProfile);
    }
    if profile.is_none_or(|p| p.roles.is_empty()) {
        changes.push(Change::AddRoleToProfile);
    }
    steps.push(step(
        Role::InstanceProfile,
        profile.map(|p| p.name.as_str()),
        changes,
        vec![],
    ));

    // eth1: the POS interface with its fixed address
    let eni = d.eni_pos();
    let pos_ip = spec.pos_ip.to_string();
    let mut drift = Vec::new();
    if let Some(e) = eni {
        if e.private_ip.as_deref() != Some(pos_ip.as_str()) {
            drift.push(format!(
                "address is {}, stack says {pos_ip}",
                e.private_ip.as_deref().unwrap_or("none")
            ));
        }
    }
    let changes = if eni.is_none() {
        vec![Change::CreatePosEni { ip: pos_ip.clone() }]
    } else {
        vec![]
    };
    steps.push(step(
        Role::EniPos,
        eni.map(|e| e.id.as_str()),
        changes,
        drift,
    ));

    // The host
    let inst = d.instance();
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    match inst {
        None => changes.push(Change::Launch {
            instance_type: spec.instance_type.clone(),
            disk_gb: spec.disk_gb,
        }),
        Some(i) => {
            if i.termination_protection != spec.termination_protection {
                changes.push(Change::SetTerminationProtection {
                    on: spec.termination_protection,
                });
            }
            if i.state != "running" && i.state != "pending" {
                drift.push(format!("instance is {}", i.state));
            }
            if i.instance_type != spec.instance_type {
                drift.push(format!(
                    "instance type is {}, stack says {}",
                    i.instance_type, spec.instance_type
                ));
            }
            if i.http_tokens.as_deref() != Some("required") {
                drift.push("IMDSv2 is not required".into());
            }
            match &i.root_volume {
                Some(v) => {
                    if !v.encrypted {
                        drift.push(format!("root volume {} is not encrypted", v.id));
                    }
                    if v.volume_type != "gp3" {
                        drift.push(format!("root volume is {}, not gp3", v.volume_type));
                    }
                    if v.size_gb < spec.disk_gb {
                        drift.push(format!(
                            "root volume is {} GB, stack says {} GB",
                            v.size_gb, spec.disk_gb
                        ));
                    }
                }
                None => drift.push("root volume not found".into()),
            }
            if i.profile_arn.is_none() {
                drift.push("no instance profile attached".into());
            }
            if let (Some(e), Some(eth1)) = (eni, i.eni(1)) {
                if e.id != eth1 {
                    drift.push(format!("eth1 is {eth1}, not the stack's {}", e.id));
                }
            }
        }
    }
    steps.push(step(
        Role::Host,
        inst.map(|i| i.id.as_str()),
        changes,
        drift,
    ));

    // Elastic IPs: #1 on eth0 (Docker host), #2 on eth1 (POS)
    for (role, device) in [(Role::EipHost, 0), (Role::EipPos, 1)] {
        let eip = d.eip(role);
        let mut changes = Vec::new();
        if eip.is_none() {
            changes.push(Change::AllocateEip { role });
        }
        let target = if device == 0 {
            inst.and_then(|i| i.eni(0))
        } else {
            eni.map(|e| e.id.as_str())
        };
        let mut drift = Vec::new();
        match eip.and_then(|e| e.eni_id.as_deref()) {
            Some(on) if Some(on) == target => {}
            Some(on) => drift.push(format!("associated with {on}, not eth{device}")),
            None => changes.push(Change::AssociateEip { role }),
        }
        steps.push(step(
            role,
            eip.map(|e| e.allocation_id.as_str()),
            changes,
            drift,
        ));
    }

    Plan { steps }
}

pub fn resource_label(role: Role) -> &'static str {
    match role {
        Role::Vpc => "VPC",
        Role::Igw => "internet gateway",
        Role::Subnet => "subnet",
        Role::RouteTable => "route table",
        Role::SgHost => "security group host",
        Role::SgPos => "security group pos",
        Role::IamRole => "IAM role",
        Role::InstanceProfile => "instance profile",
        Role::EniPos => "eth1 (POS)",
        Role::EniHost => "eth0 (host)",
        Role::Host => "instance",
        Role::Volume => "root volume",
        Role::EipHost => "Elastic IP (host)",
        Role::EipPos => "Elastic IP (POS)",
        Role::Parameter => "SSM parameter",
        Role::OutputBucket => "SSM output bucket",
        Role::Snapshot => "EBS snapshot",
    }
}
