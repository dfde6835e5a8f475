use super::{locked, render_plan, render_price, Ctx};
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::cli::{
    Phase, ProvisionArgs, ReachArgs, RestoreSourceArgs, SourceArgs, Transport, Until,
};
use crate::error::{Error, Result};
use crate::phases::restore::{self, App, RestoreSpec};
use crate::phases::{self, bootstrap, build, stage, PhaseState, Reach, Site};
use crate::plan::{self, Change};
use crate::remote::ssh::{PinnedKey, SshTarget};
use crate::resources::discover::Discovered;
use crate::spec::{Env, StackSpec};
use crate::ui::Ui;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub shop: String,
    pub env: String,
    pub region: String,
    pub account: Option<String>,
    pub credentials: String,
    pub instance_id: Option<String>,
    pub instance_state: Option<String>,
    pub host_public_ip: Option<String>,
    pub pos_public_ip: Option<String>,
    pub pos_private_ip: Option<String>,
    pub monthly_cost_usd: f64,
    pub phases: BTreeMap<String, PhaseState>,
}

fn summary(
    aws: &Aws,
    spec: &StackSpec,
    d: &Discovered,
    phases: BTreeMap<String, PhaseState>,
) -> Summary {
    Summary {
        shop: spec.id.shop.to_string(),
        env: spec.id.env.to_string(),
        region: aws.region.clone(),
        account: aws.at.account.get().cloned(),
        credentials: aws.at.credentials.clone(),
        instance_id: d.instance().map(|i| i.id.clone()),
        instance_state: d.instance().map(|i| i.state.to_string()),
        host_public_ip: d.eip(Role::EipHost).map(|e| e.public_ip.clone()),
        pos_public_ip: d.eip(Role::EipPos).map(|e| e.public_ip.clone()),
        pos_private_ip: d.eni_pos().and_then(|e| e.private_ip.clone()),
        monthly_cost_usd: (spec.price.total_month * 100.0).round() / 100.0,
        phases,
    }
}

/// Reads an OpenSSH public key file (refusing private keys) for pinning.
pub fn public_key_file(flag: &str, f: &std::path::Path) -> Result<PinnedKey> {
    let line = std::fs::read_to_string(f)
        .map_err(|e| Error::usage(format!("{flag} {}: {e}", f.display())))?;
    if line.contains("PRIVATE KEY") {
        return Err(Error::usage(format!(
            "{flag} {} holds a private key; give the public key",
            f.display()
        )));
    }
    PinnedKey::parse(line.trim())
}

/// Checks the reach options (files readable, address well-formed) before any AWS call.
pub fn reach(args: &ReachArgs) -> Result<Reach> {
    let ssh = args
        .ssh
        .as_deref()
        .map(SshTarget::parse_address)
        .transpose()?;
    if let Some(k) = &args.ssh_key {
        std::fs::metadata(k)
            .map_err(|e| Error::usage(format!("--ssh-key {}: {e}", k.display())))?;
    }
    let host_key = args
        .host_key_file
        .as_deref()
        .map(|f| public_key_file("--host-key-file", f))
        .transpose()?;
    let target = match &args.target {
        None => None,
        Some(t) => {
            let rest = t.strip_prefix("ssh://").ok_or_else(|| {
                Error::usage(format!("--target {t:?}: use ssh://user@host[:port]"))
            })?;
            let (user, host, port) = SshTarget::parse_address(rest)?;
            // A host poscloud did not create has no key on record: it must come out of band.
            let host_key = host_key.clone().ok_or_else(|| {
                Error::usage("--target needs --host-key-file: the host's public SSH key, checked out of band (e.g. /etc/ssh/ssh_host_ed25519_key.pub read on its console)")
            })?;
            Some(SshTarget {
                user,
                host,
                port,
                key_file: args.ssh_key.clone(),
                host_key,
            })
        }
    };
    Ok(Reach {
        ssh,
        force_ssh: args.transport == Transport::Ssh,
        ssh_key: args.ssh_key.clone(),
        host_key,
        check_ssm_online: !args.no_ssm_online_check,
        target,
    })
}

/// The remote phases this run wants, in order, from --until and the stack.
fn wanted(
    spec: &StackSpec,
    until: Until,
    restore: Option<&RestoreSpec>,
    target: bool,
    ui: &Ui,
) -> Vec<&'static str> {
    let mut w = Vec::new();
    if until >= Until::Bootstrap {
        w.push("bootstrap");
    }
    let Some(pos) = &spec.pos else {
        if until >= Until::Build {
            ui.info(format!(
                "build, stage, ready: skipped, {} has no [pos] section (app, version or image, artifact)",
                spec.source
            ));
        }
        return w;
    };
    if until >= Until::Build && pos.media.is_some() {
        w.push("build");
    }
    if until >= Until::Stage {
        if restore.is_some() {
            w.push("restore");
        }
        w.push("stage");
    }
    if until >= Until::Ready {
        if !spec.vpn.is_empty() && target {
            ui.warn("vpn: skipped: the VPN's keys live in SSM, which --target hosts do not use");
        } else if !spec.vpn.is_empty() {
            w.push("vpn");
        }
        w.push("ready");
    }
    w
}

