//! Cutover night: the shop's physical POS server ("the source") to its cloud host, in steps
//! that are each recorded in SSM (so a second engineer sees the same progress and resumes)
//! and safe to run again. The cloud host pulls the data over SSH through the VPN to the shop;
//! poscloud reaches the source over SSH with its host key pinned.

use super::{stage, vpn, Site};
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::journal::{local_host, local_user, now};
use crate::remote::results::{
    self, CloudFacts, CloudPos, CloudSync, PosStatus, ScriptResult, SrcApp, SrcAuthorize,
    SrcDeauthorize, SrcFacts, SrcMark, SrcStart, SrcStop, Typed,
};
use crate::remote::ssh::SshTarget;
use crate::remote::{no_sink, Inputs, Script};
use crate::spec::{CutoverSpec, StackId, StackSpec};
use crate::time::Time;
use crate::ui::Ui;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The steps, in the order they run (`--until` names one; records key by them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum CutoverStep {
    Preflight,
    PreSync,
    Freeze,
    FinalSync,
    Verify,
    Switch,
    Finish,
}

impl CutoverStep {
    pub const ALL: [CutoverStep; 7] = [
        CutoverStep::Preflight,
        CutoverStep::PreSync,
        CutoverStep::Freeze,
        CutoverStep::FinalSync,
        CutoverStep::Verify,
        CutoverStep::Switch,
        CutoverStep::Finish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CutoverStep::Preflight => "preflight",
            CutoverStep::PreSync => "pre-sync",
            CutoverStep::Freeze => "freeze",
            CutoverStep::FinalSync => "final-sync",
            CutoverStep::Verify => "verify",
            CutoverStep::Switch => "switch",
            CutoverStep::Finish => "finish",
        }
    }

    /// What the step does, for `cutover plan`.
    pub fn describe(self) -> &'static str {
        match self {
            CutoverStep::Preflight => {
                "checks: cloud POS staged, VPN up, source reachable, space, backup age"
            }
            CutoverStep::PreSync => {
                "bulk copy while the shop is open (rsync, cloud host pulls over the VPN)"
            }
            CutoverStep::Freeze => "stop the physical POS (downtime starts)",
            CutoverStep::FinalSync => "copy the changes since the pre-sync",
            CutoverStep::Verify => {
                "checksum of every file on both sides; any difference stops here"
            }
            CutoverStep::Switch => "start the cloud POS, health check, print the downtime",
            CutoverStep::Finish => {
                "mark the physical server as migrated; remove the cloud host's key from it"
            }
        }
    }
}

impl std::fmt::Display for CutoverStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a cutover is (its record's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutoverState {
    /// Begun, not finished: `cutover run` resumes at the first step not done.
    #[default]
    Running,
    /// Finished: the cloud POS serves.
    Done,
    /// Rolled back after the freeze: the physical POS serves again.
    RolledBack,
    /// Rolled back before the freeze (nothing was stopped): the record is deleted, and this
    /// is only what the rollback reports.
    Cleared,
}

impl std::fmt::Display for CutoverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CutoverState::Running => "running",
            CutoverState::Done => "done",
            CutoverState::RolledBack => "rolled-back",
            CutoverState::Cleared => "cleared",
        })
    }
}

/// A large shop's data over a shop's uplink: hours.
const SYNC_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
const SHORT: Duration = Duration::from_secs(300);
/// Checksums of every file: minutes to hours.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// Free space wanted on the cloud data volume, as a multiple of the data's size.
const SPACE_FACTOR: f64 = 1.2;
/// Throughput assumed for the downtime estimate (checksums on each side, bytes per second).
const HASH_RATE: f64 = 150e6;

/// The cutover's record: SSM `/poscloud/<shop>/<env>/cutover`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub source: String,
    pub state: CutoverState,
    pub started_at: crate::time::Time,
    pub by: String,
    /// Step → its result with `at` (when it completed). `freeze` has `started_at` first.
    pub steps: BTreeMap<CutoverStep, Value>,
    #[serde(default)]
    pub rollbacks: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_at: Option<crate::time::Time>,
}

impl Record {
    pub fn done(&self, step: CutoverStep) -> bool {
        self.at(step).is_some()
    }

    /// When the step completed.
    pub fn at(&self, step: CutoverStep) -> Option<Time> {
        self.text(step, "at").and_then(|t| t.parse().ok())
    }

