//! Fleet reports: billing (what really ran, from the journal and EC2's state) and
//! compliance (each stack's controls checked against AWS). Pure functions over what the
//! commands read; no AWS call here.

use crate::aws::tags::Role;
use crate::error::{Error, Result};
use crate::phases::vpn::LocationRecord;
use crate::phases::PhaseState;
use crate::remote::results::UserdataMarker;
use crate::resources::discover::{Discovered, StackSummary};
use crate::spec::{Env, Rates, StackId, StackSpec};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub mod html;
pub mod performance;

const HOUR: f64 = 3600.0;

/// A time as records and journals write it (`time::Time`'s reading).
fn parse_time(t: &str) -> Option<SystemTime> {
    t.parse::<Time>().ok().map(Time::system)
}

/// `YYYY-MM` → [first second of the month, first second of the next), the end clipped to
/// `now`. A month that has not begun is refused.
pub fn month_window(month: &str, now: SystemTime) -> Result<(SystemTime, SystemTime)> {
    let bad = || Error::usage(format!("--month {month:?}: use YYYY-MM, e.g. 2026-10"));
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (u32, u32) = match (y.len(), m.len()) {
        (4, 2) => (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    if !(2000..3000).contains(&y) || !(1..=12).contains(&m) {
        return Err(bad());
    }
    let start = parse_time(&format!("{y:04}-{m:02}-01T00:00:00Z")).ok_or_else(bad)?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = parse_time(&format!("{ny:04}-{nm:02}-01T00:00:00Z")).ok_or_else(bad)?;
    if start > now {
        return Err(Error::usage(format!(
            "--month {month}: that month has not begun"
        )));
    }
    Ok((start, end.min(now)))
}

/// The current month, `YYYY-MM` (UTC).
pub fn this_month(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string()[..7].to_string()
}

/// Hours in a whole month (EBS is priced per GB-month, pro rata by the hour).
fn month_hours(month_start: SystemTime) -> f64 {
    let s = humantime::format_rfc3339_seconds(month_start).to_string();
    let (y, m): (i32, u32) = (s[..4].parse().unwrap_or(2000), s[5..7].parse().unwrap_or(1));
    let days = match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    };
    days as f64 * 24.0
}

/// One successful write of the journal that concerns a stack.
#[derive(Debug, Clone)]
pub struct Write {
    pub at: SystemTime,
    pub id: StackId,
    pub op: String,
    pub resource: String,
}

/// The stack a journal line's command names (`provision --shop 12345678 --env qa`).
fn stack_of_command(command: &str) -> Option<StackId> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
    };
    Some(StackId {
        shop: after("--shop")?.parse().ok()?,
        env: after("--env")?.parse().ok()?,
    })
}

/// What billing reads of the journal: its successful writes, by time, and the span of all
/// its lines (to say when it covers only part of a month).
#[derive(Debug, Default)]
pub struct Journal {
    /// The file read, if any (none: no journal configured).
    pub path: Option<std::path::PathBuf>,
    pub writes: Vec<Write>,
    /// Lines that are not poscloud's or were cut short by a crash.
    pub skipped: usize,
    /// The earliest and the latest time of any line.
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
}

/// The journal's successful writes, by stack. A missing journal is empty; lines that are
/// not poscloud's (or are cut short by a crash) are skipped and counted.
pub fn read_journal(path: Option<&Path>) -> Result<(Vec<Write>, usize)> {
    let j = load_journal(path)?;
    Ok((j.writes, j.skipped))
}

/// The journal at `path` (default: poscloud's own), see [`Journal`].
pub fn load_journal(path: Option<&Path>) -> Result<Journal> {
    let Some(path) = path
        .map(Path::to_path_buf)
        .or_else(crate::journal::default_path)
    else {
        return Ok(Journal::default());
    };
    let mut j = Journal {
        path: Some(path.clone()),
        ..Journal::default()
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(j),
        Err(e) => {
            return Err(Error::usage(format!(
                "cannot read journal {}: {e}",
                path.display()
            )))
        }
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(l) = serde_json::from_str::<Line>(line) else {
            j.skipped += 1;
            continue;
        };
        let at = l.time.as_deref().and_then(parse_time);
        if let Some(t) = at {
            j.first = Some(j.first.map_or(t, |f| f.min(t)));
            j.last = Some(j.last.map_or(t, |l| l.max(t)));
        }
        if l.event.as_deref() != Some("write") || l.result.as_deref() != Some("ok") {
            continue;
        }
        let id = l.command.as_deref().and_then(stack_of_command);
        match (at, id, l.op, l.resource) {
            (Some(at), Some(id), Some(op), Some(resource)) => j.writes.push(Write {
                at,
                id,
                op,
                resource,
            }),
            _ => j.skipped += 1,
        }
    }
    j.writes.sort_by_key(|w| w.at);
    Ok(j)
}

