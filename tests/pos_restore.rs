//! `poscloud pos restore` through the binary: the emulator for AWS (lock, phase state), a
//! test host for the POS server, and the same test host as the rsync-over-SSH backup server
//! (the old layout /backups/tfrsync-<shop>/). File-by-file fidelity on 1 000+ files with odd
//! names is tests/restore.rs; this proves the command, its checks and what it records.

mod common;
use common::host::TestHost;
use common::Rig;
use std::path::Path;

const SHOP: &str = "67890123";

/// A small backup with its sha256sum manifest, at a real absolute path.
fn backup(dir: &Path) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    for i in 0..50 {
        std::fs::write(
            dir.join(format!("files/f {i}.dat")),
            format!("order {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.join("empty"), b"").unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("find . -type f ! -name MANIFEST.sha256 -print0 | sort -z | xargs -0 sha256sum > MANIFEST.sha256")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(out.success());
}

#[test]
fn restore_from_the_backup_server_verifies_and_records() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    let h = TestHost::up("prst1", 41, false);
    // The stack's host, reached over SSM; it is also the backup server (over SSH, as centos).
    h.boot(&rig, SHOP, "qa");
    let src = h.dir.path().join(format!("backups/tfrsync-{SHOP}"));
    backup(&src);
    // The host's key for the backup server lives on the host (never passed as an input).
    let key_on_host = h.root.join("etc/poscloud/backup_key");
    std::fs::create_dir_all(key_on_host.parent().unwrap()).unwrap();
    std::fs::copy(&h.client_key, &key_on_host).unwrap();

    let from = format!(
        "ssh://{}@{}/{}/",
        h.user,
        h.address,
        src.display().to_string().trim_start_matches('/')
    );
    let hk = h.host_key_pub.to_string_lossy().into_owned();
    let args = |from: &str| -> Vec<String> {
        [
            "pos",
            "restore",
            "--shop",
            SHOP,
            "--env",
            "qa",
            "--from",
            from,
            "--source-key-file",
            "/etc/poscloud/backup_key",
            "--source-host-key-file",
            &hk,
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: Vec<String>| rig.run(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // The host already has (older) data: nothing may touch it until a restore verifies.
    let data = h.root.join("var/lib/poscloud/data/rti");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("old.dat"), b"yesterday\n").unwrap();

    // A file changed after the manifest was written: refused, named, data untouched.
    let good = std::fs::read(src.join("files/f 3.dat")).unwrap();
    std::fs::write(src.join("files/f 3.dat"), b"tampered\n").unwrap();
    let out = run(args(&from));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("does not match the source's manifest"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("files/f 3.dat"),
        "names the file: {}",
        out.stderr
    );
    assert_eq!(std::fs::read(data.join("old.dat")).unwrap(), b"yesterday\n");
    assert!(
        !data.join("files").exists(),
        "nothing of the bad copy reached the data directory"
    );
    assert_eq!(rig.count_parameters(), 0, "lock released");

    // The good backup: restored, verified, recorded; the old data moved aside, not deleted.
    std::fs::write(src.join("files/f 3.dat"), good).unwrap();
    let out = run(args(&from));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("restored 51 files"), "{}", out.stdout);
    for f in ["files/f 7.dat", "files/f 3.dat", "empty"] {
        assert_eq!(
            std::fs::read(data.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
    let aside: Vec<_> = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("rti.before-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path().join("old.dat")).unwrap(),
        b"yesterday\n"
    );
    // 50 files and an empty one; the manifest itself is not data.
    let status = rig
        .run(&["status", "--shop", SHOP, "--env", "qa", "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        status["phases"]["restore"]["result"]["files"], 51,
        "{status}"
    );

    // Bad input: checked before any AWS call.
    rig.proxy.reset();
    let out = run(args("ftp://backup/x/"));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("ssh://user@host[:port]/path/, s3://bucket/key.tar.gz or file:///path/"),
        "{}",
        out.stderr
    );
    assert!(rig.proxy.calls().is_empty());
}
