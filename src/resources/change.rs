//! What a plan is made of: one `Step` per resource of the stack, with its `Change`s (the
//! writes provision would make). The resource modules make the steps (`plan` in each);
//! `crate::plan::build` puts them together.

use crate::aws::tags::Role;
use crate::resources::security_groups::Rule;
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
    /// Lifecycle rules that expire backups tagged `poscloud:keep=<N>d` after N days.
    BackupLifecycle {
        days: Vec<u32>,
    },
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
    /// Instance metadata back to token-only (IMDSv2), in place: no restart.
    RequireImdsv2,
    AllocateEip {
        role: Role,
    },
    AssociateEip {
        role: Role,
    },
    CreateAlertTopic,
    /// The stack file's alert e-mail subscribed to the topic (SNS mails a confirmation).
    SubscribeAlerts {
        email: String,
    },
    /// An address the stack file no longer names.
    UnsubscribeAlerts {
        email: String,
    },
    /// PutMetricAlarm: creates the alarm, or sets it again (another instance, other settings).
    PutAlarm {
        role: Role,
        /// Why an existing alarm is set again (empty for a new one).
        why: String,
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
            Change::BackupLifecycle { days } => write!(
                f,
                "expire backups after {} days (lifecycle rules)",
                days.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
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
            Change::RequireImdsv2 => write!(f, "require IMDSv2 (metadata tokens)"),
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
            Change::CreateAlertTopic => write!(f, "create SNS topic"),
            Change::SubscribeAlerts { email } => write!(f, "subscribe {email} (e-mail)"),
            Change::UnsubscribeAlerts { email } => write!(f, "unsubscribe {email}"),
            Change::PutAlarm { role, why } => {
                let metric = if *role == Role::AlarmSystem {
                    "StatusCheckFailed_System (recover, notify)"
                } else {
                    "StatusCheckFailed_Instance (notify)"
                };
                if why.is_empty() {
                    write!(f, "put alarm on {metric}")
                } else {
                    write!(f, "put alarm on {metric} again: {why}")
                }
            }
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

/// One resource's step: created when it has no id yet, updated when it has changes.
pub(crate) fn step(
    resource: Role,
    id: Option<&str>,
    changes: Vec<Change>,
    drift: Vec<String>,
) -> Step {
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
        Role::AlertTopic => "alert topic (SNS)",
        Role::AlarmSystem => "alarm: system check (recover)",
        Role::AlarmInstance => "alarm: instance check",
    }
}
