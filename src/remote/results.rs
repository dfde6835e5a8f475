//! What the scripts of `bootstrap/` print on their `POSCLOUD_RESULT {json}` line, one type
//! per script (and per action where a script has several). A field a script stops printing
//! fails a test here (each type is checked against a real sample of its script's output), not
//! a user at run time. Phase records keep the JSON as printed; code reads it through these.
//!
//! Fields a script always prints but may print as `null` are `Option`s that must still be
//! present (`nullable`); fields only some outcomes print are `Option`s that may be missing.
//! `pos.sh watch` (runs forever) and `holder-pid` (prints a PID) have no result line.

use crate::error::{Error, Result};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A script result: `WHAT` names the script and action in errors.
pub trait ScriptResult: DeserializeOwned {
    const WHAT: &'static str;
}

/// A result line read into its type, with the JSON as printed (what a phase records).
#[derive(Debug, Clone)]
pub struct Typed<T> {
    pub fields: T,
    pub json: Value,
}

/// Reads a script's result (or a phase record made of one) into its type; the error names the
/// script and the field (serde's "missing field `up`").
pub fn parse<T: ScriptResult>(json: &Value) -> Result<T> {
    T::deserialize(json).map_err(|e| {
        Error::failed(format!(
            "{} printed a result poscloud cannot read ({e}): {json}",
            T::WHAT
        ))
        .next("this is a poscloud bug (the script and the code disagree); report it with this message")
    })
}

/// Reads `json` and keeps it beside the fields.
pub fn typed<T: ScriptResult>(json: Value) -> Result<Typed<T>> {
    Ok(Typed {
        fields: parse(&json)?,
        json,
    })
}

/// A field that is always printed, possibly as null: missing is an error, null is None.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

macro_rules! what {
    ($t:ty, $what:literal) => {
        impl ScriptResult for $t {
            const WHAT: &'static str = $what;
        }
    };
}

// ---- bootstrap.sh -----------------------------------------------------------------------

/// bootstrap.sh: the host's versions, and user-data's marker (null on `--target` hosts).
#[derive(Debug, Clone, Deserialize)]
pub struct Bootstrap {
    pub shop: String,
    pub env: String,
    pub docker: String,
    pub strongswan: String,
    pub kernel: String,
    #[serde(deserialize_with = "nullable")]
    pub userdata: Option<UserdataMarker>,
}
what!(Bootstrap, "bootstrap.sh");

/// The marker user-data writes when it finishes (userdata/host-setup.sh). Not a script
/// result: markers of earlier user-data lack fields, so each one is optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserdataMarker {
    pub docker: Option<String>,
    pub strongswan: Option<String>,
    pub ssm_agent: Option<String>,
    pub kernel: Option<String>,
    pub kernel_installed: Option<String>,
    pub selinux: Option<String>,
    pub finished: Option<String>,
    pub reboot_required: Option<bool>,
}

// ---- state.sh (records and lock of a `--target` host) -----------------------------------

/// state.sh get and holder: the phase's record or the lock's holder, if any.
#[derive(Debug, Clone, Deserialize)]
pub struct StateValue {
    #[serde(deserialize_with = "nullable")]
    pub value: Option<Value>,
}
what!(StateValue, "state.sh get/holder");

/// state.sh put.
#[derive(Debug, Clone, Deserialize)]
pub struct StateStored {
    pub stored: bool,
}
what!(StateStored, "state.sh put");

/// state.sh lock: taken, or the other holder (null when it recorded none).
#[derive(Debug, Clone, Deserialize)]
pub struct StateLock {
    pub locked: bool,
    #[serde(default)]
    pub holder: Option<Value>,
}
what!(StateLock, "state.sh lock");

/// state.sh unlock.
#[derive(Debug, Clone, Deserialize)]
pub struct StateUnlock {
    pub unlocked: bool,
}
what!(StateUnlock, "state.sh unlock");

// ---- pos.sh -----------------------------------------------------------------------------

/// pos.sh stage (the stage phase's record).
#[derive(Debug, Clone, Deserialize)]
pub struct PosStage {
    pub container: String,
    pub image: String,
    pub container_id: String,
    pub net_container: String,
    pub pos_ip: String,
    pub artifact_sha256: String,
    pub data_dir: String,
    /// Where the data directory is mounted in the container.
    pub mount: String,
    /// "enabled" (systemd) or "written".
    pub hook: String,
}
what!(PosStage, "pos.sh stage");

/// pos.sh status. `health` and `image` only when the container exists; `eth1` is "" when
/// eth1 has no address.
#[derive(Debug, Clone, Deserialize)]
pub struct PosStatus {
    pub exists: bool,
    pub running: bool,
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    pub eth1: String,
    pub net_running: bool,
}
what!(PosStatus, "pos.sh status");

