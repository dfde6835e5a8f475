//! `cutover plan|run|status|rollback`: the shop's physical POS server to its cloud host.

use super::request::{public_key_file, reach};
use super::{command_line, Ctx};
use crate::cli::{CutoverArgs, CutoverCommand, PosArgs};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::ops;
use crate::ops::cutover::{PlanReport, Request, RollbackReport, RunReport};
use crate::phases::cutover::{self, CutoverState, CutoverStep, Record};
use crate::phases::Site;
use crate::remote::ssh::SshTarget;
use crate::spec::StackSpec;
use serde_json::json;
use std::fmt::Write;
use std::net::Ipv4Addr;

pub async fn run(ctx: &Ctx, command: &CutoverCommand) -> Result<()> {
    match command {
        CutoverCommand::Plan(a) => plan(ctx, a).await,
        CutoverCommand::Run(a) => run_steps(ctx, a).await,
        CutoverCommand::Status(a) => status(ctx, a).await,
        CutoverCommand::Rollback(a) => rollback(ctx, a).await,
    }
}

/// Everything from the command line, checked before any AWS call or connection.
fn check(a: &CutoverArgs) -> Result<Request> {
    let spec = StackSpec::load(a.pos.stack.id(), a.pos.stack.stack.as_deref(), None)?;
    let reach = reach(&a.pos.reach)?;
    if reach.target.is_some() {
        return Err(Error::usage(
            "cutover works on stacks in AWS (its journal lives in SSM); --target is not supported",
        ));
    }
    let rest = a
        .from
        .strip_prefix("ssh://")
        .ok_or_else(|| Error::usage(format!("--from {:?}: use ssh://user@host[:port]", a.from)))?;
    if rest.contains('/') {
        return Err(Error::usage(format!(
            "--from {:?}: no path here; the data directory is [cutover] data_dir in the stack file (default /usr2 for rti, /d for daisy)",
            a.from
        )));
    }
    let (user, host, port) = SshTarget::parse_address(rest)?;
    let host_key = match &a.from_host_key_file {
        Some(f) => public_key_file("--from-host-key-file", f)?,
        None => {
            return Err(Error::usage(
                "--from needs --from-host-key-file: the physical server's public host key, checked out of band (e.g. /etc/ssh/ssh_host_ed25519_key.pub read on its console)",
            ))
        }
    };
    if let Some(k) = &a.from_key {
        std::fs::metadata(k)
            .map_err(|e| Error::usage(format!("--from-key {}: {e}", k.display())))?;
    }
    let lan = match &a.from_lan {
        Some(s) => s
            .parse::<Ipv4Addr>()
            .map_err(|_| Error::usage(format!("--from-lan {s:?} is not an IPv4 address")))?,
        None => host.parse::<Ipv4Addr>().map_err(|_| {
            Error::usage(format!(
                "--from host {host:?} is not an IPv4 address: give --from-lan, its address as the cloud host reaches it through the VPN"
            ))
        })?,
    };
    if let Some(x) = &a.app {
        spec.app(x)?;
    }
    let stack_app = spec.pos.as_ref().map(|p| p.app.name.clone());
    let app = match (&a.app, &stack_app) {
        (Some(x), Some(s)) if x.as_str() != s => {
            return Err(Error::usage(format!(
                "--app {} but the stack's POS is {s}",
                x.as_str()
            )))
        }
        (Some(x), _) => x.as_str().to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => {
            return Err(Error::usage(format!(
                "{}: no [pos] section: stage the cloud POS before a cutover",
                spec.source
            )))
        }
    };
    if spec.pos.is_none() {
        return Err(Error::usage(format!(
            "{}: no [pos] section: stage the cloud POS before a cutover",
            spec.source
        )));
    }
    let cutover = spec.cutover.for_app(spec.app(&app)?);
    Ok(Request {
        spec,
        reach,
        target: SshTarget {
            user,
            host,
            port,
            key_file: a.from_key.clone(),
            host_key,
        },
        lan,
        app,
        cutover,
        break_lock: a.pos.break_lock,
    })
}

/// The journal of the source server's runs.
fn journal(ctx: &Ctx, line: &str) -> Result<Journal> {
    Journal::open(ctx.global.journal.as_deref(), line)
}

async fn plan(ctx: &Ctx, a: &CutoverArgs) -> Result<()> {
    let c = check(a)?;
    let id = &c.spec.id;
    let line = command_line("cutover plan", id);
    let aws = ctx.connect(&line).await?;
    let (url, pf, rec) = match ops::cutover::plan(&aws, &ctx.ui, &c, journal(ctx, &line)?).await? {
        PlanReport::Finished(r) => {
            ctx.result(
                json!({"record": r}),
                &format!(
                    "the cutover of {id} from {} finished at {}: nothing to plan\n",
                    r.source,
                    r.at(CutoverStep::Finish)
                        .map_or("?".into(), |t| t.to_string())
                ),
            );
            return Ok(());
        }
        PlanReport::Planned {
            source_url,
            preflight,
            record,
        } => (source_url, preflight, record),
    };
    let bytes = pf.source.found().map_or(0, |f| f.bytes);
    let mut text = format!(
        "cutover of {id} from {} ({}, data {})\n",
        url, c.app, c.cutover.data_dir
    );
    for l in &pf.lines {
        let _ = writeln!(text, "  ok: {l}");
    }
    for p in &pf.problems {
        let _ = writeln!(text, "  PROBLEM: {p}");
    }
    text.push_str("steps:\n");
    for s in CutoverStep::ALL {
        let done = rec
            .as_ref()
            .filter(|r| r.state == CutoverState::Running)
            .is_some_and(|r| r.done(s));
        let _ = writeln!(
            text,
            "  {} {:<11} {}",
            if done { "done" } else { "    " },
            s.name(),
            s.describe()
        );
    }
    let _ = writeln!(
        text,
        "estimated downtime (freeze → cloud POS up): {}",
        cutover::estimate_downtime(bytes)
    );
    ctx.result(
        json!({"source": url, "checks": pf.lines, "problems": pf.problems,
               "facts": pf.facts, "vpn": pf.location, "steps": CutoverStep::ALL, "record": rec,
               "estimated_downtime": cutover::estimate_downtime(bytes)}),
        &text,
    );
    if pf.problems.is_empty() {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "the preflight found {} problem(s) (above); fix them before `cutover run`",
            pf.problems.len()
        )))
    }
}

