//! What the user sees: progress and messages on stderr, results on stdout.
//! With `--output json` nothing but the one JSON document is printed (errors aside).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the lines from below the commands go: the AWS layer's retries and waits ("EC2
/// RunInstances: throttled (HTTP 503), retrying (attempt 2 of 8)"). Each `Aws` is given one
/// by whoever makes it (a `Ui`'s, see `Ui::notify`); the default logs them.
#[derive(Clone)]
pub struct Notify(Arc<dyn Fn(&str) + Send + Sync>);

impl Notify {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Notify {
        Notify(Arc::new(f))
    }

    pub fn note(&self, msg: impl AsRef<str>) {
        (self.0)(msg.as_ref())
    }

    /// The same, each line headed by `prefix` (a batch's shop: "84000003 (qa): ").
    pub fn prefixed(&self, prefix: impl Into<String>) -> Notify {
        let (inner, prefix) = (self.clone(), prefix.into());
        Notify::new(move |msg| inner.note(format!("{prefix}{msg}")))
    }
}

impl Default for Notify {
    fn default() -> Notify {
        Notify::new(|msg| tracing::info!("{msg}"))
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

/// Writes to stdout. A closed pipe (`poscloud … | head -3`) or a full disk must never stop
/// a run half-way (its lock, its journal): the write is dropped, the run goes on.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// One line to stderr, dropped if stderr is gone (see `out`).
pub fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Asks on stderr and reads a line from stdin; None without a terminal to ask at.
pub fn ask(prompt: &str) -> Option<String> {
    use std::io::BufRead;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{prompt}").and_then(|()| err.flush());
    drop(err);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

/// Which of a remote script's output streams a chunk is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives a remote script's output as it arrives (for live display); may be called from
/// another thread. (`remote` runs the scripts; the UI makes the sinks: `Ui::remote_sink`.)
pub type Sink = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

pub fn no_sink() -> Sink {
    Arc::new(|_, _| {})
}

#[derive(Clone)]
pub struct Ui {
    pub json: bool,
    quiet: bool,
    color: bool,
    tty: bool,
    notes: Notify,
}

impl Ui {
    pub fn new(json: bool, quiet: bool) -> Ui {
        let tty = std::io::stderr().is_terminal();
        let ui = Ui {
            json,
            quiet,
            color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            tty,
            notes: Notify::default(),
        };
        // Shown on stderr like progress; in JSON or quiet mode only in the debug log.
        let notes = if ui.chatty() {
            Notify::new(move |msg| {
                // On a terminal, clear a spinner's line first; the spinner redraws below.
                let clear = if tty { "\r\x1b[2K" } else { "" };
                err_line(&format!("{clear}  ↻ {msg}"));
            })
        } else {
            Notify::new(|msg| tracing::debug!("{msg}"))
        };
        Ui { notes, ..ui }
    }

    /// Where this UI shows notes from below the commands: for the `Aws` it works with.
    pub fn notify(&self) -> Notify {
        self.notes.clone()
    }

    /// This UI with its notes sent to `notes` (a batch's quiet run: to the batch's UI).
    pub fn with_notes(self, notes: Notify) -> Ui {
        Ui { notes, ..self }
    }

    /// The run's error: `error: <message>\n  next: <step>` on stderr and, with `--output
    /// json`, the error document on stdout: `{"error", "kind", "next", "exit_code"}` (none
    /// when the printed result already says what failed).
    pub fn run_failed(&self, e: &crate::error::Error, exit_code: i32) {
        if self.json && !matches!(e, crate::error::Error::Reported(_)) {
            out(&format!("{}\n", e.to_json(exit_code)));
        }
        err_line(&format!("error: {e}"));
    }

    fn chatty(&self) -> bool {
        !self.json && !self.quiet
    }

    /// A line of progress on stderr.
    pub fn info(&self, msg: impl AsRef<str>) {
        if self.chatty() {
            err_line(msg.as_ref());
        }
    }

    /// A warning on stderr (shown even with -q, not in JSON mode).
    pub fn warn(&self, msg: impl AsRef<str>) {
        if !self.json {
            err_line(&format!(
                "{} {}",
                self.paint("33", "warning:"),
                msg.as_ref()
            ));
        }
    }

    /// An error line on stderr (shown even with -q, not in JSON mode): a part of the run
    /// failed and the run goes on (a shop of a batch).
    pub fn error(&self, msg: impl AsRef<str>) {
        if !self.json {
            err_line(&format!("{} {}", self.paint("31", "error:"), msg.as_ref()));
        }
    }

    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// A sink that shows a remote script's output live, line by line, indented under the
    /// current step (nothing in JSON or quiet mode).
    pub fn remote_sink(&self) -> Sink {
        use std::sync::Mutex;
        let show = self.chatty();
        let pending: Arc<Mutex<[Vec<u8>; 2]>> = Arc::default();
        Arc::new(move |stream: Stream, bytes: &[u8]| {
            if !show {
                return;
            }
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            let buf = &mut p[if stream == Stream::Stdout { 0 } else { 1 }];
            buf.extend_from_slice(bytes);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                // The result line is for poscloud; the step's own line says what it means.
                if !line.starts_with(b"POSCLOUD_RESULT ") {
                    let _ = write!(
                        std::io::stderr().lock(),
                        "    │ {}",
                        String::from_utf8_lossy(&line)
                    );
                }
            }
        })
    }

    /// A step that runs beside others: no spinner (several would garble one terminal),
    /// only its line when it ends.
    pub fn step_plain(&self, label: impl Into<String>) -> Step {
        Step {
            ui: self.clone(),
            label: label.into(),
            start: Instant::now(),
            bar: None,
        }
    }

    /// Starts a step: a spinner with elapsed time while it runs (on a terminal).
    pub fn step(&self, label: impl Into<String>) -> Step {
        let label = label.into();
        let bar = if self.chatty() && self.tty {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            b.set_message(label.clone());
            b.enable_steady_tick(Duration::from_millis(120));
            Some(b)
        } else {
            None
        };
        Step {
            ui: self.clone(),
            label,
            start: Instant::now(),
            bar,
        }
    }
}

pub struct Step {
    ui: Ui,
    label: String,
    start: Instant,
    bar: Option<ProgressBar>,
}

impl Step {
    fn end(self, mark: String, detail: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.ui.chatty() {
            let took = duration(self.start.elapsed());
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" {detail}")
            };
            err_line(&format!("{mark} {}{detail} ({took})", self.label));
        }
    }

    pub fn done(self, detail: &str) {
        let mark = self.ui.paint("32", "✓");
        self.end(mark, detail);
    }

    /// Ends the spinner without a line (the error that follows says what failed).
    pub fn fail_silently(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    pub fn failed(self) {
        let mark = self.ui.paint("31", "✗");
        self.end(mark, "failed");
    }
}

/// A step's or a call's time: `12ms`, `1.234s`, `2m03s`.
pub fn duration(d: Duration) -> String {
    match d.as_millis() {
        ms @ 0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.3}s", d.as_secs_f64()),
        _ => format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60),
    }
}
