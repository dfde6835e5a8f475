//! `teardown`: the request from the arguments, the confirmations, `ops::teardown`, the
//! result rendered.

use super::Ctx;
use crate::cli::TeardownArgs;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::ops::teardown::{self, OlderRequest, Report, Request};
use crate::spec::{Env, StackId};
use serde_json::json;
use std::fmt::Write as _;

pub async fn run(ctx: &Ctx, args: &TeardownArgs) -> Result<()> {
    if let Some(age) = args.older_than {
        return older(ctx, args, age.into()).await;
    }
    let id = args.stack_args().id();
    if id.env == Env::Prod && args.env.is_none() {
        return Err(Error::protected(format!(
            "refusing to tear down shop {} without an explicit env: the default env is prod.",
            id.shop
        ))
        .next("name the env you mean, e.g. --env qa (a prod teardown needs --env prod)"));
    }
    let aws = ctx.connect(&super::command_line("teardown", &id)).await?;
    let confirm = |id: &StackId| confirm(args, id);
    let req = Request {
        id: id.clone(),
        dry_run: args.dry_run,
        break_lock: args.break_lock,
    };
    match teardown::stack(&aws, &ctx.ui, &confirm, &req).await? {
        Report::Absent => ctx.result(
            json!({"removed": [], "existed": false}),
            &format!("nothing to tear down: {id} does not exist in {}\n", aws.at),
        ),
        Report::DryRun { would_remove } => ctx.result(
            json!({"dry_run": true, "would_remove": would_remove}),
            &format!(
                "dry run: would remove from {id} in {}:\n{}",
                aws.at,
                teardown::listing(&would_remove)
            ),
        ),
        Report::Removed { removed } => ctx.result(
            json!({"removed": removed, "existed": true}),
            &format!(
                "removed {} resource(s) of {id} in {}; nothing tagged remains\n",
                removed.len(),
                aws.at
            ),
        ),
    }
    Ok(())
}

/// Prod: the shop code typed back (or --yes --allow-prod), refusals exit 4; other envs:
/// `yes` typed (or --yes).
fn confirm(args: &TeardownArgs, id: &StackId) -> Result<()> {
    if id.env == Env::Prod {
        if args.yes && args.allow_prod {
            return Ok(());
        }
        return match crate::ui::ask(&format!(
            "This is PRODUCTION. Type the shop code ({}) to remove it: ",
            id.shop
        )) {
            Some(t) if t == id.shop.as_str() => Ok(()),
            Some(_) => Err(Error::protected(
                "the shop code did not match; nothing was removed",
            )),
            None => Err(Error::protected(format!(
                "refusing to tear down prod {id} without confirmation; nothing was removed."
            ))
            .next("run it at a terminal and type the shop code, or pass --yes --allow-prod")),
        };
    }
    if args.yes {
        return Ok(());
    }
    confirm_yes(&format!("Remove all of {id}? Type yes: "))
}

fn confirm_yes(prompt: &str) -> Result<()> {
    match crate::ui::ask(prompt) {
        Some(t) if t == "yes" => Ok(()),
        Some(_) => Err(Error::usage("not confirmed; nothing was removed")),
        None => Err(Error::usage(
            "teardown needs confirmation and there is no terminal to ask at: pass --yes",
        )),
    }
}

/// `teardown --env qa|dev --older-than AGE`.
async fn older(ctx: &Ctx, args: &TeardownArgs, age: std::time::Duration) -> Result<()> {
    let ui = &ctx.ui;
    let env = args.env.expect("clap requires --env with --older-than");
    let req = OlderRequest {
        env,
        age,
        dry_run: args.dry_run,
        break_lock: args.break_lock,
        parallel: args.parallel as usize,
    };
    if env == Env::Prod {
        // Refused before connecting: ops refuses it too.
        return teardown::older_refused();
    }
    let aws = ctx
        .connect(&format!(
            "teardown --env {env} --older-than {}",
            humantime::format_duration(age)
        ))
        .await?;
    let age_text = humantime::format_duration(age);
    let head = |stacks: &[teardown::Listed]| {
        let mut listing = String::new();
        for (id, s) in stacks {
            let _ = writeln!(
                listing,
                "  {:<10} {:<4} created {}  {}",
                id.shop.as_str(),
                id.env.as_str(),
                s.created_at().map_or("?".into(), |t| t.to_string()),
                s.instance.as_deref().unwrap_or("(no instance)")
            );
        }
        format!(
            "{} {env} stack(s) in {} created more than {age_text} ago:\n{listing}",
            stacks.len(),
            aws.at,
        )
    };
    let confirm_all = |stacks: &[teardown::Listed]| {
        ui.info(format!("removing {}", head(stacks)));
        if args.yes {
            return Ok(());
        }
        confirm_yes(&format!("Remove all {} of them? Type yes: ", stacks.len()))
    };
    let connect = |id: &StackId, notes| {
        let line = super::command_line("teardown", id);
        Ok(aws.for_run(Journal::open(ctx.global.journal.as_deref(), &line)?, notes))
    };
    let r = teardown::older(&aws, ui, &confirm_all, &connect, &req).await?;
    let pair = |id: &StackId| json!({"shop": id.shop.as_str(), "env": id.env.as_str()});
    let names: Vec<_> = r.stacks.iter().map(|(id, _)| pair(id)).collect();
    let Some(done) = r.outcome else {
        if r.stacks.is_empty() {
            ctx.result(
                json!({"stacks": names, "removed": []}),
                &format!("no {env} stack in {} is older than {age_text}\n", aws.at),
            );
        } else {
            ctx.result(
                json!({"dry_run": true, "stacks": names}),
                &format!("dry run: would remove {}", head(&r.stacks)),
            );
        }
        return Ok(());
    };
    let total = r.stacks.len();
    let removed: Vec<_> = done.removed.iter().map(pair).collect();
    let failed: Vec<_> = done
        .failed
        .iter()
        .map(|(id, e)| json!({"shop": id.shop.as_str(), "env": id.env.as_str(), "error": e.to_string()}))
        .collect();
    ctx.result(
        json!({"stacks": names, "removed": removed, "failed": failed}),
        &format!(
            "removed {} of {total} {env} stack(s); {} failed\n",
            removed.len(),
            failed.len()
        ),
    );
    if !failed.is_empty() {
        return Err(Error::Reported(format!(
            "{} of {total} stacks failed to tear down (named above); run the same command again",
            failed.len()
        )));
    }
    Ok(())
}
