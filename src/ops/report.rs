//! The reports' workflows: what `report billing` and `report compliance` read from AWS and
//! the journal, put through src/report.rs's computations. Rendering (text, CSV, HTML) is
//! the command's.

use crate::aws::ssm::host_key_name;
use crate::aws::Aws;
use crate::error::Result;
use crate::phases::{phase_state, vpn, Phase};
use crate::remote::results::BackupRun;
use crate::report::{self, Check, Totals, Usage};
use crate::spec::{Env, ShopCode, StackId, StackSpec};
use crate::time::Time;
use crate::ui::Ui;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// The most months a billing history charts.
pub const MAX_MONTHS: usize = 36;

/// The profile for one stack: the env's, named for the stack.
pub fn profile_for(profiles: &BTreeMap<Env, StackSpec>, id: &StackId) -> StackSpec {
    let mut spec = profiles[&id.env].clone();
    spec.id = id.clone();
    spec
}

pub struct BillingRequest<'a> {
    pub month: String,
    pub now: SystemTime,
    /// Each env's stack profile (prices, disk).
    pub profiles: &'a BTreeMap<Env, StackSpec>,
    /// The journal, read (its starts, stops and removals).
    pub journal: &'a report::Journal,
    /// Also the cost of each month since the journal began (an HTML page's chart).
    pub history: bool,
}

pub struct Billing {
    pub month: String,
    pub period: String,
    /// `account …, region` (whereabouts), for the headers.
    pub at: String,
    pub rows: Vec<Usage>,
    pub subtotals: Vec<(String, Totals)>,
    pub total: Totals,
    pub notes: Vec<String>,
    /// Per env, the cost of each month (with `history`).
    pub history: Vec<(String, Vec<(String, f64)>)>,
}

