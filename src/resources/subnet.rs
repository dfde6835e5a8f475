//! The stack's subnet and its route table (0.0.0.0/0 to the internet gateway, associated
//! with the subnet): what is found, planned, made and removed.

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
pub struct Subnet {
    pub id: String,
    pub cidr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTable {
    pub id: String,
    /// Target of the 0.0.0.0/0 route, if there is one.
    pub default_gateway: Option<String>,
    /// (association id, subnet id)
    pub associations: Vec<(String, String)>,
}

impl Aws {
    pub(crate) async fn find_subnets(
        &self,
        id: &StackId,
        ids: Option<&[String]>,
    ) -> Result<Vec<Subnet>> {
        let req = self.ec2.describe_subnets();
        let req = match ids {
            Some(ids) => req.set_subnet_ids(Some(ids.to_vec())),
            None => req.set_filters(Some(tags::filters(id))),
        };
        let subnets = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeSubnets", None, e))?;
        Ok(subnets
            .into_iter()
            .map(|s| Subnet {
                id: s.subnet_id().unwrap_or_default().to_string(),
                cidr: s.cidr_block().unwrap_or_default().to_string(),
            })
            .collect())
    }

    pub(crate) async fn find_route_tables(
        &self,
        id: &StackId,
        ids: Option<&[String]>,
    ) -> Result<Vec<RouteTable>> {
        let req = self.ec2.describe_route_tables();
        let req = match ids {
            Some(ids) => req.set_route_table_ids(Some(ids.to_vec())),
            None => req.set_filters(Some(tags::filters(id))),
        };
        let rtbs = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeRouteTables", None, e))?;
        Ok(rtbs
            .into_iter()
            .map(|t| RouteTable {
                id: t.route_table_id().unwrap_or_default().to_string(),
                default_gateway: t
                    .routes()
                    .iter()
                    .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                    .and_then(|r| r.gateway_id().map(str::to_string)),
                associations: t
                    .associations()
                    .iter()
                    .filter_map(|a| {
                        Some((
                            a.route_table_association_id()?.to_string(),
                            a.subnet_id()?.to_string(),
                        ))
                    })
                    .collect(),
            })
            .collect())
    }

    pub async fn create_subnet(&self, id: &StackId, vpc_id: &str, cidr: &str) -> Result<Subnet> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_subnets()
                .set_filters(Some(tags::role_filters(id, Role::Subnet)))
                .send()
                .await
                .map_err(|e| self.err("DescribeSubnets", None, e))?;
            Ok(out.subnets().first().map(|s| Subnet {
                id: s.subnet_id().unwrap_or_default().to_string(),
                cidr: s.cidr_block().unwrap_or_default().to_string(),
            }))
        };
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .create_subnet()
                .vpc_id(vpc_id)
                .cidr_block(cidr)
                .tag_specifications(tags::spec(id, Role::Subnet, ResourceType::Subnet))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("CreateSubnet", Some(vpc_id), e))?;
            Ok(Subnet {
                id: out
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .unwrap_or_default()
                    .to_string(),
                cidr: cidr.to_string(),
            })
        };
        let subnet = self
            .create_once(
                "EC2 CreateSubnet",
                "the stack's subnet exists",
                find,
                create,
            )
            .await?;
        self.wrote("CreateSubnet", &subnet.id);
        Ok(subnet)
    }

    pub async fn delete_subnet(&self, subnet_id: &str) -> Result<()> {
        self.ec2
            .delete_subnet()
            .subnet_id(subnet_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteSubnet", Some(subnet_id), e))?;
        self.wrote("DeleteSubnet", subnet_id);
        Ok(())
    }

    pub async fn create_route_table(&self, id: &StackId, vpc_id: &str) -> Result<RouteTable> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_route_tables()
                .set_filters(Some(tags::role_filters(id, Role::RouteTable)))
                .send()
                .await
                .map_err(|e| self.err("DescribeRouteTables", None, e))?;
            Ok(out.route_tables().first().map(|t| RouteTable {
                id: t.route_table_id().unwrap_or_default().to_string(),
                default_gateway: None,
                associations: Vec::new(),
            }))
        };
        let create = move |v: Verdict| async move {
            let out = self
                .ec2
                .create_route_table()
                .vpc_id(vpc_id)
                .tag_specifications(tags::spec(id, Role::RouteTable, ResourceType::RouteTable))
                .customize()
                .config_override(v.ec2())
                .send()
                .await
                .map_err(|e| self.err("CreateRouteTable", Some(vpc_id), e))?;
            Ok(RouteTable {
                id: out
                    .route_table()
                    .and_then(|t| t.route_table_id())
                    .unwrap_or_default()
                    .to_string(),
                default_gateway: None,
                associations: Vec::new(),
            })
        };
        let rtb = self
            .create_once(
                "EC2 CreateRouteTable",
                "the stack's route table exists",
                find,
                create,
            )
            .await?;
        self.wrote("CreateRouteTable", &rtb.id);
        Ok(rtb)
    }

    /// One route table as EC2 has it now.
    async fn route_table(&self, rtb_id: &str) -> Result<Option<aws_sdk_ec2::types::RouteTable>> {
        let out = self
            .ec2
            .describe_route_tables()
            .route_table_ids(rtb_id)
            .send()
            .await
            .map_err(|e| self.err("DescribeRouteTables", Some(rtb_id), e))?;
        Ok(out.route_tables().first().cloned())
    }

    pub async fn create_default_route(&self, rtb_id: &str, igw_id: &str) -> Result<()> {
        let sent = self
            .ec2
            .create_route()
            .route_table_id(rtb_id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw_id)
            .send()
            .await;
        if let Err(e) = sent {
            // A retried create whose first answer was lost: fine if the route is ours.
            let done = crate::aws::kind_of(&e) == crate::error::Kind::Conflict
                && self.route_table(rtb_id).await?.is_some_and(|t| {
                    t.routes().iter().any(|r| {
                        r.destination_cidr_block() == Some("0.0.0.0/0")
                            && r.gateway_id() == Some(igw_id)
                    })
                });
            if !done {
                return Err(self.err("CreateRoute", Some(rtb_id), e));
            }
        }
        self.wrote("CreateRoute", rtb_id);
        Ok(())
    }

    pub async fn associate_route_table(&self, rtb_id: &str, subnet_id: &str) -> Result<String> {
        let sent = self
            .ec2
            .associate_route_table()
            .route_table_id(rtb_id)
            .subnet_id(subnet_id)
            .send()
            .await;
        let association = match sent {
            Ok(out) => out.association_id().unwrap_or_default().to_string(),
            Err(e) => {
                // A retry after an association whose answer was lost: use that association.
                let existing = if crate::aws::kind_of(&e) == crate::error::Kind::Conflict {
                    self.route_table(rtb_id).await?.and_then(|t| {
                        t.associations()
                            .iter()
                            .find(|a| a.subnet_id() == Some(subnet_id))
                            .and_then(|a| a.route_table_association_id())
                            .map(str::to_string)
                    })
                } else {
                    None
                };
                existing.ok_or_else(|| self.err("AssociateRouteTable", Some(rtb_id), e))?
            }
        };
        self.wrote("AssociateRouteTable", rtb_id);
        Ok(association)
    }

    pub async fn disassociate_route_table(&self, association_id: &str) -> Result<()> {
        match self
            .ec2
            .disassociate_route_table()
            .association_id(association_id)
            .send()
            .await
        {
            Ok(_) => self.wrote("DisassociateRouteTable", association_id),
            // Gone already (a retried call whose first answer was lost): the route table can
            // be deleted next.
            Err(e) if crate::aws::kind_of(&e) == crate::error::Kind::NotFound => {}
            Err(e) => return Err(self.err("DisassociateRouteTable", Some(association_id), e)),
        }
        Ok(())
    }

    pub async fn delete_route_table(&self, rtb_id: &str) -> Result<()> {
        self.ec2
            .delete_route_table()
            .route_table_id(rtb_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteRouteTable", Some(rtb_id), e))?;
        self.wrote("DeleteRouteTable", rtb_id);
        Ok(())
    }
}