/// What billing reads of a journal line (journal.rs writes them): every field optional, so
/// that a line of any poscloud version, or of another event, still reads.
#[derive(Deserialize)]
struct Line {
    time: Option<String>,
    event: Option<String>,
    result: Option<String>,
    command: Option<String>,
    op: Option<String>,
    resource: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    Time::from(t).to_string()
}

/// Notes for a month the journal covers only in part: it begins after the month began, or
/// (a past month) it ends before the month ended. Hours outside it rest on EC2's state.
pub fn coverage_notes(
    j: &Journal,
    month: &str,
    (from, to): (SystemTime, SystemTime),
    now: SystemTime,
) -> Vec<String> {
    let name = j
        .path
        .as_ref()
        .map_or("no journal".to_string(), |p| p.display().to_string());
    let (Some(first), Some(last)) = (j.first, j.last) else {
        return vec![format!(
            "the journal ({name}) has no lines: the hours rest on EC2's current state only, and a stack removed in {month} is missing"
        )];
    };
    let mut out = Vec::new();
    if first > from {
        out.push(format!(
            "the journal ({name}) begins {}, after {month} began: before that the hours rest on EC2's current state only, and a stack removed before then is missing",
            rfc3339(first)
        ));
    }
    if to < now && last < to {
        out.push(format!(
            "the journal ({name}) ends {}, before {month} ended: later starts, stops and removals are missing (a stack stopped or removed since is counted as running to the month's end)",
            rfc3339(last)
        ));
    }
    out
}

/// The months from `first` to `last` (both `YYYY-MM`, `first` not after `last`), in order.
pub fn months(first: &str, last: &str) -> Vec<String> {
    let parse = |m: &str| -> Option<u32> {
        let (y, m) = m.split_once('-')?;
        Some(y.parse::<u32>().ok()? * 12 + m.parse::<u32>().ok()? - 1)
    };
    let (Some(a), Some(b)) = (parse(first), parse(last)) else {
        return vec![last.to_string()];
    };
    (a.min(b)..=b)
        .map(|n| format!("{:04}-{:02}", n / 12, n % 12 + 1))
        .collect()
}

