//! `cutover plan|run|status|rollback` through the binary, with real parts: the emulator for
//! AWS (the cutover record in SSM), a "cloud" test host with the POS staged (reached the
//! default way, SSM Run Command through the agent stand-in), a real strongSwan router for the florist's shop, and a
//! "physical" test host on that router's LAN with sshd, 1 000+ files (large and odd-named)
//! and a stand-in POS service (an HTTP server) it can stop and start. The cloud host pulls
//! the data through the tunnel with rsync over SSH, as it would on cutover night.
//!
//! Looser than real life: Run Command is the emulator's stand-in (tests/rig/README.md), and
//! both hosts share this machine's file system below their own root directories.

mod common;
use common::data::{assert_same_tree, generate, put, Rng};
use common::host::TestHost;
use common::vpn::{eventually, Peer, Pos};
use common::{Rig, Run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SHOP: &str = "83000002";

/// The stand-in POS application of the physical server: an HTTP server on port 8400 of the
/// host's namespace, recorded by PID. `status` passes while it answers.
const SERVICE: &str = r#"#!/bin/sh
pidf="$POSCLOUD_ROOT/run/pos-service.pid"
case $1 in
  start)
    mkdir -p "$POSCLOUD_ROOT/run" "$POSCLOUD_ROOT/srv/www"
    echo "pos ok" >"$POSCLOUD_ROOT/srv/www/index.html"
    setsid python3 -m http.server 8400 --directory "$POSCLOUD_ROOT/srv/www" >/dev/null 2>&1 </dev/null &
    echo $! >"$pidf"
    ;;
  stop)
    [ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null
    rm -f "$pidf"
    ;;
  status) curl -fs -o /dev/null --max-time 2 http://127.0.0.1:8400/ ;;
esac
"#;

struct Physical {
    h: TestHost,
    lan: String,
}

impl Physical {
    fn data(&self) -> PathBuf {
        self.h.root.join("usr2")
    }

    fn service(&self, action: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &format!("pc-{}", self.h.name)])
            .args(["env", &format!("POSCLOUD_ROOT={}", self.h.root.display())])
            .arg("sh")
            .arg(self.h.root.join("srv/pos-service"))
            .arg(action)
            .status()
            .unwrap()
            .success()
    }

    fn serves(&self) -> bool {
        self.service("status")
    }

    fn authorized_keys(&self) -> String {
        std::fs::read_to_string(self.h.dir.path().join("home/.ssh/authorized_keys"))
            .unwrap_or_default()
    }
}

impl Drop for Physical {
    fn drop(&mut self) {
        // The stand-in service, by its recorded PID.
        if let Ok(p) = std::fs::read_to_string(self.h.root.join("run/pos-service.pid")) {
            let _ = Command::new("kill").arg(p.trim()).status();
        }
    }
}

/// The cutover's world: the cloud POS, the physical server on the shop's LAN and the VPN
/// between them (more than `common::host::Setup`'s one host).
struct Cutover {
    rig: Rig,
    pos: Pos,
    phys: Physical,
    _peer: Peer,
    /// The cloud host reaches the emulator's IMDS and SSM through it.
    _host_proxy: common::Proxy,
    stack: String,
    /// Everything poscloud printed in this test (scanned for the cloud host's key).
    printed: std::cell::RefCell<String>,
}

impl Cutover {
    fn run(&self, args: &[&str]) -> Run {
        let a = self.args(args);
        self.kept(
            self.rig
                .run(&a.iter().map(String::as_str).collect::<Vec<_>>()),
        )
    }

    fn kept(&self, r: Run) -> Run {
        let mut p = self.printed.borrow_mut();
        p.push_str(&r.stdout);
        p.push_str(&r.stderr);
        r
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        for s in ["--shop", SHOP, "--env", "qa", "--stack", &self.stack] {
            a.push(s.to_string());
        }
        a
    }

