//! `provision`: discover, plan, preflight, lock, create what is missing, run the remote
//! phases up to `--until`. With a `--target` host: the remote phases only, no AWS.

use super::{locked, locked_site, Approve};
use crate::apply::Applied;
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::cli::Until;
use crate::error::{Error, Result};
use crate::phases::restore::{self, RestoreSpec};
use crate::phases::{self, bootstrap, build, stage, Phase, PhaseState, Reach, Site};
use crate::plan::{self, Change, Plan};
use crate::resources::discover::{Discovered, InstanceState};
use crate::spec::{Env, StackSpec};
use crate::ui::Ui;
use serde::Serialize;
use std::collections::BTreeMap;

/// A provision, validated: nothing in it is checked again against AWS.
pub struct Request {
    pub spec: StackSpec,
    pub reach: Reach,
    pub restore: Option<RestoreSpec>,
    /// The remote phases this run wants, in order (`wanted`).
    pub wanted: Vec<Phase>,
    pub redo: Vec<Phase>,
    pub dry_run: bool,
    pub break_lock: bool,
    /// Prod changes without asking (--yes).
    pub yes: bool,
}

/// Where the stack stands after the run (also the converged re-run's answer).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub shop: String,
    pub env: String,
    pub region: String,
    pub account: Option<String>,
    pub credentials: String,
    pub instance_id: Option<String>,
    pub instance_state: Option<InstanceState>,
    pub host_public_ip: Option<String>,
    pub pos_public_ip: Option<String>,
    pub pos_private_ip: Option<String>,
    pub monthly_cost_usd: f64,
    pub phases: BTreeMap<Phase, PhaseState>,
}

/// What a provision of a stack in AWS did.
pub enum Report {
    /// `--dry-run`: the plan and the phases that would run; nothing changed.
    DryRun { plan: Plan, phases: Vec<Phase> },
    /// Nothing to do: no write, not even the lock.
    Converged { summary: Summary },
    /// Changes made (`applied`) and phases run.
    Provisioned {
        applied: Vec<Applied>,
        summary: Summary,
    },
}

/// What a provision of a `--target` host did.
pub enum TargetReport {
    DryRun { phases: Vec<Phase> },
    Provisioned { phases: BTreeMap<Phase, PhaseState> },
}

fn summary(
    aws: &Aws,
    spec: &StackSpec,
    d: &Discovered,
    phases: BTreeMap<Phase, PhaseState>,
) -> Summary {
    Summary {
        shop: spec.id.shop.to_string(),
        env: spec.id.env.to_string(),
        region: aws.region.clone(),
        account: aws.at.account.get().cloned(),
        credentials: aws.at.credentials.clone(),
        instance_id: d.instance().map(|i| i.id.clone()),
        instance_state: d.instance().map(|i| i.state.clone()),
        host_public_ip: d.eip(Role::EipHost).map(|e| e.public_ip.clone()),
        pos_public_ip: d.eip(Role::EipPos).map(|e| e.public_ip.clone()),
        pos_private_ip: d.eni_pos().and_then(|e| e.private_ip.clone()),
        monthly_cost_usd: (spec.price.total_month * 100.0).round() / 100.0,
        phases,
    }
}

/// The remote phases a run wants, in order, from --until and the stack (what is left out
/// and why is said on `ui`).
pub fn wanted(spec: &StackSpec, until: Until, restore: bool, target: bool, ui: &Ui) -> Vec<Phase> {
    let mut w = Vec::new();
    if until >= Until::Bootstrap {
        w.push(Phase::Bootstrap);
    }
    let Some(pos) = &spec.pos else {
        if until >= Until::Build {
            ui.info(format!(
                "build, stage, ready: skipped, {} has no [pos] section (app, version or image, artifact)",
                spec.source
            ));
        }
        return w;
    };
    if until >= Until::Build && pos.media.is_some() {
        w.push(Phase::Build);
    }
    if until >= Until::Stage {
        if restore {
            w.push(Phase::Restore);
        }
        w.push(Phase::Stage);
    }
    if until >= Until::Ready {
        if !spec.vpn.is_empty() && target {
            ui.warn("vpn: skipped: the VPN's keys live in SSM, which --target hosts do not use");
        } else if !spec.vpn.is_empty() {
            w.push(Phase::Vpn);
        }
        // Backups go to S3 with the instance role: a --target host has none.
        if !target {
            w.push(Phase::Backup);
        }
        w.push(Phase::Ready);
    }
    w
}

