//! Discovery: what exists of a stack, found by its tags. AWS is the state.

use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::Result;
use crate::resources::eni::EniQuery;
use crate::spec::StackId;
use crate::time::{sdk_time, Time};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

// The resource types, each defined with its module in resources/.
pub use crate::resources::alarms::{Alarm, AlertTopic, Subscription};
pub use crate::resources::bucket::OutputBucket;
pub use crate::resources::eips::Eip;
pub use crate::resources::eni::Eni;
pub use crate::resources::iam::{iam_name, IamRole, InstanceProfile, IAM_PATH};
pub use crate::resources::instance::{HttpTokens, Instance, InstanceState, Volume, VolumeKind};
pub use crate::resources::network::{Igw, Vpc};
pub use crate::resources::records::{record_prefix, Record, RECORD_FRESH};
pub use crate::resources::security_groups::{Rule, SecurityGroup};
pub use crate::resources::subnet::{RouteTable, Subnet};

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
    /// The SNS topic the alarms tell, with its subscriptions.
    pub alert_topic: Option<AlertTopic>,
    /// The stack's CloudWatch alarms (found by name).
    pub alarms: Vec<Alarm>,
}

impl Discovered {
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
            self.alert_topic
                .iter()
                .map(|t| format!("SNS topic {}", t.arn)),
        );
        out.extend(self.alarms.iter().map(|a| format!("alarm {}", a.name)));
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

/// Adds the interfaces not listed yet (two queries may both find one).
fn add_enis(into: &mut Vec<Eni>, more: Vec<Eni>) {
    for e in more {
        if !into.iter().any(|x| x.id == e.id) {
            into.push(e);
        }
    }
}

impl Aws {
    /// Finds every resource of one stack. Reads only. By tags, and by the ids poscloud
    /// recorded right after each create: AWS's tag-filtered lists may leave out for a while
    /// what was just made, and a second one must never be made because of that.
    pub async fn discover(&self, id: &StackId) -> Result<Discovered> {
        // The VPC, then whatever interface is in it (not only poscloud's: any must go before
        // the VPC can), beside everything else.
        let network = async {
            let in_vpcs = async {
                let vpcs = self.find_vpcs(id, None).await?;
                let enis = self.find_enis(id, EniQuery::InVpcs(&vpcs)).await?;
                Ok::<_, crate::error::Error>((vpcs, enis))
            };
            let (tagged, (vpcs, in_vpcs)) =
                tokio::try_join!(self.find_enis(id, EniQuery::Tagged), in_vpcs)?;
            let mut enis = tagged;
            add_enis(&mut enis, in_vpcs);
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
            alerts,
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
            // Boxed, as the largest of them (a batch runs many discoveries in one task).
            Box::pin(self.find_alerts(id)),
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
            alert_topic: alerts.0,
            alarms: alerts.1,
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
            add_enis(&mut d.enis, part.enis);
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

    /// Whether another run changed the stack since `d` was discovered (asked by a run that
    /// has just taken the lock): every run that changes a stack leaves a parameter behind
    /// (an id record, a phase), so the stack's parameters, read again in one call and
    /// compared by name and last change (the lock aside), tell.
    pub async fn changed_since(&self, id: &StackId, d: &Discovered) -> Result<bool> {
        let lock = crate::aws::ssm::lock_name(id);
        let now: BTreeMap<String, Option<SystemTime>> = self
            .find_parameters(id)
            .await?
            .into_iter()
            .filter(|(name, _, _)| *name != lock)
            .map(|(name, _, at)| (name, at))
            .collect();
        let then: BTreeMap<String, Option<SystemTime>> = d
            .values
            .iter()
            .filter(|(name, _)| **name != lock)
            .map(|(name, (_, at))| (name.clone(), *at))
            .collect();
        Ok(now != then)
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
}

/// One stack as seen region-wide by `list`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StackSummary {
    pub vpc: Option<String>,
    /// The VPC's creation time tag (stacks made before it existed have none).
    pub created: Option<Time>,
    pub instance: Option<String>,
    pub state: Option<InstanceState>,
    pub instance_type: Option<String>,
    pub launch_time: Option<Time>,
    /// When a stopped instance stopped (EC2 keeps only its latest stop, in the state reason).
    pub stopped_at: Option<Time>,
    pub public_ips: Vec<String>,
    /// The host's (eth0) and the POS's (eth1) public address, by their role tags.
    pub host_ip: Option<String>,
    pub pos_ip: Option<String>,
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
fn stopped_at(reason: &str) -> Option<Time> {
    let inner = reason.split_once('(')?.1.split_once(')')?.0;
    let (date, time) = inner.split_once(' ')?;
    let time = time.split(' ').next()?;
    format!("{date}T{time}Z").parse().ok()
}

impl StackSummary {
    /// When the stack was created: its VPC's tag, else the instance's launch time.
    pub fn created_at(&self) -> Option<Time> {
        self.created.or(self.launch_time)
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
                // A tag edited into something else reads as unknown.
                s.created = tags::get(v.tags(), tags::CREATED).and_then(|t| t.parse().ok());
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
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(InstanceState::from_sdk);
            if state == Some(InstanceState::Terminated) {
                continue;
            }
            if let Some((id, _)) = tags::stack_of(i.tags()) {
                let s = out.entry(id).or_default();
                s.instance = i.instance_id().map(str::to_string);
                s.state = state;
                s.instance_type = i.instance_type().map(|t| t.as_str().to_string());
                s.launch_time = i.launch_time().and_then(sdk_time);
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
            if let Some((id, role)) = tags::stack_of(a.tags()) {
                let s = out.entry(id).or_default();
                let ip = a.public_ip().unwrap_or_default().to_string();
                match role {
                    Some(Role::EipHost) => s.host_ip = Some(ip.clone()),
                    Some(Role::EipPos) => s.pos_ip = Some(ip.clone()),
                    _ => {}
                }
                s.public_ips.push(ip);
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

impl Aws {
    /// The envs in which this shop has anything in the region (one region-wide listing), for
    /// "not found here; it exists in ..." when a command is pointed at the wrong env.
    pub async fn envs_of(&self, shop: &crate::spec::ShopCode) -> Result<Vec<crate::spec::Env>> {
        let stacks = self.list_stacks().await?;
        Ok(stacks
            .keys()
            .filter(|id| id.shop == *shop)
            .map(|id| id.env)
            .collect())
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
            assert_eq!(
                stopped_at(reason).map(|t| t.to_string()).as_deref(),
                Some("2026-11-20T10:00:05Z")
            );
        }
        assert_eq!(stopped_at(""), None);
        assert_eq!(stopped_at("Server.SpotInstanceTermination"), None);
        assert_eq!(stopped_at("User initiated (yesterday)"), None);
    }
}
