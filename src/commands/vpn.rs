//! `vpn create|list|status|delete|sheet`: one IPsec tunnel per florist location.

use super::provision::reach;
use super::{locked_site, Ctx};
use crate::cli::{PosArgs, VpnCommand};
use crate::error::{Error, Result};
use crate::phases::vpn;
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
    let ui = &ctx.ui;
    match command {
        VpnCommand::Create(a) => {
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
            let existing = vpn::locations(&aws, &spec.id).await?;
            let others: Vec<Location> = existing.iter().map(|r| r.location.clone()).collect();
            let location = Location::new(&input, &spec.network, &others)?;
            if location.ike_version == 1 {
                ui.warn("IKEv1 is legacy: use it only for a router that cannot do IKEv2");
            }
            if a.allow_weak {
                ui.warn("--allow-weak: this tunnel may use algorithms that no longer protect card data well");
            }
            let d = aws.discover(&spec.id).await?;
            let pos_ip = vpn::pos_public_ip(&d, &spec.id)?;
            let site = crate::phases::site(&aws, ui, &spec.id, &d, &reach).await?;
            locked_site(&site, ui, a.pos.break_lock, async {
                let prior = existing.iter().find(|r| r.location.name == location.name);
                let rec = vpn::ensure(&aws, &spec.id, &location, prior).await?;
                let up = vpn::bring_up(&site, ui, &spec, &rec, &pos_ip, prior.is_none()).await?;
                ctx.result(
                    json!({"location": rec, "tunnel": up}),
                    &format!(
                        "vpn {}: {} (peer {}); `poscloud vpn sheet --location {}` for the router admin\n",
                        location.name,
                        up["state"].as_str().unwrap_or("?"),
                        location.peer_ip,
                        location.name
                    ),
                );
                Ok(())
            })
            .await
        }
        VpnCommand::List(a) => {
            let (spec, _) = load(a)?;
            let aws = ctx
                .connect(&super::command_line("vpn list", &spec.id))
                .await?;
            let locs = vpn::locations(&aws, &spec.id).await?;
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
        VpnCommand::Status(a) => {
            let (spec, reach) = load(&a.pos)?;
            if let Some(l) = &a.location {
                check_name(l)?;
            }
            let mut slot = None;
            let site = super::open_site(ctx, &reach, &spec.id, "vpn status", &mut slot).await?;
            let r = vpn::host(&site, "status", a.location.as_deref()).await?;
            let mut text = String::new();
            for l in r["locations"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    text,
                    "{:<20} {:<7} IKE {:<12} CHILD {:<10} in {} B, out {} B{}",
                    l["location"].as_str().unwrap_or("?"),
                    if l["up"] == true {
                        "up"
                    } else if l["stopped"] == true {
                        "stopped"
                    } else {
                        "DOWN"
                    },
                    l["ike_sa"].as_str().unwrap_or("-"),
                    l["child_sa"].as_str().unwrap_or("-"),
                    l["bytes_in"],
                    l["bytes_out"],
                    match (l["established_s"].as_u64(), l["rekey_in_s"].as_u64()) {
                        (Some(e), Some(r)) => format!(", established {e} s ago, rekey in {r} s"),
                        (Some(e), None) => format!(", established {e} s ago"),
                        _ => String::new(),
                    }
                );
            }
            if text.is_empty() {
                text = "no tunnels on the host\n".into();
            }
            ctx.result(r, &text);
            Ok(())
        }
        VpnCommand::Delete(a) => {
            let (spec, reach) = load(&a.pos)?;
            check_name(&a.location)?;
            let mut slot = None;
            let site = super::open_site(ctx, &reach, &spec.id, "vpn delete", &mut slot).await?;
            let aws = site.aws().expect("vpn sites are in AWS");
            ctx.confirm_site(
                &site,
                a.approve.yes,
                &format!(
                    "vpn delete: the tunnel to {} goes, with its key and settings",
                    a.location
                ),
            )?;
            locked_site(&site, ui, a.pos.break_lock, async {
                let step = ui.step(format!("vpn: delete {}", a.location));
                if let Err(e) = vpn::host(&site, "delete", Some(&a.location)).await {
                    step.failed();
                    return Err(e);
                }
                for name in [
                    vpn::config_name(&spec.id, &a.location),
                    vpn::psk_name(&spec.id, &a.location),
                    vpn::next_psk_name(&spec.id, &a.location),
                ] {
                    match aws.delete_parameter(&name).await {
                        Err(e) if e.kind() == crate::error::Kind::NotFound => {}
                        other => other?,
                    }
                }
                step.done("");
                ctx.result(
                    json!({"deleted": a.location}),
                    &format!(
                        "vpn {}: deleted (the other locations keep running)\n",
                        a.location
                    ),
                );
                Ok(())
            })
            .await
        }
        VpnCommand::Sheet(a) => sheet(ctx, a).await,
        VpnCommand::Rotate(a) => rotate(ctx, a).await,
        VpnCommand::Start(a) | VpnCommand::Stop(a) => {
            let action = if matches!(command, VpnCommand::Start(_)) {
                "start"
            } else {
                "stop"
            };
            let (spec, reach) = load(&a.pos)?;
            if let Some(l) = &a.location {
                check_name(l)?;
            }
            let what = a.location.as_deref().unwrap_or("every tunnel");
            let mut slot = None;
            let site = super::open_site(ctx, &reach, &spec.id, &format!("vpn {action}"), &mut slot)
                .await?;
            locked_site(&site, ui, a.pos.break_lock, async {
                let step = ui.step(format!("vpn: {action} {what}"));
                let r = match vpn::host(&site, action, a.location.as_deref()).await {
                    Ok(r) => r,
                    Err(e) => {
                        step.failed();
                        return Err(e);
                    }
                };
                step.done("");
                ctx.result(
                    r,
                    &format!("vpn {action}: done for {what} of {}\n", spec.id),
                );
                Ok(())
            })
            .await
        }
    }
}