/// Hours inside [from, to) during which a resource was on, from its on/off events (any
/// order). Returns also whether its history starts with an "off": it was on before the
/// first record, and is counted on from `from` (the journal was started late or lost).
fn hours_on(events: &mut [(SystemTime, bool)], from: SystemTime, to: SystemTime) -> (f64, bool) {
    events.sort_by_key(|e| e.0);
    let since_from = |t: SystemTime| t.max(from).min(to);
    let mut secs = 0.0;
    let incomplete = events.first().is_some_and(|e| !e.1);
    let mut on_since = incomplete.then_some(from);
    for &(t, on) in events.iter() {
        match (on, on_since) {
            (true, None) => on_since = Some(t),
            (false, Some(s)) => {
                secs += since_from(t)
                    .duration_since(since_from(s))
                    .unwrap_or_default()
                    .as_secs_f64();
                on_since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = on_since {
        secs += to
            .duration_since(since_from(s))
            .unwrap_or_default()
            .as_secs_f64();
    }
    (secs / HOUR, incomplete)
}

/// What one stack used in a window, and what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub shop: String,
    pub env: String,
    pub instance_type: String,
    /// Hours the instance ran (billed compute).
    pub running_hours: f64,
    /// Hours the instance existed, running or stopped (its volume is billed all along).
    pub volume_hours: f64,
    /// Elastic IP hours (public IPv4 is billed while allocated, attached or not).
    pub public_ipv4_hours: f64,
    pub instance_usd: f64,
    pub ebs_usd: f64,
    pub public_ipv4_usd: f64,
    pub total_usd: f64,
    /// Where the figures rest on less than a full history.
    pub notes: Vec<String>,
}

/// Events of one resource kind, by resource id: (time, on).
type Timeline = BTreeMap<String, Vec<(SystemTime, bool)>>;

/// The usage of `id` in [from, to): the journal's writes for the stack, completed by what
/// EC2 says now (`live`): the instance's latest start and stop and the Elastic IPs held.
pub fn usage(
    id: &StackId,
    writes: &[Write],
    live: Option<&StackSummary>,
    spec: &StackSpec,
    (from, to): (SystemTime, SystemTime),
) -> Usage {
    let (mut running, mut exists, mut eips) = (Timeline::new(), Timeline::new(), Timeline::new());
    for w in writes.iter().filter(|w| w.id == *id) {
        let r = w.resource.clone();
        match w.op.as_str() {
            "RunInstances" => {
                running.entry(r.clone()).or_default().push((w.at, true));
                exists.entry(r).or_default().push((w.at, true));
            }
            "StartInstances" => running.entry(r).or_default().push((w.at, true)),
            "StopInstances" => running.entry(r).or_default().push((w.at, false)),
            "TerminateInstances" => {
                running.entry(r.clone()).or_default().push((w.at, false));
                exists.entry(r).or_default().push((w.at, false));
            }
            "AllocateAddress" => eips.entry(r).or_default().push((w.at, true)),
            "ReleaseAddress" => eips.entry(r).or_default().push((w.at, false)),
            _ => {}
        }
    }
    let mut notes = Vec::new();
    let mut instance_type = None;
    if let Some(s) = live {
        let created = s.created.map(Time::system);
        let launched = s.launch_time.map(Time::system);
        if let (Some(i), Some(launched)) = (&s.instance, launched) {
            instance_type = s.instance_type.clone();
            let r = running.entry(i.clone()).or_default();
            r.push((launched, true));
            let stopped = s.state.as_ref().is_some_and(|s| s.is_stopped());
            match s.stopped_at.map(Time::system) {
                Some(at) if stopped => r.push((at, false)),
                _ if stopped => {
                    r.push((launched, false));
                    notes.push(format!("{i} is stopped and EC2 does not say since when: counted as stopped since its launch"));
                }
                _ => {}
            }
            let e = exists.entry(i.clone()).or_default();
            if e.is_empty() {
                e.push((created.unwrap_or(launched).min(launched), true));
            }
        }
        for a in &s.allocations {
            let e = eips.entry(a.clone()).or_default();
            if e.is_empty() {
                match created.or(launched) {
                    Some(t) => e.push((t, true)),
                    None => notes.push(format!("{a}: no allocation time known, not billed")),
                }
            }
        }
    }
    let mut sum = |t: &mut Timeline, what: &str| {
        let mut hours = 0.0;
        for (r, ev) in t.iter_mut() {
            let (h, incomplete) = hours_on(ev, from, to);
            if incomplete && h > 0.0 {
                notes.push(format!(
                    "{r}: the journal starts after its {what} began; counted from the start of the period"
                ));
            }
            hours += h;
        }
        hours
    };
    let running_hours = sum(&mut running, "run");
    let volume_hours = sum(&mut exists, "launch");
    let public_ipv4_hours = sum(&mut eips, "allocation");
    let instance_type = instance_type.unwrap_or_else(|| spec.instance_type.clone());
    let rates: &Rates = &spec.rates;
    let instance_usd = match rates.instance_hour.get(&instance_type) {
        Some(p) => running_hours * p,
        None => {
            notes.push(format!(
                "no price for {instance_type} in {}: its hours are not costed",
                spec.source
            ));
            0.0
        }
    };
    let ebs_usd = spec.disk_gb as f64 * rates.gp3_gb_month * volume_hours / month_hours(from);
    let public_ipv4_usd = public_ipv4_hours * rates.public_ipv4_hour;
    let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
    Usage {
        shop: id.shop.to_string(),
        env: id.env.to_string(),
        instance_type,
        running_hours: round(running_hours),
        volume_hours: round(volume_hours),
        public_ipv4_hours: round(public_ipv4_hours),
        instance_usd: round(instance_usd),
        ebs_usd: round(ebs_usd),
        public_ipv4_usd: round(public_ipv4_usd),
        total_usd: round(instance_usd + ebs_usd + public_ipv4_usd),
        notes,
    }
}

/// Whether a stack belongs on a period's bill: it used something billed in it, or it is
/// live and was made before the period ended (a stack of a later month is not listed with
/// zeros; one of unknown age is listed rather than hidden).
pub fn billed_in(u: &Usage, live: Option<&StackSummary>, to: SystemTime) -> bool {
    let used = u.running_hours > 0.0
        || u.volume_hours > 0.0
        || u.public_ipv4_hours > 0.0
        || u.total_usd > 0.0;
    let made_before = |s: &StackSummary| s.created.is_none_or(|c| c.system() < to);
    used || live.is_some_and(made_before)
}

/// Sums of some rows, rounded to the cent (hours too).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub running_hours: f64,
    pub volume_hours: f64,
    pub public_ipv4_hours: f64,
    pub instance_usd: f64,
    pub ebs_usd: f64,
    pub public_ipv4_usd: f64,
    pub total_usd: f64,
}

pub fn totals<'a>(rows: impl IntoIterator<Item = &'a Usage>) -> Totals {
    let mut t = Totals::default();
    for u in rows {
        t.running_hours += u.running_hours;
        t.volume_hours += u.volume_hours;
        t.public_ipv4_hours += u.public_ipv4_hours;
        t.instance_usd += u.instance_usd;
        t.ebs_usd += u.ebs_usd;
        t.public_ipv4_usd += u.public_ipv4_usd;
        t.total_usd += u.total_usd;
    }
    // `+ 0.0`: an empty sum is -0.0, which would print as "-0.00".
    let r = |v: f64| (v * 100.0).round() / 100.0 + 0.0;
    Totals {
        running_hours: r(t.running_hours),
        volume_hours: r(t.volume_hours),
        public_ipv4_hours: r(t.public_ipv4_hours),
        instance_usd: r(t.instance_usd),
        ebs_usd: r(t.ebs_usd),
        public_ipv4_usd: r(t.public_ipv4_usd),
        total_usd: r(t.total_usd),
    }
}

