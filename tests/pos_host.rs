//! pos.sh run directly on a test host with a real container engine (podman's Docker API):
//! eth1 lives in the holder container `pos-net`, so the POS survives restarts outside
//! poscloud; the eth1 hook (ACTION=watch) hands eth1 over when the holder starts; and the
//! actions ready, commit, images and image-delete.

mod common;
use common::eventually;
use common::host::TestHost;
use poscloud::remote::{no_sink, Inputs, Outcome, Script};
use std::process::Command;
use std::time::Duration;

const POS_IP: &str = "192.168.222.233";
const DATA: &str = "var/lib/poscloud/data/rti";
/// A snapshot tag as `poscloud pos snapshot` makes them.
const SNAP: &str = "poscloud/rti-snapshot:12345678-20261123t120000z";

fn run_script(h: &TestHost, s: &Script, inputs: &Inputs) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        h.remote()
            .run(s, inputs, Duration::from_secs(300), no_sink()),
    )
    .unwrap()
}

/// pos.sh with ACTION and extra inputs.
fn pos(h: &TestHost, action: &str, extra: &[(&str, &str)]) -> Outcome {
    let mut inputs = Inputs::new().set("ACTION", action).unwrap();
    for (k, v) in extra {
        inputs = inputs.set(k, *v).unwrap();
    }
    run_script(h, &Script::Pos, &inputs)
}

fn stage_image(h: &TestHost, sha: &str, image: &str) -> Outcome {
    pos(
        h,
        "stage",
        &[
            ("SHOP", "12345678"),
            ("APP", "rti"),
            ("MOUNT_POINT", "/usr2"),
            ("HEALTH_CMD", "test -f /opt/pos/.installed"),
            ("IMAGE", image),
            ("POS_IP", POS_IP),
            ("PREFIX", "24"),
            ("GATEWAY", "192.168.222.1"),
            ("DATA_DIR", &format!("/{DATA}")),
            ("ARTIFACT_URL", "file:///srv/pos-rti.tar"),
            ("ARTIFACT_SHA256", sha),
            ("MEMORY", "256m"),
        ],
    )
}

/// A test host with the POS staged from the test base image and an order in its data.
fn staged(name: &str, index: u8) -> (TestHost, String) {
    let h = TestHost::up(name, index, true);
    let (_, sha) = h.pos_artifact("echo installed >/opt/pos/app/installed-by-test\n");
    let out = stage_image(&h, &sha, "poscloud/base:test");
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    let r = out.result().expect("stage result");
    assert_eq!(r["net_container"], "pos-net", "{r}");
    assert_eq!(r["hook"], "written", "a test host has no systemd: {r}");
    std::fs::write(h.root.join(DATA).join("orders.txt"), "order 1\n").unwrap();
    (h, sha)
}

fn err(o: &Outcome) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        o.stdout_text(),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn docker_ok(h: &TestHost, args: &[&str]) -> String {
    let (ok, out) = h.docker(args);
    assert!(ok, "docker {args:?} failed: {out}");
    out
}

/// eth1's IPv4 address and the default route as the POS container sees them.
fn pos_net(h: &TestHost) -> (Option<String>, String) {
    let (_, addr) = h.docker(&["exec", "pos", "ip", "-4", "-o", "addr", "show", "eth1"]);
    let (_, route) = h.docker(&["exec", "pos", "ip", "route", "show", "default"]);
    (addr.split_whitespace().nth(3).map(String::from), route)
}

fn eth1_on_host(h: &TestHost) -> bool {
    Command::new("ip")
        .args(["-n", &format!("pc-{}", h.name), "link", "show", "eth1"])
        .output()
        .unwrap()
        .status
        .success()
}

/// The data directory is only ever touched by the POS itself.
fn data_untouched(h: &TestHost) {
    let dir = h.root.join(DATA);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["orders.txt"], "{}", dir.display());
    assert_eq!(
        std::fs::read_to_string(dir.join("orders.txt")).unwrap(),
        "order 1\n"
    );
}

