use super::provision::{reach, source_spec};
use super::{locked_site, open_site, Ctx};
use crate::cli::{PosArgs, PosCommand};
use crate::error::{Error, Result};
use crate::phases::{restore, stage, Site};
use crate::remote::{no_sink, Inputs, Remote};
use crate::spec::StackSpec;
use crate::ui::Ui;
use serde_json::json;
use std::time::Duration;

/// Runs pos.sh with ACTION and more inputs; returns its result line.
pub async fn pos_sh(
    site: &Site<'_>,
    action: &str,
    more: &[(&str, &str)],
) -> Result<serde_json::Value> {
    let mut inputs = Inputs::new().set("ACTION", action)?;
    for (k, v) in more {
        inputs = inputs.set(k, *v)?;
    }
    site.run_script("pos.sh", &inputs, Duration::from_secs(600), no_sink(), |code| {
        if code == 4 {
            (
                format!("pos {action} refused: the image is in use"),
                "stop or replace the container that uses it first (`poscloud image list` shows which)".into(),
            )
        } else {
            (
                format!("pos {action} failed"),
                "read the message above, then run the same command again".into(),
            )
        }
    })
    .await
}

/// Stops the POS container (eth1 back to the host; data kept). Harmless when there is none.
pub async fn stop(site: &Site<'_>, ui: &Ui) -> Result<()> {
    let step = ui.step("pos: stop the container, eth1 back to the host");
    pos_sh(site, "stop", &[]).await?;
    step.done("");
    Ok(())
}

fn load(args: &PosArgs) -> Result<StackSpec> {
    StackSpec::load(args.stack.id(), args.stack.stack.as_deref(), None)
}

/// status / start / stop / restart of the POS container.
async fn lifecycle(ctx: &Ctx, args: &PosArgs, action: &str, yes: bool) -> Result<()> {
    let ui = &ctx.ui;
    let spec = load(args)?;
    if matches!(action, "start" | "restart") && spec.pos.is_none() {
        return Err(Error::usage(format!(
            "{}: no [pos] section: there is no POS to start",
            spec.source
        )));
    }
    let reach = reach(&args.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &spec.id, &format!("pos {action}"), &mut slot).await?;
    let id = &spec.id;
    if action == "status" {
        let st = pos_sh(&site, "status", &[]).await?;
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
    if action != "start" {
        ctx.confirm_site(
            &site,
            yes,
            &format!("pos {action}: the POS stops serving the shop's terminals"),
        )?;
    }
    locked_site(&site, ui, args.break_lock, async {
        if matches!(action, "stop" | "restart") {
            stop(&site, ui).await?;
        }
        let mut result = json!({"stopped": action == "stop"});
        if matches!(action, "start" | "restart") {
            result = json!({"started": stage::apply(&site, ui, &spec).await?});
        }
        ctx.result(result, &format!("pos {action}: done for {id}\n"));
        Ok(())
    })
    .await
}

/// `pos connect`: a shell in the POS container, through the system's ssh (SSH transports,
/// with the pinned host key) or an SSM session (the AWS CLI with its session plugin).
async fn connect(ctx: &Ctx, args: &PosArgs) -> Result<()> {
    let spec = load(args)?;
    let reach = reach(&args.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &spec.id, "pos connect", &mut slot).await?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    // bash when the image has it; a plain sh otherwise.
    let shell = "command -v bash >/dev/null && exec bash -l || exec sh -l";
    let exec = format!(
        "docker exec {} pos sh -c '{shell}'",
        if tty { "-it" } else { "-i" }
    );
    let mut cmd = match &site.remote {
        Remote::Ssh(t) => {
            // Only the pinned key is accepted: a known_hosts file holding just that key.
            let dir = std::env::temp_dir().join(format!("poscloud-connect-{}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::failed(format!("{}: {e}", dir.display())))?;
            let known = dir.join("known_hosts");
            let host = if t.port == 22 {
                t.host.clone()
            } else {
                format!("[{}]:{}", t.host, t.port)
            };
            std::fs::write(&known, format!("{host} {}\n", t.host_key.to_line()))
                .map_err(|e| Error::failed(format!("{}: {e}", known.display())))?;
            let mut c = std::process::Command::new("ssh");
            c.args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-p", &t.port.to_string()])
            .arg(if tty { "-t" } else { "-T" });
            if let Some(k) = &t.key_file {
                c.arg("-i").arg(k);
            }
            // The Docker socket is root's.
            c.arg(format!("{}@{}", t.user, t.host))
                .arg(crate::remote::ssh::as_root(&t.user, exec.clone()));
            c
        }
        Remote::Ssm(t) => {
            let params = json!({"command": [format!("sudo {exec}")]}).to_string();
            let mut c = std::process::Command::new("aws");
            c.args(["ssm", "start-session", "--target", &t.instance_id])
                .args([
                    "--document-name",
                    "AWS-StartInteractiveCommand",
                    "--parameters",
                    &params,
                ]);
            if let Some(aws) = site.aws() {
                c.args(["--region", &aws.region]);
            }
            c
        }
    };
    ctx.ui.info(format!(
        "pos connect: a shell in the POS container on {}",
        site.describe()
    ));
    let status = cmd.status().map_err(|e| {
        let tool = cmd.get_program().to_string_lossy().into_owned();
        Error::failed(format!("cannot run {tool}: {e}")).next(format!(
            "install it ({}), or use --transport ssh",
            if tool == "aws" {
                "the AWS CLI and its Session Manager plugin"
            } else {
                "OpenSSH's client"
            }
        ))
    })?;
    if let Remote::Ssh(_) = &site.remote {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("poscloud-connect-{}", std::process::id())),
        );
    }
    match status.code() {
        Some(0) => Ok(()),
        code => Err(Error::failed(format!(
            "the shell in the POS container ended with {}",
            code.map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "a signal".into())
        ))),
    }
}