/// Each env's subtotal over `rows`, envs in their order (prod, qa, dev), only those with a row.
pub fn subtotals(rows: &[Usage]) -> Vec<(String, Totals)> {
    [Env::Prod, Env::Qa, Env::Dev]
        .iter()
        .map(|e| e.as_str())
        .filter(|e| rows.iter().any(|u| u.env == *e))
        .map(|e| (e.to_string(), totals(rows.iter().filter(|u| u.env == e))))
        .collect()
}

/// Each env's total cost per month, from each month's rows; only envs with a row in some
/// month, in their order (prod, qa, dev).
pub fn cost_by_env(by_month: &[(String, Vec<Usage>)]) -> Vec<(String, Vec<(String, f64)>)> {
    [Env::Prod, Env::Qa, Env::Dev]
        .iter()
        .map(|e| e.as_str())
        .filter(|e| by_month.iter().any(|(_, r)| r.iter().any(|u| u.env == *e)))
        .map(|e| {
            let costs = by_month
                .iter()
                .map(|(m, r)| (m.clone(), totals(r.iter().filter(|u| u.env == e)).total_usd))
                .collect();
            (e.to_string(), costs)
        })
        .collect()
}

/// The outcome of one compliance rule for one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// The rule does not apply (no instance yet, no SSH, not prod, never bootstrapped).
    Na,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub rule: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a failure (only for a FAIL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every rule, in report order.
pub const RULES: &[&str] = &[
    "imdsv2",
    "volume-encrypted",
    "sg-exposure",
    "termination-protection",
    "vpn-psk-age",
    "vpn-proposals",
    "os-patched",
    "host-key-pinned",
    "backup-age",
    "alarms",
];

/// A stack's newest good backup at most this old (a day's timer, plus slack).
pub const MAX_BACKUP_AGE_H: u64 = 26;

/// What compliance reads of one stack besides its resources.
pub struct Evidence<'a> {
    pub d: &'a Discovered,
    pub spec: &'a StackSpec,
    pub vpn: &'a [LocationRecord],
    pub bootstrap: Option<&'a PhaseState>,
    pub host_key: Option<&'a str>,
    pub now: SystemTime,
    pub max_psk_age: Duration,
    pub max_patch_age: Duration,
    /// The stack's backup job is installed (its phase record), its POS staged (stage record).
    pub backup_job: bool,
    pub staged: bool,
    /// When the newest complete, good backup in S3 was taken.
    pub last_backup: Option<crate::time::Time>,
    /// `--profile P --region R` (the profile when one was given): a fix's commands reach
    /// the stack's account with them.
    pub aws_args: &'a str,
}

fn age_days(t: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(t).unwrap_or_default().as_secs() / 86_400
}

