//! Discovery: what exists of a stack, found by its tags. AWS is the state.

use super::tags::{self, Role};
use super::Aws;
use crate::error::Result;
use crate::spec::StackId;
use aws_sdk_ec2::types::{InstanceAttributeName, IpPermission};
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

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

#[derive(Debug, Clone, Serialize)]
pub struct Eni {
    pub id: String,
    pub role: Option<Role>,
    pub private_ip: Option<String>,
    pub groups: Vec<String>,
    pub attached_to: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub id: String,
    pub size_gb: i32,
    pub volume_type: String,
    pub encrypted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub launch_time: Option<String>,
    /// (device index, ENI id, private IP)
    pub interfaces: Vec<(i32, String, String)>,
    pub profile_arn: Option<String>,
    pub http_tokens: Option<String>,
    pub hop_limit: Option<i32>,
    pub root_volume: Option<Volume>,
    pub termination_protection: bool,
}

impl Instance {
    /// What EC2's description of an instance says by itself (its root volume and termination
    /// protection take calls of their own: none and false here).
    pub fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Instance {
        let mut interfaces: Vec<(i32, String, String)> = i
            .network_interfaces()
            .iter()
            .map(|n| {
                (
                    n.attachment().and_then(|a| a.device_index()).unwrap_or(-1),
                    n.network_interface_id().unwrap_or_default().to_string(),
                    n.private_ip_address().unwrap_or_default().to_string(),
                )
            })
            .collect();
        interfaces.sort();
        Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            image_id: i.image_id().unwrap_or_default().to_string(),
            launch_time: i.launch_time().map(|t| t.to_string()),
            interfaces,
            profile_arn: i
                .iam_instance_profile()
                .and_then(|p| p.arn().map(str::to_string)),
            http_tokens: i
                .metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str().to_string()),
            hop_limit: i
                .metadata_options()
                .and_then(|m| m.http_put_response_hop_limit()),
            root_volume: None,
            termination_protection: false,
        }
    }

    pub fn eni(&self, device_index: i32) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|(d, _, _)| *d == device_index)
            .map(|(_, id, _)| id.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Eip {
    pub allocation_id: String,
    pub role: Option<Role>,
    pub public_ip: String,
    pub association_id: Option<String>,
    pub eni_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IamRole {
    pub name: String,
    pub policies: Vec<String>,
    /// The inline scope policy (own S3 prefix, own SSM path), if attached.
    pub scope_policy: Option<serde_json::Value>,
}

/// The account's SSM output bucket in this region, and this stack's objects in it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputBucket {
    pub name: String,
    pub exists: bool,
    pub encrypted: bool,
    pub public_access_blocked: bool,
    pub stack_objects: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceProfile {
    pub name: String,
    pub arn: String,
    pub roles: Vec<String>,
}

/// Everything found of one stack. Lists, because a broken stack may hold duplicates that
/// teardown must still find; provision refuses to work on a stack with duplicates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Discovered {
    #[serde(skip)]
    pub id: Option<StackId>,
    pub vpcs: Vec<Vpc>,
    pub igws: Vec<Igw>,
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
    pub security_groups: Vec<SecurityGroup>,
    /// Tagged ENIs, plus untagged ones left in the stack's VPC (e.g. an inline eth0).
    pub enis: Vec<Eni>,
    pub instances: Vec<Instance>,
    pub eips: Vec<Eip>,
    pub iam_role: Option<IamRole>,
    pub instance_profile: Option<InstanceProfile>,
    pub parameters: Vec<String>,
    /// EBS snapshots `pos snapshot` made of the host (tagged with the stack).
    pub snapshots: Vec<String>,
    pub account: String,
    pub output: OutputBucket,
    /// The ids poscloud recorded after creating them (SSM `id/<role>`).
    pub records: Vec<Record>,
    /// Every parameter's value and last change (phase records, the lock, the records).
    #[serde(skip)]
    pub values: BTreeMap<String, (String, Option<SystemTime>)>,
}

/// Whether two readings of a stack's parameters (`parameter_stamps`) are the same, the lock
/// aside: every run that changes a stack leaves a parameter behind (an id record, a phase),
/// so the same parameters mean that no other run changed the stack in between.
pub fn same_parameters(
    a: &BTreeMap<String, Option<SystemTime>>,
    b: &BTreeMap<String, Option<SystemTime>>,
    lock: &str,
) -> bool {
    let strip = |m: &BTreeMap<String, Option<SystemTime>>| {
        m.iter()
            .filter(|(k, _)| *k != lock)
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    strip(a) == strip(b)
}

/// Which network interfaces to list.
enum EniQuery<'a> {
    Tagged,
    InVpcs(&'a [Vpc]),
    Ids(&'a [String]),
}

/// A resource's id as poscloud recorded it right after its create.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub role: Role,
    pub id: String,
    #[serde(skip)]
    pub written: Option<SystemTime>,
}

/// How long after its record a resource may still be unknown to EC2 by its id. AWS documents
/// eventual consistency for EC2 reads without a bound; seconds are usual.
pub const RECORD_FRESH: Duration = Duration::from_secs(60);

/// Where a stack's records live: `<param path>id/<role>`.
pub fn record_prefix(id: &StackId) -> String {
    format!("{}id/", id.param_path())
}

impl Discovered {
    /// The parameters as discovered, with when each last changed (see `parameter_stamps`).
    pub fn parameter_stamps(&self) -> BTreeMap<String, Option<SystemTime>> {
        self.values
            .iter()
            .map(|(name, (_, at))| (name.clone(), *at))
            .collect()
    }

    /// A parameter's value as discovered.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    /// Whether the resource a record names was found.
    pub fn has(&self, r: &Record) -> bool {
        let id = r.id.as_str();
        match r.role {
            Role::Vpc => self.vpcs.iter().any(|v| v.id == id),
            Role::Igw => self.igws.iter().any(|v| v.id == id),
            Role::Subnet => self.subnets.iter().any(|v| v.id == id),
            Role::RouteTable => self.route_tables.iter().any(|v| v.id == id),
            Role::SgHost | Role::SgPos => self.security_groups.iter().any(|v| v.id == id),
            Role::EniPos => self.enis.iter().any(|v| v.id == id),
            Role::Host => self.instances.iter().any(|v| v.id == id),
            Role::EipHost | Role::EipPos => self.eips.iter().any(|v| v.allocation_id == id),
            _ => true,
        }
    }

    pub fn vpc(&self) -> Option<&Vpc> {
        self.vpcs.first()
    }
    pub fn igw(&self) -> Option<&Igw> {
        self.igws.first()
    }
    pub fn subnet(&self) -> Option<&Subnet> {
        self.subnets.first()
    }
    pub fn route_table(&self) -> Option<&RouteTable> {
        self.route_tables.first()
    }
    pub fn sg(&self, role: Role) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|g| g.role == role)
    }
    pub fn eni_pos(&self) -> Option<&Eni> {
        self.enis.iter().find(|e| e.role == Some(Role::EniPos))
    }
    pub fn instance(&self) -> Option<&Instance> {
        self.instances.first()
    }
    pub fn eip(&self, role: Role) -> Option<&Eip> {
        self.eips.iter().find(|e| e.role == Some(role))
    }

    /// Is anything of the stack left (parameters aside, which a lock alone can explain)?
    pub fn is_empty(&self) -> bool {
        self.remaining().is_empty()
    }

    /// One line per resource still present, for "nothing may remain" checks.
    pub fn remaining(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.vpcs.iter().map(|v| format!("VPC {}", v.id)));
        out.extend(
            self.igws
                .iter()
                .map(|v| format!("internet gateway {}", v.id)),
        );
        out.extend(self.subnets.iter().map(|v| format!("subnet {}", v.id)));
        out.extend(
            self.route_tables
                .iter()
                .map(|v| format!("route table {}", v.id)),
        );
        out.extend(
            self.security_groups
                .iter()
                .map(|v| format!("security group {}", v.id)),
        );
        out.extend(
            self.enis
                .iter()
                .map(|v| format!("network interface {}", v.id)),
        );
        out.extend(
            self.instances
                .iter()
                .map(|v| format!("instance {} ({})", v.id, v.state)),
        );
        out.extend(
            self.eips
                .iter()
                .map(|v| format!("Elastic IP {} ({})", v.public_ip, v.allocation_id)),
        );
        out.extend(self.iam_role.iter().map(|v| format!("IAM role {}", v.name)));
        out.extend(
            self.instance_profile
                .iter()
                .map(|v| format!("instance profile {}", v.name)),
        );
        out.extend(self.parameters.iter().map(|p| format!("SSM parameter {p}")));
        out.extend(self.snapshots.iter().map(|p| format!("EBS snapshot {p}")));
        out
    }

    /// Duplicates that should never exist; provision stops on them.
    pub fn duplicates(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut dup = |what: &str, ids: Vec<&str>| {
            if ids.len() > 1 {
                out.push(format!("{} {what}: {}", ids.len(), ids.join(", ")));
            }
        };
        dup("VPCs", self.vpcs.iter().map(|v| v.id.as_str()).collect());
        dup(
            "internet gateways",
            self.igws.iter().map(|v| v.id.as_str()).collect(),
        );
        dup(
            "subnets",
            self.subnets.iter().map(|v| v.id.as_str()).collect(),
        );
        dup(
            "route tables",
            self.route_tables.iter().map(|v| v.id.as_str()).collect(),
        );
        for role in [Role::SgHost, Role::SgPos] {
            dup(
                &format!("{} security groups", role.as_str()),
                self.security_groups
                    .iter()
                    .filter(|g| g.role == role)
                    .map(|g| g.id.as_str())
                    .collect(),
            );
        }
        dup(
            "POS network interfaces",
            self.enis
                .iter()
                .filter(|e| e.role == Some(Role::EniPos))
                .map(|e| e.id.as_str())
                .collect(),
        );
        dup(
            "instances",
            self.instances.iter().map(|v| v.id.as_str()).collect(),
        );
        for role in [Role::EipHost, Role::EipPos] {
            dup(
                &format!("{} Elastic IPs", role.as_str()),
                self.eips
                    .iter()
                    .filter(|e| e.role == Some(role))
                    .map(|e| e.allocation_id.as_str())
                    .collect(),
            );
        }
        out
    }
}

