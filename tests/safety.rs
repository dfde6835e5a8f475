//! Safe at 2 a.m.: prod is never changed by omission, a closed pipe never stops a run half-way
//! (nor panics), Ctrl-C exits 130, every header and journal line names the AWS account, and
//! a command pointed at the wrong env says where the shop is.

mod common;
use common::Rig;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const SHOP: &str = "23456789";

/// Runs poscloud at a terminal (util-linux `script` gives it a pseudo-terminal) and types
/// `typed` once it asks; returns the exit code and everything the terminal showed.
fn at_terminal(rig: &Rig, args: &[&str], typed: &str) -> (i32, String) {
    let line = std::iter::once(env!("CARGO_BIN_EXE_poscloud"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let c = rig.command(&[]);
    let c = c
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect::<Vec<_>>();
    let mut child = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .envs(c)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let typed = typed.to_string();
    // Type only once the question is on the screen (the terminal would echo it early).
    let reader = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut stdout = stdout;
        let mut typed_yet = false;
        loop {
            let n = stdout.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if !typed_yet && String::from_utf8_lossy(&seen).contains("to go on: ") {
                let _ = stdin.write_all(format!("{typed}\n").as_bytes());
                typed_yet = true;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

#[test]
fn prod_is_never_changed_by_omission() {
    let rig = Rig::new();
    // No --env (so prod), no terminal, no --yes: nothing written, exit 2, and it says why.
    rig.run(&["provision", "--shop", SHOP, "--until", "infra"])
        .status(2)
        .stderr_has("is production")
        .stderr_has("--yes")
        .no_aws_write();
    assert!(rig.tagged(SHOP, "prod").is_empty());

    // At a terminal: the plan with account, region and cost, then the shop code typed back.
    let (code, screen) = at_terminal(
        &rig,
        &["provision", "--shop", SHOP, "--until", "infra"],
        "2345",
    );
    assert_eq!(code, 2, "{screen}");
    for want in [
        "+ VPC",
        "monthly cost",
        "account 123456789012",
        "us-east-1",
        "This is PRODUCTION. Type the shop code (23456789)",
        "did not match; nothing was changed",
    ] {
        assert!(screen.contains(want), "{want:?} not in:\n{screen}");
    }
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    let (code, screen) = at_terminal(
        &rig,
        &["provision", "--shop", SHOP, "--until", "infra"],
        SHOP,
    );
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("provisioned"), "{screen}");
    rig.assert_one_stack(SHOP, "prod", "provisioned after the shop code was typed");
    // The plan was shown once, at the question, not again under the lock.
    assert_eq!(screen.matches("+ VPC").count(), 1, "{screen}");

    // Converged: nothing to change, nothing to ask.
    rig.run(&["provision", "--shop", SHOP, "--until", "infra"])
        .ok()
        .no_aws_write();

    // A location to rotate: `vpn create` records it in SSM before it fails on the host
    // (there is no host behind this instance). Creating a tunnel is not asked for.
    let rti = common::repo().join("stacks/examples/rti.toml");
    let rti = rti.to_str().unwrap();
    rig.run(&[
        "vpn",
        "create",
        "--shop",
        SHOP,
        "--location",
        "shop-a",
        "--peer-ip",
        "1.2.3.4",
        "--peer-net",
        "10.1.0.0/24",
    ]);
    let phys = rig.home.path().join("phys.pub");
    std::fs::write(
        &phys,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0fCmFw1T9EHO1zFkmmhA4mqCLHfH1fE8T28xb2yKBU phys\n",
    )
    .unwrap();
    let phys = phys.to_str().unwrap();

    // The commands that interrupt a prod POS ask the same; with --yes they go on (and here
    // fail later: there is no host behind this instance, which is not what is tested).
    for cmd in [
        vec!["pos", "stop"],
        vec!["pos", "restart", "--stack", rti],
        vec!["pos", "restore", "--from", "file:///srv/backup/"],
        vec!["vpn", "delete", "--location", "shop-a"],
        vec!["vpn", "rotate", "--location", "shop-a", "--now"],
        vec![
            "cutover",
            "run",
            "--stack",
            rti,
            "--from",
            "ssh://root@127.0.0.1:1",
            "--from-host-key-file",
            phys,
        ],
    ] {
        let run = || rig.poscloud(&cmd).args(["--shop", SHOP]);
        run()
            .run()
            .status(2)
            .stderr_has("is production")
            .no_aws_write();
        run().arg("--yes").run().stderr_lacks("is production");
    }

    // A batch with prod rows needs --yes, before any AWS call.
    let file = rig.home.path().join("wave.csv");
    std::fs::write(&file, format!("34567001,qa\n{SHOP},prod\n")).unwrap();
    rig.run(&[
        "provision",
        "--shops-file",
        &file.to_string_lossy(),
        "--until",
        "infra",
    ])
    .status(2)
    .stderr_has("wave.csv:2 shop 23456789")
    .no_aws_call();
}

/// `poscloud … 2>&1 | head -3`: both streams into one pipe whose reader goes after 3 lines.
fn closed_pipe(rig: &Rig, args: &[&str]) -> (i32, Vec<String>) {
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = rig
        .command(args)
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(reader)
        .lines()
        .take(3)
        .map(|l| l.unwrap())
        .collect();
    // The reader is dropped here: every later write gets EPIPE.
    (child.wait().unwrap().code().unwrap_or(-1), lines)
}

#[test]
fn a_closed_pipe_never_stops_a_run_nor_leaves_its_lock() {
    let rig = Rig::new();
    let (code, lines) = closed_pipe(&rig, &common::infra_args(SHOP, "qa"));
    assert_eq!(code, 0, "{lines:?}");
    rig.assert_one_stack(SHOP, "qa", "provisioned into a closed pipe");

    let (code, lines) = closed_pipe(&rig, &["teardown", "--shop", SHOP, "--env", "qa", "--yes"]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 3);
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new(), "all removed");
    assert_eq!(rig.count_parameters(), 0, "the lock was released");
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    let last = journal.lines().last().unwrap();
    assert!(
        last.contains(r#""op":"DeleteParameter""#) && last.contains("/poscloud/23456789/qa/lock"),
        "the journal's last line is the lock's release: {last}"
    );

    // Output commands too: exit 0, no panic (101).
    for args in [vec!["completions", "bash"], vec!["man"], vec!["--help"]] {
        let (code, lines) = closed_pipe(&rig, &args);
        assert_eq!(code, 0, "{args:?}: {lines:?}");
    }
}

#[test]
fn ctrl_c_exits_130() {
    let rig = Rig::new();
    // An endpoint that accepts and never answers: the run waits in its first call.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut child = rig
        .poscloud(["status", "--shop", SHOP, "--env", "qa"])
        .env("AWS_ENDPOINT_URL", &url)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_conn, _) = silent.accept().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn headers_summaries_and_journal_lines_name_the_account() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa")
        .ok()
        .stderr_has(
            "provision shop 23456789 (qa) in account 123456789012 (environment credentials), us-east-1",
        )
        .stdout_has("account         123456789012 (environment credentials)");
    let json = rig
        .poscloud(common::infra_args(SHOP, "qa"))
        .args(["--output", "json"])
        .run()
        .ok()
        .json();
    assert_eq!(json["summary"]["account"], "123456789012");

    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    let lines: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["account"], "123456789012", "{l}");
        assert_eq!(l["region"], "us-east-1", "{l}");
        assert_eq!(l["credentials"], "environment credentials", "{l}");
    }

    // The other headers: status, plan, list and both reports.
    for (args, out) in [
        (vec!["status", "--shop", SHOP, "--env", "qa"], "stdout"),
        (vec!["plan", "--shop", SHOP, "--env", "qa"], "stdout"),
        (vec!["list"], "stderr"),
        (vec!["report", "billing"], "stdout"),
        (vec!["report", "compliance"], "stderr"),
    ] {
        let r = rig.run(&args);
        let header = "account 123456789012 (environment credentials), us-east-1";
        if out == "stdout" {
            r.stdout_has(header);
        } else {
            r.stderr_has(header);
        }
    }

    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok()
        .stdout_has("in account 123456789012");
}

#[test]
fn teardown_of_the_wrong_env_says_where_the_shop_is() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "prod").ok();
    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .status(1)
        .stderr_has("shop 23456789 exists in: prod")
        .stderr_has("--env prod")
        .no_aws_write();
    // A shop that exists nowhere: nothing to do, which is success (a re-run of a teardown).
    rig.run(&["teardown", "--shop", "99999999", "--env", "qa", "--yes"])
        .ok()
        .stdout_has("nothing to tear down");
}