/// Checks every rule against one stack's evidence.
pub fn compliance(e: &Evidence) -> Vec<Check> {
    let check = |rule, status, detail: String| Check {
        rule,
        status,
        detail,
        fix: None,
    };
    let pass = |rule, detail: &str| check(rule, Status::Pass, detail.to_string());
    let na = |rule, detail: &str| check(rule, Status::Na, detail.to_string());
    let verdict = |rule, ok: bool, good: String, bad: String| {
        if ok {
            check(rule, Status::Pass, good)
        } else {
            check(rule, Status::Fail, bad)
        }
    };
    let mut out = Vec::new();
    let instance = e.d.instance();

    out.push(match instance.map(|i| i.http_tokens.as_ref()) {
        None => na("imdsv2", "no instance"),
        Some(t) => verdict(
            "imdsv2",
            t == Some(&crate::resources::discover::HttpTokens::Required),
            "instance metadata needs a session token".into(),
            format!(
                "instance metadata tokens are {} (IMDSv1 answers credentials to any local request)",
                t.map_or("unknown", |t| t.as_str())
            ),
        ),
    });

    out.push(match instance.map(|i| i.root_volume.as_ref()) {
        None => na("volume-encrypted", "no instance"),
        Some(None) => check(
            "volume-encrypted",
            Status::Fail,
            "root volume not found".into(),
        ),
        Some(Some(v)) => verdict(
            "volume-encrypted",
            v.encrypted,
            format!("{} encrypted", v.id),
            format!("{} is NOT encrypted", v.id),
        ),
    });

    // Inbound: exactly what the stack defines (tcp/22 from the admin CIDRs on host, nothing
    // on pos); anything more is exposure, 0.0.0.0/0 named as such.
    let mut exposed = Vec::new();
    for role in [Role::SgHost, Role::SgPos] {
        let Some(sg) = e.d.sg(role) else { continue };
        let (wanted, _) = crate::resources::security_groups::desired_rules(e.spec, role);
        for r in sg.ingress.iter().filter(|r| !wanted.contains(r)) {
            let open = if r.cidr == "0.0.0.0/0" {
                " (the whole internet)"
            } else {
                ""
            };
            exposed.push(format!("{} {}: inbound {r}{open}", sg.id, role.as_str()));
        }
        if sg.other_rules > 0 {
            exposed.push(format!(
                "{} {}: {} rule(s) naming groups, prefix lists or IPv6",
                sg.id,
                role.as_str(),
                sg.other_rules
            ));
        }
    }
    out.push(if e.d.security_groups.is_empty() {
        na("sg-exposure", "no security groups")
    } else {
        verdict(
            "sg-exposure",
            exposed.is_empty(),
            "inbound only as the stack defines".into(),
            exposed.join("; "),
        )
    });

    out.push(match instance {
        None => na("termination-protection", "no instance"),
        Some(_) if e.d.id.as_ref().map(|i| i.env) != Some(Env::Prod) => {
            na("termination-protection", "not prod")
        }
        Some(i) => verdict(
            "termination-protection",
            i.termination_protection,
            "on".into(),
            format!("{} can be terminated by a single API call", i.id),
        ),
    });

    let max_psk = e.max_psk_age.as_secs() / 86_400;
    let mut old = Vec::new();
    let mut weak = Vec::new();
    for l in e.vpn {
        let age = age_days(l.psk_rotated_at.system(), e.now);
        if age > max_psk {
            old.push(format!("{}: key {age} days old", l.location.name));
        }
        let w: Vec<&str> = crate::spec::vpn::weak_algorithms(&l.location.proposals)
            .into_iter()
            .chain(crate::spec::vpn::weak_algorithms(&l.location.esp_proposals))
            .collect();
        if !w.is_empty() {
            weak.push(format!("{}: {}", l.location.name, w.join(", ")));
        }
    }
    let n = e.vpn.len();
    if n == 0 {
        out.push(na("vpn-psk-age", "no VPN locations"));
        out.push(na("vpn-proposals", "no VPN locations"));
    } else {
        out.push(verdict(
            "vpn-psk-age",
            old.is_empty(),
            format!("{n} key(s) younger than {max_psk} days"),
            old.join("; "),
        ));
        out.push(verdict(
            "vpn-proposals",
            weak.is_empty(),
            format!("{n} location(s) with strong proposals"),
            format!("weak: {}", weak.join("; ")),
        ));
    }

    let max_patch = e.max_patch_age.as_secs() / 86_400;
    out.push(match patched_at(e.bootstrap) {
        None if e.bootstrap.is_none() => na("os-patched", "never bootstrapped"),
        None => check(
            "os-patched",
            Status::Fail,
            "the bootstrap record has no patch date (user-data not recorded)".into(),
        ),
        Some((text, t)) => verdict(
            "os-patched",
            age_days(t, e.now) <= max_patch,
            format!("patched {text}"),
            format!(
                "last patched {text}, {} days ago (more than {max_patch})",
                age_days(t, e.now)
            ),
        ),
    });

    // SSH is reachable when the host group lets tcp/22 in; then the key must be pinned.
    let ssh_open = e.d.sg(Role::SgHost).is_some_and(|g| {
        g.ingress
            .iter()
            .any(|r| r.protocol == "tcp" && covers(r, 22))
    });
    out.push(match (e.host_key, ssh_open) {
        (Some(k), _) => pass("host-key-pinned", &key_fingerprint(k)),
        (None, true) => check(
            "host-key-pinned",
            Status::Fail,
            "SSH is open to the host but no host key is pinned".into(),
        ),
        (None, false) => na("host-key-pinned", "no SSH inbound"),
    });
    // Every env's host backs up daily: each one's newest good backup is checked.
    out.push(match (e.staged || e.backup_job, e.last_backup) {
        (false, _) => na("backup-age", "no POS: no data to back up"),
        (true, None) if !e.backup_job => check(
            "backup-age",
            Status::Fail,
            "the POS has no backup job on its host".into(),
        ),
        (true, None) => check(
            "backup-age",
            Status::Fail,
            "no complete backup in S3".into(),
        ),
        (true, Some(t)) => {
            let h = t.age_at(e.now).as_secs() / 3600;
            verdict(
                "backup-age",
                h <= MAX_BACKUP_AGE_H,
                format!("last good backup {t} ({h} h ago)"),
                format!("last good backup {t}, {h} h ago (more than {MAX_BACKUP_AGE_H})"),
            )
        }
    });
    out.push(alarms_in_place(e));
    for c in out.iter_mut().filter(|c| c.status == Status::Fail) {
        c.fix = Some(fix(c.rule, e));
    }
    out
}

