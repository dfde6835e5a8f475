//! `vpn create|list|status|delete|sheet`: one IPsec tunnel per florist location.

use super::request::reach;
use super::Ctx;
use crate::cli::{PosArgs, VpnCommand};
use crate::error::{Error, Result};
use crate::ops;
use crate::ops::vpn::{RotateRequest, Rotated, Rotation, Switch};
use crate::phases::Reach;
use crate::spec::vpn::{check_name, Location, LocationInput};
use crate::spec::StackSpec;
use serde_json::json;
use std::fmt::Write;

/// The stack and the reach, checked before any AWS call; the VPN's keys live in SSM.
fn load(args: &PosArgs) -> Result<(StackSpec, Reach)> {
    let spec = StackSpec::load(args.stack.id(), args.stack.stack.as_deref(), None)?;
    let reach = reach(&args.reach)?;
    if reach.target.is_some() {
        return Err(Error::usage(
            "vpn works on stacks in AWS (the keys are SSM SecureStrings); --target is not supported",
        ));
    }
    Ok((spec, reach))
}

pub async fn run(ctx: &Ctx, command: &VpnCommand) -> Result<()> {
    match command {
        VpnCommand::Create(a) => create(ctx, a).await,
        VpnCommand::List(a) => list(ctx, a).await,
        VpnCommand::Status(a) => status(ctx, a).await,
        VpnCommand::Delete(a) => delete(ctx, a).await,
        VpnCommand::Sheet(a) => sheet(ctx, a).await,
        VpnCommand::Rotate(a) => rotate(ctx, a).await,
        VpnCommand::Start(a) => switch(ctx, a, Switch::Start).await,
        VpnCommand::Stop(a) => switch(ctx, a, Switch::Stop).await,
    }
}

async fn create(ctx: &Ctx, a: &crate::cli::VpnCreateArgs) -> Result<()> {
    let ui = &ctx.ui;
    let (spec, reach) = load(&a.pos)?;
    let input = LocationInput {
        name: &a.location,
        peer_ip: &a.peer_ip,
        peer_nets: &a.peer_net,
        ike_version: a.ike_version,
        proposals: a.proposal.as_deref(),
        esp_proposals: a.esp_proposal.as_deref(),
        allow_weak: a.allow_weak,
    };
    // Everything but the other locations is checked before any AWS call.
    Location::new(&input, &spec.network, &[])?;
    let aws = ctx
        .connect(&super::command_line("vpn create", &spec.id))
        .await?;
    let c = ops::vpn::create(&aws, ui, &spec, &reach, &input, a.pos.break_lock).await?;
    let l = &c.record.location;
    let text = format!(
        "vpn {}: {} (peer {}); `poscloud vpn sheet --location {}` for the router admin\n",
        l.name,
        c.tunnel.state(),
        l.peer_ip,
        l.name
    );
    ctx.result(
        json!({"location": c.record, "tunnel": c.tunnel.into_json()}),
        &text,
    );
    Ok(())
}

async fn list(ctx: &Ctx, a: &crate::cli::PosArgs) -> Result<()> {
    let (spec, _) = load(a)?;
    let aws = ctx
        .connect(&super::command_line("vpn list", &spec.id))
        .await?;
    let locs = ops::vpn::list(&aws, &spec.id).await?;
    let mut text = format!(
        "{:<20} {:<16} {:<28} {:<4} KEY SINCE\n",
        "LOCATION", "PEER", "NETWORKS", "IKE"
    );
    for r in &locs {
        let l = &r.location;
        let nets: Vec<String> = l.peer_nets.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            text,
            "{:<20} {:<16} {:<28} v{:<3} {}",
            l.name,
            l.peer_ip,
            nets.join(","),
            l.ike_version,
            r.psk_rotated_at
        );
    }
    ctx.result(json!({"locations": locs}), &text);
    Ok(())
}

