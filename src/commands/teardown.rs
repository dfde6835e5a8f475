use super::{locked, Ctx};
use crate::cli::TeardownArgs;
use crate::error::{Error, Result};
use crate::spec::Env;
use crate::teardown::Teardown;
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};

fn ask(prompt: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

/// `teardown`: remove everything of a stack in dependency order, then verify.
pub async fn run(ctx: &Ctx, args: &TeardownArgs) -> Result<()> {
    let ui = &ctx.ui;
    let id = args.stack.id();
    if id.env == Env::Prod && args.stack.env.is_none() {
        return Err(Error::Protected(format!(
            "refusing to tear down shop {} without an explicit env: the default env is prod.\n  next: name the env you mean, e.g. --env qa (a prod teardown needs --env prod)",
            id.shop
        )));
    }
    let aws = ctx.connect(&super::command_line("teardown", &id)).await?;
    let d = aws.discover(&id).await?;
    let remaining = d.remaining();
    if remaining.is_empty() {
        ctx.result(
            json!({"removed": [], "existed": false}),
            &format!(
                "nothing to tear down: {id} does not exist in {}\n",
                aws.region
            ),
        );
        return Ok(());
    }
    let listing: String = remaining.iter().map(|r| format!("  - {r}\n")).collect();
    if args.dry_run {
        ctx.result(
            json!({"dry_run": true, "would_remove": remaining}),
            &format!(
                "dry run: would remove from {id} in {}:\n{listing}",
                aws.region
            ),
        );
        return Ok(());
    }
    ui.info(format!(
        "teardown {id} in {}: removes\n{listing}",
        aws.region
    ));

    if id.env == Env::Prod {
        if !(args.yes && args.allow_prod) {
            let typed = ask(&format!(
                "This is PRODUCTION. Type the shop code ({}) to remove it: ",
                id.shop
            ));
            match typed {
                Some(t) if t == id.shop.as_str() => {}
                Some(_) => return Err(Error::Protected("the shop code did not match; nothing was removed".into())),
                None => {
                    return Err(Error::Protected(format!(
                        "refusing to tear down prod {id} without confirmation; nothing was removed.\n  next: run it at a terminal and type the shop code, or pass --yes --allow-prod"
                    )))
                }
            }
        }
    } else if !args.yes {
        match ask(&format!("Remove all of {id}? Type yes: ")) {
            Some(t) if t == "yes" => {}
            Some(_) => return Err(Error::usage("not confirmed; nothing was removed")),
            None => {
                return Err(Error::usage(
                    "teardown needs confirmation and there is no terminal to ask at: pass --yes",
                ))
            }
        }
    }

    let failures = locked(&aws, ui, &id, args.break_lock, async {
        // Look again under the lock: another run may have changed the stack meanwhile.
        let d = aws.discover(&id).await?;
        Ok(Teardown::new(&aws, ui, &id).run(&d).await)
    })
    .await?;

    let left = aws.discover(&id).await?.remaining();
    if !left.is_empty() {
        let mut msg = format!(
            "teardown of {id} in {} left {} resource(s):\n",
            aws.region,
            left.len()
        );
        for l in &left {
            msg.push_str(&format!("  - {l}\n"));
        }
        for f in &failures {
            msg.push_str(&format!("  failed: {f}\n"));
        }
        msg.push_str("  next: run the same teardown again; if it keeps failing, remove these in the console and tell the team");
        return Err(Error::failed(msg));
    }
    ctx.result(
        json!({"removed": remaining, "existed": true}),
        &format!(
            "removed {} resource(s) of {id}; nothing tagged remains\n",
            remaining.len()
        ),
    );
    Ok(())
}
