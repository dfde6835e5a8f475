//! The VPN workflows: one IPsec tunnel per florist location, its settings in SSM (the key a
//! SecureString), charon on the host.

use super::locked_site;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::phases::vpn::{self, LocationRecord, Tunnel};
use crate::phases::{Reach, Site};
use crate::remote::results::{Typed, VpnApply, VpnDelete, VpnStart, VpnStatus, VpnStop};
use crate::spec::vpn::{Location, LocationInput};
use crate::spec::{StackId, StackSpec};
use crate::ui::Ui;

/// A location made (or updated) and its tunnel brought up.
pub struct Created {
    pub record: LocationRecord,
    pub tunnel: Tunnel,
}

/// `vpn create`: the location checked against the others, stored, its tunnel up.
pub async fn create(
    aws: &Aws,
    ui: &Ui,
    spec: &StackSpec,
    reach: &Reach,
    input: &LocationInput<'_>,
    break_lock: bool,
) -> Result<Created> {
    let existing = vpn::locations(aws, &spec.id).await?;
    let others: Vec<Location> = existing.iter().map(|r| r.location.clone()).collect();
    let location = Location::new(input, &spec.network, &others)?;
    if location.ike_version == 1 {
        ui.warn("IKEv1 is legacy: use it only for a router that cannot do IKEv2");
    }
    if input.allow_weak {
        ui.warn(
            "--allow-weak: this tunnel may use algorithms that no longer protect card data well",
        );
    }
    let d = aws.discover(&spec.id).await?;
    let pos_ip = vpn::pos_public_ip(&d, &spec.id)?;
    let site = crate::phases::site(aws, ui, &spec.id, &d, reach).await?;
    locked_site(&site, ui, break_lock, async {
        let prior = existing.iter().find(|r| r.location.name == location.name);
        let record = vpn::ensure(aws, &spec.id, &location, prior).await?;
        let tunnel = vpn::bring_up(&site, ui, spec, &record, &pos_ip, prior.is_none()).await?;
        Ok(Created { record, tunnel })
    })
    .await
}

/// `vpn delete`: the tunnel off the host, then its settings and keys out of SSM.
pub async fn delete(site: &Site<'_>, ui: &Ui, location: &str, break_lock: bool) -> Result<()> {
    let aws = site.aws().expect("vpn sites are in AWS");
    let id = &site.id;
    locked_site(site, ui, break_lock, async {
        let step = ui.step(format!("vpn: delete {location}"));
        if let Err(e) = vpn::host::<VpnDelete>(site, "delete", Some(location)).await {
            step.failed();
            return Err(e);
        }
        for name in [
            vpn::config_name(id, location),
            vpn::psk_name(id, location),
            vpn::next_psk_name(id, location),
        ] {
            match aws.delete_parameter(&name).await {
                Err(e) if e.kind() == crate::error::Kind::NotFound => {}
                other => other?,
            }
        }
        step.done("");
        Ok(())
    })
    .await
}

/// `vpn start|stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Start,
    Stop,
}

impl Switch {
    pub fn name(self) -> &'static str {
        match self {
            Switch::Start => "start",
            Switch::Stop => "stop",
        }
    }
}

/// `vpn start|stop`: one tunnel, or every one (`location` None); the host's answer.
pub async fn switch(
    site: &Site<'_>,
    ui: &Ui,
    switch: Switch,
    location: Option<&str>,
    break_lock: bool,
) -> Result<serde_json::Value> {
    let (action, what) = (switch.name(), location.unwrap_or("every tunnel"));
    locked_site(site, ui, break_lock, async {
        let step = ui.step(format!("vpn: {action} {what}"));
        let r = match switch {
            Switch::Start => vpn::host::<VpnStart>(site, action, location)
                .await
                .map(|r| r.json),
            Switch::Stop => vpn::host::<VpnStop>(site, action, location)
                .await
                .map(|r| r.json),
        };
        match r {
            Ok(r) => {
                step.done("");
                Ok(r)
            }
            Err(e) => {
                step.failed();
                Err(e)
            }
        }
    })
    .await
}

/// `vpn rotate`'s three ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// A new key waits in SSM for the router; the tunnel keeps the old one.
    Start,
    /// The waiting key goes into use.
    Confirm,
    /// A new key, in use at once.
    Now,
}

pub enum Rotated {
    /// The new key waits (Start).
    Pending(LocationRecord),
    /// The new key is in use and the tunnel applied with it.
    InUse {
        record: LocationRecord,
        tunnel: Typed<VpnApply>,
    },
}

