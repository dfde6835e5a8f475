//! `vpn create|list|status|sheet|delete` through the binary: the emulator for AWS (the
//! location's settings and its key in SSM), a test host with the POS staged (reached the
//! default way: SSM Run Command through the agent stand-in), and a real strongSwan peer
//! standing for the florist's router.
//!
//! The key never travels in the command: the host reads the SecureString itself with its
//! role's credentials from IMDS (vpn.sh's SigV4 request). Looser than AWS: the emulator's
//! IMDS (moto's) hands out fixed credentials for any caller, and moto checks no signature;
//! the host reaches both through a proxy on its veth (POSCLOUD_IMDS_URL / POSCLOUD_SSM_URL,
//! honoured only on a test host).

mod common;
use common::vpn::{Peer, Pos};
use common::{Rig, Run};
use std::os::unix::fs::PermissionsExt;

const SHOP: &str = "83000001";

fn run(rig: &Rig, _pos: &Pos, args: &[&str]) -> Run {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--shop", SHOP, "--env", "qa"]);
    rig.run(&a)
}

/// `vpn sheet --reveal [--next] --psk-file HOME/FILE`: the run and the key it wrote.
fn reveal(rig: &Rig, pos: &Pos, location: &str, file: &str, next: bool) -> (Run, String) {
    let path = rig.home.path().join(file);
    let f = path.to_string_lossy().into_owned();
    let mut args = vec![
        "vpn",
        "sheet",
        "--location",
        location,
        "--reveal",
        "--psk-file",
        &f,
    ];
    if next {
        args.push("--next");
    }
    let out = run(rig, pos, &args).ok();
    let key = std::fs::read_to_string(&path).unwrap().trim().to_string();
    (out, key)
}

