//! `--target ssh://…`: the phases on a host poscloud did not create (a physical or edge
//! server), with records and lock kept on the host and not one AWS call; `pos connect`.

mod common;
use common::host::{Setup, TestHost};
use common::{Poscloud, Rig, Run};

const SHOP: &str = "82000001";

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
    Setup::new(rig, h, SHOP, stack)
}

/// `poscloud ARGS` on the stack, with the test host as its --target (host key not given).
fn on_target<'s>(s: &'s Setup, args: &[&str]) -> Poscloud<'s> {
    s.poscloud(args).args(s.h.target_args())
}

/// `poscloud ARGS` on the stack and its --target, the host's own key pinned.
fn run(s: &Setup, args: &[&str]) -> Run {
    on_target(s, args).args(s.h.host_key_args()).run()
}

#[test]
fn provision_on_a_target_host_runs_every_phase_without_aws() {
    let s = setup();

    // The host key must come out of band: no trust on first use for a host we did not make.
    on_target(&s, &["provision"])
        .run()
        .status(2)
        .stderr_has("--host-key-file");

    let out = run(
        &s,
        &[
            "--output",
            "json",
            "provision",
            "--restore-from",
            "file:///srv/backup/",
        ],
    )
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
    let again = run(&s, &["provision", "--restore-from", "file:///srv/backup/"]).ok();
    for p in ["bootstrap", "build", "restore", "stage", "ready"] {
        assert!(
            again.stderr.contains(&format!("{p}: done at")),
            "{p} not skipped:\n{}",
            again.stderr
        );
    }

    // image build: the media are on the host already; --force builds them again.
    let b = run(&s, &["--output", "json", "image", "build"]).ok().json();
    assert_eq!(b["build"]["source"], "host", "{b}");
    let b = run(&s, &["--output", "json", "image", "build", "--force"])
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
    run(&s, &["pos", "stop"])
        .status(3)
        .stderr_has("night-shift@laptop-7");
    run(&s, &["pos", "stop", "--break-lock"]).ok();
    assert!(s.h.pos_silent(), "stopped");
    run(&s, &["pos", "start"]).ok();
    assert!(s.h.pos_answers(), "started again");

    // pos connect: a shell in the container through the system's ssh, host key pinned.
    on_target(&s, &["pos", "connect"])
        .args(s.h.host_key_args())
        .stdin(b"cat /etc/poscloud-media; cat /opt/pos/app/version; exit\n")
        .run()
        .ok()
        .stdout_has("test media")
        .stdout_has("v1");

    // A wrong pinned key: connect refuses the host.
    let wrong = s.h.dir.path().join("wrong_host_key.pub");
    let bad = on_target(&s, &["pos", "connect"])
        .args(["--host-key-file", &wrong.to_string_lossy()])
        .run();
    assert_ne!(bad.code, 0, "{bad:?}");
    assert_eq!(s.rig.proxy.calls().len(), 0, "still no AWS call");
}