async fn run_steps(ctx: &Ctx, a: &crate::cli::CutoverRunArgs) -> Result<()> {
    let ui = &ctx.ui;
    let c = check(&a.cutover)?;
    let id = &c.spec.id;
    let line = command_line("cutover run", id);
    let aws = ctx.connect(&line).await?;
    let approve = |site: &Site<'_>| {
        ctx.confirm_site(
            site,
            a.approve.yes,
            &format!(
                "cutover run: the shop's POS moves from {} to the cloud (the shop stops selling during the freeze)",
                a.cutover.from
            ),
        )
    };
    let journal = journal(ctx, &line)?;
    let until = a.until;
    let rec = match ops::cutover::run(&aws, ui, &approve, &c, journal, until, a.bwlimit).await? {
        RunReport::Finished(r) => {
            let at = r
                .at(CutoverStep::Finish)
                .map_or("?".into(), |t| t.to_string());
            ctx.result(
                json!({"record": r, "changed": false}),
                &format!(
                    "the cutover of {id} from {} finished at {at}: nothing to do\n",
                    r.source
                ),
            );
            return Ok(());
        }
        RunReport::Ran(rec) => rec,
    };
    let text = match rec.next_step() {
        None => format!(
            "cutover of {id} done: the cloud POS serves, the physical server is stopped and marked as migrated{}\n",
            downtime_text(&rec)
        ),
        Some(next) => format!(
            "cutover of {id} stopped before {next} (--until {}); `poscloud cutover run` goes on from there\n",
            a.until.map_or("?", CutoverStep::name)
        ),
    };
    ctx.result(json!({"record": rec, "changed": true}), &text);
    Ok(())
}

fn downtime_text(rec: &Record) -> String {
    rec.downtime_s()
        .map(|d| format!(" (downtime {} min {} s)", d / 60, d % 60))
        .unwrap_or_default()
}

async fn status(ctx: &Ctx, a: &PosArgs) -> Result<()> {
    let id = a.stack.id();
    // Validates the stack file too: the same errors as the other commands.
    StackSpec::load(id.clone(), a.stack.stack.as_deref(), None)?;
    let aws = ctx.connect(&command_line("cutover status", &id)).await?;
    let Some(rec) = ops::cutover::status(&aws, &id).await? else {
        ctx.result(
            json!({"record": null}),
            &format!("no cutover recorded for {id}\n"),
        );
        return Ok(());
    };
    let mut text = format!(
        "cutover of {id} from {}: {} (started {} by {})\n",
        rec.source, rec.state, rec.started_at, rec.by
    );
    for s in CutoverStep::ALL {
        let st = rec.steps.get(&s);
        let at = rec.at(s);
        let shown = match (at, st) {
            (Some(at), _) => format!("done {at}"),
            (None, Some(v)) => format!(
                "begun {}",
                v["started_at"].as_str().unwrap_or("(not finished)")
            ),
            (None, None) => String::new(),
        };
        let _ = writeln!(text, "  {:<11} {shown}", s.name());
    }
    if rec.state == CutoverState::Running {
        if let Some(n) = rec.next_step() {
            let _ = writeln!(text, "next: {n} (`poscloud cutover run` resumes there)");
        }
    }
    if let Some(at) = &rec.rolled_back_at {
        let _ = writeln!(text, "rolled back {} time(s), last at {at}", rec.rollbacks);
    }
    if let Some(d) = rec.downtime_s() {
        let _ = writeln!(
            text,
            "downtime {} min {} s (freeze → cloud POS up)",
            d / 60,
            d % 60
        );
    }
    ctx.result(json!({"record": rec}), &text);
    Ok(())
}

async fn rollback(ctx: &Ctx, a: &CutoverArgs) -> Result<()> {
    let ui = &ctx.ui;
    let c = check(a)?;
    let id = &c.spec.id;
    let line = command_line("cutover rollback", id);
    let aws = ctx.connect(&line).await?;
    let journal = journal(ctx, &line)?;
    let rec = match ops::cutover::rollback(&aws, ui, &c, journal).await? {
        RollbackReport::Unchanged(r) => {
            ctx.result(
                json!({"record": r, "changed": false}),
                &format!(
                    "the cutover of {id} is already {}: nothing to do\n",
                    r.state
                ),
            );
            return Ok(());
        }
        RollbackReport::RolledBack(rec) => rec,
    };
    let text = if rec.state == CutoverState::Cleared {
        format!("nothing of {id} was stopped yet: the cutover record is cleared and the cloud host's key removed from the source\n")
    } else {
        format!("rolled back: the physical POS of {id} runs and answers again; the cloud POS is stopped. `poscloud cutover run` starts over\n")
    };
    ctx.result(json!({"record": rec, "changed": true}), &text);
    Ok(())
}
