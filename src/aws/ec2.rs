//! EC2 writes: one small function per change, each recorded in the journal.

use super::discover::{Eip, Eni, Igw, Instance, RouteTable, Rule, SecurityGroup, Subnet, Vpc};
use super::retry::Verdict;
use super::tags::{self, Role};
use super::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, DomainType, EbsBlockDevice, Filter, HttpTokensState,
    IamInstanceProfileSpecification, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceType, IpPermission, IpRange, ResourceType,
    VolumeType,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use backon::{ConstantBuilder, Retryable};
use std::time::Duration;

/// How long an instance may take to reach `running` or `terminated`.
const INSTANCE_WAIT: Duration = Duration::from_secs(600);

/// Everything RunInstances needs, resolved by the caller.
pub struct Launch<'a> {
    pub image_id: &'a str,
    pub root_device: &'a str,
    pub instance_type: &'a str,
    pub disk_gb: i32,
    pub subnet_id: &'a str,
    pub host_sg: &'a str,
    pub pos_eni: &'a str,
    pub profile_arn: &'a str,
    pub user_data_b64: String,
    pub termination_protection: bool,
    /// Same for every attempt at this stack generation, so a retried launch cannot duplicate.
    pub client_token: String,
}

/// Filters for one stack's resource of one role (what `create_once` looks for).
fn role_filters(id: &StackId, role: Role) -> Vec<Filter> {
    let mut f = tags::filters(id);
    f.push(tags::filter(&format!("tag:{}", tags::ROLE), role.as_str()));
    f
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
    pub async fn create_vpc(&self, id: &StackId, cidr: &str) -> Result<Vpc> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_vpcs()
                .set_filters(Some(role_filters(id, Role::Vpc)))
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
                    Some((tags::CREATED, crate::journal::now())),
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
                .set_filters(Some(role_filters(id, Role::Igw)))
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
            let done = e.code() == Some("Resource.AlreadyAssociated")
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
            Err(e) if e.code() == Some("Gateway.NotAttached") => {}
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

    pub async fn create_subnet(&self, id: &StackId, vpc_id: &str, cidr: &str) -> Result<Subnet> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_subnets()
                .set_filters(Some(role_filters(id, Role::Subnet)))
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
                .set_filters(Some(role_filters(id, Role::RouteTable)))
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
            let done = e.code() == Some("RouteAlreadyExists")
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
                let existing = if e.code() == Some("Resource.AlreadyAssociated") {
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
            Err(e) if e.code() == Some("InvalidAssociationID.NotFound") => {}
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
                .set_filters(Some(role_filters(id, role)))
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

    /// An SDK error as ours, and whether its code is `own`: the call met the effect of an
    /// earlier attempt of itself whose answer was lost.
    fn met_own<E>(
        &self,
        op: &'static str,
        sg_id: &str,
        own: &str,
        e: SdkError<E, HttpResponse>,
    ) -> (bool, Error)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        (e.code() == Some(own), self.err(op, Some(sg_id), e))
    }

    /// Adds rules. A retry after an add whose answer was lost meets its own rules
    /// (InvalidPermission.Duplicate): fine when every rule is there.
    async fn authorize(&self, sg_id: &str, ingress: bool, rules: &[Rule]) -> Result<()> {
        let perms = Some(rules.iter().map(ip_permission).collect());
        let dup = "InvalidPermission.Duplicate";
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
        let gone = "InvalidPermission.NotFound";
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
                .set_filters(Some(role_filters(id, Role::EniPos)))
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

    /// Launches the host and returns it as RunInstances described it (`pending`). Retries while a new instance profile is not yet
    /// visible to EC2 (IAM is eventually consistent; this takes seconds after creation).
    pub async fn run_instance(&self, id: &StackId, l: &Launch<'_>) -> Result<Instance> {
        let req = self
            .ec2
            .run_instances()
            .image_id(l.image_id)
            .instance_type(InstanceType::from(l.instance_type))
            .min_count(1)
            .max_count(1)
            .client_token(&l.client_token)
            .user_data(&l.user_data_b64)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .arn(l.profile_arn)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(l.root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(l.disk_gb)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(l.subnet_id)
                    .groups(l.host_sg)
                    .delete_on_termination(true)
                    .build(),
            )
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(1)
                    .network_interface_id(l.pos_eni)
                    .build(),
            )
            .disable_api_termination(l.termination_protection)
            .tag_specifications(tags::spec(id, Role::Host, ResourceType::Instance))
            .tag_specifications(tags::spec(id, Role::Volume, ResourceType::Volume))
            .tag_specifications(tags::spec(
                id,
                Role::EniHost,
                ResourceType::NetworkInterface,
            ));
        // The launch's ClientToken makes a repeated RunInstances return the first one's
        // instance on AWS; the tag lookup of `create_once` guards also where the token is
        // not honoured (the emulator) and costs one describe only after a failure.
        let find =
            move || async move { Ok(self.find_instances(id, None).await?.into_iter().next()) };
        let req = &req;
        let create = move |v: Verdict| async move {
            let out = (|| req.clone().customize().config_override(v.ec2()).send())
                // IAM takes seconds (AWS: "usually", no bound) to make a new profile
                // usable by EC2: asked every second, for up to two minutes.
                .retry(
                    ConstantBuilder::default()
                        .with_delay(Duration::from_secs(1))
                        .with_max_times(120),
                )
                .when(|e| {
                    e.as_service_error().is_some_and(|s| {
                        s.code() == Some("InvalidParameterValue")
                            && s.message().is_some_and(|m| {
                                m.to_ascii_lowercase().contains("instance profile")
                            })
                    })
                })
                .notify(|_, _| {
                    crate::ui::note(
                        "EC2 RunInstances: the new instance profile is not usable by EC2 yet (IAM propagation); retrying in 1s",
                    )
                })
                .await
                .map_err(|e| self.err("RunInstances", Some(l.subnet_id), e))?;
            let i = out
                .instances()
                .first()
                .ok_or_else(|| Error::failed("RunInstances returned no instance"))?;
            Ok(Instance {
                termination_protection: l.termination_protection,
                ..Instance::from_sdk(i)
            })
        };
        let instance = self
            .create_once(
                "EC2 RunInstances",
                "the stack's instance exists",
                find,
                create,
            )
            .await?;
        self.wrote("RunInstances", &instance.id);
        Ok(instance)
    }

    /// Waits until the instance is `running`: polled every second (the SDK's waiter first
    /// asks after 15 s and then less often, which is slower than a launch takes).
    pub async fn wait_running(&self, instance_id: &str) -> Result<()> {
        self.wait_state(instance_id, "running", &["shutting-down", "terminated", "stopping"])
            .await
            .map_err(|e| match e {
                Error::Failed(m) => Error::failed(format!(
                    "{m}\n  next: look at the instance in the EC2 console (state reason), then run the same command again"
                )),
                e => e,
            })
    }

    /// Polls an instance's state until it is `want`: a state in `fail` ends the wait with an
    /// error, as does INSTANCE_WAIT passing; NotFound (a new instance EC2 does not show
    /// yet) is waited on like a state on its way.
    async fn wait_state(&self, instance_id: &str, want: &str, fail: &[&str]) -> Result<()> {
        enum Poll {
            NotYet(String),
            Stop(Error),
        }
        let poll = || async {
            let out = self
                .ec2
                .describe_instances()
                .instance_ids(instance_id)
                .send()
                .await;
            let state = match out {
                Ok(o) => o
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| {
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                    })
                    .unwrap_or_default(),
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {
                    "not visible yet".into()
                }
                Err(e) => {
                    return Err(Poll::Stop(self.err(
                        "DescribeInstances",
                        Some(instance_id),
                        e,
                    )))
                }
            };
            if state == want {
                Ok(())
            } else if fail.contains(&state.as_str()) {
                Err(Poll::Stop(Error::failed(format!(
                    "instance {instance_id} in {} is {state}, not {want}",
                    self.region
                ))))
            } else {
                Err(Poll::NotYet(state))
            }
        };
        let polls = INSTANCE_WAIT.as_secs() as usize;
        poll.retry(
            ConstantBuilder::default()
                .with_delay(Duration::from_secs(1))
                .with_max_times(polls),
        )
        .when(|p| matches!(p, Poll::NotYet(_)))
        .await
        .map_err(|p| match p {
            Poll::Stop(e) => e,
            Poll::NotYet(state) => Error::failed(format!(
                "instance {instance_id} in {} did not reach `{want}` within {}s (it is {state})",
                self.region,
                INSTANCE_WAIT.as_secs()
            )),
        })
    }

    pub async fn set_termination_protection(&self, instance_id: &str, on: bool) -> Result<()> {
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance_id)
            .disable_api_termination(AttributeBooleanValue::builder().value(on).build())
            .send()
            .await
            .map_err(|e| self.err("ModifyInstanceAttribute", Some(instance_id), e))?;
        self.wrote("ModifyInstanceAttribute", instance_id);
        Ok(())
    }

    pub async fn terminate(&self, instance_id: &str) -> Result<()> {
        self.ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| self.err("TerminateInstances", Some(instance_id), e))?;
        self.wrote("TerminateInstances", instance_id);
        Ok(())
    }

    pub async fn wait_terminated(&self, instance_id: &str) -> Result<()> {
        self.wait_state(instance_id, "terminated", &[]).await
    }

    pub async fn allocate_eip(&self, id: &StackId, role: Role) -> Result<Eip> {
        let find = move || async move {
            let out = self
                .ec2
                .describe_addresses()
                .set_filters(Some(role_filters(id, role)))
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
                if e.code() == Some("Resource.AlreadyAssociated") {
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

impl Aws {
    /// The instance's console output (cloud-init prints the SSH host keys there).
    pub async fn console_output(&self, instance_id: &str) -> Result<String> {
        let out = self
            .ec2
            .get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send()
            .await
            .map_err(|e| self.err("GetConsoleOutput", Some(instance_id), e))?;
        let text = out.output().unwrap_or_default();
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&decoded).into_owned())
    }

    /// Snapshots the instance's root volume (the host and the POS data on it), tagged with
    /// the stack so that teardown finds it. Returns the snapshot ids; they complete later.
    pub async fn snapshot_volumes(
        &self,
        id: &StackId,
        instance_id: &str,
        label: &str,
    ) -> Result<Vec<String>> {
        let d = self.discover(id).await?;
        let volume = d
            .instances
            .iter()
            .find(|i| i.id == instance_id)
            .and_then(|i| i.root_volume.as_ref())
            .ok_or_else(|| {
                Error::failed(format!("{instance_id} has no root volume to snapshot"))
            })?;
        let out = self
            .ec2
            .create_snapshot()
            .volume_id(&volume.id)
            .description(format!("poscloud {id} {label}"))
            .tag_specifications(tags::spec(id, Role::Snapshot, ResourceType::Snapshot))
            .send()
            .await
            .map_err(|e| self.err("CreateSnapshot", Some(&volume.id), e))?;
        let snap = out.snapshot_id().unwrap_or_default().to_string();
        self.wrote("CreateSnapshot", &snap);
        Ok(vec![snap])
    }

    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.ec2
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteSnapshot", Some(snapshot_id), e))?;
        self.wrote("DeleteSnapshot", snapshot_id);
        Ok(())
    }
}
