//! The POS workflows on a stack's host (or a `--target` host): start, stop, restart,
//! snapshot, restore, and the shell `pos connect` opens.

use super::locked_site;
use crate::error::{Error, Result};
use crate::phases::restore::{self, RestoreSpec};
use crate::phases::stage::{self, pos_sh, stop};
use crate::phases::{PhaseState, Site};
use crate::remote::results::{self, PosCommit, PosStatus, Typed};
use crate::remote::Remote;
use crate::spec::StackSpec;
use crate::ui::Ui;
use serde_json::json;

/// A change of the POS container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Start,
    Stop,
    Restart,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Start => "start",
            Change::Stop => "stop",
            Change::Restart => "restart",
        }
    }

    /// Start and restart stage the container from the stack's `[pos]`.
    pub fn starts(self) -> bool {
        self != Change::Stop
    }
}

/// `pos status`: the container as pos.sh reports it.
pub async fn status(site: &Site<'_>) -> Result<Typed<PosStatus>> {
    pos_sh(site, "status", &[]).await
}

/// `pos start|stop|restart` under the site's lock; what was done, as JSON.
pub async fn change(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    change: Change,
    break_lock: bool,
) -> Result<serde_json::Value> {
    locked_site(site, ui, break_lock, async {
        if change != Change::Start {
            stop(site, ui).await?;
        }
        match change.starts() {
            true => Ok(json!({"started": stage::apply(site, ui, spec).await?.json})),
            false => Ok(json!({"stopped": change == Change::Stop})),
        }
    })
    .await
}

/// A snapshot: the container committed to `tag`, and the host's EBS snapshots (AWS only).
pub struct Snapshot {
    pub tag: String,
    pub image: Typed<PosCommit>,
    pub ebs_snapshots: Vec<String>,
}

/// `pos snapshot`: the container committed to a tagged image on the host and, for hosts in
/// AWS, an EBS snapshot of the host's volumes; both named with the shop and the time.
pub async fn snapshot(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    break_lock: bool,
) -> Result<Snapshot> {
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{}: no [pos] section: there is no POS to snapshot",
            spec.source
        ))
    })?;
    // 20261123t120000z: a tag may not hold ':' (and our image references are lowercase).
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
        .to_lowercase();
    let tag = format!("poscloud/{}-snapshot:{}-{stamp}", pos.app, spec.id.shop);
    locked_site(site, ui, break_lock, async {
        let step = ui.step(format!("snapshot: commit the POS container to {tag}"));
        let image = match pos_sh::<PosCommit>(
            site,
            "commit",
            &[("TAG", &tag), ("SHOP", spec.id.shop.as_str())],
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                step.failed();
                return Err(e);
            }
        };
        step.done(&image.fields.image_id);
        let mut ebs_snapshots = Vec::new();
        if let Some(aws) = site.aws() {
            let d = aws.discover(&spec.id).await?;
            let instance = d
                .instance()
                .ok_or_else(|| Error::failed(format!("{} has no instance", spec.id)))?;
            let step = ui.step(format!("snapshot: EBS volumes of {}", instance.id));
            match aws.snapshot_volumes(&spec.id, &instance.id, &tag).await {
                Ok(v) => {
                    step.done(&v.join(", "));
                    ebs_snapshots = v;
                }
                Err(e) => {
                    step.failed();
                    return Err(e);
                }
            }
        }
        Ok(Snapshot {
            tag: tag.clone(),
            image,
            ebs_snapshots,
        })
    })
    .await
}

/// `pos restore`: the POS stopped (its bind mount would keep pointing at the old
/// directory), the data restored and verified, the POS started on it; a POS the stack does
/// not have is neither stopped nor started. Returns the restore's record and its result.
pub async fn restore(
    site: &Site<'_>,
    ui: &Ui,
    stack: &StackSpec,
    source: &RestoreSpec,
    break_lock: bool,
) -> Result<(PhaseState, results::Restore)> {
    // `latest` / `backup:TIME`: the backup's archive found first, before the POS stops.
    let mut source = source.clone();
    if let Some(stamp) = source.backup() {
        let aws = site
            .aws()
            .ok_or_else(|| Error::usage("backups are in S3: not on --target hosts"))?;
        let (bucket, b) = crate::ops::backup::find(aws, &site.id, stamp).await?;
        ui.info(format!(
            "restoring backup {} ({}, {} files, {} bytes)",
            b.stamp, b.time, b.files, b.bytes
        ));
        source.source = format!("s3://{bucket}/{}", b.archive);
    }
    let source = &source;
    locked_site(site, ui, break_lock, async {
        if stack.pos.is_some() {
            stop(site, ui).await?;
        }
        let st = restore::run(site, ui, source).await.map_err(|e| {
            if stack.pos.is_some() {
                Error::failed(format!(
                    "{e}\n  the POS stays stopped on its previous, intact data: `poscloud pos start` brings it back as it was"
                ))
            } else {
                e
            }
        })?;
        if stack.pos.is_some() {
            stage::apply(site, ui, stack).await?;
        }
        let r = results::parse(&st.result)?;
        Ok((st, r))
    })
    .await
}

/// The scratch directory `shell` may leave a known_hosts file in (the caller removes it).
pub fn shell_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("poscloud-connect-{}", std::process::id()))
}

/// `pos connect`'s command: a shell in the POS container, through the system's ssh (SSH
/// transports, with the pinned host key) or an SSM session (the AWS CLI with its session
/// plugin). `tty`: an interactive terminal.
pub fn shell(site: &Site<'_>, tty: bool) -> Result<std::process::Command> {
    // bash when the image has it; a plain sh otherwise.
    let shell = "command -v bash >/dev/null && exec bash -l || exec sh -l";
    let exec = format!(
        "docker exec {} pos sh -c '{shell}'",
        if tty { "-it" } else { "-i" }
    );
    Ok(match &site.remote {
        Remote::Ssh(t) => {
            // Only the pinned key is accepted: a known_hosts file holding just that key.
            let dir = shell_dir();
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::failed(format!("{}: {e}", dir.display())))?;
            let known = dir.join("known_hosts");
            let host = if t.port == 22 {
                t.host.clone()
            } else {
                format!("[{}]:{}", t.host, t.port)
            };
            std::fs::write(&known, format!("{host} {}\n", t.host_key.to_line()))
                .map_err(|e| Error::failed(format!("{}: {e}", known.display())))?;
            let mut c = std::process::Command::new("ssh");
            c.args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-p", &t.port.to_string()])
            .arg(if tty { "-t" } else { "-T" });
            if let Some(k) = &t.key_file {
                c.arg("-i").arg(k);
            }
            // The Docker socket is root's.
            c.arg(format!("{}@{}", t.user, t.host))
                .arg(crate::remote::ssh::as_root(&t.user, exec.clone()));
            c
        }
        Remote::Ssm(t) => {
            let params = json!({"command": [format!("sudo {exec}")]}).to_string();
            let mut c = std::process::Command::new("aws");
            c.args(["ssm", "start-session", "--target", &t.instance_id])
                .args([
                    "--document-name",
                    "AWS-StartInteractiveCommand",
                    "--parameters",
                    &params,
                ]);
            if let Some(aws) = site.aws() {
                c.args(["--region", &aws.region]);
            }
            c
        }
    })
}
