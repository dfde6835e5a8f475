//! `quota show|request`: the region's VPC and Elastic IP quotas, and increase requests.

use super::Ctx;
use crate::aws::quotas::{QuotaKind, QuotaRequest};
use crate::cli::{QuotaCommand, QuotaRequestArgs};
use crate::error::Result;
use crate::ops::quota::{self, Outcome};
use serde_json::json;
use std::fmt::Write;

pub async fn run(ctx: &Ctx, command: &QuotaCommand) -> Result<()> {
    match command {
        QuotaCommand::Show => show(ctx).await,
        QuotaCommand::Request(a) => request(ctx, a).await,
    }
}

fn request_text(r: &QuotaRequest) -> String {
    let mut t = format!("to {} {} (request {}", r.desired, r.status, r.id);
    if let Some(c) = &r.case_id {
        let _ = write!(t, ", support case {c}");
    }
    if let Some(at) = r.created {
        let _ = write!(t, ", filed {at}");
    }
    t.push(')');
    t
}

async fn show(ctx: &Ctx) -> Result<()> {
    let aws = ctx.connect("quota show").await?;
    let shown = quota::show(&aws).await?;
    let mut text = format!(
        "{:<20} {:<15} {:>5} {:<8} {:>6} {:>4} {:>11}  {}\n",
        "QUOTA", "CODE", "VALUE", "SOURCE", "IN USE", "FREE", "STACKS MORE", "REQUESTS"
    );
    for q in &shown.quotas {
        // The open requests, else the newest decided one (--output json has them all).
        let open: Vec<String> = q
            .requests
            .iter()
            .filter(|r| r.open)
            .map(request_text)
            .collect();
        let requests = match (open.is_empty(), q.requests.first()) {
            (false, _) => open.join("; "),
            (true, Some(last)) => request_text(last),
            (true, None) => "-".to_string(),
        };
        let _ = writeln!(
            text,
            "{:<20} {:<15} {:>5} {:<8} {:>6} {:>4} {:>11}  {requests}",
            q.quota.name,
            format!("{}/{}", q.quota.service, q.quota.code),
            q.quota.value,
            q.quota.source,
            q.in_use,
            q.free,
            q.stacks_more,
        );
    }
    ctx.ui.info(format!("quotas in {}:", aws.at));
    ctx.result(
        json!({"region": shown.region, "account": shown.account, "quotas": shown.quotas}),
        &text,
    );
    Ok(())
}

async fn request(ctx: &Ctx, a: &QuotaRequestArgs) -> Result<()> {
    // clap requires at least one of them (and each a number in range).
    let wants: Vec<(QuotaKind, u32)> = [(QuotaKind::Vpcs, a.vpcs), (QuotaKind::Eips, a.eips)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let aws = ctx.connect("quota request").await?;
    let done = quota::request(&aws, &wants).await?;
    let mut text = String::new();
    for d in &done {
        let (what, r) = match &d.outcome {
            Outcome::Filed(r) => ("requested", r),
            Outcome::AlreadyOpen(r) => ("already open, nothing filed:", r),
        };
        let _ = writeln!(
            text,
            "{} ({}/{}) in {}, now {} ({}): {what} {}",
            d.quota.name,
            d.quota.service,
            d.quota.code,
            aws.region,
            d.quota.value,
            d.quota.source,
            request_text(r)
        );
    }
    text.push_str(&format!(
        "AWS decides each request (some at once, others after a support case); `{}` shows their status\n",
        aws.quota_command("show", "")
    ));
    ctx.result(json!({"region": aws.region, "requests": done}), &text);
    Ok(())
}
