//! provision through the stage phase, then `pos status|stop|start|restart`, through the
//! binary: the emulator for AWS, a test host with a real container engine for the server,
//! reached the default way (SSM Run Command through the agent stand-in, the host key from the
//! console).

mod common;
use common::host::{Setup, TestHost};
use common::Rig;

const SHOP: &str = "78901234";

fn setup() -> Setup {
    let rig = Rig::new();
    let h = TestHost::up("posl1", 43, true);
    h.boot(&rig, SHOP, "qa");
    // The POS artifact on the host, and a stack whose [pos] section names it.
    let (_, sum) = h.pos_artifact("echo v1 >/opt/pos/app/version\n");
    let pos = format!(
        "\n[pos]\napp = \"rti\"\nimage = \"poscloud/base:test\"\nartifact_url = \"file:///srv/pos-rti.tar\"\nartifact_sha256 = \"{sum}\"\nmemory = \"256m\"\n"
    );
    let base = std::fs::read_to_string(common::repo().join("stacks/qa.toml")).unwrap();
    let stack = rig.home.path().join("pos.toml");
    std::fs::write(&stack, base + &pos).unwrap();
    Setup::new(rig, h, SHOP, stack.to_string_lossy().into_owned())
}

#[test]
fn provision_stages_the_pos_and_pos_commands_operate_it() {
    let s = setup();
    let out = s.run(&["provision"]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("stage") && l.contains(" done ")),
        "{}",
        out.stdout
    );
    assert!(
        s.h.pos_answers(),
        "the POS answers on 192.168.222.233 through eth1"
    );

    // A completed provision does no remote work when run again.
    let logins = s.h.accepted_logins();
    s.rig.proxy.reset();
    let again = s.run(&["provision"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(s.h.accepted_logins(), logins);
    assert_eq!(s.rig.proxy.writes(), Vec::<String>::new());

    // --redo stage redoes only stage: bootstrap's marker is not rewritten.
    let marker = s.h.root.join("var/lib/poscloud/phases/bootstrap.done");
    let before = std::fs::metadata(&marker).unwrap().modified().unwrap();
    let redo = s.run(&["provision", "--redo", "stage"]).ok();
    assert!(
        redo.stderr.contains("bootstrap: done at"),
        "{}",
        redo.stderr
    );
    assert!(
        redo.stderr.contains("stage: POS container from"),
        "{}",
        redo.stderr
    );
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        before
    );

    let st = s.run(&["pos", "status", "--output", "json"]).ok().json();
    assert_eq!(st["pos"]["running"], true, "{st}");
    assert_eq!(st["pos"]["eth1"], "192.168.222.233/24");

    // Data written by the POS survives stop and start.
    let data = s.h.root.join("var/lib/poscloud/data/rti/orders.txt");
    std::fs::write(&data, "order 1\n").unwrap();
    s.run(&["pos", "stop"]).ok();
    assert!(
        s.h.pos_silent(),
        "stopped: nothing answers on the POS address"
    );
    let st = s.run(&["pos", "status", "--output", "json"]).ok().json();
    assert_eq!(st["pos"]["running"], false, "{st}");
    s.run(&["pos", "start"]).ok();
    assert!(s.h.pos_answers(), "started: eth1 handed over again");
    s.run(&["pos", "restart"]).ok();
    assert!(s.h.pos_answers(), "restarted");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "order 1\n");

    // Restore from the backup server (this same host over SSH): the POS is stopped, the data
    // replaced after verification, and the POS started again on the new data.
    let backup = s.h.dir.path().join(format!("backups/tfrsync-{SHOP}"));
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::write(
        backup.join("orders.txt"),
        "order 1\norder 2 (from backup)\n",
    )
    .unwrap();
    let manifest = |dir: &std::path::Path| {
        let ok = std::process::Command::new("bash")
            .args(["-c", "sha256sum orders.txt > MANIFEST.sha256"])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    manifest(&backup);
    let key_on_host = s.h.root.join("etc/poscloud/backup_key");
    std::fs::create_dir_all(key_on_host.parent().unwrap()).unwrap();
    std::fs::copy(&s.h.client_key, &key_on_host).unwrap();
    let from = format!("ssh://{}@{}{}/", s.h.user, s.h.address, backup.display());
    let hk = s.h.host_key_pub.to_string_lossy().into_owned();
    let restore = [
        "pos",
        "restore",
        "--from",
        &from,
        "--source-key-file",
        "/etc/poscloud/backup_key",
        "--source-host-key-file",
        &hk,
    ];
    s.run(&restore).ok();
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}/podman.sock", s.h.dir.path().display()),
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        docker(&["exec", "pos", "cat", "/usr2/orders.txt"]),
        "order 1\norder 2 (from backup)\n",
        "the running POS sees the restored data"
    );
    assert!(s.h.pos_answers());

    // A newer backup whose file no longer matches its manifest: refused, and the POS stays
    // stopped on its previous data.
    std::fs::write(backup.join("orders.txt"), "order 3\n").unwrap();
    manifest(&backup);
    std::fs::write(backup.join("orders.txt"), "tampered\n").unwrap();
    let r = s.run(&restore);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("orders.txt") && r.stderr.contains("POS stays stopped"),
        "{}",
        r.stderr
    );
    let st = s.run(&["pos", "status", "--output", "json"]).ok().json();
    assert_eq!(st["pos"]["running"], false, "{st}");
    s.run(&["pos", "start"]).ok();
    assert_eq!(
        docker(&["exec", "pos", "cat", "/usr2/orders.txt"]),
        "order 1\norder 2 (from backup)\n"
    );
    assert_eq!(
        s.rig.count_parameters(),
        6,
        "host key, bootstrap, stage, backup, ready and restore state; no lock left"
    );

    // pos connect over SSH as centos: docker exec through sudo (the socket is root's), with
    // the key pinned from the console.
    s.poscloud(["pos", "connect"])
        .args(s.h.ssh_args())
        .stdin(b"cat /usr2/orders.txt; exit\n")
        .run()
        .ok()
        .stdout_has("order 2 (from backup)");
}