/// `report billing`: every stack the region lists or the journal names, billed for the
/// month (by env, then shop).
pub async fn billing(aws: &Aws, req: &BillingRequest<'_>) -> Result<Billing> {
    let (month, now, journal) = (&req.month, req.now, req.journal);
    let window = report::month_window(month, now)?;
    let at = aws.whereabouts().await?.to_string();
    let live = aws.list_stacks().await?;
    let mut ids: Vec<StackId> = live
        .keys()
        .cloned()
        .chain(journal.writes.iter().map(|w| w.id.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // By env, then shop: each env's rows together, as its subtotal sums them.
    ids.sort_by(|x, y| (x.env, &x.shop).cmp(&(y.env, &y.shop)));
    let bill = |window: (SystemTime, SystemTime)| -> Vec<Usage> {
        ids.iter()
            .map(|id| {
                let spec = profile_for(req.profiles, id);
                (
                    report::usage(id, &journal.writes, live.get(id), &spec, window),
                    id,
                )
            })
            .filter(|(u, id)| report::billed_in(u, live.get(id), window.1))
            .map(|(u, _)| u)
            .collect()
    };
    let rows = bill(window);
    let mut history = Vec::new();
    if req.history {
        // The months since the journal began (at most the last MAX_MONTHS), up to this one.
        let first = journal.first.map_or(month.clone(), report::this_month);
        let mut months = report::months(&first, month);
        months.drain(..months.len().saturating_sub(MAX_MONTHS));
        // A month the journal dates oddly (before 2000) is left out, not an error.
        let by_month: Vec<(String, Vec<Usage>)> = months
            .iter()
            .filter_map(|m| Some((m.clone(), bill(report::month_window(m, now).ok()?))))
            .collect();
        history = report::cost_by_env(&by_month);
    }
    Ok(Billing {
        month: month.clone(),
        period: format!(
            "{} to {}",
            humantime::format_rfc3339_seconds(window.0),
            humantime::format_rfc3339_seconds(window.1)
        ),
        at,
        subtotals: report::subtotals(&rows),
        total: report::totals(&rows),
        notes: report::coverage_notes(journal, month, window, now),
        rows,
        history,
    })
}

pub struct ComplianceRequest<'a> {
    pub profiles: &'a BTreeMap<Env, StackSpec>,
    pub shop: Option<ShopCode>,
    pub env: Option<Env>,
    pub now: SystemTime,
    pub max_psk_age: Duration,
    pub max_patch_age: Duration,
    /// `--profile P --region R` as the fixes' commands name them.
    pub aws_args: String,
}

/// One stack's checks and its host's versions (from the bootstrap record).
pub struct Checked {
    pub id: StackId,
    pub checks: Vec<Check>,
    pub host: serde_json::Value,
}

pub struct Compliance {
    pub at: String,
    pub stacks: Vec<Checked>,
}

/// `report compliance`: every stack of the region (or those asked for), each checked
/// against the rules from what discovery, its VPN records and its phase records show.
pub async fn compliance(aws: &Aws, ui: &Ui, req: &ComplianceRequest<'_>) -> Result<Compliance> {
    let at = aws.whereabouts().await?.to_string();
    ui.info(format!("compliance of the poscloud stacks in {at}"));
    let ids: Vec<StackId> = aws
        .list_stacks()
        .await?
        .into_keys()
        .filter(|id| req.shop.as_ref().is_none_or(|s| *s == id.shop))
        .filter(|id| req.env.is_none_or(|e| e == id.env))
        .collect();
    let mut stacks = Vec::new();
    for id in ids {
        let step = ui.step(format!("compliance: {id}"));
        let d = aws.discover(&id).await?;
        let locations = vpn::locations(aws, &id).await?;
        let bootstrap = phase_state(aws, &id, Phase::Bootstrap).await?;
        let host_key = aws.get_param(&host_key_name(&id)).await?;
        let backup_job = crate::phases::phase_state_in(&d, &id, Phase::Backup).is_some();
        let staged = crate::phases::phase_state_in(&d, &id, Phase::Stage).is_some();
        let last_backup = if backup_job {
            let (_, b, _) = crate::ops::backup::newest_good(aws, &id, |_| true).await?;
            b.map(|b| b.time)
        } else {
            None
        };
        step.done("");
        let spec = profile_for(req.profiles, &id);
        let checks = report::compliance(&report::Evidence {
            d: &d,
            spec: &spec,
            vpn: &locations,
            bootstrap: bootstrap.as_ref(),
            host_key: host_key.as_deref(),
            now: req.now,
            max_psk_age: req.max_psk_age,
            max_patch_age: req.max_patch_age,
            backup_job,
            staged,
            last_backup,
            aws_args: &req.aws_args,
        });
        stacks.push(Checked {
            host: report::host_versions(bootstrap.as_ref()),
            id,
            checks,
        });
    }
    Ok(Compliance { at, stacks })
}

pub struct PerformanceRequest {
    pub month: String,
    pub now: SystemTime,
}

pub struct PerformanceReport {
    pub month: String,
    pub period: String,
    pub at: String,
    pub rows: Vec<report::performance::Performance>,
    pub notes: Vec<String>,
}

/// `report performance`: every stack of the region (by env, then shop), its instance's
/// month from CloudWatch. A stack with no instance now has a row without figures; an
/// instance replaced during the month is read for the current one only (noted).
pub async fn performance(
    aws: &Aws,
    ui: &Ui,
    req: &PerformanceRequest,
) -> Result<PerformanceReport> {
    let (from, to) = report::month_window(&req.month, req.now)?;
    let at = aws.whereabouts().await?.to_string();
    let mut stacks: Vec<_> = aws.list_stacks().await?.into_iter().collect();
    stacks.sort_by(|(x, _), (y, _)| (x.env, &x.shop).cmp(&(y.env, &y.shop)));
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (id, s) in stacks {
        let step = ui.step(format!("performance: {id}"));
        let m = match &s.instance {
            Some(i) => aws.instance_metrics(i, from, to).await?,
            None => Default::default(),
        };
        // The month's newest good backup, for the data volume (stacks with a backup job).
        let mut data = report::performance::DataVolume::default();
        if crate::phases::phase_state(aws, &id, Phase::Backup)
            .await?
            .is_some()
        {
            let in_month = |b: &BackupRun| (from..to).contains(&b.time.system());
            if let (_, Some(b), _) = crate::ops::backup::newest_good(aws, &id, in_month).await? {
                data.data_bytes = Some(b.data_bytes);
                data.disk_used_percent = Some(b.disk_used_pct);
            }
        }
        step.done("");
        if let Some(t) = s
            .launch_time
            .map(Time::system)
            .filter(|t| *t > from && *t < to)
        {
            notes.push(format!(
                "{id}: instance launched {}: read from then (an earlier instance of the stack, if any, is not)",
                humantime::format_rfc3339_seconds(t)
            ));
        }
        rows.push(report::performance::row(
            &id,
            s.instance.as_deref(),
            &m,
            data,
        ));
    }
    Ok(PerformanceReport {
        month: req.month.clone(),
        period: format!(
            "{} to {}",
            humantime::format_rfc3339_seconds(from),
            humantime::format_rfc3339_seconds(to)
        ),
        at,
        rows,
        notes,
    })
}
