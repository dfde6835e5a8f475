//! Remote phases: work on the host through a `Remote`, each recorded as done (a marker on
//! the host and a parameter in SSM) and skipped when done unless redone on request.

pub mod bootstrap;
pub mod restore;
pub mod stage;

use crate::aws::discover::Discovered;
use crate::aws::ssm::{host_key_name, phase_name};
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::journal::{local_host, local_user, now};
use crate::remote::ssh::{PinnedKey, SshTarget};
use crate::remote::ssm::SsmTarget;
use crate::remote::{script, Inputs, Outcome, Remote, Sink};
use crate::spec::StackId;
use crate::ui::Ui;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;

/// The phases after infra that provision runs, in order.
pub const PHASES: &[&str] = &["bootstrap", "stage"];
/// Every phase whose completion is recorded (status shows them all).
pub const RECORDED: &[&str] = &["bootstrap", "stage", "restore"];

/// What SSM records when a phase completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseState {
    pub done_at: String,
    pub by: String,
    pub target: String,
    pub result: serde_json::Value,
}

pub async fn phase_state(aws: &Aws, id: &StackId, phase: &str) -> Result<Option<PhaseState>> {
    match aws.get_param(&phase_name(id, phase)).await? {
        Some(v) => Ok(serde_json::from_str(&v).ok()),
        None => Ok(None),
    }
}

pub async fn record_phase(
    aws: &Aws,
    id: &StackId,
    phase: &str,
    target: &str,
    result: serde_json::Value,
) -> Result<PhaseState> {
    let st = PhaseState {
        done_at: now(),
        by: format!("{}@{}", local_user(), local_host()),
        target: target.to_string(),
        result,
    };
    aws.put_param(
        &phase_name(id, phase),
        &serde_json::to_string(&st).expect("json"),
    )
    .await?;
    Ok(st)
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
    let stored = match aws.get_param(&name).await? {
        Some(line) => Some(PinnedKey::parse(&line)?),
        None => None,
    };
    match (stored, &reach.host_key) {
        (Some(s), Some(given)) if s != *given => Err(Error::failed(format!(
            "the host key given ({}) differs from the one pinned for {id} ({})\n  next: if the host was rebuilt on purpose, verify the new key out of band, then remove the parameter {name} and run again",
            given.fingerprint(),
            s.fingerprint()
        ))),
        (Some(s), _) => Ok(s),
        (None, Some(given)) => {
            aws.put_param(&name, &given.to_line()).await?;
            ui.info(format!("pinned host key {}", given.fingerprint()));
            Ok(given.clone())
        }
        (None, None) => {
            let instance = d.instance().ok_or_else(|| Error::failed("no instance to read a host key from"))?;
            let console = aws.console_output(&instance.id).await?;
            let key = key_from_console(&console).ok_or_else(|| {
                Error::failed(format!(
                    "no SSH host key known for {id}: the console output of {} shows none yet\n  next: wait for the first boot to finish, or pass --host-key-file with the key checked out of band",
                    instance.id
                ))
            })?;
            aws.put_param(&name, &key.to_line()).await?;
            ui.info(format!("pinned host key {} from the console output", key.fingerprint()));
            Ok(key)
        }
    }
}

/// Chooses the transport: SSH when an address is given or asked for, else SSM.
pub async fn remote<'a>(
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

/// Runs a script of bootstrap/ on the host, records the run in the journal and returns the
/// script's POSCLOUD_RESULT. A non-zero exit becomes an error: `explain(code)` gives what
/// happened and what to do next, and the script's stderr follows.
pub async fn run_script(
    aws: &Aws,
    remote: &Remote<'_>,
    name: &str,
    inputs: &Inputs,
    timeout: std::time::Duration,
    sink: Sink,
    explain: impl Fn(i32) -> (String, String),
) -> Result<serde_json::Value> {
    let target = remote.describe();
    let out = remote.run(&script(name), inputs, timeout, sink).await?;
    journal_run(aws, name, &target, &out);
    if out.exit_code != 0 {
        let (what, next) = explain(out.exit_code);
        return Err(Error::failed(format!(
            "{what} on {target} (exit {}):\n{}\n  next: {next}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    out.result().ok_or_else(|| {
        Error::failed(format!(
            "{name} on {target} ended without a result line (POSCLOUD_RESULT); was the script run at all?"
        ))
    })
}

/// Records a remote run in the journal: script, target, exit code, and the output's tail.
fn journal_run(aws: &Aws, script: &str, target: &str, out: &Outcome) {
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let start = s.len().saturating_sub(2000);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[start..].to_string()
    };
    aws.journal().event(
        "remote",
        json!({"script": script, "target": target, "exit_code": out.exit_code,
               "stdout_tail": tail(&out.stdout), "stderr_tail": tail(&out.stderr)}),
    );
}
