//! Cutover night: the shop's physical POS server ("the source") to its cloud host, in
//! steps that resume where they stopped (phases/cutover.rs does each step).

use super::locked_site;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::phases::cutover::{self, Cutover, CutoverState, CutoverStep, Preflight, Record, Source};
use crate::phases::{Reach, Site};
use crate::remote::ssh::SshTarget;
use crate::spec::{CutoverSpec, StackId, StackSpec};
use crate::ui::Ui;
use std::net::Ipv4Addr;

/// A cutover, validated: the stack, how to reach the cloud host, the source server (its
/// pinned key), its address through the VPN, and the app's cutover settings.
pub struct Request {
    pub spec: StackSpec,
    pub reach: Reach,
    pub target: SshTarget,
    pub lan: Ipv4Addr,
    pub app: String,
    pub cutover: CutoverSpec,
    pub break_lock: bool,
}

impl Request {
    /// The source server as a site, its runs journaled in `journal`.
    fn source<'a>(&self, journal: Journal) -> Source<'a> {
        Source {
            site: Site::host(self.spec.id.clone(), self.target.clone(), journal),
            target: self.target.clone(),
            lan: self.lan,
            spec: self.cutover.clone(),
        }
    }
}

/// The cloud host (and its instance id, if it has one) and the source.
async fn open<'a>(
    aws: &'a Aws,
    ui: &Ui,
    req: &Request,
    journal: Journal,
) -> Result<(Site<'a>, Option<String>, Source<'a>)> {
    let id = &req.spec.id;
    let d = aws.discover(id).await?;
    let instance = d.instance().map(|i| i.id.clone());
    let site = crate::phases::site(aws, ui, id, &d, &req.reach).await?;
    Ok((site, instance, req.source(journal)))
}

pub enum PlanReport {
    /// The cutover finished already: nothing to plan.
    Finished(Record),
    /// The read-only preflight, the record so far (a cutover under way) and the source.
    Planned {
        source_url: String,
        preflight: Box<Preflight>,
        record: Option<Record>,
    },
}

/// `cutover plan`: the read-only preflight and what is done so far.
pub async fn plan(aws: &Aws, ui: &Ui, req: &Request, journal: Journal) -> Result<PlanReport> {
    let id = &req.spec.id;
    let (site, _, src) = open(aws, ui, req, journal).await?;
    let record = cutover::load(aws, id).await?;
    if let Some(r) = record.as_ref().filter(|r| r.state == CutoverState::Done) {
        return Ok(PlanReport::Finished(r.clone()));
    }
    let step = ui.step("preflight (read only)");
    let preflight = match cutover::preflight(&site, aws, &req.spec, &src).await {
        Ok(p) => p,
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    step.done("");
    Ok(PlanReport::Planned {
        source_url: src.url(),
        preflight: Box::new(preflight),
        record,
    })
}

pub enum RunReport {
    /// The cutover finished before: nothing done.
    Finished(Record),
    /// The steps run (up to `until`, or to the end).
    Ran(Record),
}

/// `cutover run`: the steps from the first one not done, under the cloud host's lock;
/// `approve` is asked first (the shop stops selling during the freeze).
pub async fn run(
    aws: &Aws,
    ui: &Ui,
    approve: &dyn Fn(&Site<'_>) -> Result<()>,
    req: &Request,
    journal: Journal,
    until: Option<CutoverStep>,
    bwlimit: u32,
) -> Result<RunReport> {
    let id = &req.spec.id;
    if let Some(r) = cutover::load(aws, id)
        .await?
        .filter(|r| r.state == CutoverState::Done)
    {
        return Ok(RunReport::Finished(r));
    }
    let (site, instance, src) = open(aws, ui, req, journal).await?;
    let instance = instance
        .ok_or_else(|| Error::failed(format!("{id} has no instance: provision it first")))?;
    approve(&site)?;
    let cut = Cutover {
        site: &site,
        aws,
        ui,
        spec: &req.spec,
        src: &src,
        instance,
        bwlimit,
    };
    let rec = locked_site(&site, ui, req.break_lock, cut.run(until)).await?;
    Ok(RunReport::Ran(rec))
}

/// `cutover status`: the record, if a cutover was ever started.
pub async fn status(aws: &Aws, id: &StackId) -> Result<Option<Record>> {
    cutover::load(aws, id).await
}

pub enum RollbackReport {
    /// Not running (rolled back or cleared before): nothing to do.
    Unchanged(Record),
    RolledBack(Record),
}

/// `cutover rollback`: the physical POS back in service, the cloud POS stopped. Refused
/// after a finished cutover (the cloud POS has recorded sales since). Not confirmed: it is
/// the emergency path back, and asking costs the shop minutes.
pub async fn rollback(
    aws: &Aws,
    ui: &Ui,
    req: &Request,
    journal: Journal,
) -> Result<RollbackReport> {
    let id = &req.spec.id;
    match cutover::load(aws, id).await? {
        None => {
            return Err(Error::usage(format!("{id} has no cutover to roll back")));
        }
        Some(r) if r.state == CutoverState::Done => {
            return Err(Error::usage(format!(
                "the cutover of {id} finished at {}: the cloud POS has served since, and rolling back would lose what it recorded. Copy the data back to the physical server first (not automated), then start it by hand",
                r.at(CutoverStep::Finish).map_or("?".into(), |t| t.to_string())
            )));
        }
        Some(r) if r.state != CutoverState::Running => return Ok(RollbackReport::Unchanged(r)),
        Some(_) => {}
    }
    let (site, instance, src) = open(aws, ui, req, journal).await?;
    let cut = Cutover {
        site: &site,
        aws,
        ui,
        spec: &req.spec,
        src: &src,
        instance: instance.unwrap_or_default(),
        bwlimit: 0,
    };
    let rec = locked_site(&site, ui, req.break_lock, cut.rollback()).await?;
    Ok(RollbackReport::RolledBack(rec))
}