/// "alarms": both alarms watch the stack's instance with their actions (the system one
/// recovers it), and the topic they tell has an e-mail subscribed (confirmed or pending).
fn alarms_in_place(e: &Evidence) -> Check {
    use crate::resources::alarms;
    let check = |status, detail: String| Check {
        rule: "alarms",
        status,
        detail,
        fix: None,
    };
    let Some(instance) = e.d.instance() else {
        return check(Status::Na, "no instance".into());
    };
    let mut wrong = Vec::new();
    let topic = e.d.alert_topic.as_ref();
    let arn = topic.map(|t| t.arn.clone()).unwrap_or_default();
    for role in alarms::ROLES {
        let name = crate::resources::change::resource_label(role);
        let Some(a) = e.d.alarms.iter().find(|a| a.role == role) else {
            wrong.push(format!("{name} missing"));
            continue;
        };
        // Only what makes the alarm do its job: the instance, the metric, the actions (the
        // region is the recover action's own: any region's `…:ec2:recover` is EC2's).
        let w = alarms::wanted(role, &arn, "");
        if a.instance.as_deref() != Some(instance.id.as_str()) {
            wrong.push(format!(
                "{name} watches {}, not {}",
                a.instance.as_deref().unwrap_or("no instance"),
                instance.id
            ));
        }
        if a.metric != w.metric {
            wrong.push(format!("{name} watches {}, not {}", a.metric, w.metric));
        }
        if !a.actions_enabled {
            wrong.push(format!("{name}: actions disabled"));
        }
        if topic.is_some() && !a.alarm_actions.contains(&arn) {
            wrong.push(format!("{name} does not tell the alert topic"));
        }
        let recovers = a.alarm_actions.iter().any(|x| x.ends_with(":ec2:recover"));
        if role == crate::aws::tags::Role::AlarmSystem && !recovers {
            wrong.push(format!("{name} does not recover the instance"));
        }
    }
    match topic {
        None => wrong.push("no alert topic".into()),
        Some(t) => {
            let subs: Vec<String> = t
                .emails()
                .map(|s| {
                    let how = if s.pending() { "pending" } else { "confirmed" };
                    format!("{} ({how})", s.endpoint)
                })
                .collect();
            if subs.is_empty() {
                wrong.push(match &e.spec.alert_email {
                    None => "nobody is told: the stack file has no alert_email".into(),
                    Some(a) => format!("{a} is not subscribed to the alert topic"),
                });
            } else if wrong.is_empty() {
                return check(
                    Status::Pass,
                    format!("both alarms on {}; told: {}", instance.id, subs.join(", ")),
                );
            }
        }
    }
    check(Status::Fail, wrong.join("; "))
}

