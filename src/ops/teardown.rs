//! `teardown`: remove everything of a stack in dependency order under its lock, then verify
//! that nothing tagged is left; and every old qa/dev stack of a region (`--older-than`).

use super::locked;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::resources::discover::{Discovered, StackSummary};
use crate::spec::{Env, StackId};
use crate::teardown::Teardown;
use crate::ui::{Notify, Ui};
use futures_util::stream::{self, StreamExt};
use std::time::{Duration, SystemTime};

/// Asks before removing (the resources were listed on the progress output): Err, nothing
/// removed.
pub type Confirm<'a> = &'a dyn Fn(&StackId) -> Result<()>;

pub struct Request {
    pub id: StackId,
    pub dry_run: bool,
    pub break_lock: bool,
}

pub enum Report {
    /// Nothing of the stack exists (a re-run of a finished teardown).
    Absent,
    DryRun {
        would_remove: Vec<String>,
    },
    Removed {
        removed: Vec<String>,
    },
}

/// One stack: discover; nothing there → `Absent` (or an error naming the envs the shop
/// does exist in: the wrong env must not look like success); else `confirm`, remove, verify.
pub async fn stack(aws: &Aws, ui: &Ui, confirm: Confirm<'_>, req: &Request) -> Result<Report> {
    let id = &req.id;
    let d = aws.discover(id).await?;
    let remaining = d.remaining();
    if remaining.is_empty() {
        let elsewhere = aws.envs_of(&id.shop).await?;
        if !elsewhere.is_empty() {
            let envs: Vec<&str> = elsewhere.iter().map(|e| e.as_str()).collect();
            return Err(Error::failed(format!(
                "{id} does not exist in {}: nothing was removed; shop {} exists in: {}",
                aws.at,
                id.shop,
                envs.join(", "),
            ))
            .next(format!("name the env you mean, e.g. --env {}", envs[0])));
        }
        return Ok(Report::Absent);
    }
    if req.dry_run {
        return Ok(Report::DryRun {
            would_remove: remaining,
        });
    }
    ui.info(format!(
        "teardown {id} in {}: removes\n{}",
        aws.at,
        listing(&remaining)
    ));
    confirm(id)?;
    remove(aws, ui, id, req.break_lock, &d).await?;
    Ok(Report::Removed { removed: remaining })
}

/// `  - <resource>` lines.
pub fn listing(remaining: &[String]) -> String {
    remaining.iter().map(|r| format!("  - {r}\n")).collect()
}

/// Whether the stack's backups stay after its teardown: as its backup job was installed
/// (the stack file's `backup.keep_after_teardown`), else prod's default (kept).
fn keep_backups(id: &StackId, d: &Discovered) -> bool {
    crate::phases::phase_state_in(d, id, crate::phases::Phase::Backup)
        .and_then(|st| {
            st.result
                .pointer("/settings/backup/keep_after_teardown")?
                .as_bool()
        })
        .unwrap_or(id.env == Env::Prod)
}

/// Removes the stack under its lock, then verifies that nothing tagged is left.
async fn remove(aws: &Aws, ui: &Ui, id: &StackId, break_lock: bool, d: &Discovered) -> Result<()> {
    let failures = locked(aws, ui, id, break_lock, async {
        // Another run may have changed the stack before the lock was taken (its parameters
        // tell), or a broken lock's run left unrecorded creates: only then discovered again.
        let fresh;
        let d = if break_lock || aws.changed_since(id, d).await? {
            fresh = aws.discover(id).await?;
            &fresh
        } else {
            d
        };
        let mut t = Teardown::new(aws, ui, id);
        t.keep_backups = keep_backups(id, d);
        Ok(t.run(d).await)
    })
    .await?;

    let left = aws.discover(id).await?.remaining();
    if !left.is_empty() {
        let mut msg = format!(
            "teardown of {id} in {} left {} resource(s):\n",
            aws.at,
            left.len()
        );
        for l in &left {
            msg.push_str(&format!("  - {l}\n"));
        }
        for f in &failures {
            msg.push_str(&format!("  failed: {f}\n"));
        }
        return Err(Error::failed(msg.trim_end()).next(
            "run the same teardown again; if it keeps failing, remove these in the console and tell the team",
        ));
    }
    Ok(())
}

pub fn older_refused<T>() -> Result<T> {
    Err(Error::protected(
        "--older-than never removes prod stacks; tear a prod stack down by its shop code",
    ))
}

/// Every qa/dev stack of the region created more than `age` ago.
pub struct OlderRequest {
    pub env: Env,
    pub age: Duration,
    pub dry_run: bool,
    pub break_lock: bool,
    pub parallel: usize,
}

/// A stack of the region as listed: its id and what the list says of it.
pub type Listed = (StackId, StackSummary);

pub struct OlderReport {
    /// The stacks old enough, as listed before anything was removed.
    pub stacks: Vec<Listed>,
    /// None: nothing was removed (a dry run, or no stack old enough).
    pub outcome: Option<Removal>,
}

pub struct Removal {
    pub removed: Vec<StackId>,
    pub failed: Vec<(StackId, Error)>,
}

/// Lists the old stacks first (`confirm_all` given them), then removes each with the
/// verified teardown, `parallel` at a time, each over `connect`'s connection (the same
/// clients with the stack's journal). Never prod; a stack whose creation time is unknown is
/// left alone (and said so).
pub async fn older(
    aws: &Aws,
    ui: &Ui,
    confirm_all: &dyn Fn(&[Listed]) -> Result<()>,
    connect: &dyn Fn(&StackId, Notify) -> Result<Aws>,
    req: &OlderRequest,
) -> Result<OlderReport> {
    if req.env == Env::Prod {
        return older_refused();
    }
    let cutoff = SystemTime::now() - req.age;
    let mut old = Vec::new();
    for (id, s) in aws.list_stacks().await? {
        if id.env != req.env {
            continue;
        }
        match s.created_at() {
            Some(t) if t.system() < cutoff => old.push((id, s)),
            Some(_) => {}
            None => ui.warn(format!(
                "{id}: its creation time is unknown (no poscloud:created tag, no instance): left alone; tear it down by its shop code"
            )),
        }
    }
    if old.is_empty() || req.dry_run {
        return Ok(OlderReport {
            stacks: old,
            outcome: None,
        });
    }
    confirm_all(&old)?;
    let total = old.len();
    let mut runs = stream::iter(old.iter().map(|(id, _)| {
        // No progress lines (they would interleave); notes under the stack's name.
        let notes = ui.notify().prefixed(format!("{id}: "));
        let quiet = Ui::new(false, true).with_notes(notes.clone());
        async move {
            let r = async {
                let aws = connect(id, notes)?;
                let d = aws.discover(id).await?;
                remove(&aws, &quiet, id, req.break_lock, &d).await
            }
            .await;
            (id.clone(), r)
        }
    }))
    .buffer_unordered(req.parallel);
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    while let Some((id, r)) = runs.next().await {
        let n = removed.len() + failed.len() + 1;
        match r {
            Ok(()) => {
                ui.info(format!("[{n}/{total}] {id}: removed"));
                removed.push(id);
            }
            Err(e) => {
                ui.warn(format!(
                    "[{n}/{total}] {id}: FAILED: {}",
                    e.to_string().lines().next().unwrap_or("")
                ));
                failed.push((id, e));
            }
        }
    }
    drop(runs);
    Ok(OlderReport {
        stacks: old,
        outcome: Some(Removal { removed, failed }),
    })
}