    /// The first step not done, if any.
    pub fn next_step(&self) -> Option<CutoverStep> {
        CutoverStep::ALL.into_iter().find(|s| !self.done(*s))
    }

    /// A text value of a step's result.
    pub fn text(&self, step: CutoverStep, key: &str) -> Option<&str> {
        self.steps.get(&step).and_then(|s| s[key].as_str())
    }

    /// Whether the physical POS may have been stopped by poscloud (freeze begun).
    pub fn frozen(&self) -> bool {
        self.steps.contains_key(&CutoverStep::Freeze)
    }

    /// When the freeze began (the downtime's start).
    pub fn frozen_at(&self) -> Option<Time> {
        self.text(CutoverStep::Freeze, "started_at")
            .and_then(|t| t.parse().ok())
    }

    /// Seconds from the freeze to the cloud POS up, once the switch is done.
    pub fn downtime_s(&self) -> Option<u64> {
        self.steps
            .get(&CutoverStep::Switch)
            .and_then(|s| s["downtime_s"].as_u64())
    }
}

pub fn record_name(id: &StackId) -> String {
    format!("{}cutover", id.param_path())
}

pub async fn load(aws: &Aws, id: &StackId) -> Result<Option<Record>> {
    match aws.get_param(&record_name(id)).await? {
        Some(v) => serde_json::from_str(&v).map(Some).map_err(|e| {
            Error::failed(format!(
                "{} does not hold a cutover record ({e}); fix or delete it",
                record_name(id)
            ))
        }),
        None => Ok(None),
    }
}

async fn save(aws: &Aws, id: &StackId, rec: &Record) -> Result<()> {
    aws.put_param(&record_name(id), &serde_json::to_string(rec).expect("json"))
        .await
}

/// The physical server: how poscloud reaches it, how the cloud host reaches it, and how its
/// POS application is handled.
pub struct Source<'a> {
    pub site: Site<'a>,
    pub target: SshTarget,
    /// The address the cloud host reaches it at, through the VPN.
    pub lan: Ipv4Addr,
    pub spec: CutoverSpec,
}

