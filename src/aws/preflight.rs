//! Read-only checks before the first write: the image exists, the region has room (its
//! quotas from Service Quotas, see quotas.rs).

use super::quotas::{Quota, QuotaKind, QuotaRequest};
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
    /// region's quotas (Service Quotas' values, their use from EC2; each read at once),
    /// naming the quota, its value, its use, the need and the request that raises it.
    pub async fn check_quotas(&self, vpcs: usize, eips: usize) -> Result<()> {
        let check = |kind: QuotaKind, need: usize| async move {
            if need == 0 {
                return Ok(());
            }
            let (quota, used) = tokio::try_join!(self.quota(kind), self.quota_in_use(kind))?;
            if used + need <= quota.value as usize {
                return Ok(());
            }
            // Refused: is a raise on its way already?
            let open = self
                .quota_requests(kind)
                .await
                .ok()
                .and_then(|rs| rs.into_iter().find(|r| r.open));
            Err(self.quota_refusal(&quota, used, need, open.as_ref()))
        };
        tokio::try_join!(check(QuotaKind::Vpcs, vpcs), check(QuotaKind::Eips, eips)).map(|_| ())
    }

    /// The preflight's refusal: quota, value, use, need, and what to run.
    fn quota_refusal(
        &self,
        quota: &Quota,
        used: usize,
        need: usize,
        open: Option<&QuotaRequest>,
    ) -> Error {
        let msg = format!(
            "{}: quota {} ({} {}) is {} ({}), {used} in use; this provision needs {need} more",
            self.region,
            quota.name,
            quota.service,
            quota.code,
            quota.value,
            if quota.source == "applied" {
                "applied to this account"
            } else {
                "AWS's default"
            },
        );
        let next = match open {
            Some(r) => format!(
                "a request to raise it to {} is open ({}, request {}): once AWS approves it, run this again; `{}` shows it",
                r.desired,
                r.status,
                r.id,
                self.quota_command("show", "")
            ),
            None => {
                let want = (used + need).max(quota.value as usize * 2);
                let free = match quota.kind {
                    QuotaKind::Vpcs => "remove unused VPCs",
                    QuotaKind::Eips => "release unused Elastic IPs (they cost money idle too)",
                };
                format!(
                    "ask AWS for more: `{}`, then run this again once approved; or {free}",
                    self.quota_command("request", &format!(" {} {want}", quota.kind.flag()))
                )
            }
        };
        Error::failed(msg).next(next)
    }

    /// A `poscloud quota ...` command line for this account and region.
    pub fn quota_command(&self, verb: &str, args: &str) -> String {
        let profile = match self.at.credentials.strip_prefix("profile ") {
            Some(p) => format!(" --profile {p}"),
            None => String::new(),
        };
        format!(
            "poscloud quota {verb}{args}{profile} --region {}",
            self.region
        )
    }
}
