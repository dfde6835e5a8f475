use super::{locked, Ctx};
use crate::cli::TeardownArgs;
use crate::error::{Error, Result};
use crate::resources::discover::Discovered;
use crate::spec::{Env, StackId};
use crate::teardown::Teardown;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::fmt::Write as _;

/// `teardown`: remove everything of a stack in dependency order, then verify.
pub async fn run(ctx: &Ctx, args: &TeardownArgs) -> Result<()> {
    if let Some(age) = args.older_than {
        return bulk(ctx, args, age.into()).await;
    }
    let ui = &ctx.ui;
    let id = args.stack_args().id();
    if id.env == Env::Prod && args.env.is_none() {
        return Err(Error::protected(format!(
            "refusing to tear down shop {} without an explicit env: the default env is prod.",
            id.shop
        ))
        .next("name the env you mean, e.g. --env qa (a prod teardown needs --env prod)"));
    }
    let aws = ctx.connect(&super::command_line("teardown", &id)).await?;
    let d = aws.discover(&id).await?;
    let remaining = d.remaining();
    if remaining.is_empty() {
        // The wrong env must not look like success: say where the shop is.
        let elsewhere = aws.envs_of(&id.shop).await?;
        if !elsewhere.is_empty() {
            let envs: Vec<&str> = elsewhere.iter().map(|e| e.as_str()).collect();
            return Err(Error::failed(format!(
                "{id} does not exist in {}: nothing was removed; shop {} exists in: {}",
                aws.at,
                id.shop,
                envs.join(", ")
            ))
            .next(format!("name the env you mean, e.g. --env {}", envs[0])));
        }
        ctx.result(
            json!({"removed": [], "existed": false}),
            &format!("nothing to tear down: {id} does not exist in {}\n", aws.at),
        );
        return Ok(());
    }
    let listing: String = remaining.iter().map(|r| format!("  - {r}\n")).collect();
    if args.dry_run {
        ctx.result(
            json!({"dry_run": true, "would_remove": remaining}),
            &format!("dry run: would remove from {id} in {}:\n{listing}", aws.at),
        );
        return Ok(());
    }
    ui.info(format!("teardown {id} in {}: removes\n{listing}", aws.at));

    if id.env == Env::Prod {
        if !(args.yes && args.allow_prod) {
            let typed = crate::ui::ask(&format!(
                "This is PRODUCTION. Type the shop code ({}) to remove it: ",
                id.shop
            ));
            match typed {
                Some(t) if t == id.shop.as_str() => {}
                Some(_) => {
                    return Err(Error::protected(
                        "the shop code did not match; nothing was removed",
                    ))
                }
                None => {
                    return Err(Error::protected(format!(
                        "refusing to tear down prod {id} without confirmation; nothing was removed."
                    ))
                    .next(
                        "run it at a terminal and type the shop code, or pass --yes --allow-prod",
                    ))
                }
            }
        }
    } else if !args.yes {
        match crate::ui::ask(&format!("Remove all of {id}? Type yes: ")) {
            Some(t) if t == "yes" => {}
            Some(_) => return Err(Error::usage("not confirmed; nothing was removed")),
            None => {
                return Err(Error::usage(
                    "teardown needs confirmation and there is no terminal to ask at: pass --yes",
                ))
            }
        }
    }

    let text = remove(ctx, &aws, &id, args.break_lock, &d).await?;
    ctx.result(json!({"removed": remaining, "existed": true}), &text);
    Ok(())
}

/// Removes the stack under its lock, then verifies that nothing tagged is left.
async fn remove(
    ctx: &Ctx,
    aws: &crate::aws::Aws,
    id: &StackId,
    break_lock: bool,
    d: &Discovered,
) -> Result<String> {
    let ui = &ctx.ui;
    let remaining = d.remaining();
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
        Ok(Teardown::new(aws, ui, id).run(d).await)
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
    Ok(format!(
        "removed {} resource(s) of {id} in {}; nothing tagged remains\n",
        remaining.len(),
        aws.at
    ))
}