/// Whether a phase's record is for what the stack asks now (the same media, image and
/// artifact, restore source, VPN locations); bootstrap and ready have no inputs.
fn current(spec: &StackSpec, restore: Option<&RestoreSpec>, p: Phase, st: &PhaseState) -> bool {
    match p {
        Phase::Build => build::current(spec, st),
        Phase::Stage => stage::current(spec, st),
        Phase::Restore => restore.is_some_and(|r| restore::current(r, st)),
        Phase::Vpn => phases::vpn::current(spec, st),
        Phase::Backup => phases::backup::current(spec, st),
        Phase::Bootstrap | Phase::Ready => true,
    }
}

/// Which wanted phases must run: not recorded, recorded for other inputs (`current`),
/// asked for with --redo, or after an earlier phase that runs (a restore stops the POS, so
/// stage runs again; ready checks whatever changed).
pub fn pending(wanted: &[Phase], redo: &[Phase], is_current: impl Fn(Phase) -> bool) -> Vec<Phase> {
    let mut out: Vec<Phase> = Vec::new();
    for &p in wanted {
        let cascade = match p {
            Phase::Stage => out.contains(&Phase::Restore),
            // A new stage may have a new network namespace for charon to move to.
            Phase::Vpn => out.contains(&Phase::Stage),
            Phase::Ready => !out.is_empty(),
            Phase::Bootstrap | Phase::Build | Phase::Restore | Phase::Backup => false,
        };
        if !is_current(p) || cascade || redo.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn pending_of(req: &Request, states: &BTreeMap<Phase, PhaseState>) -> Vec<Phase> {
    pending(&req.wanted, &req.redo, |p| {
        states
            .get(&p)
            .is_some_and(|st| current(&req.spec, req.restore.as_ref(), p, st))
    })
}

/// Runs the pending phases on the site, in order; returns every wanted phase's record.
async fn run_phases(
    site: &Site<'_>,
    ui: &Ui,
    req: &Request,
    pos_public_ip: Option<&str>,
) -> Result<BTreeMap<Phase, PhaseState>> {
    let spec = &req.spec;
    let mut states = BTreeMap::new();
    for &p in &req.wanted {
        if let Some(st) = site.phase_state(p).await? {
            states.insert(p, st);
        }
    }
    let todo = pending_of(req, &states);
    for &p in &req.wanted {
        if !todo.contains(&p) {
            if let Some(st) = states.get(&p) {
                ui.info(format!(
                    "{p}: done at {} by {} (skipped; --redo {p} runs it again)",
                    st.done_at, st.by
                ));
            }
            continue;
        }
        let st = match p {
            Phase::Bootstrap => Some(bootstrap::run(site, ui).await?),
            Phase::Build => build::run(site, ui, spec, false).await?,
            Phase::Restore => {
                let r = req
                    .restore
                    .as_ref()
                    .expect("restore is wanted only with a source");
                // The POS must not run on data being replaced: stop it (if any) first.
                stage::stop(site, ui).await?;
                Some(restore::run(site, ui, r).await?)
            }
            Phase::Stage => Some(stage::run(site, ui, spec).await?),
            Phase::Vpn => {
                let eip =
                    pos_public_ip.ok_or_else(|| Error::failed("the POS has no Elastic IP"))?;
                Some(phases::vpn::run(site, ui, spec, eip).await?)
            }
            Phase::Backup => Some(phases::backup::run(site, ui, spec).await?),
            Phase::Ready => Some(stage::ready(site, ui, spec).await?),
        };
        if let Some(st) = st {
            states.insert(p, st);
        }
    }
    Ok(states)
}

/// A stack in AWS: discover, plan; nothing to do → done (no write, not even the lock);
/// prod asks `approve` unless `yes`; preflight; then under the lock create what is missing
/// and run the pending phases.
pub async fn stack(aws: &Aws, ui: &Ui, approve: Approve<'_>, req: &Request) -> Result<Report> {
    let (spec, id) = (&req.spec, &req.spec.id);
    crate::userdata::encode(spec, &aws.region)?;

    let d = aws.discover(id).await?;
    ui.info(format!(
        "provision {id} in {} (stack {})",
        aws.at, spec.source
    ));
    let plan = plan::build(spec, &d, &aws.region);
    // The phase records came with the discovery (the stack's parameters).
    let mut states = BTreeMap::new();
    for &p in &req.wanted {
        if let Some(st) = phases::phase_state_in(&d, id, p) {
            states.insert(p, st);
        }
    }
    let todo = pending_of(req, &states);

    if req.dry_run {
        return Ok(Report::DryRun { plan, phases: todo });
    }
    if plan.writes() == 0 && todo.is_empty() {
        if req.break_lock {
            crate::lock::break_lock(aws, ui, id).await?;
        } else if let Some(h) = crate::lock::holder_in(&d, id)? {
            ui.warn(format!("{id} is locked by {h}"));
        }
        ui.info(super::plan_text(&plan, None));
        for (p, st) in &states {
            ui.info(format!("{p}: done at {} by {}", st.done_at, st.by));
        }
        return Ok(Report::Converged {
            summary: summary(aws, spec, &d, states),
        });
    }

    // Prod is never changed by omission: the plan, where and what it costs, then the shop
    // code typed back (or --yes).
    let shown = id.env == Env::Prod && !req.yes;
    if shown {
        approve(
            id,
            &format!(
                "{}{}remote phases to run: {}\nin {}",
                super::plan_text(&plan, None),
                super::price_text(&spec.price),
                super::phase_list(&todo),
                aws.at
            ),
        )?;
    }

    // Preflight, before any write (the lock included): the image and the region's quotas,
    // at once.
    let preflight = async {
        let step = ui.step("preflight: image and quotas");
        let launch = plan.count(|c| matches!(c, Change::Launch { .. })) > 0;
        let image = async {
            match launch {
                true => aws.find_image(&spec.ami).await.map(Some),
                false => Ok(None),
            }
        };
        let quotas = aws.check_quotas(
            plan.count(|c| matches!(c, Change::CreateVpc { .. })),
            plan.count(|c| matches!(c, Change::AllocateEip { .. })),
        );
        match tokio::try_join!(image, quotas) {
            Ok((image, ())) => {
                step.done(
                    image
                        .as_ref()
                        .map(|i: &crate::aws::preflight::Image| i.id.as_str())
                        .unwrap_or(""),
                );
                Ok(image)
            }
            Err(e) => {
                step.failed();
                Err(e)
            }
        }
    };
    let image = preflight.await?;
    locked(aws, ui, id, req.break_lock, async move {
        // Another run may have changed the stack between the discovery and the lock (its
        // parameters tell); after a broken lock the dead run's last creates may be
        // unrecorded. Only then is the stack discovered again.
        let mut d = if req.break_lock {
            aws.discover(id).await?
        } else if aws.changed_since(id, &d).await? {
            ui.info("the stack changed since it was read (another run?): reading it again");
            aws.discover(id).await?
        } else {
            d
        };
        let dups = d.duplicates();
        if !dups.is_empty() {
            return Err(Error::failed(format!(
                "{id} holds duplicates, which provision will not guess between: {}",
                dups.join("; ")
            ))
            .next("`poscloud teardown` the stack and provision again"));
        }
        let again = plan::build(spec, &d, &aws.region);
        // Shown once: at the confirmation, unless the stack changed since.
        let text = super::plan_text(&again, None);
        if !shown || text != super::plan_text(&plan, None) {
            ui.info(text);
        }
        let plan = again;
        let image = match image {
            None if plan.count(|c| matches!(c, Change::Launch { .. })) > 0 => {
                Some(aws.find_image(&spec.ami).await?)
            }
            image => image,
        };

        let out = crate::apply::run(aws, ui, spec, image.as_ref(), &mut d, &plan).await;
        if let Some(e) = out.error {
            return Err(e);
        }
        // Resources a crashed run made but could not record: recorded now, so that the
        // next run finds them by id too.
        for r in crate::resources::records::missing(&d) {
            aws.record(id, r.role, &r.id).await?;
        }
        let mut done = BTreeMap::new();
        if !req.wanted.is_empty() {
            let site = phases::site(aws, ui, id, &d, &req.reach).await?;
            let eip = phases::vpn::pos_public_ip(&d, id).ok();
            done = run_phases(&site, ui, req, eip.as_deref()).await?;
        }
        Ok(Report::Provisioned {
            applied: out.applied,
            summary: summary(aws, spec, &d, done),
        })
    })
    .await
}

/// A `--target` host poscloud did not create: the remote phases only, under the host's lock.
pub async fn target(site: &Site<'_>, ui: &Ui, req: &Request) -> Result<TargetReport> {
    ui.info(format!(
        "provision {} on {} (no AWS; stack {})",
        req.spec.id,
        site.describe(),
        req.spec.source
    ));
    if req.dry_run {
        let mut states = BTreeMap::new();
        for &p in &req.wanted {
            if let Some(st) = site.phase_state(p).await? {
                states.insert(p, st);
            }
        }
        return Ok(TargetReport::DryRun {
            phases: pending_of(req, &states),
        });
    }
    locked_site(site, ui, req.break_lock, async {
        let phases = run_phases(site, ui, req, None).await?;
        Ok(TargetReport::Provisioned { phases })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    const EVERY: &[Phase] = &[Bootstrap, Build, Restore, Stage, Vpn, Backup, Ready];

    #[test]
    fn nothing_runs_when_every_record_is_current() {
        assert_eq!(pending(EVERY, &[], |_| true), []);
    }

    #[test]
    fn a_fresh_stack_runs_every_wanted_phase_in_order() {
        assert_eq!(pending(EVERY, &[], |_| false), EVERY);
        assert_eq!(
            pending(&[Bootstrap, Stage, Ready], &[], |_| false),
            [Bootstrap, Stage, Ready]
        );
    }

    #[test]
    fn a_phase_that_runs_makes_those_depending_on_it_run() {
        // A restore stops the POS: stage again; a new stage: vpn again; anything: ready.
        assert_eq!(
            pending(EVERY, &[], |p| p != Restore),
            [Restore, Stage, Vpn, Ready]
        );
        assert_eq!(pending(EVERY, &[], |p| p != Stage), [Stage, Vpn, Ready]);
        assert_eq!(pending(EVERY, &[], |p| p != Vpn), [Vpn, Ready]);
        // The backup job depends on no other phase's outcome.
        assert_eq!(pending(EVERY, &[], |p| p != Backup), [Backup, Ready]);
        // Build and bootstrap carry nothing over to stage (the image is its input).
        assert_eq!(pending(EVERY, &[], |p| p != Build), [Build, Ready]);
        assert_eq!(pending(EVERY, &[], |p| p != Bootstrap), [Bootstrap, Ready]);
    }

    #[test]
    fn redo_runs_a_current_phase_and_what_follows_from_it() {
        assert_eq!(pending(EVERY, &[Ready], |_| true), [Ready]);
        assert_eq!(pending(EVERY, &[Stage], |_| true), [Stage, Vpn, Ready]);
        // A redo of a phase this run does not want runs nothing.
        assert_eq!(pending(&[Bootstrap, Ready], &[Build], |_| true), []);
    }
}
