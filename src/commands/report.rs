use super::request::profiles;
use super::Ctx;
use crate::cli::{BillingArgs, ComplianceArgs, PerformanceArgs, ReportCommand};
use crate::error::{Error, Result};
use crate::ops;
use crate::report::{self, html, Status, Totals, Usage};
use crate::spec::StackId;
use serde_json::json;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub async fn run(ctx: &Ctx, command: &ReportCommand) -> Result<()> {
    match command {
        ReportCommand::Billing(a) => billing(ctx, a).await,
        ReportCommand::Compliance(a) => compliance(ctx, a).await,
        ReportCommand::Performance(a) => performance(ctx, a).await,
    }
}

async fn performance(ctx: &Ctx, a: &PerformanceArgs) -> Result<()> {
    use crate::report::performance::{cells, HEADER};
    let now = SystemTime::now();
    let month = a.month.clone().unwrap_or_else(|| report::this_month(now));
    // The month checked before any AWS call.
    report::month_window(&month, now)?;
    let aws = ctx.connect("report performance").await?;
    let p = ops::report::performance(
        &aws,
        &ctx.ui,
        &ops::report::PerformanceRequest {
            month: month.clone(),
            now,
        },
    )
    .await?;
    let text = if a.csv {
        for n in &p.notes {
            ctx.ui.warn(n);
        }
        let mut out = format!("{}\n", HEADER.join(","));
        for r in &p.rows {
            csv_line(&mut out, &cells(r));
        }
        out
    } else {
        let mut out = format!(
            "performance {} ({}) in {}, from CloudWatch (AWS/EC2, hourly)\n",
            p.month, p.period, p.at
        );
        if p.rows.is_empty() {
            out.push_str("no poscloud stack in this region\n");
        } else {
            const WIDTH: [usize; 11] = [10, 5, 20, 5, 8, 8, 10, 10, 6, 10, 5];
            let head = [
                "SHOP", "ENV", "INSTANCE", "HOURS", "CPU AVG%", "CPU P95%", "NET IN", "NET OUT",
                "CHECKS", "DATA", "DISK%",
            ];
            let line = |cells: &[String]| table_line(cells, &WIDTH);
            let _ = writeln!(out, "{}", line(&head.map(String::from)));
            for r in &p.rows {
                let mut c = cells(r);
                if c[2].is_empty() {
                    c[2] = "-".into();
                }
                for i in [4, 5, 10] {
                    if c[i].is_empty() {
                        c[i] = "-".into();
                    }
                }
                c[6] = bytes(r.network_in_bytes);
                c[7] = bytes(r.network_out_bytes);
                c[9] = r.data_bytes.map_or("-".into(), |b| bytes(b as f64));
                let _ = writeln!(out, "{}", line(&c));
            }
            out.push_str("CHECKS: failed one-minute status checks (system + instance); DATA, DISK%: the POS data and its disk's use at the month's newest good backup\n");
        }
        for n in &p.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    };
    ctx.result(
        json!({"month": p.month, "period": p.period, "region": aws.region,
               "account": aws.at.account.get(), "stacks": p.rows, "notes": p.notes}),
        &text,
    );
    Ok(())
}

/// Bytes at a glance (decimal units, as AWS bills data).
/// A table's line: the first three columns (names) left, the figures right, in `width`s.
fn table_line(cells: &[String], width: &[usize]) -> String {
    let mut l = String::new();
    for (i, (c, w)) in cells.iter().zip(width).enumerate() {
        let _ = if i < 3 {
            write!(l, "{c:<w$} ")
        } else {
            write!(l, "{c:>w$} ")
        };
    }
    l.trim_end().to_string()
}

fn bytes(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.2} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.2} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

async fn billing(ctx: &Ctx, a: &BillingArgs) -> Result<()> {
    let now = SystemTime::now();
    let month = a.month.clone().unwrap_or_else(|| report::this_month(now));
    // The month checked before any AWS call.
    report::month_window(&month, now)?;
    let profiles = profiles(a.stack.as_deref())?;
    if let Some(p) = &a.html {
        check_writable(p)?;
    }
    let journal = report::load_journal(ctx.global.journal.as_deref())?;
    if journal.skipped > 0 {
        ctx.ui.warn(format!(
            "{} journal line(s) could not be read and were left out",
            journal.skipped
        ));
    }
    let aws = ctx.connect("report billing").await?;
    let b = ops::report::billing(
        &aws,
        &ops::report::BillingRequest {
            month,
            now,
            profiles: &profiles,
            journal: &journal,
            history: a.html.is_some(),
        },
    )
    .await?;
    let (month, period, at) = (&b.month, &b.period, &b.at);
    let (rows, subtotals, total, notes) = (&b.rows, &b.subtotals, &b.total, &b.notes);
    if let Some(path) = &a.html {
        let page = html::billing_page(&html::BillingPage {
            month,
            period,
            at,
            rows,
            subtotals,
            total,
            notes,
            history: &b.history,
        });
        write_html(ctx, path, &page)?;
    }
    let text = if a.csv {
        for n in notes {
            ctx.ui.warn(n);
        }
        csv(rows, a.totals.then_some((&subtotals[..], total)))
    } else {
        table(month, period, at, rows, subtotals, total, notes)
    };
    let subtotals_json: serde_json::Map<String, serde_json::Value> = subtotals
        .iter()
        .map(|(e, t)| (e.clone(), json!(t)))
        .collect();
    ctx.result(
        json!({"month": month, "period": period, "currency": "USD", "region": aws.region,
               "account": aws.at.account.get(),
               "stacks": rows, "subtotals": subtotals_json, "totals": total, "notes": notes,
               "html": a.html}),
        &text,
    );
    Ok(())
}