async fn status(ctx: &Ctx, a: &crate::cli::VpnArgs) -> Result<()> {
    let (spec, reach) = load(&a.pos)?;
    if let Some(l) = &a.location {
        check_name(l)?;
    }
    let mut slot = None;
    let site = super::open_site(ctx, &reach, &spec.id, "vpn status", &mut slot).await?;
    let r = ops::vpn::status(&site, a.location.as_deref()).await?;
    let mut text = String::new();
    for l in &r.fields.locations {
        let _ = writeln!(
            text,
            "{:<20} {:<7} IKE {:<12} CHILD {:<10} in {} B, out {} B{}",
            l.location,
            if l.up {
                "up"
            } else if l.stopped {
                "stopped"
            } else {
                "DOWN"
            },
            l.ike_sa,
            l.child_sa,
            l.bytes_in,
            l.bytes_out,
            match (l.established_s, l.rekey_in_s) {
                (Some(e), Some(r)) => format!(", established {e} s ago, rekey in {r} s"),
                (Some(e), None) => format!(", established {e} s ago"),
                _ => String::new(),
            }
        );
    }
    if text.is_empty() {
        text = "no tunnels on the host\n".into();
    }
    ctx.result(r.json, &text);
    Ok(())
}

async fn delete(ctx: &Ctx, a: &crate::cli::VpnLocationArgs) -> Result<()> {
    let ui = &ctx.ui;
    let (spec, reach) = load(&a.pos)?;
    check_name(&a.location)?;
    let mut slot = None;
    let site = super::open_site(ctx, &reach, &spec.id, "vpn delete", &mut slot).await?;
    ctx.confirm_site(
        &site,
        a.approve.yes,
        &format!(
            "vpn delete: the tunnel to {} goes, with its key and settings",
            a.location
        ),
    )?;
    ops::vpn::delete(&site, ui, &a.location, a.pos.break_lock).await?;
    ctx.result(
        json!({"deleted": a.location}),
        &format!(
            "vpn {}: deleted (the other locations keep running)\n",
            a.location
        ),
    );
    Ok(())
}

/// `vpn start|stop`: one location, or every tunnel.
async fn switch(ctx: &Ctx, a: &crate::cli::VpnArgs, switch: Switch) -> Result<()> {
    let ui = &ctx.ui;
    let action = switch.name();
    let (spec, reach) = load(&a.pos)?;
    if let Some(l) = &a.location {
        check_name(l)?;
    }
    let what = a.location.as_deref().unwrap_or("every tunnel");
    let mut slot = None;
    let site = super::open_site(ctx, &reach, &spec.id, &format!("vpn {action}"), &mut slot).await?;
    let r = ops::vpn::switch(&site, ui, switch, a.location.as_deref(), a.pos.break_lock).await?;
    ctx.result(
        r,
        &format!("vpn {action}: done for {what} of {}\n", spec.id),
    );
    Ok(())
}

/// `vpn rotate`: a new key. Without a flag it waits in SSM for the router (the sheet shows
/// it with --next) and the tunnel keeps the old one; --confirm puts it in use; --now makes
/// one and puts it in use at once. The rotation date is recorded (key age is reported).
async fn rotate(ctx: &Ctx, a: &crate::cli::VpnRotateArgs) -> Result<()> {
    let (spec, reach) = load(&a.pos)?;
    check_name(&a.location)?;
    let how = match (a.confirm, a.now) {
        (true, _) => Rotation::Confirm,
        (false, true) => Rotation::Now,
        (false, false) => Rotation::Start,
    };
    let aws = ctx
        .connect(&super::command_line("vpn rotate", &spec.id))
        .await?;
    let approve = |site: &crate::phases::Site<'_>| {
        ctx.confirm_site(
            site,
            a.approve.yes,
            &format!(
                "vpn rotate: the tunnel to {} changes its key (down until the router has it)",
                a.location
            ),
        )
    };
    let loc = &a.location;
    let req = RotateRequest {
        spec: &spec,
        reach: &reach,
        location: loc,
        how,
        break_lock: a.pos.break_lock,
    };
    match ops::vpn::rotate(&aws, &ctx.ui, &approve, &req).await? {
        Rotated::Pending(rec) => ctx.result(
            json!({"location": rec, "pending": true}),
            &format!(
                "new key for {loc} made; the tunnel keeps the old one.\n  next: give the router admin `poscloud vpn sheet --location {loc} --reveal --next`, then `poscloud vpn rotate --location {loc} --confirm`\n"
            ),
        ),
        Rotated::InUse { record, tunnel } => ctx.result(
            json!({"location": record, "tunnel": tunnel.json}),
            &format!(
                "vpn {loc}: new key in use, tunnel {}\n",
                tunnel.fields.state
            ),
        ),
    }
    Ok(())
}

