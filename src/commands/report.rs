use super::Ctx;
use crate::aws::ssm::host_key_name;
use crate::cli::{BillingArgs, ComplianceArgs, ReportCommand};
use crate::error::{Error, Result};
use crate::phases::{phase_state, vpn};
use crate::report::{self, Status, Usage};
use crate::spec::{Env, StackId, StackSpec};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::SystemTime;

pub async fn run(ctx: &Ctx, command: &ReportCommand) -> Result<()> {
    match command {
        ReportCommand::Billing(a) => billing(ctx, a).await,
        ReportCommand::Compliance(a) => compliance(ctx, a).await,
    }
}

/// Each env's profile (or the one given for all), loaded before any AWS call so that a bad
/// file is an error up front. Prices, disk size and admin CIDRs do not depend on the shop.
pub(super) fn profiles(stack: Option<&str>) -> Result<BTreeMap<Env, StackSpec>> {
    let mut out = BTreeMap::new();
    for env in [Env::Prod, Env::Qa, Env::Dev] {
        let id = StackId {
            shop: "00000000".parse().expect("shop code"),
            env,
        };
        out.insert(env, StackSpec::load(id, stack, None)?);
    }
    Ok(out)
}

/// The profile for one stack: the env's, named for the stack.
pub(super) fn profile_for(profiles: &BTreeMap<Env, StackSpec>, id: &StackId) -> StackSpec {
    let mut spec = profiles[&id.env].clone();
    spec.id = id.clone();
    spec
}

async fn billing(ctx: &Ctx, a: &BillingArgs) -> Result<()> {
    let now = SystemTime::now();
    let month = a.month.clone().unwrap_or_else(|| report::this_month(now));
    let window = report::month_window(&month, now)?;
    let profiles = profiles(a.stack.as_deref())?;
    let (writes, skipped) = report::read_journal(ctx.global.journal.as_deref())?;
    if skipped > 0 {
        ctx.ui.warn(format!(
            "{skipped} journal line(s) could not be read and were left out"
        ));
    }
    let aws = ctx.connect("report billing").await?;
    let live = aws.list_stacks().await?;
    let ids: BTreeSet<StackId> = live
        .keys()
        .cloned()
        .chain(writes.iter().map(|w| w.id.clone()))
        .collect();
    let rows: Vec<Usage> = ids
        .iter()
        .map(|id| {
            report::usage(
                id,
                &writes,
                live.get(id),
                &profile_for(&profiles, id),
                window,
            )
        })
        .filter(|u| live.contains_key(&id_of(u)) || u.total_usd > 0.0 || u.running_hours > 0.0)
        .collect();
    // `+ 0.0`: an empty sum is -0.0, which would print as "-0.00".
    let sum =
        |f: fn(&Usage) -> f64| (rows.iter().map(f).sum::<f64>() * 100.0).round() / 100.0 + 0.0;
    let totals = json!({
        "running_hours": sum(|u| u.running_hours),
        "instance_usd": sum(|u| u.instance_usd),
        "ebs_usd": sum(|u| u.ebs_usd),
        "public_ipv4_usd": sum(|u| u.public_ipv4_usd),
        "total_usd": sum(|u| u.total_usd),
    });
    let period = format!(
        "{} to {}",
        humantime::format_rfc3339_seconds(window.0),
        humantime::format_rfc3339_seconds(window.1)
    );
    let text = if a.csv {
        csv(&rows, &totals)
    } else {
        table(&month, &period, &rows, &totals)
    };
    ctx.result(
        json!({"month": month, "period": period, "currency": "USD", "region": aws.region,
               "stacks": rows, "totals": totals}),
        &text,
    );
    Ok(())
}

fn id_of(u: &Usage) -> StackId {
    StackId {
        shop: u.shop.parse().expect("shop code from a StackId"),
        env: u.env.parse().expect("env from a StackId"),
    }
}

const HEADER: [&str; 10] = [
    "shop",
    "env",
    "instance_type",
    "running_hours",
    "volume_hours",
    "public_ipv4_hours",
    "instance_usd",
    "ebs_usd",
    "public_ipv4_usd",
    "total_usd",
];

/// A row's values, formatted once for both the table and the CSV.
fn cells(u: &Usage) -> [String; 10] {
    let f = |v: f64| format!("{v:.2}");
    [
        u.shop.clone(),
        u.env.clone(),
        u.instance_type.clone(),
        f(u.running_hours),
        f(u.volume_hours),
        f(u.public_ipv4_hours),
        f(u.instance_usd),
        f(u.ebs_usd),
        f(u.public_ipv4_usd),
        f(u.total_usd),
    ]
}

