//! `quota show` and `quota request`: the region's VPC and Elastic IP quotas (Service Quotas'
//! values, their use from EC2, the increase requests and their status), and filing an
//! increase. A request is filed only when the quota has no open one: AWS takes one open
//! request a quota, and a second run of the same command must not file again.

use crate::aws::quotas::{Quota, QuotaKind, QuotaRequest};
use crate::aws::Aws;
use crate::error::{Error, Kind, Result};
use serde::Serialize;

/// One quota as `quota show` tells it.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaState {
    #[serde(flatten)]
    pub quota: Quota,
    pub in_use: usize,
    pub free: usize,
    /// How many more stacks fit in what is free (one VPC, two Elastic IPs each).
    pub stacks_more: usize,
    /// Newest first.
    pub requests: Vec<QuotaRequest>,
}

impl QuotaState {
    pub fn open_request(&self) -> Option<&QuotaRequest> {
        self.requests.iter().find(|r| r.open)
    }
}

pub struct Shown {
    pub region: String,
    pub account: Option<String>,
    pub quotas: Vec<QuotaState>,
}

/// One quota's value, use and requests (read at once).
async fn state(aws: &Aws, kind: QuotaKind) -> Result<QuotaState> {
    let (quota, in_use, requests) = tokio::try_join!(
        aws.quota(kind),
        aws.quota_in_use(kind),
        aws.quota_requests(kind)
    )?;
    let free = (quota.value as usize).saturating_sub(in_use);
    Ok(QuotaState {
        stacks_more: free / kind.per_stack() as usize,
        quota,
        in_use,
        free,
        requests,
    })
}

/// Both quotas of the region (reads only, at once).
pub async fn show(aws: &Aws) -> Result<Shown> {
    let (vpcs, eips, at) = tokio::try_join!(
        state(aws, QuotaKind::Vpcs),
        state(aws, QuotaKind::Eips),
        aws.whereabouts()
    )?;
    Ok(Shown {
        region: aws.region.clone(),
        account: at.account.get().cloned(),
        quotas: vec![vpcs, eips],
    })
}

/// What `quota request` did for one quota.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "request")]
pub enum Outcome {
    /// A request was filed now.
    Filed(QuotaRequest),
    /// A request of this quota was open already: shown, nothing filed.
    AlreadyOpen(QuotaRequest),
}

#[derive(Debug, Clone, Serialize)]
pub struct Requested {
    pub quota: Quota,
    pub asked: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Files an increase of each quota to its value, where none is open. Every value is
/// checked against the current one before the first request (a value not above it is a
/// usage error: nothing filed).
pub async fn request(aws: &Aws, wants: &[(QuotaKind, u32)]) -> Result<Vec<Requested>> {
    let read = wants.iter().map(|(kind, _)| async move {
        tokio::try_join!(aws.quota(*kind), aws.quota_requests(*kind))
    });
    let current = futures_util::future::try_join_all(read).await?;
    for ((kind, asked), (quota, _)) in wants.iter().zip(&current) {
        if *asked <= quota.value {
            return Err(Error::usage(format!(
                "{} {asked}: {} ({} {}) in {} is {} already ({}); ask for more than that",
                kind.flag(),
                quota.name,
                quota.service,
                quota.code,
                aws.region,
                quota.value,
                quota.source
            ))
            .next(format!(
                "nothing was requested; `{}` shows the quotas",
                aws.quota_command("show", "")
            )));
        }
    }
    let mut out = Vec::new();
    for ((kind, asked), (quota, requests)) in wants.iter().zip(current) {
        let outcome = match requests.into_iter().find(|r| r.open) {
            Some(open) => Outcome::AlreadyOpen(open),
            None => match aws.request_quota(*kind, *asked).await {
                Ok(r) => Outcome::Filed(r),
                // Another run filed one between our read and our request.
                Err(e) if e.kind() == Kind::Conflict => {
                    let open = aws
                        .quota_requests(*kind)
                        .await?
                        .into_iter()
                        .find(|r| r.open)
                        .ok_or(e)?;
                    Outcome::AlreadyOpen(open)
                }
                Err(e) => return Err(e),
            },
        };
        out.push(Requested {
            quota,
            asked: *asked,
            outcome,
        });
    }
    Ok(out)
}