/// The router admin's sheet. The key is shown only with --reveal, and then only to a
/// terminal or into a new file readable by its owner alone; never into the journal.
async fn sheet(ctx: &Ctx, a: &crate::cli::VpnSheetArgs) -> Result<()> {
    let (spec, _) = load(&a.pos)?;
    check_name(&a.location)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if a.reveal && a.psk_file.is_none() && (!tty || ctx.ui.json) {
        return Err(Error::usage(
            "--reveal prints the key only to a terminal (and not with --output json): add --psk-file FILE",
        ));
    }
    if (a.psk_file.is_some() || a.next) && !a.reveal {
        return Err(Error::usage("--psk-file and --next go with --reveal"));
    }
    let aws = ctx
        .connect(&super::command_line("vpn sheet", &spec.id))
        .await?;
    let sheet = ops::vpn::sheet(&aws, &spec.id, &a.location, a.reveal, a.next).await?;
    let (rec, pos_ip) = (&sheet.record, &sheet.pos_public_ip);
    let l = &rec.location;
    let nets: Vec<String> = l.peer_nets.iter().map(|n| n.to_string()).collect();
    let mut text = format!(
        "VPN sheet for {} — location {}\n\
         \x20 their router (peer)      {}\n\
         \x20 POS side address / ID    {pos_ip}\n\
         \x20 POS network (remote)     {}\n\
         \x20 their networks (local)   {}\n\
         \x20 IKE version              {}\n\
         \x20 IKE proposals            {}\n\
         \x20 ESP proposals            {}\n\
         \x20 lifetimes                IKE 4 h, IPsec SA 1 h (rekeyed before)\n\
         \x20 dead peer detection      30 s, restart\n\
         \x20 initiator                the POS side (their router only responds)\n\
         \x20 authentication           pre-shared key, made {}\n",
        spec.id,
        l.name,
        l.peer_ip,
        spec.network,
        nets.join(", "),
        l.ike_version,
        l.proposals,
        l.esp_proposals,
        rec.psk_rotated_at
    );
    if let Some(since) = &rec.psk_next_since {
        let _ = writeln!(
            text,
            "  new key (rotation)       made {since}, not in use yet (--next)"
        );
    }
    let mut psk_file = None;
    if let Some(psk) = &sheet.psk {
        match &a.psk_file {
            Some(f) => {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(f)
                    .map_err(|e| Error::usage(format!("--psk-file {}: {e}", f.display())))?;
                writeln!(file, "{psk}")
                    .map_err(|e| Error::failed(format!("{}: {e}", f.display())))?;
                let _ = writeln!(
                    text,
                    "  pre-shared key           in {} (mode 600)",
                    f.display()
                );
                psk_file = Some(f.display().to_string());
            }
            None => {
                let _ = writeln!(text, "  pre-shared key           {psk}");
            }
        }
    } else {
        text.push_str("  pre-shared key           (hidden; --reveal shows it)\n");
    }
    ctx.result(
        json!({"location": rec, "pos_public_ip": pos_ip, "pos_network": spec.network.to_string(),
               "psk_file": psk_file}),
        &text,
    );
    Ok(())
}
