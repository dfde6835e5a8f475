//! The stage script on a test host with a real container engine (podman's Docker API): the
//! container is hardened, eth1 (a veth standing for the second ENI) is handed to it with the
//! POS address, the artifact's checksum is checked before anything is installed.

mod common;
use common::host::TestHost;
use poscloud::remote::{no_sink, Inputs, Outcome, Script};
use std::time::Duration;

fn stage(h: &TestHost, container: &str, url: &str, sha: &str) -> Outcome {
    let inputs = Inputs::new()
        .set("SHOP", "12345678")
        .unwrap()
        .set("APP", "rti")
        .unwrap()
        .set("IMAGE", "poscloud/base:test")
        .unwrap()
        .set("CONTAINER", container)
        .unwrap()
        .set("POS_IP", "192.168.222.233")
        .unwrap()
        .set("PREFIX", "24")
        .unwrap()
        .set("GATEWAY", "192.168.222.1")
        .unwrap()
        .set("DATA_DIR", "/var/lib/poscloud/data/rti")
        .unwrap()
        .set("ARTIFACT_URL", url)
        .unwrap()
        .set("ARTIFACT_SHA256", sha)
        .unwrap()
        .set("MEMORY", "256m")
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        h.remote()
            .run(&Script::Pos, &inputs, Duration::from_secs(300), no_sink()),
    )
    .unwrap()
}

fn docker(h: &TestHost, args: &[&str]) -> String {
    h.docker(args).1
}

#[test]
fn stage_hands_eth1_to_a_hardened_container_and_installs_a_verified_artifact() {
    let h = TestHost::up("stg1", 42, true);
    let (url, sha) = h.pos_artifact("echo installed >/opt/pos/app/installed-by-test\n");
    assert!(
        h.pos_silent(),
        "nothing answers on the POS address before stage"
    );

    // A wrong checksum: refused before any container or install exists.
    let bad = stage(&h, "pos", &url, &"0".repeat(64));
    assert_eq!(bad.exit_code, 3, "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checksum mismatch"));
    assert_eq!(docker(&h, &["ps", "-aq"]), "", "no container was created");

    let out = stage(&h, "pos", &url, &sha);
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let result = out.result().expect("result line");
    assert_eq!(result["pos_ip"], "192.168.222.233");
    assert!(h.pos_answers(), "the POS address answers through eth1");
    assert_eq!(
        docker(
            &h,
            &["exec", "pos", "cat", "/opt/pos/app/installed-by-test"]
        ),
        "installed"
    );
    assert_eq!(
        docker(
            &h,
            &["exec", "pos", "ip", "-4", "-o", "addr", "show", "eth1"]
        )
        .split_whitespace()
        .nth(3),
        Some("192.168.222.233/24")
    );

    // Hardened run options, read back from the engine.
    let hc = docker(&h, &["inspect", "-f", "{{.HostConfig.Privileged}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}}", "pos"]);
    assert!(hc.starts_with("false "), "{hc}");
    assert!(hc.contains("no-new-privileges"), "{hc}");
    assert!(
        hc.contains("unless-stopped")
            && hc.contains(" 1024 ")
            && hc.ends_with(&(256 * 1024 * 1024).to_string()),
        "{hc}"
    );
    let caps = docker(&h, &["inspect", "-f", "{{.HostConfig.CapAdd}}", "pos"]);
    assert!(
        !caps.to_uppercase().contains("SYS_ADMIN") && !caps.to_uppercase().contains("NET_ADMIN"),
        "{caps}"
    );

    // The data directory is the host's, mounted at /usr2.
    docker(
        &h,
        &["exec", "pos", "sh", "-c", "echo order-1 > /usr2/orders.txt"],
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("var/lib/poscloud/data/rti/orders.txt")).unwrap(),
        "order-1\n"
    );

    // Again: nothing replaced or reinstalled, eth1 still in place, data kept.
    let id = docker(&h, &["inspect", "-f", "{{.Id}}", "pos"]);
    let again = stage(&h, "pos", &url, &sha);
    assert_eq!(
        again.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(again.stdout_text().contains("already installed"));
    assert_eq!(docker(&h, &["inspect", "-f", "{{.Id}}", "pos"]), id);
    assert!(h.pos_answers());
    assert!(h.root.join("var/lib/poscloud/data/rti/orders.txt").exists());
    assert!(h.root.join("var/lib/poscloud/phases/stage.done").exists());
}
