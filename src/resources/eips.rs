//! The stack's two Elastic IPs: #1 on eth0 (the Docker host), #2 on eth1 (the POS, the
//! address every florist's router is configured with): what is found, planned, made and
//! removed.

use super::change::{step, Change, Step};
use super::{created, need, touched, Apply, Made};
use super::{settle, Teardown};
use crate::aws::retry::Verdict;
use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::Result;
use crate::resources::discover::Discovered;
use crate::spec::StackId;
use aws_sdk_ec2::types::{DomainType, ResourceType};
use futures_util::future::join_all;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Eip {
    pub allocation_id: String,
    pub role: Option<Role>,
    pub public_ip: String,
    pub association_id: Option<String>,
    pub eni_id: Option<String>,
}

impl Aws {
    pub(crate) async fn find_eips(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Eip>> {
        let req = self.ec2.describe_addresses();
        let req = match ids {
            Some(ids) => req.set_allocation_ids(Some(ids.to_vec())),
            None => req.set_filters(Some(tags::filters(id))),
        };
        let out = req
            .send()
            .await
            .map_err(|e| self.err("DescribeAddresses", None, e))?;
        Ok(out
            .addresses()
            .iter()
            .map(|a| Eip {
                allocation_id: a.allocation_id().unwrap_or_default().to_string(),
                role: tags::stack_of(a.tags()).and_then(|(_, r)| r),
                public_ip: a.public_ip().unwrap_or_default().to_string(),
                // Some implementations return "" rather than nothing once disassociated.
                association_id: a
                    .association_id()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                eni_id: a
                    .network_interface_id()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            })
            .collect())
    }

    pub async fn allocate_eip(&self, id: &StackId, role: Role) -> Result<Eip> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_addresses()
                .set_filters(Some(tags::role_filters(id, role)))
                .send()
                .await
                .map_err(|e| self.err("DescribeAddresses", None, e))?;
            Ok(out.addresses().first().map(|a| Eip {
                allocation_id: a.allocation_id().unwrap_or_default().to_string(),
                role: Some(role),
                public_ip: a.public_ip().unwrap_or_default().to_string(),
                association_id: None,
                eni_id: None,
            }))
        };
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(tags::spec(id, role, ResourceType::ElasticIp))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("AllocateAddress", None, e))?;
            Ok(Eip {
                allocation_id: out.allocation_id().unwrap_or_default().to_string(),
                role: Some(role),
                public_ip: out.public_ip().unwrap_or_default().to_string(),
                association_id: None,
                eni_id: None,
            })
        };
        let eip = self
            .create_once("EC2 AllocateAddress", "the Elastic IP exists", find, create)
            .await?;
        self.wrote("AllocateAddress", &eip.allocation_id);
        Ok(eip)
    }

    pub async fn associate_eip(&self, allocation_id: &str, eni_id: &str) -> Result<String> {
        let sent = self
            .ec2
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(eni_id)
            .allow_reassociation(false)
            .send()
            .await;
        let association = match sent {
            Ok(out) => out.association_id().unwrap_or_default().to_string(),
            Err(e) => {
                // A retry after an association whose answer was lost: fine when the address
                // is on this very interface.
                let mut existing = None;
                if crate::aws::kind_of(&e) == crate::error::Kind::Conflict {
                    let out = self
                        .ec2
                        .describe_addresses()
                        .allocation_ids(allocation_id)
                        .send()
                        .await
                        .map_err(|e| self.err("DescribeAddresses", Some(allocation_id), e))?;
                    existing = out
                        .addresses()
                        .iter()
                        .find(|a| a.network_interface_id() == Some(eni_id))
                        .and_then(|a| a.association_id())
                        .map(str::to_string);
                }
                existing.ok_or_else(|| self.err("AssociateAddress", Some(allocation_id), e))?
            }
        };
        self.wrote("AssociateAddress", allocation_id);
        Ok(association)
    }

    pub async fn disassociate_eip(&self, association_id: &str) -> Result<()> {
        self.ec2
            .disassociate_address()
            .association_id(association_id)
            .send()
            .await
            .map_err(|e| self.err("DisassociateAddress", Some(association_id), e))?;
        self.wrote("DisassociateAddress", association_id);
        Ok(())
    }

    pub async fn release_eip(&self, allocation_id: &str) -> Result<()> {
        self.ec2
            .release_address()
            .allocation_id(allocation_id)
            .send()
            .await
            .map_err(|e| self.err("ReleaseAddress", Some(allocation_id), e))?;
        self.wrote("ReleaseAddress", allocation_id);
        Ok(())
    }
}

/// Each address, allocated and associated with its interface.
pub fn plan(d: &Discovered) -> Vec<Step> {
    let mut steps = Vec::new();
    for (role, device) in [(Role::EipHost, 0), (Role::EipPos, 1)] {
        let eip = d.eip(role);
        let mut changes = Vec::new();
        if eip.is_none() {
            changes.push(Change::AllocateEip { role });
        }
        let target = if device == 0 {
            d.instance().and_then(|i| i.eni(0))
        } else {
            d.eni_pos().map(|e| e.id.as_str())
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
    steps
}

/// Whether `a` (one of this module's changes) waits for `b`. An address can be mapped only
/// in a VPC with an internet gateway attached; eth1's needs no instance.
pub fn needs(a: &Change, b: &Change) -> bool {
    match a {
        Change::AssociateEip {
            role: Role::EipHost,
        } => {
            matches!(b, Change::Launch { .. } | Change::AttachIgw)
                || matches!(
                    b,
                    Change::AllocateEip {
                        role: Role::EipHost
                    }
                )
        }
        Change::AssociateEip { .. } => {
            matches!(b, Change::CreatePosEni { .. } | Change::AttachIgw)
                || matches!(b, Change::AllocateEip { role: Role::EipPos })
        }
        _ => false,
    }
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    match change {
        Change::AllocateEip { role } => {
            let e = x.aws.allocate_eip(x.id(), *role).await?;
            let rid = e.allocation_id.clone();
            x.write(|d| d.eips.push(e));
            created(rid, *role)
        }
        Change::AssociateEip { role } => {
            let eni = match role {
                Role::EipHost => need(
                    "eth0",
                    x.read(|d| d.instance().and_then(|i| i.eni(0)).map(str::to_string)),
                )?,
                _ => need("eth1", x.read(|d| d.eni_pos().map(|e| e.id.clone())))?,
            };
            let alloc = need(
                "Elastic IP",
                x.read(|d| d.eip(*role).map(|e| e.allocation_id.clone())),
            )?;
            let assoc = x.aws.associate_eip(&alloc, &eni).await?;
            x.write(|d| {
                if let Some(e) = d.eips.iter_mut().find(|e| e.allocation_id == alloc) {
                    e.association_id = Some(assoc);
                    e.eni_id = Some(eni);
                }
            });
            touched(alloc)
        }
        other => unreachable!("not an Elastic IP change: {other}"),
    }
}

/// Disassociates and releases every address (first: the gateway detaches only when no
/// address of its VPC is mapped).
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.eips.iter().map(|e| async move {
        if let Some(assoc) = &e.association_id {
            t.one(
                format!("disassociate Elastic IP {}", e.public_ip),
                aws.disassociate_eip(assoc),
            )
            .await;
        }
        t.one(
            format!("release Elastic IP {} ({})", e.public_ip, e.allocation_id),
            settle(|| aws.release_eip(&e.allocation_id)),
        )
        .await;
    }))
    .await;
}
