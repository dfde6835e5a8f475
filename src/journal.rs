//! The run journal: JSON lines appended per event (start, each write, end). Audit trail and
//! input for later reports. Never holds secrets: only operation names and resource ids.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// The AWS account, region and credentials a run works in: in every journal line (an MSP
/// engineer switches between customers' accounts) and in every header and summary.
#[derive(Debug, Clone)]
pub struct Whereabouts {
    pub region: String,
    /// "profile floris", "environment credentials", …
    pub credentials: String,
    /// Known after the first STS call (discovery makes it, before any write).
    pub account: Arc<OnceLock<String>>,
}

impl std::fmt::Display for Whereabouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.account.get() {
            Some(a) => write!(f, "account {a} ({}), {}", self.credentials, self.region),
            None => write!(f, "{} ({})", self.region, self.credentials),
        }
    }
}

pub struct Journal {
    file: Option<Mutex<File>>,
    at: OnceLock<Whereabouts>,
    path: Option<PathBuf>,
    run: String,
    user: String,
    host: String,
    command: String,
}

/// $POSCLOUD_JOURNAL, else $XDG_STATE_HOME/poscloud/journal.jsonl, else ~/.local/state/….
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("poscloud").join("journal.jsonl"))
}

pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // No login variables (cron, systemd): name the numeric uid.
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|l| l.split_whitespace().next().map(|u| format!("uid {u}")))
                })
                .unwrap_or_else(|| "unknown".into())
        })
}

pub fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Now, as records keep it (to the second).
pub fn now() -> crate::time::Time {
    crate::time::Time::now()
}

impl Journal {
    /// Opens (creating) the journal for appending. Fails before any AWS call if it cannot.
    pub fn open(path: Option<&Path>, command: &str) -> Result<Journal> {
        let path = path.map(Path::to_path_buf).or_else(default_path);
        let file = match &path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::usage(format!(
                            "cannot create journal directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        Error::usage(format!(
                            "cannot open journal {}: {e} (choose another with --journal)",
                            p.display()
                        ))
                    })?;
                Some(Mutex::new(f))
            }
            None => None,
        };
        let run = format!(
            "{}-{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            std::process::id()
        );
        Ok(Journal {
            file,
            at: OnceLock::new(),
            path,
            run,
            user: local_user(),
            host: local_host(),
            command: command.to_string(),
        })
    }

    /// A journal that records nothing (for commands that never write, like `man`).
    pub fn none() -> Journal {
        Journal {
            file: None,
            at: OnceLock::new(),
            path: None,
            run: String::new(),
            user: local_user(),
            host: local_host(),
            command: String::new(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    /// Where the run works (set once, when it connects to AWS).
    pub fn set_whereabouts(&self, at: Whereabouts) {
        let _ = self.at.set(at);
    }

    pub fn event(&self, event: &str, fields: Value) {
        let Some(file) = &self.file else { return };
        let mut line = json!({
            // Milliseconds: the calls of one step are apart by less than a second.
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "run": self.run,
            "user": self.user,
            "host": self.host,
            "command": self.command,
            "event": event,
        });
        if let (Some(at), Value::Object(l)) = (self.at.get(), &mut line) {
            l.insert("region".into(), json!(at.region));
            l.insert("credentials".into(), json!(at.credentials));
            if let Some(a) = at.account.get() {
                l.insert("account".into(), json!(a));
            }
        }
        if let (Value::Object(l), Value::Object(f)) = (&mut line, fields) {
            l.extend(f);
        }
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        // The audit trail must not stop the run; a failed append is reported once per line.
        if let Err(e) = writeln!(f, "{line}") {
            tracing::warn!("journal write failed: {e}");
        }
    }

    pub fn write(&self, op: &str, resource: &str, result: &str) {
        self.event(
            "write",
            json!({"op": op, "resource": resource, "result": result}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_milliseconds_and_old_lines_still_read() {
        let dir = std::env::temp_dir().join(format!("poscloud-journal-{}", std::process::id()));
        let path = dir.join("journal.jsonl");
        let j = Journal::open(Some(&path), "provision --shop 12345678 --env qa").unwrap();
        j.write("CreateVpc", "vpc-1", "ok");
        // A line of an earlier poscloud, in whole seconds.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        writeln!(f, "{}", json!({"time": "2026-11-30T10:00:00Z", "run": "1-1", "user": "u", "host": "h", "command": "provision --shop 12345678 --env qa", "event": "write", "op": "CreateSubnet", "resource": "subnet-1", "result": "ok"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let time = line["time"].as_str().unwrap();
        // 2026-12-01T18:40:01.123Z
        assert_eq!(
            (time.len(), &time[19..20], &time[23..]),
            (24, ".", "Z"),
            "{time}"
        );
        let (writes, skipped) = crate::report::read_journal(Some(&path)).unwrap();
        assert_eq!((writes.len(), skipped), (2, 0));
        assert_eq!(
            writes[0].op, "CreateSubnet",
            "the old line, read and sorted first"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
