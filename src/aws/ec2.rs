//! EC2 writes: one small function per change, each recorded in the journal.

use super::discover::{Eip, Eni, Igw, RouteTable, Rule, SecurityGroup, Subnet, Vpc};
use super::tags::{self, Role};
use super::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, DomainType, EbsBlockDevice, HttpTokensState,
    IamInstanceProfileSpecification, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceType, IpPermission, IpRange, ResourceType,
    VolumeType,
};
use backon::{ExponentialBuilder, Retryable};
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
            .send()
            .await
            .map_err(|e| self.err("CreateVpc", None, e))?;
        let vpc_id = out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default();
        self.wrote("CreateVpc", vpc_id);
        Ok(Vpc {
            id: vpc_id.to_string(),
            cidr: cidr.to_string(),
        })
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
        let out = self
            .ec2
            .create_internet_gateway()
            .tag_specifications(tags::spec(id, Role::Igw, ResourceType::InternetGateway))
            .send()
            .await
            .map_err(|e| self.err("CreateInternetGateway", None, e))?;
        let igw_id = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .unwrap_or_default();
        self.wrote("CreateInternetGateway", igw_id);
        Ok(Igw {
            id: igw_id.to_string(),
            attached_vpc: None,
        })
    }

    pub async fn attach_igw(&self, igw_id: &str, vpc_id: &str) -> Result<()> {
        self.ec2
            .attach_internet_gateway()
            .internet_gateway_id(igw_id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| self.err("AttachInternetGateway", Some(igw_id), e))?;
        self.wrote("AttachInternetGateway", igw_id);
        Ok(())
    }

    pub async fn detach_igw(&self, igw_id: &str, vpc_id: &str) -> Result<()> {
        self.ec2
            .detach_internet_gateway()
            .internet_gateway_id(igw_id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| self.err("DetachInternetGateway", Some(igw_id), e))?;
        self.wrote("DetachInternetGateway", igw_id);
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
        let out = self
            .ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(cidr)
            .tag_specifications(tags::spec(id, Role::Subnet, ResourceType::Subnet))
            .send()
            .await
            .map_err(|e| self.err("CreateSubnet", Some(vpc_id), e))?;
        let subnet_id = out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default();
        self.wrote("CreateSubnet", subnet_id);
        Ok(Subnet {
            id: subnet_id.to_string(),
            cidr: cidr.to_string(),
        })
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
        let out = self
            .ec2
            .create_route_table()
            .vpc_id(vpc_id)
            .tag_specifications(tags::spec(id, Role::RouteTable, ResourceType::RouteTable))
            .send()
            .await
            .map_err(|e| self.err("CreateRouteTable", Some(vpc_id), e))?;
        let rtb_id = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .unwrap_or_default();
        self.wrote("CreateRouteTable", rtb_id);
        Ok(RouteTable {
            id: rtb_id.to_string(),
            default_gateway: None,
            associations: Vec::new(),
        })
    }

    pub async fn create_default_route(&self, rtb_id: &str, igw_id: &str) -> Result<()> {
        self.ec2
            .create_route()
            .route_table_id(rtb_id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw_id)
            .send()
            .await
            .map_err(|e| self.err("CreateRoute", Some(rtb_id), e))?;
        self.wrote("CreateRoute", rtb_id);
        Ok(())
    }

    pub async fn associate_route_table(&self, rtb_id: &str, subnet_id: &str) -> Result<String> {
        let out = self
            .ec2
            .associate_route_table()
            .route_table_id(rtb_id)
            .subnet_id(subnet_id)
            .send()
            .await
            .map_err(|e| self.err("AssociateRouteTable", Some(rtb_id), e))?;
        self.wrote("AssociateRouteTable", rtb_id);
        Ok(out.association_id().unwrap_or_default().to_string())
    }

    pub async fn disassociate_route_table(&self, association_id: &str) -> Result<()> {
        self.ec2
            .disassociate_route_table()
            .association_id(association_id)
            .send()
            .await
            .map_err(|e| self.err("DisassociateRouteTable", Some(association_id), e))?;
        self.wrote("DisassociateRouteTable", association_id);
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
        let out = self
            .ec2
            .create_security_group()
            .group_name(tags::name(id, role))
            .description(description)
            .vpc_id(vpc_id)
            .tag_specifications(tags::spec(id, role, ResourceType::SecurityGroup))
            .send()
            .await
            .map_err(|e| self.err("CreateSecurityGroup", Some(vpc_id), e))?;
        let sg_id = out.group_id().unwrap_or_default();
        self.wrote("CreateSecurityGroup", sg_id);
        Ok(SecurityGroup {
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
        })
    }

    pub async fn authorize_ingress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.ec2
            .authorize_security_group_ingress()
            .group_id(sg_id)
            .set_ip_permissions(Some(rules.iter().map(ip_permission).collect()))
            .send()
            .await
            .map_err(|e| self.err("AuthorizeSecurityGroupIngress", Some(sg_id), e))?;
        self.wrote("AuthorizeSecurityGroupIngress", sg_id);
        Ok(())
    }

    pub async fn revoke_ingress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.ec2
            .revoke_security_group_ingress()
            .group_id(sg_id)
            .set_ip_permissions(Some(rules.iter().map(ip_permission).collect()))
            .send()
            .await
            .map_err(|e| self.err("RevokeSecurityGroupIngress", Some(sg_id), e))?;
        self.wrote("RevokeSecurityGroupIngress", sg_id);
        Ok(())
    }

    pub async fn authorize_egress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.ec2
            .authorize_security_group_egress()
            .group_id(sg_id)
            .set_ip_permissions(Some(rules.iter().map(ip_permission).collect()))
            .send()
            .await
            .map_err(|e| self.err("AuthorizeSecurityGroupEgress", Some(sg_id), e))?;
        self.wrote("AuthorizeSecurityGroupEgress", sg_id);
        Ok(())
    }

    pub async fn revoke_egress(&self, sg_id: &str, rules: &[Rule]) -> Result<()> {
        self.ec2
            .revoke_security_group_egress()
            .group_id(sg_id)
            .set_ip_permissions(Some(rules.iter().map(ip_permission).collect()))
            .send()
            .await
            .map_err(|e| self.err("RevokeSecurityGroupEgress", Some(sg_id), e))?;
        self.wrote("RevokeSecurityGroupEgress", sg_id);
        Ok(())
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
        let out = self
            .ec2
            .create_network_interface()
            .subnet_id(subnet_id)
            .private_ip_address(ip)
            .groups(sg_id)
            .description(format!("{} eth1 (POS container)", id.name()))
            .tag_specifications(tags::spec(id, Role::EniPos, ResourceType::NetworkInterface))
            .send()
            .await
            .map_err(|e| self.err("CreateNetworkInterface", Some(subnet_id), e))?;
        let eni_id = out
            .network_interface()
            .and_then(|n| n.network_interface_id())
            .unwrap_or_default();
        self.wrote("CreateNetworkInterface", eni_id);
        Ok(Eni {
            id: eni_id.to_string(),
            role: Some(Role::EniPos),
            private_ip: Some(ip.to_string()),
            groups: vec![sg_id.to_string()],
            attached_to: None,
            status: "available".into(),
        })
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

    /// Launches the host and returns its id. Retries while a new instance profile is not yet
    /// visible to EC2 (IAM is eventually consistent; this takes seconds after creation).
    pub async fn run_instance(&self, id: &StackId, l: &Launch<'_>) -> Result<String> {
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
        let out = (|| req.clone().send())
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(2))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(8),
            )
            .when(|e| {
                e.as_service_error().is_some_and(|s| {
                    use aws_sdk_ec2::error::ProvideErrorMetadata;
                    s.code() == Some("InvalidParameterValue")
                        && s.message()
                            .is_some_and(|m| m.to_ascii_lowercase().contains("instance profile"))
                })
            })
            .notify(|_, wait| {
                tracing::info!("instance profile not visible to EC2 yet; retrying in {wait:?}")
            })
            .await
            .map_err(|e| self.err("RunInstances", Some(l.subnet_id), e))?;
        let instance_id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| Error::failed("RunInstances returned no instance"))?
            .to_string();
        self.wrote("RunInstances", &instance_id);
        Ok(instance_id)
    }

    pub async fn wait_running(&self, instance_id: &str) -> Result<()> {
        self.ec2
            .wait_until_instance_running()
            .instance_ids(instance_id)
            .wait(INSTANCE_WAIT)
            .await
            .map_err(|e| {
                Error::failed(format!(
                    "instance {instance_id} in {} did not reach `running` within {}s: {}\n  next: look at the instance in the EC2 console (state reason), then run the same command again",
                    self.region,
                    INSTANCE_WAIT.as_secs(),
                    aws_sdk_ec2::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
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
        self.ec2
            .wait_until_instance_terminated()
            .instance_ids(instance_id)
            .wait(INSTANCE_WAIT)
            .await
            .map_err(|e| {
                Error::failed(format!(
                    "instance {instance_id} in {} did not reach `terminated` within {}s: {}",
                    self.region,
                    INSTANCE_WAIT.as_secs(),
                    aws_sdk_ec2::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }

    pub async fn allocate_eip(&self, id: &StackId, role: Role) -> Result<Eip> {
        let out = self
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tags::spec(id, role, ResourceType::ElasticIp))
            .send()
            .await
            .map_err(|e| self.err("AllocateAddress", None, e))?;
        let alloc = out.allocation_id().unwrap_or_default();
        self.wrote("AllocateAddress", alloc);
        Ok(Eip {
            allocation_id: alloc.to_string(),
            role: Some(role),
            public_ip: out.public_ip().unwrap_or_default().to_string(),
            association_id: None,
            eni_id: None,
        })
    }

    pub async fn associate_eip(&self, allocation_id: &str, eni_id: &str) -> Result<String> {
        let out = self
            .ec2
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(eni_id)
            .allow_reassociation(false)
            .send()
            .await
            .map_err(|e| self.err("AssociateAddress", Some(allocation_id), e))?;
        self.wrote("AssociateAddress", allocation_id);
        Ok(out.association_id().unwrap_or_default().to_string())
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
