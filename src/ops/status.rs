//! `status`: every resource of the stack against its profile (ok, drifted, missing), the
//! phase records, duplicates and the lock, from one discovery. Reads only.

use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::phases::{phase_state_in, Phase, PhaseState};
use crate::plan::{self, Action};
use crate::spec::StackSpec;
use serde::Serialize;

/// A resource against the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceStatus {
    Ok,
    /// Differs: what provision would change (`needs: …`) and what it leaves to a person.
    Drifted,
    Missing,
}

impl ResourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Ok => "ok",
            ResourceStatus::Drifted => "drifted",
            ResourceStatus::Missing => "missing",
        }
    }
}

pub struct Resource {
    pub role: Role,
    pub id: Option<String>,
    pub status: ResourceStatus,
    /// The instance's state, an address, or "".
    pub detail: String,
    /// `needs: <change>` for what provision fixes, then the drift it leaves alone.
    pub findings: Vec<String>,
}

pub struct StatusReport {
    pub whereabouts: String,
    pub region: String,
    pub account: Option<String>,
    /// Anything of the stack exists (a record alone does not count).
    pub exists: bool,
    pub resources: Vec<Resource>,
    /// Every phase, in order, with its record if it ran.
    pub phases: Vec<(Phase, Option<PhaseState>)>,
    pub duplicates: Vec<String>,
    pub lock: Option<String>,
}

impl StatusReport {
    pub fn count(&self, status: ResourceStatus) -> usize {
        self.resources.iter().filter(|r| r.status == status).count()
    }

    pub fn findings(&self) -> usize {
        self.resources.iter().map(|r| r.findings.len()).sum()
    }

    /// Something to fix or look at (status then exits 2, as plan does with changes).
    pub fn pending(&self) -> bool {
        self.count(ResourceStatus::Drifted) > 0
            || self.count(ResourceStatus::Missing) > 0
            || !self.duplicates.is_empty()
    }
}

pub async fn status(aws: &Aws, spec: &StackSpec) -> Result<StatusReport> {
    let id = &spec.id;
    let d = aws.discover(id).await?;
    // Nothing at all of it here (no resource, no record): most likely the wrong env (prod is
    // the default). A list of `missing` would look like a stack to build; say where it is.
    if d.is_empty() && d.parameters.is_empty() {
        let elsewhere: Vec<String> = aws
            .envs_of(&id.shop)
            .await?
            .into_iter()
            .filter(|e| *e != id.env)
            .map(|e| e.to_string())
            .collect();
        let msg = format!(
            "shop {} has no {} stack in {}",
            id.shop,
            id.env,
            aws.whereabouts().await?
        );
        return Err(Error::failed(match elsewhere.first() {
            Some(e) => format!(
                "{msg}; it exists in: {} (run with --env {e})",
                elsewhere.join(", ")
            ),
            None => format!("{msg}, nor in any other env there (is the region right?)"),
        }));
    }
    let lock = crate::lock::holder_in(&d, id)?;
    let plan = plan::build(spec, &d, &aws.region);
    let resources = plan
        .steps
        .iter()
        .map(|st| {
            let detail = match st.resource {
                Role::Host => d.instance().map(|i| i.state.to_string()),
                Role::EipHost | Role::EipPos => d.eip(st.resource).map(|e| e.public_ip.clone()),
                Role::EniPos => d.eni_pos().and_then(|e| e.private_ip.clone()),
                Role::AlertTopic => d.alert_topic.as_ref().map(|t| {
                    let subs: Vec<String> = t
                        .emails()
                        .map(|s| match s.pending() {
                            true => format!("{} (pending)", s.endpoint),
                            false => s.endpoint.clone(),
                        })
                        .collect();
                    match subs.is_empty() {
                        true => "no e-mail subscribed".to_string(),
                        false => subs.join(", "),
                    }
                }),
                Role::AlarmSystem | Role::AlarmInstance => d
                    .alarms
                    .iter()
                    .find(|a| a.role == st.resource)
                    .map(|a| a.state.clone()),
                _ => None,
            }
            .unwrap_or_default();
            let mut findings: Vec<String> =
                st.changes.iter().map(|c| format!("needs: {c}")).collect();
            findings.extend(st.drift.iter().cloned());
            let status = match st.action {
                Action::Create => {
                    findings.clear();
                    ResourceStatus::Missing
                }
                _ if findings.is_empty() => ResourceStatus::Ok,
                _ => ResourceStatus::Drifted,
            };
            Resource {
                role: st.resource,
                id: st.id.clone(),
                status,
                detail,
                findings,
            }
        })
        .collect();
    Ok(StatusReport {
        whereabouts: aws.whereabouts().await?.to_string(),
        region: aws.region.clone(),
        account: aws.at.account.get().cloned(),
        exists: !d.is_empty(),
        resources,
        phases: Phase::ALL
            .iter()
            .map(|p| (*p, phase_state_in(&d, id, *p)))
            .collect(),
        duplicates: d.duplicates(),
        lock,
    })
}
