//! What a user reads about the command line: `--help` with examples and the global options
//! apart, a man page for every command with EXAMPLES, EXIT STATUS and ENVIRONMENT (rendered
//! by man(1) where it is installed), `man --out` writing them all for packaging. No AWS.

use std::path::Path;
use std::process::Command;

mod common;
use common::{Rig, Run};

/// `poscloud ARGS` in a wide terminal's shell with no AWS variables (the help would show
/// their values).
fn poscloud(rig: &Rig, args: &[&str]) -> Run {
    rig.poscloud(args).no_aws_env().env("COLUMNS", "200").run()
}

/// Every command's path ("provision", "pos restore"…), poscloud itself ("") first.
fn paths() -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_string(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, format!("{path} {}", sub.get_name()).trim(), out);
        }
    }
    let mut out = Vec::new();
    walk(&poscloud::cli::command(), "", &mut out);
    out
}

/// The long options a command defines itself (not the global ones).
fn own_options(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| l != "help" && l != "version")
        .collect()
}

#[test]
fn every_command_has_examples_that_parse() {
    let all = paths();
    assert!(all.len() > 30, "{} commands", all.len());
    for (path, _) in &all {
        let ex = poscloud::cli::examples(path)
            .unwrap_or_else(|| panic!("`poscloud {path}` has no examples"));
        let lines: Vec<&str> = ex.lines().filter(|l| l.starts_with("poscloud")).collect();
        assert!(!lines.is_empty(), "`poscloud {path}`: no example command");
        for line in ex.lines() {
            assert!(
                line.starts_with("poscloud ") || line.starts_with("# "),
                "`poscloud {path}`: {line:?} is neither a command nor a comment"
            );
        }
        for line in lines {
            assert!(
                line.starts_with(format!("poscloud {path}").trim_end()),
                "an example of `poscloud {path}` runs another command: {line}"
            );
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Err(e) = poscloud::cli::command().try_get_matches_from(&words) {
                panic!("the example {line:?} does not parse:\n{e}");
            }
            // The account along with the command: every example that calls AWS names it.
            let offline = ["poscloud man", "poscloud completions", "poscloud userdata"];
            if !offline.iter().any(|o| line.starts_with(o)) {
                assert!(
                    (line.contains(" --profile ") || line.contains(" --profiles "))
                        && line.contains(" --region "),
                    "no --profile/--region: {line}"
                );
            }
        }
    }
}

/// As shown, an example fits a terminal and pastes back as the same command.
#[test]
fn examples_are_shown_in_80_columns_and_paste_back_whole() {
    let mut wrapped = 0;
    for (path, _) in paths() {
        let shown = poscloud::cli::shown_examples(&path).unwrap();
        for l in &shown {
            assert!(
                l.chars().count() <= 76,
                "`poscloud {path}`: {l:?} is wider than 76"
            );
        }
        let pasted = shown.join("\n").replace(" \\\n    ", " ");
        assert_eq!(
            pasted,
            poscloud::cli::examples(&path).unwrap(),
            "`poscloud {path}`"
        );
        wrapped += shown.iter().filter(|l| l.ends_with(" \\")).count();
    }
    assert!(
        wrapped > 10,
        "long examples are broken into lines: {wrapped}"
    );
}

#[test]
fn help_shows_examples_and_global_options_apart() {
    let rig = Rig::offline();
    for (path, cmd) in paths() {
        // The main commands and every leaf under them.
        let mut args: Vec<&str> = path.split_whitespace().collect();
        args.push("--help");
        let r = poscloud(&rig, &args).ok().stdout_has("\nExamples:\n");
        let out = &r.stdout;
        for line in poscloud::cli::shown_examples(&path).unwrap() {
            assert!(
                out.contains(&format!("\n  {line}\n")),
                "poscloud {path} --help lacks {line:?}:\n{out}"
            );
        }
        let (own, global) = out
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("poscloud {path} --help has no Global options:\n{out}"));
        let global = global.split("\nExamples:").next().unwrap();
        for g in [
            "--region",
            "--profile",
            "--endpoint-url",
            "--output",
            "--journal",
            "--verbose",
            "--quiet",
        ] {
            assert!(
                global.contains(g),
                "poscloud {path} --help: {g} not under Global options"
            );
            assert!(
                !own.contains(&format!(" {g} "))
                    && !own.contains(&format!(" {g}="))
                    && !own.contains(&format!(" {g} <")),
                "poscloud {path} --help: {g} among the command's own options:\n{own}"
            );
        }
        for o in own_options(&cmd) {
            assert!(
                own.contains(&format!("--{o}")),
                "poscloud {path} --help: --{o} not among its options"
            );
        }
    }
}