impl Source<'_> {
    pub fn url(&self) -> String {
        format!(
            "ssh://{}@{}:{}",
            self.target.user, self.target.host, self.target.port
        )
    }

    fn inputs(&self, action: &str) -> Result<Inputs> {
        Inputs::new()
            .set("ACTION", action)?
            .set("DATA_DIR", &self.spec.data_dir)?
            .set("STOP_CMD", &self.spec.stop)?
            .set("START_CMD", &self.spec.start)?
            .set("CHECK_CMD", &self.spec.check)
    }

    async fn run<T: ScriptResult>(
        &self,
        action: &str,
        extra: &[(&str, &str)],
        what: &'static str,
    ) -> Result<T> {
        let mut inputs = self.inputs(action)?;
        for (k, v) in extra {
            inputs = inputs.set(k, *v)?;
        }
        self.site
            .run_script_as::<T>(Script::Cutover, &inputs, SHORT, no_sink(), move |_| {
                (
                    what.into(),
                    "read the reason above; the same command resumes once it is fixed".into(),
                )
            })
            .await
            .map(|r| r.fields)
    }

    /// src-facts: also when the data directory is not there (exit 3).
    pub async fn facts(&self) -> Result<Typed<SrcFacts>> {
        let mut inputs = self.inputs("src-facts")?;
        if let Some(b) = &self.spec.backup_stamp {
            inputs = inputs.set("BACKUP_STAMP", b)?;
        }
        let out = self
            .site
            .remote
            .run(Script::Cutover, &inputs, SHORT, no_sink())
            .await?;
        match (out.exit_code, out.result()) {
            (0 | 3, Some(r)) => results::typed(r),
            (code, _) => Err(Error::failed(format!(
                "cannot read the source {} (exit {code}):\n{}",
                self.url(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }
}

/// Everything the preflight found; `problems` empty means go.
pub struct Preflight {
    /// src-facts as printed.
    pub facts: Value,
    pub source: SrcFacts,
    pub problems: Vec<String>,
    pub lines: Vec<String>,
    pub location: Option<String>,
}

/// The checks of step 1; changes nothing anywhere.
pub async fn preflight(
    site: &Site<'_>,
    aws: &Aws,
    spec: &StackSpec,
    src: &Source<'_>,
) -> Result<Preflight> {
    let mut problems = Vec::new();
    let mut lines = Vec::new();
    let id = &spec.id;
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{}: no [pos] section: the cloud POS must be staged before a cutover",
            spec.source
        ))
    })?;

    // The cloud side: staged, the holder with eth1 running.
    let staged = super::phase_state(aws, id, super::Phase::Stage).await?;
    let ready = super::phase_state(aws, id, super::Phase::Ready).await?;
    if staged.is_none() || ready.is_none() {
        problems.push(format!(
            "the cloud POS of {id} is not provisioned to the end (no stage/ready record): run `poscloud provision` first"
        ));
    }
    let status = site
        .run_script_as::<PosStatus>(
            Script::Pos,
            &Inputs::new()
                .set("ACTION", "status")?
                .set("CONTAINER", "pos")?,
            SHORT,
            no_sink(),
            |_| {
                (
                    "reading the POS status failed".into(),
                    "check the host".into(),
                )
            },
        )
        .await?
        .fields;
    let want = format!("{}/{}", spec.pos_ip, spec.network.prefix_len());
    if !status.net_running || status.eth1 != want || !status.exists {
        problems.push(format!(
            "the cloud POS is not staged and healthy (container exists: {}, network holder running: {}, eth1: {:?}): `poscloud pos status`, `poscloud pos start`",
            status.exists, status.net_running, status.eth1
        ));
    } else {
        lines.push(format!("cloud POS staged, eth1 {want}"));
    }

    // The VPN location whose networks hold the source's LAN address, up.
    let locations = vpn::locations(aws, id).await?;
    let location = locations
        .iter()
        .find(|r| r.location.peer_nets.iter().any(|n| n.contains(&src.lan)))
        .map(|r| r.location.name.clone());
    match &location {
        None => problems.push(format!(
            "no VPN location of {id} reaches {} (the source as the cloud reaches it): `poscloud vpn create` for the shop, or --from-lan",
            src.lan
        )),
        Some(l) => {
            match vpn::status(site, Some(l)).await {
                Err(e) => problems.push(format!(
                    "the VPN {l} cannot be read on the cloud host: {}",
                    e.to_string().lines().next().unwrap_or("")
                )),
                Ok(st) if st.locations.first().is_some_and(|l| l.up) => {
                    lines.push(format!("VPN {l} up (reaches {})", src.lan));
                }
                Ok(_) => problems.push(format!(
                    "the VPN {l} (which reaches {}) is not up: `poscloud vpn status`, `poscloud vpn start --location {l}`",
                    src.lan
                )),
            }
        }
    }

    // The source: reachable with its pinned key, data and application found, not migrated.
    let facts = src.facts().await?;
    let found = facts.fields.found();
    match found {
        None => problems.push(format!(
            "the data directory {} is not on the source {}: set [cutover] data_dir in the stack file",
            src.spec.data_dir,
            src.url()
        )),
        Some(f) => lines.push(format!(
            "source {} reached (host key pinned): {} holds {} files, {} bytes; POS application {}",
            src.url(),
            src.spec.data_dir,
            f.files,
            f.bytes,
            f.app
        )),
    }
    if found.is_some_and(|f| f.app != SrcApp::Running) {
        problems.push(format!(
            "the POS application does not answer on the source (`{}` fails): is it running, and is [cutover] check right?",
            src.spec.check
        ));
    }
    if let Some(m) = found.and_then(|f| f.marker.as_deref()) {
        problems.push(format!(
            "the source is already marked as migrated ({}): {}",
            "/etc/poscloud-migrated",
            m.replace('\n', "; ")
        ));
    }
    match found.and_then(|f| f.backup_age_s) {
        Some(s) => lines.push(format!("last backup {} ago", human_duration(s))),
        None if src.spec.backup_stamp.is_some() => {
            lines.push("last backup: unknown (no backup stamp on the source)".into())
        }
        None => lines.push("last backup: not known ([cutover] backup_stamp is not set)".into()),
    }

    // Space on the cloud data volume.
    let cloud = cloud_facts(site, &stage::data_dir(pos), false).await?;
    let bytes = found.map_or(0, |f| f.bytes);
    let need = (bytes as f64 * SPACE_FACTOR) as u64;
    let free = cloud.free_bytes;
    if free < need {
        problems.push(format!(
            "the cloud data volume has {free} bytes free; the data needs {need} ({SPACE_FACTOR} × {bytes}): grow the volume first"
        ));
    } else {
        lines.push(format!(
            "cloud data volume: {free} bytes free, {need} needed"
        ));
    }
    Ok(Preflight {
        facts: facts.json,
        source: facts.fields,
        problems,
        lines,
        location,
    })
}