/// `vpn rotate`: `approve` is asked before the tunnel's key changes (Confirm, Now). The
/// rotation date is recorded (key age is reported).
pub struct RotateRequest<'a> {
    pub spec: &'a StackSpec,
    pub reach: &'a Reach,
    pub location: &'a str,
    pub how: Rotation,
    pub break_lock: bool,
}

pub async fn rotate(
    aws: &Aws,
    ui: &Ui,
    approve: &dyn Fn(&Site<'_>) -> Result<()>,
    req: &RotateRequest<'_>,
) -> Result<Rotated> {
    let (spec, location, how) = (req.spec, req.location, req.how);
    let id = &spec.id;
    let mut rec = vpn::find(aws, id, location).await?;
    let (current, next) = (
        vpn::psk_name(id, location),
        vpn::next_psk_name(id, location),
    );
    match (how, &rec.psk_next_since) {
        (Rotation::Confirm, None) => {
            return Err(Error::usage(format!(
                "no rotation of {location} is pending: `poscloud vpn rotate --location {location}` starts one"
            )))
        }
        (Rotation::Start, Some(since)) => {
            return Err(Error::usage(format!(
                "a new key for {location} waits since {since}: --confirm once the router has it, or --now"
            )))
        }
        _ => {}
    }
    let d = aws.discover(id).await?;
    let pos_ip = vpn::pos_public_ip(&d, id)?;
    let site = crate::phases::site(aws, ui, id, &d, req.reach).await?;
    if how != Rotation::Start {
        approve(&site)?;
    }
    locked_site(&site, ui, req.break_lock, async {
        let now = crate::journal::now();
        if how == Rotation::Start {
            aws.put_secret(&next, &crate::spec::vpn::new_psk()?).await?;
            rec.psk_next_since = Some(now);
            vpn::save(aws, id, &rec).await?;
            return Ok(Rotated::Pending(rec));
        }
        let key = match how {
            Rotation::Confirm => aws.get_secret(&next).await?.ok_or_else(|| {
                Error::failed(format!(
                    "the pending key {next} is missing; start the rotation again"
                ))
            })?,
            _ => crate::spec::vpn::new_psk()?,
        };
        aws.put_secret(&current, &key).await?;
        rec.psk_rotated_at = now;
        rec.psk_next_since = None;
        vpn::save(aws, id, &rec).await?;
        match aws.delete_parameter(&next).await {
            Err(e) if e.kind() == crate::error::Kind::NotFound => {}
            other => other?,
        }
        let tunnel = vpn::apply(&site, ui, spec, &rec, &pos_ip).await.map_err(|e| {
            Error::failed(format!(
                "{}\n  the new key is in use on the POS side",
                e.message()
            ))
            .next(format!("the tunnel comes up once the router has it (`poscloud vpn sheet --location {location} --reveal`)"))
        })?;
        Ok(Rotated::InUse {
            record: rec,
            tunnel,
        })
    })
    .await
}

/// What the router admin's sheet shows; the key only when asked for (`reveal`: the key in
/// use, or with `next` the waiting one).
pub struct Sheet {
    pub record: LocationRecord,
    pub pos_public_ip: String,
    pub psk: Option<String>,
}

pub async fn sheet(
    aws: &Aws,
    id: &StackId,
    location: &str,
    reveal: bool,
    next: bool,
) -> Result<Sheet> {
    let record = vpn::find(aws, id, location).await?;
    let d = aws.discover(id).await?;
    let pos_public_ip = vpn::pos_public_ip(&d, id).unwrap_or_else(|_| "-".into());
    let psk = match reveal {
        false => None,
        true => {
            let name = match next {
                true => vpn::next_psk_name(id, location),
                false => vpn::psk_name(id, location),
            };
            Some(aws.get_secret(&name).await?.ok_or_else(|| {
                Error::usage(format!(
                    "no {}key for {location} in SSM",
                    if next { "pending " } else { "" },
                ))
            })?)
        }
    };
    Ok(Sheet {
        record,
        pos_public_ip,
        psk,
    })
}

/// `vpn list`: the stack's locations as stored in SSM.
pub async fn list(aws: &Aws, id: &StackId) -> Result<Vec<LocationRecord>> {
    vpn::locations(aws, id).await
}

/// `vpn status`: the tunnels as the host's charon reports them (one location, or all).
pub async fn status(site: &Site<'_>, location: Option<&str>) -> Result<Typed<VpnStatus>> {
    vpn::host::<VpnStatus>(site, "status", location).await
}
