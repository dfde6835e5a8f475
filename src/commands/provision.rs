use super::{locked, render_plan, render_price, Ctx};
use crate::aws::discover::Discovered;
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::cli::{ProvisionArgs, ReachArgs, Transport, Until};
use crate::error::{Error, Result};
use crate::phases::{self, bootstrap, stage, PhaseState, Reach};
use crate::plan::{self, resource_label, Change};
use crate::remote::ssh::{PinnedKey, SshTarget};
use crate::spec::StackSpec;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub shop: String,
    pub env: String,
    pub region: String,
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
        instance_id: d.instance().map(|i| i.id.clone()),
        instance_state: d.instance().map(|i| i.state.clone()),
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
    Ok(Reach {
        ssh,
        force_ssh: args.transport == Transport::Ssh,
        ssh_key: args.ssh_key.clone(),
        host_key,
        check_ssm_online: !args.no_ssm_online_check,
    })
}

/// `provision`: discover, plan, preflight, lock, create what is missing, run the remote
/// phases up to `--until`, summarise.
pub async fn run(ctx: &Ctx, args: &ProvisionArgs) -> Result<()> {
    let ui = &ctx.ui;
    let id = args.stack.id();
    let spec = StackSpec::load(id.clone(), args.stack.stack.as_deref(), args.size)?;
    let reach = reach(&args.reach)?;
    let aws = ctx.connect(&super::command_line("provision", &id)).await?;
    crate::userdata::encode(&spec, &aws.region)?;
    ui.info(format!(
        "provision {id} in {} (stack {})",
        aws.region, spec.source
    ));

    let d = aws.discover(&id).await?;
    let plan = plan::build(&spec, &d, &aws.region);
    // Remote phases up to --until; stage only for stacks with a [pos] section.
    let mut wanted: Vec<&str> = Vec::new();
    if args.until >= Until::Bootstrap {
        wanted.push("bootstrap");
    }
    if args.until >= Until::Stage {
        if spec.pos.is_some() {
            wanted.push("stage");
        } else {
            ui.info(format!(
                "stage: skipped, {} has no [pos] section (app, image, artifact)",
                spec.source
            ));
        }
    }
    let redo = |p: &str| args.redo.iter().any(|r| r.name() == p);
    // Phases recorded as done (read once), and those still to run.
    let mut done = BTreeMap::new();
    let mut pending = Vec::new();
    for p in &wanted {
        match phases::phase_state(&aws, &id, p).await? {
            Some(st) if !redo(p) => {
                done.insert(p.to_string(), st);
            }
            _ => pending.push(*p),
        }
    }

    if args.dry_run {
        let text = format!(
            "dry run: nothing changed\n{}remote phases to run: {}\n{}",
            render_plan(&plan, None),
            if pending.is_empty() {
                "none".to_string()
            } else {
                pending.join(", ")
            },
            render_price(&spec.price)
        );
        ctx.result(
            json!({"dry_run": true, "plan": plan, "writes": plan.writes(),
                   "phases": pending, "monthly_cost_usd": spec.price}),
            &text,
        );
        return Ok(());
    }
    if plan.writes() == 0 && pending.is_empty() {
        if args.break_lock {
            crate::lock::break_lock(&aws, ui, &id).await?;
        } else if let Some(h) = crate::lock::holder(&aws, &id).await? {
            ui.warn(format!("{id} is locked by {h}"));
        }
        ui.info(render_plan(&plan, None));
        for (p, st) in &done {
            ui.info(format!("{p}: done at {} by {}", st.done_at, st.by));
        }
        let s = summary(&aws, &spec, &d, done);
        ctx.result(
            json!({"converged": true, "writes": 0, "summary": s}),
            &render_summary(&s, "nothing to do: the stack matches its profile"),
        );
        return Ok(());
    }

    // Preflight, before any write (the lock included): the image and the region's quotas.
    let step = ui.step("preflight: image and quotas");
    let image = if plan.count(|c| matches!(c, Change::Launch { .. })) > 0 {
        Some(aws.find_image(&spec.ami).await?)
    } else {
        None
    };
    aws.check_quotas(
        plan.count(|c| matches!(c, Change::CreateVpc { .. })),
        plan.count(|c| matches!(c, Change::AllocateEip { .. })),
        spec.vpc_quota,
    )
    .await?;
    step.done(image.as_ref().map(|i| i.id.as_str()).unwrap_or(""));

    locked(&aws, ui, &id, args.break_lock, async {
        // The stack may have changed while we waited for the lock: look again.
        let mut d = aws.discover(&id).await?;
        let dups = d.duplicates();
        if !dups.is_empty() {
            return Err(Error::failed(format!(
                "{id} holds duplicates, which provision will not guess between: {}\n  next: `poscloud teardown` the stack and provision again",
                dups.join("; ")
            )));
        }
        let plan = plan::build(&spec, &d, &aws.region);
        ui.info(render_plan(&plan, None));
        let image = match image {
            None if plan.count(|c| matches!(c, Change::Launch { .. })) > 0 => {
                Some(aws.find_image(&spec.ami).await?)
            }
            image => image,
        };

        let mut applied = Vec::new();
        for st in &plan.steps {
            for change in &st.changes {
                let step = ui.step(format!("{}: {change}", resource_label(st.resource)));
                match crate::apply::apply(&aws, &spec, image.as_ref(), &mut d, change).await {
                    Ok(rid) => {
                        step.done(&rid);
                        applied.push(json!({"resource": st.resource, "change": change, "id": rid}));
                    }
                    Err(e) => {
                        step.failed();
                        return Err(e);
                    }
                }
            }
        }

        let mut done = BTreeMap::new();
        if !wanted.is_empty() {
            let remote = phases::remote(&aws, ui, &id, &d, &reach).await?;
            for p in &wanted {
                let st = match *p {
                    "bootstrap" => bootstrap::run(&aws, ui, &id, &remote, redo(p)).await?,
                    _ => stage::run(&aws, ui, &spec, &remote, redo(p)).await?,
                };
                done.insert(p.to_string(), st);
            }
        }
        let s = summary(&aws, &spec, &d, done);
        ctx.result(
            json!({"converged": true, "writes": applied.len(), "applied": applied, "summary": s}),
            &render_summary(&s, "provisioned"),
        );
        Ok(())
    })
    .await
}

fn render_summary(s: &Summary, headline: &str) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut text = format!(
        "{headline}\n  shop            {}\n  env             {}\n  region          {}\n  instance        {} ({})\n  host public IP  {}\n  POS public IP   {}\n  POS private IP  {}\n  monthly cost    ${:.2}\n",
        s.shop,
        s.env,
        s.region,
        o(&s.instance_id),
        o(&s.instance_state),
        o(&s.host_public_ip),
        o(&s.pos_public_ip),
        o(&s.pos_private_ip),
        s.monthly_cost_usd
    );
    for (name, st) in &s.phases {
        text.push_str(&format!(
            "  {name:<15} done {} via {}\n",
            st.done_at, st.target
        ));
    }
    text
}