fn human_duration(s: u64) -> String {
    match s {
        0..=5399 => format!("{} min", s.div_ceil(60)),
        5400..=172_799 => format!("{:.1} h", s as f64 / 3600.0),
        _ => format!("{} days", s / 86400),
    }
}

/// An estimate of the downtime (freeze → POS up) for `bytes` of data: the final sync of a
/// day's changes, checksums on both sides, and the POS start.
pub fn estimate_downtime(bytes: u64) -> String {
    let hash = bytes as f64 / HASH_RATE;
    let total = 60.0 + hash + 60.0;
    format!(
        "about {} (final sync of the changes since the pre-sync ~1 min, checksums of {bytes} bytes ~{}, POS start ~1 min)",
        human_duration(total as u64),
        human_duration(hash as u64)
    )
}

async fn cloud_facts(site: &Site<'_>, data_dir: &str, keygen: bool) -> Result<CloudFacts> {
    let mut inputs = Inputs::new()
        .set("ACTION", "cloud-facts")?
        .set("DATA_DIR", data_dir)?;
    if keygen {
        inputs = inputs.set("KEYGEN", "1")?;
    }
    site.run_script_as::<CloudFacts>(Script::Cutover, &inputs, SHORT, no_sink(), |_| {
        (
            "reading the cloud data volume failed".into(),
            "check the host".into(),
        )
    })
    .await
    .map(|r| r.fields)
}

/// One cutover run: what it needs and where it records.
pub struct Cutover<'a, 'b> {
    pub site: &'b Site<'a>,
    pub aws: &'a Aws,
    pub ui: &'b Ui,
    pub spec: &'b StackSpec,
    pub src: &'b Source<'a>,
    /// The cloud instance (for the migration marker).
    pub instance: String,
    /// KiB/s for the syncs (0: no limit).
    pub bwlimit: u32,
}

impl Cutover<'_, '_> {
    fn id(&self) -> &StackId {
        &self.spec.id
    }

    fn data_dir(&self) -> String {
        stage::data_dir(self.spec.pos.as_ref().expect("checked by preflight"))
    }

    async fn mark(&self, rec: &mut Record, step: CutoverStep, mut result: Value) -> Result<()> {
        let prior = rec.steps.remove(&step);
        if let (Some(Value::Object(p)), Value::Object(r)) = (prior, &mut result) {
            for (k, v) in p {
                r.entry(k).or_insert(v);
            }
        }
        result["at"] = json!(now());
        rec.steps.insert(step, result);
        save(self.aws, self.id(), rec).await?;
        self.site.journal().event(
            "cutover-step",
            json!({"stack": self.id().to_string(), "step": step}),
        );
        Ok(())
    }

    /// rsync on the cloud host from the source's SRC_DIR (its data directory as its SSH
    /// server sees it, from the preflight's facts).
    async fn sync(&self, src_dir: &str) -> Result<Typed<CloudSync>> {
        let bwlimit = self.bwlimit;
        let t = &self.src.target;
        let inputs = Inputs::new()
            .set("ACTION", "cloud-sync")?
            .set("DATA_DIR", self.data_dir())?
            .set("SRC_USER", &t.user)?
            .set("SRC_HOST", self.src.lan.to_string())?
            .set("SRC_PORT", t.port.to_string())?
            .set("SRC_HOST_KEY", t.host_key.to_line())?
            .set("SRC_DIR", src_dir)?
            .set("BWLIMIT", bwlimit.to_string())?;
        self.site
            .run_script_as::<CloudSync>(Script::Cutover, &inputs, SYNC_TIMEOUT, self.ui.remote_sink(), |_| {
                (
                    "the data sync from the source failed".into(),
                    "check the VPN (`poscloud vpn status`) and the source; the same command resumes (rsync moves only what is missing)".into(),
                )
            })
            .await
    }

    /// The source's data directory as its SSH server sees it, from the preflight record.
    fn src_dir(rec: &Record) -> Result<String> {
        rec.text(CutoverStep::Preflight, "data_dir")
            .map(str::to_string)
            .ok_or_else(|| Error::failed("the preflight record has no data_dir: run `poscloud cutover rollback`, then `cutover run` again"))
    }

