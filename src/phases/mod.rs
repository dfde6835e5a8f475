//! Remote phases: work on the host through a `Remote`, each recorded as done (a marker on
//! the host and a parameter in SSM) and skipped when done unless redone on request.

pub mod backup;
pub mod bootstrap;
pub mod build;
pub mod cutover;
pub mod restore;
pub mod stage;
pub mod vpn;

use crate::aws::ssm::LockHolder;
use crate::aws::ssm::{host_key_name, phase_name};
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::journal::{local_host, local_user, now, Journal};
use crate::remote::results::{
    self, ScriptResult, StateLock, StateStored, StateUnlock, StateValue, Typed,
};
use crate::remote::ssh::{PinnedKey, SshTarget};
use crate::remote::ssm::SsmTarget;
use crate::remote::{no_sink, Inputs, Outcome, Remote, Script, Sink};
use crate::resources::discover::Discovered;
use crate::spec::StackId;
use crate::ui::Ui;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// A remote phase: the work provision does on the host after the AWS resources, each
/// recorded when done. `--redo` takes all but vpn (`vpn apply` redoes that one).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Bootstrap,
    Build,
    Restore,
    Stage,
    #[value(skip)]
    Vpn,
    Backup,
    Ready,
}

impl Phase {
    /// In the order they run (restore only with --restore-from; it runs before stage so
    /// that the POS starts on verified data). Every one is recorded; status shows them all.
    pub const ALL: [Phase; 7] = [
        Phase::Bootstrap,
        Phase::Build,
        Phase::Restore,
        Phase::Stage,
        Phase::Vpn,
        Phase::Backup,
        Phase::Ready,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Bootstrap => "bootstrap",
            Phase::Build => "build",
            Phase::Restore => "restore",
            Phase::Stage => "stage",
            Phase::Vpn => "vpn",
            Phase::Backup => "backup",
            Phase::Ready => "ready",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is recorded (SSM, or the host for --target) when a phase completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseState {
    pub done_at: crate::time::Time,
    pub by: String,
    pub target: String,
    pub result: serde_json::Value,
}

/// A phase's record in SSM (stacks in AWS).
pub async fn phase_state(aws: &Aws, id: &StackId, phase: Phase) -> Result<Option<PhaseState>> {
    Ok(aws
        .get_param(&phase_name(id, phase.name()))
        .await?
        .and_then(|v| parse_state(&v)))
}

/// A phase's record as a discovery read it (with the stack's parameters).
pub fn phase_state_in(d: &Discovered, id: &StackId, phase: Phase) -> Option<PhaseState> {
    d.value(&phase_name(id, phase.name())).and_then(parse_state)
}

fn parse_state(v: &str) -> Option<PhaseState> {
    serde_json::from_str(v).ok()
}

/// Where a site's phase records and lock live.
enum Store<'a> {
    /// A stack in AWS: SSM parameters (and the journal of the AWS connection).
    Ssm(&'a Aws),
    /// A host poscloud did not create (`--target`): files on the host; no AWS at all.
    Host(Journal),
}

/// One host to run phases on, with where their records live.
pub struct Site<'a> {
    pub id: StackId,
    pub remote: Remote<'a>,
    store: Store<'a>,
    /// The holder value this run stored in the host's lock (--target).
    lock_value: std::sync::OnceLock<String>,
}

impl<'a> Site<'a> {
    /// A host that poscloud did not create, reached over SSH with a pinned key.
    pub fn host(id: StackId, target: SshTarget, journal: Journal) -> Site<'static> {
        Site {
            id,
            remote: Remote::Ssh(target),
            store: Store::Host(journal),
            lock_value: Default::default(),
        }
    }