/// `teardown --env qa|dev --older-than AGE`: every such stack, listed first, then removed
/// with the same verified teardown, `--parallel` at a time. Never prod.
async fn bulk(ctx: &Ctx, args: &TeardownArgs, age: std::time::Duration) -> Result<()> {
    let ui = &ctx.ui;
    let env = args.env.expect("clap requires --env with --older-than");
    if env == Env::Prod {
        return Err(Error::protected(
            "--older-than never removes prod stacks; tear a prod stack down by its shop code",
        ));
    }
    let aws = ctx
        .connect(&format!(
            "teardown --env {env} --older-than {}",
            humantime::format_duration(age)
        ))
        .await?;
    let cutoff = std::time::SystemTime::now() - age;
    let mut old = Vec::new();
    let mut unknown = Vec::new();
    for (id, s) in aws.list_stacks().await? {
        if id.env != env {
            continue;
        }
        match s.created_at() {
            Some(t) if t < cutoff => old.push((id, s)),
            Some(_) => {}
            None => unknown.push(id),
        }
    }
    for id in &unknown {
        ui.warn(format!(
            "{id}: its creation time is unknown (no poscloud:created tag, no instance): left alone; tear it down by its shop code"
        ));
    }
    let mut listing = String::new();
    for (id, s) in &old {
        let _ = writeln!(
            listing,
            "  {:<10} {:<4} created {}  {}",
            id.shop.as_str(),
            id.env.as_str(),
            s.created
                .as_deref()
                .or(s.launch_time.as_deref())
                .unwrap_or("?"),
            s.instance.as_deref().unwrap_or("(no instance)")
        );
    }
    let names: Vec<serde_json::Value> = old
        .iter()
        .map(|(id, _)| json!({"shop": id.shop.as_str(), "env": id.env.as_str()}))
        .collect();
    if old.is_empty() {
        ctx.result(
            json!({"stacks": names, "removed": []}),
            &format!(
                "no {env} stack in {} is older than {}\n",
                aws.at,
                humantime::format_duration(age)
            ),
        );
        return Ok(());
    }
    let head = format!(
        "{} {env} stack(s) in {} created more than {} ago:\n{listing}",
        old.len(),
        aws.at,
        humantime::format_duration(age)
    );
    if args.dry_run {
        ctx.result(
            json!({"dry_run": true, "stacks": names}),
            &format!("dry run: would remove {head}"),
        );
        return Ok(());
    }
    ui.info(format!("removing {head}"));
    if !args.yes {
        match crate::ui::ask(&format!("Remove all {} of them? Type yes: ", old.len())) {
            Some(t) if t == "yes" => {}
            Some(_) => return Err(Error::usage("not confirmed; nothing was removed")),
            None => {
                return Err(Error::usage(
                    "teardown needs confirmation and there is no terminal to ask at: pass --yes",
                ))
            }
        }
    }
    let total = old.len();
    let shared = std::sync::Arc::new(aws.for_run(crate::journal::Journal::none(), ui.notify()));
    let mut runs = stream::iter(old.into_iter().map(|(id, _)| {
        let sub = Ctx::capturing(
            ctx.global.clone(),
            shared.clone(),
            ui.notify().prefixed(format!("{id}: ")),
        );
        let break_lock = args.break_lock;
        async move {
            let r = async {
                let aws = sub.connect(&super::command_line("teardown", &id)).await?;
                let d = aws.discover(&id).await?;
                remove(&sub, &aws, &id, break_lock, &d).await
            }
            .await;
            (id, r)
        }
    }))
    .buffer_unordered(args.parallel as usize);
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    while let Some((id, r)) = runs.next().await {
        match r {
            Ok(_) => {
                ui.info(format!(
                    "[{}/{total}] {id}: removed",
                    removed.len() + failed.len() + 1
                ));
                removed.push(json!({"shop": id.shop.as_str(), "env": id.env.as_str()}));
            }
            Err(e) => {
                ui.warn(format!(
                    "[{}/{total}] {id}: FAILED: {}",
                    removed.len() + failed.len() + 1,
                    e.to_string().lines().next().unwrap_or("")
                ));
                failed.push(json!({"shop": id.shop.as_str(), "env": id.env.as_str(), "error": e.to_string()}));
            }
        }
    }
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
