//! The VPN: one IPsec tunnel per florist location, the POS side initiating. A location's
//! settings are an SSM String parameter, its pre-shared key an SSM SecureString; the host
//! side is bootstrap/vpn.sh (strongSwan in the POS network namespace).

use super::Site;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::remote::results::{ScriptResult, Typed, VpnApply, VpnStatus};
use crate::remote::{Inputs, Remote, Script};
use crate::spec::vpn::Location;
use crate::spec::{StackId, StackSpec};
use crate::time::Time;
use crate::ui::Ui;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What SSM keeps of a location (the key lives apart, as a SecureString).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocationRecord {
    #[serde(flatten)]
    pub location: Location,
    pub created_at: Time,
    /// When the current key was made (key age is a compliance item).
    pub psk_rotated_at: Time,
    /// A rotation waiting for the router: since when the next key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk_next_since: Option<Time>,
}

pub fn config_path(id: &StackId) -> String {
    format!("{}vpn/", id.param_path())
}

pub fn config_name(id: &StackId, location: &str) -> String {
    format!("{}{location}", config_path(id))
}

pub fn psk_name(id: &StackId, location: &str) -> String {
    format!("{}vpn-psk/{location}", id.param_path())
}

/// The next key during a rotation, until the router has it.
pub fn next_psk_name(id: &StackId, location: &str) -> String {
    format!("{}vpn-psk-next/{location}", id.param_path())
}

pub async fn save(aws: &Aws, id: &StackId, rec: &LocationRecord) -> Result<()> {
    aws.put_param(
        &config_name(id, &rec.location.name),
        &serde_json::to_string(rec).expect("json"),
    )
    .await
}

/// Every location of the stack, by name.
pub async fn locations(aws: &Aws, id: &StackId) -> Result<Vec<LocationRecord>> {
    let mut out = Vec::new();
    for (name, value) in aws.params_under(&config_path(id)).await? {
        let rec: LocationRecord = serde_json::from_str(&value).map_err(|e| {
            Error::failed(format!(
                "{name} does not hold a VPN location ({e}); remove it or fix it"
            ))
        })?;
        out.push(rec);
    }
    out.sort_by(|a, b| a.location.name.cmp(&b.location.name));
    Ok(out)
}

fn explain(action: &'static str) -> impl Fn(i32) -> (String, String) {
    move |code| {
        if code == 2 {
            (
                format!("the host refused the vpn {action} inputs"),
                "check the location's settings".into(),
            )
        } else {
            (
                format!("vpn {action} failed"),
                "read the reason above; `poscloud vpn status` shows each tunnel as strongSwan sees it".into(),
            )
        }
    }
}

/// Configures the location on the host and brings its tunnel up. The key reaches the host
/// through the SSH channel's encrypted input, or, over SSM, by the host reading the
/// SecureString with its own role: it is never in a command line, the journal or the output.
pub async fn apply(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    rec: &LocationRecord,
    pos_public_ip: &str,
) -> Result<Typed<VpnApply>> {
    let aws = site
        .aws()
        .ok_or_else(|| Error::usage("the VPN needs the stack in AWS: its keys live in SSM"))?;
    let l = &rec.location;
    let nets: Vec<String> = l.peer_nets.iter().map(|n| n.to_string()).collect();
    let mut inputs = Inputs::new()
        .set("ACTION", "apply")?
        .set("LOCATION", &l.name)?
        .set("PEER_IP", l.peer_ip.to_string())?
        .set("PEER_NETS", nets.join(","))?
        .set("LOCAL_NET", spec.network.to_string())?
        .set("LOCAL_IP", spec.pos_ip.to_string())?
        .set("LOCAL_ID", pos_public_ip)?
        .set("IKE_VERSION", l.ike_version.to_string())?
        .set("PROPOSALS", &l.proposals)?
        .set("ESP_PROPOSALS", &l.esp_proposals)?;
    let name = psk_name(&site.id, &l.name);
    inputs = match &site.remote {
        Remote::Ssh(_) => {
            let psk = aws
                .get_secret(&name)
                .await?
                .ok_or_else(|| Error::failed(format!("no key for {} in SSM ({name})", l.name)))?;
            inputs.set("PSK", psk)?
        }
        Remote::Ssm(_) => inputs.set("PSK_PARAM", &name)?.set("REGION", &aws.region)?,
    };
    let step = ui.step(format!(
        "vpn: {} → {} ({})",
        l.name,
        l.peer_ip,
        nets.join(", ")
    ));
    match site
        .run_script_as::<VpnApply>(
            Script::Vpn,
            &inputs,
            Duration::from_secs(180),
            ui.remote_sink(),
            explain("apply"),
        )
        .await
    {
        Ok(r) => {
            step.done(&r.fields.state);
            Ok(r)
        }
        Err(e) => {
            step.failed();
            Err(e)
        }
    }
}

/// One location of the stack; a usage error naming it when there is none.
pub async fn find(aws: &Aws, id: &StackId, name: &str) -> Result<LocationRecord> {
    locations(aws, id)
        .await?
        .into_iter()
        .find(|r| r.location.name == name)
        .ok_or_else(|| Error::usage(format!("{id} has no VPN location {name:?}")))
}