    /// The AWS connection; None on `--target` hosts.
    pub fn aws(&self) -> Option<&'a Aws> {
        match self.store {
            Store::Ssm(aws) => Some(aws),
            Store::Host(_) => None,
        }
    }

    pub fn journal(&self) -> &Journal {
        match &self.store {
            Store::Ssm(aws) => aws.journal(),
            Store::Host(j) => j,
        }
    }

    pub fn describe(&self) -> String {
        self.remote.describe()
    }

    async fn state_sh<T: ScriptResult>(&self, inputs: Inputs) -> Result<T> {
        self.run_script_as::<T>(
            Script::State,
            &inputs,
            Duration::from_secs(120),
            no_sink(),
            |_| {
                (
                    "reading or writing poscloud's records on the host failed".into(),
                    "check that the host's /var/lib/poscloud is writable, then run again".into(),
                )
            },
        )
        .await
        .map(|r| r.fields)
    }

    /// The phase's record, if it completed.
    pub async fn phase_state(&self, phase: Phase) -> Result<Option<PhaseState>> {
        match self.store {
            Store::Ssm(aws) => phase_state(aws, &self.id, phase).await,
            Store::Host(_) => {
                let r: StateValue = self
                    .state_sh(
                        Inputs::new()
                            .set("ACTION", "get")?
                            .set("PHASE", phase.name())?,
                    )
                    .await?;
                Ok(r.value.and_then(|v| serde_json::from_value(v).ok()))
            }
        }
    }

    /// Records the phase as done with its result.
    pub async fn record_phase(
        &self,
        phase: Phase,
        result: serde_json::Value,
    ) -> Result<PhaseState> {
        let st = PhaseState {
            done_at: now(),
            by: format!("{}@{}", local_user(), local_host()),
            target: self.describe(),
            result,
        };
        let value = serde_json::to_string(&st).expect("json");
        match self.store {
            Store::Ssm(aws) => {
                aws.put_param(&phase_name(&self.id, phase.name()), &value)
                    .await?
            }
            Store::Host(_) => {
                let inputs = Inputs::new()
                    .set("ACTION", "put")?
                    .set("PHASE", phase.name())?
                    .set("VALUE", value)?;
                self.state_sh::<StateStored>(inputs).await?;
            }
        }
        Ok(st)
    }

    /// Takes the stack's lock (SSM) or the host's (--target); Err(Locked) names the holder.
    pub async fn lock(&self, ui: &Ui, break_lock: bool) -> Result<()> {
        match self.store {
            Store::Ssm(aws) => {
                crate::lock::acquire(aws, ui, &self.id, aws.journal().command(), break_lock).await
            }
            Store::Host(ref j) => {
                if break_lock {
                    let r: StateValue = self
                        .state_sh(Inputs::new().set("ACTION", "holder")?)
                        .await?;
                    if let Some(holder) = r.value {
                        ui.warn(format!(
                            "breaking the lock on {} held by {holder}",
                            self.describe()
                        ));
                        j.event(
                            "lock-broken",
                            json!({"target": self.describe(), "holder": holder}),
                        );
                        self.state_sh::<StateUnlock>(
                            Inputs::new().set("ACTION", "unlock")?.set("FORCE", "1")?,
                        )
                        .await?;
                    }
                }
                let me = serde_json::to_string(&crate::lock::me(j.command())).expect("json");
                let r: StateLock = self
                    .state_sh(
                        Inputs::new()
                            .set("ACTION", "lock")?
                            .set("VALUE", me.clone())?,
                    )
                    .await?;
                if r.locked {
                    let _ = self.lock_value.set(me);
                    return Ok(());
                }
                let holder: Option<LockHolder> =
                    r.holder.and_then(|h| serde_json::from_value(h).ok());
                Err(Error::Locked {
                    stack: format!("{} on {}", self.id, self.describe()),
                    stale: holder
                        .as_ref()
                        .map(crate::lock::stale_note)
                        .unwrap_or_default(),
                    holder: holder
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| "an unknown run (no holder recorded)".into()),
                })
            }
        }
    }

    /// Releases the lock if this process holds it.
    pub async fn unlock(&self) -> Result<()> {
        match self.store {
            Store::Ssm(aws) => crate::lock::release(aws, &self.id).await,
            Store::Host(_) => {
                // The holder's JSON must match exactly what this run stored.
                if let Some(v) = self.lock_value.get() {
                    let inputs = Inputs::new()
                        .set("ACTION", "unlock")?
                        .set("VALUE", v.clone())?;
                    self.state_sh::<StateUnlock>(inputs).await?;
                }
                Ok(())
            }
        }
    }

    /// Runs a script of bootstrap/ on the host, records the run in the journal and returns
    /// the script's POSCLOUD_RESULT. A non-zero exit becomes an error: `explain(code)` gives
    /// what happened and what to do next, and the script's stderr follows.
    async fn run_script(
        &self,
        script: Script,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
        explain: impl Fn(i32) -> (String, String),
    ) -> Result<serde_json::Value> {
        let target = self.describe();
        let out = self
            .run_script_output(script, inputs, timeout, sink, explain)
            .await?;
        out.result().ok_or_else(|| {
            Error::failed(format!(
                "{} on {target} ended without a result line (POSCLOUD_RESULT); was the script run at all?",
                script.name()
            ))
        })
    }

    /// As `run_script`, with the result read into its type (`remote::results`); a field the
    /// script did not print is an error naming the script and the field.
    pub async fn run_script_as<T: ScriptResult>(
        &self,
        script: Script,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
        explain: impl Fn(i32) -> (String, String),
    ) -> Result<Typed<T>> {
        results::typed(
            self.run_script(script, inputs, timeout, sink, explain)
                .await?,
        )
    }
}

