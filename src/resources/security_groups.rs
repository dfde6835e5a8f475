//! The stack's two security groups (host: SSH from the admin CIDRs only, all outbound; pos:
//! no inbound, outbound to the stack's egress CIDRs) and their rules: what is found, planned,
//! made and removed.

use super::change::{step, Change, Step};
use super::{created, need, touched, Apply, Made};
use super::{settle, Teardown};
use crate::aws::retry::Verdict;
use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::{Error, Kind, Result};
use crate::resources::discover::Discovered;
use crate::spec::{StackId, StackSpec};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures_util::future::join_all;
use serde::Serialize;

/// One permission for one CIDR, e.g. tcp 22-22 from 203.0.113.0/24.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Rule {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: String,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.protocol == "-1" {
            "all"
        } else {
            &self.protocol
        };
        match (self.from_port, self.to_port) {
            (Some(a), Some(b)) if a == b => write!(f, "{proto}/{a} {}", self.cidr),
            (Some(a), Some(b)) if a >= 0 => write!(f, "{proto}/{a}-{b} {}", self.cidr),
            _ => write!(f, "{proto} {}", self.cidr),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub role: Role,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// Rules that name other groups, prefix lists or IPv6 ranges (poscloud never makes them).
    pub other_rules: usize,
}

fn rules(perms: &[IpPermission]) -> (Vec<Rule>, usize) {
    let mut out = Vec::new();
    let mut other = 0;
    for p in perms {
        for r in p.ip_ranges() {
            out.push(Rule {
                protocol: p.ip_protocol().unwrap_or("-1").to_string(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                cidr: r.cidr_ip().unwrap_or_default().to_string(),
            });
        }
        other += p.ipv6_ranges().len() + p.user_id_group_pairs().len() + p.prefix_list_ids().len();
    }
    out.sort();
    (out, other)
}

fn ip_permission(r: &Rule) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(&r.protocol)
        .set_from_port(r.from_port)
        .set_to_port(r.to_port)
        .ip_ranges(IpRange::builder().cidr_ip(&r.cidr).build())
        .build()
}

impl Aws {
    pub(crate) async fn find_security_groups(
        &self,
        id: &StackId,
        ids: Option<&[String]>,
    ) -> Result<Vec<SecurityGroup>> {
        let req = self.ec2.describe_security_groups();
        let req = match ids {
            Some(ids) => req.set_group_ids(Some(ids.to_vec())),
            None => req.set_filters(Some(tags::filters(id))),
        };
        let sgs = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeSecurityGroups", None, e))?;
        Ok(sgs
            .into_iter()
            .filter_map(|g| {
                let role = tags::stack_of(g.tags())?.1?;
                let (ingress, o1) = rules(g.ip_permissions());
                let (egress, o2) = rules(g.ip_permissions_egress());
                Some(SecurityGroup {
                    id: g.group_id().unwrap_or_default().to_string(),
                    role,
                    ingress,
                    egress,
                    other_rules: o1 + o2,
                })
            })
            .collect())
    }