    /// Runs the steps from the first one not done; `until` stops after that step, also when
    /// it was done already (a second `--until pre-sync` must never go on to the freeze).
    pub async fn run(&self, until: Option<CutoverStep>) -> Result<Record> {
        let id = self.id();
        let mut rec = match load(self.aws, id).await? {
            Some(r) if r.state == CutoverState::Done => return Ok(r),
            Some(r) if r.state == CutoverState::Running && r.source != self.src.url() => {
                return Err(Error::usage(format!(
                    "a cutover of {id} from {} is in progress; finish it with that --from, or `poscloud cutover rollback`",
                    r.source
                )))
            }
            Some(r) if r.state == CutoverState::Running => r,
            prior => Record {
                source: self.src.url(),
                state: CutoverState::Running,
                started_at: now(),
                by: format!("{}@{}", local_user(), local_host()),
                steps: BTreeMap::new(),
                rollbacks: prior.as_ref().map_or(0, |p| p.rollbacks),
                rolled_back_at: prior.and_then(|p| p.rolled_back_at),
            },
        };
        for step in CutoverStep::ALL {
            if rec.done(step) {
                if until == Some(step) {
                    break;
                }
                continue;
            }
            match step {
                CutoverStep::Preflight => self.preflight(&mut rec).await?,
                CutoverStep::PreSync => {
                    let ui = self.ui.step("pre-sync: bulk copy while the shop is open");
                    let r = self.pre_sync(&rec).await;
                    let r = finish_step(ui, r, |r| {
                        format!("{} files, {} bytes", r.fields.files, r.fields.bytes)
                    })?;
                    self.mark(&mut rec, step, r.json).await?;
                }
                CutoverStep::Freeze => self.freeze(&mut rec).await?,
                CutoverStep::FinalSync => {
                    let ui = self.ui.step("final sync: the changes since the pre-sync");
                    let r = self.sync(&Self::src_dir(&rec)?).await;
                    let r = finish_step(ui, r, |r| {
                        format!("{} files, {} bytes", r.fields.files, r.fields.bytes)
                    })?;
                    self.mark(&mut rec, step, r.json).await?;
                }
                CutoverStep::Verify => self.verify(&mut rec).await?,
                CutoverStep::Switch => self.switch(&mut rec).await?,
                CutoverStep::Finish => {
                    let ui = self
                        .ui
                        .step("finish: the physical server marked as migrated");
                    let r = self.finish().await;
                    let r = finish_step(ui, r, |_| String::new())?;
                    rec.state = CutoverState::Done;
                    self.mark(&mut rec, step, r).await?;
                }
            }
            if until == Some(step) {
                break;
            }
        }
        Ok(rec)
    }

    async fn preflight(&self, rec: &mut Record) -> Result<()> {
        let ui = self.ui.step("preflight: cloud POS, VPN, source, space");
        let pf = match preflight(self.site, self.aws, self.spec, self.src).await {
            Ok(p) => p,
            Err(e) => {
                ui.failed();
                return Err(e);
            }
        };
        if !pf.problems.is_empty() {
            ui.failed();
            return Err(Error::failed(format!(
                "the preflight found {} problem(s); nothing was changed:\n  - {}",
                pf.problems.len(),
                pf.problems.join("\n  - ")
            )));
        }
        ui.done("");
        for l in &pf.lines {
            self.ui.info(format!("  {l}"));
        }
        // No problem: the data directory was found.
        let f = pf
            .source
            .found()
            .ok_or_else(|| Error::failed("the preflight found no data directory"))?;
        self.mark(
            rec,
            CutoverStep::Preflight,
            json!({"data_dir": f.data_dir, "bytes": f.bytes, "files": f.files,
                   "app": f.app, "backup_age_s": f.backup_age_s, "vpn": pf.location}),
        )
        .await
    }

    async fn pre_sync(&self, rec: &Record) -> Result<Typed<CloudSync>> {
        let cloud = cloud_facts(self.site, &self.data_dir(), true).await?;
        let key = cloud
            .pubkey
            .as_deref()
            .ok_or_else(|| Error::failed("the cloud host made no cutover key"))?;
        self.src
            .run::<SrcAuthorize>(
                "src-authorize",
                &[("SHOP", self.id().shop.as_str()), ("PUBKEY", key)],
                "letting the cloud host read the data failed",
            )
            .await?;
        self.sync(&Self::src_dir(rec)?).await
    }

