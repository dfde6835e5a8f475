//! The stack's VPC and its internet gateway: what is found, planned, made and removed.

use super::change::{step, Change, Step};
use super::{created, need, touched, Apply, Made};
use super::{settle, Teardown};
use crate::aws::retry::Verdict;
use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::Result;
use crate::resources::discover::Discovered;
use crate::spec::{StackId, StackSpec};
use aws_sdk_ec2::types::ResourceType;
use futures_util::future::join_all;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Igw {
    pub id: String,
    pub attached_vpc: Option<String>,
}

impl Aws {
    pub(crate) async fn find_vpcs(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Vpc>> {
        let req = self.ec2.describe_vpcs();
        let req = match ids {
            Some(ids) => req.set_vpc_ids(Some(ids.to_vec())),
            None => req.set_filters(Some(tags::filters(id))),
        };
        let vpcs = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeVpcs", None, e))?;
        Ok(vpcs
            .into_iter()
            .map(|v| Vpc {
                id: v.vpc_id().unwrap_or_default().to_string(),
                cidr: v.cidr_block().unwrap_or_default().to_string(),
            })
            .collect())
    }

    pub(crate) async fn find_igws(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Igw>> {
        let req = self.ec2.describe_internet_gateways();
        let req = match ids {
            Some(ids) => req.set_internet_gateway_ids(Some(ids.to_vec())),
            None => req.set_filters(Some(tags::filters(id))),
        };
        let igws = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeInternetGateways", None, e))?;
        Ok(igws
            .into_iter()
            .map(|g| Igw {
                id: g.internet_gateway_id().unwrap_or_default().to_string(),
                attached_vpc: g
                    .attachments()
                    .iter()
                    .find_map(|a| a.vpc_id().map(str::to_string)),
            })
            .collect())
    }

    pub async fn create_vpc(&self, id: &StackId, cidr: &str) -> Result<Vpc> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_vpcs()
                .set_filters(Some(tags::role_filters(id, Role::Vpc)))
                .send()
                .await
                .map_err(|e| self.err("DescribeVpcs", None, e))?;
            Ok(out.vpcs().first().map(|v| Vpc {
                id: v.vpc_id().unwrap_or_default().to_string(),
                cidr: v.cidr_block().unwrap_or_default().to_string(),
            }))
        };
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .create_vpc()
                .cidr_block(cidr)
                .tag_specifications(tags::spec_with(
                    id,
                    Role::Vpc,
                    ResourceType::Vpc,
                    Some((tags::CREATED, crate::journal::now().to_string())),
                ))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("CreateVpc", None, e))?;
            Ok(Vpc {
                id: out
                    .vpc()
                    .and_then(|v| v.vpc_id())
                    .unwrap_or_default()
                    .to_string(),
                cidr: cidr.to_string(),
            })
        };
        let vpc = self
            .create_once("EC2 CreateVpc", "the stack's VPC exists", find, create)
            .await?;
        self.wrote("CreateVpc", &vpc.id);
        Ok(vpc)
    }

    pub async fn delete_vpc(&self, vpc_id: &str) -> Result<()> {
        self.ec2
            .delete_vpc()
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteVpc", Some(vpc_id), e))?;
        self.wrote("DeleteVpc", vpc_id);
        Ok(())
    }

    pub async fn create_igw(&self, id: &StackId) -> Result<Igw> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_internet_gateways()
                .set_filters(Some(tags::role_filters(id, Role::Igw)))
                .send()
                .await
                .map_err(|e| self.err("DescribeInternetGateways", None, e))?;
            Ok(out.internet_gateways().first().map(|g| Igw {
                id: g.internet_gateway_id().unwrap_or_default().to_string(),
                attached_vpc: g
                    .attachments()
                    .iter()
                    .find_map(|a| a.vpc_id().map(str::to_string)),
            }))
        };
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .create_internet_gateway()
                .tag_specifications(tags::spec(id, Role::Igw, ResourceType::InternetGateway))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("CreateInternetGateway", None, e))?;
            Ok(Igw {
                id: out
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .unwrap_or_default()
                    .to_string(),
                attached_vpc: None,
            })
        };
        let igw = self
            .create_once(
                "EC2 CreateInternetGateway",
                "the stack's internet gateway exists",
                find,
                create,
            )
            .await?;
        self.wrote("CreateInternetGateway", &igw.id);
        Ok(igw)
    }

    /// The VPC an internet gateway is attached to.
    async fn igw_vpc(&self, igw_id: &str) -> Result<Option<String>> {
        let out = self
            .ec2
            .describe_internet_gateways()
            .internet_gateway_ids(igw_id)
            .send()
            .await
            .map_err(|e| self.err("DescribeInternetGateways", Some(igw_id), e))?;
        Ok(out
            .internet_gateways()
            .iter()
            .flat_map(|g| g.attachments())
            .find_map(|a| a.vpc_id().map(str::to_string)))
    }

    pub async fn attach_igw(&self, igw_id: &str, vpc_id: &str) -> Result<()> {
        let sent = self
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(igw_id)
            .vpc_id(vpc_id)
            .send()
            .await;
        if let Err(e) = sent {
            // A retry after an attach whose answer was lost: attached is what we wanted.
            let done = crate::aws::kind_of(&e) == crate::error::Kind::Conflict
                && self.igw_vpc(igw_id).await?.as_deref() == Some(vpc_id);
            if !done {
                return Err(self.err("AttachInternetGateway", Some(igw_id), e));
            }
        }
        self.wrote("AttachInternetGateway", igw_id);
        Ok(())
    }

    pub async fn detach_igw(&self, igw_id: &str, vpc_id: &str) -> Result<()> {
        match self
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(igw_id)
            .vpc_id(vpc_id)
            .send()
            .await
        {
            Ok(_) => self.wrote("DetachInternetGateway", igw_id),
            // Detached already (a retried detach whose first answer was lost).
            Err(e) if crate::aws::kind_of(&e) == crate::error::Kind::NotFound => {}
            Err(e) => return Err(self.err("DetachInternetGateway", Some(igw_id), e)),
        }
        Ok(())
    }

    pub async fn delete_igw(&self, igw_id: &str) -> Result<()> {
        self.ec2
            .delete_internet_gateway()
            .internet_gateway_id(igw_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteInternetGateway", Some(igw_id), e))?;
        self.wrote("DeleteInternetGateway", igw_id);
        Ok(())
    }
}

