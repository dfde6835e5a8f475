//! provision through the stage phase, then `pos status|stop|start|restart`, through the
//! binary: the emulator for AWS, a test host with a real container engine for the server.

mod common;
use common::host::TestHost;
use common::{Rig, Run};

const SHOP: &str = "78901234";

struct Setup {
    rig: Rig,
    h: TestHost,
    stack: String,
}

fn setup() -> Setup {
    let rig = Rig::new();
    let h = TestHost::up("posl1", 43, true);
    h.finish_userdata();
    // The POS artifact on the host, and a stack whose [pos] section names it.
    let (_, sum) = h.pos_artifact("echo v1 >/opt/pos/app/version\n");
    let pos = format!(
        "\n[pos]\napp = \"rti\"\nimage = \"poscloud/base:test\"\nartifact_url = \"file:///srv/pos-rti.tar\"\nartifact_sha256 = \"{sum}\"\nmemory = \"256m\"\n"
    );
    let base = std::fs::read_to_string(common::repo().join("stacks/qa.toml")).unwrap();
    let stack = rig.home.path().join("pos.toml");
    std::fs::write(&stack, base + &pos).unwrap();
    Setup {
        stack: stack.to_string_lossy().into_owned(),
        rig,
        h,
    }
}

impl Setup {
    fn run(&self, args: &[&str]) -> Run {
        let key = self.h.client_key.to_string_lossy().into_owned();
        let hk = self.h.host_key_pub.to_string_lossy().into_owned();
        let addr = self.h.ssh_address();
        let mut a: Vec<&str> = args.to_vec();
        a.extend([
            "--shop",
            SHOP,
            "--env",
            "qa",
            "--stack",
            &self.stack,
            "--ssh",
            &addr,
            "--ssh-key",
            &key,
            "--host-key-file",
            &hk,
        ]);
        self.rig.run(&a)
    }
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
        !s.h.pos_answers(),
        "stopped: nothing answers on the POS address"
    );
    let st = s.run(&["pos", "status", "--output", "json"]).ok().json();
    assert_eq!(st["pos"]["running"], false, "{st}");
    s.run(&["pos", "start"]).ok();
    assert!(s.h.pos_answers(), "started: eth1 handed over again");
    s.run(&["pos", "restart"]).ok();
    assert!(s.h.pos_answers(), "restarted");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "order 1\n");
    assert_eq!(
        s.rig.count_parameters(),
        3,
        "host key, bootstrap and stage state; no lock left"
    );
}
