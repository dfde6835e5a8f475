//! Stack profiles (`stacks/*.toml`): parsed strictly, validated into a [`StackSpec`].

use super::{App, Apps, Size, StackId};
use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// The profiles shipped with poscloud, built into the binary so it runs from anywhere.
const BUILTIN: &[(&str, &str)] = &[
    ("prod", include_str!("../../stacks/prod.toml")),
    ("qa", include_str!("../../stacks/qa.toml")),
    ("dev", include_str!("../../stacks/dev.toml")),
];

/// Smallest root disk that holds CentOS 7, Docker images and the POS data.
pub const MIN_DISK_GB: i64 = 30;
/// gp3 maximum volume size.
pub const MAX_DISK_GB: i64 = 16_384;
const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    size: String,
    disk_gb: i64,
    #[serde(default)]
    admin_cidrs: Vec<String>,
    #[serde(default)]
    operator_keys: Vec<String>,
    network: String,
    pos_ip: String,
    pos_egress_cidrs: Vec<String>,
    termination_protection: bool,
    sizes: BTreeMap<String, String>,
    ami: RawAmi,
    /// No longer read: the quotas come from Service Quotas. Kept in the schema only to
    /// refuse it with what to change (a stack file from before would else fail as unknown).
    #[serde(default)]
    quotas: Option<toml::Value>,
    price: RawPrice,
    #[serde(default)]
    pos: Option<RawPos>,
    /// Florist locations: one IPsec tunnel each, made by provision's vpn phase.
    #[serde(default)]
    vpn: Vec<RawVpn>,
    /// The physical server's POS application, for `cutover`.
    #[serde(default)]
    cutover: CutoverConf,
    /// The host's daily backups to S3 (defaults per env).
    #[serde(default)]
    backup: super::backup::RawBackup,
    /// Where the stack's alarms (hardware recovery, instance checks) are e-mailed.
    #[serde(default)]
    alert_email: Option<String>,
}

/// How `cutover` handles the POS application on the shop's physical server. Commands run
/// there with bash as the SSH user; unset ones default per app (see `for_app`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverConf {
    /// The data directory on the physical server (default: the app's, e.g. /usr2 for rti).
    pub data_dir: Option<String>,
    /// Stops the POS application (default: the app's, e.g. `service rti stop`).
    pub stop: Option<String>,
    /// Starts it (default `service APP start`); must return once it is started.
    pub start: Option<String>,
    /// Exits 0 while the application runs and answers (default: the app's).
    pub check: Option<String>,
    /// A file whose modification time is the last backup's (reported by the preflight).
    pub backup_stamp: Option<String>,
}

/// `CutoverConf` with every value set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CutoverSpec {
    pub data_dir: String,
    pub stop: String,
    pub start: String,
    pub check: String,
    pub backup_stamp: Option<String>,
}

impl CutoverConf {
    /// Every value set: the stack's, else the app's default (its app file's `[cutover]`).
    pub fn for_app(&self, app: &App) -> CutoverSpec {
        let d = &app.cutover;
        let or = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
        CutoverSpec {
            data_dir: or(&self.data_dir, &d.data_dir),
            stop: or(&self.stop, &d.stop),
            start: or(&self.start, &d.start),
            check: or(&self.check, &d.check),
            backup_stamp: self.backup_stamp.clone(),
        }
    }

