use super::Ctx;
use crate::error::Result;
use crate::phases::PHASES;
use serde_json::json;
use std::fmt::Write;

/// `list`: one line per shop+env found in the region.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let aws = ctx.connect("list").await?;
    let stacks = aws.list_stacks().await?;
    let mut text = format!(
        "{:<10} {:<5} {:<21} {:<10} {:<10} {:<20} {:<12} {:<3} {}\n",
        "SHOP", "ENV", "INSTANCE", "STATE", "TYPE", "LAUNCHED", "PHASES", "VPN", "PUBLIC IPS"
    );
    let mut rows = Vec::new();
    for (id, s) in &stacks {
        // Done out of the provision phases, and the furthest one.
        let done: Vec<&str> = PHASES
            .iter()
            .copied()
            .filter(|p| s.phases.iter().any(|d| d == p))
            .collect();
        let phases = match done.last() {
            Some(last) => format!("{}/{} {last}", done.len(), PHASES.len()),
            None => "-".into(),
        };
        let _ = writeln!(
            text,
            "{:<10} {:<5} {:<21} {:<10} {:<10} {:<20} {:<12} {:<3} {}",
            id.shop.as_str(),
            id.env.as_str(),
            s.instance.as_deref().unwrap_or("-"),
            s.state.as_deref().unwrap_or("-"),
            s.instance_type.as_deref().unwrap_or("-"),
            s.launch_time.as_deref().unwrap_or("-"),
            phases,
            s.vpn_locations,
            if s.public_ips.is_empty() {
                "-".to_string()
            } else {
                s.public_ips.join(",")
            }
        );
        let mut row = serde_json::to_value(s).expect("json");
        row["shop"] = json!(id.shop.as_str());
        row["env"] = json!(id.env.as_str());
        rows.push(row);
    }
    if stacks.is_empty() {
        text = format!("no poscloud stacks in {}\n", aws.region);
    }
    ctx.result(json!({"region": aws.region, "stacks": rows}), &text);
    Ok(())
}