/// pos.sh stop.
#[derive(Debug, Clone, Deserialize)]
pub struct PosStop {
    pub stopped: bool,
}
what!(PosStop, "pos.sh stop");

/// pos.sh ready, when ready (exit 0; the ready phase's record).
#[derive(Debug, Clone, Deserialize)]
pub struct PosReady {
    pub ready: bool,
    pub container: String,
    pub image: String,
    pub pos_ip: String,
    pub health_cmd: String,
}
what!(PosReady, "pos.sh ready");

/// pos.sh ready, when not ready (exit 1): why.
#[derive(Debug, Clone, Deserialize)]
pub struct PosNotReady {
    pub ready: bool,
    pub reasons: Vec<String>,
}
what!(PosNotReady, "pos.sh ready (not ready)");

/// pos.sh commit.
#[derive(Debug, Clone, Deserialize)]
pub struct PosCommit {
    pub image: String,
    pub image_id: String,
}
what!(PosCommit, "pos.sh commit");

/// pos.sh images.
#[derive(Debug, Clone, Deserialize)]
pub struct PosImages {
    pub images: Vec<PosImage>,
}
what!(PosImages, "pos.sh images");

/// One image labelled poscloud.app; `key` and `snapshot` are "" when not set.
#[derive(Debug, Clone, Deserialize)]
pub struct PosImage {
    pub id: String,
    pub tags: Vec<String>,
    pub app: String,
    pub key: String,
    pub snapshot: String,
    pub used_by: Vec<String>,
}

/// pos.sh image-delete.
#[derive(Debug, Clone, Deserialize)]
pub struct PosImageDelete {
    pub deleted: String,
    pub image_id: String,
}
what!(PosImageDelete, "pos.sh image-delete");

// ---- build.sh ---------------------------------------------------------------------------

/// Where build.sh got the media from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaSource {
    /// Already on the host.
    Host,
    /// The region's cache.
    Cache,
    /// Built from the kickstart.
    Built,
}

impl MediaSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaSource::Host => "host",
            MediaSource::Cache => "cache",
            MediaSource::Built => "built",
        }
    }
}

/// build.sh (the build phase's record). `sha256` is "" and `bytes` 0 for `Host`.
#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    pub image: String,
    pub image_id: String,
    pub key: String,
    pub source: MediaSource,
    pub sha256: String,
    pub bytes: u64,
    /// True only after a successful upload to the cache.
    pub uploaded: bool,
}
what!(Build, "build.sh");

// ---- restore.sh -------------------------------------------------------------------------

/// restore.sh (the restore phase's record).
#[derive(Debug, Clone, Deserialize)]
pub struct Restore {
    pub files: u64,
    pub bytes: u64,
    pub source: String,
    pub manifest_sha256: String,
    pub app: String,
    pub data_dir: String,
    /// The data directory verified already: nothing was moved.
    pub unchanged: bool,
    /// Where the previous data directory went.
    #[serde(deserialize_with = "nullable")]
    pub moved_aside: Option<String>,
}
what!(Restore, "restore.sh");

// ---- vpn.sh -----------------------------------------------------------------------------

/// vpn.sh apply: `state` "up" (then `esp`: kernel or userspace), else "down" or
/// "connecting" with the `reason` (exit 1).
#[derive(Debug, Clone, Deserialize)]
pub struct VpnApply {
    pub location: String,
    pub state: String,
    pub ike_sa: String,
    pub child_sa: String,
    #[serde(default)]
    pub esp: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}
what!(VpnApply, "vpn.sh apply");

/// vpn.sh status.
#[derive(Debug, Clone, Deserialize)]
pub struct VpnStatus {
    pub charon: bool,
    pub locations: Vec<VpnLocation>,
}
what!(VpnStatus, "vpn.sh status");

/// One location as charon sees it (status, start).
#[derive(Debug, Clone, Deserialize)]
pub struct VpnLocation {
    pub location: String,
    pub up: bool,
    /// Stopped alone (`vpn stop --location`).
    pub stopped: bool,
    pub ike_sa: String,
    pub child_sa: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(deserialize_with = "nullable")]
    pub established_s: Option<u64>,
    #[serde(deserialize_with = "nullable")]
    pub rekey_in_s: Option<u64>,
}

/// vpn.sh delete.
#[derive(Debug, Clone, Deserialize)]
pub struct VpnDelete {
    pub deleted: String,
    pub existed: bool,
}
what!(VpnDelete, "vpn.sh delete");

/// vpn.sh stop: `true` for all tunnels, or the one location stopped.
#[derive(Debug, Clone, Deserialize)]
pub struct VpnStop {
    pub stopped: VpnStopped,
}
what!(VpnStop, "vpn.sh stop");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum VpnStopped {
    All(bool),
    Location(String),
}

