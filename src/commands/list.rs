use super::Ctx;
use crate::aws::{Aws, Connect};
use crate::cli::ListArgs;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::ops::fleet::{self, Account};
use crate::phases::Phase;
use crate::report;
use crate::resources::discover::StackSummary;
use crate::spec::{Env, StackId, StackSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What every row needs besides its stack: the profiles' prices and the journal's writes.
struct Rows<'a> {
    profiles: &'a BTreeMap<Env, StackSpec>,
    writes: &'a [report::Write],
    month: (std::time::SystemTime, std::time::SystemTime),
}

const HEADER: [&str; 11] = [
    "SHOP", "ENV", "INSTANCE", "STATE", "TYPE", "LAUNCHED", "RUN H", "PHASES", "VPN", "HOST IP",
    "POS IP",
];

fn line(cols: &[String]) -> String {
    format!(
        "{:<10} {:<5} {:<21} {:<10} {:<10} {:<20} {:>7} {:<12} {:<3} {:<15} {}",
        cols[0],
        cols[1],
        cols[2],
        cols[3],
        cols[4],
        cols[5],
        cols[6],
        cols[7],
        cols[8],
        cols[9],
        cols[10]
    )
}

impl Rows<'_> {
    /// One stack's columns and its JSON row.
    fn row(&self, id: &StackId, s: &StackSummary) -> (Vec<String>, serde_json::Value) {
        // Running hours this month: the journal's starts and stops plus EC2's latest ones.
        let spec = crate::ops::report::profile_for(self.profiles, id);
        let hours = report::usage(id, self.writes, Some(s), &spec, self.month).running_hours;
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
        let cols = vec![
            id.shop.as_str().to_string(),
            id.env.as_str().to_string(),
            s.instance.as_deref().unwrap_or("-").to_string(),
            s.state.as_ref().map_or("-", |s| s.as_str()).to_string(),
            s.instance_type.as_deref().unwrap_or("-").to_string(),
            s.launch_time.map_or("-".into(), |t| t.to_string()),
            format!("{hours:.1}"),
            phases,
            s.vpn_locations.to_string(),
            s.host_ip.as_deref().unwrap_or("-").to_string(),
            s.pos_ip.as_deref().unwrap_or("-").to_string(),
        ];
        let mut row = serde_json::to_value(s).expect("json");
        row["shop"] = json!(id.shop.as_str());
        row["env"] = json!(id.env.as_str());
        row["running_hours_this_month"] = json!(hours);
        (cols, row)
    }
}

/// `list`: one line per shop+env found in the region; with `--all-regions` or
/// `--profiles`, the fleet: every region and account as one table.
pub async fn run(ctx: &Ctx, a: &ListArgs) -> Result<()> {
    let profiles = super::request::profiles(None)?;
    let (writes, _) = report::read_journal(ctx.global.journal.as_deref())?;
    let now = std::time::SystemTime::now();
    let month = report::month_window(&report::this_month(now), now)?;
    let rows = Rows {
        profiles: &profiles,
        writes: &writes,
        month,
    };
    if a.all_regions || !a.profiles.is_empty() {
        return fleet(ctx, a, &rows).await;
    }
    let aws = ctx.connect("list").await?;
    let stacks = aws.list_stacks().await?;
    let mut text = format!("{}\n", line(&HEADER.map(String::from)));
    let mut out = Vec::new();
    for (id, s) in &stacks {
        let (cols, row) = rows.row(id, s);
        let _ = writeln!(text, "{}", line(&cols));
        out.push(row);
    }
    let at = aws.whereabouts().await?;
    if stacks.is_empty() {
        text = format!("no poscloud stacks in {at}\n");
    } else {
        ctx.ui.info(format!("poscloud stacks in {at}:"));
    }
    ctx.result(
        json!({"region": aws.region, "account": at.account.get(), "stacks": out}),
        &text,
    );
    Ok(())
}

