use super::Ctx;
use crate::error::Result;
use crate::phases::Phase;
use crate::report;
use serde_json::json;
use std::fmt::Write;

/// `list`: one line per shop+env found in the region.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let profiles = super::request::profiles(None)?;
    let (writes, _) = report::read_journal(ctx.global.journal.as_deref())?;
    let now = std::time::SystemTime::now();
    let month = report::month_window(&report::this_month(now), now)?;
    let aws = ctx.connect("list").await?;
    let stacks = aws.list_stacks().await?;
    let mut text = format!(
        "{:<10} {:<5} {:<21} {:<10} {:<10} {:<20} {:>7} {:<12} {:<3} {:<15} {}\n",
        "SHOP",
        "ENV",
        "INSTANCE",
        "STATE",
        "TYPE",
        "LAUNCHED",
        "RUN H",
        "PHASES",
        "VPN",
        "HOST IP",
        "POS IP"
    );
    let mut rows = Vec::new();
    for (id, s) in &stacks {
        // Running hours this month: the journal's starts and stops plus EC2's latest ones.
        let spec = crate::ops::report::profile_for(&profiles, id);
        let hours = report::usage(id, &writes, Some(s), &spec, month).running_hours;
        // Done out of the provision phases, and the furthest one.
        let done: Vec<&str> = Phase::ALL
            .iter()
            .map(|p| p.name())
            .filter(|p| s.phases.iter().any(|d| d == p))
            .collect();
        let phases = match done.last() {
            Some(last) => format!("{}/{} {last}", done.len(), Phase::ALL.len()),
            None => "-".into(),
        };
        let _ = writeln!(
            text,
            "{:<10} {:<5} {:<21} {:<10} {:<10} {:<20} {:>7.1} {:<12} {:<3} {:<15} {}",
            id.shop.as_str(),
            id.env.as_str(),
            s.instance.as_deref().unwrap_or("-"),
            s.state.as_ref().map_or("-", |s| s.as_str()),
            s.instance_type.as_deref().unwrap_or("-"),
            s.launch_time.map_or("-".into(), |t| t.to_string()),
            hours,
            phases,
            s.vpn_locations,
            s.host_ip.as_deref().unwrap_or("-"),
            s.pos_ip.as_deref().unwrap_or("-")
        );
        let mut row = serde_json::to_value(s).expect("json");
        row["shop"] = json!(id.shop.as_str());
        row["env"] = json!(id.env.as_str());
        row["running_hours_this_month"] = json!(hours);
        rows.push(row);
    }
    let at = aws.whereabouts().await?;
    if stacks.is_empty() {
        text = format!("no poscloud stacks in {at}\n");
    } else {
        ctx.ui.info(format!("poscloud stacks in {at}:"));
    }
    ctx.result(
        json!({"region": aws.region, "account": at.account.get(), "stacks": rows}),
        &text,
    );
    Ok(())
}