#[test]
fn eth1_stays_with_the_pos_across_restarts_outside_poscloud() {
    let (h, sha) = staged("psh1", 44);
    assert!(h.pos_answers());

    // The holder: the shop's hostname, no network of its own, nothing it could do.
    let holder = docker_ok(&h, &["inspect", "-f", "{{.Config.Hostname}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}} {{index .Config.Labels \"poscloud.role\"}}", "pos-net"]);
    assert!(holder.starts_with("pos-12345678 none true "), "{holder}");
    assert!(
        holder.contains("no-new-privileges")
            && holder.contains(&format!(" 16 {} unless-stopped net", 32 * 1024 * 1024)),
        "{holder}"
    );
    let holder_id = docker_ok(&h, &["inspect", "-f", "{{.Id}}", "pos-net"]);
    assert_eq!(
        docker_ok(&h, &["inspect", "-f", "{{.HostConfig.NetworkMode}}", "pos"]),
        format!("container:{holder_id}")
    );

    // `docker restart pos`, outside poscloud: eth1 is still there, with the default route.
    let pid = |h: &TestHost| docker_ok(h, &["inspect", "-f", "{{.State.Pid}}", "pos"]);
    let before = pid(&h);
    docker_ok(&h, &["restart", "pos"]);
    assert_ne!(pid(&h), before, "the POS container was restarted");
    let (addr, route) = pos_net(&h);
    assert_eq!(addr.as_deref(), Some("192.168.222.233/24"));
    assert!(route.contains("default via 192.168.222.1"), "{route}");
    assert!(h.pos_answers(), "the POS answers right after its restart");

    // Its main process ends (a crash): the engine's restart policy brings it back, on eth1.
    let before = pid(&h);
    let _ = h.docker(&["exec", "pos", "kill", "1"]);
    assert!(
        eventually(common::SETTLE, || {
            let p = pid(&h);
            p != before && p != "0"
        }),
        "the restart policy did not restart the POS"
    );
    assert_eq!(pos_net(&h).0.as_deref(), Some("192.168.222.233/24"));
    assert!(h.pos_answers());

    let st = pos(&h, "status", &[]);
    let st = st.result().expect("status result");
    assert_eq!(st["eth1"], "192.168.222.233/24", "{st}");
    assert_eq!(st["net_running"], true, "{st}");
    assert_eq!(st["running"], true, "{st}");

    // Stage again: both containers kept, nothing reinstalled.
    let ids = || docker_ok(&h, &["inspect", "-f", "{{.Id}}", "pos-net", "pos"]);
    let before = ids();
    let again = stage_image(&h, &sha, "poscloud/base:test");
    assert_eq!(again.exit_code, 0, "{}", err(&again));
    assert!(again.stdout_text().contains("already installed"));
    assert_eq!(ids(), before);
    assert!(h.pos_answers());
    data_untouched(&h);
}

