//! The bootstrap phase: the host is reachable, user-data finished, Docker and strongSwan
//! answer; their versions are recorded on the stack.

use super::{PhaseState, Site};
use crate::error::Result;
use crate::remote::results::Bootstrap;
use crate::remote::{Inputs, Remote, Script};
use crate::ui::Ui;
use std::time::Duration;

/// How long a fresh host may take to answer and to finish its user-data.
const READY_WITHIN: Duration = Duration::from_secs(600);
const USERDATA_WAIT_SECS: u64 = 900;

/// Runs the phase and records it.
/// On `--target` hosts poscloud's user-data never ran: only Docker and strongSwan are checked.
pub async fn run(site: &Site<'_>, ui: &Ui) -> Result<PhaseState> {
    let target = site.describe();
    let step = ui.step(format!("bootstrap: waiting for {target}"));
    site.remote
        .wait_ready(READY_WITHIN)
        .await
        .inspect_err(|_| step.fail_silently())?;
    step.done("");

    let userdata = site.aws().is_some();
    let step = ui.step(if userdata {
        "bootstrap: user-data, Docker, strongSwan"
    } else {
        "bootstrap: Docker, strongSwan"
    });
    let inputs = Inputs::new()
        .set("SHOP", site.id.shop.as_str())?
        .set("ENV", site.id.env.as_str())?
        .set("USERDATA", if userdata { "1" } else { "0" })?
        .set("WAIT_SECS", USERDATA_WAIT_SECS.to_string())?;
    let timeout = Duration::from_secs(USERDATA_WAIT_SECS + 300);
    let result = match site.run_script_as::<Bootstrap>(Script::Bootstrap, &inputs, timeout, ui.remote_sink(), |_| {
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
        result.fields.docker, result.fields.strongswan
    );
    // Over SSM nothing has checked the host key yet: pin it from the console now that the
    // first boot is over, for `--transport ssh` and `pos connect` later.
    if let (Remote::Ssm(t), Some(aws)) = (&site.remote, site.aws()) {
        if let Err(e) = super::pin_console_key(aws, ui, &site.id, &t.instance_id).await {
            step.failed();
            return Err(e);
        }
    }
    let st = site
        .record_phase(super::Phase::Bootstrap, result.json)
        .await?;
    step.done(&detail);
    Ok(st)
}
