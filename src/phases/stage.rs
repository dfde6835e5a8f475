//! The stage phase: the POS container from the stack's image, hardened, with eth1 handed to
//! it (POS address, subnet gateway as default route) and the POS application installed from
//! an artifact whose checksum is verified first.

use super::{PhaseState, Site};
use crate::error::{Error, Result};
use crate::remote::results::{self, PosReady, PosStage, Typed};
use crate::remote::{no_sink, Inputs, Script};
use crate::spec::{PosSpec, StackSpec};
use crate::ui::Ui;
use std::time::Duration;

const STAGE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The host directory that holds the POS data (mounted at the app's mount point); never
/// deleted.
pub fn data_dir(pos: &PosSpec) -> String {
    pos.app.data_dir()
}

/// The stage script's inputs for this stack (also what `pos start` re-applies).
pub fn inputs(spec: &StackSpec, pos: &PosSpec) -> Result<Inputs> {
    let gateway = std::net::Ipv4Addr::from(u32::from(spec.network.network()) + 1);
    Inputs::new()
        .set("SHOP", spec.id.shop.as_str())?
        .set("APP", &pos.app.name)?
        .set("MOUNT_POINT", &pos.app.mount_point)?
        .set("HEALTH_CMD", &pos.app.health_check)?
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
pub async fn apply(site: &Site<'_>, ui: &Ui, spec: &StackSpec) -> Result<Typed<PosStage>> {
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{}: no [pos] section (app, image, artifact_url, artifact_sha256): nothing to stage",
            spec.source
        ))
    })?;
    let step = ui.step(format!("stage: POS container from {}", pos.image));
    let result = match site
        .run_script_as::<PosStage>(
            Script::Pos,
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

/// Whether a stage record is for the stack's current image and artifact.
pub fn current(spec: &StackSpec, st: &PhaseState) -> bool {
    let Ok(r) = results::parse::<PosStage>(&st.result) else {
        return false;
    };
    spec.pos
        .as_ref()
        .is_some_and(|p| r.image == p.image && r.artifact_sha256 == p.artifact_sha256)
}

/// The phase: stage, then record it.
pub async fn run(site: &Site<'_>, ui: &Ui, spec: &StackSpec) -> Result<PhaseState> {
    let result = apply(site, ui, spec).await?;
    site.record_phase(super::Phase::Stage, result.json).await
}

/// The ready phase: the POS container and its network holder run, eth1 inside has the POS
/// address, and the container's health command passes now.
pub async fn ready(site: &Site<'_>, ui: &Ui, spec: &StackSpec) -> Result<PhaseState> {
    let result = check_ready(site, ui, spec).await?;
    site.record_phase(super::Phase::Ready, result.json).await
}

/// The ready check alone (nothing recorded): also the cutover's health check.
pub async fn check_ready(site: &Site<'_>, ui: &Ui, spec: &StackSpec) -> Result<Typed<PosReady>> {
    let step = ui.step("ready: POS health and address");
    let inputs = Inputs::new()
        .set("ACTION", "ready")?
        .set("CONTAINER", "pos")?
        .set("POS_IP", spec.pos_ip.to_string())?;
    let result = match site
        .run_script_as::<PosReady>(Script::Pos, &inputs, Duration::from_secs(300), ui.remote_sink(), |_| {
            (
                "the POS is not ready".into(),
                "read the reasons above; `poscloud pos restart` re-applies the stage, `poscloud pos connect` opens a shell in the container".into(),
            )
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    step.done(&format!(
        "{} healthy on {}",
        result.fields.container, spec.pos_ip
    ));
    Ok(result)
}

/// Runs pos.sh with ACTION and more inputs; returns its result line (T: the action's type).
pub async fn pos_sh<T: results::ScriptResult>(
    site: &Site<'_>,
    action: &str,
    more: &[(&str, &str)],
) -> Result<Typed<T>> {
    let mut inputs = Inputs::new().set("ACTION", action)?;
    for (k, v) in more {
        inputs = inputs.set(k, *v)?;
    }
    site.run_script_as::<T>(Script::Pos, &inputs, Duration::from_secs(600), no_sink(), |code| {
        if code == 4 {
            (
                format!("pos {action} refused: the image is in use"),
                "stop or replace the container that uses it first (`poscloud image list` shows which)".into(),
            )
        } else {
            (
                format!("pos {action} failed"),
                "read the message above, then run the same command again".into(),
            )
        }
    })
    .await
}

/// Stops the POS container (eth1 back to the host; data kept). Harmless when there is none.
pub async fn stop(site: &Site<'_>, ui: &Ui) -> Result<()> {
    let step = ui.step("pos: stop the container, eth1 back to the host");
    pos_sh::<results::PosStop>(site, "stop", &[]).await?;
    step.done("");
    Ok(())
}
