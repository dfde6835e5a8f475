//! `backup run|list|verify`: the POS data's off-host backups (docs/runbooks/duties.md).

use super::request::reach;
use super::{command_line, open_site, Ctx};
use crate::cli::{BackupCommand, PosArgs};
use crate::error::{Error, Result};
use crate::ops;
use serde_json::json;
use std::fmt::Write;

pub async fn run(ctx: &Ctx, cmd: &BackupCommand) -> Result<()> {
    match cmd {
        BackupCommand::Run(a) => now(ctx, a).await,
        BackupCommand::List(a) => list(ctx, a).await,
        BackupCommand::Verify(a) => verify(ctx, &a.pos, a.backup.as_deref()).await,
    }
}

/// Backups live in S3 and are made with the instance role: never over --target.
fn no_target(a: &PosArgs) -> Result<()> {
    if reach(&a.reach)?.target.is_some() {
        return Err(Error::usage(
            "backups go to S3 with the host's instance role: not for --target hosts",
        ));
    }
    Ok(())
}

async fn now(ctx: &Ctx, a: &PosArgs) -> Result<()> {
    let id = a.stack.id();
    // The stack file is read for its errors only: the host runs the settings it has.
    crate::spec::StackSpec::load(id.clone(), a.stack.stack.as_deref(), None)?;
    no_target(a)?;
    let reach = reach(&a.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &id, "backup run", &mut slot).await?;
    let b = ops::backup::run(&site, &ctx.ui, a.break_lock).await?;
    let f = &b.fields;
    ctx.result(
        json!({ "backup": b.json }),
        &format!(
            "backup {} of {id}: {} files, {} bytes ({}, kept {} days); the POS was held {} s\n",
            f.stamp, f.files, f.bytes, f.kind, f.keep_days, f.held_s
        ),
    );
    Ok(())
}

async fn list(ctx: &Ctx, a: &PosArgs) -> Result<()> {
    let id = a.stack.id();
    no_target(a)?;
    let aws = ctx.connect(&command_line("backup list", &id)).await?;
    let (bucket, all) = ops::backup::list(&aws, &id).await?;
    let now = std::time::SystemTime::now();
    let mut text = format!(
        "backups of {id} in s3://{bucket}/{}\n",
        crate::phases::backup::prefix(&id)
    );
    if all.is_empty() {
        text.push_str(
            "  none yet (the host's timer makes one a day; `poscloud backup run` makes one now)\n",
        );
    } else {
        let _ = writeln!(
            text,
            "{:<22} {:<8} {:>7} {:>12} {:>6} {:>9}  RESULT",
            "TIME", "KIND", "FILES", "BYTES", "KEEP", "AGE"
        );
    }
    for l in &all {
        match &l.summary {
            Some(s) => {
                let age = s.time.age_at(now).as_secs();
                let _ = writeln!(
                    text,
                    "{:<22} {:<8} {:>7} {:>12} {:>5}d {:>8}h  {}",
                    s.time.to_string(),
                    s.kind,
                    s.files,
                    s.bytes,
                    s.keep_days,
                    age / 3600,
                    if l.archive {
                        s.result.as_str()
                    } else {
                        "archive missing"
                    }
                );
            }
            None => {
                let _ = writeln!(
                    text,
                    "{:<22} {:<8} {:>7} {:>12} {:>6} {:>9}  incomplete (the run was cut off; it expires by itself)",
                    l.stamp, "-", "-", "-", "-", "-"
                );
            }
        }
    }
    ctx.result(json!({ "bucket": bucket, "backups": all }), &text);
    Ok(())
}

async fn verify(ctx: &Ctx, a: &PosArgs, which: Option<&str>) -> Result<()> {
    let id = a.stack.id();
    no_target(a)?;
    let stamp = which
        .map(|t| {
            crate::phases::backup::stamp_of(t).ok_or_else(|| {
                Error::usage(format!(
                    "--backup {t:?}: the time `backup list` shows (2026-12-02T02:30:00Z or 20261202T023000Z)"
                ))
            })
        })
        .transpose()?;
    let aws = ctx.connect(&command_line("backup verify", &id)).await?;
    let step = ctx
        .ui
        .step("verify: download the archive and check it against its manifest");
    let v = ops::backup::verify(&aws, &id, stamp.as_deref())
        .await
        .inspect_err(|_| step.fail_silently())?;
    if !v.problems.is_empty() {
        step.failed();
        let list: String = v.problems.iter().map(|p| format!("\n  {p}")).collect();
        return Err(Error::failed(format!(
            "backup {} of {id} ({}) does not verify:{list}",
            v.stamp, v.archive
        ))
        .next("do not restore it: use an older backup (`backup list`, `backup verify --backup TIME`), and make a new one with `backup run`"));
    }
    step.done(&format!("{} files", v.files));
    ctx.result(
        json!({ "verified": v }),
        &format!(
            "backup {} of {id}: good ({} files match its manifest; the archive's checksum is as recorded)\n",
            v.stamp, v.files
        ),
    );
    Ok(())
}
