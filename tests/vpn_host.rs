//! vpn.sh run directly on a test host with the POS staged (eth1 in the holder `pos-net`),
//! against a real strongSwan peer: the florist's "mainstore" router, a network namespace
//! `pcv-*` of the test's own with its own charon, configured by the test (not by poscloud).
//!
//! The network (tests/common/vpn.rs): an "internet" bridge in the test host's namespace,
//! the POS SNATed to 5.5.5.1 as AWS does with its Elastic IP, peers at 5.5.5.10, .20, ….

mod common;
use base64::Engine;
use common::vpn::*;
use poscloud::remote::{Outcome, Script};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn sha256(data: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    sh(&["sha256sum", &f.path().to_string_lossy()])[..64].to_string()
}

fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

fn assert_up(out: &Outcome, location: &str) {
    assert_eq!(out.exit_code, 0, "{}", err(out));
    let r = out.result().expect("apply result");
    assert_eq!(r["location"], location, "{r}");
    assert_eq!(r["state"], "up", "{r}");
    assert_eq!(r["ike_sa"], "ESTABLISHED", "{r}");
    assert_eq!(r["child_sa"], "INSTALLED", "{r}");
}

/// `charon` was started as EPEL's /usr/libexec/strongswan/charon below the host's root, and
/// runs the file that path leads to.
fn assert_el_charon(pos: &Pos, charon: u32) {
    let el = pos.h.root.join("usr/libexec/strongswan/charon");
    let cmdline = std::fs::read(format!("/proc/{charon}/cmdline")).unwrap();
    let argv0 = String::from_utf8_lossy(cmdline.split(|b| *b == 0).next().unwrap()).into_owned();
    assert_eq!(std::path::Path::new(&argv0), el, "charon's command");
    let exe = std::fs::read_link(format!("/proc/{charon}/exe")).unwrap();
    assert_eq!(
        exe,
        std::fs::canonicalize(&el).unwrap(),
        "charon's executable"
    );
}