    /// Stops the physical POS. `started_at` and whether it ran are recorded before the stop,
    /// so a run killed in between knows poscloud stopped it.
    async fn freeze(&self, rec: &mut Record) -> Result<()> {
        let ui = self
            .ui
            .step("freeze: the physical POS stops (downtime starts)");
        if !rec.frozen() {
            let facts = match self.src.facts().await {
                Ok(f) => f,
                Err(e) => {
                    ui.failed();
                    return Err(e);
                }
            };
            rec.steps.insert(
                CutoverStep::Freeze,
                json!({"started_at": now(), "was_running": facts.fields.found().is_some_and(|f| f.app == SrcApp::Running)}),
            );
            save(self.aws, self.id(), rec).await?;
        }
        let r = self
            .src
            .run::<SrcStop>("src-stop", &[], "stopping the physical POS failed")
            .await;
        finish_step(ui, r, |_| String::new())?;
        self.mark(
            rec,
            CutoverStep::Freeze,
            json!({"stopped_by_poscloud": true}),
        )
        .await
    }

    async fn verify(&self, rec: &mut Record) -> Result<()> {
        let ui = self
            .ui
            .step("verify: checksums of every file on both sides");
        // Both sides at once: the checksums are part of the downtime.
        let both = async {
            let src_inputs = Inputs::new()
                .set("ACTION", "manifest")?
                .set("DATA_DIR", &self.src.spec.data_dir)?;
            let cloud_inputs = Inputs::new()
                .set("ACTION", "manifest")?
                .set("DATA_DIR", self.data_dir())?;
            let (src, cloud) = tokio::join!(
                self.src.site.run_script_output(
                    Script::Cutover,
                    &src_inputs,
                    MANIFEST_TIMEOUT,
                    no_sink(),
                    |_| {
                        (
                            "checksums on the source failed".into(),
                            "check the source".into(),
                        )
                    },
                ),
                self.site.run_script_output(
                    Script::Cutover,
                    &cloud_inputs,
                    MANIFEST_TIMEOUT,
                    no_sink(),
                    |_| {
                        (
                            "checksums on the cloud host failed".into(),
                            "check the host".into(),
                        )
                    },
                )
            );
            let (src, cloud) = (src?, cloud?);
            Ok::<_, Error>((src.stdout_text(), cloud.stdout_text()))
        };
        let (src, cloud) = match both.await {
            Ok(x) => x,
            Err(e) => {
                ui.failed();
                return Err(e);
            }
        };
        let diff = compare(&src, &cloud);
        if !diff.is_empty() {
            ui.failed();
            // The final sync runs again on the next `cutover run`.
            rec.steps.remove(&CutoverStep::FinalSync);
            save(self.aws, self.id(), rec).await?;
            let shown: Vec<&String> = diff.iter().take(20).collect();
            let more = diff.len().saturating_sub(shown.len());
            return Err(Error::failed(format!(
                "verify: {} file(s) differ between the source and the cloud copy; the cutover stops here (the cloud POS was not started):\n  {}{}",
                diff.len(),
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
                if more > 0 { format!("\n  … and {more} more") } else { String::new() }
            ))
            .next("find out what changed the source after the freeze; `poscloud cutover run` syncs again and verifies, `poscloud cutover rollback` restarts the physical POS"));
        }
        let files = src
            .lines()
            .filter(|l| !l.starts_with("POSCLOUD_RESULT "))
            .count();
        ui.done(&format!("{files} files identical"));
        self.mark(rec, CutoverStep::Verify, json!({"files": files}))
            .await
    }

    async fn switch(&self, rec: &mut Record) -> Result<()> {
        let ui = self.ui.step("switch: the cloud POS starts");
        let started = async {
            self.site
                .run_script_as::<CloudPos>(
                    Script::Cutover,
                    &Inputs::new()
                        .set("ACTION", "cloud-pos")?
                        .set("POS_ACTION", "start")?,
                    SHORT,
                    no_sink(),
                    |_| ("starting the cloud POS failed".into(), "`poscloud pos status`; `poscloud cutover rollback` restarts the physical POS".into()),
                )
                .await
        }
        .await;
        if let Err(e) = started {
            ui.failed();
            return Err(e);
        }
        ui.done("");
        stage::check_ready(self.site, self.ui, self.spec).await?;
        let up_at = now();
        let downtime = rec.frozen_at().and_then(|t| t.secs_until(up_at));
        self.mark(
            rec,
            CutoverStep::Switch,
            json!({"up_at": up_at, "downtime_s": downtime}),
        )
        .await?;
        if let Some(d) = downtime {
            self.ui.info(format!(
                "downtime: {} (freeze → cloud POS up)",
                human_duration_exact(d)
            ));
        }
        Ok(())
    }

