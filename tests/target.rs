//! `--target ssh://…`: the phases on a host poscloud did not create (a physical or edge
//! server), with records and lock kept on the host and not one AWS call; `pos connect`.

mod common;
use common::host::TestHost;
use common::{Rig, Run};

const SHOP: &str = "82000001";

struct Setup {
    rig: Rig,
    h: TestHost,
    stack: String,
}

fn setup() -> Setup {
    let rig = Rig::new();
    // No finish_userdata(): poscloud's user-data never ran on such a host.
    let h = TestHost::up_root("tgt1", 27, true);
    let stack = h.media_stack(&rig.home.path().join("edge.toml"));
    // A backup already on the host (file://), with its manifest.
    let backup = h.root.join("srv/backup");
    std::fs::create_dir_all(backup.join("a b")).unwrap();
    std::fs::write(backup.join("a b/ordërs.db"), b"\x00\x01\x02").unwrap();
    std::fs::write(backup.join("empty"), b"").unwrap();
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | xargs -0 sha256sum > /tmp/m.$$ && mv /tmp/m.$$ MANIFEST.sha256")
        .current_dir(&backup)
        .status()
        .unwrap();
    assert!(ok.success());
    // The same backup with one file changed after its manifest was written.
    let bad = h.root.join("srv/bad-backup");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&backup)
        .arg(&bad)
        .status()
        .unwrap()
        .success());
    std::fs::write(bad.join("a b/ordërs.db"), b"tampered").unwrap();
    Setup { stack, rig, h }
}

impl Setup {
    fn args<'a>(
        &'a self,
        args: &[&'a str],
        target: &'a str,
        key: &'a str,
        hk: &'a str,
    ) -> Vec<&'a str> {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--shop", SHOP, "--env", "qa", "--stack", &self.stack]);
        a.extend(["--target", target, "--ssh-key", key]);
        if !hk.is_empty() {
            a.extend(["--host-key-file", hk]);
        }
        a
    }

    fn run(&self, args: &[&str]) -> Run {
        let target = format!("ssh://{}", self.h.ssh_address());
        let key = self.h.client_key.to_string_lossy().into_owned();
        let hk = self.h.host_key_pub.to_string_lossy().into_owned();
        self.rig.run(&self.args(args, &target, &key, &hk))
    }
}

#[test]
fn provision_on_a_target_host_runs_every_phase_without_aws() {
    let s = setup();
    let target = format!("ssh://{}", s.h.ssh_address());
    let key = s.h.client_key.to_string_lossy().into_owned();

    // The host key must come out of band: no trust on first use for a host we did not make.
    let no_key = s.rig.run(&s.args(&["provision"], &target, &key, ""));
    assert_eq!(no_key.code, 2, "{}", no_key.stderr);
    assert!(
        no_key.stderr.contains("--host-key-file"),
        "{}",
        no_key.stderr
    );

    let out = s
        .run(&[
            "--output",
            "json",
            "provision",
            "--restore-from",
            "file:///srv/backup/",
        ])
        .ok();
    let phases = &out.json()["phases"];
    for p in ["bootstrap", "build", "restore", "stage", "ready"] {
        assert!(phases[p]["done_at"].is_string(), "{p}: {phases}");
    }
    assert_eq!(
        phases["bootstrap"]["result"]["userdata"],
        serde_json::Value::Null
    );
    assert_eq!(phases["build"]["result"]["source"], "built");
    assert!(
        s.h.pos_answers(),
        "the POS answers on its address through eth1"
    );
    assert_eq!(
        std::fs::read(s.h.root.join("var/lib/poscloud/data/rti/a b/ordërs.db")).unwrap(),
        b"\x00\x01\x02"
    );
    // Not one AWS call; the records are on the host.
    assert_eq!(s.rig.proxy.calls().len(), 0, "{:?}", s.rig.proxy.calls());
    for p in ["bootstrap", "build", "restore", "stage", "ready"] {
        let rec = s.h.root.join(format!("var/lib/poscloud/phases/{p}.json"));
        assert!(rec.exists(), "{} missing", rec.display());
    }
    assert!(
        !s.h.root.join("var/lib/poscloud/lock").exists(),
        "lock released"
    );

    // Run again: every phase is skipped.
    let again = s
        .run(&["provision", "--restore-from", "file:///srv/backup/"])
        .ok();
    for p in ["bootstrap", "build", "restore", "stage", "ready"] {
        assert!(
            again.stderr.contains(&format!("{p}: done at")),
            "{p} not skipped:\n{}",
            again.stderr
        );
    }

    // image build: the media are on the host already; --force builds them again.
    let b = s.run(&["--output", "json", "image", "build"]).ok().json();
    assert_eq!(b["build"]["source"], "host", "{b}");
    let b = s
        .run(&["--output", "json", "image", "build", "--force"])
        .ok()
        .json();
    assert_eq!(b["build"]["source"], "built", "{b}");

    // A lock held on the host names its holder (exit 3); --break-lock takes it over.
    let lock = s.h.root.join("var/lib/poscloud/lock");
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("holder.json"),
        r#"{"user":"night-shift","host":"laptop-7","pid":4242,"command":"pos restore","since":"2026-11-23T02:00:00Z"}"#,
    )
    .unwrap();
    let locked = s.run(&["pos", "stop"]);
    assert_eq!(locked.code, 3, "{}", locked.stderr);
    assert!(
        locked.stderr.contains("night-shift@laptop-7"),
        "{}",
        locked.stderr
    );
    s.run(&["pos", "stop", "--break-lock"]).ok();
    assert!(s.h.pos_silent(), "stopped");
    s.run(&["pos", "start"]).ok();
    assert!(s.h.pos_answers(), "started again");

    // pos connect: a shell in the container through the system's ssh, host key pinned.
    let hk = s.h.host_key_pub.to_string_lossy().into_owned();
    let args = s.args(&["pos", "connect"], &target, &key, &hk);
    let out = s
        .rig
        .poscloud(&args)
        .stdin(b"cat /etc/poscloud-media; cat /opt/pos/app/version; exit\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stdout = &out.stdout;
    assert!(
        stdout.contains("test media") && stdout.contains("v1"),
        "{stdout}"
    );

    // A wrong pinned key: connect refuses the host.
    let wrong = s.h.dir.path().join("wrong_host_key.pub");
    let bad = s
        .rig
        .run(&s.args(&["pos", "connect"], &target, &key, &wrong.to_string_lossy()));
    assert_ne!(bad.code, 0);
    assert_eq!(s.rig.proxy.calls().len(), 0, "still no AWS call");
}