fn total_cells(totals: &serde_json::Value) -> [String; 10] {
    let t = |k: &str| format!("{:.2}", totals[k].as_f64().unwrap_or(0.0));
    let e = String::new;
    [
        "TOTAL".into(),
        e(),
        e(),
        t("running_hours"),
        e(),
        e(),
        t("instance_usd"),
        t("ebs_usd"),
        t("public_ipv4_usd"),
        t("total_usd"),
    ]
}

fn csv(rows: &[Usage], totals: &serde_json::Value) -> String {
    let mut out = format!("{}\n", HEADER.join(","));
    for r in rows.iter().map(cells).chain([total_cells(totals)]) {
        let _ = writeln!(out, "{}", r.join(","));
    }
    out
}

fn table(month: &str, period: &str, rows: &[Usage], totals: &serde_json::Value) -> String {
    let mut out = format!("billing {month} ({period}), USD on-demand\n");
    if rows.is_empty() {
        out.push_str("no poscloud stack ran in this period (by this journal and region)\n");
        return out;
    }
    const WIDTH: [usize; 10] = [10, 5, 10, 8, 8, 8, 10, 8, 8, 10];
    let head = [
        "SHOP", "ENV", "TYPE", "RUN H", "DISK H", "IPV4 H", "INSTANCE", "EBS", "IPV4", "TOTAL",
    ];
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(WIDTH).enumerate() {
            // Names left, figures right.
            let _ = if i < 3 {
                write!(l, "{c:<w$} ")
            } else {
                write!(l, "{c:>w$} ")
            };
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&head.map(String::from)));
    for r in rows.iter().map(cells).chain([total_cells(totals)]) {
        let _ = writeln!(out, "{}", line(&r));
    }
    for u in rows.iter().filter(|u| !u.notes.is_empty()) {
        for n in &u.notes {
            let _ = writeln!(out, "note: {} {}: {n}", u.shop, u.env);
        }
    }
    out
}

async fn compliance(ctx: &Ctx, a: &ComplianceArgs) -> Result<()> {
    let profiles = profiles(a.stack.as_deref())?;
    let aws = ctx.connect("report compliance").await?;
    let now = SystemTime::now();
    let ids: Vec<StackId> = aws
        .list_stacks()
        .await?
        .into_keys()
        .filter(|id| a.shop.as_ref().is_none_or(|s| *s == id.shop))
        .filter(|id| a.env.is_none_or(|e| e == id.env))
        .collect();
    let (mut rows, mut text, mut failing) = (Vec::new(), String::new(), 0);
    for id in &ids {
        let step = ctx.ui.step(format!("compliance: {id}"));
        let d = aws.discover(id).await?;
        let locations = vpn::locations(&aws, id).await?;
        let bootstrap = phase_state(&aws, id, "bootstrap").await?;
        let host_key = aws.get_param(&host_key_name(id)).await?;
        step.done("");
        let spec = profile_for(&profiles, id);
        let checks = report::compliance(&report::Evidence {
            d: &d,
            spec: &spec,
            vpn: &locations,
            bootstrap: bootstrap.as_ref(),
            host_key: host_key.as_deref(),
            now,
            max_psk_age: *a.max_psk_age,
            max_patch_age: *a.max_patch_age,
        });
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.rule)
            .collect();
        failing += usize::from(!failed.is_empty());
        let versions = report::host_versions(bootstrap.as_ref());
        let _ = writeln!(
            text,
            "{id}: {}",
            if failed.is_empty() { "pass" } else { "FAIL" }
        );
        for c in &checks {
            let mark = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Na => "n/a ",
            };
            let _ = writeln!(text, "  {mark}  {:<23} {}", c.rule, c.detail);
        }
        if !versions.is_null() {
            let v = |k: &str| versions[k].as_str().unwrap_or("?").to_string();
            let _ = writeln!(
                text,
                "  host: docker {}, strongSwan {}, kernel {}, SSM agent {}{}",
                v("docker"),
                v("strongswan"),
                v("kernel"),
                v("ssm_agent"),
                if versions["reboot_required"] == true {
                    " (reboot required for the new kernel)"
                } else {
                    ""
                }
            );
        }
        rows.push(
            json!({"shop": id.shop.as_str(), "env": id.env.as_str(), "ok": failed.is_empty(),
                         "failed": failed, "checks": checks, "host": versions}),
        );
    }
    let _ = writeln!(
        text,
        "{} stack(s) checked, {failing} failing{}",
        ids.len(),
        if ids.is_empty() {
            format!(" (no poscloud stacks in {})", aws.region)
        } else {
            String::new()
        }
    );
    ctx.result(
        json!({"region": aws.region, "rules": report::RULES, "stacks": rows, "failing": failing}),
        &text,
    );
    if failing > 0 {
        return Err(Error::Reported(format!(
            "{failing} stack(s) fail a compliance rule"
        )));
    }
    Ok(())
}
