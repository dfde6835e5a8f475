use super::provision::{public_key_file, reach};
use super::{locked, Ctx};
use crate::cli::{PosArgs, PosCommand};
use crate::error::{Error, Result};
use crate::phases::{self, restore, stage};
use crate::remote::{no_sink, Inputs, Remote};
use crate::spec::StackSpec;
use serde_json::json;
use std::time::Duration;

/// Runs pos.sh with ACTION (status, stop) and returns its result line.
async fn container(
    aws: &crate::aws::Aws,
    remote: &Remote<'_>,
    action: &str,
) -> Result<serde_json::Value> {
    let inputs = Inputs::new().set("ACTION", action)?;
    let timeout = Duration::from_secs(300);
    phases::run_script(aws, remote, "pos.sh", &inputs, timeout, no_sink(), |_| {
        (
            format!("pos {action} failed"),
            "read the message above, then run the same command again".into(),
        )
    })
    .await
}

/// status / start / stop / restart of the POS container.
async fn lifecycle(ctx: &Ctx, args: &PosArgs, action: &str) -> Result<()> {
    let ui = &ctx.ui;
    let id = args.stack.id();
    let spec = StackSpec::load(id.clone(), args.stack.stack.as_deref(), None)?;
    if matches!(action, "start" | "restart") && spec.pos.is_none() {
        return Err(Error::usage(format!(
            "{}: no [pos] section: there is no POS to start",
            spec.source
        )));
    }
    let reach = reach(&args.reach)?;
    let aws = ctx
        .connect(&super::command_line(&format!("pos {action}"), &id))
        .await?;
    let d = aws.discover(&id).await?;
    let remote = phases::remote(&aws, ui, &id, &d, &reach).await?;
    if action == "status" {
        let st = container(&aws, &remote, "status").await?;
        let text = format!(
            "POS container of {id}: {}, health {}, eth1 {}, image {}\n",
            if st["running"] == true {
                "running"
            } else if st["exists"] == true {
                "stopped"
            } else {
                "absent"
            },
            st["health"].as_str().unwrap_or("-"),
            st["eth1"].as_str().filter(|s| !s.is_empty()).unwrap_or("-"),
            st["image"].as_str().unwrap_or("-"),
        );
        ctx.result(json!({"pos": st}), &text);
        return Ok(());
    }
    locked(&aws, ui, &id, args.break_lock, async {
        if matches!(action, "stop" | "restart") {
            let step = ui.step("pos: stop the container, eth1 back to the host");
            container(&aws, &remote, "stop").await?;
            step.done("");
        }
        let mut result = json!({"stopped": action == "stop"});
        if matches!(action, "start" | "restart") {
            result = json!({"started": stage::apply(&aws, ui, &spec, &remote).await?});
        }
        ctx.result(result, &format!("pos {action}: done for {id}\n"));
        Ok(())
    })
    .await
}

/// `pos …`: work on the POS of an existing stack's host.
pub async fn run(ctx: &Ctx, command: &PosCommand) -> Result<()> {
    match command {
        PosCommand::Status(a) => lifecycle(ctx, a, "status").await,
        PosCommand::Start(a) => lifecycle(ctx, a, "start").await,
        PosCommand::Stop(a) => lifecycle(ctx, a, "stop").await,
        PosCommand::Restart(a) => lifecycle(ctx, a, "restart").await,
        PosCommand::Restore(args) => {
            let ui = &ctx.ui;
            let id = args.stack.id();
            // Every input checked before the first AWS call.
            let host_key = args
                .source_host_key_file
                .as_deref()
                .map(|f| public_key_file("--source-host-key-file", f))
                .transpose()?;
            let spec = restore::RestoreSpec::new(
                args.app,
                &args.from,
                args.data_dir.as_deref(),
                args.source_key_file.as_deref(),
                host_key,
                &args.manifest,
            )?;
            let stack = StackSpec::load(id.clone(), args.stack.stack.as_deref(), None)?;
            let reach = reach(&args.reach)?;
            let aws = ctx
                .connect(&super::command_line("pos restore", &id))
                .await?;
            locked(&aws, ui, &id, args.break_lock, async {
                let d = aws.discover(&id).await?;
                let remote = phases::remote(&aws, ui, &id, &d, &reach).await?;
                // The POS must not run on data being replaced (its bind mount would keep
                // pointing at the old directory): stop it, restore, start it on the new data.
                if stack.pos.is_some() {
                    let step = ui.step("pos: stop the POS for the restore");
                    container(&aws, &remote, "stop").await?;
                    step.done("");
                }
                let st = restore::run(&aws, ui, &id, &remote, &spec).await.map_err(|e| {
                    if stack.pos.is_some() {
                        Error::failed(format!(
                            "{e}\n  the POS stays stopped on its previous, intact data: `poscloud pos start` brings it back as it was"
                        ))
                    } else {
                        e
                    }
                })?;
                if stack.pos.is_some() {
                    stage::apply(&aws, ui, &stack, &remote).await?;
                }
                ctx.result(
                    json!({"restore": st}),
                    &format!(
                        "restored {} files ({} bytes) into {} on {}\n",
                        st.result["files"], st.result["bytes"], spec.data_dir, st.target
                    ),
                );
                Ok(())
            })
            .await
        }
    }
}
