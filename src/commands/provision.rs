//! `provision`: the request from the arguments, `ops::provision`, the report rendered.

use super::request::provision_request;
use super::Ctx;
use crate::cli::ProvisionArgs;
use crate::error::Result;
use crate::ops::provision::{self, Report, Request, Summary, TargetReport};
use crate::ops::{phase_list, plan_text, price_text};
use crate::phases::{Phase, PhaseState};
use crate::spec::StackSpec;
use serde_json::json;
use std::collections::BTreeMap;

pub async fn run(ctx: &Ctx, args: &ProvisionArgs) -> Result<()> {
    let req = provision_request(&ctx.ui, args)?;
    if req.reach.target.is_some() {
        let mut slot = None;
        let site = super::open_site(ctx, &req.reach, &req.spec.id, "provision", &mut slot).await?;
        let r = provision::target(&site, &ctx.ui, &req).await?;
        let (json, text) = target_document(&r, &site.describe(), &req);
        ctx.result(json, &text);
        return Ok(());
    }
    let aws = ctx
        .connect(&super::command_line("provision", &req.spec.id))
        .await?;
    let approve = |id: &_, what: &str| ctx.confirm_prod(id, false, what);
    let r = provision::stack(&aws, &ctx.ui, &approve, &req).await?;
    let (json, text) = document(&r, &req.spec);
    ctx.result(json, &text);
    Ok(())
}

/// The result document and text of a provision (also each row of a batch's JSON).
pub fn document(r: &Report, spec: &StackSpec) -> (serde_json::Value, String) {
    match r {
        Report::DryRun { plan, phases } => (
            json!({"dry_run": true, "plan": plan, "writes": plan.writes(),
                   "phases": phases, "monthly_cost_usd": spec.price}),
            format!(
                "dry run: nothing changed\n{}remote phases to run: {}\n{}",
                plan_text(plan, None),
                phase_list(phases),
                price_text(&spec.price)
            ),
        ),
        Report::Converged { summary } => (
            json!({"converged": true, "writes": 0, "summary": summary}),
            render_summary(summary, "nothing to do: the stack matches its profile"),
        ),
        Report::Provisioned { applied, summary } => {
            let applied: Vec<_> = applied
                .iter()
                .map(|a| json!({"resource": a.resource, "change": a.change, "id": a.id}))
                .collect();
            (
                json!({"converged": true, "writes": applied.len(), "applied": applied, "summary": summary}),
                render_summary(summary, "provisioned"),
            )
        }
    }
}

fn target_document(r: &TargetReport, target: &str, req: &Request) -> (serde_json::Value, String) {
    match r {
        TargetReport::DryRun { phases } => (
            json!({"dry_run": true, "target": target, "phases": phases}),
            format!(
                "dry run: nothing changed\nremote phases to run on {}: {}\n",
                req.reach.target.as_ref().map_or("", |t| t.host.as_str()),
                phase_list(phases)
            ),
        ),
        TargetReport::Provisioned { phases } => (
            json!({"converged": true, "target": target, "phases": phases}),
            format!(
                "provisioned {} on {target}\n{}",
                req.spec.id,
                render_phases(phases)
            ),
        ),
    }
}

/// One line per phase, in the order they run.
fn render_phases(phases: &BTreeMap<Phase, PhaseState>) -> String {
    phases
        .iter()
        .map(|(p, st)| format!("  {:<15} done {} via {}\n", p.name(), st.done_at, st.target))
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
        o(&s.instance_state.as_ref().map(|st| st.to_string())),
        o(&s.host_public_ip),
        o(&s.pos_public_ip),
        o(&s.pos_private_ip),
        s.monthly_cost_usd
    );
    text.push_str(&render_phases(&s.phases));
    text
}
