//! Crashes in the remote phases: poscloud killed (SIGKILL) while build, restore and stage run
//! on the host; the same command again (with `--break-lock` for the dead run's lock)
//! completes, and the POS data is the backup, byte for byte. The host is a `--target` test
//! host (the same scripts run there as on a stack's host through SSM; no AWS involved), and
//! a stack's host over SSM, where the killed run's command goes on on the host: the re-run's
//! copy of the script must wait for it, not run beside it.

mod common;
use common::data::{generate, snapshot, Entry};
use common::host::{Setup, TestHost};
use common::{Poscloud, Proxy, Rig};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const SHOP: &str = "82000058";

fn setup() -> Setup {
    let rig = Rig::new();
    let h = TestHost::up("crm1", 58, true);
    let stack = h.media_stack(&rig.home.path().join("edge.toml"));
    // A backup on the host: 800 files with odd names, one of 3 MiB, and its manifest.
    let backup = h.root.join("srv/backup");
    generate(&backup, 800, 58);
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | xargs -0 sha256sum > /tmp/m.$$ && mv /tmp/m.$$ MANIFEST.sha256")
        .current_dir(&backup)
        .status()
        .unwrap();
    assert!(ok.success());
    Setup::new(rig, h, SHOP, stack)
}

const BACKUP: &str = "file:///srv/backup/";

/// `poscloud provision --restore-from BACKUP EXTRA` on the stack, the test host its
/// --target.
fn provision<'s>(s: &'s Setup, extra: &[&str]) -> Poscloud<'s> {
    s.poscloud(["provision", "--restore-from", BACKUP])
        .args(extra)
        .args(s.h.target_args())
        .args(s.h.host_key_args())
}

/// Runs provision and SIGKILLs it as soon as the host's script prints a line starting
/// with `marker` (the phase is under way on the host). Returns what it printed.
fn killed_during(s: &Setup, extra: &[&str], marker: &str) -> String {
    let mut child = provision(s, extra)
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut killed = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        seen.push_str(&line);
        seen.push('\n');
        // The host's output is shown as "    │ build: …".
        let host_line = line.split_once("│ ").map(|(_, l)| l).unwrap_or("");
        if !killed && host_line.starts_with(marker) {
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the run ended before {marker:?} ({status}):\n{seen}"
    );
    seen
}

/// The POS data directory holds exactly the backup (names, content, modes).
fn assert_data_is_the_backup(s: &Setup, what: &str) {
    let strip = |mut m: BTreeMap<Vec<u8>, Entry>| {
        m.remove(b"MANIFEST.sha256".as_slice());
        m
    };
    let data = strip(snapshot(&s.h.root.join("var/lib/poscloud/data/rti")));
    let backup = strip(snapshot(&s.h.root.join("srv/backup")));
    common::data::assert_same(&data, &backup, what);
}

/// The dead run's lock is reported as stale and stops a plain re-run; `--break-lock`
/// resumes and completes.
fn resume(s: &Setup, extra: &[&str], what: &str) {
    provision(s, extra).run().status(3).stderr_has("stale");
    let done = provision(s, extra).arg("--break-lock").run().ok();
    let phases = &provision(s, &["--output", "json"]).run().ok().json()["phases"];
    for p in ["bootstrap", "build", "restore", "stage", "ready"] {
        assert!(phases[p]["done_at"].is_string(), "{what}: {p}: {phases}");
    }
    assert!(
        s.h.pos_answers(),
        "{what}: the POS answers\n{}",
        done.stderr
    );
    assert_data_is_the_backup(s, what);
}

#[test]
fn killed_during_build_restore_and_stage_the_same_command_completes_and_the_data_is_intact() {
    let s = setup();

    // 1. During the build of the OS media (the first run: nothing exists yet).
    killed_during(&s, &[], "build:");
    resume(&s, &[], "killed during build");

    // 2. During a restore over existing data: the data is either the old or the new, never
    //    half; the re-run restores it whole.
    std::fs::write(
        s.h.root.join("var/lib/poscloud/data/rti/local-change"),
        b"x",
    )
    .unwrap();
    killed_during(&s, &["--redo", "restore"], "restore:");
    resume(&s, &["--redo", "restore"], "killed during restore");

    // 3. During stage (the POS container being replaced): the data directory is untouched.
    killed_during(&s, &["--redo", "stage"], "pos:");
    resume(&s, &["--redo", "stage"], "killed during stage");
}

#[test]
fn over_ssm_a_killed_runs_command_goes_on_and_the_rerun_waits_for_it() {
    let rig = Rig::new();
    let h = TestHost::up("crm2", 16, true);
    h.boot(&rig, SHOP, "qa");
    // The host reaches the emulator (media upload) through a proxy on its veth.
    let proxy = Proxy::start_on(&h.root_side(), rig.emu.port);
    let stack = h.media_stack(&rig.home.path().join("qa.toml"));
    let args = [
        "provision",
        "--shop",
        SHOP,
        "--env",
        "qa",
        "--stack",
        &stack,
    ];

    // Killed (SIGKILL) while build.sh runs on the host through SSM.
    let mut c = rig.command(&args);
    c.env("AWS_ENDPOINT_URL", proxy.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let running = common::eventually(common::SETTLE, || {
        !h.agent_commands("poscloud build.sh").is_empty() || child.try_wait().unwrap().is_some()
    });
    assert!(
        running && child.try_wait().unwrap().is_none(),
        "build.sh never ran"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let first = h.agent_commands("poscloud build.sh");
    assert_eq!(first.len(), 1);
    assert!(!first[0].1, "the killed run's command goes on on the host");

    // The same command again (past the dead run's lock) sends build.sh again while the first
    // still runs: the runner makes the new copy wait for the first instead of running beside
    // it (build.sh itself would refuse a second build on the host).
    let mut again: Vec<&str> = args.to_vec();
    again.push("--break-lock");
    let done = rig
        .poscloud(&again)
        .env("AWS_ENDPOINT_URL", proxy.url())
        .run()
        .ok();
    let builds = h.agent_commands("poscloud build.sh");
    assert_eq!(builds.len(), 2, "{builds:?}");
    assert!(builds.iter().all(|(_, ended)| *ended));
    let id = builds
        .iter()
        .map(|(id, _)| id)
        .find(|id| **id != first[0].0)
        .unwrap();
    let work = |id: &str, f: &str| {
        let p = h.dir.path().join(format!("ssm/work/{id}/{f}"));
        std::fs::read_to_string(p).unwrap()
    };
    let at = |id: &str, f: &str, k: &str| {
        let v: serde_json::Value = serde_json::from_str(&work(id, f)).unwrap();
        v[k].as_str().unwrap().to_string()
    };
    // ISO 8601 in UTC: comparable as text. (Had the first ended before the second began,
    // there was nothing to wait for; ssm_transport.rs proves the wait deterministically.)
    let first_ended = at(&first[0].0, "result.json", "ended");
    let second_started = at(id, "started.json", "at");
    if second_started < first_ended {
        assert!(
            work(id, "stderr").contains("build.sh already runs on this host"),
            "the second copy started while the first ran and must have waited: {}",
            work(id, "stderr")
        );
    }
    assert!(done.stdout.contains("provisioned"), "{}", done.stdout);
    assert!(h.pos_answers(), "the POS answers");
}