/// Which wanted phases must run: not recorded, recorded for other inputs (media, image,
/// source), asked for with --redo, or after an earlier phase that runs (a restore stops the
/// POS, so stage runs again; ready checks whatever changed).
fn pending(
    spec: &StackSpec,
    restore: Option<&RestoreSpec>,
    wanted: &[&'static str],
    states: &BTreeMap<String, PhaseState>,
    redo: &[Phase],
) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in wanted {
        let current = match states.get(*p) {
            None => false,
            Some(st) => match *p {
                "build" => build::current(spec, st),
                "stage" => stage::current(spec, st),
                "restore" => restore.is_some_and(|r| restore::current(r, st)),
                "vpn" => phases::vpn::current(spec, st),
                _ => true,
            },
        };
        let cascade = match *p {
            "stage" => out.contains(&"restore"),
            // A new stage may have a new network namespace for charon to move to.
            "vpn" => out.contains(&"stage"),
            "ready" => !out.is_empty(),
            _ => false,
        };
        if !current || cascade || redo.iter().any(|r| r.name() == *p) {
            out.push(p);
        }
    }
    out
}

/// Runs the pending phases on the site, in order; returns every wanted phase's record.
async fn run_phases(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    restore: Option<&RestoreSpec>,
    wanted: &[&'static str],
    redo: &[Phase],
    pos_public_ip: Option<&str>,
) -> Result<BTreeMap<String, PhaseState>> {
    let mut states = BTreeMap::new();
    for p in wanted {
        if let Some(st) = site.phase_state(p).await? {
            states.insert(p.to_string(), st);
        }
    }
    let todo = pending(spec, restore, wanted, &states, redo);
    for p in wanted {
        if !todo.contains(p) {
            if let Some(st) = states.get(*p) {
                ui.info(format!(
                    "{p}: done at {} by {} (skipped; --redo {p} runs it again)",
                    st.done_at, st.by
                ));
            }
            continue;
        }
        let st = match *p {
            "bootstrap" => Some(bootstrap::run(site, ui).await?),
            "build" => build::run(site, ui, spec, false).await?,
            "restore" => {
                let r = restore.expect("restore is wanted only with a source");
                // The POS must not run on data being replaced: stop it (if any) first.
                super::pos::stop(site, ui).await?;
                Some(restore::run(site, ui, r).await?)
            }
            "stage" => Some(stage::run(site, ui, spec).await?),
            "vpn" => {
                let eip =
                    pos_public_ip.ok_or_else(|| Error::failed("the POS has no Elastic IP"))?;
                Some(phases::vpn::run(site, ui, spec, eip).await?)
            }
            _ => Some(stage::ready(site, ui, spec).await?),
        };
        if let Some(st) = st {
            states.insert(p.to_string(), st);
        }
    }
    Ok(states)
}

/// The restore source of `provision --restore-from`, validated (before any AWS call).
pub fn restore_spec(
    spec: &StackSpec,
    args: &RestoreSourceArgs,
    reach: &Reach,
) -> Result<Option<RestoreSpec>> {
    let Some(from) = &args.from else {
        return Ok(None);
    };
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "--restore-from: {} has no [pos] section, so there is no POS data directory to restore into",
            spec.source
        ))
    })?;
    let app = if pos.app == "daisy" {
        App::Daisy
    } else {
        App::Rti
    };
    let data_dir = stage::data_dir(pos);
    source_spec(app, from, Some(&data_dir), &args.auth, reach).map(Some)
}

/// A restore source with its options, validated (also for `pos restore`).
pub fn source_spec(
    app: App,
    from: &str,
    data_dir: Option<&str>,
    auth: &SourceArgs,
    reach: &Reach,
) -> Result<RestoreSpec> {
    let host_key = auth
        .source_host_key_file
        .as_deref()
        .map(|f| public_key_file("--source-host-key-file", f))
        .transpose()?;
    let r = RestoreSpec::new(
        app,
        from,
        data_dir,
        auth.source_key_file.as_deref(),
        host_key,
        &auth.manifest,
    )?;
    if r.is_s3() && reach.target.is_some() {
        return Err(Error::usage(
            "an s3:// restore source needs AWS; with --target use ssh:// or file://",
        ));
    }
    Ok(r)
}