#[test]
fn the_watch_hook_hands_eth1_to_the_holder_when_it_starts() {
    let (h, _) = staged("psh2", 45);
    // Stage wrote the hook; a test host has no systemd, so it is not enabled.
    let env = std::fs::read_to_string(h.root.join("etc/poscloud/pos-net.env")).unwrap();
    assert_eq!(
        env,
        "ACTION=watch\nCONTAINER=pos\nETH1=eth1\nPOS_IP=192.168.222.233\nPREFIX=24\nGATEWAY=192.168.222.1\n"
    );
    let unit = std::fs::read_to_string(h.root.join("etc/systemd/system/poscloud-pos-net.service"))
        .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/libexec/poscloud/pos.sh")
            && unit.contains("EnvironmentFile=/etc/poscloud/pos-net.env")
            && unit.contains("Requires=docker.service")
            && unit.contains("Restart=always"),
        "{unit}"
    );

    // Stopped: eth1 is back on the host, as after a reboot on EC2 (the ENI comes up there).
    let out = pos(&h, "stop", &[]);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    assert!(eth1_on_host(&h), "eth1 back on the host");
    assert!(h.pos_silent());

    let log = h.dir.path().join("watch.log");
    let watch = h.start_watch(&log);
    let pid = watch.pid;
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("libexec/poscloud/pos.sh"), "{cmdline:?}");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(common::SETTLE, || read_log().contains("on each start")),
        "{}",
        read_log()
    );
    assert!(
        eth1_on_host(&h),
        "nothing to hand over while the holder is stopped"
    );

    // The engine starts the containers (a reboot, or anyone outside poscloud): the hook
    // hands eth1 to the holder with the POS address within a few seconds.
    docker_ok(&h, &["start", "pos-net", "pos"]);
    assert!(h.pos_answers(), "eth1 not handed over: {}", read_log());
    assert!(!eth1_on_host(&h));
    let (addr, route) = pos_net(&h);
    assert_eq!(addr.as_deref(), Some("192.168.222.233/24"));
    assert!(route.contains("default via 192.168.222.1"), "{route}");
    assert!(
        read_log().contains("eth1 handed to pos-net"),
        "{}",
        read_log()
    );

    // The holder restarted under the running POS: the hook moves the POS into the holder's
    // new namespace, with eth1.
    docker_ok(&h, &["restart", "pos-net"]);
    assert!(
        eventually(common::SETTLE, || pos(&h, "ready", &[("POS_IP", POS_IP)])
            .exit_code
            == 0),
        "{}",
        read_log()
    );
    assert!(h.pos_answers());

    assert!(watch.stop(), "the hook or its docker events survived TERM");
    data_untouched(&h);
}

