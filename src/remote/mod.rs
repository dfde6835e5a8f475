//! Runs a script of `bootstrap/` on a host, with named inputs, through SSH or SSM Run
//! Command. Both transports send the same payload to the same runner, so scripts do not
//! know which one runs them.
//!
//! Inputs travel as data, never as script text: a NUL-separated `NAME=value` list that the
//! runner exports with `export "$kv"` (no shell parsing of values), next to the script,
//! both gzip-compressed and base64-encoded. Inputs are not secret by design: secrets are
//! read on the host from SSM by the instance role.

pub mod results;
pub mod ssh;
pub mod ssm;

use crate::error::{Error, Result};
use base64::Engine;
use std::time::Duration;

/// A script shipped with poscloud (from `bootstrap/`). A variant, not a name: a script that
/// does not exist does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Bootstrap,
    PutFile,
    Pos,
    Restore,
    Build,
    Vpn,
    Cutover,
    State,
    Backup,
}

/// Every script's body starts with `bootstrap/lib.sh` (the helpers all scripts share), then
/// the script's own parts (pos-net.sh for pos.sh, …), then the script, so the host needs
/// nothing installed and a script copied to the host (pos.sh's eth1 hook, vpn.sh) carries
/// its helpers with it.
macro_rules! with_lib {
    ($($file:literal),+) => {
        concat!(
            include_str!("../../bootstrap/lib.sh"),
            $(include_str!(concat!("../../bootstrap/", $file))),+
        )
    };
}

impl Script {
    pub const ALL: [Script; 9] = [
        Script::Bootstrap,
        Script::PutFile,
        Script::Pos,
        Script::Restore,
        Script::Build,
        Script::Vpn,
        Script::Cutover,
        Script::State,
        Script::Backup,
    ];

    /// The file name in `bootstrap/`: the runner's lock and the journal name runs by it.
    pub const fn name(self) -> &'static str {
        match self {
            Script::Bootstrap => "bootstrap.sh",
            Script::PutFile => "put-file.sh",
            Script::Pos => "pos.sh",
            Script::Restore => "restore.sh",
            Script::Build => "build.sh",
            Script::Vpn => "vpn.sh",
            Script::Cutover => "cutover.sh",
            Script::State => "state.sh",
            Script::Backup => "backup.sh",
        }
    }

    /// What the host runs: lib.sh, then the script (compiled in: the binary is all an
    /// operator needs).
    pub const fn body(self) -> &'static str {
        match self {
            Script::Bootstrap => with_lib!("bootstrap.sh"),
            Script::PutFile => with_lib!("put-file.sh"),
            Script::Pos => with_lib!("pos-net.sh", "pos-image.sh", "pos.sh"),
            Script::Restore => with_lib!("restore-manifest.sh", "restore-archive.sh", "restore.sh"),
            Script::Build => with_lib!("build.sh"),
            Script::Vpn => with_lib!("vpn-charon.sh", "aws-py.sh", "vpn-ssm.sh", "vpn.sh"),
            Script::Cutover => with_lib!("cutover.sh"),
            Script::State => with_lib!("state.sh"),
            Script::Backup => with_lib!("aws-py.sh", "backup.sh"),
        }
    }
}

/// What the transports run: a name (for the runner's lock and the SSM comment) and a bash
/// body. Shipped scripts are `Script`s; tests run programs of their own.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub body: &'static str,
}

impl From<Script> for Program {
    fn from(s: Script) -> Program {
        Program {
            name: s.name(),
            body: s.body(),
        }
    }
}

impl From<&Script> for Program {
    fn from(s: &Script) -> Program {
        (*s).into()
    }
}

impl From<&Program> for Program {
    fn from(p: &Program) -> Program {
        *p
    }
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
pub fn payload(script: &Program, inputs: &Inputs) -> String {
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
                Script::PutFile,
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
        script: impl Into<Program>,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
    ) -> Result<Outcome> {
        let program = script.into();
        match self {
            Remote::Ssh(t) => t.run(&program, inputs, timeout, sink).await,
            Remote::Ssm(t) => t.run(&program, inputs, timeout, sink).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions a bash text defines (`name() {` at the start of a line).
    fn functions(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.split_once("() {").map(|(n, _)| n))
            .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .collect()
    }

    #[test]
    fn every_script_carries_lib_sh_and_copies_none_of_its_helpers() {
        let lib = include_str!("../../bootstrap/lib.sh");
        let shared = functions(lib);
        for helper in ["json", "container_pid", "die", "bad", "fail", "say"] {
            assert!(shared.contains(&helper), "lib.sh defines {helper}");
        }
        // A part two scripts are sent with (aws-py.sh) is shared like lib.sh, not a copy.
        let parts = functions(include_str!("../../bootstrap/aws-py.sh"));
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for s in Script::ALL {
            let own = s
                .body()
                .strip_prefix(lib)
                .unwrap_or_else(|| panic!("{} is sent after lib.sh", s.name()));
            for f in functions(own) {
                assert!(
                    !shared.contains(&f),
                    "{} defines lib.sh's {f} again",
                    s.name()
                );
                if parts.contains(&f) {
                    continue;
                }
                if let Some((other, _)) = seen.iter().find(|(_, g)| *g == f) {
                    panic!("{f} is defined in {other} and {}", s.name());
                }
                seen.push((s.name(), f));
            }
        }
    }

    #[test]
    fn no_file_of_bootstrap_is_over_about_400_lines() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bootstrap");
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "sh") {
                let n = std::fs::read_to_string(&path).unwrap().lines().count();
                assert!(n <= 400, "{}: {n} lines", path.display());
            }
        }
    }
}