#[test]
fn a_location_is_created_configured_from_its_sheet_and_deleted() {
    let rig = Rig::new();
    let pos = Pos::up("vpnb1", 40);
    let _host_proxy = pos.boot(&rig, SHOP);
    rig.provision_infra(SHOP, "qa").ok();
    let eip = rig.pos_eip();
    let mut peer = Peer::up(&pos, "b1", 5);
    peer.pos_id = eip.clone();
    let (peer_ip, peer_lan) = (peer.ip.clone(), peer.lan.clone());
    let create = [
        "vpn",
        "create",
        "--location",
        "mainstore",
        "--peer-ip",
        &peer_ip,
        "--peer-net",
        &peer_lan,
    ];

    // The router has no key yet: created, not up, and the command says what to do.
    let first = run(&rig, &pos, &create).ok();
    assert!(first.stderr.contains("not up yet"), "{}", first.stderr);

    // The sheet: everything the router admin needs; the key only with --reveal, into a
    // file only its owner can read.
    let sheet = run(&rig, &pos, &["vpn", "sheet", "--location", "mainstore"]).ok();
    for want in [
        eip.as_str(),
        peer.ip.as_str(),
        "192.168.222.0/24",
        "aes256gcm16",
        "(hidden",
    ] {
        assert!(sheet.stdout.contains(want), "{want} in:\n{}", sheet.stdout);
    }
    let (revealed, psk) = reveal(&rig, &pos, "mainstore", "mainstore.psk", false);
    let file = rig.home.path().join("mainstore.psk");
    assert_eq!(psk.len(), 44, "32 bytes, base64");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The router gets the key; the same create again brings the tunnel up (same key).
    peer.configure("2", &psk);
    let second = run(
        &rig,
        &pos,
        &["--output", "json"]
            .iter()
            .chain(create.iter())
            .copied()
            .collect::<Vec<_>>(),
    )
    .ok();
    assert_eq!(second.json()["tunnel"]["state"], "up", "{}", second.stdout);
    assert!(
        pos.ping(&peer.lan_ip()),
        "traffic passes through the tunnel"
    );
    let status = run(&rig, &pos, &["--output", "json", "vpn", "status"])
        .ok()
        .json();
    assert_eq!(status["locations"][0]["location"], "mainstore", "{status}");
    assert_eq!(status["locations"][0]["up"], true, "{status}");
    let text = run(&rig, &pos, &["vpn", "status"]).ok();
    assert!(
        text.stdout.contains("mainstore") && text.stdout.contains("established"),
        "{}",
        text.stdout
    );
    let list = run(&rig, &pos, &["vpn", "list"]).ok();
    assert!(
        list.stdout.contains("mainstore") && list.stdout.contains(&peer.ip),
        "{}",
        list.stdout
    );

    // Rotation: the new key waits until the router has it; the tunnel keeps the old one.
    run(&rig, &pos, &["vpn", "rotate", "--location", "mainstore"]).ok();
    assert!(pos.ping(&peer.lan_ip()), "still up on the old key");
    let again = run(&rig, &pos, &["vpn", "rotate", "--location", "mainstore"]);
    assert_eq!(
        again.code, 2,
        "a pending rotation is not replaced: {}",
        again.stderr
    );
    let (_, new_psk) = reveal(&rig, &pos, "mainstore", "next.psk", true);
    assert_ne!(new_psk, psk);
    peer.configure("2", &new_psk);
    let confirmed = run(
        &rig,
        &pos,
        &[
            "--output",
            "json",
            "vpn",
            "rotate",
            "--location",
            "mainstore",
            "--confirm",
        ],
    )
    .ok();
    assert_eq!(
        confirmed.json()["tunnel"]["state"],
        "up",
        "{}",
        confirmed.stdout
    );
    assert!(pos.ping(&peer.lan_ip()), "up on the new key");
    let rec = run(&rig, &pos, &["--output", "json", "vpn", "list"])
        .ok()
        .json();
    assert!(rec["locations"][0]["psk_next_since"].is_null(), "{rec}");
    // --now: a key the router does not have yet brings the tunnel down, and says so.
    let now = run(
        &rig,
        &pos,
        &["vpn", "rotate", "--location", "mainstore", "--now"],
    );
    assert_eq!(now.code, 1, "{}", now.stderr);
    assert!(
        now.stderr.contains("authentication failed"),
        "{}",
        now.stderr
    );
    let st = run(&rig, &pos, &["--output", "json", "vpn", "status"])
        .ok()
        .json();
    assert_eq!(st["locations"][0]["up"], false, "{st}");
    let (_, third_psk) = reveal(&rig, &pos, "mainstore", "now.psk", false);
    peer.configure("2", &third_psk);
    run(&rig, &pos, &["vpn", "start"]).ok();
    assert!(
        pos.ping(&peer.lan_ip()),
        "up again once the router has the key"
    );

    // One location stopped through poscloud stays down until it is started by name.
    run(&rig, &pos, &["vpn", "stop", "--location", "mainstore"]).ok();
    assert!(pos.silent(&peer.lan_ip()), "stopped");
    let st = run(&rig, &pos, &["vpn", "status"]).ok();
    assert!(st.stdout.contains("stopped"), "{}", st.stdout);
    run(&rig, &pos, &["vpn", "start", "--location", "mainstore"]).ok();
    assert!(pos.ping(&peer.lan_ip()), "started again");

    // A second location may not overlap the first one's networks (refused before any write).
    rig.proxy.reset();
    let overlap = run(
        &rig,
        &pos,
        &[
            "vpn",
            "create",
            "--location",
            "annex",
            "--peer-ip",
            "5.5.5.60",
            "--peer-net",
            "10.50.0.128/25",
        ],
    );
    assert_eq!(overlap.code, 2, "{}", overlap.stderr);
    assert!(
        overlap.stderr.contains("of location mainstore"),
        "{}",
        overlap.stderr
    );
    assert_eq!(rig.proxy.writes(), Vec::<String>::new());

    // The key is in SSM as a SecureString and nowhere in output or journal.
    let param = rig.block(async {
        rig.ssm
            .get_parameter()
            .name(format!("/poscloud/{SHOP}/qa/vpn-psk/mainstore"))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(
        param.parameter().unwrap().r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    for text in [
        &first.stdout,
        &first.stderr,
        &sheet.stdout,
        &revealed.stdout,
        &revealed.stderr,
        &second.stdout,
        &second.stderr,
        &journal,
        &now.stdout,
        &now.stderr,
    ] {
        for key in [&psk, &new_psk, &third_psk] {
            assert!(!text.contains(key.as_str()), "a key leaked");
        }
    }

    // Delete: the tunnel, the host's files and both parameters go.
    run(&rig, &pos, &["vpn", "delete", "--location", "mainstore"]).ok();
    assert!(!pos
        .h
        .root
        .join("etc/poscloud/vpn/conf.d/mainstore.secrets")
        .exists());
    let after = run(&rig, &pos, &["--output", "json", "vpn", "list"])
        .ok()
        .json();
    assert_eq!(after["locations"].as_array().unwrap().len(), 0, "{after}");
    assert!(pos.silent(&peer.lan_ip()), "the tunnel is gone");

    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok();
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
}

#[test]
fn provision_keeps_the_locations_the_stack_declares() {
    let rig = Rig::new();
    let pos = Pos::up("vpnb2", 49);
    let _host_proxy = pos.boot(&rig, SHOP);
    let (url, sum) = pos.h.pos_artifact("true\n");
    let base = std::fs::read_to_string(common::repo().join("stacks/qa.toml")).unwrap();
    let stack = rig.home.path().join("vpn.toml");
    std::fs::write(
        &stack,
        format!(
            "{base}\n[pos]\napp = \"rti\"\nimage = \"poscloud/base:test\"\nartifact_url = \"{url}\"\nartifact_sha256 = \"{sum}\"\nmemory = \"256m\"\n\n[[vpn]]\nlocation = \"depot\"\npeer_ip = \"5.5.5.50\"\npeer_nets = [\"10.50.0.0/24\"]\n"
        ),
    )
    .unwrap();
    let stack = stack.to_string_lossy().into_owned();
    let p = |extra: &[&str]| {
        let mut a = vec!["provision", "--stack", stack.as_str()];
        a.extend_from_slice(extra);
        run(&rig, &pos, &a)
    };
    p(&["--until", "infra"]).ok();
    let eip = rig.pos_eip();
    let mut peer = Peer::up(&pos, "b2", 5);
    peer.pos_id = eip;

    // The vpn phase makes the location and its key; the router has none yet.
    let out = p(&["--output", "json"]).ok();
    let vpn = &out.json()["summary"]["phases"]["vpn"]["result"];
    assert_eq!(vpn["tunnels"]["depot"], "waiting for the peer", "{vpn}");
    let (_, psk) = reveal(&rig, &pos, "depot", "depot.psk", false);
    peer.configure("2", &psk);
    run(&rig, &pos, &["vpn", "start"]).ok();
    assert!(
        pos.ping(&peer.lan_ip()),
        "traffic passes once the router has the key"
    );
    assert!(
        !pos.h.agent_commands("poscloud vpn.sh").is_empty(),
        "vpn.sh ran through SSM"
    );
    // Converged: nothing to do, the tunnel stays.
    let again = p(&[]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert!(pos.ping(&peer.lan_ip()));
    // `list` shows the phases done and the VPN count from the records.
    let list = rig.run(&["--output", "json", "list"]).ok().json();
    let row = list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["shop"] == SHOP)
        .unwrap()
        .clone();
    for p in ["bootstrap", "stage", "vpn", "ready"] {
        assert!(
            row["phases"].as_array().unwrap().iter().any(|x| x == p),
            "{p}: {row}"
        );
    }
    assert_eq!(row["vpn_locations"], 1, "{row}");
    let text = rig.run(&["list"]).ok();
    let line = text.stdout.lines().find(|l| l.starts_with(SHOP)).unwrap();
    assert!(line.contains("ready") && line.contains(" 1 "), "{line}");

    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok();
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
}