/// IAM names are global per account: one role and one instance profile per stack.
pub fn iam_name(id: &StackId) -> String {
    id.name()
}
pub const IAM_PATH: &str = "/poscloud/";

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

impl Aws {
    /// Finds every resource of one stack. Reads only. By tags, and by the ids poscloud
    /// recorded right after each create: AWS's tag-filtered lists may leave out for a while
    /// what was just made, and a second one must never be made because of that.
    pub async fn discover(&self, id: &StackId) -> Result<Discovered> {
        // The VPC, then whatever interface is in it (not only poscloud's: any must go before
        // the VPC can), beside everything else.
        let network = async {
            let vpcs = self.find_vpcs(id, None).await?;
            let (tagged, in_vpcs) = tokio::try_join!(
                self.find_enis(id, EniQuery::Tagged),
                self.find_enis(id, EniQuery::InVpcs(&vpcs))
            )?;
            let mut enis = tagged;
            for e in in_vpcs {
                if !enis.iter().any(|x| x.id == e.id) {
                    enis.push(e);
                }
            }
            Ok::<_, crate::error::Error>((vpcs, enis))
        };
        let (
            (vpcs, enis),
            igws,
            subnets,
            rtbs,
            sgs,
            instances,
            eips,
            iam,
            params,
            output,
            snapshots,
        ) = tokio::try_join!(
            network,
            self.find_igws(id, None),
            self.find_subnets(id, None),
            self.find_route_tables(id, None),
            self.find_security_groups(id, None),
            self.find_instances(id, None),
            self.find_eips(id, None),
            self.find_iam(id),
            self.find_parameters(id),
            self.find_output(id),
            self.find_snapshots(id),
        )?;
        let records: Vec<Record> = params
            .iter()
            .filter_map(|(name, value, written)| {
                let role = Role::parse(name.strip_prefix(&record_prefix(id))?)?;
                Some(Record {
                    role,
                    id: value.clone(),
                    written: *written,
                })
            })
            .collect();
        let mut d = Discovered {
            id: Some(id.clone()),
            account: output.0,
            output: output.1,
            vpcs,
            igws,
            subnets,
            route_tables: rtbs,
            security_groups: sgs,
            enis,
            instances,
            eips,
            iam_role: iam.0,
            instance_profile: iam.1,
            values: params
                .iter()
                .map(|(name, value, at)| (name.clone(), (value.clone(), *at)))
                .collect(),
            parameters: params.into_iter().map(|(name, _, _)| name).collect(),
            snapshots,
            records: records.clone(),
        };
        // What the lists left out, looked up by its recorded id, all at once (with the
        // interfaces of a VPC only its record found).
        let missing: Vec<&Record> = records.iter().filter(|r| !d.has(r)).collect();
        let by_record = futures_util::future::try_join_all(missing.iter().map(|r| {
            let one = [r.id.clone()];
            async move {
                let ids = Some(&one[..]);
                let mut part = Discovered::default();
                match r.role {
                    Role::Vpc => {
                        part.vpcs = self.recorded(r, || self.find_vpcs(id, ids)).await?;
                        part.enis = self.find_enis(id, EniQuery::InVpcs(&part.vpcs)).await?;
                    }
                    Role::Igw => part.igws = self.recorded(r, || self.find_igws(id, ids)).await?,
                    Role::Subnet => {
                        part.subnets = self.recorded(r, || self.find_subnets(id, ids)).await?
                    }
                    Role::RouteTable => {
                        part.route_tables =
                            self.recorded(r, || self.find_route_tables(id, ids)).await?
                    }
                    Role::SgHost | Role::SgPos => {
                        part.security_groups = self
                            .recorded(r, || self.find_security_groups(id, ids))
                            .await?
                    }
                    Role::Host => {
                        part.instances = self.recorded(r, || self.find_instances(id, ids)).await?
                    }
                    Role::EipHost | Role::EipPos => {
                        part.eips = self.recorded(r, || self.find_eips(id, ids)).await?
                    }
                    Role::EniPos => {
                        part.enis = self
                            .recorded(r, || self.find_enis(id, EniQuery::Ids(&one)))
                            .await?
                    }
                    _ => {}
                }
                Ok::<_, crate::error::Error>(part)
            }
        }));
        let found = by_record.await?;
        for part in found {
            d.vpcs.extend(part.vpcs);
            d.igws.extend(part.igws);
            d.subnets.extend(part.subnets);
            d.route_tables.extend(part.route_tables);
            d.security_groups.extend(part.security_groups);
            d.instances.extend(part.instances);
            d.eips.extend(part.eips);
            for e in part.enis {
                if !d.enis.iter().any(|x| x.id == e.id) {
                    d.enis.push(e);
                }
            }
        }
        Ok(d)
    }

