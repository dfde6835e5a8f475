//! POS applications as data: each one an app file (format: docs/apps.md). rti and daisy are
//! built in (stacks/apps/, compiled in); an `apps/NAME.toml` beside a stack file adds an app,
//! so a third application is a file, not code. Scripts get the app's values as inputs.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// The built-in apps: name and app file.
const BUILT_IN: &[(&str, &str)] = &[
    ("rti", include_str!("../../stacks/apps/rti.toml")),
    ("daisy", include_str!("../../stacks/apps/daisy.toml")),
];

/// The kickstarts the built-in app files name (by the path they give, relative to
/// stacks/apps/), compiled in with them.
const BUILT_IN_KICKSTARTS: &[(&str, &str)] = &[
    (
        "../../bootstrap/kickstart/rti.ks",
        include_str!("../../bootstrap/kickstart/rti.ks"),
    ),
    (
        "../../bootstrap/kickstart/daisy.ks",
        include_str!("../../bootstrap/kickstart/daisy.ks"),
    ),
];

/// A POS application.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The app file's name without `.toml`: `[pos] app`, `--app`, labels, image names.
    pub name: String,
    pub description: String,
    /// Where the kickstart came from (for messages) and its text.
    pub kickstart_source: String,
    pub kickstart: String,
    /// Where the host's data directory is mounted in the POS container.
    pub mount_point: String,
    /// The container's health command (run by `ready`).
    pub health_check: String,
    /// Its init services on the shop's physical server.
    pub services: Vec<String>,
    /// Cutover defaults for the physical server.
    pub cutover: AppCutover,
    /// How a backup gets a consistent copy of the data.
    pub consistency: Consistency,
}

/// How the backup job gets a consistent copy of the app's data (the app file's `[backup]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Consistency {
    /// The POS container is stopped while the archive is made (seconds for a florist's data).
    Stop,
    /// The app's own quiesce command runs in the container before, its resume command after.
    Command { quiesce: String, resume: String },
}