/// Refuses an --html path that cannot be written, before any AWS call: a file is made
/// beside it and removed.
fn check_writable(path: &Path) -> Result<()> {
    let bad = |why: String| Error::usage(format!("--html {}: {why}", path.display()));
    if path.is_dir() {
        return Err(bad("is a directory; name a file".into()));
    }
    let probe = temp_beside(path);
    std::fs::File::create(&probe).map_err(|e| bad(format!("cannot write there: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes the page whole (a temp file renamed), so a reader never sees half a page.
fn write_html(ctx: &Ctx, path: &Path, page: &str) -> Result<()> {
    let tmp = temp_beside(path);
    std::fs::write(&tmp, page)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::usage(format!("--html {}: cannot write: {e}", path.display()))
        })?;
    ctx.ui.info(format!("wrote {}", path.display()));
    Ok(())
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
    let t = report::totals([u]);
    figures([u.shop.clone(), u.env.clone(), u.instance_type.clone()], &t)
}

/// A labelled row of sums (a subtotal or the total), in the data's columns.
fn figures([a, b, c]: [String; 3], t: &Totals) -> [String; 10] {
    let f = |v: f64| format!("{v:.2}");
    [
        a,
        b,
        c,
        f(t.running_hours),
        f(t.volume_hours),
        f(t.public_ipv4_hours),
        f(t.instance_usd),
        f(t.ebs_usd),
        f(t.public_ipv4_usd),
        f(t.total_usd),
    ]
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(out: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
    let _ = writeln!(out, "{}", cells.join(","));
}

/// Data rows only; with `totals`, a `subtotal` row per env and a `total` row after them.
fn csv(rows: &[Usage], totals: Option<(&[(String, Totals)], &Totals)>) -> String {
    let mut out = format!("{}\n", HEADER.join(","));
    for r in rows {
        csv_line(&mut out, &cells(r));
    }
    if let Some((subtotals, total)) = totals {
        for (env, t) in subtotals {
            csv_line(
                &mut out,
                &figures(["subtotal".into(), env.clone(), String::new()], t),
            );
        }
        csv_line(
            &mut out,
            &figures(["total".into(), "all".into(), String::new()], total),
        );
    }
    out
}

fn table(
    month: &str,
    period: &str,
    at: &str,
    rows: &[Usage],
    subtotals: &[(String, Totals)],
    total: &Totals,
    notes: &[String],
) -> String {
    let mut out = format!("billing {month} ({period}) in {at}, USD on-demand\n");
    if rows.is_empty() {
        out.push_str("no poscloud stack ran in this period (by this journal and region)\n");
    } else {
        const WIDTH: [usize; 10] = [10, 5, 10, 8, 8, 8, 10, 8, 8, 10];
        let head = [
            "SHOP", "ENV", "TYPE", "RUN H", "DISK H", "IPV4 H", "INSTANCE", "EBS", "IPV4", "TOTAL",
        ];
        let line = |cells: &[String]| table_line(cells, &WIDTH);
        let _ = writeln!(out, "{}", line(&head.map(String::from)));
        for r in rows {
            let _ = writeln!(out, "{}", line(&cells(r)));
        }
        let _ = writeln!(
            out,
            "{}",
            "-".repeat(WIDTH.iter().sum::<usize>() + WIDTH.len() - 1)
        );
        for (env, t) in subtotals {
            let sub = figures(["subtotal".into(), env.clone(), String::new()], t);
            let _ = writeln!(out, "{}", line(&sub));
        }
        let _ = writeln!(
            out,
            "{}",
            line(&figures(
                ["TOTAL".into(), "all".into(), String::new()],
                total
            ))
        );
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    for u in rows {
        for n in &u.notes {
            let _ = writeln!(out, "note: {} {}: {n}", u.shop, u.env);
        }
    }
    out
}

async fn compliance(ctx: &Ctx, a: &ComplianceArgs) -> Result<()> {
    let profiles = profiles(a.stack.as_deref())?;
    if let Some(p) = &a.html {
        check_writable(p)?;
    }
    let aws = ctx.connect("report compliance").await?;
    let aws_args = match &ctx.global.profile {
        Some(p) => format!("--profile {p} --region {}", aws.region),
        None => format!("--region {}", aws.region),
    };
    let now = SystemTime::now();
    let req = ops::report::ComplianceRequest {
        profiles: &profiles,
        shop: a.shop.clone(),
        env: a.env,
        now,
        max_psk_age: *a.max_psk_age,
        max_patch_age: *a.max_patch_age,
        aws_args,
    };
    let c = ops::report::compliance(&aws, &ctx.ui, &req).await?;
    let at = &c.at;
    let (mut rows, mut details, mut grid_rows) = (Vec::new(), String::new(), Vec::new());
    for s in c.stacks {
        let failed: Vec<&str> = s
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.rule)
            .collect();
        stack_details(&mut details, &s.id, &s.checks, &s.host);
        rows.push(
            json!({"shop": s.id.shop.as_str(), "env": s.id.env.as_str(), "ok": failed.is_empty(),
                         "failed": failed, "checks": s.checks, "host": s.host}),
        );
        grid_rows.push((s.id, s.checks));
    }
    let failing = grid_rows
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c.status == Status::Fail))
        .count();
    if let Some(path) = &a.html {
        let checked_at = humantime::format_rfc3339_seconds(now).to_string();
        let named: Vec<(String, Vec<report::Check>)> = grid_rows
            .iter()
            .map(|(id, c)| (short(id), c.clone()))
            .collect();
        write_html(ctx, path, &html::compliance_page(at, &checked_at, &named))?;
    }
    let text = if a.csv {
        compliance_csv(&grid_rows)
    } else {
        let mut text = grid(&grid_rows);
        text.push_str(&details);
        let _ = writeln!(
            text,
            "{} stack(s) checked, {failing} failing{}",
            grid_rows.len(),
            if grid_rows.is_empty() {
                format!(" (no poscloud stacks in {at})")
            } else {
                String::new()
            }
        );
        text
    };
    ctx.result(
        json!({"region": aws.region, "account": aws.at.account.get(), "rules": report::RULES, "stacks": rows, "failing": failing,
               "html": a.html}),
        &text,
    );
    if failing > 0 {
        return Err(Error::Reported(format!(
            "{failing} stack(s) fail a compliance rule"
        )));
    }
    Ok(())
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Na => "n/a",
    }
}