    async fn finish(&self) -> Result<Value> {
        let at = now().to_string();
        self.src
            .run::<SrcMark>(
                "src-mark",
                &[
                    ("SHOP", self.id().shop.as_str()),
                    ("AT", &at),
                    ("INSTANCE", &self.instance),
                ],
                "marking the physical server as migrated failed",
            )
            .await?;
        self.src
            .run::<SrcDeauthorize>(
                "src-deauthorize",
                &[("SHOP", self.id().shop.as_str())],
                "removing the cloud host's key from the source failed",
            )
            .await?;
        Ok(json!({"marker": "/etc/poscloud-migrated", "instance": self.instance}))
    }

    /// After the freeze: the cloud POS stopped, the physical one started and answering, the
    /// marker and the cloud host's key removed from the source; recorded.
    pub async fn rollback(&self) -> Result<Record> {
        let id = self.id();
        let mut rec = match load(self.aws, id).await? {
            Some(r) if r.state == CutoverState::Running && r.frozen() => r,
            Some(r) if r.state == CutoverState::Running => {
                // Nothing stopped yet: only the key the pre-sync may have left goes.
                self.src
                    .run::<SrcDeauthorize>(
                        "src-deauthorize",
                        &[("SHOP", id.shop.as_str())],
                        "removing the cloud host's key from the source failed",
                    )
                    .await?;
                self.aws.delete_parameter(&record_name(id)).await?;
                let mut r = r;
                r.state = CutoverState::Cleared;
                return Ok(r);
            }
            Some(r) => return Ok(r),
            None => return Err(Error::usage(format!("{id} has no cutover to roll back"))),
        };
        let ui = self
            .ui
            .step("rollback: cloud POS stopped, physical POS started");
        let work = async {
            self.site
                .run_script_as::<CloudPos>(
                    Script::Cutover,
                    &Inputs::new()
                        .set("ACTION", "cloud-pos")?
                        .set("POS_ACTION", "stop")?,
                    SHORT,
                    no_sink(),
                    |_| {
                        (
                            "stopping the cloud POS failed".into(),
                            "`poscloud pos stop`, then roll back again".into(),
                        )
                    },
                )
                .await?;
            self.src
                .run::<SrcMark>("src-unmark", &[], "removing the migration marker failed")
                .await?;
            self.src
                .run::<SrcStart>("src-start", &[], "the physical POS did not start")
                .await?;
            self.src
                .run::<SrcDeauthorize>(
                    "src-deauthorize",
                    &[("SHOP", id.shop.as_str())],
                    "removing the cloud host's key from the source failed",
                )
                .await
        };
        finish_step(ui, work.await, |_| String::new())?;
        rec.state = CutoverState::RolledBack;
        rec.rollbacks += 1;
        rec.rolled_back_at = Some(now());
        save(self.aws, id, &rec).await?;
        self.site
            .journal()
            .event("cutover-rollback", json!({"stack": id.to_string()}));
        Ok(rec)
    }
}

fn finish_step<T>(ui: crate::ui::Step, r: Result<T>, detail: impl Fn(&T) -> String) -> Result<T> {
    match r {
        Ok(v) => {
            ui.done(&detail(&v));
            Ok(v)
        }
        Err(e) => {
            ui.failed();
            Err(e)
        }
    }
}

fn human_duration_exact(s: u64) -> String {
    format!("{} min {} s", s / 60, s % 60)
}