    fn check(&self) -> std::result::Result<(), (String, String)> {
        let path_ok = |p: &str| {
            p.starts_with('/')
                && p.len() > 1
                && !p.split('/').any(|c| c == "..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_.+-".contains(&b))
        };
        for (k, v) in [
            ("data_dir", &self.data_dir),
            ("backup_stamp", &self.backup_stamp),
        ] {
            if let Some(p) = v {
                if !path_ok(p) {
                    return Err((
                        format!("cutover.{k}"),
                        format!("{p:?}: an absolute path (letters, digits, /_.+-) without .."),
                    ));
                }
            }
        }
        for (k, v) in [
            ("stop", &self.stop),
            ("start", &self.start),
            ("check", &self.check),
        ] {
            if let Some(c) = v {
                if c.trim().is_empty() || c.contains(['\n', '\r', '\0']) {
                    return Err((
                        format!("cutover.{k}"),
                        "must be a one-line shell command".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVpn {
    location: String,
    peer_ip: String,
    peer_nets: Vec<String>,
    #[serde(default = "default_ike")]
    ike_version: u8,
    proposals: Option<String>,
    esp_proposals: Option<String>,
    #[serde(default)]
    allow_weak: bool,
}

fn default_ike() -> u8 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPos {
    app: String,
    /// Media version to build (with the app's kickstart); or `image` for a prebuilt one.
    version: Option<String>,
    image: Option<String>,
    /// A kickstart file instead of the built-in one (path relative to the stack file).
    kickstart: Option<String>,
    artifact_url: String,
    artifact_sha256: String,
    #[serde(default = "default_memory")]
    memory: String,
    #[serde(default = "default_pids")]
    pids: u32,
}

fn default_memory() -> String {
    "2g".into()
}
fn default_pids() -> u32 {
    1024
}

/// The POS container of the stack: what the stage phase runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PosSpec {
    pub app: App,
    /// The image stage runs: the built media's, or the prebuilt one the stack names.
    pub image: String,
    /// None when the stack names a prebuilt image (no build phase).
    pub media: Option<Media>,
    pub artifact_url: String,
    pub artifact_sha256: String,
    pub memory: String,
    pub pids: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmi {
    id: Option<String>,
    owner: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    gp3_gb_month: f64,
    public_ipv4_hour: f64,
    instance_hour: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AmiSpec {
    /// An exact image id.
    Pinned(String),
    /// The newest available image of this owner whose name matches the pattern.
    Newest { owner: String, name: String },
}

/// Hourly and monthly unit prices, for the billing report (which bills what really ran).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rates {
    pub instance_hour: BTreeMap<String, f64>,
    pub gp3_gb_month: f64,
    pub public_ipv4_hour: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Price {
    pub instance_month: f64,
    pub disk_month: f64,
    pub public_ipv4_month: f64,
    pub total_month: f64,
}

/// A stack profile resolved for one shop and env: every value valid.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub id: StackId,
    /// Where the profile came from (built-in name or file path), for messages.
    pub source: String,
    pub instance_type: String,
    pub disk_gb: i32,
    pub admin_cidrs: Vec<Ipv4Net>,
    /// OpenSSH public keys allowed to log in to the host (public keys are not secrets).
    pub operator_keys: Vec<String>,
    pub network: Ipv4Net,
    pub pos_ip: Ipv4Addr,
    pub pos_egress_cidrs: Vec<Ipv4Net>,
    pub termination_protection: bool,
    pub ami: AmiSpec,
    pub price: Price,
    pub rates: Rates,
    /// None: the stack has no POS configured yet, provision stops after bootstrap.
    pub pos: Option<PosSpec>,
    /// Florist locations the vpn phase keeps up (others may be added with `vpn create`).
    pub vpn: Vec<super::vpn::Location>,
    pub cutover: CutoverConf,
    pub backup: super::backup::BackupSpec,
    /// The POS apps the stack may name: built in, and apps/*.toml beside the stack file.
    pub apps: Apps,
    /// The address subscribed (SNS, protocol email) to the stack's alert topic; None: the
    /// topic and alarms exist, nobody is told (`report compliance` fails "alarms").
    pub alert_email: Option<String>,
}

/// A TOML error as an editor names a place: `file:line:column: [table] key: message`.
/// (toml's own text has a multi-line excerpt; its key path is not public, so the key is read
/// off the line the error points at, the table off the header above it.)
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> Error {
    // A syntax error's message may run over lines ("invalid table header\nexpected ...").
    let msg = e.message().trim_end().replace('\n', "; ");
    let Some(at) = e
        .span()
        .map(|s| s.start)
        .filter(|&s| text.is_char_boundary(s))
    else {
        return Error::usage(format!("{file}: {msg}"));
    };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let place = match key_at(&text[..line_start], &text[line_start..]) {
        Some(k) => format!("{k}: "),
        None => String::new(),
    };
    Error::usage(format!("{file}:{line}:{column}: {place}{msg}"))
}

/// The key path of the line `rest` starts with, after the lines `before`: `[pos] memory`,
/// `disk_gb` (top level), `[pos]` (the header itself: a missing field of that table).
fn key_at(before: &str, rest: &str) -> Option<String> {
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l[..l.rfind(']').map_or(l.len(), |i| i + 1)].to_string())
    };
    let key = |l: &str| {
        let l = l.trim();
        (!l.starts_with('#') && !l.starts_with('['))
            .then(|| l.split_once('='))
            .flatten()
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
    };
    let this = rest.lines().next().unwrap_or("");
    if let Some(h) = header(this) {
        return Some(h);
    }
    // A value over several lines (an array): its key is on the nearest line above with one.
    let mut k = key(this);
    let mut table = None;
    for l in before.lines().rev() {
        if let Some(h) = header(l) {
            table = Some(h);
            break;
        }
        if k.is_none() {
            k = key(l);
        }
    }
    match (table, k) {
        (Some(t), Some(k)) => Some(format!("{t} {k}")),
        (t, k) => t.or(k),
    }
}

impl StackSpec {
    /// Loads `stack` (a built-in profile name or a path to a .toml file; default: the env's
    /// name) and validates it for `id`.
    pub fn load(id: StackId, stack: Option<&str>, size: Option<Size>) -> Result<Self> {
        let stack = stack.unwrap_or(id.env.as_str());
        let (source, text) = if stack.ends_with(".toml") || stack.contains('/') {
            let text = std::fs::read_to_string(Path::new(stack))
                .map_err(|e| Error::usage(format!("cannot read stack file {stack}: {e}")))?;
            (stack.to_string(), text)
        } else {
            let (_, text) = BUILTIN.iter().find(|(n, _)| *n == stack).ok_or_else(|| {
                Error::usage(format!(
                    "unknown stack {stack:?}: use prod, qa, dev or a path to a .toml file"
                ))
            })?;
            (format!("stacks/{stack}.toml"), text.to_string())
        };
        Self::parse(id, &source, &text, size)
    }

    /// The app `name` (`--app`), or a usage error listing the stack's apps.
    pub fn app(&self, name: &str) -> Result<&App> {
        self.apps.get(name)
    }

    /// Parses the stack file `source`; apps/*.toml beside it add POS apps.
    pub fn parse(id: StackId, source: &str, text: &str, size: Option<Size>) -> Result<Self> {
        let apps = Apps::load(Path::new(source).parent().unwrap_or(Path::new(".")))?;
        let bad = |key: &str, reason: String| Error::Profile {
            file: source.to_string(),
            key: key.to_string(),
            reason,
        };
        let raw: RawProfile = toml::from_str(text).map_err(|e| toml_error(source, text, &e))?;

        let size_name = match size {
            Some(Size::Small) => "small".to_string(),
            Some(Size::Large) => "large".to_string(),
            None => raw.size.clone(),
        };
        for required in ["small", "large"] {
            if !raw.sizes.contains_key(required) {
                return Err(bad("sizes", format!("must define `{required}`")));
            }
        }
        for (name, ty) in &raw.sizes {
            validate_instance_type(ty).map_err(|r| bad(&format!("sizes.{name}"), r))?;
        }
        let instance_type = raw.sizes.get(&size_name).cloned().ok_or_else(|| {
            bad(
                "size",
                format!(
                    "{size_name:?} is not one of the sizes ({})",
                    keys(&raw.sizes)
                ),
            )
        })?;

        if !(MIN_DISK_GB..=MAX_DISK_GB).contains(&raw.disk_gb) {
            return Err(bad(
                "disk_gb",
                format!(
                    "{} GB is outside {MIN_DISK_GB}..={MAX_DISK_GB} GB (the OS, Docker images and POS data need at least {MIN_DISK_GB})",
                    raw.disk_gb
                ),
            ));
        }

        let network = parse_cidr(&raw.network).map_err(|r| bad("network", r))?;
        if !(16..=28).contains(&network.prefix_len()) {
            return Err(bad(
                "network",
                format!("{network}: AWS allows VPC prefixes /16 to /28"),
            ));
        }
        if !network.network().is_private() {
            return Err(bad(
                "network",
                format!("{network} is not a private (RFC 1918) range"),
            ));
        }

        let pos_ip: Ipv4Addr = raw
            .pos_ip
            .parse()
            .map_err(|_| bad("pos_ip", format!("{:?} is not an IPv4 address", raw.pos_ip)))?;
        if !network.contains(&pos_ip) {
            return Err(bad(
                "pos_ip",
                format!("{pos_ip} is outside the network {network}"),
            ));
        }
        let offset = u32::from(pos_ip) - u32::from(network.network());
        let last = u32::from(network.broadcast()) - u32::from(network.network());
        if offset <= 3 || offset == last {
            return Err(bad(
                "pos_ip",
                format!("{pos_ip} is reserved by AWS in {network} (the first four addresses and the last one are)"),
            ));
        }

        let mut admin_cidrs = Vec::new();
        for (i, c) in raw.admin_cidrs.iter().enumerate() {
            let key = format!("admin_cidrs[{i}]");
            let net = parse_cidr(c).map_err(|r| bad(&key, r))?;
            if net.prefix_len() == 0 {
                return Err(bad(
                    &key,
                    "0.0.0.0/0 would open SSH to the whole internet; list your office's addresses"
                        .into(),
                ));
            }
            admin_cidrs.push(net);
        }
        let mut operator_keys = Vec::new();
        for (i, k) in raw.operator_keys.iter().enumerate() {
            operator_keys
                .push(validate_public_key(k).map_err(|r| bad(&format!("operator_keys[{i}]"), r))?);
        }
        let mut pos_egress_cidrs = Vec::new();
        for (i, c) in raw.pos_egress_cidrs.iter().enumerate() {
            pos_egress_cidrs
                .push(parse_cidr(c).map_err(|r| bad(&format!("pos_egress_cidrs[{i}]"), r))?);
        }

        let ami = match (&raw.ami.id, &raw.ami.owner, &raw.ami.name) {
            (Some(id), _, _) => {
                let hex = id.strip_prefix("ami-").unwrap_or("");
                if !(hex.len() == 8 || hex.len() == 17)
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad(
                        "ami.id",
                        format!("{id:?} is not an AMI id (ami- and 8 or 17 hex digits)"),
                    ));
                }
                AmiSpec::Pinned(id.clone())
            }
            (None, Some(owner), Some(name)) => {
                if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(
                        "ami.owner",
                        format!("{owner:?} is not an AWS account id (12 digits)"),
                    ));
                }
                if name.trim().is_empty() {
                    return Err(bad("ami.name", "empty name pattern".into()));
                }
                AmiSpec::Newest {
                    owner: owner.clone(),
                    name: name.clone(),
                }
            }
            _ => {
                return Err(bad(
                    "ami",
                    "give either `id`, or both `owner` and `name`".into(),
                ))
            }
        };

        if raw.quotas.is_some() {
            return Err(bad(
                "quotas",
                "is no longer read: poscloud reads the region's VPC and Elastic IP quotas from \
                 Service Quotas (`poscloud quota show`); delete the [quotas] section and its \
                 lines from the stack file"
                    .into(),
            ));
        }

        let p = &raw.price;
        for (key, v) in [
            ("price.gp3_gb_month", p.gp3_gb_month),
            ("price.public_ipv4_hour", p.public_ipv4_hour),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(key, format!("{v} is not a price")));
            }
        }
        for (t, v) in &p.instance_hour {
            if !(v.is_finite() && *v >= 0.0) {
                return Err(bad(
                    &format!("price.instance_hour.{t}"),
                    format!("{v} is not a price"),
                ));
            }
        }
        let instance_hour = *p.instance_hour.get(&instance_type).ok_or_else(|| {
            bad(
                "price.instance_hour",
                format!("no price for instance type {instance_type:?}"),
            )
        })?;
        let instance_month = instance_hour * HOURS_PER_MONTH;
        let disk_month = raw.disk_gb as f64 * p.gp3_gb_month;
        let public_ipv4_month = 2.0 * p.public_ipv4_hour * HOURS_PER_MONTH;
        let price = Price {
            instance_month,
            disk_month,
            public_ipv4_month,
            total_month: instance_month + disk_month + public_ipv4_month,
        };

