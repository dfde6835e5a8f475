//! The restore phase: customer data from a backup source into the host's data directory,
//! every file checked against the source's manifest before it replaces anything.

use super::{PhaseState, Site};
use crate::error::{Error, Result};
use crate::remote::results;
use crate::remote::ssh::PinnedKey;
use crate::remote::{Inputs, Script};
use crate::spec::App;
use crate::ui::Ui;
use std::time::Duration;

/// A large shop's data over a slow link: hours, not minutes.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Where a restore reads from, validated before anything runs.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    /// The POS app's name (`APP`: the result line records it).
    pub app: String,
    pub source: String,
    pub data_dir: String,
    /// For ssh:// sources: the key file on the host, and the backup server's pinned key.
    pub source_key_file: Option<String>,
    pub source_host_key: Option<PinnedKey>,
    pub manifest: String,
}

fn abs_path(what: &str, p: &str) -> Result<()> {
    if p.starts_with('/') && !p.split('/').any(|c| c == "..") && !p.contains(['\n', '\0']) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{what} {p:?} must be an absolute path without `..`"
        )))
    }
}

/// Bucket and key of an s3:// source (without the scheme), if well-formed.
fn s3_location(rest: &str) -> Option<(&str, &str)> {
    let (bucket, key) = rest.split_once('/')?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    let key_ok = [".tar", ".tar.gz", ".tgz"].iter().any(|e| key.ends_with(e))
        && !key.contains(|c: char| c.is_control());
    (bucket_ok && key_ok).then_some((bucket, key))
}

impl RestoreSpec {
    /// Whether the source is an S3 archive (then it needs AWS: not on --target hosts).
    pub fn is_s3(&self) -> bool {
        self.source.starts_with("s3://") || self.backup().is_some()
    }

    /// A backup of the stack's own (`latest`, `backup:TIME`): Some(None) for the newest,
    /// Some(Some(stamp)) for one; resolved to its s3:// archive before the restore runs.
    pub fn backup(&self) -> Option<Option<&str>> {
        let b = self.source.strip_prefix("backup:")?;
        Some((b != "latest").then_some(b))
    }

    pub fn new(
        app: &App,
        source: &str,
        data_dir: Option<&str>,
        source_key_file: Option<&str>,
        source_host_key: Option<PinnedKey>,
        manifest: &str,
    ) -> Result<RestoreSpec> {
        let data_dir = data_dir
            .map(str::to_string)
            .unwrap_or_else(|| app.data_dir());
        abs_path("--data-dir", &data_dir)?;
        if manifest.is_empty() || manifest.contains(['/', '\n', '\0']) || manifest.starts_with('.')
        {
            return Err(Error::usage(format!(
                "--manifest {manifest:?} must be a plain file name in the source"
            )));
        }
        if source == "latest" || source.starts_with("backup:") {
            let which = match source.strip_prefix("backup:") {
                None | Some("latest") => "latest".to_string(),
                Some(t) => super::backup::stamp_of(t).ok_or_else(|| {
                    Error::usage(format!(
                        "{source:?}: backup:TIME takes the time `backup list` shows (2026-12-02T01:35:00Z or 20261202T013500Z)"
                    ))
                })?,
            };
            return Ok(RestoreSpec {
                app: app.name.clone(),
                source: format!("backup:{which}"),
                data_dir,
                source_key_file: None,
                source_host_key: None,
                manifest: manifest.to_string(),
            });
        }
        if let Some(rest) = source.strip_prefix("ssh://") {
            let (userhost, path) = rest.split_once('/').ok_or_else(|| {
                Error::usage(format!(
                    "{source:?}: ssh sources are ssh://user@host[:port]/path/"
                ))
            })?;
            crate::remote::ssh::SshTarget::parse_address(userhost)?;
            abs_path("the source path", &format!("/{path}"))?;
            let key = source_key_file.ok_or_else(|| {
                Error::usage(
                    "an ssh:// source needs --source-key-file (the key's path on the host)",
                )
            })?;
            abs_path("--source-key-file", key)?;
            if source_host_key.is_none() {
                return Err(Error::usage(
                    "an ssh:// source needs --source-host-key-file (the backup server's public host key, checked out of band)",
                ));
            }
        } else if let Some(path) = source.strip_prefix("file://") {
            abs_path("the source path", path)?;
        } else if let Some(rest) = source.strip_prefix("s3://") {
            s3_location(rest).ok_or_else(|| {
                Error::usage(format!(
                    "{source:?}: an s3 source is s3://bucket/key ending in .tar, .tar.gz or .tgz (an archive holding the data and {manifest})"
                ))
            })?;
        } else {
            return Err(Error::usage(format!(
                "{source:?}: a restore source is latest, backup:TIME, ssh://user@host[:port]/path/, s3://bucket/key.tar.gz or file:///path/"
            )));
        }
        Ok(RestoreSpec {
            app: app.name.clone(),
            source: source.to_string(),
            data_dir,
            source_key_file: source_key_file.map(str::to_string),
            source_host_key,
            manifest: manifest.to_string(),
        })
    }
}