#[test]
fn ready_passes_after_stage_and_names_what_is_wrong() {
    let (h, _) = staged("psh3", 46);
    let ready = || pos(&h, "ready", &[("POS_IP", POS_IP)]);

    let ok = ready();
    assert_eq!(ok.exit_code, 0, "{}", err(&ok));
    let r = ok.result().unwrap();
    assert_eq!(r["ready"], true);
    assert_eq!(r["container"], "pos");
    assert_eq!(r["pos_ip"], POS_IP);
    assert_eq!(r["health_cmd"], "test -f /opt/pos/.installed");
    assert!(
        r["image"].as_str().unwrap().ends_with("poscloud/base:test"),
        "{r}"
    );

    // The health command fails now (the engine's own schedule may not have run yet).
    docker_ok(&h, &["exec", "pos", "rm", "/opt/pos/.installed"]);
    let bad = ready();
    assert_eq!(bad.exit_code, 1, "{}", err(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("health command failed: test -f /opt/pos/.installed"),
        "{stderr}"
    );
    assert_eq!(bad.result().unwrap()["ready"], false);
    docker_ok(&h, &["exec", "pos", "touch", "/opt/pos/.installed"]);
    assert_eq!(ready().exit_code, 0);

    // Containers started outside poscloud with no hook running: eth1 stays on the host.
    assert_eq!(pos(&h, "stop", &[]).exit_code, 0);
    docker_ok(&h, &["start", "pos-net", "pos"]);
    let bad = ready();
    assert_eq!(bad.exit_code, 1, "{}", err(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("eth1 is not in the network namespace of pos"),
        "{}",
        err(&bad)
    );
    let st = pos(&h, "status", &[]);
    assert_eq!(st.exit_code, 0, "{}", err(&st));
    let st = st.result().unwrap();
    assert_eq!(st["eth1"], "", "{st}");
    assert_eq!(st["net_running"], true, "{st}");

    // Stopped: both containers named.
    assert_eq!(pos(&h, "stop", &[]).exit_code, 0);
    let bad = ready();
    assert_eq!(bad.exit_code, 1);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("container pos is not running") && stderr.contains("pos-net"),
        "{stderr}"
    );

    // Missing input.
    assert_eq!(pos(&h, "ready", &[]).exit_code, 2);
    data_untouched(&h);
}

// `docker commit` works on test hosts through the rig's shim (see tests/rig/testhost.sh):
// podman 4.3's Docker API refuses the docker CLI's commit request; Docker accepts it.
fn commit(h: &TestHost, tag: &str) -> Outcome {
    pos(h, "commit", &[("SHOP", "12345678"), ("TAG", tag)])
}

#[test]
fn commit_snapshots_the_running_pos_with_labels() {
    let (h, _) = staged("psh4", 47);
    let pid = docker_ok(&h, &["inspect", "-f", "{{.State.Pid}}", "pos"]);

    let out = commit(&h, SNAP);
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    let r = out.result().unwrap();
    assert_eq!(r["image"], SNAP);
    let id = r["image_id"].as_str().unwrap().to_string();
    assert_eq!(
        docker_ok(&h, &["image", "inspect", "-f", "{{.Id}}", SNAP]),
        id
    );
    let labels = docker_ok(&h, &["image", "inspect", "-f", "{{index .Config.Labels \"poscloud.shop\"}} {{index .Config.Labels \"poscloud.app\"}} {{index .Config.Labels \"poscloud.snapshot\"}}", &id]);
    let l: Vec<&str> = labels.split(' ').collect();
    assert_eq!(&l[..2], ["12345678", "rti"], "{labels}");
    assert!(
        l[2].len() == 20 && l[2].starts_with("20") && l[2].ends_with('Z'),
        "{labels}"
    );
    // The snapshot holds the installed application.
    assert_eq!(
        docker_ok(
            &h,
            &["run", "--rm", &id, "cat", "/opt/pos/app/installed-by-test"]
        ),
        "installed"
    );

    // The POS kept running, the same process, on eth1.
    assert_eq!(
        docker_ok(
            &h,
            &["inspect", "-f", "{{.State.Running}} {{.State.Pid}}", "pos"]
        ),
        format!("true {pid}")
    );
    assert!(h.pos_answers());

    // Refused: another shop's code, a bad tag.
    let other = pos(
        &h,
        "commit",
        &[
            ("SHOP", "87654321"),
            ("TAG", "poscloud/rti-snapshot:12345678-2"),
        ],
    );
    assert_eq!(other.exit_code, 2, "{}", err(&other));
    assert!(String::from_utf8_lossy(&other.stderr).contains("shop 12345678"));
    assert_eq!(commit(&h, "Bad Tag").exit_code, 2);
    assert!(
        !h.docker(&["image", "inspect", "poscloud/rti-snapshot:12345678-2"])
            .0
    );
    data_untouched(&h);
}

/// A stand-in for built media: an image labelled like build.sh's, on the host.
fn media_image(h: &TestHost) -> String {
    let ctx = h.dir.path().join("media");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM poscloud/base:test\nLABEL poscloud.app=rti poscloud.media.key=rti-test-k1\n",
    )
    .unwrap();
    docker_ok(
        h,
        &[
            "build",
            "-q",
            "-t",
            "poscloud/media:rti-test",
            &ctx.to_string_lossy(),
        ],
    );
    docker_ok(
        h,
        &[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            "poscloud/media:rti-test",
        ],
    )
}

