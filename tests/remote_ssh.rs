//! The SSH transport against a real sshd in a network namespace: pinning, auth, output,
//! exit codes and inputs that must arrive verbatim.

mod common;
use common::host::TestHost;
use poscloud::remote::ssh::{PinnedKey, SshTarget};
use poscloud::remote::{no_sink, Inputs, Program, Remote, Stream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

const ECHO: Program = Program {
    name: "echo.sh",
    body: r#"#!/usr/bin/env bash
set -euo pipefail
printf '%s' "$A" >"$POSCLOUD_ROOT/a.txt"
printf '%s' "$B" >"$POSCLOUD_ROOT/b.txt"
echo "to stdout"
echo "to stderr" >&2
exit "${CODE:-0}"
"#,
};

#[test]
fn pinned_key_output_exit_codes_and_verbatim_inputs() {
    let h = TestHost::up("rssh1", 11, false);
    let r = h.remote_pinned(&h.host_key_pub, &h.client_key);
    let rt = rt();
    let nasty = "spaces  and 'single' \"double\" $(touch /tmp/pwned) `id` ; rm -rf / \n new line\ttab $HOME \\ back";
    let unicode = "Blumen für Jürgen — 🌷\n\nwith blank lines\n";
    let inputs = Inputs::new()
        .set("A", nasty)
        .unwrap()
        .set("B", unicode)
        .unwrap()
        .set("CODE", "7")
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink: poscloud::remote::Sink =
        Arc::new(move |st: Stream, b: &[u8]| s2.lock().unwrap().push((st, b.to_vec())));
    let out = rt
        .block_on(r.run(&ECHO, &inputs, Duration::from_secs(60), sink))
        .unwrap();
    assert_eq!(
        out.exit_code, 7,
        "a non-zero exit comes back as the outcome"
    );
    assert_eq!(out.stdout, b"to stdout\n");
    assert_eq!(out.stderr, b"to stderr\n");
    assert_eq!(
        std::fs::read_to_string(h.root.join("a.txt")).unwrap(),
        nasty
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("b.txt")).unwrap(),
        unicode
    );
    assert!(
        !std::path::Path::new("/tmp/pwned").exists(),
        "an input was executed"
    );
    let seen = seen.lock().unwrap();
    assert!(seen
        .iter()
        .any(|(s, b)| *s == Stream::Stdout && b.starts_with(b"to stdout")));
    assert!(seen
        .iter()
        .any(|(s, b)| *s == Stream::Stderr && b.starts_with(b"to stderr")));

    // 1 MB on stdout and 256 KB on stderr at once: neither pipe may stall the other.
    let big = Program {
        name: "big.sh",
        body: "head -c 1048576 /dev/zero | tr '\\0' 'x'; head -c 262144 /dev/zero | tr '\\0' 'y' >&2; exit 0\n",
    };
    let out = rt
        .block_on(r.run(&big, &Inputs::new(), Duration::from_secs(120), no_sink()))
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.len(), 1_048_576);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
    assert_eq!(out.stderr.len(), 262_144);

    // A file put on the host arrives with its mode.
    rt.block_on(r.put_file("/etc/poscloud/note", "0600", b"line 1\n\0binary\xff"))
        .unwrap();
    let p = h.root.join("etc/poscloud/note");
    assert_eq!(std::fs::read(&p).unwrap(), b"line 1\n\0binary\xff");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_wrong_host_key_is_refused_before_login() {
    let h = TestHost::up("rssh2", 12, false);
    let before = h.accepted_logins();
    let r = h.remote_pinned(&h.wrong_host_key_pub, &h.client_key);
    let err = rt()
        .block_on(r.run(
            &ECHO,
            &Inputs::new().set("A", "").unwrap().set("B", "").unwrap(),
            Duration::from_secs(30),
            no_sink(),
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match the pinned key"), "{err}");
    assert!(err.contains("no credentials were sent"), "{err}");
    assert!(err.contains("SHA256:"), "names both fingerprints: {err}");
    assert_eq!(h.accepted_logins(), before, "no login happened");
    assert!(!h.root.join("a.txt").exists());
}

#[test]
fn a_refused_login_is_a_clear_error() {
    let h = TestHost::up("rssh3", 13, false);
    let other = h.dir.path().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let r = h.remote_pinned(&h.host_key_pub, &other);
    let err = rt()
        .block_on(r.wait_ready(Duration::from_secs(20)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("login to") && err.contains("refused"), "{err}");
    assert!(err.contains("operator_keys"), "says what to check: {err}");
}

#[test]
fn an_unreachable_host_fails_after_retrying() {
    // Nothing listens on this loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = Remote::Ssh(SshTarget {
        user: "root".into(),
        host: "127.0.0.1".into(),
        port,
        key_file: None,
        host_key: PinnedKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9Fyt0X2+3Cwy1uG9BZIXJbZJf3S7f8w1sN0YzrG3mK",
        )
        .unwrap(),
    });
    let start = std::time::Instant::now();
    let err = rt()
        .block_on(r.wait_ready(Duration::from_secs(3)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach root@127.0.0.1"), "{err}");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "it retried for a while"
    );
}