/// `provision`: discover, plan, preflight, lock, create what is missing, run the remote
/// phases up to `--until`, summarise. With `--target`: the remote phases only, no AWS.
pub async fn run(ctx: &Ctx, args: &ProvisionArgs) -> Result<()> {
    let ui = &ctx.ui;
    if let Some(file) = &args.shops_file {
        return super::batch::provision(ctx, args, file).await;
    }
    let id = args.stack_args().id();
    let spec = StackSpec::load(id.clone(), args.stack.as_deref(), args.size)?;
    let reach = reach(&args.reach)?;
    let restore = restore_spec(&spec, &args.restore, &reach)?;
    let wanted = wanted(
        &spec,
        args.until,
        restore.as_ref(),
        reach.target.is_some(),
        ui,
    );
    if let Some(t) = &reach.target {
        return on_target(ctx, args, &spec, &reach, restore.as_ref(), &wanted, t).await;
    }
    let aws = ctx.connect(&super::command_line("provision", &id)).await?;
    crate::userdata::encode(&spec, &aws.region)?;

    let d = aws.discover(&id).await?;
    ui.info(format!(
        "provision {id} in {} (stack {})",
        aws.at, spec.source
    ));
    let plan = plan::build(&spec, &d, &aws.region);
    // The phase records came with the discovery (the stack's parameters).
    let mut states = BTreeMap::new();
    for p in &wanted {
        if let Some(st) = phases::phase_state_in(&d, &id, p) {
            states.insert(p.to_string(), st);
        }
    }
    let todo = pending(&spec, restore.as_ref(), &wanted, &states, &args.redo);

    if args.dry_run {
        let text = format!(
            "dry run: nothing changed\n{}remote phases to run: {}\n{}",
            render_plan(&plan, None),
            if todo.is_empty() {
                "none".to_string()
            } else {
                todo.join(", ")
            },
            render_price(&spec.price)
        );
        ctx.result(
            json!({"dry_run": true, "plan": plan, "writes": plan.writes(),
                   "phases": todo, "monthly_cost_usd": spec.price}),
            &text,
        );
        return Ok(());
    }
    if plan.writes() == 0 && todo.is_empty() {
        if args.break_lock {
            crate::lock::break_lock(&aws, ui, &id).await?;
        } else if let Some(h) = crate::lock::holder_in(&d, &id)? {
            ui.warn(format!("{id} is locked by {h}"));
        }
        ui.info(render_plan(&plan, None));
        for (p, st) in &states {
            ui.info(format!("{p}: done at {} by {}", st.done_at, st.by));
        }
        let s = summary(&aws, &spec, &d, states);
        ctx.result(
            json!({"converged": true, "writes": 0, "summary": s}),
            &render_summary(&s, "nothing to do: the stack matches its profile"),
        );
        return Ok(());
    }

    // Prod is never changed by omission: the plan, where and what it costs, then the shop
    // code typed back (or --yes).
    let shown = id.env == Env::Prod && !args.approve.yes;
    if shown {
        ctx.confirm_prod(
            &id,
            false,
            &format!(
                "{}{}remote phases to run: {}\nin {}",
                render_plan(&plan, None),
                render_price(&spec.price),
                if todo.is_empty() {
                    "none".to_string()
                } else {
                    todo.join(", ")
                },
                aws.at
            ),
        )?;
    }

    // Preflight, before any write (the lock included): the image and the region's quotas,
    // at once.
    let preflight = async {
        let step = ui.step("preflight: image and quotas");
        let launch = plan.count(|c| matches!(c, Change::Launch { .. })) > 0;
        let image = async {
            match launch {
                true => aws.find_image(&spec.ami).await.map(Some),
                false => Ok(None),
            }
        };
        let quotas = aws.check_quotas(
            plan.count(|c| matches!(c, Change::CreateVpc { .. })),
            plan.count(|c| matches!(c, Change::AllocateEip { .. })),
            spec.vpc_quota,
            spec.eip_quota,
        );
        match tokio::try_join!(image, quotas) {
            Ok((image, ())) => {
                step.done(
                    image
                        .as_ref()
                        .map(|i: &crate::aws::preflight::Image| i.id.as_str())
                        .unwrap_or(""),
                );
                Ok(image)
            }
            Err(e) => {
                step.failed();
                Err(e)
            }
        }
    };
    let image = preflight.await?;
    let (aws, spec, id, wanted, reach, restore) = (&aws, &spec, &id, &wanted, &reach, &restore);
    locked(aws, ui, id, args.break_lock, async move {
        // Another run may have changed the stack between the discovery and the lock (its
        // parameters tell); after a broken lock the dead run's last creates may be
        // unrecorded. Only then is the stack discovered again.
        let mut d = if args.break_lock {
            aws.discover(id).await?
        } else if aws.changed_since(id, &d).await? {
            ui.info("the stack changed since it was read (another run?): reading it again");
            aws.discover(id).await?
        } else {
            d
        };
        let dups = d.duplicates();
        if !dups.is_empty() {
            return Err(Error::failed(format!(
                "{id} holds duplicates, which provision will not guess between: {}",
                dups.join("; ")
            ))
            .next("`poscloud teardown` the stack and provision again"));
        }
        let again = plan::build(spec, &d, &aws.region);
        // Shown once: at the confirmation, unless the stack changed since.
        let text = render_plan(&again, None);
        if !shown || text != render_plan(&plan, None) {
            ui.info(text);
        }
        let plan = again;
        let image = match image {
            None if plan.count(|c| matches!(c, Change::Launch { .. })) > 0 => {
                Some(aws.find_image(&spec.ami).await?)
            }
            image => image,
        };

        let out = crate::apply::run(aws, ui, spec, image.as_ref(), &mut d, &plan).await;
        if let Some(e) = out.error {
            return Err(e);
        }
        // Resources a crashed run made but could not record: recorded now, so that the
        // next run finds them by id too.
        for r in crate::resources::records::missing(&d) {
            aws.record(id, r.role, &r.id).await?;
        }
        let applied: Vec<_> = out
            .applied
            .iter()
            .map(|a| json!({"resource": a.resource, "change": a.change, "id": a.id}))
            .collect();

        let mut done = BTreeMap::new();
        if !wanted.is_empty() {
            let site = phases::site(aws, ui, id, &d, reach).await?;
            let eip = phases::vpn::pos_public_ip(&d, id).ok();
            done = run_phases(
                &site,
                ui,
                spec,
                restore.as_ref(),
                wanted,
                &args.redo,
                eip.as_deref(),
            )
            .await?;
        }
        let s = summary(aws, spec, &d, done);
        ctx.result(
            json!({"converged": true, "writes": applied.len(), "applied": applied, "summary": s}),
            &render_summary(&s, "provisioned"),
        );
        Ok(())
    })
    .await
}

