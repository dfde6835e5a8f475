//! `man`: poscloud's man pages. clap_mangen renders the sections it knows (name, synopsis,
//! options, global options, commands); EXAMPLES, EXIT STATUS, ENVIRONMENT and SEE ALSO are
//! added here, so every page answers "how do I call it, what does its exit code mean, what
//! in my environment changes it".

use super::Ctx;
use crate::cli::ManArgs;
use crate::error::{Error, Result};
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use serde_json::json;

/// The command tree as the pages show it: built (the global options on every command, names
/// like poscloud-pos-restore), without clap's `help` command.
fn tree() -> clap::Command {
    let mut c = crate::cli::command().disable_help_subcommand(true);
    c.build();
    c
}

pub fn run(ctx: &Ctx, args: &ManArgs) -> Result<()> {
    let root = tree();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display())))?;
        let mut written = Vec::new();
        let mut pages = Vec::new();
        every(&root, "", &mut pages);
        for (path, cmd) in pages {
            let file = dir.join(Man::new(cmd.clone()).get_filename());
            std::fs::write(&file, page(cmd, &path)?)
                .map_err(|e| Error::failed(format!("cannot write {}: {e}", file.display())))?;
            written.push(file.display().to_string());
        }
        let text: String = written.iter().map(|f| format!("{f}\n")).collect();
        ctx.result(json!({ "written": written }), &text);
        return Ok(());
    }
    let (path, cmd) = find(&root, &args.command)?;
    let roff = page(cmd, &path)?;
    // `poscloud man | head`: the reader has what it wanted (ui::out drops the rest).
    crate::ui::out(&String::from_utf8_lossy(&roff));
    Ok(())
}

/// Every command of the tree with its path ("" for poscloud, "pos restore"…), parents first.
fn every<'a>(cmd: &'a clap::Command, path: &str, out: &mut Vec<(String, &'a clap::Command)>) {
    out.push((path.to_string(), cmd));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        every(sub, format!("{path} {}", sub.get_name()).trim_start(), out);
    }
}

/// The command named by `words` (`["pos", "restore"]`), and its path.
fn find<'a>(root: &'a clap::Command, words: &[String]) -> Result<(String, &'a clap::Command)> {
    let mut cmd = root;
    let mut path = String::new();
    for w in words {
        let Some(sub) = cmd.get_subcommands().find(|s| s.get_name() == w) else {
            let known: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
            let of = if path.is_empty() {
                "poscloud".to_string()
            } else {
                format!("`poscloud {path}`")
            };
            return Err(Error::usage(if known.is_empty() {
                format!("`poscloud {path}` has no command {w:?}")
            } else {
                format!("{of} has no command {w:?}; it has: {}", known.join(", "))
            }));
        };
        path = format!("{path} {w}").trim_start().to_string();
        cmd = sub;
    }
    Ok((path, cmd))
}

/// One page: clap_mangen's sections, then ours.
pub fn page(cmd: &clap::Command, path: &str) -> Result<Vec<u8>> {
    let version = env!("CARGO_PKG_VERSION");
    let man = Man::new(cmd.clone()).source(format!("poscloud {version}"));
    let mut out = Vec::new();
    let io = |e: std::io::Error| Error::failed(format!("rendering the man page: {e}"));
    man.render_title(&mut out).map_err(io)?;
    man.render_name_section(&mut out).map_err(io)?;
    man.render_synopsis_section(&mut out).map_err(io)?;
    man.render_description_section(&mut out).map_err(io)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out).map_err(io)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out).map_err(io)?;
    }
    let mut roff = Roff::default();
    examples(&mut roff, path);
    exit_status(&mut roff, cmd, path);
    environment(&mut roff);
    see_also(&mut roff, path);
    // Every page has it (clap knows the version of the top command only).
    roff.control("SH", ["VERSION"]);
    roff.text([roman(format!("v{version}"))]);
    roff.to_writer(&mut out).map_err(io)?;
    Ok(out)
}