/// Whether a restore record is of this source.
pub fn current(spec: &RestoreSpec, st: &PhaseState) -> bool {
    results::parse::<results::Restore>(&st.result).is_ok_and(|r| r.source == spec.source)
}

/// Runs the restore on the host. A verification failure names the files and changes nothing.
pub async fn run(site: &Site<'_>, ui: &Ui, spec: &RestoreSpec) -> Result<PhaseState> {
    let id = &site.id;
    let step = ui.step(format!("restore: {} → {}", spec.source, spec.data_dir));
    let mut inputs = Inputs::new()
        .set("SHOP", id.shop.as_str())?
        .set("APP", &spec.app)?
        .set("DATA_DIR", &spec.data_dir)?
        .set("SOURCE", &spec.source)?
        .set("MANIFEST", &spec.manifest)?;
    if let Some(k) = &spec.source_key_file {
        inputs = inputs.set("SOURCE_KEY_FILE", k)?;
    }
    if let Some(k) = &spec.source_host_key {
        inputs = inputs.set("SOURCE_HOST_KEY", k.to_line())?;
    }
    if let Some((bucket, key)) = spec.source.strip_prefix("s3://").and_then(s3_location) {
        let aws = site.aws().ok_or_else(|| {
            Error::usage("an s3:// source needs AWS; on a --target host use ssh:// or file://")
        })?;
        // Checked here so that a typo fails before the host does anything.
        if aws.object_size(bucket, key).await?.is_none() {
            step.failed();
            return Err(Error::usage(format!(
                "{}: no such object (check the bucket, key and region)",
                spec.source
            )));
        }
        // The host downloads with curl: a presigned URL, valid for the start of the download.
        let url = aws
            .presigned_url("GET", bucket, key, Duration::from_secs(3600))
            .await?;
        inputs = inputs.set("SOURCE_URL", url)?;
    }
    let result = match site.run_script_as::<results::Restore>(Script::Restore, &inputs, RESTORE_TIMEOUT, ui.remote_sink(), |code| {
        let (what, next) = match code {
            3 => (
                "the restored data does not match the source's manifest; the data directory was not changed",
                "fix the backup (or take a fresh one) and run the restore again",
            ),
            2 => ("the host refused the restore inputs", "check --from and --data-dir"),
            _ => (
                "the restore failed",
                "read the messages above; the data directory is only replaced after every file verified",
            ),
        };
        (what.into(), next.into())
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    let detail = format!(
        "{} files, {} bytes verified",
        result.fields.files, result.fields.bytes
    );
    let st = site
        .record_phase(super::Phase::Restore, result.json)
        .await?;
    step.done(&detail);
    Ok(st)
}
