//! Read-only checks before the first write: the image exists, the region has room.

use super::tags;
use super::Aws;
use crate::error::{Error, Result};
use crate::spec::AmiSpec;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub root_device: String,
}

impl Aws {
    /// The stack's AMI: the pinned id, or the newest available x86_64 image matching the name.
    pub async fn find_image(&self, ami: &AmiSpec) -> Result<Image> {
        let req = self.ec2.describe_images();
        let req = match ami {
            AmiSpec::Pinned(id) => req.image_ids(id),
            AmiSpec::Newest { owner, name } => req
                .owners(owner)
                .filters(tags::filter("name", name))
                .filters(tags::filter("state", "available"))
                .filters(tags::filter("architecture", "x86_64")),
        };
        let images = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeImages", None, e))?;
        let newest = images
            .into_iter()
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        let what = match ami {
            AmiSpec::Pinned(id) => id.clone(),
            AmiSpec::Newest { owner, name } => format!("owner {owner}, name {name:?}"),
        };
        let img = newest.ok_or_else(|| {
            Error::failed(format!("no AMI found in {} for {what}", self.region)).next(
                "check the stack's [ami] section, or pin an image id available in this region",
            )
        })?;
        Ok(Image {
            id: img.image_id().unwrap_or_default().to_string(),
            name: img.name().unwrap_or_default().to_string(),
            root_device: img.root_device_name().unwrap_or("/dev/sda1").to_string(),
        })
    }

    /// Fails when creating `vpcs` more VPCs and `eips` more Elastic IPs would pass the
    /// region's limits. The VPC limit is not in the EC2 API, so the stack profile gives it;
    /// the Elastic IP limit is EC2's account attribute unless the profile gives it.
    /// The region's VPC and Elastic IP headroom for `vpcs` and `eips` more (read at once).
    pub async fn check_quotas(
        &self,
        vpcs: usize,
        eips: usize,
        vpc_limit: u32,
        eip_limit: Option<u32>,
    ) -> Result<()> {
        let vpc_check = async {
            if vpcs == 0 {
                return Ok(());
            }
            let used = self
                .ec2
                .describe_vpcs()
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| self.err("DescribeVpcs", None, e))?
                .len();
            if used + vpcs > vpc_limit as usize {
                return Err(Error::failed(format!(
                    "{} has {used} of {vpc_limit} VPCs in use; this stack needs {vpcs} more",
                    self.region
                ))
                .next("remove unused VPCs or raise the quota (then `quotas.vpcs_per_region` in the stack file)"));
            }
            Ok(())
        };
        let eip_check = async {
            if eips == 0 {
                return Ok(());
            }
            let limit = async {
                match eip_limit {
                    Some(l) => Ok(l as usize),
                    None => self.eip_limit().await,
                }
            };
            let used = async {
                Ok(self
                    .ec2
                    .describe_addresses()
                    .send()
                    .await
                    .map_err(|e| self.err("DescribeAddresses", None, e))?
                    .addresses()
                    .len())
            };
            let (limit, used) = tokio::try_join!(limit, used)?;
            if used + eips > limit {
                return Err(Error::failed(format!(
                    "{} has {used} of {limit} Elastic IPs in use; this stack needs {eips} more",
                    self.region
                ))
                .next("release unused Elastic IPs (they cost money idle too) or ask AWS for a higher quota (then `quotas.elastic_ips_per_region` in the stack file)"));
            }
            Ok(())
        };
        tokio::try_join!(vpc_check, eip_check).map(|_| ())
    }

    async fn eip_limit(&self) -> Result<usize> {
        let attrs = self
            .ec2
            .describe_account_attributes()
            .attribute_names(aws_sdk_ec2::types::AccountAttributeName::from(
                "vpc-max-elastic-ips",
            ))
            .send()
            .await
            .map_err(|e| self.err("DescribeAccountAttributes", None, e))?;
        Ok(attrs
            .account_attributes()
            .iter()
            .find(|a| a.attribute_name() == Some("vpc-max-elastic-ips"))
            .and_then(|a| a.attribute_values().first())
            .and_then(|v| v.attribute_value())
            .and_then(|v| v.parse().ok())
            .unwrap_or(5))
    }
}
