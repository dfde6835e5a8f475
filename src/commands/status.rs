use super::Ctx;
use crate::aws::tags::Role;
use crate::cli::StatusArgs;
use crate::error::{Error, Result};
use crate::plan::{self, resource_label, Action};
use crate::spec::StackSpec;
use serde_json::json;
use std::fmt::Write;

/// `status`: every resource of the stack with its state, and drift against the profile.
pub async fn run(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    let id = args.stack.id();
    let spec = StackSpec::load(id.clone(), args.stack.stack.as_deref(), None)?;
    let aws = ctx.connect(&super::command_line("status", &id)).await?;
    let d = aws.discover(&id).await?;
    // Nothing at all of it here (no resource, no record): most likely the wrong env (prod is
    // the default). A list of `missing` would look like a stack to build; say where it is.
    if d.is_empty() && d.parameters.is_empty() {
        let elsewhere: Vec<String> = aws
            .envs_of(&id.shop)
            .await?
            .into_iter()
            .filter(|e| *e != id.env)
            .map(|e| e.to_string())
            .collect();
        let shop = id.shop.as_str();
        let msg = format!(
            "shop {shop} has no {} stack in {}",
            id.env,
            aws.whereabouts().await?
        );
        return Err(Error::failed(match elsewhere.first() {
            Some(e) => format!(
                "{msg}; it exists in: {} (run with --env {e})",
                elsewhere.join(", ")
            ),
            None => format!("{msg}, nor in any other env there (is the region right?)"),
        }));
    }
    let lock = crate::lock::holder_in(&d, &id)?;
    let plan = plan::build(&spec, &d, &aws.region);

    // One row per resource: ok, drifted (what provision would change, and what it leaves to a
    // person, listed under it) or missing; beside it what the instance or address is.
    struct Row {
        label: &'static str,
        id: String,
        status: &'static str,
        detail: String,
        findings: Vec<String>,
    }
    let mut rows = Vec::new();
    let mut resources = Vec::new();
    for st in &plan.steps {
        let detail = match st.resource {
            Role::Host => d.instance().map(|i| i.state.to_string()),
            Role::EipHost | Role::EipPos => d.eip(st.resource).map(|e| e.public_ip.clone()),
            Role::EniPos => d.eni_pos().and_then(|e| e.private_ip.clone()),
            _ => None,
        }
        .unwrap_or_default();
        let mut findings: Vec<String> = st.changes.iter().map(|c| format!("needs: {c}")).collect();
        findings.extend(st.drift.iter().cloned());
        let status = match st.action {
            Action::Create => {
                findings.clear();
                "missing"
            }
            _ if findings.is_empty() => "ok",
            _ => "drifted",
        };
        // The JSON's `state` stays what it was (an instance state, an address, ok, missing).
        let state = match (status, detail.is_empty()) {
            ("missing", _) => "missing".to_string(),
            (_, false) => detail.clone(),
            _ => "ok".to_string(),
        };
        let drift = if status == "missing" {
            vec!["missing".to_string()]
        } else {
            findings.clone()
        };
        resources.push(json!({
            "resource": st.resource, "id": st.id, "state": state, "status": status, "drift": drift,
        }));
        rows.push(Row {
            label: resource_label(st.resource),
            id: st.id.clone().unwrap_or_else(|| "-".into()),
            status,
            detail,
            findings,
        });
    }
    let idw = rows.iter().map(|r| r.id.len()).max().unwrap_or(0);
    // The phase rows below share the label column.
    let lw = rows
        .iter()
        .map(|r| r.label.len())
        .chain(
            crate::phases::Phase::ALL
                .iter()
                .map(|p| "phase ".len() + p.name().len()),
        )
        .max()
        .unwrap_or(0);
    let mut text = format!("status of {id} in {}:\n", aws.whereabouts().await?);
    for r in &rows {
        let line = format!(
            "  {:<lw$} {:<idw$} {:<7} {}",
            r.label, r.id, r.status, r.detail
        );
        let _ = writeln!(text, "{}", line.trim_end());
        for f in &r.findings {
            let _ = writeln!(text, "      ! {f}");
        }
    }
    let mut phases = serde_json::Map::new();
    for p in crate::phases::Phase::ALL {
        match crate::phases::phase_state_in(&d, &id, p) {
            Some(st) => {
                let _ = writeln!(
                    text,
                    "  {:<lw$} done {} by {} via {}",
                    format!("phase {p}"),
                    st.done_at,
                    st.by,
                    st.target
                );
                phases.insert(p.to_string(), serde_json::to_value(&st).expect("json"));
            }
            None => {
                let _ = writeln!(text, "  {:<lw$} not run", format!("phase {p}"));
                phases.insert(p.to_string(), serde_json::Value::Null);
            }
        }
    }
    let dups = d.duplicates();
    for x in &dups {
        let _ = writeln!(text, "  ! duplicate: {x}");
    }
    if let Some(h) = &lock {
        let _ = writeln!(text, "  locked by {h}");
    }
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    let (drifted, missing) = (count("drifted"), count("missing"));
    let findings: usize = rows.iter().map(|r| r.findings.len()).sum();
    let exists = !d.is_empty();
    let mut parts = Vec::new();
    if drifted > 0 {
        parts.push(format!(
            "{drifted} resource(s) drifted ({findings} finding(s))"
        ));
    }
    if missing > 0 {
        parts.push(format!("{missing} of {} resource(s) missing", rows.len()));
    }
    if !dups.is_empty() {
        parts.push(format!("{} duplicate(s)", dups.len()));
    }
    let summary = if parts.is_empty() {
        format!("no drift: {} resource(s) ok", rows.len())
    } else {
        format!(
            "{}: `poscloud provision` fixes the `needs:` ones; the others are in docs/runbooks/reports.md (drift)",
            parts.join(", ")
        )
    };
    let _ = writeln!(text, "{summary}");
    ctx.pending.set(!parts.is_empty());
    ctx.result(
        json!({
            "shop": id.shop.as_str(), "env": id.env.as_str(), "region": aws.region, "account": aws.at.account.get(),
            "exists": exists, "resources": resources, "phases": phases, "duplicates": dups, "lock": lock,
            "drifted": drifted, "missing": missing, "findings": findings,
        }),
        &text,
    );
    Ok(())
}