    /// A new group has AWS's default "all outbound" rule and no inbound rule.
    pub async fn create_security_group(
        &self,
        id: &StackId,
        role: Role,
        vpc_id: &str,
        description: &str,
    ) -> Result<SecurityGroup> {
        let new_group = move |sg_id: &str| SecurityGroup {
            id: sg_id.to_string(),
            role,
            ingress: Vec::new(),
            egress: vec![Rule {
                protocol: "-1".into(),
                from_port: None,
                to_port: None,
                cidr: "0.0.0.0/0".into(),
            }],
            other_rules: 0,
        };
        let find = move || async move {
            let out = self
                .ec2
                .describe_security_groups()
                .set_filters(Some(tags::role_filters(id, role)))
                .send()
                .await
                .map_err(|e| self.err("DescribeSecurityGroups", None, e))?;
            // Found right after its create: it still has only the default rules.
            Ok(out
                .security_groups()
                .first()
                .map(|g| new_group(g.group_id().unwrap_or_default())))
        };
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .create_security_group()
                .group_name(tags::name(id, role))
                .description(description)
                .vpc_id(vpc_id)
                .tag_specifications(tags::spec(id, role, ResourceType::SecurityGroup))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("CreateSecurityGroup", Some(vpc_id), e))?;
            Ok(new_group(out.group_id().unwrap_or_default()))
        };
        let sg = self
            .create_once(
                "EC2 CreateSecurityGroup",
                "the security group exists",
                find,
                create,
            )
            .await?;
        self.wrote("CreateSecurityGroup", &sg.id);
        Ok(sg)
    }

    /// Whether a group has every one of `rules` (inbound or outbound) now.
    async fn sg_has(&self, sg_id: &str, ingress: bool, rules: &[Rule]) -> Result<bool> {
        let out = self
            .ec2
            .describe_security_groups()
            .group_ids(sg_id)
            .send()
            .await
            .map_err(|e| self.err("DescribeSecurityGroups", Some(sg_id), e))?;
        let Some(g) = out.security_groups().first() else {
            return Ok(false);
        };
        let perms = if ingress {
            g.ip_permissions()
        } else {
            g.ip_permissions_egress()
        };
        let has = |r: &Rule| {
            perms.iter().any(|p| {
                p.ip_protocol() == Some(r.protocol.as_str())
                    && (r.protocol == "-1"
                        || (p.from_port() == r.from_port && p.to_port() == r.to_port))
                    && p.ip_ranges()
                        .iter()
                        .any(|x| x.cidr_ip() == Some(r.cidr.as_str()))
            })
        };
        Ok(rules.iter().all(has))
    }

    /// An SDK error as ours, and whether it is of the kind `own`: the call met the effect of an
    /// earlier attempt of itself whose answer was lost.
    fn met_own<E>(
        &self,
        op: &'static str,
        sg_id: &str,
        own: Kind,
        e: SdkError<E, HttpResponse>,
    ) -> (bool, Error)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        // A revoke meets its own effect only as the rule's InvalidPermission.NotFound: the
        // group's InvalidGroup.NotFound (EC2 not knowing a group made moments ago) means
        // nothing was revoked, and is retried as every fresh write is (apply::settling).
        let met = match own {
            Kind::NotFound => e.code() == Some("InvalidPermission.NotFound"),
            k => crate::aws::kind_of(&e) == k,
        };
        (met, self.err(op, Some(sg_id), e))
    }

    /// Adds rules. A retry after an add whose answer was lost meets its own rules
    /// (InvalidPermission.Duplicate): fine when every rule is there.
    async fn authorize(&self, sg_id: &str, ingress: bool, rules: &[Rule]) -> Result<()> {
        let perms = Some(rules.iter().map(ip_permission).collect());
        let dup = Kind::Conflict;
        let (op, sent) = if ingress {
            let op = "AuthorizeSecurityGroupIngress";
            let r = self.ec2.authorize_security_group_ingress();
            let r = r.group_id(sg_id).set_ip_permissions(perms).send().await;
            (
                op,
                r.map(|_| ()).map_err(|e| self.met_own(op, sg_id, dup, e)),
            )
        } else {
            let op = "AuthorizeSecurityGroupEgress";
            let r = self.ec2.authorize_security_group_egress();
            let r = r.group_id(sg_id).set_ip_permissions(perms).send().await;
            (
                op,
                r.map(|_| ()).map_err(|e| self.met_own(op, sg_id, dup, e)),
            )
        };
        match sent {
            Ok(()) => {}
            Err((true, _)) if self.sg_has(sg_id, ingress, rules).await? => {}
            Err((_, e)) => return Err(e),
        }
        self.wrote(op, sg_id);
        Ok(())
    }

    /// Removes rules; rules already gone (a retry after a lost answer) are fine.
    async fn revoke(&self, sg_id: &str, ingress: bool, rules: &[Rule]) -> Result<()> {
        let perms = Some(rules.iter().map(ip_permission).collect());
        let gone = Kind::NotFound;
        let (op, sent) = if ingress {
            let op = "RevokeSecurityGroupIngress";
            let r = self.ec2.revoke_security_group_ingress();
            let r = r.group_id(sg_id).set_ip_permissions(perms).send().await;
            (
                op,
                r.map(|_| ()).map_err(|e| self.met_own(op, sg_id, gone, e)),
            )
        } else {
            let op = "RevokeSecurityGroupEgress";
            let r = self.ec2.revoke_security_group_egress();
            let r = r.group_id(sg_id).set_ip_permissions(perms).send().await;
            (
                op,
                r.map(|_| ()).map_err(|e| self.met_own(op, sg_id, gone, e)),
            )
        };
        match sent {
            Ok(()) => self.wrote(op, sg_id),
            Err((true, _)) => {}
            Err((_, e)) => return Err(e),
        }
        Ok(())
    }

    pub async fn authorize_ingress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.authorize(sg_id, true, rules).await
    }

    pub async fn revoke_ingress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.revoke(sg_id, true, rules).await
    }

    pub async fn authorize_egress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.authorize(sg_id, false, rules).await
    }

    pub async fn revoke_egress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.revoke(sg_id, false, rules).await
    }

    pub async fn delete_security_group(&self, sg_id: &str) -> Result<()> {
        self.ec2
            .delete_security_group()
            .group_id(sg_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteSecurityGroup", Some(sg_id), e))?;
        self.wrote("DeleteSecurityGroup", sg_id);
        Ok(())
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

/// Each group, with the rule changes that make it what the stack says.
pub fn plan(spec: &StackSpec, d: &Discovered) -> Vec<Step> {
    let mut steps = Vec::new();
    for role in [Role::SgHost, Role::SgPos] {
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
    steps
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    match a {
        Change::CreateSecurityGroup { .. } => matches!(b, Change::CreateVpc { .. }),
        Change::Authorize { role, .. } | Change::Revoke { role, .. } => {
            matches!(b, Change::CreateSecurityGroup { role: r } if r == role)
        }
        _ => false,
    }
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    match change {
        Change::CreateSecurityGroup { role } => {
            let description = match role {
                Role::SgHost => "poscloud Docker host (eth0): SSH from admin CIDRs only",
                _ => "poscloud POS container (eth1): no inbound",
            };
            let g = x
                .aws
                .create_security_group(x.id(), *role, &x.vpc()?, description)
                .await?;
            let rid = g.id.clone();
            x.write(|d| d.security_groups.push(g));
            created(rid, *role)
        }
        Change::Authorize {
            role,
            ingress,
            rules,
        }
        | Change::Revoke {
            role,
            ingress,
            rules,
        } => {
            let sg = need(
                &format!("security group {}", role.as_str()),
                x.read(|d| d.sg(*role).map(|g| g.id.clone())),
            )?;
            let add = matches!(change, Change::Authorize { .. });
            match (add, *ingress) {
                (true, true) => x.aws.authorize_ingress(&sg, rules).await?,
                (true, false) => x.aws.authorize_egress(&sg, rules).await?,
                (false, true) => x.aws.revoke_ingress(&sg, rules).await?,
                (false, false) => x.aws.revoke_egress(&sg, rules).await?,
            }
            x.write(|d| {
                if let Some(g) = d.security_groups.iter_mut().find(|g| g.id == sg) {
                    let list = if *ingress {
                        &mut g.ingress
                    } else {
                        &mut g.egress
                    };
                    if add {
                        list.extend(rules.iter().cloned());
                    } else {
                        list.retain(|r| !rules.contains(r));
                    }
                }
            });
            touched(sg)
        }
        other => unreachable!("not a security group change: {other}"),
    }
}

/// Deletes the groups (once no interface or instance is in them).
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.security_groups.iter().map(|g| {
        t.one(
            format!("delete security group {} {}", g.role.as_str(), g.id),
            settle(|| aws.delete_security_group(&g.id)),
        )
    }))
    .await;
}