/// The section headings of a roff page (`.SH NAME`, `.SH "EXIT STATUS"`).
fn sections(roff: &str) -> Vec<String> {
    roff.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|s| s.trim_matches('"').to_string())
        .collect()
}

fn man_installed() -> bool {
    Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The page as man(1) shows it (plain text), and what groff warned about.
fn rendered(file: &Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(file)
        .env("MANWIDTH", "120")
        .env("PAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "man -l {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Overstrike (bold X\bX, underline _\bX) if any is left: the backspace takes back the
    // character before it.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    (text, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_command_has_a_man_page_with_exit_status_environment_and_examples() {
    let rig = Rig::offline();
    let dir = tempfile::tempdir().unwrap();
    let man = man_installed();
    eprintln!("man(1) installed: {man}");
    for (path, cmd) in paths() {
        let mut args = vec!["man"];
        args.extend(path.split_whitespace());
        let roff = poscloud(&rig, &args).ok().stdout;
        let s = sections(&roff);
        for want in ["NAME", "SYNOPSIS", "EXAMPLES", "EXIT STATUS", "ENVIRONMENT"] {
            assert!(
                s.iter().any(|x| x == want),
                "man {path}: no {want} in {s:?}"
            );
        }
        if !path.is_empty() {
            assert!(s.iter().any(|x| x == "GLOBAL OPTIONS"), "man {path}: {s:?}");
        }
        let title = if path.is_empty() {
            "poscloud".to_string()
        } else {
            format!("poscloud-{}", path.replace(' ', "-"))
        };
        assert!(
            roff.contains(&format!(".TH {title} 1")),
            "man {path}: title"
        );
        for code in ["130", "\\fB3\\fR", "\\fB4\\fR"] {
            assert!(
                roff.contains(code),
                "man {path}: exit code {code} not described"
            );
        }
        for var in [
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "POSCLOUD_JOURNAL",
            "NO_COLOR",
            "POSCLOUD_LOG",
        ] {
            assert!(roff.contains(var), "man {path}: {var} not in ENVIRONMENT");
        }
        for o in own_options(&cmd) {
            let escaped = format!("\\-\\-{}", o.replace('-', "\\-"));
            assert!(roff.contains(&escaped), "man {path}: --{o} not described");
        }
        if man {
            let file = dir.path().join(format!("{title}.1"));
            std::fs::write(&file, &roff).unwrap();
            let (text, warnings) = rendered(&file);
            assert!(
                warnings.trim().is_empty(),
                "man -l {title}.1 warns:\n{warnings}"
            );
            for want in ["EXIT STATUS", "ENVIRONMENT", "EXAMPLES", "AWS_PROFILE"] {
                assert!(
                    text.contains(want),
                    "man -l {title}.1 shows no {want}:\n{text}"
                );
            }
            // The examples' lines as typed (no filling, no hyphenation, ASCII hyphens).
            for line in poscloud::cli::shown_examples(&path).unwrap() {
                let line = line.trim_start_matches("# ").trim();
                assert!(
                    text.lines().any(|l| l.trim() == line),
                    "man -l {title}.1 lacks the line {line:?}:\n{text}"
                );
            }
            for o in own_options(&cmd) {
                assert!(
                    text.contains(&format!("--{o}")),
                    "man -l {title}.1: --{o} not shown"
                );
            }
        }
    }
}

#[test]
fn man_of_one_command_and_of_an_unknown_one() {
    let rig = Rig::offline();
    let roff = poscloud(&rig, &["man", "pos", "restore"])
        .ok()
        .stdout_has(".TH poscloud-pos-restore 1")
        .stdout;
    assert!(
        roff.contains("\\-\\-source\\-key\\-file"),
        "pos restore's own option"
    );
    assert!(
        !roff.contains("\\-\\-older\\-than"),
        "teardown's option in pos restore's page"
    );
    assert!(
        roff.contains("poscloud\\-pos(1)"),
        "SEE ALSO names the parent page"
    );

    poscloud(&rig, &["man", "provison"])
        .status(2)
        .stderr_has("\"provison\"")
        .stderr_has("provision");
    poscloud(&rig, &["man", "pos", "restore", "more"]).status(2);
}

#[test]
fn man_out_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let rig = Rig::offline();
    let listed = poscloud(&rig, &["man", "--out", out.to_str().unwrap()])
        .ok()
        .stdout;
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = paths()
        .iter()
        .map(|(p, _)| {
            if p.is_empty() {
                "poscloud.1".to_string()
            } else {
                format!("poscloud-{}.1", p.replace(' ', "-"))
            }
        })
        .collect();
    want.sort();
    assert_eq!(files, want);
    for f in [
        "poscloud.1",
        "poscloud-provision.1",
        "poscloud-pos-restore.1",
        "poscloud-host-connect.1",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not written");
        assert!(listed.contains(f), "{f} not listed:\n{listed}");
    }
    // The same page as `poscloud man pos restore` prints.
    let one = poscloud(&rig, &["man", "pos", "restore"]).ok().stdout;
    assert_eq!(
        std::fs::read_to_string(out.join("poscloud-pos-restore.1")).unwrap(),
        one
    );
    let root = poscloud(&rig, &["man"]).ok().stdout;
    assert_eq!(
        std::fs::read_to_string(out.join("poscloud.1")).unwrap(),
        root
    );
    assert!(
        root.contains("poscloud\\-provision(1)"),
        "the main page lists the command pages"
    );
}

/// plan and status with --detailed-exitcode (Terraform's convention) describe it.
#[test]
fn detailed_exitcode_is_described_where_a_command_has_it() {
    let with = clap::Command::new("plan").arg(
        clap::Arg::new("detailed_exitcode")
            .long("detailed-exitcode")
            .action(clap::ArgAction::SetTrue),
    );
    let roff = String::from_utf8(poscloud::commands::man::page(&with, "plan").unwrap()).unwrap();
    let exit = roff
        .split(".SH \"EXIT STATUS\"")
        .nth(1)
        .unwrap()
        .split(".SH")
        .next()
        .unwrap();
    assert!(exit.contains("\\-\\-detailed\\-exitcode"), "{exit}");
    assert!(exit.contains("changes to make"), "{exit}");
    let without = clap::Command::new("list");
    let roff = String::from_utf8(poscloud::commands::man::page(&without, "list").unwrap()).unwrap();
    assert!(!roff.contains("detailed"));
}

/// Every whole poscloud command in the runbooks parses as poscloud parses it, and those that
/// call AWS name the account (`--profile $P --region $R`): a runbook at 2 a.m. is copied, not
/// read. Fragments (`[--force]`, `stop|start`, `…`) are left out.
#[test]
fn runbook_commands_parse_and_name_the_account() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut commands: Vec<String> = Vec::new();
        // Inline code spans (they may run over a line break) ...
        for (i, span) in text.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("poscloud ") {
                commands.push(span.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        // ... and lines of code blocks, `\` continuations joined.
        let mut block = false;
        let mut cur = String::new();
        for line in text.lines() {
            if line.starts_with("```") {
                block = !block;
                continue;
            }
            if block && (line.starts_with("poscloud ") || !cur.is_empty()) {
                cur.push_str(line.trim_end_matches('\\').trim());
                cur.push(' ');
                if !line.ends_with('\\') {
                    commands.push(cur.trim().to_string());
                    cur.clear();
                }
            }
        }
        for c in commands {
            if c.contains(['[', '|', '…']) || !c.contains(" --") {
                continue;
            }
            let c = c.split(" >").next().unwrap();
            let words: Vec<String> = c
                .replace("$SERVER", "ssh://root@10.50.0.10")
                .replace("$S", "12345678")
                .replace("$P", "acme-prod")
                .replace("$R", "us-east-1")
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if let Err(e) = poscloud::cli::command().try_get_matches_from(&words) {
                panic!("{name}: `{c}` does not parse:\n{e}");
            }
            if !c.starts_with("poscloud userdata") {
                assert!(
                    c.contains("--profile $P") && c.contains("--region $R"),
                    "{name}: `{c}` does not name the account (--profile $P --region $R)"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} runbook commands checked");
}