/// The VPC (its CIDR is the stack's network) and the internet gateway attached to it.
pub fn plan(spec: &StackSpec, d: &Discovered) -> Vec<Step> {
    let net = spec.network.to_string();
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
    let mut steps = vec![step(Role::Vpc, vpc.map(|v| v.id.as_str()), changes, drift)];

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
    steps
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    matches!(a, Change::AttachIgw) && matches!(b, Change::CreateIgw | Change::CreateVpc { .. })
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    let id = x.id();
    match change {
        Change::CreateVpc { cidr } => {
            let v = x.aws.create_vpc(id, cidr).await?;
            let rid = v.id.clone();
            x.write(|d| d.vpcs.push(v));
            created(rid, Role::Vpc)
        }
        Change::CreateIgw => {
            let g = x.aws.create_igw(id).await?;
            let rid = g.id.clone();
            x.write(|d| d.igws.push(g));
            created(rid, Role::Igw)
        }
        Change::AttachIgw => {
            let vpc = x.vpc()?;
            let igw = need(
                "internet gateway",
                x.read(|d| d.igw().map(|g| g.id.clone())),
            )?;
            x.aws.attach_igw(&igw, &vpc).await?;
            x.write(|d| {
                if let Some(g) = d.igws.iter_mut().find(|g| g.id == igw) {
                    g.attached_vpc = Some(vpc);
                }
            });
            touched(igw)
        }
        other => unreachable!("not a network change: {other}"),
    }
}

/// Detaches and deletes the gateways (once no address of the VPC is mapped).
pub(crate) async fn delete_gateways(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.igws.iter().map(|g| async move {
        t.one(format!("delete internet gateway {}", g.id), async {
            if let Some(vpc) = &g.attached_vpc {
                settle(|| aws.detach_igw(&g.id, vpc)).await?;
            }
            aws.delete_igw(&g.id).await
        })
        .await;
    }))
    .await;
}

/// Deletes the VPCs (last: everything in them must be gone).
pub(crate) async fn delete_vpcs(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.vpcs.iter().map(|v| {
        t.one(
            format!("delete VPC {}", v.id),
            settle(|| aws.delete_vpc(&v.id)),
        )
    }))
    .await;
}
