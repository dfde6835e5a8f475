//! The stage phase: the POS container from the stack's image, hardened, with eth1 handed to
//! it (POS address, subnet gateway as default route) and the POS application installed from
//! an artifact whose checksum is verified first.

use super::{phase_state, record_phase, run_script, PhaseState};
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::remote::{Inputs, Remote};
use crate::spec::{PosSpec, StackSpec};
use crate::ui::Ui;
use std::time::Duration;

const STAGE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The host directory that holds the POS data (mounted at /usr2 or /d); never deleted.
pub fn data_dir(pos: &PosSpec) -> String {
    format!("/var/lib/poscloud/data/{}", pos.app)
}

/// The stage script's inputs for this stack (also what `pos start` re-applies).
pub fn inputs(spec: &StackSpec, pos: &PosSpec) -> Result<Inputs> {
    let gateway = std::net::Ipv4Addr::from(u32::from(spec.network.network()) + 1);
    Inputs::new()
        .set("SHOP", spec.id.shop.as_str())?
        .set("APP", &pos.app)?
        .set("IMAGE", &pos.image)?
        .set("CONTAINER", "pos")?
        .set("POS_IP", spec.pos_ip.to_string())?
        .set("PREFIX", spec.network.prefix_len().to_string())?
        .set("GATEWAY", gateway.to_string())?
        .set("DATA_DIR", data_dir(pos))?
        .set("ARTIFACT_URL", &pos.artifact_url)?
        .set("ARTIFACT_SHA256", &pos.artifact_sha256)?
        .set("MEMORY", &pos.memory)?
        .set("PIDS", pos.pids.to_string())
}

/// Runs pos.sh ACTION=stage (idempotent) and returns its result; `run` records it as the
/// phase, `pos start` does not.
pub async fn apply(
    aws: &Aws,
    ui: &Ui,
    spec: &StackSpec,
    remote: &Remote<'_>,
) -> Result<serde_json::Value> {
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{}: no [pos] section (app, image, artifact_url, artifact_sha256): nothing to stage",
            spec.source
        ))
    })?;
    let step = ui.step(format!("stage: POS container from {}", pos.image));
    let result = match run_script(
        aws,
        remote,
        "pos.sh",
        &inputs(spec, pos)?,
        STAGE_TIMEOUT,
        ui.remote_sink(),
        |code| {
            let what = match code {
                3 => "the POS artifact does not match its checksum; nothing was installed",
                2 => "the host refused the stage inputs",
                _ => "stage failed",
            };
            (
                what.into(),
                format!(
                    "check [pos] in {} and run the same command again",
                    spec.source
                ),
            )
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    step.done(&format!("{} on eth1", spec.pos_ip));
    Ok(result)
}

/// The phase: skipped when recorded as done, unless `redo`.
pub async fn run(
    aws: &Aws,
    ui: &Ui,
    spec: &StackSpec,
    remote: &Remote<'_>,
    redo: bool,
) -> Result<PhaseState> {
    if !redo {
        if let Some(st) = phase_state(aws, &spec.id, "stage").await? {
            ui.info(format!(
                "stage: done at {} by {} (skipped; --redo stage runs it again)",
                st.done_at, st.by
            ));
            return Ok(st);
        }
    }
    let result = apply(aws, ui, spec, remote).await?;
    record_phase(aws, &spec.id, "stage", &remote.describe(), result).await
}