/// The subnet (the stack's whole network) and the route table that sends 0.0.0.0/0 to the
/// stack's internet gateway.
pub fn plan(spec: &StackSpec, d: &Discovered) -> Vec<Step> {
    let net = spec.network.to_string();
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
    let mut steps = vec![step(
        Role::Subnet,
        subnet.map(|s| s.id.as_str()),
        changes,
        drift,
    )];

    let (rtb, igw) = (d.route_table(), d.igw());
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
    steps
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    use Change as C;
    match a {
        C::CreateSubnet { .. } | C::CreateRouteTable => matches!(b, C::CreateVpc { .. }),
        // A route to a gateway needs the gateway attached to the route table's VPC.
        C::AddDefaultRoute => matches!(b, C::CreateRouteTable | C::CreateIgw | C::AttachIgw),
        C::AssociateRouteTable => matches!(b, C::CreateRouteTable | C::CreateSubnet { .. }),
        _ => false,
    }
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    let id = x.id();
    match change {
        Change::CreateSubnet { cidr } => {
            let s = x.aws.create_subnet(id, &x.vpc()?, cidr).await?;
            let rid = s.id.clone();
            x.write(|d| d.subnets.push(s));
            created(rid, Role::Subnet)
        }
        Change::CreateRouteTable => {
            let t = x.aws.create_route_table(id, &x.vpc()?).await?;
            let rid = t.id.clone();
            x.write(|d| d.route_tables.push(t));
            created(rid, Role::RouteTable)
        }
        Change::AddDefaultRoute => {
            let igw = need(
                "internet gateway",
                x.read(|d| d.igw().map(|g| g.id.clone())),
            )?;
            let rtb = need(
                "route table",
                x.read(|d| d.route_table().map(|t| t.id.clone())),
            )?;
            x.aws.create_default_route(&rtb, &igw).await?;
            x.write(|d| {
                if let Some(t) = d.route_tables.iter_mut().find(|t| t.id == rtb) {
                    t.default_gateway = Some(igw);
                }
            });
            touched(rtb)
        }
        Change::AssociateRouteTable => {
            let subnet = need("subnet", x.read(|d| d.subnet().map(|s| s.id.clone())))?;
            let rtb = need(
                "route table",
                x.read(|d| d.route_table().map(|t| t.id.clone())),
            )?;
            let assoc = x.aws.associate_route_table(&rtb, &subnet).await?;
            x.write(|d| {
                if let Some(t) = d.route_tables.iter_mut().find(|t| t.id == rtb) {
                    t.associations.push((assoc, subnet));
                }
            });
            touched(rtb)
        }
        other => unreachable!("not a subnet or route change: {other}"),
    }
}

/// Disassociates and deletes the route tables (nothing else waits for them).
pub(crate) async fn delete_route_tables(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.route_tables.iter().map(|rt| async move {
        t.one(format!("delete route table {}", rt.id), async {
            for (assoc, _) in &rt.associations {
                aws.disassociate_route_table(assoc).await?;
            }
            aws.delete_route_table(&rt.id).await
        })
        .await;
    }))
    .await;
}

/// Deletes the subnets (once no interface is left in them).
pub(crate) async fn delete_subnets(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.subnets.iter().map(|s| {
        t.one(
            format!("delete subnet {}", s.id),
            settle(|| aws.delete_subnet(&s.id)),
        )
    }))
    .await;
}