/// The differences between two manifests (cutover.sh `manifest`), one line each:
/// "differs: NAME", "missing in the cloud copy: NAME", "only in the cloud copy: NAME".
pub fn compare(src: &str, cloud: &str) -> Vec<String> {
    // "HASH  NAME", or "\\HASH  NAME" with \\ and \n escaped in NAME: names with a
    // backslash are always escaped, so the escaped form is a key of its own.
    fn parse(text: &str) -> BTreeMap<String, &str> {
        text.lines()
            .filter(|l| !l.starts_with("POSCLOUD_RESULT "))
            .filter_map(|l| {
                let (body, escaped) = match l.strip_prefix('\\') {
                    Some(b) => (b, true),
                    None => (l, false),
                };
                let (hash, name) = body.split_once("  ")?;
                let key = if escaped {
                    format!("\\{name}")
                } else {
                    name.to_string()
                };
                Some((key, hash))
            })
            .collect()
    }
    let (a, b) = (parse(src), parse(cloud));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        match (a.get(n), b.get(n)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(_), Some(_)) => out.push(format!("differs: {n}")),
            (Some(_), None) => out.push(format!("missing in the cloud copy: {n}")),
            (None, Some(_)) => out.push(format!("only in the cloud copy: {n}")),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_every_difference_and_ignores_the_result_line() {
        let src = "aa  ./same\nbb  ./changed\ncc  ./gone\n\\dd  ./new\\nline\nsymlink:ee  ./link\nPOSCLOUD_RESULT {\"data_dir\":\"/a\"}\n";
        let cloud = "aa  ./same\nxx  ./changed\n\\dd  ./new\\nline\nff  ./link\ngg  ./extra\nPOSCLOUD_RESULT {\"data_dir\":\"/b\"}\n";
        assert_eq!(
            compare(src, cloud),
            vec![
                "differs: ./changed",
                "only in the cloud copy: ./extra",
                "missing in the cloud copy: ./gone",
                "differs: ./link",
            ]
        );
        assert!(compare(src, src).is_empty());
    }

    const T: &str = "2026-11-23T00:00:00Z";

    fn record() -> Record {
        Record {
            source: "ssh://root@10.5.0.9:22".into(),
            state: CutoverState::Running,
            started_at: "2026-11-23T00:00:00Z".parse().unwrap(),
            by: "tester@here".into(),
            steps: BTreeMap::new(),
            rollbacks: 0,
            rolled_back_at: None,
        }
    }

    #[test]
    fn the_next_step_is_the_first_not_done() {
        let mut r = record();
        assert_eq!(r.next_step(), Some(CutoverStep::Preflight));
        r.steps.insert(CutoverStep::Preflight, json!({"at": T}));
        r.steps.insert(CutoverStep::PreSync, json!({"at": T}));
        // A freeze begun but not finished is not done, but the POS may be stopped.
        r.steps
            .insert(CutoverStep::Freeze, json!({"started_at": T}));
        assert_eq!(r.next_step(), Some(CutoverStep::Freeze));
        assert!(r.frozen());
        for s in CutoverStep::ALL {
            r.steps.insert(s, json!({"at": T}));
        }
        assert_eq!(r.next_step(), None);
    }

    /// Records in SSM name steps and states as they always did: a record written by an
    /// earlier poscloud still reads, and `--until` takes the same names.
    #[test]
    fn a_record_keeps_its_wire_names() {
        let old = r#"{"source":"ssh://root@h:22","state":"rolled-back","started_at":"2026-11-23T00:00:00Z","by":"u@h",
            "steps":{"final-sync":{"at":"2026-11-23T00:00:00Z"},"pre-sync":{"at":"2026-11-23T00:00:00Z"},"preflight":{"at":"2026-11-23T00:00:00Z"}}}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!(r.state, CutoverState::RolledBack);
        assert_eq!(r.next_step(), Some(CutoverStep::Freeze));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["state"], "rolled-back");
        assert_eq!(v["steps"]["pre-sync"]["at"], T, "{v}");
        for s in CutoverStep::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(
                <CutoverStep as clap::ValueEnum>::from_str(s.name(), false),
                Ok(s)
            );
        }
    }

    #[test]
    fn downtime_is_measured_between_two_times() {
        let mut r = record();
        let freeze = json!({"started_at": "2026-11-23T01:00:00Z"});
        r.steps.insert(CutoverStep::Freeze, freeze);
        let up: Time = "2026-11-23T01:04:05Z".parse().unwrap();
        assert_eq!(r.frozen_at().and_then(|t| t.secs_until(up)), Some(245));
        assert_eq!(human_duration_exact(245), "4 min 5 s");
        assert!(estimate_downtime(15_000_000_000).contains("checksums of 15000000000 bytes"));
    }
}