/// `pos snapshot`: the container committed to a tagged image on the host and, for hosts in
/// AWS, an EBS snapshot of the host's volumes; both named with the shop and the time.
async fn snapshot(ctx: &Ctx, args: &PosArgs) -> Result<()> {
    let ui = &ctx.ui;
    let spec = load(args)?;
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{}: no [pos] section: there is no POS to snapshot",
            spec.source
        ))
    })?;
    let reach = reach(&args.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &spec.id, "pos snapshot", &mut slot).await?;
    // 20261123t120000z: a tag may not hold ':' (and our image references are lowercase).
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
        .to_lowercase();
    let tag = format!("poscloud/{}-snapshot:{}-{stamp}", pos.app, spec.id.shop);
    locked_site(&site, ui, args.break_lock, async {
        let step = ui.step(format!("snapshot: commit the POS container to {tag}"));
        let image = match pos_sh(
            &site,
            "commit",
            &[("TAG", &tag), ("SHOP", spec.id.shop.as_str())],
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                step.failed();
                return Err(e);
            }
        };
        step.done(image["image_id"].as_str().unwrap_or(""));
        let mut volumes = Vec::new();
        if let Some(aws) = site.aws() {
            let d = aws.discover(&spec.id).await?;
            let instance = d
                .instance()
                .ok_or_else(|| Error::failed(format!("{} has no instance", spec.id)))?;
            let step = ui.step(format!("snapshot: EBS volumes of {}", instance.id));
            match aws.snapshot_volumes(&spec.id, &instance.id, &tag).await {
                Ok(v) => {
                    step.done(&v.join(", "));
                    volumes = v;
                }
                Err(e) => {
                    step.failed();
                    return Err(e);
                }
            }
        }
        let mut text = format!("snapshot of {}:\n  image     {tag}\n", spec.id);
        for s in &volumes {
            text.push_str(&format!("  EBS       {s} (completes in the background)\n"));
        }
        ctx.result(json!({"image": image, "ebs_snapshots": volumes}), &text);
        Ok(())
    })
    .await
}

/// `pos …`: work on the POS of an existing stack's host (or a --target host).
pub async fn run(ctx: &Ctx, command: &PosCommand) -> Result<()> {
    match command {
        PosCommand::Status(a) => lifecycle(ctx, a, "status", false).await,
        PosCommand::Start(a) => lifecycle(ctx, a, "start", false).await,
        PosCommand::Stop(a) => lifecycle(ctx, &a.pos, "stop", a.approve.yes).await,
        PosCommand::Restart(a) => lifecycle(ctx, &a.pos, "restart", a.approve.yes).await,
        PosCommand::Connect(a) => connect(ctx, a).await,
        PosCommand::Snapshot(a) => snapshot(ctx, a).await,
        PosCommand::Restore(args) => {
            let ui = &ctx.ui;
            let id = args.stack.id();
            // Every input checked before the first AWS call.
            let reach = reach(&args.reach)?;
            let spec = source_spec(
                args.app,
                &args.from,
                args.data_dir.as_deref(),
                &args.auth,
                &reach,
            )?;
            let stack = StackSpec::load(id.clone(), args.stack.stack.as_deref(), None)?;
            let mut slot = None;
            let site = open_site(ctx, &reach, &id, "pos restore", &mut slot).await?;
            ctx.confirm_site(
                &site,
                args.approve.yes,
                &format!(
                    "pos restore: the POS data is replaced with {} (the POS stops meanwhile)",
                    args.from
                ),
            )?;
            locked_site(&site, ui, args.break_lock, async {
                // The POS must not run on data being replaced (its bind mount would keep
                // pointing at the old directory): stop it, restore, start it on the new data.
                if stack.pos.is_some() {
                    stop(&site, ui).await?;
                }
                let st = restore::run(&site, ui, &spec).await.map_err(|e| {
                    if stack.pos.is_some() {
                        Error::failed(format!(
                            "{e}\n  the POS stays stopped on its previous, intact data: `poscloud pos start` brings it back as it was"
                        ))
                    } else {
                        e
                    }
                })?;
                if stack.pos.is_some() {
                    stage::apply(&site, ui, &stack).await?;
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
