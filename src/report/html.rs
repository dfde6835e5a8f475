//! The reports as one self-contained HTML page: inline CSS and SVG, no script, no external
//! asset, so it can be mailed or archived as it is. Every value printed goes through `esc`:
//! shop codes, names and notes come from AWS tags, SSM records and the journal.

use super::{Check, Status, Totals, Usage};
use std::fmt::Write;

/// Text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#1a202c}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}\
th,td{border:1px solid #cbd5e0;padding:.25em .6em;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
tr.subtotal td{background:#edf2f7}tr.total td{background:#e2e8f0;font-weight:bold}\
td.pass{background:#c6f6d5}td.fail{background:#c53030;color:#fff;font-weight:bold}\
td.na{background:#e2e8f0;color:#4a5568}\
.notes li{color:#744210}svg text{font-size:12px;fill:#1a202c}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body>\n<h1>{t}</h1>\n{body}</body></html>\n",
        t = esc(title)
    )
}

fn notes(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"notes\">\n");
    for n in notes {
        let _ = writeln!(out, "<li>{}</li>", esc(n));
    }
    out.push_str("</ul>\n");
    out
}

/// Bar colour of an env's chart (fixed, so a screenshot can be checked for it).
pub fn env_colour(env: &str) -> &'static str {
    match env {
        "prod" => "#c05621",
        "qa" => "#2b6cb0",
        _ => "#2f855a",
    }
}

/// One env's cost per month as an SVG bar chart, each bar labelled with its month and USD.
fn cost_chart(env: &str, months: &[(String, f64)]) -> String {
    const SLOT: usize = 70;
    const LEFT: usize = 10;
    const TOP: f64 = 24.0;
    const PLOT: f64 = 160.0;
    let width = LEFT * 2 + SLOT * months.len().max(1);
    let max = months.iter().map(|m| m.1).fold(0.0, f64::max);
    let (env, colour) = (esc(env), env_colour(env));
    let mut out = format!(
        "<svg class=\"chart\" data-env=\"{env}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"220\" \
         role=\"img\" aria-label=\"{env}: cost per month, USD\">\n"
    );
    for (i, (month, usd)) in months.iter().enumerate() {
        let h = if max > 0.0 { usd / max * PLOT } else { 0.0 };
        let (x, y) = ((LEFT + i * SLOT + 10) as f64, TOP + PLOT - h);
        let (mid, month) = (x + 25.0, esc(month));
        let _ = write!(
            out,
            "<rect class=\"bar\" data-env=\"{env}\" data-month=\"{month}\" data-usd=\"{usd:.2}\" \
             x=\"{x}\" y=\"{y:.1}\" width=\"50\" height=\"{h:.1}\" fill=\"{colour}\">\
             <title>{env} {month}: {usd:.2} USD</title></rect>\n\
             <text class=\"usd\" x=\"{mid}\" y=\"{:.1}\" text-anchor=\"middle\">{usd:.2}</text>\n\
             <text class=\"month\" x=\"{mid}\" y=\"{}\" text-anchor=\"middle\">{month}</text>\n",
            y - 6.0,
            TOP + PLOT + 18.0,
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"#718096\"/>\n</svg>",
        width - LEFT,
        b = TOP + PLOT
    );
    out
}

const BILL_HEAD: [&str; 10] = [
    "shop", "env", "type", "run h", "disk h", "IPv4 h", "instance", "EBS", "IPv4", "total",
];

fn figures(out: &mut String, t: &Totals) {
    for v in [
        t.running_hours,
        t.volume_hours,
        t.public_ipv4_hours,
        t.instance_usd,
        t.ebs_usd,
        t.public_ipv4_usd,
        t.total_usd,
    ] {
        let _ = write!(out, "<td class=\"num\">{v:.2}</td>");
    }
}

/// The month's bill: a row per stack, then each env's subtotal and the total.
fn bill_table(rows: &[Usage], subtotals: &[(String, Totals)], total: &Totals) -> String {
    let mut out = String::from("<table class=\"bill\">\n<thead><tr>");
    for h in BILL_HEAD {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for u in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&u.shop),
            esc(&u.env),
            esc(&u.instance_type)
        );
        figures(&mut out, &super::totals([u]));
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n<tfoot>\n");
    for (env, t) in subtotals {
        let _ = write!(
            out,
            "<tr class=\"subtotal\"><td>subtotal</td><td>{}</td><td></td>",
            esc(env)
        );
        figures(&mut out, t);
        out.push_str("</tr>\n");
    }
    out.push_str("<tr class=\"total\"><td>total</td><td>all</td><td></td>");
    figures(&mut out, total);
    out.push_str("</tr>\n</tfoot>\n</table>\n");
    out
}

/// What the billing page shows.
pub struct BillingPage<'a> {
    pub month: &'a str,
    pub period: &'a str,
    /// The account, credentials and region (`Whereabouts`).
    pub at: &'a str,
    pub rows: &'a [Usage],
    pub subtotals: &'a [(String, Totals)],
    pub total: &'a Totals,
    pub notes: &'a [String],
    /// Each env's cost per month, the months in order.
    pub history: &'a [(String, Vec<(String, f64)>)],
}

