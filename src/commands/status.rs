//! `status`: the request from the arguments, `ops::status`, the report rendered.

use super::Ctx;
use crate::cli::StatusArgs;
use crate::error::Result;
use crate::ops::status::{self, ResourceStatus, StatusReport};
use crate::phases::Phase;
use crate::plan::resource_label;
use crate::spec::{StackId, StackSpec};
use serde_json::json;
use std::fmt::Write;

/// `status`: every resource of the stack with its state, and drift against the profile.
pub async fn run(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    let id = args.stack.id();
    let spec = StackSpec::load(id.clone(), args.stack.stack.as_deref(), None)?;
    let aws = ctx.connect(&super::command_line("status", &id)).await?;
    let r = status::status(&aws, &spec).await?;
    ctx.pending.set(r.pending());
    ctx.result(document(&r, &id), &text(&r, &id));
    Ok(())
}

fn document(r: &StatusReport, id: &StackId) -> serde_json::Value {
    let resources: Vec<_> = r
        .resources
        .iter()
        .map(|res| {
            // `state` stays what it was: an instance state, an address, ok or missing.
            let state = match (res.status, res.detail.is_empty()) {
                (ResourceStatus::Missing, _) => "missing".to_string(),
                (_, false) => res.detail.clone(),
                _ => "ok".to_string(),
            };
            let drift = match res.status {
                ResourceStatus::Missing => vec!["missing".to_string()],
                _ => res.findings.clone(),
            };
            json!({"resource": res.role, "id": res.id, "state": state,
                   "status": res.status, "drift": drift})
        })
        .collect();
    let phases: serde_json::Map<_, _> = r
        .phases
        .iter()
        .map(|(p, st)| (p.to_string(), json!(st)))
        .collect();
    json!({
        "shop": id.shop.as_str(), "env": id.env.as_str(), "region": r.region, "account": r.account,
        "exists": r.exists, "resources": resources, "phases": phases, "duplicates": r.duplicates,
        "lock": r.lock, "drifted": r.count(ResourceStatus::Drifted),
        "missing": r.count(ResourceStatus::Missing), "findings": r.findings(),
    })
}

fn text(r: &StatusReport, id: &StackId) -> String {
    let ids: Vec<String> = r
        .resources
        .iter()
        .map(|res| res.id.clone().unwrap_or_else(|| "-".into()))
        .collect();
    let idw = ids.iter().map(String::len).max().unwrap_or(0);
    // The phase rows below share the label column.
    let lw = r
        .resources
        .iter()
        .map(|res| resource_label(res.role).len())
        .chain(Phase::ALL.iter().map(|p| "phase ".len() + p.name().len()))
        .max()
        .unwrap_or(0);
    let mut text = format!("status of {id} in {}:\n", r.whereabouts);
    for (res, rid) in r.resources.iter().zip(&ids) {
        let line = format!(
            "  {:<lw$} {rid:<idw$} {:<7} {}",
            resource_label(res.role),
            res.status.as_str(),
            res.detail
        );
        let _ = writeln!(text, "{}", line.trim_end());
        for f in &res.findings {
            let _ = writeln!(text, "      ! {f}");
        }
    }
    for (p, st) in &r.phases {
        let label = format!("phase {p}");
        let _ = match st {
            Some(st) => writeln!(
                text,
                "  {label:<lw$} done {} by {} via {}",
                st.done_at, st.by, st.target
            ),
            None => writeln!(text, "  {label:<lw$} not run"),
        };
    }
    for x in &r.duplicates {
        let _ = writeln!(text, "  ! duplicate: {x}");
    }
    if let Some(h) = &r.lock {
        let _ = writeln!(text, "  locked by {h}");
    }
    let (drifted, missing) = (
        r.count(ResourceStatus::Drifted),
        r.count(ResourceStatus::Missing),
    );
    let mut parts = Vec::new();
    if drifted > 0 {
        parts.push(format!(
            "{drifted} resource(s) drifted ({} finding(s))",
            r.findings()
        ));
    }
    if missing > 0 {
        parts.push(format!(
            "{missing} of {} resource(s) missing",
            r.resources.len()
        ));
    }
    if !r.duplicates.is_empty() {
        parts.push(format!("{} duplicate(s)", r.duplicates.len()));
    }
    if parts.is_empty() {
        let _ = writeln!(text, "no drift: {} resource(s) ok", r.resources.len());
    } else {
        let _ = writeln!(
            text,
            "{}: `poscloud provision` fixes the `needs:` ones; the others are in docs/runbooks/reports.md (drift)",
            parts.join(", ")
        );
    }
    text
}