    async fn find_snapshots(&self, id: &StackId) -> Result<Vec<String>> {
        let pages = self
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(tags::filters(id)))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeSnapshots", None, e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.snapshots())
            .filter_map(|s| s.snapshot_id().map(str::to_string))
            .collect())
    }

    async fn find_vpcs(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Vpc>> {
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

    async fn find_igws(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Igw>> {
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

    async fn find_subnets(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Subnet>> {
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

    async fn find_route_tables(
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

    async fn find_security_groups(
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

    /// ENIs: tagged, or in the stack's VPCs (AWS deletes an instance's inline eth0 with it;
    /// a leftover must still go before the VPC can), or by id.
    async fn find_enis(&self, id: &StackId, q: EniQuery<'_>) -> Result<Vec<Eni>> {
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

    /// Instances that are not (yet) terminated.
    pub(crate) async fn find_instances(
        &self,
        id: &StackId,
        ids: Option<&[String]>,
    ) -> Result<Vec<Instance>> {
        let mut filters = match ids {
            Some(_) => Vec::new(),
            None => tags::filters(id),
        };
        filters.push(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped", "shutting-down"]
                        .map(String::from)
                        .to_vec(),
                ))
                .build(),
        );
        let reservations = self
            .ec2
            .describe_instances()
            .set_instance_ids(ids.map(<[String]>::to_vec))
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeInstances", None, e))?;
        let mut out = Vec::new();
        for i in reservations.iter().flat_map(|r| r.instances()) {
            let iid = i.instance_id().unwrap_or_default().to_string();
            let protection = async {
                Ok(self
                    .ec2
                    .describe_instance_attribute()
                    .instance_id(&iid)
                    .attribute(InstanceAttributeName::DisableApiTermination)
                    .send()
                    .await
                    .map_err(|e| self.err("DescribeInstanceAttribute", Some(&iid), e))?
                    .disable_api_termination()
                    .and_then(|v| v.value())
                    .unwrap_or(false))
            };
            let root_name = i.root_device_name();
            let root_volume_id = i
                .block_device_mappings()
                .iter()
                .find(|b| b.device_name() == root_name)
                .and_then(|b| b.ebs())
                .and_then(|e| e.volume_id())
                .map(str::to_string);
            let root_volume = async {
                match &root_volume_id {
                    Some(vid) => self.describe_volume(vid).await,
                    None => Ok(None),
                }
            };
            let (protection, root_volume) = tokio::try_join!(protection, root_volume)?;
            out.push(Instance {
                root_volume,
                termination_protection: protection,
                ..Instance::from_sdk(i)
            });
        }
        Ok(out)
    }

    async fn describe_volume(&self, volume_id: &str) -> Result<Option<Volume>> {
        let out = self
            .ec2
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
            .map_err(|e| self.err("DescribeVolumes", Some(volume_id), e))?;
        Ok(out.volumes().first().map(|v| Volume {
            id: volume_id.to_string(),
            size_gb: v.size().unwrap_or(0),
            volume_type: v
                .volume_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            encrypted: v.encrypted().unwrap_or(false),
        }))
    }

    async fn find_eips(&self, id: &StackId, ids: Option<&[String]>) -> Result<Vec<Eip>> {
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

    async fn find_iam(&self, id: &StackId) -> Result<(Option<IamRole>, Option<InstanceProfile>)> {
        let name = iam_name(id);
        let name = name.as_str();
        let role = async {
            match self.iam.get_role().role_name(name).send().await {
                Ok(_) => {
                    let attached = async {
                        self.iam
                            .list_attached_role_policies()
                            .role_name(name)
                            .into_paginator()
                            .items()
                            .send()
                            .try_collect()
                            .await
                            .map_err(|e| self.err("ListAttachedRolePolicies", Some(name), e))
                    };
                    let (attached, scope_policy) = tokio::try_join!(
                        attached,
                        self.role_policy(name, crate::aws::iam::SCOPE_POLICY)
                    )?;
                    Ok(Some(IamRole {
                        name: name.to_string(),
                        policies: attached
                            .into_iter()
                            .filter_map(|p| p.policy_arn().map(str::to_string))
                            .collect(),
                        scope_policy,
                    }))
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_entity_exception()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.err("GetRole", Some(name), e)),
            }
        };
        tokio::try_join!(role, self.instance_profile(name))
    }

    async fn find_output(&self, id: &StackId) -> Result<(String, OutputBucket)> {
        let account = self.account_id().await?;
        let name = crate::aws::s3::output_bucket_name(&account, &self.region);
        // All at once: the settings and keys of a bucket that does not exist read as none.
        let prefix = crate::aws::s3::stack_prefix(id);
        let (exists, (encrypted, public_access_blocked), stack_objects) = tokio::try_join!(
            self.bucket_exists(&name),
            self.bucket_security(&name),
            self.list_keys(&name, &prefix, 1000)
        )?;
        Ok((
            account,
            OutputBucket {
                name,
                exists,
                encrypted: exists && encrypted,
                public_access_blocked: exists && public_access_blocked,
                stack_objects: if exists { stack_objects } else { Vec::new() },
            },
        ))
    }

    /// The stack's parameters, each with when it last changed: what changes whenever any
    /// run changes the stack (records, phases, the lock), so that a run that took the lock
    /// after its discovery can tell whether another run changed the stack in between.
    pub async fn parameter_stamps(
        &self,
        id: &StackId,
    ) -> Result<BTreeMap<String, Option<SystemTime>>> {
        Ok(self
            .find_parameters(id)
            .await?
            .into_iter()
            .map(|(name, _, at)| (name, at))
            .collect())
    }

    /// The stack's parameters: (name, value, last modified).
    async fn find_parameters(
        &self,
        id: &StackId,
    ) -> Result<Vec<(String, String, Option<SystemTime>)>> {
        let params = self
            .ssm
            .get_parameters_by_path()
            .path(id.param_path().trim_end_matches('/'))
            .recursive(true)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("GetParametersByPath", Some(&id.param_path()), e))?;
        Ok(params
            .iter()
            .flat_map(|page| page.parameters())
            .filter_map(|p| {
                Some((
                    p.name()?.to_string(),
                    p.value().unwrap_or_default().to_string(),
                    p.last_modified_date()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                ))
            })
            .collect())
    }

    /// Looks a recorded resource up by its id. A record younger than RECORD_FRESH whose
    /// resource EC2 does not know yet is AWS's eventual consistency (the create succeeded):
    /// asked again for a while. An older one whose resource is gone names nothing.
    async fn recorded<T, F, Fut>(&self, rec: &Record, find: F) -> Result<Vec<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let young = rec
            .written
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < RECORD_FRESH);
        let not_found = |e: &crate::error::Error| matches!(e, crate::error::Error::Aws(f) if f.code.ends_with(".NotFound"));
        let found = find
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(8),
            )
            .when(|e| young && not_found(e))
            .notify(|_, wait| {
                crate::ui::note(format!(
                    "{} {} was created moments ago and EC2 does not show it yet; looking again in {:.1}s",
                    rec.role.as_str(),
                    rec.id,
                    wait.as_secs_f64()
                ))
            })
            .await;
        match found {
            Err(e) if not_found(&e) => Ok(Vec::new()),
            other => other,
        }
    }
}

/// One stack as seen region-wide by `list`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StackSummary {
    pub vpc: Option<String>,
    /// The VPC's creation time tag (stacks made before it existed have none).
    pub created: Option<String>,
    pub instance: Option<String>,
    pub state: Option<String>,
    pub instance_type: Option<String>,
    pub launch_time: Option<String>,
    /// When a stopped instance stopped (EC2 keeps only its latest stop, in the state reason).
    pub stopped_at: Option<String>,
    pub public_ips: Vec<String>,
    /// The Elastic IPs' allocation ids (billing matches them with the journal).
    pub allocations: Vec<String>,
    pub iam_role: bool,
    pub parameters: usize,
    /// Remote phases recorded as done (SSM `phase/<name>`).
    pub phases: Vec<String>,
    /// VPN locations recorded (SSM `vpn/<location>`).
    pub vpn_locations: usize,
}

/// The time in EC2's "User initiated (2026-11-20 10:00:00 GMT)" state reason, as RFC 3339.
fn stopped_at(reason: &str) -> Option<String> {
    let inner = reason.split_once('(')?.1.split_once(')')?.0;
    let (date, time) = inner.split_once(' ')?;
    let time = time.split(' ').next()?;
    let t = format!("{date}T{time}Z");
    humantime::parse_rfc3339(&t).ok().map(|_| t)
}

impl StackSummary {
    /// When the stack was created: its VPC's tag, else the instance's launch time.
    pub fn created_at(&self) -> Option<std::time::SystemTime> {
        self.created
            .as_deref()
            .or(self.launch_time.as_deref())
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    }
}

impl Aws {
    /// Every stack with anything tagged in this region (or an IAM role under our path).
    pub async fn list_stacks(&self) -> Result<BTreeMap<StackId, StackSummary>> {
        let mut out: BTreeMap<StackId, StackSummary> = BTreeMap::new();
        let vpcs = self
            .ec2
            .describe_vpcs()
            .filters(tags::any_stack())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeVpcs", None, e))?;
        for v in vpcs {
            if let Some((id, _)) = tags::stack_of(v.tags()) {
                let s = out.entry(id).or_default();
                s.vpc = v.vpc_id().map(str::to_string);
                s.created = tags::get(v.tags(), tags::CREATED).map(str::to_string);
            }
        }
        let reservations = self
            .ec2
            .describe_instances()
            .filters(tags::any_stack())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeInstances", None, e))?;
        for i in reservations.iter().flat_map(|r| r.instances()) {
            let state = i.state().and_then(|s| s.name()).map(|n| n.as_str());
            if state == Some("terminated") {
                continue;
            }
            if let Some((id, _)) = tags::stack_of(i.tags()) {
                let s = out.entry(id).or_default();
                s.instance = i.instance_id().map(str::to_string);
                s.state = state.map(str::to_string);
                s.instance_type = i.instance_type().map(|t| t.as_str().to_string());
                s.launch_time = i.launch_time().map(|t| t.to_string());
                s.stopped_at = i.state_transition_reason().and_then(stopped_at);
            }
        }
        let addrs = self
            .ec2
            .describe_addresses()
            .filters(tags::any_stack())
            .send()
            .await
            .map_err(|e| self.err("DescribeAddresses", None, e))?;
        for a in addrs.addresses() {
            if let Some((id, _)) = tags::stack_of(a.tags()) {
                let s = out.entry(id).or_default();
                s.public_ips
                    .push(a.public_ip().unwrap_or_default().to_string());
                s.allocations
                    .push(a.allocation_id().unwrap_or_default().to_string());
            }
        }
        let roles = self
            .iam
            .list_roles()
            .path_prefix(IAM_PATH)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("ListRoles", None, e))?;
        for r in roles {
            // Names are poscloud-<shop>-<env>.
            let mut parts = r.role_name().splitn(3, '-').skip(1);
            if let (Some(shop), Some(env)) = (parts.next(), parts.next()) {
                if let (Ok(shop), Ok(env)) = (shop.parse(), env.parse()) {
                    out.entry(StackId { shop, env }).or_default().iam_role = true;
                }
            }
        }
        let params = self
            .ssm
            .get_parameters_by_path()
            .path("/poscloud")
            .recursive(true)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("GetParametersByPath", Some("/poscloud/"), e))?;
        for p in params.iter().flat_map(|page| page.parameters()) {
            // /poscloud/<shop>/<env>/<kind>[/<name>]
            let mut parts = p.name().unwrap_or_default().split('/').skip(2);
            if let (Some(shop), Some(env)) = (parts.next(), parts.next()) {
                if let (Ok(shop), Ok(env)) = (shop.parse(), env.parse()) {
                    let s = out.entry(StackId { shop, env }).or_default();
                    s.parameters += 1;
                    match (parts.next(), parts.next()) {
                        (Some("phase"), Some(name)) => s.phases.push(name.to_string()),
                        (Some("vpn"), Some(_)) => s.vpn_locations += 1,
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::stopped_at;

    #[test]
    fn stop_time_from_the_state_reason() {
        // AWS writes GMT, the emulator UTC.
        for reason in [
            "User initiated (2026-11-20 10:00:05 GMT)",
            "User initiated (2026-11-20 10:00:05 UTC)",
        ] {
            assert_eq!(stopped_at(reason).as_deref(), Some("2026-11-20T10:00:05Z"));
        }
        assert_eq!(stopped_at(""), None);
        assert_eq!(stopped_at("Server.SpotInstanceTermination"), None);
        assert_eq!(stopped_at("User initiated (yesterday)"), None);
    }
}