/// How cutover handles the app on the physical server when the stack's `[cutover]` does not
/// say.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCutover {
    pub data_dir: String,
    pub stop: String,
    pub start: String,
    pub check: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    description: String,
    kickstart: String,
    mount_point: String,
    health_check: String,
    #[serde(default)]
    services: Vec<String>,
    cutover: RawCutover,
    #[serde(default)]
    backup: RawAppBackup,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppBackup {
    /// "stop" (the default) or "command" (with quiesce and resume).
    consistency: Option<String>,
    quiesce: Option<String>,
    resume: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCutover {
    data_dir: String,
    stop: Option<String>,
    start: Option<String>,
    check: Option<String>,
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Shown as its name (plans, JSON output), as `[pos] app` was.
impl serde::Serialize for App {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// App names: what scripts, labels and image names accept.
pub fn name_ok(name: &str) -> bool {
    name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An absolute path of plain characters, not `/`, without `..`.
fn path_ok(p: &str) -> bool {
    p.starts_with('/')
        && p != "/"
        && !p.split('/').any(|c| c == "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.+-".contains(&b))
}

fn one_line(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains(['\n', '\0'])
}

impl App {
    /// Reads an app file. `kickstart` resolves the path the file names to (source, text).
    fn parse(
        name: &str,
        file: &str,
        text: &str,
        kickstart: impl Fn(&str) -> std::result::Result<(String, String), String>,
    ) -> Result<App> {
        let bad = |key: &str, reason: String| Error::Profile {
            file: file.to_string(),
            key: key.to_string(),
            reason,
        };
        if !name_ok(name) {
            return Err(bad(
                "name",
                format!("{name:?}: an app's file name is lowercase letters, digits and - (at most 31, starting with a letter)"),
            ));
        }
        let raw: RawApp = toml::from_str(text).map_err(|e| Error::Profile {
            file: file.to_string(),
            key: "app".into(),
            reason: e.message().to_string(),
        })?;
        if !path_ok(&raw.mount_point) {
            return Err(bad(
                "mount_point",
                format!(
                    "{:?}: an absolute path (letters, digits, /_.+-) without .., not /",
                    raw.mount_point
                ),
            ));
        }
        if !path_ok(&raw.cutover.data_dir) {
            return Err(bad(
                "cutover.data_dir",
                format!(
                    "{:?}: an absolute path (letters, digits, /_.+-) without .., not /",
                    raw.cutover.data_dir
                ),
            ));
        }
        if !one_line(&raw.health_check) {
            return Err(bad(
                "health_check",
                "must be a one-line shell command".into(),
            ));
        }
        if let Some(s) = raw.services.iter().find(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b))
        }) {
            return Err(bad("services", format!("{s:?} is not a service name")));
        }
        let service_cmd = |key: &str, given: Option<String>, verb: &str| -> Result<String> {
            let cmd = match given {
                Some(c) => c,
                None if raw.services.is_empty() => {
                    return Err(bad(
                        &format!("cutover.{key}"),
                        "give it, or `services` to default it to `service S {verb}`".into(),
                    ))
                }
                None => raw
                    .services
                    .iter()
                    .map(|s| format!("service {s} {verb}"))
                    .collect::<Vec<_>>()
                    .join(" && "),
            };
            if one_line(&cmd) {
                Ok(cmd)
            } else {
                Err(bad(
                    &format!("cutover.{key}"),
                    "must be a one-line shell command".into(),
                ))
            }
        };
        let cutover = AppCutover {
            data_dir: raw.cutover.data_dir.clone(),
            stop: service_cmd("stop", raw.cutover.stop, "stop")?,
            start: service_cmd("start", raw.cutover.start, "start")?,
            check: service_cmd("check", raw.cutover.check, "status")?,
        };
        let b = raw.backup;
        let consistency = match (b.consistency.as_deref(), b.quiesce, b.resume) {
            (None | Some("stop"), None, None) => Consistency::Stop,
            (Some("command"), Some(q), Some(r)) if one_line(&q) && one_line(&r) => {
                Consistency::Command { quiesce: q, resume: r }
            }
            (Some("command"), ..) => {
                return Err(bad(
                    "backup",
                    "consistency = \"command\" needs quiesce and resume, each a one-line shell command run in the POS container".into(),
                ))
            }
            (None | Some("stop"), ..) => {
                return Err(bad(
                    "backup",
                    "quiesce and resume are for consistency = \"command\"".into(),
                ))
            }
            (Some(other), ..) => {
                return Err(bad(
                    "backup.consistency",
                    format!("{other:?}: \"stop\" (the POS stopped while the archive is made) or \"command\""),
                ))
            }
        };
        let (kickstart_source, kickstart) =
            kickstart(&raw.kickstart).map_err(|r| bad("kickstart", r))?;
        Ok(App {
            name: name.to_string(),
            description: raw.description,
            kickstart_source,
            kickstart,
            mount_point: raw.mount_point,
            health_check: raw.health_check,
            services: raw.services,
            cutover,
            consistency,
        })
    }

    /// The host directory that holds the app's data (mounted at `mount_point`); never deleted.
    pub fn data_dir(&self) -> String {
        format!("/var/lib/poscloud/data/{}", self.name)
    }
}

fn built_in(name: &str, text: &str) -> App {
    App::parse(name, &format!("stacks/apps/{name}.toml"), text, |k| {
        BUILT_IN_KICKSTARTS
            .iter()
            .find(|(p, _)| *p == k)
            .map(|(p, t)| (p.trim_start_matches("../../").to_string(), t.to_string()))
            .ok_or_else(|| format!("{k:?} is not a kickstart compiled into poscloud"))
    })
    .unwrap_or_else(|e| panic!("built-in app {name}: {e}"))
}

/// The apps a stack may name.
#[derive(Debug, Clone)]
pub struct Apps(Vec<App>);

impl Apps {
    /// The built-in apps only.
    pub fn built_in() -> Apps {
        Apps(BUILT_IN.iter().map(|(n, t)| built_in(n, t)).collect())
    }

    /// The built-in apps and every `apps/*.toml` in `dir` (beside a stack file). A file of a
    /// built-in app's name must be that app's own file (stacks/apps/ holds them).
    pub fn load(dir: &Path) -> Result<Apps> {
        let mut apps = Apps::built_in();
        let apps_dir = dir.join("apps");
        let Ok(entries) = std::fs::read_dir(&apps_dir) else {
            return Ok(apps);
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for path in files {
            let file = path.display().to_string();
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::usage(format!("cannot read app file {file}: {e}")))?;
            if let Some((_, builtin)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
                if text != *builtin {
                    return Err(Error::Profile {
                        file,
                        key: "name".into(),
                        reason: format!("{name} is a built-in app: name yours differently (the built-in ones are compiled in from stacks/apps/)"),
                    });
                }
                continue;
            }
            let base = path.parent().unwrap_or(Path::new("."));
            let app = App::parse(&name, &file, &text, |k| {
                let p = base.join(k);
                std::fs::read_to_string(&p)
                    .map(|t| (p.display().to_string(), t))
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))
            })?;
            apps.0.push(app);
        }
        Ok(apps)
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|a| a.name.as_str()).collect()
    }

    pub fn find(&self, name: &str) -> Option<&App> {
        self.0.iter().find(|a| a.name == name)
    }

    /// The app named `name`; a usage error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&App> {
        self.find(name)
            .ok_or_else(|| Error::usage(self.unknown(name)))
    }

    /// Why `name` is not an app: the known ones, and how to add one.
    pub fn unknown(&self, name: &str) -> String {
        format!(
            "unknown POS app {name:?}: use {} (or add apps/{name}.toml beside the stack file, see docs/apps.md)",
            self.names().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_apps_keep_what_was_code() {
        let apps = Apps::built_in();
        assert_eq!(apps.names(), ["rti", "daisy"]);
        let rti = apps.get("rti").unwrap();
        assert_eq!(
            (rti.mount_point.as_str(), rti.cutover.data_dir.as_str()),
            ("/usr2", "/usr2")
        );
        assert_eq!(rti.cutover.stop, "service rti stop");
        assert_eq!(rti.cutover.check, "service rti status");
        assert_eq!(rti.kickstart_source, "bootstrap/kickstart/rti.ks");
        assert_eq!(rti.data_dir(), "/var/lib/poscloud/data/rti");
        let daisy = apps.get("daisy").unwrap();
        assert_eq!(
            (daisy.mount_point.as_str(), daisy.cutover.data_dir.as_str()),
            ("/d", "/d")
        );
        assert_eq!(daisy.cutover.start, "service daisy start");
        let e = apps.get("sap").unwrap_err().to_string();
        assert!(e.contains("\"sap\"") && e.contains("rti, daisy"), "{e}");
    }

    #[test]
    fn an_app_file_beside_the_stack_adds_an_app() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("apps")).unwrap();
        std::fs::write(d.path().join("apps/sap.ks"), "rootpw --lock\n").unwrap();
        let file = "description = \"SAP\"\nkickstart = \"sap.ks\"\nmount_point = \"/sap\"\nhealth_check = \"true\"\nservices = [\"sapd\", \"saplog\"]\n[cutover]\ndata_dir = \"/opt/sap\"\ncheck = \"pgrep sapd\"\n";
        std::fs::write(d.path().join("apps/sap.toml"), file).unwrap();
        // The repo's own copies of the built-in ones are allowed beside it.
        std::fs::write(d.path().join("apps/rti.toml"), BUILT_IN[0].1).unwrap();
        let apps = Apps::load(d.path()).unwrap();
        assert_eq!(apps.names(), ["rti", "daisy", "sap"]);
        let sap = apps.get("sap").unwrap();
        assert_eq!(sap.kickstart, "rootpw --lock\n");
        assert_eq!(sap.cutover.stop, "service sapd stop && service saplog stop");
        assert_eq!(sap.cutover.check, "pgrep sapd");

        // A changed built-in, a bad value, a missing kickstart: the file and key named.
        std::fs::write(d.path().join("apps/rti.toml"), "description = \"mine\"\n").unwrap();
        let e = Apps::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("rti.toml") && e.contains("built-in"), "{e}");
        std::fs::remove_file(d.path().join("apps/rti.toml")).unwrap();
        for (from, to, key) in [
            ("\"/sap\"", "\"sap\"", "mount_point"),
            ("\"/sap\"", "\"/a/../b\"", "mount_point"),
            ("sap.ks", "none.ks", "kickstart"),
            ("\"true\"", "\"a\\nb\"", "health_check"),
            ("\"sapd\",", "\"sap d\",", "services"),
            ("mount_point", "mountpoint", "app"),
        ] {
            std::fs::write(d.path().join("apps/sap.toml"), file.replace(from, to)).unwrap();
            match Apps::load(d.path()).unwrap_err() {
                Error::Profile {
                    key: k, file: f, ..
                } => {
                    assert_eq!(k, key, "{from} → {to}");
                    assert!(f.ends_with("sap.toml"), "{f}");
                }
                e => panic!("{from} → {to}: {e}"),
            }
        }
    }
}