/// The POS's Elastic IP: the tunnel's public end and the POS side's IKE identity.
pub fn pos_public_ip(d: &crate::resources::discover::Discovered, id: &StackId) -> Result<String> {
    d.eip(crate::aws::tags::Role::EipPos)
        .map(|e| e.public_ip.clone())
        .ok_or_else(|| Error::failed(format!("{id} has no POS Elastic IP: provision it first")))
}

/// The location's record and key in SSM: a key is made when there is none, the dates of
/// an existing location are kept.
pub async fn ensure(
    aws: &Aws,
    id: &StackId,
    location: &Location,
    prior: Option<&LocationRecord>,
) -> Result<LocationRecord> {
    let psk = psk_name(id, &location.name);
    let now = crate::journal::now();
    let rotated = match (prior, aws.get_secret(&psk).await?.is_some()) {
        (Some(p), true) => p.psk_rotated_at,
        _ => {
            aws.put_secret(&psk, &crate::spec::vpn::new_psk()?).await?;
            now
        }
    };
    let rec = LocationRecord {
        location: location.clone(),
        created_at: prior.map_or(now, |p| p.created_at),
        psk_rotated_at: rotated,
        psk_next_since: prior.and_then(|p| p.psk_next_since),
    };
    save(aws, id, &rec).await?;
    Ok(rec)
}

/// A tunnel after `bring_up`: as vpn.sh apply reported it, or waiting for its router.
pub enum Tunnel {
    Applied(Typed<VpnApply>),
    Waiting { location: String },
}

impl Tunnel {
    pub fn state(&self) -> &str {
        match self {
            Tunnel::Applied(r) => &r.fields.state,
            Tunnel::Waiting { .. } => "waiting for the peer",
        }
    }

    pub fn into_json(self) -> serde_json::Value {
        match self {
            Tunnel::Applied(r) => r.json,
            Tunnel::Waiting { location } => {
                serde_json::json!({"location": location, "state": "waiting for the peer"})
            }
        }
    }
}

/// `apply`, where a new location's router that does not answer or refuses the key is not a
/// failure yet: it usually gets its key from the sheet after this.
pub async fn bring_up(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    rec: &LocationRecord,
    pos_public_ip: &str,
    new: bool,
) -> Result<Tunnel> {
    match apply(site, ui, spec, rec, pos_public_ip).await {
        Ok(up) => Ok(Tunnel::Applied(up)),
        Err(e)
            if new
                && ["no answer from the peer", "authentication failed"]
                    .iter()
                    .any(|r| e.to_string().contains(r)) =>
        {
            let l = &rec.location;
            ui.warn(format!(
                "the tunnel to {} is not up yet: the router has to be configured (`poscloud vpn sheet --location {}`); it comes up by itself once it is",
                l.peer_ip, l.name
            ));
            Ok(Tunnel::Waiting {
                location: l.name.clone(),
            })
        }
        Err(e) => Err(e),
    }
}

/// The vpn phase of provision: every location the stack declares, in SSM and up on the host.
pub async fn run(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    pos_public_ip: &str,
) -> Result<super::PhaseState> {
    let aws = site
        .aws()
        .ok_or_else(|| Error::usage("the VPN needs the stack in AWS: its keys live in SSM"))?;
    let existing = locations(aws, &site.id).await?;
    let mut tunnels = std::collections::BTreeMap::new();
    for l in &spec.vpn {
        let prior = existing.iter().find(|r| r.location.name == l.name);
        let rec = ensure(aws, &site.id, l, prior).await?;
        let up = bring_up(site, ui, spec, &rec, pos_public_ip, prior.is_none()).await?;
        tunnels.insert(l.name.clone(), up.state().to_string());
    }
    let record = PhaseRecord {
        declared: serde_json::to_value(&spec.vpn).expect("json"),
        tunnels,
    };
    site.record_phase(
        super::Phase::Vpn,
        serde_json::to_value(record).expect("json"),
    )
    .await
}

/// The vpn phase's record: the locations declared, and each tunnel's state then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// `spec.vpn` as JSON.
    pub declared: serde_json::Value,
    pub tunnels: std::collections::BTreeMap<String, String>,
}

/// Whether a vpn record is of the locations the stack declares now.
pub fn current(spec: &StackSpec, st: &super::PhaseState) -> bool {
    let Ok(r) = serde_json::from_value::<PhaseRecord>(st.result.clone()) else {
        return false;
    };
    serde_json::to_value(&spec.vpn).is_ok_and(|v| r.declared == v)
}

/// vpn.sh status, typed: each location (or the one named) as charon sees it.
pub async fn status(site: &Site<'_>, location: Option<&str>) -> Result<VpnStatus> {
    Ok(host::<VpnStatus>(site, "status", location).await?.fields)
}

/// Runs vpn.sh with ACTION (status, delete, start, stop) for one location or all; its
/// result read as `T`.
pub async fn host<T: ScriptResult>(
    site: &Site<'_>,
    action: &'static str,
    location: Option<&str>,
) -> Result<Typed<T>> {
    let mut inputs = Inputs::new().set("ACTION", action)?;
    if let Some(l) = location {
        inputs = inputs.set("LOCATION", l)?;
    }
    site.run_script_as::<T>(
        Script::Vpn,
        &inputs,
        Duration::from_secs(120),
        crate::remote::no_sink(),
        explain(action),
    )
    .await
}