/// The fix of a failing rule, with the stack's own names filled in (docs/runbooks/reports.md).
fn fix(rule: &str, e: &Evidence) -> String {
    let stack =
        e.d.id
            .as_ref()
            .map_or("--shop SHOP --env ENV".to_string(), |i| {
                format!("--shop {} --env {}", i.shop.as_str(), i.env.as_str())
            });
    let instance = e.d.instance().map_or("INSTANCE", |i| i.id.as_str());
    let aws = e.aws_args;
    match rule {
        "imdsv2" => format!("`poscloud provision {stack} {aws}` requires it again in place (the instance keeps running)"),
        "backup-age" => format!("`poscloud backup run {stack} {aws}` now (provision installs a missing job); if it fails, follow its message and docs/runbooks/duties.md"),
        "volume-encrypted" => "rebuild on an encrypted volume (EBS cannot encrypt one in place): provision a new stack, move the shop to it (cutover or pos restore), tear this one down".into(),
        "sg-exposure" => format!("`poscloud provision {stack} {aws}` revokes inbound IPv4 rules the stack does not define (rules naming groups, prefix lists or IPv6: remove them in the console); CloudTrail says who added it"),
        "termination-protection" => format!("`poscloud provision {stack} {aws}` turns it back on"),
        "vpn-psk-age" => format!("`poscloud vpn rotate {stack} --location NAME {aws}` for each location named, give the router the new key, then the same with `--confirm` (runbook vpn.md)"),
        "vpn-proposals" => format!("agree stronger proposals with the router, then `poscloud vpn create {stack} --location NAME {aws}` again with the same peer, the new --proposal/--esp-proposal and no --allow-weak (the key is kept)"),
        "os-patched" => format!("patch the host (`aws ssm start-session --target {instance} {aws}`, `sudo yum -y update`, reboot for a new kernel) or rebuild it; this rule reads the date user-data patched it, so only a rebuild clears it"),
        "alarms" => format!("`poscloud provision {stack} {aws}` puts the alarms and the topic back (set `alert_email` in the stack file first if it has none); the recipient confirms SNS's e-mail (runbook alarms.md)"),
        "host-key-pinned" => format!("pin the key checked out of band: any remote command over SSH with it, e.g. `poscloud pos status {stack} --transport ssh --host-key-file KEY.pub {aws}`; or remove the tcp/22 inbound rule"),
        _ => "see docs/runbooks/reports.md".into(),
    }
}

fn covers(r: &crate::resources::discover::Rule, port: i32) -> bool {
    match (r.from_port, r.to_port) {
        (Some(a), Some(b)) => a <= port && port <= b,
        _ => true,
    }
}

fn key_fingerprint(line: &str) -> String {
    crate::remote::ssh::PinnedKey::parse(line)
        .map(|k| format!("pinned {}", k.fingerprint()))
        .unwrap_or_else(|_| "pinned (unreadable key)".into())
}

/// When user-data last updated the OS (its `finished` time in the bootstrap record).
fn patched_at(b: Option<&PhaseState>) -> Option<(String, SystemTime)> {
    let t = BootstrapSeen::of(b?).userdata?.finished?;
    let at = parse_time(&t)?;
    Some((t, at))
}

/// What the report reads of a bootstrap record (bootstrap.sh's result,
/// `remote::results::Bootstrap`), each field optional: a report reads records that earlier
/// versions of poscloud wrote.
#[derive(Debug, Default, Deserialize)]
struct BootstrapSeen {
    docker: Option<String>,
    strongswan: Option<String>,
    kernel: Option<String>,
    userdata: Option<UserdataMarker>,
}

impl BootstrapSeen {
    fn of(b: &PhaseState) -> BootstrapSeen {
        BootstrapSeen::deserialize(&b.result).unwrap_or_default()
    }
}