/// `12345678/prod`, as the grid names a stack.
fn short(id: &StackId) -> String {
    format!("{}/{}", id.shop.as_str(), id.env.as_str())
}

/// The summary: a row per stack, a column per rule (each as wide as its name).
fn grid(stacks: &[(StackId, Vec<report::Check>)]) -> String {
    if stacks.is_empty() {
        return String::new();
    }
    let first = stacks
        .iter()
        .map(|s| short(&s.0).len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!("{:<first$}", "STACK");
    for r in report::RULES {
        let _ = write!(out, "  {r}");
    }
    out.push('\n');
    for (id, checks) in stacks {
        let mut line = format!("{:<first$}", short(id));
        for r in report::RULES {
            let cell = checks
                .iter()
                .find(|c| c.rule == *r)
                .map_or("", |c| mark(c.status));
            let _ = write!(line, "  {cell:<w$}", w = r.len());
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push('\n');
    out
}

/// One stack's checks, each FAIL with its fix, and the host's versions.
fn stack_details(
    out: &mut String,
    id: &StackId,
    checks: &[report::Check],
    versions: &serde_json::Value,
) {
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let _ = writeln!(out, "{id}: {}", if ok { "pass" } else { "FAIL" });
    for c in checks {
        let _ = write!(out, "  {:<4}  {:<23} {}", mark(c.status), c.rule, c.detail);
        if let Some(f) = &c.fix {
            let _ = write!(out, "; fix: {f}");
        }
        out.push('\n');
    }
    if !versions.is_null() {
        let v = |k: &str| versions[k].as_str().unwrap_or("?").to_string();
        let _ = writeln!(
            out,
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
}

/// One row per stack and rule: shop,env,rule,status,detail,fix.
fn compliance_csv(stacks: &[(StackId, Vec<report::Check>)]) -> String {
    let mut out = String::from("shop,env,rule,status,detail,fix\n");
    for (id, checks) in stacks {
        for c in checks {
            csv_line(
                &mut out,
                &[
                    id.shop.as_str().to_string(),
                    id.env.as_str().to_string(),
                    c.rule.to_string(),
                    mark(c.status).to_string(),
                    c.detail.clone(),
                    c.fix.clone().unwrap_or_default(),
                ],
            );
        }
    }
    out
}