        let pos = match raw.pos {
            None => None,
            Some(p) => {
                let app = apps
                    .find(&p.app)
                    .cloned()
                    .ok_or_else(|| bad("pos.app", apps.unknown(&p.app)))?;
                let (image, media) = match (p.image, p.version) {
                    (Some(image), None) => {
                        if p.kickstart.is_some() {
                            return Err(bad(
                                "pos.kickstart",
                                "a kickstart builds media: give `version`, not `image`".into(),
                            ));
                        }
                        if !image_ref_ok(&image) {
                            return Err(bad(
                                "pos.image",
                                format!("{image:?} is not an image reference"),
                            ));
                        }
                        (image, None)
                    }
                    (None, Some(version)) => {
                        let media = Media::new(&app, &version, p.kickstart.as_deref(), source)
                            .map_err(|(k, r)| bad(k, r))?;
                        (media.image.clone(), Some(media))
                    }
                    _ => {
                        return Err(bad(
                            "pos",
                            "give either `version` (media built from the app's kickstart) or `image` (a prebuilt image)".into(),
                        ))
                    }
                };
                let url_ok = (p.artifact_url.starts_with("https://")
                    || p.artifact_url.starts_with("file:///"))
                    && !p.artifact_url.contains(char::is_whitespace);
                if !url_ok {
                    return Err(bad(
                        "pos.artifact_url",
                        format!(
                            "{:?}: use an https:// URL (or file:/// on the host)",
                            p.artifact_url
                        ),
                    ));
                }
                if p.artifact_sha256.len() != 64
                    || !p
                        .artifact_sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(bad(
                        "pos.artifact_sha256",
                        "must be the artifact's SHA-256: 64 lowercase hex digits".into(),
                    ));
                }
                let mem_ok = p.memory.len() > 1
                    && p.memory[..p.memory.len() - 1]
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                    && p.memory.ends_with(['k', 'm', 'g']);
                if !mem_ok {
                    return Err(bad(
                        "pos.memory",
                        format!("{:?}: like 2g or 512m", p.memory),
                    ));
                }
                if !(64..=65536).contains(&p.pids) {
                    return Err(bad("pos.pids", format!("{} is outside 64..=65536", p.pids)));
                }
                Some(PosSpec {
                    app,
                    image,
                    media,
                    artifact_url: p.artifact_url,
                    artifact_sha256: p.artifact_sha256,
                    memory: p.memory,
                    pids: p.pids,
                })
            }
        };

        let mut vpn: Vec<super::vpn::Location> = Vec::new();
        for (i, v) in raw.vpn.iter().enumerate() {
            let nets = v.peer_nets.join(",");
            let input = super::vpn::LocationInput {
                name: &v.location,
                peer_ip: &v.peer_ip,
                peer_nets: &nets,
                ike_version: v.ike_version,
                proposals: v.proposals.as_deref(),
                esp_proposals: v.esp_proposals.as_deref(),
                allow_weak: v.allow_weak,
            };
            if vpn.iter().any(|l| l.name == v.location) {
                return Err(bad(
                    &format!("vpn[{i}].location"),
                    format!("{:?} is declared twice", v.location),
                ));
            }
            let l = super::vpn::Location::new(&input, &network, &vpn)
                .map_err(|e| bad(&format!("vpn[{i}]"), e.to_string()))?;
            vpn.push(l);
        }

        raw.cutover.check().map_err(|(k, why)| bad(&k, why))?;
        let backup = super::backup::BackupSpec::for_env(id.env, raw.backup)
            .map_err(|(k, why)| bad(k, why))?;
        let alert_email = match &raw.alert_email {
            None => None,
            Some(a) => Some(validate_email(a).map_err(|r| bad("alert_email", r))?),
        };

        Ok(StackSpec {
            id,
            source: source.to_string(),
            instance_type,
            disk_gb: raw.disk_gb as i32,
            admin_cidrs,
            operator_keys,
            network,
            pos_ip,
            pos_egress_cidrs,
            termination_protection: raw.termination_protection,
            ami,
            price,
            rates: Rates {
                instance_hour: raw.price.instance_hour,
                gp3_gb_month: raw.price.gp3_gb_month,
                public_ipv4_hour: raw.price.public_ipv4_hour,
            },
            pos,
            vpn,
            cutover: raw.cutover,
            backup,
            apps,
            alert_email,
        })
    }
}