/// `vpn rotate`: a new key. Without a flag it waits in SSM for the router (the sheet shows
/// it with --next) and the tunnel keeps the old one; --confirm puts it in use; --now makes
/// one and puts it in use at once. The rotation date is recorded (key age is reported).
async fn rotate(ctx: &Ctx, a: &crate::cli::VpnRotateArgs) -> Result<()> {
    let ui = &ctx.ui;
    let (spec, reach) = load(&a.pos)?;
    check_name(&a.location)?;
    let aws = ctx
        .connect(&super::command_line("vpn rotate", &spec.id))
        .await?;
    let mut rec = vpn::find(&aws, &spec.id, &a.location).await?;
    let (current, next) = (
        vpn::psk_name(&spec.id, &a.location),
        vpn::next_psk_name(&spec.id, &a.location),
    );
    if a.confirm && rec.psk_next_since.is_none() {
        return Err(Error::usage(format!(
            "no rotation of {} is pending: `poscloud vpn rotate --location {}` starts one",
            a.location, a.location
        )));
    }
    if !a.confirm && !a.now {
        if let Some(since) = &rec.psk_next_since {
            return Err(Error::usage(format!(
                "a new key for {} waits since {since}: --confirm once the router has it, or --now",
                a.location
            )));
        }
    }
    let d = aws.discover(&spec.id).await?;
    let pos_ip = vpn::pos_public_ip(&d, &spec.id)?;
    let site = crate::phases::site(&aws, ui, &spec.id, &d, &reach).await?;
    if a.confirm || a.now {
        ctx.confirm_site(
            &site,
            a.approve.yes,
            &format!(
                "vpn rotate: the tunnel to {} changes its key (down until the router has it)",
                a.location
            ),
        )?;
    }
    locked_site(&site, ui, a.pos.break_lock, async {
        let now = crate::journal::now();
        if !a.confirm && !a.now {
            aws.put_secret(&next, &crate::spec::vpn::new_psk()?).await?;
            rec.psk_next_since = Some(now);
            vpn::save(&aws, &spec.id, &rec).await?;
            ctx.result(
                json!({"location": rec, "pending": true}),
                &format!(
                    "new key for {loc} made; the tunnel keeps the old one.\n  next: give the router admin `poscloud vpn sheet --location {loc} --reveal --next`, then `poscloud vpn rotate --location {loc} --confirm`\n",
                    loc = a.location
                ),
            );
            return Ok(());
        }
        let key = if a.confirm {
            aws.get_secret(&next)
                .await?
                .ok_or_else(|| Error::failed(format!("the pending key {next} is missing; start the rotation again")))?
        } else {
            crate::spec::vpn::new_psk()?
        };
        aws.put_secret(&current, &key).await?;
        rec.psk_rotated_at = now;
        rec.psk_next_since = None;
        vpn::save(&aws, &spec.id, &rec).await?;
        match aws.delete_parameter(&next).await {
            Err(e) if e.kind() == crate::error::Kind::NotFound => {}
            other => other?,
        }
        let up = vpn::apply(&site, ui, &spec, &rec, &pos_ip).await.map_err(|e| {
            Error::failed(format!(
                "{e}\n  the new key is in use on the POS side: the tunnel comes up once the router has it (`poscloud vpn sheet --location {} --reveal`)",
                a.location
            ))
        })?;
        ctx.result(
            json!({"location": rec, "tunnel": up}),
            &format!("vpn {}: new key in use, tunnel {}\n", a.location, up["state"].as_str().unwrap_or("?")),
        );
        Ok(())
    })
    .await
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
    let rec = vpn::find(&aws, &spec.id, &a.location).await?;
    let d = aws.discover(&spec.id).await?;
    let pos_ip = vpn::pos_public_ip(&d, &spec.id).unwrap_or_else(|_| "-".into());
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
    if a.reveal {
        let name = if a.next {
            vpn::next_psk_name(&spec.id, &l.name)
        } else {
            vpn::psk_name(&spec.id, &l.name)
        };
        let psk = aws.get_secret(&name).await?.ok_or_else(|| {
            Error::usage(format!(
                "no {}key for {} in SSM",
                if a.next { "pending " } else { "" },
                l.name
            ))
        })?;
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