#[test]
fn apply_brings_the_tunnel_up_and_traffic_passes() {
    let pos = Pos::up("vpn1", 35);
    let mut peer = Peer::up(&pos, "a1", 5);
    let psk = new_psk();
    peer.configure("2", &psk);
    assert!(
        pos.silent(&peer.lan_ip()),
        "no way to the LAN before the tunnel"
    );

    let out = pos.apply("mainstore", &peer, &psk, "2");
    assert_up(&out, "mainstore");
    assert_eq!(out.result().unwrap()["esp"], "userspace");

    // charon runs in the holder's network namespace, with the recorded PID.
    let charon = pos.charon_pid().expect("charon.pid");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{charon}/comm"))
            .unwrap()
            .trim(),
        "charon"
    );
    let ns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    assert_eq!(ns(charon), ns(pos.holder_pid()));
    // It is the charon at EPEL's path below the host's root (a link to Debian's binary on
    // the test host): vpn.sh looks nowhere else, Debian's /usr/lib/ipsec/charon included.
    assert_el_charon(&pos, charon);
    let conf = std::fs::read_to_string(pos.conf().join("strongswan.conf")).unwrap();
    assert!(conf.contains("fips_mode = 0"), "{conf}");

    // Ping through the tunnel (10.50.0.0/24 is routed nowhere else).
    assert!(pos.ping(&peer.lan_ip()), "no ping through the tunnel");
    // A transfer from the florist's LAN into the POS container, checked by SHA-256.
    let blob = random_bytes(512 * 1024);
    peer.serve(&blob);
    let url = format!("http://{}:8080/blob", peer.lan_ip());
    let mut got = String::new();
    assert!(
        eventually(common::SETTLE, || {
            let (ok, out) = pos.h.docker(&[
                "exec",
                "pos",
                "sh",
                "-c",
                &format!("wget -q -O - {url} | sha256sum"),
            ]);
            got = out;
            ok && got.len() >= 64
        }),
        "no transfer: {got}"
    );
    assert_eq!(&got[..64], sha256(&blob));

    let st = pos.status("mainstore");
    assert_eq!(st["up"], true, "{st}");
    assert_eq!(st["ike_sa"], "ESTABLISHED", "{st}");
    assert_eq!(st["child_sa"], "INSTALLED", "{st}");
    assert!(st["bytes_in"].as_u64().unwrap() > 512 * 1024, "{st}");
    assert!(st["bytes_out"].as_u64().unwrap() > 0, "{st}");
    assert!(st["established_s"].is_u64(), "{st}");

    // The files: config and a root-only secrets file.
    use std::os::unix::fs::MetadataExt;
    let secrets = std::fs::metadata(pos.conf().join("conf.d/mainstore.secrets")).unwrap();
    assert_eq!(secrets.mode() & 0o777, 0o600);
    assert_eq!(secrets.uid(), 0);
    let conf = std::fs::read_to_string(pos.conf().join("conf.d/mainstore.conf")).unwrap();
    for want in [
        "version = 2",
        "proposals = aes256gcm16-prfsha256-ecp256,aes256gcm16-prfsha256-x25519",
        "esp_proposals = aes256gcm16-ecp256",
        "dpd_delay = 30s",
        "dpd_action = restart",
        "start_action = start",
        "id = 5.5.5.1",
    ] {
        assert!(conf.contains(want), "{want} in {conf}");
    }

    // stop: charon gone, tunnel down; start: up again from the files.
    let out = pos.vpn("stop", &[]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert!(eventually(common::SETTLE, || !alive(charon)));
    assert!(pos.silent(&peer.lan_ip()));
    let out = pos.vpn("start", &[]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    let r = out.result().unwrap();
    assert_eq!(r["locations"][0]["up"], true, "{r}");
    assert!(pos.ping(&peer.lan_ip()));

    // The POS stopped (its tunnels stop first: charon would keep the holder's namespace
    // alive) and staged again: the holder has a new namespace; start brings charon up there.
    let before = pos.charon_pid().unwrap();
    let old_holder = pos.holder_pid();
    let out = pos.run(&Script::Pos, &[("ACTION", "stop")]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert!(eventually(common::SETTLE, || !alive(before)));
    pos.stage();
    // (Not the namespace's inode: the old one is freed with charon and may be reused.)
    assert_ne!(old_holder, pos.holder_pid(), "a new holder");
    let out = pos.vpn("start", &[]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    let after = pos.charon_pid().unwrap();
    assert_ne!(after, before);
    assert_eq!(ns(after), ns(pos.holder_pid()));
    assert!(pos.ping(&peer.lan_ip()));
}

#[test]
fn two_locations_and_delete_one_keeps_the_other() {
    let mut pos = Pos::up("vpn2", 36);
    // No IPSEC_USERSPACE: the script's probe finds that this kernel has no ESP.
    pos.userspace = false;
    let mut a = Peer::up(&pos, "b1", 5);
    let mut b = Peer::up(&pos, "b2", 6);
    let (ka, kb) = (new_psk(), new_psk());
    a.configure("2", &ka);
    b.configure("2", &kb);
    let out = pos.apply("store-a", &a, &ka, "2");
    assert_up(&out, "store-a");
    assert_eq!(
        out.result().unwrap()["esp"],
        "userspace",
        "no ESP in this kernel"
    );
    assert_up(&pos.apply("store-b", &b, &kb, "2"), "store-b");
    assert!(pos.ping(&a.lan_ip()));
    assert!(pos.ping(&b.lan_ip()));

    let out = pos.vpn("status", &[]);
    let r = out.result().unwrap();
    let locs = r["locations"].as_array().unwrap();
    assert_eq!(locs.len(), 2, "{r}");
    assert!(locs.iter().all(|l| l["up"] == true), "{r}");

    let out = pos.vpn("delete", &[("LOCATION", "store-a")]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert_eq!(out.result().unwrap()["deleted"], "store-a");
    assert!(!pos.conf().join("conf.d/store-a.conf").exists());
    assert!(!pos.conf().join("conf.d/store-a.secrets").exists());
    assert!(pos.conf().join("conf.d/store-b.secrets").exists());
    assert!(pos.silent(&a.lan_ip()), "store-a is gone");
    assert!(pos.ping(&b.lan_ip()), "store-b stays up");
    let st = pos.status("store-b");
    assert_eq!(st["up"], true, "{st}");
    let r = pos.vpn("status", &[]).result().unwrap();
    assert_eq!(r["locations"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn a_wrong_key_fails_with_the_reason_and_the_right_key_brings_it_up() {
    let pos = Pos::up("vpn3", 37);
    let mut peer = Peer::up(&pos, "c1", 5);
    let psk = new_psk();
    peer.configure("2", &new_psk());

    let out = pos.apply("mainstore", &peer, &psk, "2");
    assert_eq!(out.exit_code, 1, "{}", err(&out));
    let r = out.result().expect("apply result");
    assert_ne!(r["state"], "up", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("authentication failed"), "{r}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication failed"),
        "{}",
        err(&out)
    );
    // charon's own log says so, on the location's lines (the reason is read from them).
    let log = std::fs::read_to_string(pos.state().join("charon.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("<mainstore|") && l.contains("AUTHENTICATION_FAILED")),
        "{log}"
    );
    let st = pos.status("mainstore");
    assert_eq!(st["up"], false, "{st}");
    assert_ne!(st["child_sa"], "INSTALLED", "{st}");
    assert!(pos.silent(&peer.lan_ip()));

    // The florist's admin enters the right key: apply again brings it up.
    peer.configure("2", &psk);
    assert_up(&pos.apply("mainstore", &peer, &psk, "2"), "mainstore");
    assert!(pos.ping(&peer.lan_ip()));
    assert_eq!(pos.status("mainstore")["up"], true);

    // A new key on the POS side (a rotation) before the router has it: apply re-establishes
    // the tunnel with the new key, which the router refuses; once it has it, it comes up.
    let rotated = new_psk();
    let out = pos.apply("mainstore", &peer, &rotated, "2");
    assert_eq!(out.exit_code, 1, "{}", err(&out));
    assert!(out.stdout_text().contains("changed"), "{}", err(&out));
    let r = out.result().unwrap();
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{r}"
    );
    assert!(pos.silent(&peer.lan_ip()), "the old SA was closed");
    peer.configure("2", &rotated);
    assert_up(&pos.apply("mainstore", &peer, &rotated, "2"), "mainstore");
    assert!(pos.ping(&peer.lan_ip()));
}

#[test]
fn ikev1_interoperates_with_a_legacy_peer() {
    let pos = Pos::up("vpn4", 38);
    let mut peer = Peer::up(&pos, "d1", 5);
    let psk = new_psk();
    peer.configure("1", &psk);
    let out = pos.apply("oldstore", &peer, &psk, "1");
    assert_up(&out, "oldstore");
    let conf = std::fs::read_to_string(pos.conf().join("conf.d/oldstore.conf")).unwrap();
    assert!(conf.contains("version = 1"), "{conf}");
    assert!(
        conf.contains("proposals = aes256-sha256-ecp256,aes256-sha256-modp2048"),
        "{conf}"
    );
    assert!(pos.ping(&peer.lan_ip()));
    let st = pos.status("oldstore");
    assert_eq!(st["up"], true, "{st}");
    assert!(st["bytes_out"].as_u64().unwrap() > 0, "{st}");
}

#[test]
fn one_location_stops_alone_and_the_eth1_hook_brings_the_tunnels_back() {
    let pos = Pos::up("vpn6", 50);
    let mut a = Peer::up(&pos, "f1", 5);
    let mut b = Peer::up(&pos, "f2", 6);
    let (ka, kb) = (new_psk(), new_psk());
    a.configure("2", &ka);
    b.configure("2", &kb);
    assert_up(&pos.apply("store-a", &a, &ka, "2"), "store-a");
    assert_up(&pos.apply("store-b", &b, &kb, "2"), "store-b");
    assert!(pos.ping(&a.lan_ip()));
    assert!(pos.ping(&b.lan_ip()));

    // One location stopped: down, the other keeps running, status says "stopped".
    let out = pos.vpn("stop", &[("LOCATION", "store-a")]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert_eq!(out.result().unwrap()["stopped"], "store-a");
    assert!(pos.conf().join("conf.d/store-a.conf.stopped").exists());
    assert!(!pos.conf().join("conf.d/store-a.conf").exists());
    assert!(pos.silent(&a.lan_ip()), "store-a is down");
    assert!(pos.ping(&b.lan_ip()), "store-b keeps running");
    let st = pos.status("store-a");
    assert_eq!(
        (st["stopped"].clone(), st["up"].clone()),
        (true.into(), false.into()),
        "{st}"
    );
    assert_eq!(pos.status("store-b")["up"], true);

    // Everything stopped and started again: store-a stays down until it is named.
    assert_eq!(pos.vpn("stop", &[]).exit_code, 0);
    let out = pos.vpn("start", &[]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    let r = out.result().unwrap();
    assert_eq!(r["locations"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["locations"][0]["location"], "store-b", "{r}");
    assert!(pos.ping(&b.lan_ip()));
    assert!(pos.silent(&a.lan_ip()), "store-a stays stopped");
    let out = pos.vpn("start", &[("LOCATION", "store-a")]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    let r = out.result().unwrap();
    assert_eq!(r["locations"][0]["location"], "store-a", "{r}");
    assert_eq!(r["locations"][0]["up"], true, "{r}");
    assert!(pos.ping(&a.lan_ip()));
    for action in ["stop", "start"] {
        let out = pos.vpn(action, &[("LOCATION", "nowhere")]);
        assert_eq!(out.exit_code, 1, "{action}");
        assert!(err(&out).contains("no location nowhere"), "{}", err(&out));
    }

    // apply installed vpn.sh where the eth1 hook (pos.sh watch) finds it.
    let installed = pos.h.root.join("usr/local/libexec/poscloud/vpn.sh");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), VPN.body());
    let log = pos.h.dir.path().join("watch.log");
    let watch = pos.h.start_watch(&log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(common::SETTLE, || read_log().contains("on each start")),
        "{}",
        read_log()
    );
    let ns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    let both_up = || {
        eventually(common::SETTLE, || {
            pos.run(&Script::Pos, &[("ACTION", "ready"), ("POS_IP", POS_IP)])
                .exit_code
                == 0
                && pos.ping(&a.lan_ip())
                && pos.ping(&b.lan_ip())
        })
    };

    // The holder restarted outside poscloud: the hook starts charon in its new namespace and
    // both tunnels come back, with no vpn command.
    let before = pos.charon_pid().unwrap();
    let (ok, _) = pos.h.docker(&["restart", "pos-net"]);
    assert!(ok);
    assert!(
        both_up(),
        "tunnels not back after a holder restart: {}",
        read_log()
    );
    let after = pos.charon_pid().unwrap();
    assert_ne!(after, before, "{}", read_log());
    assert!(read_log().contains("restarting it"), "{}", read_log());
    assert!(!alive(before), "the old charon is gone");
    assert_eq!(ns(after), ns(pos.holder_pid()));

    // A reboot: the containers stop (pos.sh stop stops the tunnels first, so no charon keeps
    // the old namespace), then the engine starts them: the hook brings everything back.
    let out = pos.run(&Script::Pos, &[("ACTION", "stop")]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert!(eventually(common::SETTLE, || !alive(after)));
    let (ok, _) = pos.h.docker(&["start", "pos-net", "pos"]);
    assert!(ok);
    assert!(both_up(), "tunnels not back after a reboot: {}", read_log());
    assert!(pos.status("store-a")["up"] == true && pos.status("store-b")["up"] == true);
    assert!(watch.stop(), "the hook or its docker events survived TERM");
}

/// strongSwan only where EPEL installs it, below the host's root: without charon or the
/// kernel-libipsec plugin there, apply fails naming the file and the EPEL package (Debian's
/// files under /usr/lib/ipsec stay on this machine). EPEL 7's 5.7.2 defaults the openssl
/// plugin to FIPS mode 2 (POSCLOUD_TEST_FIPS_MODE=2 stands for it: Debian's OpenSSL 3 has no
/// FIPS provider, so the plugin refuses to load as it does on a CentOS host that cannot enter
/// FIPS mode): no ECP group, and apply says so before it writes anything.
#[test]
fn missing_strongswan_parts_and_a_refused_openssl_plugin_fail_plainly() {
    let pos = Pos::up("vpn7", 19);
    let psk = new_psk();
    let apply = |extra: &[(&str, &str)]| {
        let mut inputs = vec![
            ("LOCATION", "mainstore"),
            ("PEER_IP", "5.5.5.10"),
            ("PEER_NETS", "10.50.0.0/24"),
            ("LOCAL_NET", POS_NET),
            ("LOCAL_IP", POS_IP),
            ("LOCAL_ID", EIP),
            ("PSK", psk.as_str()),
        ];
        inputs.extend_from_slice(extra);
        pos.vpn("apply", &inputs)
    };
    let written = || pos.conf().join("conf.d/mainstore.conf").exists();
    let aside = |rel: &str, back: bool| {
        let f = pos.h.root.join(rel);
        let a = f.with_extension("aside");
        let (from, to) = if back { (&a, &f) } else { (&f, &a) };
        std::fs::rename(from, to).unwrap();
    };

    for (rel, package) in [
        ("usr/libexec/strongswan/charon", "EPEL package strongswan)"),
        (
            "usr/lib64/strongswan/plugins/libstrongswan-kernel-libipsec.so",
            "EPEL package strongswan-libipsec)",
        ),
    ] {
        aside(rel, false);
        let out = apply(&[]);
        aside(rel, true);
        assert_eq!(out.exit_code, 1, "{}", err(&out));
        let e = String::from_utf8_lossy(&out.stderr);
        let want = format!("no {} ({package}", pos.h.root.join(rel).display());
        assert!(e.contains(&want), "{want} in {}", err(&out));
        assert!(pos.charon_pid().is_none(), "no charon started");
        assert!(!written());
    }

    let out = apply(&[("POSCLOUD_TEST_FIPS_MODE", "2")]);
    assert_eq!(out.exit_code, 1, "{}", err(&out));
    let e = String::from_utf8_lossy(&out.stderr);
    for want in [
        "mainstore: charon has no key exchange group ECP_256",
        "its openssl plugin, which has the ECP groups, did not load",
        "plugin 'openssl': failed to load",
        "FIPS",
    ] {
        assert!(e.contains(want), "{want:?} in {}", err(&out));
    }
    assert!(!written(), "nothing configured");
    let conf = std::fs::read_to_string(pos.conf().join("strongswan.conf")).unwrap();
    assert!(conf.contains("fips_mode = 2"), "{conf}");
    let charon = pos.charon_pid().expect("charon runs");
    assert_el_charon(&pos, charon);

    // `start` (the eth1 hook's) checks each location from its file the same way.
    let conn = "connections {\n  mainstore {\n    remote_addrs = 5.5.5.10\n    proposals = aes256gcm16-prfsha256-ecp256\n    local {\n      auth = psk\n    }\n    remote {\n      auth = psk\n    }\n    children {\n      mainstore {\n        esp_proposals = aes256gcm16-ecp256\n      }\n    }\n  }\n}\n";
    std::fs::write(pos.conf().join("conf.d/mainstore.conf"), conn).unwrap();
    let out = pos.vpn("start", &[]);
    assert_eq!(out.exit_code, 1, "{}", err(&out));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("mainstore is not up: charon has no key exchange group ECP_256"),
        "{}",
        err(&out)
    );
    assert_eq!(out.result().unwrap()["locations"][0]["up"], false);
    assert_eq!(pos.charon_pid(), Some(charon), "the same charon");
    let out = pos.vpn("stop", &[]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert!(eventually(common::SETTLE, || !alive(charon)));
}

/// Every process's command line, read over and over until `stop`; the ones holding `needle`.
fn scan_cmdlines(
    needle: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut hits = Vec::new();
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            rounds += 1;
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                if let Ok(c) = std::fs::read(format!("/proc/{name}/cmdline")) {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    if c.contains(&needle) {
                        hits.push(format!("{name}: {}", c.replace(&needle, "<PSK>")));
                    }
                }
            }
        }
        (rounds, hits)
    })
}

#[test]
fn the_psk_is_never_in_output_logs_or_command_lines() {
    let pos = Pos::up("vpn5", 39);
    let mut peer = Peer::up(&pos, "e1", 5);
    let psk = new_psk();
    peer.configure("2", &psk);

    let stop = Arc::new(AtomicBool::new(false));
    let scan = scan_cmdlines(psk.clone(), stop.clone());
    let out = pos.apply("mainstore", &peer, &psk, "2");
    let status = pos.vpn("status", &[]);
    let delete_and_again = [
        pos.vpn("delete", &[("LOCATION", "mainstore")]),
        pos.apply("mainstore", &peer, &psk, "2"),
    ];
    stop.store(true, Ordering::Relaxed);
    let (rounds, hits) = scan.join().unwrap();
    assert_up(&out, "mainstore");
    assert_up(&delete_and_again[1], "mainstore");
    assert!(
        rounds > 10,
        "the scan ran while apply ran ({rounds} rounds)"
    );
    assert!(hits.is_empty(), "the PSK on command lines: {hits:?}");

    for o in [&out, &status, &delete_and_again[0], &delete_and_again[1]] {
        assert!(!o.stdout_text().contains(&psk), "PSK in stdout");
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains(&psk),
            "PSK in stderr"
        );
    }
    for f in ["charon.log", "charon.out"] {
        let text = std::fs::read_to_string(pos.state().join(f)).unwrap_or_default();
        assert!(!text.contains(&psk), "PSK in {f}");
    }
    let log = std::fs::read_to_string(pos.state().join("charon.log")).unwrap();
    assert!(log.contains("mainstore"), "charon logs to its file: {log}");
    // charon did not inherit it either (the script unsets it before starting anything).
    let charon = pos.charon_pid().unwrap();
    let env = std::fs::read(format!("/proc/{charon}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&env).contains(&psk),
        "PSK in charon's environment"
    );
    // Only in the root-only secrets file.
    let secrets = std::fs::read_to_string(pos.conf().join("conf.d/mainstore.secrets")).unwrap();
    assert!(secrets.contains(&psk));
}

/// Bad inputs are refused (exit 2) before anything is written or started. Validation needs
/// no host: the script runs here with its own root.
#[test]
fn bad_inputs_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let psk = new_psk();
    let good: Vec<(&str, &str)> = vec![
        ("ACTION", "apply"),
        ("LOCATION", "mainstore"),
        ("PEER_IP", "5.5.5.10"),
        ("PEER_NETS", "10.50.0.0/24,10.51.0.0/16"),
        ("LOCAL_NET", POS_NET),
        ("LOCAL_IP", POS_IP),
        ("LOCAL_ID", EIP),
        ("PSK", &psk),
    ];
    let run = |over: &[(&str, &str)]| {
        let mut c = Command::new(common::host_bash());
        c.arg(common::repo().join("bootstrap/vpn.sh"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("POSCLOUD_ROOT", root.path());
        for (k, v) in good.iter().chain(over) {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
    let cases: Vec<(&str, &str)> = vec![
        ("ACTION", "up"),
        ("ACTION", ""),
        ("LOCATION", "Main"),
        ("LOCATION", "9store"),
        ("LOCATION", "main store"),
        ("LOCATION", "a-very-long-location-name-over-31"),
        ("LOCATION", "x;rm -rf /"),
        ("PEER_IP", "198.51.100"),
        ("PEER_IP", "198.51.100.256"),
        ("PEER_IP", "198.51.100.010"),
        ("PEER_NETS", "10.50.0.0"),
        ("PEER_NETS", "10.50.0.0/33"),
        ("PEER_NETS", "10.50.0.0/24,"),
        ("PEER_NETS", "10.50.0.0/24,,10.60.0.0/24"),
        ("PEER_NETS", "10.50.0.0/24 10.60.0.0/24"),
        ("LOCAL_NET", "192.168.222.0/"),
        ("LOCAL_IP", "eth1"),
        ("LOCAL_ID", "pos.example"),
        ("IKE_VERSION", "3"),
        ("PROPOSALS", "aes256-sha256;x"),
        ("ESP_PROPOSALS", "aes256 gcm"),
        ("PSK", ""),
        ("PSK", &short),
        ("PSK", "not base64 at all, not at all, not at all!!!!"),
        ("PSK", "c2hvcnQ="),
        ("IPSEC_USERSPACE", "yes"),
        ("CONTAINER", "../pos"),
    ];
    for (k, v) in cases {
        let out = run(&[(k, v)]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{k}={v:?}: {text}");
        assert!(text.contains("vpn: "), "{k}={v:?}: a reason: {text}");
        assert!(!text.contains(&psk), "{k}={v:?}: the PSK in the output");
        if k == "PSK" && !v.is_empty() {
            assert!(!text.contains(v), "the bad PSK in the output: {text}");
        }
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(left.is_empty(), "{k}={v:?}: files written: {left:?}");
    }
    for (action, loc) in [("delete", ""), ("delete", "Bad"), ("status", "bad_name")] {
        let out = run(&[("ACTION", action), ("LOCATION", loc)]);
        assert_eq!(out.status.code(), Some(2), "{action} {loc:?}");
    }
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none());
}

/// A stand-in for IMDSv2 and SSM's GetParameter on loopback: answers `value` (or HTTP 400
/// when None) and records each request's first line and headers.
fn fake_aws(value: Option<String>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let first = head.lines().next().unwrap_or("").to_string();
            let (status, answer) = if first.starts_with("PUT /latest/api/token") {
                (200, "token-1".to_string())
            } else if first.starts_with("GET /latest/meta-data/iam/security-credentials/ ") {
                (200, "pos-role\n".to_string())
            } else if first.starts_with("GET /latest/meta-data/iam/security-credentials/pos-role") {
                (
                    200,
                    r#"{"AccessKeyId":"AKIDTEST","SecretAccessKey":"s3cret","Token":"tok"}"#
                        .to_string(),
                )
            } else if first.starts_with("POST / ") {
                match &value {
                    Some(v) => (200, format!(r#"{{"Parameter":{{"Value":"{v}"}}}}"#)),
                    None => (400, r#"{"__type":"ParameterNotFound"}"#.to_string()),
                }
            } else {
                (404, String::new())
            };
            log.lock()
                .unwrap()
                .push(format!("{head}{}", String::from_utf8_lossy(&body)));
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, seen)
}

/// Over SSM the key is not an input: the host reads its SecureString with the instance role
/// (IMDSv2 credentials, a SigV4-signed GetParameter). Run here against a stand-in.
#[test]
fn the_key_can_come_from_ssm_read_by_the_host() {
    for (version, py) in common::host_pythons() {
        key_from_ssm(&version, py.path());
    }
}

/// The SigV4 GetParameter of vpn.sh, run by python `version` (found first on PATH in `py`).
fn key_from_ssm(version: &str, py: &std::path::Path) {
    let root = tempfile::tempdir().unwrap();
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", py.display());
    let run = |value: Option<String>| {
        let (url, seen) = fake_aws(value);
        let out = Command::new(common::host_bash())
            .arg(common::repo().join("bootstrap/vpn.sh"))
            .env_clear()
            .env("PATH", &path)
            .env("POSCLOUD_ROOT", root.path())
            .env("POSCLOUD_IMDS_URL", &url)
            .env("POSCLOUD_SSM_URL", format!("{url}/"))
            // No strongSwan below this root (nor an engine): a run that gets past the key
            // stops there, though the machine has Debian's swanctl in /usr/sbin.
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .envs([
                ("ACTION", "apply"),
                ("LOCATION", "mainstore"),
                ("PEER_IP", "5.5.5.10"),
                ("PEER_NETS", "10.50.0.0/24"),
                ("LOCAL_NET", POS_NET),
                ("LOCAL_IP", POS_IP),
                ("LOCAL_ID", EIP),
                ("PSK_PARAM", "/poscloud/12345678/prod/vpn/mainstore/psk"),
                ("REGION", "eu-central-1"),
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = seen.lock().unwrap().clone();
        (out.status.code(), text, seen)
    };

    let psk = new_psk();
    let (code, text, seen) = run(Some(psk.clone()));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "swanctl is not installed: no {}/usr/sbin/swanctl",
            root.path().display()
        )),
        "python {version} got past the key: {text}"
    );
    assert!(!text.contains(&psk), "the key in the output");
    let post = seen
        .iter()
        .find(|r| r.starts_with("POST"))
        .expect("a GetParameter");
    for want in [
        "x-amz-target: AmazonSSM.GetParameter",
        "x-amz-security-token: tok",
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/",
        "/eu-central-1/ssm/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=",
        r#""Name": "/poscloud/12345678/prod/vpn/mainstore/psk""#,
        r#""WithDecryption": true"#,
    ] {
        assert!(
            post.to_ascii_lowercase().contains(&want.to_ascii_lowercase()),
            "{want} in {post}"
        );
    }
    assert!(
        seen.iter().filter(|r| r.starts_with("GET")).all(|r| r
            .to_ascii_lowercase()
            .contains("x-aws-ec2-metadata-token: token-1")),
        "IMDSv2: {seen:?}"
    );

    // A stored value that is no key: bad input; SSM refusing: a failure with the reason.
    let (code, text, _) = run(Some("c2hvcnQ=".into()));
    assert_eq!(code, Some(2), "{text}");
    assert!(!text.contains("c2hvcnQ="), "{text}");
    let (code, text, _) = run(None);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("cannot read the key") && text.contains("HTTP 400"),
        "{text}"
    );
    assert!(!root.path().join("etc").exists(), "nothing configured");
}