pub fn billing_page(p: &BillingPage) -> String {
    let mut body = format!(
        "<p>{}, {}. USD at the stack profiles' on-demand prices, not the AWS invoice.</p>\n",
        esc(p.period),
        esc(p.at)
    );
    body.push_str(&notes(p.notes));
    body.push_str("<h2>Cost per month, by env</h2>\n");
    if p.history.is_empty() {
        body.push_str("<p>No poscloud stack ran in these months.</p>\n");
    }
    for (env, months) in p.history {
        let _ = writeln!(body, "<h3>{}</h3>", esc(env));
        body.push_str(&cost_chart(env, months));
    }
    let _ = writeln!(body, "<h2>{}, per stack</h2>", esc(p.month));
    if p.rows.is_empty() {
        body.push_str("<p>No poscloud stack ran in this period.</p>\n");
    } else {
        body.push_str(&bill_table(p.rows, p.subtotals, p.total));
    }
    let stack_notes: Vec<String> = p
        .rows
        .iter()
        .flat_map(|u| {
            u.notes
                .iter()
                .map(move |n| format!("{} {}: {n}", u.shop, u.env))
        })
        .collect();
    body.push_str(&notes(&stack_notes));
    page(&format!("poscloud billing {}", p.month), &body)
}

fn mark(s: Status) -> (&'static str, &'static str) {
    match s {
        Status::Pass => ("pass", "pass"),
        Status::Fail => ("fail", "FAIL"),
        Status::Na => ("na", "n/a"),
    }
}

/// Stacks × rules, each cell pass / FAIL / n/a with its detail as a tooltip.
fn grid(rules: &[&str], stacks: &[(String, Vec<Check>)]) -> String {
    let mut out = String::from("<table class=\"grid\">\n<thead><tr><th>stack</th>");
    for r in rules {
        let _ = write!(out, "<th>{}</th>", esc(r));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (stack, checks) in stacks {
        let _ = write!(out, "<tr><th>{}</th>", esc(stack));
        for r in rules {
            match checks.iter().find(|c| c.rule == *r) {
                Some(c) => {
                    let (class, text) = mark(c.status);
                    let _ = write!(
                        out,
                        "<td class=\"{class}\" data-rule=\"{}\" title=\"{}\">{text}</td>",
                        esc(r),
                        esc(&c.detail)
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// Every failing check with what is wrong and its fix.
fn failures(stacks: &[(String, Vec<Check>)]) -> String {
    let mut out = String::from(
        "<table class=\"failures\">\n<thead><tr><th>stack</th><th>rule</th><th>what is wrong</th><th>fix</th></tr></thead>\n<tbody>\n",
    );
    for (stack, checks) in stacks {
        for c in checks.iter().filter(|c| c.status == Status::Fail) {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(stack),
                esc(c.rule),
                esc(&c.detail),
                esc(c.fix.as_deref().unwrap_or(""))
            );
        }
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// The compliance page: the grid, then the failures with their fixes.
pub fn compliance_page(at: &str, checked_at: &str, stacks: &[(String, Vec<Check>)]) -> String {
    let failing = stacks
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c.status == Status::Fail))
        .count();
    let mut body = format!(
        "<p>In {}, checked {}: {} stack(s), {failing} failing.</p>\n",
        esc(at),
        esc(checked_at),
        stacks.len()
    );
    if stacks.is_empty() {
        body.push_str("<p>No poscloud stacks.</p>\n");
    } else {
        body.push_str(&grid(super::RULES, stacks));
    }
    if failing > 0 {
        body.push_str("<h2>Failures and their fixes</h2>\n");
        body.push_str(&failures(stacks));
    }
    page("poscloud compliance", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let evil = "<script>alert(1)</script>";
        let chart = cost_chart(evil, &[(evil.to_string(), 1.0)]);
        assert!(!chart.contains("<script>"), "{chart}");
        let check = Check {
            rule: "imdsv2",
            status: Status::Fail,
            detail: evil.into(),
            fix: Some(evil.into()),
        };
        let p = compliance_page(evil, evil, &[(evil.to_string(), vec![check])]);
        assert!(!p.contains("<script>"), "{p}");
        assert!(p.contains("&lt;script&gt;"), "{p}");
    }

    #[test]
    fn bars_scale_to_the_largest_month() {
        let c = cost_chart(
            "qa",
            &[
                ("2026-09".into(), 2.0),
                ("2026-10".into(), 4.0),
                ("2026-11".into(), 0.0),
            ],
        );
        assert_eq!(c.matches("<rect class=\"bar\"").count(), 3);
        assert!(
            c.contains("data-month=\"2026-10\" data-usd=\"4.00\""),
            "{c}"
        );
        assert!(c.contains("height=\"160.0\""), "{c}");
        assert!(c.contains("height=\"80.0\""), "{c}");
        assert!(c.contains("height=\"0.0\""), "{c}");
    }
}