/// OS media for the POS app: built once from a kickstart, cached by `key` per region.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Media {
    pub version: String,
    /// Where the kickstart came from (built-in name or file), for messages.
    pub kickstart_source: String,
    /// The kickstart as read (what build.sh is sent): a bad one fails when the stack loads.
    #[serde(skip)]
    pub parsed: super::kickstart::Kickstart,
    /// SHA-256 of app, version and kickstart: the same media anywhere has the same key.
    pub key: String,
    /// The tag the host gives the media: poscloud/<app>:<version>-<key prefix>.
    pub image: String,
}

impl Media {
    /// Validates the version and reads the kickstart (errors: the profile key and why).
    fn new(
        app: &App,
        version: &str,
        kickstart: Option<&str>,
        stack_file: &str,
    ) -> std::result::Result<Media, (&'static str, String)> {
        let version_ok = version.len() <= 64
            && version.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && version
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !version_ok {
            return Err((
                "pos.version",
                format!("{version:?}: lowercase letters, digits, . _ - (at most 64)"),
            ));
        }
        let (kickstart_source, text) = match kickstart {
            None => (app.kickstart_source.clone(), app.kickstart.clone()),
            Some(k) => {
                let path = Path::new(stack_file)
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(k);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    (
                        "pos.kickstart",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                (path.display().to_string(), text)
            }
        };
        // Media are shared by every shop of a region: a fixed root password must never be in them.
        if text.lines().map(str::trim).any(|l| {
            l.starts_with("rootpw")
                && l.split_whitespace().collect::<Vec<_>>() != ["rootpw", "--lock"]
        }) {
            return Err((
                "pos.kickstart",
                format!("{kickstart_source}: a `rootpw` line other than `rootpw --lock` (line not shown: it may hold a password); media must use `rootpw --lock`"),
            ));
        }
        let parsed = super::kickstart::parse(&text)
            .map_err(|e| ("pos.kickstart", format!("{kickstart_source}: {e}")))?;
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(app.name.as_bytes())
            .chain_update([0])
            .chain_update(version.as_bytes())
            .chain_update([0])
            .chain_update(text.as_bytes())
            .finalize();
        let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Media {
            version: version.to_string(),
            image: format!("poscloud/{app}:{version}-{}", &key[..12]),
            kickstart_source,
            parsed,
            key,
        })
    }
}