    /// cutover plan|run|rollback with the source options.
    fn cutover(&self, sub: &str, extra: &[&str]) -> Run {
        let args = self.cutover_args(sub, extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kept(self.rig.run(&refs))
    }

    fn cutover_args(&self, sub: &str, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["cutover".into(), sub.into()];
        a.extend(self.phys.h.source_args());
        a.extend(["--from-lan".into(), self.phys.lan.clone()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.args(&a)
    }

    /// Starts `cutover run` and kills it (SIGKILL, by PID) once an rsync writing into the
    /// cloud's data directory runs: an engineer's laptop dying mid-sync.
    fn kill_during_sync(&self, extra: &[&str]) {
        let args = self.cutover_args("run", extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self.rig.command(&refs).spawn().unwrap();
        let dest = self.cloud_data().to_string_lossy().into_owned();
        let seen = eventually(Duration::from_secs(120), || {
            rsync_into(&dest) || child.try_wait().unwrap().is_some()
        });
        assert!(seen, "no rsync seen");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(1500));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Runs `cmd` on the physical server over SSH with the cloud host's cutover key (as an
    /// intruder on the cloud host could): exit code and stderr.
    fn with_cloud_key(&self, cmd: &str) -> (i32, String) {
        let h = &self.phys.h;
        let key = self.pos.h.root.join("var/lib/poscloud/cutover/id_ed25519");
        let kh = self.rig.home.path().join("phys_known_hosts");
        let line = std::fs::read_to_string(&h.host_key_pub).unwrap();
        std::fs::write(&kh, format!("{} {}", h.address, line)).unwrap();
        let out = Command::new("ssh")
            .arg("-n")
            .args(["-i", &key.to_string_lossy()])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", &format!("UserKnownHostsFile={}", kh.display())])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg(format!("{}@{}", h.user, h.address))
            .arg(cmd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn cloud_data(&self) -> PathBuf {
        self.pos.h.root.join("var/lib/poscloud/data/rti")
    }

    fn record(&self) -> serde_json::Value {
        let out = self
            .run(&["--output", "json", "cutover", "status"])
            .ok()
            .json();
        out["record"].clone()
    }

    fn cloud_pos_running(&self) -> bool {
        self.pos
            .h
            .docker(&["inspect", "-f", "{{.State.Running}}", "pos"])
            .1
            == "true"
    }
}

/// Is an rsync running whose command line names `dest`?
fn rsync_into(dest: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            c.starts_with("rsync\0") && c.contains(dest)
        })
    })
}

fn setup() -> Cutover {
    let rig = Rig::new();
    let pos = Pos::up("cut1", 56);
    let host_proxy = pos.boot(&rig, SHOP);
    let (url, sum) = pos.h.pos_artifact("true\n");
    let base = std::fs::read_to_string(common::repo().join("stacks/qa.toml")).unwrap();
    let stack = rig.home.path().join("cutover.toml");
    std::fs::write(
        &stack,
        format!(
            "{base}\n[pos]\napp = \"rti\"\nimage = \"poscloud/base:test\"\nartifact_url = \"{url}\"\nartifact_sha256 = \"{sum}\"\nmemory = \"256m\"\n\n[cutover]\nstop = \"sh $POSCLOUD_ROOT/srv/pos-service stop\"\nstart = \"sh $POSCLOUD_ROOT/srv/pos-service start\"\ncheck = \"sh $POSCLOUD_ROOT/srv/pos-service status\"\nbackup_stamp = \"/var/backups/pos.stamp\"\n"
        ),
    )
    .unwrap();
    let stack = stack.to_string_lossy().into_owned();

    // The physical server: data, a backup stamp, the POS service running.
    let h = TestHost::up_root("cphys", 57, false);
    let peer = Peer::up(&pos, "g1", 5);
    let lan = peer.attach_host(&h, "g1");
    let phys = Physical { h, lan };
    std::fs::create_dir_all(phys.h.root.join("srv")).unwrap();
    std::fs::write(phys.h.root.join("srv/pos-service"), SERVICE).unwrap();
    generate(&phys.data(), 1000, 7);
    let mut rng = Rng(11);
    put(&phys.data(), b"big/transactions.db", &rng.bytes(24 << 20));
    std::os::unix::fs::symlink("big/transactions.db", phys.data().join("current.db")).unwrap();
    put(&phys.h.root, b"var/backups/pos.stamp", b"");
    assert!(phys.service("start"));
    assert!(eventually(common::SETTLE, || phys.serves()));

    let mut s = Cutover {
        rig,
        pos,
        phys,
        _peer: peer,
        _host_proxy: host_proxy,
        stack,
        printed: Default::default(),
    };
    // The cloud stack, provisioned to the end, and the VPN to the shop up.
    s.run(&["provision", "--until", "infra"]).ok();
    let eip = s.rig.pos_eip();
    s._peer.pos_id = eip;
    s.run(&["provision"]).ok();
    s.run(&[
        "vpn",
        "create",
        "--location",
        "shop",
        "--peer-ip",
        &s._peer.ip.clone(),
        "--peer-net",
        &s._peer.lan.clone(),
    ])
    .ok();
    let psk_file = s.rig.home.path().join("shop.psk");
    s.run(&[
        "vpn",
        "sheet",
        "--location",
        "shop",
        "--reveal",
        "--psk-file",
        &psk_file.to_string_lossy(),
    ])
    .ok();
    let psk = std::fs::read_to_string(&psk_file).unwrap();
    s._peer.configure("2", psk.trim());
    s.run(&["vpn", "start"]).ok();
    assert!(s.pos.ping(&s.phys.lan), "the physical server over the VPN");
    s
}

fn change_file(dir: &Path, rel: &str, content: &[u8]) {
    std::fs::write(dir.join(rel), content).unwrap();
}

/// One cutover, step by step on the same hosts (each step starts where the last one left
/// the shop; building the hosts and the VPN is what takes the time).
#[test]
fn a_cutover_resumes_after_interruptions_stops_on_a_changed_file_and_rolls_back() {
    let s = setup();
    let _ = &s._peer;
    plan_changes_nothing(&s);
    a_pre_sync_killed_is_redone_and_stops_before_the_freeze(&s);
    the_cloud_key_runs_only_an_rsync_reading_the_data(&s);
    let private = cloud_private_key(&s);
    the_shop_keeps_working_after_the_pre_sync(&s);
    a_run_killed_right_after_the_freeze_leaves_the_physical_pos_stopped(&s);
    a_final_sync_killed_is_resumed(&s);
    a_file_changed_after_the_freeze_stops_verify(&s);
    rollback_after_the_freeze_reopens_the_physical_pos(&s);
    the_cutover_again_runs_to_the_end(&s);
    a_done_cutover_does_nothing_and_refuses_a_rollback(&s);
    s.rig
        .run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok();
    assert_eq!(s.rig.tagged(SHOP, "qa"), Vec::<String>::new());
    the_cloud_key_is_in_no_output_nor_journal(&s, &private);
}

/// plan: the checks and the steps, and nothing changes anywhere.
fn plan_changes_nothing(s: &Cutover) {
    let plan = s
        .cutover("plan", &[])
        .ok()
        .stdout_has("estimated downtime")
        .stdout_has("VPN shop up")
        .stdout_has("last backup");
    // SendCommand runs plan's checks on the hosts; it changes nothing in AWS.
    let writes: Vec<String> = plan
        .writes()
        .into_iter()
        .filter(|w| w != "SendCommand")
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "plan wrote to AWS");
    assert!(s.phys.serves(), "plan left the physical POS running");
    assert!(
        s.phys.authorized_keys().is_empty(),
        "plan authorized no key"
    );
    assert!(!s.pos.h.root.join("var/lib/poscloud/cutover").exists());
}

/// Killed during the pre-sync (slowed to 4 MB/s): the re-run redoes the pre-sync only.
fn a_pre_sync_killed_is_redone_and_stops_before_the_freeze(s: &Cutover) {
    s.kill_during_sync(&["--bwlimit", "4000"]);
    let rec = s.record();
    assert!(rec["steps"]["pre-sync"]["at"].is_null(), "{rec}");
    assert!(rec["steps"]["preflight"]["at"].is_string(), "{rec}");
    assert!(s.phys.serves(), "the shop is still open");
    s.cutover("run", &["--until", "pre-sync", "--break-lock"])
        .ok()
        .stdout_has("stopped before freeze");
    assert!(
        s.phys.serves(),
        "the pre-sync does not stop the physical POS"
    );
    // The same --until again: the pre-sync is done, and it must not go on to the freeze.
    s.cutover("run", &["--until", "pre-sync"])
        .ok()
        .stdout_has("stopped before freeze");
    assert!(s.phys.serves(), "a second --until pre-sync froze the shop");
    assert!(
        s.phys
            .authorized_keys()
            .contains("poscloud-cutover-83000002")
            && s.phys.authorized_keys().contains("command=\""),
        "the cloud host's key, restricted: {}",
        s.phys.authorized_keys()
    );
    assert!(
        !s.cloud_pos_running(),
        "the cloud POS waits while its data is replaced"
    );
}

/// The cloud host's key runs nothing but rsync reading the data directory.
fn the_cloud_key_runs_only_an_rsync_reading_the_data(s: &Cutover) {
    let data = s.phys.data().to_string_lossy().into_owned();
    for (cmd, what) in [
        ("cat /etc/hostname".to_string(), "a shell command"),
        (
            format!("rsync --server -logDtpre.iLsfxCIvu . {data}/"),
            "an rsync writing",
        ),
        (
            "rsync --server --sender -logDtpre.iLsfxCIvu . /etc/".into(),
            "another directory",
        ),
        (
            format!("rsync --server --sender -l . {data}/;id"),
            "a second command",
        ),
    ] {
        let (code, err) = s.with_cloud_key(&cmd);
        assert_ne!(code, 0, "{what} was allowed");
        assert!(err.contains("refused"), "{what}: {err}");
    }
}

/// The cloud host's private key, to scan everything poscloud printed and journaled for.
fn cloud_private_key(s: &Cutover) -> Vec<String> {
    let key_file = s.pos.h.root.join("var/lib/poscloud/cutover/id_ed25519");
    let private: Vec<String> = std::fs::read_to_string(&key_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_string)
        .collect();
    assert!(!private.is_empty(), "{}", key_file.display());
    private
}

/// The shop keeps working after the pre-sync: a large change, a new file, a deleted one.
fn the_shop_keeps_working_after_the_pre_sync(s: &Cutover) {
    let mut rng = Rng(99);
    put(&s.phys.data(), b"big/transactions.db", &rng.bytes(20 << 20));
    put(&s.phys.data(), b"new today.txt", b"an order for roses\n");
    std::fs::remove_file(s.phys.data().join("d3/s3/f0003.bin")).unwrap();
}

/// Killed right after the freeze is recorded (the lock, freeze begun, freeze done).
fn a_run_killed_right_after_the_freeze_leaves_the_physical_pos_stopped(s: &Cutover) {
    let args = s.cutover_args("run", &["--break-lock"]);
    let killed = s.kept(s.rig.poscloud(&args).run_killed_after_write(3));
    assert_ne!(killed.code, 0, "{killed:?}");
    let rec = s.record();
    assert!(rec["steps"]["freeze"]["at"].is_string(), "{rec}");
    assert_eq!(rec["steps"]["freeze"]["was_running"], true, "{rec}");
    assert!(rec["steps"]["final-sync"].is_null(), "{rec}");
    assert!(!s.phys.serves(), "the physical POS is stopped");
}

/// Killed during the final sync (slowed): the re-run syncs the rest.
fn a_final_sync_killed_is_resumed(s: &Cutover) {
    s.kill_during_sync(&["--bwlimit", "4000", "--break-lock"]);
    assert!(s.record()["steps"]["final-sync"]["at"].is_null());
    s.cutover("run", &["--until", "final-sync", "--break-lock"])
        .ok();
    let rec = s.record();
    assert!(rec["steps"]["final-sync"]["at"].is_string(), "{rec}");
    assert_eq!(
        rec["steps"]["freeze"]["was_running"], true,
        "a resumed freeze keeps what it found first: {rec}"
    );
}

/// A file changed on the source after the freeze: verify names it and stops.
fn a_file_changed_after_the_freeze_stops_verify(s: &Cutover) {
    change_file(
        &s.phys.data(),
        "d5/s0/f0005.bin",
        b"changed after the freeze",
    );
    s.cutover("run", &[])
        .status(1)
        .stderr_has("differs: ./d5/s0/f0005.bin");
    assert!(!s.cloud_pos_running(), "the cloud POS was not started");
    let rec = s.record();
    assert!(rec["steps"]["verify"].is_null(), "{rec}");
    assert!(
        rec["steps"]["final-sync"].is_null(),
        "synced again next time: {rec}"
    );
}

/// Rollback after the freeze: the physical POS serves again.
fn rollback_after_the_freeze_reopens_the_physical_pos(s: &Cutover) {
    s.cutover("rollback", &[]).ok().stdout_has("rolled back");
    assert!(s.phys.serves(), "the physical POS answers again");
    assert!(!s.cloud_pos_running());
    assert!(!s.phys.authorized_keys().contains("poscloud-cutover"));
    let rec = s.record();
    assert_eq!(rec["state"], "rolled-back", "{rec}");
    assert_eq!(rec["rollbacks"], 1, "{rec}");
}

/// The cutover again, to the end.
fn the_cutover_again_runs_to_the_end(s: &Cutover) {
    let out = s
        .cutover("run", &[])
        .ok()
        .stdout_has("done: the cloud POS serves");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("downtime"), "{all}");
    assert_same_tree(&s.cloud_data(), &s.phys.data(), "cloud copy");
    assert!(s.cloud_pos_running());
    assert!(s.pos.h.pos_answers(), "the cloud POS answers on eth1");
    assert!(!s.phys.serves(), "the physical POS stays stopped");
    let marker = std::fs::read_to_string(s.phys.h.root.join("etc/poscloud-migrated")).unwrap();
    assert!(marker.contains("shop=83000002"), "{marker}");
    assert!(marker.contains("cloud=i-"), "{marker}");
    assert!(!s.phys.authorized_keys().contains("poscloud-cutover"));
    let rec = s.record();
    assert_eq!(rec["state"], "done", "{rec}");
    assert!(rec["steps"]["switch"]["downtime_s"].is_u64(), "{rec}");
}

/// Done: a second run does nothing and says so; a rollback is refused.
fn a_done_cutover_does_nothing_and_refuses_a_rollback(s: &Cutover) {
    s.cutover("run", &[])
        .ok()
        .stdout_has("nothing to do")
        .no_aws_write();
    s.cutover("rollback", &[]).status(2);
    s.run(&["cutover", "status"]).ok().stdout_has("done");
}

/// Not a line of the cloud host's private key in poscloud's output or journal.
fn the_cloud_key_is_in_no_output_nor_journal(s: &Cutover, private: &[String]) {
    let journal = std::fs::read_to_string(s.rig.journal()).unwrap();
    let printed = s.printed.borrow();
    assert!(printed.len() > 1000 && journal.contains("cutover"));
    for line in private {
        assert!(
            !printed.contains(line.as_str()),
            "the cutover key is in the output"
        );
        assert!(
            !journal.contains(line.as_str()),
            "the cutover key is in the journal"
        );
    }
}