/// vpn.sh start: `esp` is missing when the host has no location (charon not started).
#[derive(Debug, Clone, Deserialize)]
pub struct VpnStart {
    pub charon: bool,
    #[serde(default)]
    pub esp: Option<String>,
    pub locations: Vec<VpnLocation>,
}
what!(VpnStart, "vpn.sh start");

// ---- cutover.sh -------------------------------------------------------------------------

/// cutover.sh src-facts: the source's data directory, or that it is not there (exit 3).
#[derive(Debug, Clone)]
pub enum SrcFacts {
    Found(SrcData),
    Missing { data_dir: String },
}
what!(SrcFacts, "cutover.sh src-facts");

/// The source's POS application, by its check command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrcApp {
    Running,
    Stopped,
}

impl std::fmt::Display for SrcApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SrcApp::Running => "running",
            SrcApp::Stopped => "stopped",
        })
    }
}

/// The source's data directory as src-facts found it.
#[derive(Debug, Clone, Deserialize)]
pub struct SrcData {
    /// As the source's SSH server sees it.
    pub data_dir: String,
    pub bytes: u64,
    pub files: u64,
    /// Whether the source's POS answers its check (CHECK_CMD).
    pub app: SrcApp,
    /// The migration marker's text, if the source is marked.
    #[serde(deserialize_with = "nullable")]
    pub marker: Option<String>,
    /// Seconds since the backup stamp changed (unknown without one).
    #[serde(deserialize_with = "nullable")]
    pub backup_age_s: Option<u64>,
}

impl SrcFacts {
    pub fn found(&self) -> Option<&SrcData> {
        match self {
            SrcFacts::Found(d) => Some(d),
            SrcFacts::Missing { .. } => None,
        }
    }
}

// `found` decides which fields must be there.
impl<'de> Deserialize<'de> for SrcFacts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SrcFacts, D::Error> {
        #[derive(Deserialize)]
        struct Head {
            found: bool,
            data_dir: String,
        }
        let v = Value::deserialize(d)?;
        let head = Head::deserialize(&v).map_err(D::Error::custom)?;
        if head.found {
            SrcData::deserialize(&v)
                .map(SrcFacts::Found)
                .map_err(D::Error::custom)
        } else {
            Ok(SrcFacts::Missing {
                data_dir: head.data_dir,
            })
        }
    }
}

/// cutover.sh src-authorize.
#[derive(Debug, Clone, Deserialize)]
pub struct SrcAuthorize {
    pub authorized: bool,
}
what!(SrcAuthorize, "cutover.sh src-authorize");

/// cutover.sh src-deauthorize: whether there was a key to remove.
#[derive(Debug, Clone, Deserialize)]
pub struct SrcDeauthorize {
    pub removed: bool,
}
what!(SrcDeauthorize, "cutover.sh src-deauthorize");

/// cutover.sh src-stop.
#[derive(Debug, Clone, Deserialize)]
pub struct SrcStop {
    pub was_running: bool,
}
what!(SrcStop, "cutover.sh src-stop");

/// cutover.sh src-start.
#[derive(Debug, Clone, Deserialize)]
pub struct SrcStart {
    pub running: bool,
}
what!(SrcStart, "cutover.sh src-start");

/// cutover.sh src-mark (true) and src-unmark (false).
#[derive(Debug, Clone, Deserialize)]
pub struct SrcMark {
    pub marked: bool,
}
what!(SrcMark, "cutover.sh src-mark/src-unmark");

/// cutover.sh manifest: the directory hashed (the manifest itself is the output above).
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub data_dir: String,
}
what!(Manifest, "cutover.sh manifest");

/// cutover.sh cloud-facts: space on the cloud data volume and the cutover key (null until
/// made with KEYGEN=1).
#[derive(Debug, Clone, Deserialize)]
pub struct CloudFacts {
    pub free_bytes: u64,
    pub used_bytes: u64,
    #[serde(deserialize_with = "nullable")]
    pub pubkey: Option<String>,
}
what!(CloudFacts, "cutover.sh cloud-facts");

/// cutover.sh cloud-sync.
#[derive(Debug, Clone, Deserialize)]
pub struct CloudSync {
    pub files: u64,
    pub bytes: u64,
    pub seconds: u64,
    /// Files vanished on the source while rsync ran (rsync exit 24).
    pub vanished: bool,
}
what!(CloudSync, "cutover.sh cloud-sync");

/// cutover.sh cloud-pos: the POS_ACTION done (start or stop).
#[derive(Debug, Clone, Deserialize)]
pub struct CloudPos {
    pub pos: String,
}
what!(CloudPos, "cutover.sh cloud-pos");

// ---- backup.sh ---------------------------------------------------------------------------

/// backup.sh install: the job's settings, script and timer written (and enabled where systemd
/// runs).
#[derive(Debug, Clone, Deserialize)]
pub struct BackupInstall {
    pub installed: bool,
    /// "enabled", or "written" on a host without systemd (test hosts).
    pub timer: String,
    pub schedule: String,
    pub changed: bool,
}
what!(BackupInstall, "backup.sh install");

