//! Carries out a plan's changes in order. Each change looks up the ids it needs in the
//! (updated) discovered state, so a resumed run continues where a crashed one stopped.

use crate::aws::discover::Discovered;
use crate::aws::ec2::Launch;
use crate::aws::preflight::Image;
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::plan::Change;
use crate::spec::StackSpec;
use base64::Engine;

fn need<'a>(what: &str, v: Option<&'a str>) -> Result<&'a str> {
    v.ok_or_else(|| Error::failed(format!("{what} is missing; run the same command again")))
}

/// Does one change; returns the id of the resource it touched.
pub async fn apply(
    aws: &Aws,
    spec: &StackSpec,
    image: Option<&Image>,
    d: &mut Discovered,
    change: &Change,
) -> Result<String> {
    let id = &spec.id;
    let vpc_id = d.vpc().map(|v| v.id.clone());
    let vpc = || need("VPC", vpc_id.as_deref());
    Ok(match change {
        Change::CreateVpc { cidr } => {
            let v = aws.create_vpc(id, cidr).await?;
            let out = v.id.clone();
            d.vpcs.push(v);
            out
        }
        Change::CreateIgw => {
            let g = aws.create_igw(id).await?;
            let out = g.id.clone();
            d.igws.push(g);
            out
        }
        Change::AttachIgw => {
            let vpc = vpc()?;
            let g = d
                .igws
                .first_mut()
                .ok_or_else(|| Error::failed("internet gateway is missing"))?;
            aws.attach_igw(&g.id, vpc).await?;
            g.attached_vpc = Some(vpc.to_string());
            g.id.clone()
        }
        Change::CreateSubnet { cidr } => {
            let s = aws.create_subnet(id, vpc()?, cidr).await?;
            let out = s.id.clone();
            d.subnets.push(s);
            out
        }
        Change::CreateRouteTable => {
            let t = aws.create_route_table(id, vpc()?).await?;
            let out = t.id.clone();
            d.route_tables.push(t);
            out
        }
        Change::AddDefaultRoute => {
            let igw = need("internet gateway", d.igw().map(|g| g.id.as_str()))?.to_string();
            let t = d
                .route_tables
                .first_mut()
                .ok_or_else(|| Error::failed("route table is missing"))?;
            aws.create_default_route(&t.id, &igw).await?;
            t.default_gateway = Some(igw);
            t.id.clone()
        }
        Change::AssociateRouteTable => {
            let subnet = need("subnet", d.subnet().map(|s| s.id.as_str()))?.to_string();
            let t = d
                .route_tables
                .first_mut()
                .ok_or_else(|| Error::failed("route table is missing"))?;
            let assoc = aws.associate_route_table(&t.id, &subnet).await?;
            t.associations.push((assoc, subnet));
            t.id.clone()
        }
        Change::CreateSecurityGroup { role } => {
            let description = match role {
                Role::SgHost => "poscloud Docker host (eth0): SSH from admin CIDRs only",
                _ => "poscloud POS container (eth1): no inbound",
            };
            let g = aws
                .create_security_group(id, *role, vpc()?, description)
                .await?;
            let out = g.id.clone();
            d.security_groups.push(g);
            out
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
            let g = d
                .security_groups
                .iter_mut()
                .find(|g| g.role == *role)
                .ok_or_else(|| {
                    Error::failed(format!("security group {} is missing", role.as_str()))
                })?;
            let list = if *ingress {
                &mut g.ingress
            } else {
                &mut g.egress
            };
            match (matches!(change, Change::Authorize { .. }), *ingress) {
                (true, true) => aws.authorize_ingress(&g.id, rules).await?,
                (true, false) => aws.authorize_egress(&g.id, rules).await?,
                (false, true) => aws.revoke_ingress(&g.id, rules).await?,
                (false, false) => aws.revoke_egress(&g.id, rules).await?,
            }
            if matches!(change, Change::Authorize { .. }) {
                list.extend(rules.iter().cloned());
            } else {
                list.retain(|r| !rules.contains(r));
            }
            g.id.clone()
        }
        Change::CreateOutputBucket { name } => {
            aws.create_output_bucket(name).await?;
            d.output.exists = true;
            name.clone()
        }
        Change::SecureOutputBucket => {
            aws.secure_bucket(&d.output.name).await?;
            d.output.encrypted = true;
            d.output.public_access_blocked = true;
            d.output.name.clone()
        }
        Change::PutScopePolicy => {
            let doc = crate::aws::iam::scope_policy(id, &d.account, &aws.region, &d.output.name);
            let r = d
                .iam_role
                .as_mut()
                .ok_or_else(|| Error::failed("IAM role is missing"))?;
            aws.put_role_policy(&r.name, crate::aws::iam::SCOPE_POLICY, &doc)
                .await?;
            r.scope_policy = Some(doc);
            r.name.clone()
        }
        Change::CreateRole => {
            let r = aws.create_role(id).await?;
            let out = r.name.clone();
            d.iam_role = Some(r);
            out
        }
        Change::AttachPolicy { arn } => {
            let r = d
                .iam_role
                .as_mut()
                .ok_or_else(|| Error::failed("IAM role is missing"))?;
            aws.attach_role_policy(&r.name, arn).await?;
            r.policies.push(arn.clone());
            r.name.clone()
        }
        Change::CreateInstanceProfile => {
            let p = aws.create_instance_profile(id).await?;
            let out = p.name.clone();
            d.instance_profile = Some(p);
            out
        }
        Change::AddRoleToProfile => {
            let role = need("IAM role", d.iam_role.as_ref().map(|r| r.name.as_str()))?.to_string();
            let p = d
                .instance_profile
                .as_mut()
                .ok_or_else(|| Error::failed("instance profile is missing"))?;
            aws.add_role_to_profile(&p.name, &role).await?;
            p.roles.push(role);
            p.name.clone()
        }
        Change::CreatePosEni { ip } => {
            let subnet = need("subnet", d.subnet().map(|s| s.id.as_str()))?;
            let sg = need(
                "security group pos",
                d.sg(Role::SgPos).map(|g| g.id.as_str()),
            )?;
            let e = aws.create_pos_eni(id, subnet, ip, sg).await?;
            let out = e.id.clone();
            d.enis.push(e);
            out
        }
        Change::Launch {
            instance_type,
            disk_gb,
        } => {
            let image = image.ok_or_else(|| Error::failed("no AMI resolved for the launch"))?;
            let vpc = vpc()?;
            let launch = Launch {
                image_id: &image.id,
                root_device: &image.root_device,
                instance_type,
                disk_gb: *disk_gb,
                subnet_id: need("subnet", d.subnet().map(|s| s.id.as_str()))?,
                host_sg: need(
                    "security group host",
                    d.sg(Role::SgHost).map(|g| g.id.as_str()),
                )?,
                pos_eni: need("eth1", d.eni_pos().map(|e| e.id.as_str()))?,
                profile_arn: need(
                    "instance profile",
                    d.instance_profile.as_ref().map(|p| p.arn.as_str()),
                )?,
                user_data_b64: base64::engine::general_purpose::STANDARD
                    .encode(crate::userdata::encode(spec, &aws.region)?),
                termination_protection: spec.termination_protection,
                // The VPC id makes the token unique per stack generation: a re-run after a
                // crash reuses it (AWS returns the same instance), a new stack never does.
                client_token: format!("{}-{vpc}", id.name()),
            };
            let instance_id = aws.run_instance(id, &launch).await?;
            aws.wait_running(&instance_id).await?;
            d.instances = aws.find_instances(id).await?;
            // Check what we asked for: emulators (moto) ignore DisableApiTermination on
            // RunInstances; on AWS this finds it set and writes nothing.
            if let Some(i) = d.instances.iter_mut().find(|i| i.id == instance_id) {
                if i.termination_protection != spec.termination_protection {
                    aws.set_termination_protection(&i.id, spec.termination_protection)
                        .await?;
                    i.termination_protection = spec.termination_protection;
                }
            }
            instance_id
        }
        Change::SetTerminationProtection { on } => {
            let i = d
                .instances
                .first_mut()
                .ok_or_else(|| Error::failed("instance is missing"))?;
            aws.set_termination_protection(&i.id, *on).await?;
            i.termination_protection = *on;
            i.id.clone()
        }
        Change::AllocateEip { role } => {
            let e = aws.allocate_eip(id, *role).await?;
            let out = e.allocation_id.clone();
            d.eips.push(e);
            out
        }
        Change::AssociateEip { role } => {
            let eni = match role {
                Role::EipHost => need("eth0", d.instance().and_then(|i| i.eni(0)))?.to_string(),
                _ => need("eth1", d.eni_pos().map(|e| e.id.as_str()))?.to_string(),
            };
            let e = d
                .eips
                .iter_mut()
                .find(|e| e.role == Some(*role))
                .ok_or_else(|| Error::failed("Elastic IP is missing"))?;
            let assoc = aws.associate_eip(&e.allocation_id, &eni).await?;
            e.association_id = Some(assoc);
            e.eni_id = Some(eni);
            e.allocation_id.clone()
        }
    })
}
