//! The bootstrap phase: the host is reachable, user-data finished, Docker and strongSwan
//! answer; their versions are recorded on the stack.

use super::{phase_state, record_phase, run_script, PhaseState};
use crate::aws::Aws;
use crate::error::Result;
use crate::remote::{Inputs, Remote};
use crate::spec::StackId;
use crate::ui::Ui;
use std::time::Duration;

/// How long a fresh host may take to answer and to finish its user-data.
const READY_WITHIN: Duration = Duration::from_secs(600);
const USERDATA_WAIT_SECS: u64 = 900;

/// Runs the phase unless it is recorded as done (or `redo`). Returns the recorded state.
pub async fn run(
    aws: &Aws,
    ui: &Ui,
    id: &StackId,
    remote: &Remote<'_>,
    redo: bool,
) -> Result<PhaseState> {
    if !redo {
        if let Some(st) = phase_state(aws, id, "bootstrap").await? {
            ui.info(format!(
                "bootstrap: done at {} by {} (skipped; --redo bootstrap runs it again)",
                st.done_at, st.by
            ));
            return Ok(st);
        }
    }
    let target = remote.describe();
    let step = ui.step(format!("bootstrap: waiting for {target}"));
    remote
        .wait_ready(READY_WITHIN)
        .await
        .inspect_err(|_| step.fail_silently())?;
    step.done("");

    let step = ui.step("bootstrap: user-data, Docker, strongSwan");
    let inputs = Inputs::new()
        .set("SHOP", id.shop.as_str())?
        .set("ENV", id.env.as_str())?
        .set("WAIT_SECS", USERDATA_WAIT_SECS.to_string())?;
    let timeout = Duration::from_secs(USERDATA_WAIT_SECS + 300);
    let result = match run_script(aws, remote, "bootstrap.sh", &inputs, timeout, ui.remote_sink(), |_| {
        (
            "bootstrap failed".into(),
            "fix the host (see its /var/log/poscloud-host-setup.log), then run the same command again".into(),
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
    let detail = format!(
        "docker {}, {}",
        result["docker"].as_str().unwrap_or("?"),
        result["strongswan"].as_str().unwrap_or("?")
    );
    let st = record_phase(aws, id, "bootstrap", &target, result).await?;
    step.done(&detail);
    Ok(st)
}
