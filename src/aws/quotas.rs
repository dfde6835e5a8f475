//! The region's two quotas a stack uses up (one VPC, two Elastic IPs a shop), read from
//! Service Quotas, their use from EC2, and increase requests: the only place that calls
//! Service Quotas.

use super::Aws;
use crate::error::{Kind, Result};
use crate::time::{sdk_time, Time};
use aws_sdk_servicequotas::types::RequestStatus;

/// The quotas poscloud watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    Vpcs,
    Eips,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 2] = [QuotaKind::Vpcs, QuotaKind::Eips];

    pub fn service(self) -> &'static str {
        match self {
            QuotaKind::Vpcs => "vpc",
            QuotaKind::Eips => "ec2",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            QuotaKind::Vpcs => "L-F678F1CE",
            QuotaKind::Eips => "L-0263D0A3",
        }
    }

    /// The quota's name as Service Quotas shows it.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::Vpcs => "VPCs per Region",
            QuotaKind::Eips => "EC2-VPC Elastic IPs",
        }
    }

    /// The option of `quota request` that raises it.
    pub fn flag(self) -> &'static str {
        match self {
            QuotaKind::Vpcs => "--vpcs",
            QuotaKind::Eips => "--eips",
        }
    }

    /// What one stack takes of it.
    pub fn per_stack(self) -> u32 {
        match self {
            QuotaKind::Vpcs => 1,
            QuotaKind::Eips => 2,
        }
    }
}

/// A quota's value in this region: the account's applied value, or AWS's default when the
/// account has none.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quota {
    pub kind: QuotaKind,
    pub service: &'static str,
    pub code: &'static str,
    pub name: &'static str,
    pub value: u32,
    /// "applied" (the account's own value) or "default" (AWS's).
    pub source: &'static str,
}

/// One increase request of a quota, as Service Quotas lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuotaRequest {
    pub id: String,
    pub desired: u32,
    /// PENDING, CASE_OPENED, APPROVED, DENIED, NOT_APPROVED, CASE_CLOSED, INVALID_REQUEST.
    pub status: String,
    /// Still being decided (PENDING or CASE_OPENED): AWS takes one open request a quota.
    pub open: bool,
    pub case_id: Option<String>,
    pub created: Option<Time>,
}

fn whole(v: Option<f64>) -> u32 {
    // Quotas are counts; AWS sends them as doubles (5.0).
    v.map(|v| v.max(0.0).round() as u32).unwrap_or(0)
}

fn request_of(r: &aws_sdk_servicequotas::types::RequestedServiceQuotaChange) -> QuotaRequest {
    let status = r.status().cloned();
    QuotaRequest {
        id: r.id().unwrap_or_default().to_string(),
        desired: whole(r.desired_value()),
        status: status
            .as_ref()
            .map_or("UNKNOWN".into(), |s| s.as_str().to_string()),
        open: matches!(
            status,
            Some(RequestStatus::Pending) | Some(RequestStatus::CaseOpened)
        ),
        case_id: r.case_id().map(str::to_string),
        created: r.created().and_then(sdk_time),
    }
}

impl Aws {
    /// The quota's applied value in this region, or AWS's default where the account has
    /// none applied (GetServiceQuota then answers NoSuchResourceException).
    pub async fn quota(&self, kind: QuotaKind) -> Result<Quota> {
        let quota = |value, source| Quota {
            kind,
            service: kind.service(),
            code: kind.code(),
            name: kind.name(),
            value,
            source,
        };
        let applied = self
            .quotas
            .get_service_quota()
            .service_code(kind.service())
            .quota_code(kind.code())
            .send()
            .await;
        match applied {
            Ok(out) => {
                if let Some(v) = out.quota().and_then(|q| q.value()) {
                    return Ok(quota(whole(Some(v)), "applied"));
                }
            }
            Err(e) if no_such_resource(&e) => {}
            Err(e) => return Err(self.err("GetServiceQuota", Some(kind.code()), e)),
        }
        let out = self
            .quotas
            .get_aws_default_service_quota()
            .service_code(kind.service())
            .quota_code(kind.code())
            .send()
            .await
            .map_err(|e| self.err("GetAWSDefaultServiceQuota", Some(kind.code()), e))?;
        Ok(quota(whole(out.quota().and_then(|q| q.value())), "default"))
    }

    /// How much of the quota this region uses now: every VPC (the default one included) or
    /// every Elastic IP of the account in the region, poscloud's or not.
    pub async fn quota_in_use(&self, kind: QuotaKind) -> Result<usize> {
        match kind {
            QuotaKind::Vpcs => Ok(self
                .ec2
                .describe_vpcs()
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| self.err("DescribeVpcs", None, e))?
                .len()),
            // DescribeAddresses has no paging: one answer holds them all.
            QuotaKind::Eips => Ok(self
                .ec2
                .describe_addresses()
                .send()
                .await
                .map_err(|e| self.err("DescribeAddresses", None, e))?
                .addresses()
                .len()),
        }
    }

    /// The quota's increase requests in this region, newest first.
    pub async fn quota_requests(&self, kind: QuotaKind) -> Result<Vec<QuotaRequest>> {
        let all = self
            .quotas
            .list_requested_service_quota_change_history_by_quota()
            .service_code(kind.service())
            .quota_code(kind.code())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| {
                self.err(
                    "ListRequestedServiceQuotaChangeHistoryByQuota",
                    Some(kind.code()),
                    e,
                )
            })?;
        let mut out: Vec<QuotaRequest> = all.iter().map(request_of).collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        Ok(out)
    }

    /// Files an increase request of the quota to `desired` in this region.
    pub async fn request_quota(&self, kind: QuotaKind, desired: u32) -> Result<QuotaRequest> {
        let op = "RequestServiceQuotaIncrease";
        let out = self
            .quotas
            .request_service_quota_increase()
            .service_code(kind.service())
            .quota_code(kind.code())
            .desired_value(f64::from(desired))
            .send()
            .await
            .map_err(|e| self.err(op, Some(kind.code()), e))?;
        let r = out
            .requested_quota()
            .map(request_of)
            .unwrap_or_else(|| QuotaRequest {
                id: String::new(),
                desired,
                status: "PENDING".into(),
                open: true,
                case_id: None,
                created: None,
            });
        self.wrote(
            op,
            &format!("{} {} -> {desired} ({})", kind.service(), kind.code(), r.id),
        );
        Ok(r)
    }
}

fn no_such_resource<E>(
    e: &aws_sdk_ec2::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> bool
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    super::kind_of(e) == Kind::NotFound
}