/// `provision --target`: the remote phases on a host poscloud did not create.
async fn on_target(
    ctx: &Ctx,
    args: &ProvisionArgs,
    spec: &StackSpec,
    reach: &Reach,
    restore: Option<&RestoreSpec>,
    wanted: &[&'static str],
    target: &SshTarget,
) -> Result<()> {
    let ui = &ctx.ui;
    let mut slot = None;
    let site = super::open_site(ctx, reach, &spec.id, "provision", &mut slot).await?;
    ui.info(format!(
        "provision {} on {} (no AWS; stack {})",
        spec.id,
        site.describe(),
        spec.source
    ));
    if args.dry_run {
        let mut states = BTreeMap::new();
        for p in wanted {
            if let Some(st) = site.phase_state(p).await? {
                states.insert(p.to_string(), st);
            }
        }
        let todo = pending(spec, restore, wanted, &states, &args.redo);
        ctx.result(
            json!({"dry_run": true, "target": site.describe(), "phases": todo}),
            &format!(
                "dry run: nothing changed\nremote phases to run on {}: {}\n",
                target.host,
                if todo.is_empty() {
                    "none".into()
                } else {
                    todo.join(", ")
                }
            ),
        );
        return Ok(());
    }
    super::locked_site(&site, ui, args.break_lock, async {
        let done = run_phases(&site, ui, spec, restore, wanted, &args.redo, None).await?;
        let text = format!(
            "provisioned {} on {}\n{}",
            spec.id,
            site.describe(),
            render_phases(&done)
        );
        ctx.result(
            json!({"converged": true, "target": site.describe(), "phases": done}),
            &text,
        );
        Ok(())
    })
    .await
}

/// One line per phase, in the order they run.
fn render_phases(phases: &BTreeMap<String, PhaseState>) -> String {
    phases::PHASES
        .iter()
        .filter_map(|p| phases.get(*p).map(|st| (p, st)))
        .map(|(p, st)| format!("  {p:<15} done {} via {}\n", st.done_at, st.target))
        .collect()
}

fn render_summary(s: &Summary, headline: &str) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut text = format!(
        "{headline}\n  shop            {}\n  env             {}\n  account         {} ({})\n  region          {}\n  instance        {} ({})\n  host public IP  {}\n  POS public IP   {}\n  POS private IP  {}\n  monthly cost    ${:.2}\n",
        s.shop,
        s.env,
        o(&s.account),
        s.credentials,
        s.region,
        o(&s.instance_id),
        o(&s.instance_state),
        o(&s.host_public_ip),
        o(&s.pos_public_ip),
        o(&s.pos_private_ip),
        s.monthly_cost_usd
    );
    text.push_str(&render_phases(&s.phases));
    text
}
