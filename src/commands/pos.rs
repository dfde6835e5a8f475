use super::request::{reach, source_spec};
use super::{open_site, Ctx};
use crate::cli::{PosArgs, PosCommand};
use crate::error::{Error, Result};
use crate::ops::{self, pos::Change};
use crate::remote::Remote;
use crate::spec::StackSpec;
use serde_json::json;

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
        let st = ops::pos::status(&site).await?;
        let f = &st.fields;
        let text = format!(
            "POS container of {id}: {}, health {}, eth1 {}, image {}\n",
            if f.running {
                "running"
            } else if f.exists {
                "stopped"
            } else {
                "absent"
            },
            f.health.as_deref().unwrap_or("-"),
            Some(f.eth1.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("-"),
            f.image.as_deref().unwrap_or("-"),
        );
        ctx.result(json!({"pos": st.json}), &text);
        return Ok(());
    }
    if action != "start" {
        ctx.confirm_site(
            &site,
            yes,
            &format!("pos {action}: the POS stops serving the shop's terminals"),
        )?;
    }
    let change = match action {
        "start" => Change::Start,
        "stop" => Change::Stop,
        _ => Change::Restart,
    };
    let result = ops::pos::change(&site, ui, &spec, change, args.break_lock).await?;
    ctx.result(result, &format!("pos {action}: done for {id}\n"));
    Ok(())
}

/// `pos connect`: a shell in the POS container, through the system's ssh (SSH transports,
/// with the pinned host key) or an SSM session (the AWS CLI with its session plugin).
async fn connect(ctx: &Ctx, args: &PosArgs) -> Result<()> {
    let spec = load(args)?;
    let reach = reach(&args.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &spec.id, "pos connect", &mut slot).await?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut cmd = ops::pos::shell(&site, tty)?;
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
        let _ = std::fs::remove_dir_all(ops::pos::shell_dir());
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
    let spec = load(args)?;
    if spec.pos.is_none() {
        return Err(Error::usage(format!(
            "{}: no [pos] section: there is no POS to snapshot",
            spec.source
        )));
    }
    let reach = reach(&args.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &spec.id, "pos snapshot", &mut slot).await?;
    let s = ops::pos::snapshot(&site, &ctx.ui, &spec, args.break_lock).await?;
    let mut text = format!("snapshot of {}:\n  image     {}\n", spec.id, s.tag);
    for e in &s.ebs_snapshots {
        text.push_str(&format!("  EBS       {e} (completes in the background)\n"));
    }
    ctx.result(
        json!({"image": s.image.json, "ebs_snapshots": s.ebs_snapshots}),
        &text,
    );
    Ok(())
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
            let id = args.stack.id();
            // Every input checked before the first AWS call.
            let reach = reach(&args.reach)?;
            let stack = StackSpec::load(id.clone(), args.stack.stack.as_deref(), None)?;
            let spec = source_spec(
                stack.app(&args.app)?,
                &args.from,
                args.data_dir.as_deref(),
                &args.auth,
                &reach,
            )?;
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
            let (st, r) = ops::pos::restore(&site, &ctx.ui, &stack, &spec, args.break_lock).await?;
            ctx.result(
                json!({"restore": st}),
                &format!(
                    "restored {} files ({} bytes) into {} on {}\n",
                    r.files, r.bytes, spec.data_dir, st.target
                ),
            );
            Ok(())
        }
    }
}
