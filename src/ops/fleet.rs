//! A fleet read as one: the same read in every account (one AWS profile each) and, with
//! all regions, in every region each account has enabled (EC2 DescribeRegions), at most
//! `PARALLEL` places at once. A place that fails is named with its failure; the others are
//! still read.

use crate::aws::Aws;
use crate::error::Result;
use futures_util::stream::{self, StreamExt};
use std::future::Future;

/// Places read at once: each is a handful of list calls; more would only meet throttling.
pub const PARALLEL: usize = 8;

/// Where one read was made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Place {
    /// The profile named (None: the default credentials chain).
    pub profile: Option<String>,
    /// The account id, once STS told it.
    pub account: Option<String>,
    /// None: the account failed before any region was known.
    pub region: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.profile {
            Some(p) => write!(f, "profile {p}")?,
            None => write!(f, "default credentials")?,
        }
        if let Some(a) = &self.account {
            write!(f, " (account {a})")?;
        }
        if let Some(r) = &self.region {
            write!(f, ", {r}")?;
        }
        Ok(())
    }
}

pub struct Read<T> {
    pub place: Place,
    pub result: Result<T>,
}

/// An account as connected (its clients in its home region), or why it could not be.
pub struct Account {
    pub profile: Option<String>,
    pub aws: Result<Aws>,
}

/// `read` in each account's home region, or with `all_regions` in each of its regions; the
/// reads ordered by profile, then region. `read` is told whether the region is the
/// account's home one (what is global, such as IAM, belongs there).
pub async fn read_all<T, F, Fut>(accounts: Vec<Account>, all_regions: bool, read: F) -> Vec<Read<T>>
where
    F: Fn(Aws, bool) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut out = Vec::new();
    // Each account's regions (and its id), at once.
    let found = futures_util::future::join_all(accounts.into_iter().map(|a| async move {
        let profile = a.profile;
        let aws = match a.aws {
            Ok(aws) => aws,
            Err(e) => return (profile, None, Err((None, e))),
        };
        let regions = async {
            aws.account_id().await?;
            match all_regions {
                true => aws.regions().await,
                false => Ok(vec![aws.region.clone()]),
            }
        }
        .await
        .map_err(|e| (Some(aws.region.clone()), e));
        (profile, Some(aws), regions)
    }))
    .await;
    let mut places = Vec::new();
    for (profile, aws, regions) in found {
        match (aws, regions) {
            (Some(aws), Ok(regions)) => {
                for r in regions {
                    let home = r == aws.region;
                    let here = aws.in_region(&r, crate::journal::Journal::none());
                    places.push((profile.clone(), here, home));
                }
            }
            (aws, Err((region, e))) => out.push(Read {
                place: Place {
                    profile,
                    account: aws.and_then(|a| a.at.account.get().cloned()),
                    region,
                },
                result: Err(e),
            }),
            (None, Ok(_)) => unreachable!("regions are only read with clients"),
        }
    }
    let reads = stream::iter(places.into_iter().map(|(profile, aws, home)| {
        let place = Place {
            profile,
            account: aws.at.account.get().cloned(),
            region: Some(aws.region.clone()),
        };
        let result = read(aws, home);
        async move {
            Read {
                place,
                result: result.await,
            }
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect::<Vec<_>>()
    .await;
    out.extend(reads);
    out.sort_by(|a, b| {
        (&a.place.profile, &a.place.region).cmp(&(&b.place.profile, &b.place.region))
    });
    out
}
