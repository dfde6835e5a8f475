use super::Ctx;
use crate::aws::tags::Role;
use crate::cli::StackArgs;
use crate::error::Result;
use crate::plan::{self, resource_label, Action};
use crate::spec::StackSpec;
use serde_json::json;
use std::fmt::Write;

/// `status`: every resource of the stack with its state, and drift against the profile.
pub async fn run(ctx: &Ctx, args: &StackArgs) -> Result<()> {
    let id = args.id();
    let spec = StackSpec::load(id.clone(), args.stack.as_deref(), None)?;
    let aws = ctx.connect(&super::command_line("status", &id)).await?;
    let d = aws.discover(&id).await?;
    let lock = crate::lock::holder_in(&d, &id)?;
    let plan = plan::build(&spec, &d, &aws.region);

    let mut resources = Vec::new();
    let mut text = format!("status of {id} in {}:\n", aws.region);
    let mut drifted = 0;
    for st in &plan.steps {
        let state = match (st.resource, st.action) {
            (_, Action::Create) => "missing".to_string(),
            (Role::Host, _) => d.instance().map(|i| i.state.clone()).unwrap_or_default(),
            (Role::EipHost | Role::EipPos, _) => d
                .eip(st.resource)
                .map(|e| e.public_ip.clone())
                .unwrap_or_default(),
            (Role::EniPos, _) => d
                .eni_pos()
                .and_then(|e| e.private_ip.clone())
                .unwrap_or_default(),
            _ => "ok".to_string(),
        };
        let mut drift: Vec<String> = st.changes.iter().map(|c| format!("needs: {c}")).collect();
        drift.extend(st.drift.iter().cloned());
        if st.action == Action::Create {
            drift = vec!["missing".into()];
        }
        if !drift.is_empty() {
            drifted += 1;
        }
        let _ = writeln!(
            text,
            "  {:<20} {:<27} {}",
            resource_label(st.resource),
            st.id.as_deref().unwrap_or("-"),
            state
        );
        for x in &drift {
            if x != "missing" {
                let _ = writeln!(text, "      ! {x}");
            }
        }
        resources.push(json!({
            "resource": st.resource, "id": st.id, "state": state, "drift": drift,
        }));
    }
    let mut phases = serde_json::Map::new();
    for p in crate::phases::RECORDED {
        match crate::phases::phase_state_in(&d, &id, p) {
            Some(st) => {
                let _ = writeln!(
                    text,
                    "  phase {p:<14} done {} by {} via {}",
                    st.done_at, st.by, st.target
                );
                phases.insert(p.to_string(), serde_json::to_value(&st).expect("json"));
            }
            None => {
                let _ = writeln!(text, "  phase {p:<14} not run");
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
    let exists = !d.is_empty();
    let _ = writeln!(
        text,
        "{}",
        if !exists {
            "the stack does not exist".to_string()
        } else if drifted == 0 && dups.is_empty() {
            "no drift".to_string()
        } else {
            format!(
                "{drifted} resource(s) drifted or missing: `poscloud provision` fixes what it can"
            )
        }
    );
    ctx.result(
        json!({
            "shop": id.shop.as_str(), "env": id.env.as_str(), "region": aws.region,
            "exists": exists, "resources": resources, "phases": phases, "duplicates": dups, "lock": lock,
            "drifted": drifted,
        }),
        &text,
    );
    Ok(())
}
