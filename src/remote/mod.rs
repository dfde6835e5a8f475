//! Runs a script of `bootstrap/` on a host, with named inputs, through SSH or SSM Run
//! Command. Both transports send the same payload to the same runner, so scripts do not
//! know which one runs them.
//!
//! Inputs travel as data, never as script text: a NUL-separated `NAME=value` list that the
//! runner exports with `export "$kv"` (no shell parsing of values), next to the script,
//! both gzip-compressed and base64-encoded. Inputs are not secret by design: secrets are
//! read on the host from SSM by the instance role.

pub mod ssh;
pub mod ssm;

use crate::error::{Error, Result};
use base64::Engine;
use std::time::Duration;

/// A script shipped with poscloud (from `bootstrap/`).
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub name: &'static str,
    pub body: &'static str,
}

/// Scripts are compiled in, so the binary is all an operator needs.
pub const SCRIPTS: &[Script] = &[
    Script {
        name: "bootstrap.sh",
        body: include_str!("../../bootstrap/bootstrap.sh"),
    },
    Script {
        name: "put-file.sh",
        body: include_str!("../../bootstrap/put-file.sh"),
    },
    Script {
        name: "pos.sh",
        body: include_str!("../../bootstrap/pos.sh"),
    },
    Script {
        name: "restore.sh",
        body: include_str!("../../bootstrap/restore.sh"),
    },
    Script {
        name: "build.sh",
        body: include_str!("../../bootstrap/build.sh"),
    },
    Script {
        name: "vpn.sh",
        body: include_str!("../../bootstrap/vpn.sh"),
    },
    Script {
        name: "cutover.sh",
        body: include_str!("../../bootstrap/cutover.sh"),
    },
    Script {
        name: "state.sh",
        body: include_str!("../../bootstrap/state.sh"),
    },
];

pub fn script(name: &str) -> Script {
    *SCRIPTS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no script {name} in bootstrap/"))
}

/// Named inputs, passed to the script as environment variables.
#[derive(Debug, Clone, Default)]
pub struct Inputs(Vec<(String, String)>);

impl Inputs {
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Names are shell variable names in capitals; values may hold anything but NUL.
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Result<Inputs> {
        let value = value.into();
        let name_ok = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(Error::usage(format!("bad script input name {name:?}")));
        }
        if value.contains('\0') {
            return Err(Error::usage(format!("input {name} contains a NUL byte")));
        }
        self.0.push((name.to_string(), value));
        Ok(self)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
}

/// The fixed program that runs on the host. It reads three lines from stdin: the script's
/// name (`-` for a run that only reads: no lock), its inputs and its body (both gzip, then base64: the SSM command stays small), takes
/// the script's lock, exports the inputs as data, runs the script with bash and returns its
/// exit code. The lock makes one copy of a script at a time on a host: the re-run after an
/// interrupted poscloud (its SSM command goes on) or a SendCommand the SDK sent twice waits
/// for the first copy to end instead of running beside it. The script does not inherit the
/// lock's descriptor, so a daemon it starts (charon) cannot hold the lock.
pub const RUNNER: &str = r#"set -u
d=$(mktemp -d) || exit 125
trap 'rm -rf "$d"' EXIT
IFS= read -r name || exit 125
IFS= read -r inputs || exit 125
IFS= read -r script || exit 125
case $name in '' | *[!a-z0-9.-]*) echo "poscloud runner: bad script name" >&2; exit 125 ;; esac
printf '%s' "$inputs" | base64 -d | gzip -dc >"$d/inputs" || exit 125
printf '%s' "$script" | base64 -d | gzip -dc >"$d/script" || exit 125
if [ "$name" != - ]; then
  locks=${POSCLOUD_ROOT:-}/run/lock
  mkdir -p "$locks" && exec 9>"$locks/poscloud-$name.lock" || exit 125
  if ! flock -n 9; then
    echo "poscloud: $name already runs on this host (an earlier run); waiting for it to end" >&2
    flock 9 || exit 125
  fi
fi
rc=0
(
  while IFS= read -r -d '' kv; do export "${kv?}"; done <"$d/inputs"
  cd / && exec bash "$d/script" </dev/null 9>&-
) || rc=$?
exit "$rc"
"#;

fn gzip_base64(data: &[u8]) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).expect("gzip to memory");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip to memory"))
}

/// Script actions that only read. They take no lock, so that `pos status` answers while a
/// stage runs instead of waiting behind it (and timing out over SSM).
const READ_ONLY_ACTIONS: &[&str] = &[
    "status",
    "images",
    "ready",
    "get",
    "holder",
    "holder-pid",
    "src-facts",
    "cloud-facts",
    "manifest",
];

/// The runner's stdin: the lock's name (the script's, `-` for a read-only action), its
/// inputs and its body.
pub fn payload(script: &Script, inputs: &Inputs) -> String {
    let read_only = inputs
        .0
        .iter()
        .any(|(k, v)| k == "ACTION" && READ_ONLY_ACTIONS.contains(&v.as_str()));
    format!(
        "{}\n{}\n{}\n",
        if read_only { "-" } else { script.name },
        gzip_base64(&inputs.encode()),
        gzip_base64(script.body.as_bytes())
    )
}

// Where a script's output goes live: defined with the UI that shows it.
pub use crate::ui::{no_sink, Sink, Stream};

#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The JSON a script printed on a line starting with `POSCLOUD_RESULT `.
    pub fn result(&self) -> Option<serde_json::Value> {
        self.stdout_text()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("POSCLOUD_RESULT "))
            .and_then(|j| serde_json::from_str(j).ok())
    }
}

/// Where and how to run scripts on one host.
pub enum Remote<'a> {
    Ssh(ssh::SshTarget),
    Ssm(ssm::SsmTarget<'a>),
}

impl Remote<'_> {
    pub fn describe(&self) -> String {
        match self {
            Remote::Ssh(t) => format!("ssh://{}@{}:{}", t.user, t.host, t.port),
            Remote::Ssm(t) => format!("ssm://{}", t.instance_id),
        }
    }

    /// Waits until the host accepts work (SSH connects / SSM agent online).
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        match self {
            Remote::Ssh(t) => t.wait_ready(within).await,
            Remote::Ssm(t) => t.wait_ready(within).await,
        }
    }

    /// Puts a file on the host (atomically, with `mode`), through either transport. The
    /// content travels as an input, so keep it under ~96 KB (one environment variable).
    pub async fn put_file(&self, dest: &str, mode: &str, content: &[u8]) -> Result<()> {
        let inputs = Inputs::new().set("DEST", dest)?.set("MODE", mode)?.set(
            "CONTENT_B64",
            base64::engine::general_purpose::STANDARD.encode(content),
        )?;
        let out = self
            .run(
                &script("put-file.sh"),
                &inputs,
                Duration::from_secs(120),
                no_sink(),
            )
            .await?;
        if out.exit_code != 0 {
            return Err(Error::failed(format!(
                "could not put {dest} on {}: {}",
                self.describe(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Runs `script` with `inputs`; output goes to `sink` as it arrives and is returned.
    pub async fn run(
        &self,
        script: &Script,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
    ) -> Result<Outcome> {
        match self {
            Remote::Ssh(t) => t.run(script, inputs, timeout, sink).await,
            Remote::Ssm(t) => t.run(script, inputs, timeout, sink).await,
        }
    }
}