/// The command's examples as `--help` shows them: each comment a paragraph, each command
/// indented and not filled (its lines as typed, long ones broken with ` \`).
fn examples(roff: &mut Roff, path: &str) {
    let Some(lines) = crate::cli::shown_examples(path) else {
        return;
    };
    roff.control("SH", ["EXAMPLES"]);
    let mut open = false;
    let close = |roff: &mut Roff| {
        roff.control("fi", []);
        roff.control("RE", []);
    };
    for line in &lines {
        if let Some(comment) = line.strip_prefix("# ") {
            if open {
                close(roff);
                open = false;
            }
            roff.control("PP", []);
            roff.text([roman(comment)]);
            continue;
        }
        if !open {
            roff.control("RS", ["4"]);
            roff.control("nf", []);
            open = true;
        }
        roff.text([bold(line.as_str())]);
    }
    if open {
        close(roff);
    }
}

/// poscloud's exit codes (src/error.rs), with what they mean for this command.
fn exit_status(roff: &mut Roff, cmd: &clap::Command, path: &str) {
    roff.control("SH", ["EXIT STATUS"]);
    // plan and status: Terraform's convention, when the command has the flag.
    if cmd
        .get_arguments()
        .any(|a| a.get_long() == Some("detailed-exitcode"))
    {
        let what = if path == "plan" {
            "changes to make"
        } else {
            "drift or missing resources"
        };
        item(
            roff,
            "0",
            "Success. With --detailed-exitcode: nothing to change, no drift.",
        );
        item(
            roff,
            "1",
            "An error: an AWS call, a check or a remote step failed.",
        );
        item(roff, "2", &format!("With --detailed-exitcode: success, and there are {what}. Without it: bad input or usage, nothing was changed."));
    } else {
        item(roff, "0", "Success.");
        let one = match path {
            "report compliance" => "Failure, or a stack fails a rule (the report says which and the fix).",
            "provision" => "Failure: an AWS call, a check or a remote phase failed (with --shops-file: any shop failed). The same command resumes.",
            "teardown" => "Failure: something could not be removed, or remains after the removal (listed). The same command goes on.",
            _ => "Failure: an AWS call, a check or a remote step failed; the message says what, where and what next.",
        };
        item(roff, "1", one);
        item(roff, "2", "Usage or bad input (arguments, stack file, credentials setup, a missing tool): nothing was changed.");
    }
    item(roff, "3", "The stack is locked by another run (the message names it); wait, or --break-lock if that run is gone.");
    item(
        roff,
        "4",
        "Refused by protection: a prod stack, without the confirmation it needs.",
    );
    item(roff, "130", "Interrupted (Ctrl-C): what was done stays, the lock is released, the same command resumes.");
    if path == "host connect" {
        item(roff, "other", "Once the session runs, poscloud has become `aws ssm start-session`: the exit status is the session's.");
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (var, what) in [
        ("AWS_PROFILE", "The named profile from ~/.aws/config (as --profile)."),
        ("AWS_REGION", "The region (as --region); else the profile's region."),
        ("AWS_ENDPOINT_URL", "Every AWS call to this endpoint (as --endpoint-url): an emulator, a VPC endpoint."),
        ("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN", "Credentials, read by the standard AWS chain (with AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, SSO and instance roles)."),
        ("POSCLOUD_JOURNAL", "The run journal (as --journal)."),
        ("XDG_STATE_HOME", "The journal's default directory: $XDG_STATE_HOME/poscloud/journal.jsonl, else ~/.local/state/poscloud/journal.jsonl."),
        ("POSCLOUD_LOG", "A log filter instead of -v/-q (tracing's syntax, e.g. poscloud=debug); the log goes to stderr."),
        ("NO_COLOR", "Set and not empty: no colour in the progress lines."),
        ("USER, LOGNAME", "Who ran it, as the journal and the stack's lock record it."),
        ("SSH_AUTH_SOCK", "The ssh-agent asked for SSH logins without --ssh-key."),
        ("PATH", "Where host connect and pos connect find aws and session-manager-plugin (SSM), or ssh."),
    ] {
        item(roff, var, what);
    }
}

fn see_also(roff: &mut Roff, path: &str) {
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    if !path.is_empty() {
        refs.push("poscloud(1)".to_string());
        if let Some((parent, _)) = path.rsplit_once(' ') {
            refs.push(format!("poscloud-{}(1)", parent.replace(' ', "-")));
        }
    }
    refs.push("aws(1)".into());
    roff.text([
        roman(refs.join(", ")),
        roman(". The runbooks: "),
        italic("docs/runbooks/"),
        roman("."),
    ]);
}

fn item(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(text)]);
}