/// The accounts of a fleet listing: `--profiles`, else the one of --profile (or the
/// default credentials). Checked before any AWS call.
async fn accounts(ctx: &Ctx, a: &ListArgs) -> Result<Vec<Option<String>>> {
    if a.profiles.is_empty() {
        if let Some(p) = &ctx.global.profile {
            crate::aws::check_profiles(std::slice::from_ref(p)).await?;
        }
        return Ok(vec![ctx.global.profile.clone()]);
    }
    // --profile on the command line beside --profiles: which one was meant? (AWS_PROFILE
    // in the environment is only the shell's default, and --profiles replaces it.)
    if let Some(p) = &ctx.global.profile {
        if std::env::var("AWS_PROFILE").ok().as_deref() != Some(p.as_str()) {
            return Err(Error::usage(format!(
                "--profile {p} and --profiles: name every account in --profiles"
            )));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &a.profiles {
        if p.is_empty() {
            return Err(Error::usage("--profiles: an empty profile name"));
        }
        if !seen.insert(p) {
            return Err(Error::usage(format!("--profiles names {p} twice")));
        }
    }
    crate::aws::check_profiles(&a.profiles).await?;
    Ok(a.profiles.iter().cloned().map(Some).collect())
}

async fn fleet(ctx: &Ctx, a: &ListArgs, rows: &Rows<'_>) -> Result<()> {
    let names = accounts(ctx, a).await?;
    let mut connected = Vec::new();
    for profile in names {
        let aws: Result<Aws> = async {
            Aws::connect(
                &Connect {
                    region: ctx.global.region.clone(),
                    profile: profile.clone(),
                    endpoint_url: ctx.global.endpoint_url.clone(),
                },
                Journal::open(ctx.global.journal.as_deref(), "list")?,
                ctx.ui.notify(),
            )
            .await
        }
        .await;
        connected.push(Account { profile, aws });
    }
    // One account: its connect error (no region, no credentials) is the run's, as for
    // every command; among several, one account's is its row.
    if let [Account { aws: Err(_), .. }] = connected.as_slice() {
        if let Some(Account { aws: Err(e), .. }) = connected.pop() {
            return Err(e);
        }
    }
    let reads = fleet::read_all(connected, a.all_regions, |aws, home| async move {
        Ok((home, aws.list_stacks().await?))
    })
    .await;
    // IAM is global: every region lists every stack's role. A stack is shown where it has
    // more than that, and one with nothing else anywhere in its account (a leftover role)
    // in the account's home region.
    let somewhere: std::collections::BTreeSet<(Option<String>, StackId)> = reads
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|(_, st)| (r, st)))
        .flat_map(|(r, st)| {
            st.iter()
                .filter(|(_, s)| regional(s))
                .map(move |(id, _)| (r.place.profile.clone(), id.clone()))
        })
        .collect();
    let reads: Vec<_> = reads
        .into_iter()
        .map(|r| {
            let profile = r.place.profile.clone();
            let result = r.result.map(|(home, stacks)| {
                stacks
                    .into_iter()
                    .filter(|(id, s)| {
                        regional(s) || (home && !somewhere.contains(&(profile.clone(), id.clone())))
                    })
                    .collect::<Vec<_>>()
            });
            fleet::Read {
                place: r.place,
                result,
            }
        })
        .collect();
    let head = |p: &str, a: &str, r: &str| format!("{p:<14} {a:<12} {r:<15} ");
    let mut text = format!(
        "{}{}\n",
        head("PROFILE", "ACCOUNT", "REGION"),
        line(&HEADER.map(String::from))
    );
    let mut failures = String::new();
    let (mut out, mut places) = (Vec::new(), Vec::new());
    for read in &reads {
        let p = &read.place;
        let profile = p.profile.as_deref().unwrap_or("-");
        let account = p.account.as_deref().unwrap_or("-");
        let region = p.region.as_deref().unwrap_or("-");
        match &read.result {
            Ok(stacks) => {
                for (id, s) in stacks {
                    let (cols, mut row) = rows.row(id, s);
                    let _ = writeln!(text, "{}{}", head(profile, account, region), line(&cols));
                    row["profile"] = json!(p.profile);
                    row["account"] = json!(p.account);
                    row["region"] = json!(p.region);
                    out.push(row);
                }
                places.push(json!({"profile": p.profile, "account": p.account,
                                   "region": p.region, "ok": true, "stacks": stacks.len()}));
            }
            Err(e) => {
                let _ = writeln!(failures, "FAILED {p}: {e}");
                places.push(json!({"profile": p.profile, "account": p.account,
                                   "region": p.region, "ok": false, "error": e.to_string()}));
            }
        }
    }
    let failed = reads.iter().filter(|r| r.result.is_err()).count();
    if out.is_empty() {
        text = "no poscloud stacks\n".into();
    }
    text.push_str(&failures);
    ctx.ui.info(format!(
        "poscloud stacks in {} place(s) (account and region), {failed} failed:",
        reads.len()
    ));
    ctx.result(json!({"places": places, "stacks": out}), &text);
    if failed > 0 {
        return Err(Error::Reported(format!(
            "{failed} of {} place(s) could not be listed",
            reads.len()
        )));
    }
    Ok(())
}

/// Anything of the stack lives in the region itself (not only its global IAM role).
fn regional(s: &StackSummary) -> bool {
    s.vpc.is_some() || s.instance.is_some() || !s.public_ips.is_empty() || s.parameters > 0
}