/// An image reference as the host scripts accept it.
pub fn image_ref_ok(image: &str) -> bool {
    image.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && image
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/:@-".contains(&b))
}

fn keys(m: &BTreeMap<String, String>) -> String {
    m.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// A CIDR with no host bits set (so `10.0.0.5/24` is refused rather than guessed at).
fn parse_cidr(s: &str) -> std::result::Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 CIDR like 203.0.113.0/24"))?;
    if net.network() != net.addr() {
        return Err(format!(
            "{s} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An OpenSSH public key line: `type base64 [comment]`. Private keys are refused outright.
fn validate_public_key(k: &str) -> std::result::Result<String, String> {
    use base64::Engine;
    if k.contains(|c: char| c.is_control()) {
        return Err("one key per entry, on one line (no newlines or control characters)".into());
    }
    if k.contains("PRIVATE KEY") {
        return Err(
            "this is a private key: give the public key (the .pub file), never the private one"
                .into(),
        );
    }
    let mut parts = k.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err("not an OpenSSH public key line (type, base64, optional comment)".into());
    };
    const KINDS: [&str; 4] = [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ssh-rsa",
    ];
    if !KINDS.contains(&kind) {
        return Err(format!(
            "key type {kind:?} is not one of {}",
            KINDS.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key data is not base64".to_string())?;
    // The blob starts with the key type as an SSH string.
    if blob.len() < 4 + kind.len() || &blob[4..4 + kind.len()] != kind.as_bytes() {
        return Err("the key data does not match its type".into());
    }
    Ok(k.trim().to_string())
}

/// Instance types look like `t3.large`, `m5.xlarge`, `c6i.2xlarge`, `u-6tb1.metal`.
/// An address SNS can mail: one `@`, a local part of printable ASCII without spaces,
/// quotes, commas or angle brackets (a display name or a list is refused, not mailed), a
/// domain of at least two DNS labels. Lower-case domain kept as written.
pub fn validate_email(a: &str) -> std::result::Result<String, String> {
    let bad = |why: &str| Err(format!("{a:?} is not an e-mail address: {why}"));
    if a.len() > 254 {
        return bad("longer than 254 characters");
    }
    let Some((local, domain)) = a.split_once('@') else {
        return bad("no @");
    };
    if local.is_empty() || local.len() > 64 {
        return bad("the part before @ must be 1 to 64 characters");
    }
    let odd = |c: char| !c.is_ascii_graphic() || "\"(),:;<>@[\\]".contains(c);
    if local.chars().any(odd) || local.starts_with('.') || local.ends_with('.') {
        return bad("the part before @ has a space, quote, comma, bracket or stray dot");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return bad("the domain must be DNS names joined by dots, like example.com");
    }
    Ok(a.to_string())
}

fn validate_instance_type(t: &str) -> std::result::Result<(), String> {
    let ok = match t.split_once('.') {
        Some((family, size)) => {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !size.is_empty()
                && size
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{t:?} is not an EC2 instance type (family.size, like t3.large)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Env;

    #[test]
    fn alert_emails_are_checked() {
        for ok in ["ops@example.com", "a.b+pos@mail.example.co.uk", "x@a-b.io"] {
            assert_eq!(validate_email(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "ops@localhost",
            "ops@@example.com",
            "o ps@example.com",
            "Ops <ops@example.com>",
            "a@example.com,b@example.com",
            "ops@-example.com",
            "ops@example..com",
            ".ops@example.com",
            "\"ops\"@example.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
    }

    fn id() -> StackId {
        StackId {
            shop: "12345678".parse().unwrap(),
            env: Env::Qa,
        }
    }

    fn with(key_line: &str, replacement: &str) -> String {
        let base = BUILTIN[1].1;
        assert!(base.contains(key_line), "{key_line} not in qa.toml");
        base.replace(key_line, replacement)
    }

    #[test]
    fn builtin_profiles_are_valid() {
        for (name, _) in BUILTIN {
            let s = StackSpec::load(id(), Some(name), None).unwrap();
            assert_eq!(s.disk_gb, 100);
            assert_eq!(s.pos_ip, Ipv4Addr::new(192, 168, 222, 233));
            assert_eq!(s.termination_protection, *name == "prod");
            assert!(s.admin_cidrs.is_empty());
        }
        let large = StackSpec::load(id(), Some("qa"), Some(Size::Large)).unwrap();
        assert_eq!(large.instance_type, "m5.xlarge");
    }

    #[test]
    fn monthly_price() {
        let s = StackSpec::load(id(), Some("qa"), None).unwrap();
        // 730 h * 0.0832 + 100 GB * 0.08 + 2 * 730 h * 0.005
        assert!((s.price.total_month - (60.736 + 8.0 + 7.3)).abs() < 1e-9);
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "network = \"192.168.222.0/24\"",
                "network = \"192.168.222.0/33\"",
                "network",
            ),
            (
                "network = \"192.168.222.0/24\"",
                "network = \"192.168.222.5/24\"",
                "network",
            ),
            (
                "network = \"192.168.222.0/24\"",
                "network = \"8.8.8.0/24\"",
                "network",
            ),
            (
                "pos_ip = \"192.168.222.233\"",
                "pos_ip = \"10.0.0.233\"",
                "pos_ip",
            ),
            (
                "pos_ip = \"192.168.222.233\"",
                "pos_ip = \"192.168.222.1\"",
                "pos_ip",
            ),
            (
                "pos_ip = \"192.168.222.233\"",
                "pos_ip = \"192.168.222.255\"",
                "pos_ip",
            ),
            ("disk_gb = 100", "disk_gb = 8", "disk_gb"),
            ("small = \"t3.large\"", "small = \"t3large\"", "sizes.small"),
            (
                "admin_cidrs = []",
                "admin_cidrs = [\"0.0.0.0/0\"]",
                "admin_cidrs[0]",
            ),
            (
                "admin_cidrs = []",
                "admin_cidrs = [\"office\"]",
                "admin_cidrs[0]",
            ),
            (
                "owner = \"125523088429\"",
                "owner = \"centos\"",
                "ami.owner",
            ),
            ("size = \"small\"", "size = \"huge\"", "size"),
            (
                "gp3_gb_month = 0.08",
                "gp3_gb_month = -1.0",
                "price.gp3_gb_month",
            ),
        ];
        for (from, to, key) in cases {
            let err = StackSpec::parse(id(), "x.toml", &with(from, to), None).unwrap_err();
            match &err {
                Error::Profile { key: k, file, .. } => {
                    assert_eq!(k, key, "{to}: {err}");
                    assert_eq!(file, "x.toml");
                }
                other => panic!("{to}: unexpected {other:?}"),
            }
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        }
    }

    #[test]
    fn toml_errors_name_line_column_and_key() {
        let pos =
            "[pos]\napp = \"rti\"\nversion = \"1\"\nartifact_url = \"https://a.example/r.tar\"\n";
        let sha = format!("artifact_sha256 = \"{}\"\n", "0".repeat(64));
        let base = BUILTIN[1].1;
        let line_of =
            |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        // A wrong type in a table, at the top level, in a multi-line array; a missing field.
        let pids = format!("{base}{pos}{sha}pids = \"100\"\n");
        let disk = base.replace("disk_gb = 100", "disk_gb = \"100\"");
        let cidrs = base.replace(
            "admin_cidrs = []",
            "admin_cidrs = [\n  \"10.0.0.0/8\",\n  5,\n]",
        );
        let missing = format!("{base}{pos}");
        let cases = [
            (
                &pids,
                format!(
                    "x.toml:{}:8: [pos] pids: invalid type: string \"100\", expected u32",
                    line_of(&pids, "pids =")
                ),
            ),
            (
                &disk,
                format!(
                    "x.toml:{}:11: disk_gb: invalid type: string \"100\", expected i64",
                    line_of(&disk, "disk_gb")
                ),
            ),
            (
                &cidrs,
                format!(
                    "x.toml:{}:3: admin_cidrs: invalid type: integer `5`, expected a string",
                    line_of(&cidrs, "  5,")
                ),
            ),
            (
                &missing,
                format!(
                    "x.toml:{}:1: [pos]: missing field `artifact_sha256`",
                    line_of(&missing, "[pos]")
                ),
            ),
        ];
        let syntax = format!("{base}[pos\n");
        let cases = [
            cases.to_vec(),
            vec![(
                &syntax,
                format!(
                    "x.toml:{}:5: [pos: invalid table header; expected `.`, `]`",
                    line_of(&syntax, "[pos")
                ),
            )],
        ]
        .concat();
        for (text, want) in cases {
            let err = StackSpec::parse(id(), "x.toml", text, None).unwrap_err();
            assert_eq!(err.to_string(), want);
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        }
    }

    #[test]
    fn pos_section_is_validated() {
        let good = "\n[pos]\napp = \"rti\"\nimage = \"poscloud/pos-rti:10.1\"\nartifact_url = \"https://artifacts.example/rti.tar\"\nartifact_sha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n";
        let text = format!("{}{good}", BUILTIN[1].1);
        let s = StackSpec::parse(id(), "x.toml", &text, None).unwrap();
        let pos = s.pos.unwrap();
        assert_eq!((pos.memory.as_str(), pos.pids), ("2g", 1024));
        assert!(StackSpec::load(id(), Some("qa"), None)
            .unwrap()
            .pos
            .is_none());
        for (from, to, key) in [
            ("app = \"rti\"", "app = \"sap\"", "pos.app"),
            ("poscloud/pos-rti:10.1", "Pos RTI", "pos.image"),
            (
                "https://artifacts.example/rti.tar",
                "http://artifacts.example/rti.tar",
                "pos.artifact_url",
            ),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "abc",
                "pos.artifact_sha256",
            ),
        ] {
            let text = format!("{}{}", BUILTIN[1].1, good.replace(from, to));
            match StackSpec::parse(id(), "x.toml", &text, None).unwrap_err() {
                Error::Profile { key: k, .. } => assert_eq!(k, key, "{to}"),
                other => panic!("{to}: {other:?}"),
            }
        }
    }

    #[test]
    fn media_are_keyed_by_app_version_and_kickstart() {
        let pos = |extra: &str| {
            format!("{}\n[pos]\napp = \"rti\"\nartifact_url = \"https://a.example/r.tar\"\nartifact_sha256 = \"{}\"\n{extra}", BUILTIN[1].1, "0".repeat(64))
        };
        let media = |extra: &str| {
            StackSpec::parse(id(), "x.toml", &pos(extra), None)
                .unwrap()
                .pos
                .unwrap()
        };
        let a = media("version = \"10.1\"\n");
        let m = a.media.as_ref().unwrap();
        assert_eq!(m.kickstart_source, "bootstrap/kickstart/rti.ks");
        assert_eq!(a.image, format!("poscloud/rti:10.1-{}", &m.key[..12]));
        assert_eq!(
            m.key,
            media("version = \"10.1\"\n").media.unwrap().key,
            "stable"
        );
        assert_ne!(m.key, media("version = \"10.2\"\n").media.unwrap().key);
        // A kickstart file next to the stack file; another kickstart is other media.
        let dir = std::env::temp_dir().join(format!("poscloud-ks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("my.ks"), "rootpw --lock\n%packages\n%end\n").unwrap();
        std::fs::write(dir.join("pw.ks"), "rootpw --plaintext florist\n").unwrap();
        let file = dir.join("s.toml").display().to_string();
        let mine = StackSpec::parse(
            id(),
            &file,
            &pos("version = \"10.1\"\nkickstart = \"my.ks\"\n"),
            None,
        )
        .unwrap()
        .pos
        .unwrap();
        assert_ne!(mine.media.unwrap().key, m.key);
        for (extra, key) in [
            (
                "version = \"10.1\"\nkickstart = \"pw.ks\"\n",
                "pos.kickstart",
            ),
            (
                "version = \"10.1\"\nkickstart = \"missing.ks\"\n",
                "pos.kickstart",
            ),
            ("version = \"10.1\"\nimage = \"poscloud/x:1\"\n", "pos"),
            ("", "pos"),
            ("version = \"10.1; rm\"\n", "pos.version"),
            (
                "image = \"poscloud/x:1\"\nkickstart = \"my.ks\"\n",
                "pos.kickstart",
            ),
        ] {
            match StackSpec::parse(id(), &file, &pos(extra), None).unwrap_err() {
                Error::Profile { key: k, reason, .. } => assert_eq!(k, key, "{extra}: {reason}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
        let err = StackSpec::parse(
            id(),
            &file,
            &pos("version = \"1\"\nkickstart = \"pw.ks\"\n"),
            None,
        )
        .unwrap_err();
        assert!(
            !err.to_string().contains("florist"),
            "the password is not echoed: {err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vpn_locations_are_validated_together() {
        let loc = |name: &str, net: &str| {
            format!("\n[[vpn]]\nlocation = \"{name}\"\npeer_ip = \"5.6.7.8\"\npeer_nets = [\"{net}\"]\n")
        };
        let two = format!(
            "{}{}{}",
            BUILTIN[1].1,
            loc("a", "10.1.0.0/16"),
            loc("b", "10.2.0.0/16")
        );
        let s = StackSpec::parse(id(), "x.toml", &two, None).unwrap();
        assert_eq!(s.vpn.len(), 2);
        assert_eq!(s.vpn[0].ike_version, 2);
        for (text, key, why) in [
            (
                format!(
                    "{}{}{}",
                    BUILTIN[1].1,
                    loc("a", "10.1.0.0/16"),
                    loc("a", "10.2.0.0/16")
                ),
                "vpn[1].location",
                "twice",
            ),
            (
                format!(
                    "{}{}{}",
                    BUILTIN[1].1,
                    loc("a", "10.1.0.0/16"),
                    loc("b", "10.1.2.0/24")
                ),
                "vpn[1]",
                "of location a",
            ),
            (
                format!("{}{}", BUILTIN[1].1, loc("a", "192.168.222.0/24")),
                "vpn[0]",
                "POS network",
            ),
        ] {
            match StackSpec::parse(id(), "x.toml", &text, None).unwrap_err() {
                Error::Profile { key: k, reason, .. } => {
                    assert_eq!(k, key, "{reason}");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("surprise = 1\n{}", BUILTIN[1].1);
        let err = StackSpec::parse(id(), "x.toml", &text, None).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }
}