fn tags_of(img: &serde_json::Value) -> Vec<String> {
    img["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn images_lists_media_and_snapshots_and_image_delete_refuses_images_in_use() {
    let h = TestHost::up("psh5", 48, true);
    let media = media_image(&h);
    let (_, sha) = h.pos_artifact("echo installed >/opt/pos/app/installed-by-test\n");
    let out = stage_image(&h, &sha, "poscloud/media:rti-test");
    assert_eq!(out.exit_code, 0, "{}", err(&out));
    std::fs::write(h.root.join(DATA).join("orders.txt"), "order 1\n").unwrap();
    let snap = commit(&h, SNAP);
    assert_eq!(snap.exit_code, 0, "{}", err(&snap));
    let snap_id = snap.result().unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A stopped container of the snapshot: it counts as a user too.
    docker_ok(&h, &["create", "--name", "old-pos", SNAP]);

    let listed = pos(&h, "images", &[]);
    assert_eq!(listed.exit_code, 0, "{}", err(&listed));
    let table = listed.stdout_text();
    assert!(table.starts_with("ID "), "{table}");
    let r = listed.result().unwrap();
    let images = r["images"].as_array().unwrap();
    assert_eq!(
        images.len(),
        2,
        "only labelled images (not the base image): {r}"
    );
    let m = images
        .iter()
        .find(|i| i["id"] == media.as_str())
        .expect("media listed");
    assert_eq!(m["app"], "rti");
    assert_eq!(m["key"], "rti-test-k1");
    assert_eq!(m["snapshot"], "");
    assert!(
        tags_of(m)
            .iter()
            .any(|t| t.ends_with("poscloud/media:rti-test")),
        "{m}"
    );
    assert_eq!(m["used_by"], serde_json::json!(["pos", "pos-net"]), "{m}");
    let s = images
        .iter()
        .find(|i| i["id"] == snap_id.as_str())
        .expect("snapshot listed");
    assert!(s["snapshot"].as_str().unwrap().ends_with('Z'), "{s}");
    assert_eq!(s["used_by"], serde_json::json!(["old-pos"]), "{s}");
    // The readable table: one line per image, with its short id and users.
    for (id, users) in [(&media, "pos pos-net"), (&snap_id, "old-pos")] {
        let short = &id.trim_start_matches("sha256:")[..12];
        let line = table.lines().find(|l| l.starts_with(short));
        assert!(
            line.is_some_and(|l| l.ends_with(users)),
            "{short} {users} not in\n{table}"
        );
    }

    // In use (running POS): refused, the users named, nothing deleted.
    let del = pos(&h, "image-delete", &[("IMAGE", "poscloud/media:rti-test")]);
    assert_eq!(del.exit_code, 4, "{}", err(&del));
    let stderr = String::from_utf8_lossy(&del.stderr);
    assert!(stderr.contains("pos pos-net"), "{stderr}");
    // Also by id, and by the engine's normalised name.
    assert_eq!(pos(&h, "image-delete", &[("IMAGE", &media)]).exit_code, 4);
    assert!(h.docker(&["image", "inspect", &media]).0);
    // Used by a stopped container only: refused as well.
    let del = pos(&h, "image-delete", &[("IMAGE", SNAP)]);
    assert_eq!(del.exit_code, 4, "{}", err(&del));
    assert!(String::from_utf8_lossy(&del.stderr).contains("old-pos"));

    // Unused: deleted.
    docker_ok(&h, &["rm", "old-pos"]);
    let del = pos(&h, "image-delete", &[("IMAGE", SNAP)]);
    assert_eq!(del.exit_code, 0, "{}", err(&del));
    let r = del.result().unwrap();
    assert_eq!(r["deleted"], SNAP);
    assert_eq!(r["image_id"], snap_id.as_str());
    assert!(!h.docker(&["image", "inspect", &snap_id]).0);

    // Unknown image; bad input.
    let unknown = pos(&h, "image-delete", &[("IMAGE", "poscloud/nothing:1")]);
    assert_eq!(unknown.exit_code, 1);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no image poscloud/nothing:1"));
    assert_eq!(
        pos(&h, "image-delete", &[("IMAGE", "Bad Image")]).exit_code,
        2
    );

    let r = pos(&h, "images", &[]).result().unwrap();
    assert_eq!(r["images"].as_array().unwrap().len(), 1, "{r}");
    assert!(h.pos_answers(), "the POS ran through all of it");
    data_untouched(&h);
}
