//! Running the poscloud binary and asserting what it did, as a sentence:
//!
//! ```ignore
//! rig.run(&["status", "--shop", "1234"])
//!     .status(2)
//!     .stderr_has("exactly 8 digits")
//!     .no_aws_call();
//! rig.poscloud(["list"]).env("AWS_PROFILE", "qa").stdin(b"…").run().ok().json();
//! ```
//!
//! Every assertion that fails prints the command line, the environment names it changed
//! (never their values: they may be credentials), the exit code and both streams.

use super::{is_write, Call, Rig};
use std::process::{Output, Stdio};

/// One poscloud run to make against a rig: arguments, environment changes, standard input.
/// Made by [`Rig::poscloud`]; [`Rig::run`] is its short form for arguments only.
pub struct Poscloud<'r> {
    rig: &'r Rig,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    stdin: Option<Vec<u8>>,
}

impl<'r> Poscloud<'r> {
    pub(super) fn new(rig: &'r Rig) -> Poscloud<'r> {
        Poscloud {
            rig,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Sets a variable in poscloud's environment (beside the rig's own, see `Rig::command`).
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.env.push((key.to_string(), Some(value)));
        self
    }

    /// Removes a variable the rig sets (credentials, region, endpoint…).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.to_string(), None));
        self
    }

    /// Sets (Some) or removes (None) each variable.
    pub fn envs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        vars: impl IntoIterator<Item = (K, Option<V>)>,
    ) -> Self {
        for (k, v) in vars {
            self.env
                .push((k.as_ref().to_string(), v.map(|v| v.as_ref().to_string())));
        }
        self
    }

    /// Without the rig's AWS and journal variables, as in a shell that has none: help and
    /// man pages show the values of the variables an option defaults to.
    pub fn no_aws_env(self) -> Self {
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_EC2_METADATA_DISABLED",
            "POSCLOUD_JOURNAL",
        ]
        .into_iter()
        .fold(self, |c, k| c.env_remove(k))
    }

    /// Writes `input` to its standard input, then closes it (else stdin is /dev/null).
    pub fn stdin(mut self, input: &[u8]) -> Self {
        self.stdin = Some(input.to_vec());
        self
    }

    /// The process to start, for a test that drives it itself (a terminal, a signal, a pipe).
    pub fn command(&self) -> std::process::Command {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut c = self.rig.command(&args);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Runs it to its end.
    pub fn run(self) -> Run {
        use std::io::Write;
        let before = self.rig.proxy.calls().len();
        let mut c = self.command();
        let out = match &self.stdin {
            None => c.output().expect("run poscloud"),
            Some(input) => {
                let mut child = c
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run poscloud");
                child.stdin.take().unwrap().write_all(input).unwrap();
                child.wait_with_output().expect("run poscloud")
            }
        };
        self.finish(out, before)
    }

    /// Runs it; the proxy kills it (SIGKILL) right after its n-th write reached the emulator.
    pub fn run_killed_after_write(self, n: usize) -> Run {
        let rig = self.rig;
        let before = rig.proxy.calls().len();
        let child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run poscloud");
        rig.proxy.kill_after_write(n, child.id());
        let out = child.wait_with_output().expect("run poscloud");
        let run = self.finish(out, before);
        rig.proxy.reset();
        run
    }

    fn finish(self, o: Output, calls_before: usize) -> Run {
        use std::os::unix::process::ExitStatusExt;
        let env = self
            .env
            .iter()
            .map(|(k, v)| match v {
                Some(_) => format!("{k}=…"),
                None => format!("-{k}"),
            })
            .collect::<Vec<_>>();
        let command = std::iter::once("poscloud".to_string())
            .chain(self.args.iter().map(|a| {
                if a.is_empty() || a.contains([' ', '\'', '"']) {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            }))
            .collect::<Vec<_>>()
            .join(" ");
        let command = if env.is_empty() {
            command
        } else {
            format!("{command}   (env: {})", env.join(" "))
        };
        Run {
            command,
            code: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            calls: self
                .rig
                .proxy
                .calls()
                .into_iter()
                .skip(calls_before)
                .collect(),
        }
    }
}

/// A finished run: its exit code, both streams and the AWS calls the rig's proxy saw while
/// it ran. The assertions take and give it back, so they chain.
pub struct Run {
    /// The command line as a person would type it (for failure messages).
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The calls the rig's proxy (not another proxy a test started) saw during the run.
    pub calls: Vec<Call>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n$ {}\nexit code {}\n--- stdout\n{}\n--- stderr\n{}\n---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Panics with `what`, the command and both streams.
    #[track_caller]
    pub fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{what}{self:?}")
    }

    /// The exit code is `code`.
    #[track_caller]
    pub fn status(self, code: i32) -> Self {
        if self.code != code {
            self.fail(format_args!("exit code {}, expected {code}", self.code));
        }
        self
    }

    /// Exit code 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        self.status(0)
    }

    #[track_caller]
    pub fn stderr_has(self, want: &str) -> Self {
        if !self.stderr.contains(want) {
            self.fail(format_args!("{want:?} not in stderr"));
        }
        self
    }

    #[track_caller]
    pub fn stderr_lacks(self, unwanted: &str) -> Self {
        if self.stderr.contains(unwanted) {
            self.fail(format_args!("{unwanted:?} in stderr"));
        }
        self
    }

    #[track_caller]
    pub fn stdout_has(self, want: &str) -> Self {
        if !self.stdout.contains(want) {
            self.fail(format_args!("{want:?} not in stdout"));
        }
        self
    }

    #[track_caller]
    pub fn stdout_lacks(self, unwanted: &str) -> Self {
        if self.stdout.contains(unwanted) {
            self.fail(format_args!("{unwanted:?} in stdout"));
        }
        self
    }

    /// The first line of stderr is exactly `want`.
    #[track_caller]
    pub fn stderr_first_line(self, want: &str) -> Self {
        if self.first_line() != want {
            self.fail(format_args!("first stderr line is not {want:?}"));
        }
        self
    }

    /// The first line of stderr (empty if none).
    pub fn first_line(&self) -> &str {
        self.stderr.lines().next().unwrap_or("")
    }

    /// The run made no AWS call at all (bad input is refused before the first).
    #[track_caller]
    pub fn no_aws_call(self) -> Self {
        if !self.calls.is_empty() {
            let actions: Vec<&str> = self.calls.iter().map(|c| c.action.as_str()).collect();
            self.fail(format_args!("AWS was called: {actions:?}"));
        }
        self
    }

    /// The run sent no write to AWS (reads are allowed).
    #[track_caller]
    pub fn no_aws_write(self) -> Self {
        let writes = self.writes();
        if !writes.is_empty() {
            self.fail(format_args!("AWS writes: {writes:?}"));
        }
        self
    }

    /// The write actions of the run (refused ones included, as `Proxy::writes`).
    pub fn writes(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| is_write(&c.action))
            .map(|c| c.action.clone())
            .collect()
    }

    /// Stdout as the one JSON document it must be.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(format_args!("stdout is not one JSON document ({e})")))
    }
}
