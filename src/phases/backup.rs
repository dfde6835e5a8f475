//! The backup phase: the host's daily backup job (bootstrap/backup.sh, a systemd timer) set
//! up with the stack's schedule and retention and the app's consistency rule; and one backup
//! now (`backup run`), the same script the timer runs.

use super::{Phase, PhaseState, Site};
use crate::error::{Error, Result};
use crate::remote::results::{self, BackupInstall, BackupRun};
use crate::remote::{Inputs, Script};
use crate::spec::app::Consistency;
use crate::spec::{StackId, StackSpec};
use crate::ui::Ui;
use std::time::Duration;

const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Archive and upload of a florist's data (a few GB at most): well within an hour.
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where a stack's backups live in the region's bucket: under the shop's own prefix, which
/// the instance role may write.
pub fn prefix(id: &StackId) -> String {
    format!("{}backups/", crate::aws::s3::stack_prefix(id))
}

fn inputs(spec: &StackSpec, bucket: &str, region: &str) -> Result<Inputs> {
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{} has no [pos] section: there is no POS data to back up",
            spec.source
        ))
    })?;
    let b = &spec.backup;
    let mut i = Inputs::new()
        .set("SHOP", spec.id.shop.as_str())?
        .set("ENV", spec.id.env.as_str())?
        .set("APP", pos.app.name.as_str())?
        .set("DATA_DIR", super::stage::data_dir(pos))?
        .set("BUCKET", bucket)?
        .set("PREFIX", prefix(&spec.id))?
        .set("REGION", region)?
        .set("SCHEDULE", b.schedule.as_str())?
        .set("DAILY_DAYS", b.daily_days.to_string())?
        .set("MONTHLY_DAYS", b.monthly_days().to_string())?;
    i = match &pos.app.consistency {
        Consistency::Stop => i.set("CONSISTENCY", "stop")?,
        Consistency::Command { quiesce, resume } => i
            .set("CONSISTENCY", "command")?
            .set("QUIESCE", quiesce.as_str())?
            .set("RESUME", resume.as_str())?,
    };
    Ok(i)
}

/// Current while the recorded job has the stack's settings (what install was given).
pub fn current(spec: &StackSpec, st: &PhaseState) -> bool {
    #[derive(serde::Deserialize)]
    struct Rec {
        settings: serde_json::Value,
    }
    serde_json::from_value::<Rec>(st.result.clone()).is_ok_and(|r| r.settings == settings(spec))
}

/// What the record keeps of the stack to tell whether the job is current.
fn settings(spec: &StackSpec) -> serde_json::Value {
    serde_json::json!({
        "backup": spec.backup,
        "app": spec.pos.as_ref().map(|p| &p.app.name),
        "consistency": spec.pos.as_ref().map(|p| &p.app.consistency),
    })
}

/// The phase: the job installed (or brought up to the stack's settings), then recorded.
pub async fn run(site: &Site<'_>, ui: &Ui, spec: &StackSpec) -> Result<PhaseState> {
    let aws = site.aws().ok_or_else(|| {
        Error::usage("backups go to S3 with the instance role: not on --target hosts")
    })?;
    let bucket = aws.output_bucket().await?;
    let step = ui.step("backup: the daily job (systemd timer) on the host");
    let out = site
        .run_script_as::<BackupInstall>(
            Script::Backup,
            &inputs(spec, &bucket, &aws.region)?.set("ACTION", "install")?,
            INSTALL_TIMEOUT,
            ui.remote_sink(),
            |code| {
                (
                    match code {
                        2 => "the host refused the backup settings",
                        _ => "installing the backup job failed",
                    }
                    .into(),
                    format!(
                        "check [backup] in {} and run the same command again",
                        spec.source
                    ),
                )
            },
        )
        .await
        .inspect_err(|_| step.fail_silently())?;
    step.done(&format!(
        "{} ({}, daily kept {} days{})",
        out.fields.timer,
        out.fields.schedule,
        spec.backup.daily_days,
        if spec.backup.monthly > 0 {
            format!(", {} monthly", spec.backup.monthly)
        } else {
            String::new()
        }
    ));
    let record = serde_json::json!({ "install": out.json, "settings": settings(spec) });
    site.record_phase(Phase::Backup, record).await
}

/// One backup now: what the timer runs (the installed settings), its summary.
pub async fn now(site: &Site<'_>, ui: &Ui) -> Result<results::Typed<BackupRun>> {
    let step = ui.step("backup: archive, checksum and upload on the host");
    let out = site
        .run_script_as::<BackupRun>(
            Script::Backup,
            &Inputs::new().set("ACTION", "run")?,
            RUN_TIMEOUT,
            ui.remote_sink(),
            |_| {
                (
                    "the backup failed on the host (its reason is above); the POS was started again".into(),
                    "fix what it names and run `poscloud backup run` again; earlier backups are untouched".into(),
                )
            },
        )
        .await
        .inspect_err(|_| step.fail_silently())?;
    step.done(&format!(
        "{} ({} files, {} bytes; the POS held {} s)",
        out.fields.stamp, out.fields.files, out.fields.bytes, out.fields.held_s
    ));
    Ok(out)
}

/// `backup:TIME`'s TIME as the stamp the host writes: `20261202T013500Z`, or an RFC 3339
/// time of the second (`2026-12-02T01:35:00Z`). None: not a time.
pub fn stamp_of(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() == 16 && digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z' {
        return Some(s.to_string());
    }
    let t: crate::time::Time = s.parse().ok()?;
    let text = t.to_string();
    (text == s).then(|| text.replace(['-', ':'], ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_times_as_stamps() {
        assert_eq!(
            stamp_of("20261202T013500Z").as_deref(),
            Some("20261202T013500Z")
        );
        assert_eq!(
            stamp_of("2026-12-02T01:35:00Z").as_deref(),
            Some("20261202T013500Z")
        );
        for bad in [
            "yesterday",
            "2026-12-02",
            "20261202T0135Z",
            "2026-12-02T01:35:00+01:00",
        ] {
            assert_eq!(stamp_of(bad), None, "{bad}");
        }
    }
}
