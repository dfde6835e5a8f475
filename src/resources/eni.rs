//! eth1: the POS container's network interface with its fixed address (and whatever other
//! interface is left in the stack's VPC, which must go before the VPC can): what is found,
//! planned, made and removed.

use super::change::{step, Change, Step};
use super::{created, need, Apply, Made};
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
use std::collections::BTreeMap;

use super::network::Vpc;

#[derive(Debug, Clone, Serialize)]
pub struct Eni {
    pub id: String,
    pub role: Option<Role>,
    pub private_ip: Option<String>,
    pub groups: Vec<String>,
    pub attached_to: Option<String>,
    pub status: String,
}

/// Which network interfaces to list.
pub(crate) enum EniQuery<'a> {
    Tagged,
    InVpcs(&'a [Vpc]),
    Ids(&'a [String]),
}

impl Aws {
    /// ENIs: tagged, or in the stack's VPCs (AWS deletes an instance's inline eth0 with it;
    /// a leftover must still go before the VPC can), or by id.
    pub(crate) async fn find_enis(&self, id: &StackId, q: EniQuery<'_>) -> Result<Vec<Eni>> {
        let mut found = BTreeMap::new();
        let (queries, ids) = match q {
            EniQuery::Tagged => (vec![tags::filters(id)], None),
            EniQuery::InVpcs(vpcs) => (
                vpcs.iter()
                    .map(|v| vec![tags::filter("vpc-id", &v.id)])
                    .collect(),
                None,
            ),
            EniQuery::Ids(ids) => (vec![Vec::new()], Some(ids)),
        };
        for filters in queries {
            let enis = self
                .ec2
                .describe_network_interfaces()
                .set_network_interface_ids(ids.map(<[String]>::to_vec))
                .set_filters((!filters.is_empty()).then_some(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| self.err("DescribeNetworkInterfaces", None, e))?;
            for n in enis {
                let eni = Eni {
                    id: n.network_interface_id().unwrap_or_default().to_string(),
                    role: tags::stack_of(n.tag_set()).and_then(|(_, r)| r),
                    private_ip: n.private_ip_address().map(str::to_string),
                    groups: n
                        .groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                    attached_to: n
                        .attachment()
                        .and_then(|a| a.instance_id().map(str::to_string)),
                    status: n
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                };
                found.insert(eni.id.clone(), eni);
            }
        }
        Ok(found.into_values().collect())
    }

    /// eth1: the POS container's interface with its fixed address.
    pub async fn create_pos_eni(
        &self,
        id: &StackId,
        subnet_id: &str,
        ip: &str,
        sg_id: &str,
    ) -> Result<Eni> {
        let new_eni = move |eni_id: &str| Eni {
            id: eni_id.to_string(),
            role: Some(Role::EniPos),
            private_ip: Some(ip.to_string()),
            groups: vec![sg_id.to_string()],
            attached_to: None,
            status: "available".into(),
        };
        let find = move || async move {
            let out = self
                .ec2
                .describe_network_interfaces()
                .set_filters(Some(tags::role_filters(id, Role::EniPos)))
                .send()
                .await
                .map_err(|e| self.err("DescribeNetworkInterfaces", None, e))?;
            Ok(out
                .network_interfaces()
                .first()
                .map(|n| new_eni(n.network_interface_id().unwrap_or_default())))
        };
        // CreateNetworkInterface has a ClientToken, which the SDK fills in once for all of
        // its own attempts; these attempts are ours, so the tag lookup is what guards them
        // (and the fixed private address: a second ENI with it is refused on AWS).
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .create_network_interface()
                .subnet_id(subnet_id)
                .private_ip_address(ip)
                .groups(sg_id)
                .description(format!("{} eth1 (POS container)", id.name()))
                .tag_specifications(tags::spec(id, Role::EniPos, ResourceType::NetworkInterface))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("CreateNetworkInterface", Some(subnet_id), e))?;
            Ok(new_eni(
                out.network_interface()
                    .and_then(|n| n.network_interface_id())
                    .unwrap_or_default(),
            ))
        };
        let eni = self
            .create_once("EC2 CreateNetworkInterface", "eth1 exists", find, create)
            .await?;
        self.wrote("CreateNetworkInterface", &eni.id);
        Ok(eni)
    }

    pub async fn delete_eni(&self, eni_id: &str) -> Result<()> {
        self.ec2
            .delete_network_interface()
            .network_interface_id(eni_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteNetworkInterface", Some(eni_id), e))?;
        self.wrote("DeleteNetworkInterface", eni_id);
        Ok(())
    }
}

/// eth1 with the stack's POS address.
pub fn plan(spec: &StackSpec, d: &Discovered) -> Vec<Step> {
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
    vec![step(
        Role::EniPos,
        eni.map(|e| e.id.as_str()),
        changes,
        drift,
    )]
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    matches!(a, Change::CreatePosEni { .. })
        && (matches!(b, Change::CreateSubnet { .. })
            || matches!(b, Change::CreateSecurityGroup { role: Role::SgPos }))
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    match change {
        Change::CreatePosEni { ip } => {
            let subnet = need("subnet", x.read(|d| d.subnet().map(|s| s.id.clone())))?;
            let sg = need(
                "security group pos",
                x.read(|d| d.sg(Role::SgPos).map(|g| g.id.clone())),
            )?;
            let e = x.aws.create_pos_eni(x.id(), &subnet, ip, &sg).await?;
            let rid = e.id.clone();
            x.write(|d| d.enis.push(e));
            created(rid, Role::EniPos)
        }
        other => unreachable!("not an interface change: {other}"),
    }
}

/// Deletes the interfaces (once the instance is gone; AWS detaches eth1 a moment after).
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.enis.iter().map(|e| {
        t.one(
            format!("delete network interface {}", e.id),
            settle(|| aws.delete_eni(&e.id)),
        )
    }))
    .await;
}
