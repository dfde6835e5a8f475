//! The records of created ids: `/poscloud/<shop>/<env>/id/<role>` = the id, written right
//! after each create. AWS's tag-filtered lists leave a new resource out for a while after its
//! create (EC2 is eventually consistent, SSM reads are not), so a run right after another, or
//! a teardown right after a provision, finds by its recorded id what the lists do not show
//! yet, instead of making a second one.

use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::Result;
use crate::resources::discover::Discovered;
use crate::spec::StackId;
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use std::time::{Duration, SystemTime};

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

/// The record of a created resource's id.
pub fn record_name(id: &StackId, role: Role) -> String {
    format!("{}{}", record_prefix(id), role.as_str())
}

impl Aws {
    /// Records the id of a resource just created (replacing an older record of its role).
    pub async fn record(&self, id: &StackId, role: Role, resource: &str) -> Result<()> {
        self.put_param(&record_name(id, role), resource).await
    }

    /// Looks a recorded resource up by its id. A record younger than RECORD_FRESH whose
    /// resource EC2 does not know yet is AWS's eventual consistency (the create succeeded):
    /// asked again for a while. An older one whose resource is gone names nothing.
    pub(crate) async fn recorded<T, F, Fut>(&self, rec: &Record, find: F) -> Result<Vec<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let young = rec
            .written
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < RECORD_FRESH);
        let not_found = |e: &crate::error::Error| e.kind() == crate::error::Kind::NotFound;
        let found = find
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(8),
            )
            .when(|e| young && not_found(e))
            .notify(|_, wait| {
                self.note(format!(
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

/// The records a discovered stack lacks: one per resource found that is not recorded (a run
/// killed between a create and its record, a stack made before records existed).
pub fn missing(d: &Discovered) -> Vec<Record> {
    let mut out = Vec::new();
    let mut want = |role: Role, id: Option<&str>| {
        if let Some(id) = id {
            if !d.records.iter().any(|r| r.role == role && r.id == id) {
                out.push(Record {
                    role,
                    id: id.to_string(),
                    written: None,
                });
            }
        }
    };
    want(Role::Vpc, d.vpc().map(|v| v.id.as_str()));
    want(Role::Igw, d.igw().map(|v| v.id.as_str()));
    want(Role::Subnet, d.subnet().map(|v| v.id.as_str()));
    want(Role::RouteTable, d.route_table().map(|v| v.id.as_str()));
    want(Role::SgHost, d.sg(Role::SgHost).map(|v| v.id.as_str()));
    want(Role::SgPos, d.sg(Role::SgPos).map(|v| v.id.as_str()));
    want(Role::EniPos, d.eni_pos().map(|v| v.id.as_str()));
    want(Role::Host, d.instance().map(|v| v.id.as_str()));
    want(
        Role::EipHost,
        d.eip(Role::EipHost).map(|v| v.allocation_id.as_str()),
    );
    want(
        Role::EipPos,
        d.eip(Role::EipPos).map(|v| v.allocation_id.as_str()),
    );
    out
}