/// backup.sh run: the summary it uploaded next to the archive (`<stamp>.json`), which is also
/// what `backup list` reads back from S3.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct BackupRun {
    pub stamp: String,
    pub time: crate::time::Time,
    /// "daily" or "monthly" (the first of its month, kept longer).
    pub kind: String,
    pub keep_days: u32,
    pub app: String,
    /// The archive's key in the bucket.
    pub archive: String,
    pub bytes: u64,
    pub sha256: String,
    pub files: u64,
    /// The data directory's size and its disk's use (for `report performance`).
    pub data_bytes: u64,
    pub disk_used_pct: u32,
    pub consistency: String,
    /// Seconds the POS was stopped or quiesced.
    pub held_s: u64,
    pub result: String,
}
what!(BackupRun, "backup.sh run");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{payload, Inputs, Outcome, Program, Script, RUNNER};
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// Every result type names its script and actions (`what!`), and each action is a case
    /// of that script: a result type for an action a script lost fails here.
    #[test]
    fn every_result_type_is_of_an_action_its_script_has() {
        let src = include_str!("results.rs");
        let bootstrap = Path::new(env!("CARGO_MANIFEST_DIR")).join("bootstrap");
        let mut seen = 0;
        for line in src.lines().filter(|l| l.starts_with("what!(")) {
            let what = line.split('"').nth(1).unwrap();
            let (script, actions) = what.split_once(' ').unwrap_or((what, ""));
            let text = std::fs::read_to_string(bootstrap.join(script)).unwrap();
            // Case labels (`a | b)`) and the actions a script checks its ACTION against
            // (`=~ ^(a|b)$`: pos.sh stages after its case).
            let labels: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter_map(|l| match l.split_once("=~ ^(") {
                    Some((_, rest)) => rest.split_once(')').map(|(group, _)| group),
                    None => l.split_once(')').map(|(label, _)| label),
                })
                .flat_map(|label| label.split('|').map(str::trim))
                .collect();
            let actions = actions.split(" (").next().unwrap();
            for action in actions.split('/').filter(|a| !a.is_empty()) {
                assert!(labels.contains(&action), "{script} has no `{action})` case");
            }
            seen += 1;
        }
        assert!(seen >= 25, "{seen} result types read");
    }

    /// Runs a script as a host does (the runner, the payload), below `root`; returns its exit
    /// code and result line.
    fn run(script: Script, inputs: Inputs, root: &Path) -> (i32, Value) {
        let name = script.name();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(RUNNER)
            .env("POSCLOUD_ROOT", root)
            .env("HOME", root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let p = payload(&Program::from(script), &inputs);
        child.stdin.take().unwrap().write_all(p.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let o = Outcome {
            exit_code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        };
        let r = o.result().unwrap_or_else(|| {
            panic!(
                "{name}: no result line\n{}\n{}",
                o.stdout_text(),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.exit_code, r)
    }

    fn inputs(kv: &[(&str, &str)]) -> Inputs {
        kv.iter()
            .fold(Inputs::new(), |i, (k, v)| i.set(k, *v).unwrap())
    }

    /// `json` reads as T, and without any of its fields but `optional` it does not; the error
    /// names the script and the field.
    fn check<T: ScriptResult>(json: &Value, optional: &[&str]) -> T {
        let fields = parse::<T>(json).unwrap_or_else(|e| panic!("{e}"));
        for k in json.as_object().expect("an object").keys() {
            let mut less = json.clone();
            less.as_object_mut().unwrap().remove(k);
            match parse::<T>(&less) {
                Ok(_) => assert!(
                    optional.contains(&k.as_str()),
                    "{}: {k} may be missing",
                    T::WHAT
                ),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(T::WHAT) && e.contains(&format!("`{k}`")), "{e}");
                }
            }
        }
        fields
    }

    /// A result line as the script printed it (copied from a run on a test host).
    fn line(l: &str) -> Value {
        serde_json::from_str(l.strip_prefix("POSCLOUD_RESULT ").unwrap()).unwrap()
    }

    #[test]
    fn backup_sh_results() {
        let d = tempfile::tempdir().unwrap();
        let (code, r) = run(
            Script::Backup,
            inputs(&[
                ("ACTION", "install"),
                ("SHOP", "12345678"),
                ("ENV", "qa"),
                ("APP", "rti"),
                ("DATA_DIR", "/var/lib/poscloud/data/rti"),
                ("CONSISTENCY", "stop"),
                ("BUCKET", "poscloud-output-123456789012-us-east-1"),
                ("PREFIX", "12345678/qa/backups/"),
                ("REGION", "us-east-1"),
                ("SCHEDULE", "*-*-* 02:30:00"),
                ("DAILY_DAYS", "7"),
                ("MONTHLY_DAYS", "0"),
            ]),
            d.path(),
        );
        assert_eq!(code, 0, "{r}");
        let i = check::<BackupInstall>(&r, &[]);
        assert!(i.installed && i.changed && i.timer == "written", "{r}");
        let timer =
            std::fs::read_to_string(d.path().join("etc/systemd/system/poscloud-backup.timer"))
                .unwrap();
        for line in [
            "OnCalendar=*-*-* 02:30:00",
            "Persistent=true",
            "WantedBy=timers.target",
        ] {
            assert!(timer.lines().any(|l| l == line), "{line} in {timer}");
        }
        // The installed copy is the whole script as sent (lib.sh and its parts included).
        let copy =
            std::fs::read_to_string(d.path().join("usr/local/libexec/poscloud/backup.sh")).unwrap();
        assert_eq!(copy, Script::Backup.body());
        check::<BackupRun>(
            &line(
                r#"POSCLOUD_RESULT {"stamp":"20261202T013500Z","time":"2026-12-02T01:35:00Z","kind":"daily","keep_days":7,"app":"rti","archive":"12345678/qa/backups/20261202T013500Z.tar.gz","bytes":389,"sha256":"acacb3d37d47ee49e5ae64377f941c338851189cdc8053879345589074e191a6","files":3,"data_bytes":8196,"disk_used_pct":79,"consistency":"stop","held_s":0,"result":"ok"}"#,
            ),
            &[],
        );
    }

    #[test]
    fn state_sh_results() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let (_, r) = run(
            Script::State,
            inputs(&[("ACTION", "get"), ("PHASE", "stage")]),
            root,
        );
        assert!(check::<StateValue>(&r, &[]).value.is_none());
        let (_, r) = run(
            Script::State,
            inputs(&[
                ("ACTION", "put"),
                ("PHASE", "stage"),
                ("VALUE", r#"{"a":1}"#),
            ]),
            root,
        );
        assert!(check::<StateStored>(&r, &[]).stored);
        let (_, r) = run(
            Script::State,
            inputs(&[("ACTION", "get"), ("PHASE", "stage")]),
            root,
        );
        assert_eq!(
            check::<StateValue>(&r, &[]).value,
            Some(serde_json::json!({"a": 1}))
        );
        let me = r#"{"run":"1"}"#;
        let (_, r) = run(
            Script::State,
            inputs(&[("ACTION", "lock"), ("VALUE", me)]),
            root,
        );
        assert!(check::<StateLock>(&r, &[]).locked);
        let (_, r) = run(
            Script::State,
            inputs(&[("ACTION", "lock"), ("VALUE", r#"{"run":"2"}"#)]),
            root,
        );
        let l = check::<StateLock>(&r, &["holder"]);
        assert_eq!(
            (l.locked, l.holder),
            (false, Some(serde_json::json!({"run": "1"})))
        );
        let (_, r) = run(Script::State, inputs(&[("ACTION", "holder")]), root);
        assert!(check::<StateValue>(&r, &[]).value.is_some());
        let (_, r) = run(
            Script::State,
            inputs(&[("ACTION", "unlock"), ("VALUE", me)]),
            root,
        );
        assert!(check::<StateUnlock>(&r, &[]).unlocked);
        let (_, r) = run(
            Script::State,
            inputs(&[("ACTION", "unlock"), ("VALUE", me)]),
            root,
        );
        assert!(!check::<StateUnlock>(&r, &[]).unlocked);
    }

    #[test]
    fn cutover_sh_results() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let data = root.join("srv/pos");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.dat"), "12345").unwrap();
        // The POS application "runs" while this file is there.
        std::fs::write(root.join("up"), "").unwrap();
        let src = |action: &str, extra: &[(&str, &str)]| {
            let mut kv = vec![
                ("ACTION", action),
                ("DATA_DIR", "/srv/pos"),
                ("CHECK_CMD", r#"test -f "$POSCLOUD_ROOT/up""#),
                ("STOP_CMD", r#"rm "$POSCLOUD_ROOT/up""#),
                ("START_CMD", r#"touch "$POSCLOUD_ROOT/up""#),
                ("SHOP", "12345678"),
            ];
            kv.extend_from_slice(extra);
            run(Script::Cutover, inputs(&kv), root)
        };
        let (code, r) = src("src-facts", &[]);
        assert_eq!(code, 0);
        let f = check::<SrcFacts>(&r, &[]);
        let f = f.found().expect("found");
        // du counts the directory too.
        assert_eq!((f.bytes >= 5, f.files, f.app), (true, 1, SrcApp::Running));
        assert_eq!((f.marker.as_deref(), f.backup_age_s), (None, None));
        let (_, r) = src(
            "src-mark",
            &[("AT", "2026-12-01T00:00:00Z"), ("INSTANCE", "i-1")],
        );
        assert!(check::<SrcMark>(&r, &[]).marked);
        let (_, r) = src("src-facts", &[]);
        assert!(check::<SrcFacts>(&r, &[]).found().unwrap().marker.is_some());
        let (_, r) = src("src-unmark", &[]);
        assert!(!check::<SrcMark>(&r, &[]).marked);
        let (_, r) = src("src-deauthorize", &[]);
        assert!(!check::<SrcDeauthorize>(&r, &[]).removed);
        let (_, r) = src("src-stop", &[]);
        assert!(check::<SrcStop>(&r, &[]).was_running);
        let (_, r) = src("src-start", &[]);
        assert!(check::<SrcStart>(&r, &[]).running);
        let (_, r) = src("manifest", &[]);
        assert!(check::<Manifest>(&r, &[]).data_dir.ends_with("/srv/pos"));
        let (_, r) = src("cloud-facts", &[("KEYGEN", "1")]);
        let c = check::<CloudFacts>(&r, &[]);
        assert!(c.pubkey.as_deref().unwrap().starts_with("ssh-ed25519 "));
        assert!(c.used_bytes >= 5 && c.free_bytes > 0, "{c:?}");

        // Missing: another shape, with fewer fields.
        let (code, r) = run(
            Script::Cutover,
            inputs(&[
                ("ACTION", "src-facts"),
                ("DATA_DIR", "/nowhere"),
                ("CHECK_CMD", "true"),
            ]),
            root,
        );
        assert_eq!(code, 3);
        assert!(matches!(
            check::<SrcFacts>(&r, &[]),
            SrcFacts::Missing { .. }
        ));
    }

    #[test]
    fn restore_sh_result() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let src = root.join("backup");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.dat"), "hello\n").unwrap();
        // sha256sum's format of "hello\n".
        std::fs::write(
            src.join("MANIFEST.sha256"),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a.dat\n",
        )
        .unwrap();
        let restore = || {
            run(
                Script::Restore,
                inputs(&[
                    ("SHOP", "12345678"),
                    ("APP", "rti"),
                    ("DATA_DIR", "/var/lib/poscloud/data/rti"),
                    ("SOURCE", "file:///backup/"),
                ]),
                root,
            )
        };
        let (code, r) = restore();
        assert_eq!(code, 0, "{r}");
        let r = check::<Restore>(&r, &[]);
        assert_eq!(
            (r.files, r.unchanged, r.source.as_str()),
            (1, false, "file:///backup/")
        );
        let (_, r) = restore();
        assert!(check::<Restore>(&r, &[]).unchanged);
    }

    // Lines copied from runs on test hosts (tests/pos_lifecycle.rs, cutover.rs, restore.rs,
    // vpn_host.rs, media.rs, pos_host.rs): these scripts need Docker or strongSwan.

    #[test]
    fn bootstrap_sh_result() {
        let r = line(
            r#"POSCLOUD_RESULT {"shop":"78901234","env":"qa","docker":"4.3.1","strongswan":"Linux strongSwan U5.9.8K6.18.44-fc-v669","kernel":"6.18.44-fc-v669","userdata":{"docker":"26.1.4","strongswan":"5.7.2","ssm_agent":"3.3.0","kernel":"test","finished":"2026-11-23T00:00:00Z"}}"#,
        );
        let b = check::<Bootstrap>(&r, &[]);
        assert_eq!(b.docker, "4.3.1");
        assert_eq!(
            b.userdata.unwrap().finished.as_deref(),
            Some("2026-11-23T00:00:00Z")
        );
        // A --target host has no user-data: null, but there.
        let r = line(
            r#"POSCLOUD_RESULT {"shop":"78901234","env":"qa","docker":"4.3.1","strongswan":"Linux strongSwan U5.9.8","kernel":"6.18","userdata":null}"#,
        );
        assert!(check::<Bootstrap>(&r, &[]).userdata.is_none());
    }

    #[test]
    fn pos_sh_results() {
        let r = line(
            r#"POSCLOUD_RESULT {"container":"pos","image":"poscloud/base:test","container_id":"e07fc91be473fab4ebd66526baef2d81a91277ec0dbfc4e1e3937e42a669bfbf","net_container":"pos-net","pos_ip":"192.168.222.233","artifact_sha256":"c32f46a7462267713a9ee98e77b23b7b9d04a2b96b2ef37a06220d842919d836","data_dir":"/var/lib/poscloud/data/rti","mount":"/usr2","hook":"written"}"#,
        );
        assert_eq!(check::<PosStage>(&r, &[]).mount, "/usr2");
        let r = line(
            r#"POSCLOUD_RESULT {"ready":true,"container":"pos","image":"docker.io/poscloud/base:test","pos_ip":"192.168.222.233","health_cmd":"test -f /opt/pos/.installed"}"#,
        );
        assert_eq!(check::<PosReady>(&r, &[]).container, "pos");
        let r = line(
            r#"POSCLOUD_RESULT {"exists":true,"running":true,"health":"starting","image":"docker.io/poscloud/base:test","eth1":"192.168.222.233/24","net_running":true}"#,
        );
        let st = check::<PosStatus>(&r, &["health", "image"]);
        assert_eq!((st.running, st.eth1.as_str()), (true, "192.168.222.233/24"));
        let r = line(r#"POSCLOUD_RESULT {"stopped":true}"#);
        assert!(check::<PosStop>(&r, &[]).stopped);
        let r = line(
            r#"POSCLOUD_RESULT {"ready":false,"reasons":["health command failed: test -f /opt/pos/.installed"]}"#,
        );
        assert_eq!(check::<PosNotReady>(&r, &[]).reasons.len(), 1);
        let r = line(
            r#"POSCLOUD_RESULT {"images":[{"id":"sha256:7347136aa933c5f7ca42a50048e31a86649f82dbb71cecfe4efa0e593252c4d4","tags":["docker.io/poscloud/rti:1.0-test-9f86bb0fa5bb"],"app":"rti","key":"9f86bb0fa5bb1a6c96a358599f0b31d28e61c560456f6f27f7dea7743910ebbc","snapshot":"","used_by":["pos","pos-net"]}]}"#,
        );
        let i = &check::<PosImages>(&r, &[]).images[0];
        assert_eq!((i.app.as_str(), i.used_by.len()), ("rti", 2));
        let mut less = r.clone();
        less["images"][0].as_object_mut().unwrap().remove("used_by");
        assert!(parse::<PosImages>(&less)
            .unwrap_err()
            .to_string()
            .contains("`used_by`"));
        let r = line(
            r#"POSCLOUD_RESULT {"image":"poscloud/rti-snapshot:81000001-20261201t214922z","image_id":"sha256:a66c90aa60de8c4e40aaa9a91640d32a66881bda92bb8f3b655baa443161db08"}"#,
        );
        assert!(check::<PosCommit>(&r, &[]).image_id.starts_with("sha256:"));
        let r = line(
            r#"POSCLOUD_RESULT {"deleted":"poscloud/rti-snapshot:81000001-20261201t214922z","image_id":"sha256:a66c90aa60de8c4e40aaa9a91640d32a66881bda92bb8f3b655baa443161db08"}"#,
        );
        assert!(check::<PosImageDelete>(&r, &[])
            .deleted
            .contains("snapshot"));
    }

    #[test]
    fn build_sh_results() {
        let r = line(
            r#"POSCLOUD_RESULT {"image":"poscloud/rti:1.0-test-9f86bb0fa5bb","image_id":"sha256:7347136aa933c5f7ca42a50048e31a86649f82dbb71cecfe4efa0e593252c4d4","key":"9f86bb0fa5bb1a6c96a358599f0b31d28e61c560456f6f27f7dea7743910ebbc","source":"built","sha256":"d1539b800ba345657d5cf1c8e63e125833ef22807fe6c4a3e10e16b3ea441366","bytes":1036718,"uploaded":true}"#,
        );
        let b = check::<Build>(&r, &[]);
        assert_eq!(
            (b.source, b.uploaded, b.bytes),
            (MediaSource::Built, true, 1036718)
        );
        let r = line(
            r#"POSCLOUD_RESULT {"image":"poscloud/rti:1.0-test-9f86bb0fa5bb","image_id":"sha256:aeeb61b872c3cde3e6c245e2dc6776c02407d431cba375c02f2994d517891044","key":"9f86bb0fa5bb1a6c96a358599f0b31d28e61c560456f6f27f7dea7743910ebbc","source":"cache","sha256":"d1539b800ba345657d5cf1c8e63e125833ef22807fe6c4a3e10e16b3ea441366","bytes":1036718,"uploaded":false}"#,
        );
        assert_eq!(check::<Build>(&r, &[]).source, MediaSource::Cache);
        let mut odd = r.clone();
        odd["source"] = "elsewhere".into();
        assert!(parse::<Build>(&odd).is_err(), "an unknown source");
    }

    #[test]
    fn restore_sh_result_over_ssh() {
        let r = line(
            r#"POSCLOUD_RESULT {"files":1,"bytes":30,"source":"ssh://centos@10.200.171.2/tmp/.tmptmFTuE/backups/tfrsync-78901234/","manifest_sha256":"a8f3f6505d2193fd57b20220fc739e956544fadfe1c61faf526e977c1bad2d36","app":"rti","data_dir":"/var/lib/poscloud/data/rti","unchanged":false,"moved_aside":"/var/lib/poscloud/data/rti.before-restore-20261201T214000Z"}"#,
        );
        let r = check::<Restore>(&r, &[]);
        assert_eq!((r.files, r.bytes), (1, 30));
        assert!(r.moved_aside.is_some());
        let r = line(
            r#"POSCLOUD_RESULT {"files":42,"bytes":75669,"source":"s3://shop-backups/tfrsync/81000002.tar.gz","manifest_sha256":"b2e6850ac29b0197d589ec523338877a3fdf35063dc337b6ba9a9d13cc7a1264","app":"rti","data_dir":"/var/lib/poscloud/data/rti","unchanged":false,"moved_aside":null}"#,
        );
        assert!(check::<Restore>(&r, &[]).moved_aside.is_none());
    }

    #[test]
    fn vpn_sh_results() {
        let r = line(
            r#"POSCLOUD_RESULT {"location":"shop","state":"connecting","ike_sa":"CONNECTING","child_sa":"none","reason":"no answer from the peer 5.5.5.50"}"#,
        );
        let a = check::<VpnApply>(&r, &["esp", "reason"]);
        assert_eq!(
            a.reason.as_deref(),
            Some("no answer from the peer 5.5.5.50")
        );
        let r = line(
            r#"POSCLOUD_RESULT {"charon":true,"esp":"userspace","locations":[{"location":"shop","up":true,"stopped":false,"ike_sa":"ESTABLISHED","child_sa":"INSTALLED","bytes_in":0,"bytes_out":0,"established_s":0,"rekey_in_s":14068}]}"#,
        );
        let st = check::<VpnStart>(&r, &["esp"]);
        assert!(st.locations[0].up);
        let r = line(
            r#"POSCLOUD_RESULT {"charon":true,"locations":[{"location":"shop","up":true,"stopped":false,"ike_sa":"ESTABLISHED","child_sa":"INSTALLED","bytes_in":84,"bytes_out":84,"established_s":3,"rekey_in_s":14065}]}"#,
        );
        let st = check::<VpnStatus>(&r, &[]);
        let l = &st.locations[0];
        assert_eq!((l.bytes_in, l.established_s), (84, Some(3)));
        // A location's fields are checked too.
        let mut less = r.clone();
        less["locations"][0].as_object_mut().unwrap().remove("up");
        let e = parse::<VpnStatus>(&less).unwrap_err().to_string();
        assert!(e.contains("vpn.sh status") && e.contains("`up`"), "{e}");
        let r = line(r#"POSCLOUD_RESULT {"charon":false,"locations":[]}"#);
        assert!(check::<VpnStart>(&r, &["esp"]).locations.is_empty());
        let r = line(
            r#"POSCLOUD_RESULT {"location":"mainstore","state":"up","ike_sa":"ESTABLISHED","child_sa":"INSTALLED","esp":"userspace"}"#,
        );
        assert_eq!(check::<VpnApply>(&r, &["esp", "reason"]).state, "up");
        let r = line(
            r#"POSCLOUD_RESULT {"charon":true,"locations":[{"location":"mainstore","up":false,"stopped":false,"ike_sa":"none","child_sa":"none","bytes_in":0,"bytes_out":0,"established_s":null,"rekey_in_s":null}]}"#,
        );
        let l = &check::<VpnStatus>(&r, &[]).locations[0];
        assert_eq!((l.up, l.established_s, l.rekey_in_s), (false, None, None));
        let mut less = r.clone();
        less["locations"][0]
            .as_object_mut()
            .unwrap()
            .remove("established_s");
        assert!(parse::<VpnStatus>(&less).is_err(), "null, but printed");
        let r = line(r#"POSCLOUD_RESULT {"deleted":"store-a","existed":true}"#);
        assert!(check::<VpnDelete>(&r, &[]).existed);
        let r = line(r#"POSCLOUD_RESULT {"stopped":"store-a"}"#);
        let one = VpnStopped::Location("store-a".into());
        assert_eq!(check::<VpnStop>(&r, &[]).stopped, one);
        let r = line(r#"POSCLOUD_RESULT {"stopped":true}"#);
        assert_eq!(check::<VpnStop>(&r, &[]).stopped, VpnStopped::All(true));
    }

    #[test]
    fn cutover_sh_cloud_results() {
        let r =
            line(r#"POSCLOUD_RESULT {"free_bytes":20058222592,"used_bytes":4096,"pubkey":null}"#);
        assert!(check::<CloudFacts>(&r, &[]).pubkey.is_none());
        let r = line(r#"POSCLOUD_RESULT {"files":0,"bytes":0,"seconds":0,"vanished":false}"#);
        assert!(!check::<CloudSync>(&r, &[]).vanished);
        let r = line(r#"POSCLOUD_RESULT {"pos":"stop"}"#);
        assert_eq!(check::<CloudPos>(&r, &[]).pos, "stop");
        let r = line(r#"POSCLOUD_RESULT {"authorized":true}"#);
        assert!(check::<SrcAuthorize>(&r, &[]).authorized);
    }
}