impl Site<'_> {
    /// As `run_script`, but the whole outcome (for scripts whose output is the data).
    pub async fn run_script_output(
        &self,
        script: Script,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
        explain: impl Fn(i32) -> (String, String),
    ) -> Result<crate::remote::Outcome> {
        let target = self.describe();
        let out = self.remote.run(script, inputs, timeout, sink).await?;
        journal_run(self.journal(), script.name(), &target, &out);
        if out.exit_code != 0 {
            let (what, next) = explain(out.exit_code);
            return Err(Error::failed(format!(
                "{what} on {target} (exit {}):\n{}",
                out.exit_code,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
            .next(next));
        }
        Ok(out)
    }
}

/// How to reach the host, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// `user@host[:port]`: use SSH at this address (sandboxes, edge hosts).
    pub ssh: Option<(String, String, u16)>,
    /// Use SSH to the host's Elastic IP instead of SSM.
    pub force_ssh: bool,
    pub ssh_key: Option<PathBuf>,
    pub host_key: Option<PinnedKey>,
    pub check_ssm_online: bool,
    /// `--target`: a host poscloud did not create; no AWS.
    pub target: Option<SshTarget>,
}

/// The host key from cloud-init's console banner, if it printed one.
fn key_from_console(console: &str) -> Option<PinnedKey> {
    let start = console.find("-----BEGIN SSH HOST KEY KEYS-----")?;
    let end = console[start..].find("-----END SSH HOST KEY KEYS-----")? + start;
    console[start..end]
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .and_then(|l| PinnedKey::parse(l).ok())
}

/// How long the console may take to show the host keys: cloud-init prints them at the end of
/// the first boot, after the user-data.
const CONSOLE_KEY_WITHIN: Duration = Duration::from_secs(900);

/// The host key the instance's console shows, waiting for cloud-init to print it.
async fn console_key(aws: &Aws, ui: &Ui, instance_id: &str) -> Result<PinnedKey> {
    use backon::{ExponentialBuilder, Retryable};
    let start = std::time::Instant::now();
    let mut told = false;
    (|| async {
        let console = aws.console_output(instance_id).await.map_err(Some)?;
        key_from_console(&console).ok_or(None)
    })
    .retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(15))
            .with_max_times(usize::MAX),
    )
    .when(|e| e.is_none() && start.elapsed() < CONSOLE_KEY_WITHIN)
    .notify(|_, _| {
        if !told {
            ui.info(format!(
                "waiting for the console output of {instance_id} to show its SSH host key (cloud-init prints it when the first boot ends)"
            ));
            told = true;
        }
    })
    .await
    .map_err(|e| {
        e.unwrap_or_else(|| {
            Error::failed(format!(
                "the console output of {instance_id} shows no SSH host key after {}s",
                CONSOLE_KEY_WITHIN.as_secs()
            ))
            .next("read the console in the EC2 console (did cloud-init finish?), or pass --host-key-file with the key checked out of band")
        })
    })
}

/// The host key pinned for the stack, if any (the parameter `name`).
async fn stored_key(aws: &Aws, name: &str) -> Result<Option<PinnedKey>> {
    aws.get_param(name)
        .await?
        .map(|line| PinnedKey::parse(&line))
        .transpose()
}