/// Host versions from the bootstrap record, for the report.
pub fn host_versions(b: Option<&PhaseState>) -> Value {
    let Some(b) = b else {
        return Value::Null;
    };
    let r = BootstrapSeen::of(b);
    let u = r.userdata.unwrap_or_default();
    serde_json::json!({
        "docker": r.docker,
        "strongswan": r.strongswan,
        "kernel": r.kernel,
        "ssm_agent": u.ssm_agent,
        "reboot_required": u.reboot_required,
        "patched_at": u.finished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SystemTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn month_windows() {
        let now = t("2026-11-23T17:00:00Z");
        assert_eq!(
            month_window("2026-10", now).unwrap(),
            (t("2026-10-01T00:00:00Z"), t("2026-11-01T00:00:00Z"))
        );
        assert_eq!(
            month_window("2026-11", now).unwrap(),
            (t("2026-11-01T00:00:00Z"), now)
        );
        assert_eq!(
            month_window("2025-12", now).unwrap().1,
            t("2026-01-01T00:00:00Z")
        );
        for bad in [
            "2026-13", "2026-1", "26-10", "2026/10", "", "2026-00", "2026-12",
        ] {
            assert!(month_window(bad, now).is_err(), "{bad}");
        }
        assert_eq!(month_hours(t("2024-02-01T00:00:00Z")), 29.0 * 24.0);
        assert_eq!(month_hours(t("2026-10-01T00:00:00Z")), 31.0 * 24.0);
        assert_eq!(this_month(now), "2026-11");
    }

    #[test]
    fn month_lists_and_journal_coverage() {
        assert_eq!(
            months("2026-11", "2027-02"),
            ["2026-11", "2026-12", "2027-01", "2027-02"]
        );
        assert_eq!(months("2026-10", "2026-10"), ["2026-10"]);
        assert_eq!(months("2026-12", "2026-10"), ["2026-10"]);
        let now = t("2026-12-01T12:00:00Z");
        let j = |first: &str, last: &str| Journal {
            path: Some("j.jsonl".into()),
            first: Some(t(first)),
            last: Some(t(last)),
            ..Journal::default()
        };
        let oct = month_window("2026-10", now).unwrap();
        let dec = month_window("2026-12", now).unwrap();
        // All of October: nothing to say.
        assert!(coverage_notes(
            &j("2026-09-01T00:00:00Z", "2026-11-02T00:00:00Z"),
            "2026-10",
            oct,
            now
        )
        .is_empty());
        let n = coverage_notes(
            &j("2026-10-10T00:00:00Z", "2026-10-20T00:00:00Z"),
            "2026-10",
            oct,
            now,
        );
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            n[0].contains("begins 2026-10-10T00:00:00Z, after 2026-10 began"),
            "{n:?}"
        );
        assert!(
            n[1].contains("ends 2026-10-20T00:00:00Z, before 2026-10 ended"),
            "{n:?}"
        );
        // This month has not ended: a journal whose last line is before now is not short.
        assert!(coverage_notes(
            &j("2026-09-01T00:00:00Z", "2026-12-01T01:00:00Z"),
            "2026-12",
            dec,
            now
        )
        .is_empty());
        let empty = Journal::default();
        assert!(coverage_notes(&empty, "2026-12", dec, now)[0].contains("no lines"));
    }

    #[test]
    fn hours_between_events_inside_the_window() {
        let (from, to) = (t("2026-10-01T00:00:00Z"), t("2026-11-01T00:00:00Z"));
        // Started before the window, stopped, started again, terminated.
        let mut ev = vec![
            (t("2026-10-05T12:00:00Z"), true),
            (t("2026-09-30T20:00:00Z"), true),
            (t("2026-10-02T00:00:00Z"), false),
            (t("2026-10-06T00:00:00Z"), false),
        ];
        assert_eq!(hours_on(&mut ev, from, to), (36.0, false));
        // Still on at the end of the window; a repeated "on" changes nothing.
        let mut ev = vec![
            (t("2026-10-31T22:00:00Z"), true),
            (t("2026-10-31T23:00:00Z"), true),
        ];
        assert_eq!(hours_on(&mut ev, from, to), (2.0, false));
        // History starts with an "off": on from the window's start, and said so.
        let mut ev = vec![(t("2026-10-01T10:00:00Z"), false)];
        assert_eq!(hours_on(&mut ev, from, to), (10.0, true));
        // Entirely before or after the window.
        let mut ev = vec![
            (t("2026-09-01T00:00:00Z"), true),
            (t("2026-09-02T00:00:00Z"), false),
        ];
        assert_eq!(hours_on(&mut ev, from, to).0, 0.0);
        let mut ev = vec![(t("2026-11-02T00:00:00Z"), true)];
        assert_eq!(hours_on(&mut ev, from, to).0, 0.0);
    }

    #[test]
    fn journal_commands_name_the_stack() {
        let id = stack_of_command("provision --shop 12345678 --env qa").unwrap();
        assert_eq!((id.shop.as_str(), id.env), ("12345678", Env::Qa));
        assert!(stack_of_command("list").is_none());
        assert!(stack_of_command("provision --shop 1234 --env qa").is_none());
    }
}