/// Pins the host key from the console output, as the SSM path does once the host's user-data
/// finished (nothing else shows the key without SSH). A console key that differs from the one
/// pinned is refused: the host is not the one whose key was checked.
pub async fn pin_console_key(
    aws: &Aws,
    ui: &Ui,
    id: &StackId,
    instance_id: &str,
) -> Result<PinnedKey> {
    let name = host_key_name(id);
    let stored = stored_key(aws, &name).await?;
    let key = console_key(aws, ui, instance_id).await?;
    match stored {
        Some(s) if s != key => Err(Error::failed(format!(
            "the console output of {instance_id} shows the host key {}, not the one pinned for {id} ({})",
            key.fingerprint(),
            s.fingerprint()
        ))
        .next(format!(
            "if the host was rebuilt on purpose, verify the new key out of band, then remove the parameter {name} and run again; otherwise treat the host as not yours"
        ))),
        Some(s) => Ok(s),
        None => {
            aws.put_param(&name, &key.to_line()).await?;
            ui.info(format!("pinned host key {} from the console output", key.fingerprint()));
            Ok(key)
        }
    }
}

/// The pinned host key: the one recorded for the stack, else the operator's (then
/// recorded), else the instance's console output (then recorded). A given key that
/// differs from the recorded one is refused.
async fn pinned_key(
    aws: &Aws,
    ui: &Ui,
    id: &StackId,
    d: &Discovered,
    reach: &Reach,
) -> Result<PinnedKey> {
    let name = host_key_name(id);
    let stored = stored_key(aws, &name).await?;
    match (stored, &reach.host_key) {
        (Some(s), Some(given)) if s != *given => Err(Error::failed(format!(
            "the host key given ({}) differs from the one pinned for {id} ({})",
            given.fingerprint(),
            s.fingerprint()
        ))
        .next(format!(
            "if the host was rebuilt on purpose, verify the new key out of band, then remove the parameter {name} and run again"
        ))),
        (Some(s), _) => Ok(s),
        (None, Some(given)) => {
            aws.put_param(&name, &given.to_line()).await?;
            ui.info(format!("pinned host key {}", given.fingerprint()));
            Ok(given.clone())
        }
        (None, None) => {
            let instance = d
                .instance()
                .ok_or_else(|| Error::failed("no instance to read a host key from"))?;
            pin_console_key(aws, ui, id, &instance.id).await
        }
    }
}

/// The stack's host in AWS, over SSH when an address is given or asked for, else SSM.
pub async fn site<'a>(
    aws: &'a Aws,
    ui: &Ui,
    id: &StackId,
    d: &Discovered,
    reach: &Reach,
) -> Result<Site<'a>> {
    let remote = remote(aws, ui, id, d, reach).await?;
    Ok(Site {
        id: id.clone(),
        remote,
        store: Store::Ssm(aws),
        lock_value: Default::default(),
    })
}

async fn remote<'a>(
    aws: &'a Aws,
    ui: &Ui,
    id: &StackId,
    d: &Discovered,
    reach: &Reach,
) -> Result<Remote<'a>> {
    if reach.ssh.is_some() || reach.force_ssh {
        let (user, host, port) = match &reach.ssh {
            Some(a) => a.clone(),
            None => {
                let ip = d
                    .eip(Role::EipHost)
                    .map(|e| e.public_ip.clone())
                    .ok_or_else(|| Error::failed("the host has no Elastic IP to SSH to"))?;
                ("centos".to_string(), ip, 22)
            }
        };
        let host_key = pinned_key(aws, ui, id, d, reach).await?;
        return Ok(Remote::Ssh(SshTarget {
            user,
            host,
            port,
            key_file: reach.ssh_key.clone(),
            host_key,
        }));
    }
    let instance = d
        .instance()
        .ok_or_else(|| Error::failed(format!("{id} has no instance to run commands on")))?;
    Ok(Remote::Ssm(SsmTarget {
        aws,
        instance_id: instance.id.clone(),
        check_online: reach.check_ssm_online,
        output: d.output.exists.then(|| {
            (
                d.output.name.clone(),
                format!("{}ssm", crate::aws::s3::stack_prefix(id)),
            )
        }),
    }))
}

/// Records a remote run in the journal: script, target, exit code, and the output's tail.
fn journal_run(journal: &Journal, script: &str, target: &str, out: &Outcome) {
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let start = s.len().saturating_sub(2000);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[start..].to_string()
    };
    journal.event(
        "remote",
        json!({"script": script, "target": target, "exit_code": out.exit_code,
               "stdout_tail": tail(&out.stdout), "stderr_tail": tail(&out.stderr)}),
    );
}
