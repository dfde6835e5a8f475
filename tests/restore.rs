//! The restore step (bootstrap/restore.sh) on a test host, with the backup source on the same
//! host reached by a real rsync over SSH: data arrives byte-identical or not at all, every
//! bad file is named, the data directory is never lost, and bad inputs change nothing.
//!
//! The source lives below the host's root directory, but rsync over SSH sees the machine's
//! real filesystem (the netns isolates the network only), so SOURCE names its real path.
//!
//! s3:// sources: the host downloads the archive from SOURCE_URL (a presigned S3 URL in real
//! use). Here a plain HTTP server in the host's own network namespace, on the host's
//! address, serves it: no AWS, no traffic beyond the test host.

mod common;
use common::data::*;
use common::host::TestHost;
use poscloud::remote::{no_sink, Inputs, Outcome, Remote, Script};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RESTORE: Script = Script::Restore;
const SHOP: &str = "12345678";
const MANIFEST: &str = "MANIFEST.sha256";
/// Where the tests put the backup server's login key on the host (below POSCLOUD_ROOT).
const KEY_ON_HOST: &str = "/etc/poscloud/restore-source.key";

// ---- the host and the script ---------------------------------------------------------

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The host's client key doubles as the key for the backup server (the same sshd).
fn install_source_key(h: &TestHost) {
    let dest = h.root.join(KEY_ON_HOST.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(&h.client_key, &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn key_line(pub_file: &Path) -> String {
    std::fs::read_to_string(pub_file)
        .unwrap()
        .trim()
        .to_string()
}

fn backup_dir(h: &TestHost) -> PathBuf {
    h.root.join(format!("backups/tfrsync-{SHOP}"))
}

/// `ssh://root@ADDRESS:22/<real path>/`
fn ssh_url(h: &TestHost, dir: &Path) -> String {
    format!(
        "ssh://{}@{}:{}{}/",
        h.user,
        h.address,
        h.port,
        dir.display()
    )
}

/// The inputs of an ssh:// restore; `changes` overrides (Some) or removes (None) some.
fn inputs(base: &[(&str, String)], changes: &[(&str, Option<&str>)]) -> Inputs {
    let mut vars: Vec<(String, String)> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (k, v) in changes {
        vars.retain(|(name, _)| name != k);
        if let Some(v) = v {
            vars.push((k.to_string(), v.to_string()));
        }
    }
    vars.into_iter()
        .fold(Inputs::new(), |i, (k, v)| i.set(&k, v).unwrap())
}

fn ssh_base(h: &TestHost, app: &str, data_dir: &str, src: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SHOP", SHOP.to_string()),
        ("APP", app.to_string()),
        ("DATA_DIR", data_dir.to_string()),
        ("SOURCE", ssh_url(h, src)),
        ("SOURCE_KEY_FILE", KEY_ON_HOST.to_string()),
        ("SOURCE_HOST_KEY", key_line(&h.host_key_pub)),
    ]
}

fn run(r: &Remote, i: &Inputs) -> Outcome {
    rt().block_on(r.run(&RESTORE, i, Duration::from_secs(600), no_sink()))
        .expect("the transport works")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_exit(out: &Outcome, code: i32) {
    assert_eq!(
        out.exit_code,
        code,
        "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The per-file lines of stderr (`restore: mismatch|missing|unlisted: <path>`), sorted.
fn bad_files(out: &Outcome) -> Vec<String> {
    let mut v: Vec<String> = text(&out.stderr)
        .lines()
        .filter(|l| {
            ["mismatch", "missing", "unlisted"]
                .iter()
                .any(|k| l.starts_with(&format!("restore: {k}: ")))
        })
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

// ---- data ------------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> String {
    hex(Sha256::digest(b).as_slice())
}

struct Manifest {
    files: u64,
    bytes: u64,
    sha256: String,
}

/// Writes `dir/MANIFEST.sha256` in sha256sum's format for every regular file below `dir`
/// (the manifest aside), half of the paths with a `./` prefix as `find .` prints them.
fn write_manifest(dir: &Path) -> Manifest {
    let mut out = Vec::new();
    let (mut files, mut bytes) = (0, 0);
    for (i, (rel, e)) in snapshot(dir).iter().enumerate() {
        let Entry::File { content, .. } = e else {
            continue;
        };
        if rel == MANIFEST.as_bytes() {
            continue;
        }
        files += 1;
        bytes += content.len() as u64;
        let mut name = if i % 2 == 0 {
            b"./".to_vec()
        } else {
            Vec::new()
        };
        name.extend_from_slice(rel);
        let escape = name.contains(&b'\\') || name.contains(&b'\n');
        if escape {
            out.push(b'\\');
            let mut esc = Vec::new();
            for b in name {
                match b {
                    b'\\' => esc.extend_from_slice(b"\\\\"),
                    b'\n' => esc.extend_from_slice(b"\\n"),
                    _ => esc.push(b),
                }
            }
            name = esc;
        }
        out.extend_from_slice(sha256(content).as_bytes());
        out.extend_from_slice(b"  ");
        out.extend_from_slice(&name);
        out.push(b'\n');
    }
    std::fs::write(dir.join(MANIFEST), &out).unwrap();
    Manifest {
        files,
        bytes,
        sha256: sha256(&out),
    }
}

/// `DATA_DIR.before-restore-*` next to `data`, oldest first.
fn asides(data: &Path) -> Vec<PathBuf> {
    let prefix = format!(
        "{}.before-restore-",
        data.file_name().unwrap().to_string_lossy()
    );
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    v.sort();
    v
}

fn staging(data: &Path) -> PathBuf {
    PathBuf::from(format!("{}.restore-staging", data.display()))
}

fn marker(h: &TestHost) -> PathBuf {
    h.root.join("var/lib/poscloud/phases/restore.done")
}

fn earlier_data(data: &Path) {
    put(data, b"customers.dat", b"earlier customer data\n");
    put(data, b"orders/2024/0001.ord", &[0u8, 1, 2, 255]);
}

// ---- tests -----------------------------------------------------------------------------

#[test]
fn a_large_tricky_data_set_arrives_byte_identical_and_a_second_run_is_safe() {
    let h = TestHost::up_root("rst1", 31, false);
    install_source_key(&h);
    let src = backup_dir(&h);
    generate(&src, 1100, 0x5eed_0001);
    let m = write_manifest(&src);
    assert!(m.files >= 1000, "{} files", m.files);
    let data = h.root.join("usr2");
    earlier_data(&data);
    let earlier = h.dir.path().join("earlier");
    earlier_data(&earlier);
    let r = h.remote();
    let base = ssh_base(&h, "rti", "/usr2", &src);

    let logins = h.accepted_logins();
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    assert!(
        h.accepted_logins() >= logins + 2,
        "rsync logged in over SSH besides the transport"
    );
    let res = out.result().expect("a result line");
    assert_eq!(res["files"], m.files, "{res}");
    assert_eq!(res["bytes"], m.bytes, "{res}");
    assert_eq!(res["source"], ssh_url(&h, &src), "{res}");
    assert_eq!(res["manifest_sha256"], m.sha256, "{res}");
    assert_eq!(res["unchanged"], false, "{res}");
    assert_same_tree(&data, &src, "after the restore");
    let a = asides(&data);
    assert_eq!(a.len(), 1, "the earlier data moved aside once: {a:?}");
    assert_same_tree(&a[0], &earlier, "the earlier data, kept aside");
    assert_eq!(
        res["moved_aside"],
        format!("/{}", a[0].file_name().unwrap().to_string_lossy())
    );
    assert!(!staging(&data).exists(), "the staging copy became DATA_DIR");
    let done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(marker(&h)).unwrap()).unwrap();
    assert_eq!(done, res, "the marker holds the result");

    // Same source, data already there: verified in place, nothing moved.
    let inode = std::fs::metadata(&data).unwrap().ino();
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    let res2 = out.result().expect("a result line");
    assert_eq!(res2["unchanged"], true, "{res2}");
    assert_eq!(res2["files"], m.files);
    assert_eq!(res2["bytes"], m.bytes);
    assert_eq!(res2["manifest_sha256"], m.sha256);
    assert_eq!(
        std::fs::metadata(&data).unwrap().ino(),
        inode,
        "DATA_DIR was not moved"
    );
    assert_same_tree(&data, &src, "after the second run");
    assert_eq!(asides(&data), a, "no new copy aside");
    assert_same_tree(&a[0], &earlier, "the earlier data, still kept aside");

    // The app has written since: a run restores again and keeps what the app wrote.
    put(&data, b"d3/s3/f0003.bin", b"changed by the app");
    put(&data, b"new-since-restore.dat", b"written by the app");
    let app_state = h.dir.path().join("app-state");
    std::fs::rename(&data, &app_state).unwrap();
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(&app_state)
        .arg(&data)
        .status()
        .unwrap();
    assert!(copy.success());
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    assert_eq!(out.result().unwrap()["unchanged"], false);
    assert_same_tree(&data, &src, "after the third run");
    let a3 = asides(&data);
    assert_eq!(a3.len(), 2, "{a3:?}");
    assert_same_tree(&a3[0], &earlier, "the first copy aside is untouched");
    assert_same_tree(&a3[1], &app_state, "what the app wrote is kept aside");
}

#[test]
fn corrupt_missing_and_unlisted_files_are_named_and_data_dir_is_untouched() {
    let h = TestHost::up_root("rst2", 32, false);
    install_source_key(&h);
    let src = backup_dir(&h);
    generate(&src, 40, 0x5eed_0002);
    write_manifest(&src);
    let data = h.root.join("d");
    earlier_data(&data);
    let before = snapshot(&data);
    let r = h.remote();
    let base = ssh_base(&h, "daisy", "/d", &src);

    // A file changed after the manifest was written: same size, other bytes.
    let victim = src.join("dir with space/ünïcödé-Blumen-🌷.dat");
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0x55;
    std::fs::write(&victim, &bad).unwrap();
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 3);
    assert_eq!(
        bad_files(&out),
        ["restore: mismatch: dir with space/ünïcödé-Blumen-🌷.dat"],
        "exactly the changed file is named:\n{}",
        text(&out.stderr)
    );
    assert_same(&snapshot(&data), &before, "DATA_DIR keeps its content");
    assert!(asides(&data).is_empty(), "nothing was moved aside");
    assert!(!marker(&h).exists(), "no done marker");
    let st = staging(&data);
    assert!(st.is_dir(), "the copy is kept for inspection");
    assert!(
        text(&out.stderr).contains(&st.display().to_string()),
        "says where the copy is:\n{}",
        text(&out.stderr)
    );

    // The file is fixed with the bad copy's size and time, so rsync's quick check alone
    // would keep the bad copy; one listed file goes missing; an unlisted one appears.
    let bad_time = std::fs::metadata(&victim).unwrap().modified().unwrap();
    std::fs::write(&victim, &good).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(bad_time)
        .unwrap();
    let gone = src.join("new\nline.txt");
    let gone_content = std::fs::read(&gone).unwrap();
    std::fs::remove_file(&gone).unwrap();
    put(&src, b"extra/unlisted file.txt", b"not in the manifest");
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 3);
    assert_eq!(
        bad_files(&out),
        [
            "restore: missing: new\\nline.txt",
            "restore: unlisted: extra/unlisted file.txt",
        ],
        "both named, the fixed file no longer:\n{}",
        text(&out.stderr)
    );
    assert_same(&snapshot(&data), &before, "DATA_DIR keeps its content");
    assert!(asides(&data).is_empty());
    assert!(!marker(&h).exists());

    // Source repaired: the restore goes through, the earlier data is kept aside.
    std::fs::write(&gone, &gone_content).unwrap();
    std::fs::remove_dir_all(src.join("extra")).unwrap();
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    assert!(bad_files(&out).is_empty());
    assert_same_tree(&data, &src, "after the repaired restore");
    let a = asides(&data);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_same(&snapshot(&a[0]), &before, "the earlier data, kept aside");
    assert!(!staging(&data).exists());
    assert!(marker(&h).exists());
}

#[test]
fn bad_inputs_and_a_wrong_host_key_change_nothing_and_a_file_source_works() {
    let h = TestHost::up_root("rst3", 33, false);
    install_source_key(&h);
    let src = backup_dir(&h);
    generate(&src, 20, 0x5eed_0003);
    let m = write_manifest(&src);
    let data = h.root.join("usr2");
    earlier_data(&data);
    let r = h.remote();
    let base = ssh_base(&h, "rti", "/usr2", &src);

    // Bad inputs: exit 2 before anything on the host changes.
    let whole = snapshot(&h.root);
    let no_path = format!("ssh://root@{}", h.address);
    let cases: &[(&str, Option<&str>)] = &[
        ("SHOP", None),
        ("SHOP", Some("1234567")),
        ("SHOP", Some("1234567a")),
        ("APP", Some("Sco")),
        ("DATA_DIR", Some("usr2")),
        ("DATA_DIR", Some("/usr2/../etc")),
        ("DATA_DIR", Some("/")),
        ("DATA_DIR", Some("/etc")),
        (
            "SOURCE",
            Some("rsync://root@10.200.33.2/backups/tfrsync-12345678/"),
        ),
        (
            "SOURCE",
            Some("https://backups.example/tfrsync-12345678.tar"),
        ),
        ("SOURCE", Some(&no_path)),
        ("SOURCE", Some("ssh://-oProxyCommand=touch@x/p/")),
        ("SOURCE", Some("ssh://root@-oProxyCommand=x/p/")),
        ("SOURCE_KEY_FILE", None),
        ("SOURCE_KEY_FILE", Some("etc/poscloud/restore-source.key")),
        (
            "SOURCE_KEY_FILE",
            Some(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
            ),
        ),
        ("SOURCE_KEY_FILE", Some("/etc/poscloud/no-such.key")),
        ("SOURCE_HOST_KEY", None),
        ("SOURCE_HOST_KEY", Some("not a key")),
        ("SOURCE_HOST_KEY", Some("ssh-ed25519 AAAAnotbase64ofakey")),
        ("MANIFEST", Some("../MANIFEST.sha256")),
    ];
    for (name, value) in cases {
        let out = run(&r, &inputs(&base, &[(name, *value)]));
        assert_exit(&out, 2);
        let err = text(&out.stderr);
        assert!(
            err.starts_with("restore: ") && err.lines().count() == 1,
            "{name}={value:?}: one clear line: {err}"
        );
        assert!(out.result().is_none());
        assert_eq!(
            snapshot(&h.root),
            whole,
            "{name}={value:?} changed the host"
        );
    }

    // A backup server with another host key: refused before any login or copy.
    let logins = h.accepted_logins();
    let wrong = key_line(&h.wrong_host_key_pub);
    let out = run(&r, &inputs(&base, &[("SOURCE_HOST_KEY", Some(&wrong))]));
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("Host key verification failed"), "{err}");
    assert!(err.contains("SOURCE_HOST_KEY"), "says what to check: {err}");
    assert_eq!(
        h.accepted_logins(),
        logins + 1,
        "only the transport logged in, rsync did not"
    );
    // Only the script's own state (lock, var/lib/poscloud) may have appeared.
    let mut now = snapshot(&h.root);
    now.retain(|k, _| !k.starts_with(b"var"));
    let mut was = whole.clone();
    was.retain(|k, _| !k.starts_with(b"var"));
    assert_same(&now, &was, "no data moved");
    assert!(!staging(&data).exists());
    assert!(!marker(&h).exists());

    // file:// names a directory on the host (below POSCLOUD_ROOT), e.g. unpacked from S3.
    let unpacked = h.root.join("srv/unpacked");
    std::fs::create_dir_all(unpacked.parent().unwrap()).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(cp.success());
    let file_inputs = Inputs::new()
        .set("SHOP", SHOP)
        .unwrap()
        .set("APP", "rti")
        .unwrap()
        .set("DATA_DIR", "/usr2/")
        .unwrap()
        .set("SOURCE", "file:///srv/unpacked/")
        .unwrap();
    let out = run(&r, &file_inputs);
    assert_exit(&out, 0);
    let res = out.result().unwrap();
    assert_eq!(res["files"], m.files);
    assert_eq!(res["bytes"], m.bytes);
    assert_eq!(res["source"], "file:///srv/unpacked/");
    assert_same_tree(&data, &unpacked, "after a file:// restore");
    assert_eq!(asides(&data).len(), 1);
}

// ---- s3:// sources: an archive over HTTP -----------------------------------------------

const S3_SOURCE: &str = "s3://test-bucket/backups/12345678.tar.gz";
const ARCHIVE: &str = "12345678.tar.gz";
const HTTP_PORT: u16 = 8000;
/// A made-up signature and access key: neither may ever show up in the script's output.
const FAKE_SIGNATURE: &str = "5ec2e75191a7a7e0c0ffee0ddba11fee1dead0beefcafe0decade0facade0f00d";
const FAKE_ACCESS_KEY: &str = "AKIAPOSCLOUDFAKEKEY0";

/// A plain HTTP server (python3 -m http.server) in the host's network namespace on the
/// host's address, standing in for S3; killed by its PID when dropped.
struct HttpServer {
    child: Child,
    base: String,
}

impl HttpServer {
    fn start(h: &TestHost, dir: &Path) -> HttpServer {
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("pc-{}", h.name), python])
            .args(["-m", "http.server", "--bind", &h.address])
            .arg(HTTP_PORT.to_string())
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let mut server = HttpServer {
            child,
            base: format!("http://{}:{HTTP_PORT}", h.address),
        };
        let addr: std::net::SocketAddr = format!("{}:{HTTP_PORT}", h.address).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if let Some(st) = server.child.try_wait().unwrap() {
                panic!("the HTTP server in pc-{} exited: {st}", h.name);
            }
            assert!(
                Instant::now() < deadline,
                "the HTTP server did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The URL of `file` with a query string like a presigned S3 URL's (the server ignores
    /// it).
    fn signed_url(&self, file: &str) -> String {
        format!(
            "{}/{file}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={FAKE_ACCESS_KEY}%2F20261123%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261123T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={FAKE_SIGNATURE}",
            self.base
        )
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_base(data_dir: &str, url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SHOP", SHOP.to_string()),
        ("APP", "rti".to_string()),
        ("DATA_DIR", data_dir.to_string()),
        ("SOURCE", S3_SOURCE.to_string()),
        ("SOURCE_URL", url.to_string()),
    ]
}

/// `tar -C src -czf archive .` (`-cf` for a name ending in .tar): the data and the
/// manifest at the archive's top level.
fn pack(src: &Path, archive: &Path) {
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let create = if archive.extension().is_some_and(|e| e == "tar") {
        "-cf"
    } else {
        "-czf"
    };
    let ok = Command::new("tar")
        .arg("-C")
        .arg(src)
        .arg(create)
        .arg(archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success(), "tar -czf {}", archive.display());
}

/// Neither the URL nor any part of its query string is in the script's output.
fn assert_url_not_shown(out: &Outcome, url: &str) {
    let all = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    for secret in [
        url,
        query,
        FAKE_SIGNATURE,
        FAKE_ACCESS_KEY,
        "X-Amz-",
        url.split_once('?').map(|(u, _)| u).unwrap_or(url),
    ] {
        assert!(
            secret.is_empty() || !all.contains(secret),
            "{secret:?} is in the output:\n{all}"
        );
    }
}

/// Entries directly in the host's root directory, by name.
/// The host root's entries, without run/ (a tmpfs on a real host: the runner's locks).
fn top_level(h: &TestHost) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&h.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "run")
        .collect();
    v.sort();
    v
}

fn archive_on_host(data: &Path) -> PathBuf {
    PathBuf::from(format!("{}.restore-archive", data.display()))
}

/// Every regular file below `dir` whose content holds `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, e)| match e {
            Entry::File { content, .. } => content
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            _ => false,
        })
        .map(|(k, _)| text(&k))
        .collect()
}

/// One member of a hand-made archive (GNU tar would not write the hostile ones).
enum Member<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Fifo(&'a str),
    CharDev(&'a str, u32, u32),
}

/// A ustar header block.
fn ustar_header(
    name: &str,
    mode: u32,
    size: usize,
    kind: u8,
    link: &str,
    dev: (u32, u32),
) -> Vec<u8> {
    assert!(
        name.len() <= 100 && link.len() <= 100,
        "short names only: {name}"
    );
    let mut b = vec![0u8; 512];
    let mut field = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    let octal = |v: u64, len: usize| format!("{v:0w$o}\0", w = len - 1).into_bytes();
    field(0, name.as_bytes());
    field(100, &octal(mode as u64, 8));
    field(108, &octal(0, 8));
    field(116, &octal(0, 8));
    field(124, &octal(size as u64, 12));
    field(136, &octal(1_700_000_000, 12));
    field(148, b"        ");
    field(156, &[kind]);
    field(157, link.as_bytes());
    field(257, b"ustar\0");
    field(263, b"00");
    field(265, b"root");
    field(297, b"root");
    field(329, &octal(dev.0 as u64, 8));
    field(337, &octal(dev.1 as u64, 8));
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// Writes a gzipped ustar archive of `members` to `path`.
fn write_tar_gz(path: &Path, members: &[Member]) {
    let mut tar = Vec::new();
    for m in members {
        let (name, mode, data, kind, link, dev): (&str, u32, &[u8], u8, &str, (u32, u32)) = match m
        {
            Member::Dir(n) => (n, 0o755, b"", b'5', "", (0, 0)),
            Member::File(n, d) => (n, 0o644, d, b'0', "", (0, 0)),
            Member::Symlink(n, t) => (n, 0o777, b"", b'2', t, (0, 0)),
            Member::HardLink(n, t) => (n, 0o644, b"", b'1', t, (0, 0)),
            Member::Fifo(n) => (n, 0o644, b"", b'6', "", (0, 0)),
            Member::CharDev(n, ma, mi) => (n, 0o666, b"", b'3', "", (*ma, *mi)),
        };
        tar.extend(ustar_header(name, mode, data.len(), kind, link, dev));
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap();
}

#[test]
fn an_s3_archive_arrives_byte_identical_is_deleted_and_a_second_run_is_safe() {
    let h = TestHost::up_root("rs3a", 51, false);
    let src = h.dir.path().join("src");
    generate(&src, 1100, 0x5eed_0051);
    // Links are kept as they are (the manifest lists regular files only, a hard link twice).
    std::fs::create_dir_all(src.join("links")).unwrap();
    std::os::unix::fs::symlink("../d1", src.join("links/to d1")).unwrap();
    std::os::unix::fs::symlink("/dev/null", src.join("links/printer")).unwrap();
    std::fs::hard_link(src.join("d1/s1/f0001.bin"), src.join("links/hard link")).unwrap();
    let m = write_manifest(&src);
    assert!(m.files >= 1000, "{} files", m.files);
    let www = h.dir.path().join("www");
    pack(&src, &www.join(ARCHIVE));
    let data = h.root.join("usr2");
    earlier_data(&data);
    let earlier = h.dir.path().join("earlier");
    earlier_data(&earlier);
    let server = HttpServer::start(&h, &www);
    let url = server.signed_url(ARCHIVE);
    let r = h.remote();
    let base = s3_base("/usr2", &url);

    let logins = h.accepted_logins();
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    assert_url_not_shown(&out, &url);
    assert_eq!(
        h.accepted_logins(),
        logins + 1,
        "only the transport logged in"
    );
    let res = out.result().expect("a result line");
    assert_eq!(res["files"], m.files, "{res}");
    assert_eq!(res["bytes"], m.bytes, "{res}");
    assert_eq!(res["source"], S3_SOURCE, "{res}");
    assert_eq!(res["manifest_sha256"], m.sha256, "{res}");
    assert_eq!(res["unchanged"], false, "{res}");
    assert_same_tree(&data, &src, "after the restore");
    assert_eq!(
        std::fs::read_link(data.join("links/printer")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(
        std::fs::metadata(data.join("links/hard link"))
            .unwrap()
            .ino(),
        std::fs::metadata(data.join("d1/s1/f0001.bin"))
            .unwrap()
            .ino(),
        "the hard link is one"
    );
    let a = asides(&data);
    assert_eq!(a.len(), 1, "the earlier data moved aside once: {a:?}");
    assert_same_tree(&a[0], &earlier, "the earlier data, kept aside");
    assert!(!staging(&data).exists(), "the staging copy became DATA_DIR");
    assert!(!archive_on_host(&data).exists(), "the archive was deleted");
    let aside_name = a[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(top_level(&h), ["usr2", aside_name.as_str(), "var"]);
    let done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(marker(&h)).unwrap()).unwrap();
    assert_eq!(done, res, "the marker holds the result");
    assert!(
        files_containing(&h.root.join("var"), FAKE_SIGNATURE).is_empty(),
        "the URL is not stored on the host"
    );

    // The same archive again: downloaded, and DATA_DIR verified in place; nothing moved.
    let inode = std::fs::metadata(&data).unwrap().ino();
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    assert_url_not_shown(&out, &url);
    let res2 = out.result().expect("a result line");
    assert_eq!(res2["unchanged"], true, "{res2}");
    assert_eq!(res2["files"], m.files);
    assert_eq!(res2["bytes"], m.bytes);
    assert_eq!(res2["manifest_sha256"], m.sha256);
    assert_eq!(
        std::fs::metadata(&data).unwrap().ino(),
        inode,
        "DATA_DIR was not moved"
    );
    assert_same_tree(&data, &src, "after the second run");
    assert_eq!(asides(&data), a, "no new copy aside");
    assert!(
        !staging(&data).exists(),
        "the second extraction was removed"
    );
    assert!(!archive_on_host(&data).exists(), "the archive was deleted");
    assert_eq!(top_level(&h), ["usr2", aside_name.as_str(), "var"]);
    drop(server);
}

/// A plain (uncompressed) .tar takes its own path through restore.sh: no `-z` for tar,
/// which bash 4.2 (CentOS 7) expands as an empty array, fatal under `set -u` if written
/// "${a[@]}".
#[test]
fn a_plain_tar_archive_arrives_byte_identical() {
    let h = TestHost::up_root("rs3f", 34, false);
    let src = h.dir.path().join("src");
    generate(&src, 30, 0x5eed_0044);
    let m = write_manifest(&src);
    let www = h.dir.path().join("www");
    pack(&src, &www.join("12345678.tar"));
    let data = h.root.join("usr2");
    let server = HttpServer::start(&h, &www);
    let url = server.signed_url("12345678.tar");
    let base = s3_base("/usr2", &url);
    let source = ("SOURCE", Some("s3://test-bucket/backups/12345678.tar"));
    let out = run(&h.remote(), &inputs(&base, &[source]));
    assert_exit(&out, 0);
    let res = out.result().expect("a result line");
    assert_eq!(res["files"], m.files, "{res}");
    assert_eq!(res["manifest_sha256"], m.sha256, "{res}");
    assert_same_tree(&data, &src, "after the restore");
    assert!(!archive_on_host(&data).exists(), "the archive was deleted");
    drop(server);
}

#[test]
fn a_corrupt_file_in_an_s3_archive_is_named_and_data_dir_is_untouched() {
    let h = TestHost::up_root("rs3b", 52, false);
    let src = h.dir.path().join("src");
    generate(&src, 40, 0x5eed_0052);
    write_manifest(&src);
    // Changed after the manifest was written: same size, other bytes.
    let victim = src.join("dir with space/ünïcödé-Blumen-🌷.dat");
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0x55;
    std::fs::write(&victim, &bad).unwrap();
    let www = h.dir.path().join("www");
    pack(&src, &www.join(ARCHIVE));
    let data = h.root.join("d");
    earlier_data(&data);
    let before = snapshot(&data);
    let server = HttpServer::start(&h, &www);
    let url = server.signed_url(ARCHIVE);
    let r = h.remote();
    let base = s3_base("/d", &url);

    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 3);
    assert_url_not_shown(&out, &url);
    assert_eq!(
        bad_files(&out),
        ["restore: mismatch: dir with space/ünïcödé-Blumen-🌷.dat"],
        "exactly the changed file is named:\n{}",
        text(&out.stderr)
    );
    assert_same(&snapshot(&data), &before, "DATA_DIR keeps its content");
    assert!(asides(&data).is_empty(), "nothing was moved aside");
    assert!(!marker(&h).exists(), "no done marker");
    assert!(out.result().is_none());
    let st = staging(&data);
    assert!(st.is_dir(), "the copy is kept for inspection");
    assert!(
        text(&out.stderr).contains(&st.display().to_string()),
        "says where the copy is:\n{}",
        text(&out.stderr)
    );
    assert!(!archive_on_host(&data).exists(), "the archive was deleted");

    // A repaired archive replaces the kept copy and goes through.
    std::fs::write(&victim, &good).unwrap();
    pack(&src, &www.join(ARCHIVE));
    let out = run(&r, &inputs(&base, &[]));
    assert_exit(&out, 0);
    assert!(bad_files(&out).is_empty());
    assert_same_tree(&data, &src, "after the repaired restore");
    let a = asides(&data);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_same(&snapshot(&a[0]), &before, "the earlier data, kept aside");
    assert!(!staging(&data).exists());
    assert!(!archive_on_host(&data).exists());
    assert!(marker(&h).exists());
    drop(server);
}

#[test]
fn hostile_s3_archives_are_refused_before_anything_is_extracted() {
    let h = TestHost::up_root("rs3c", 53, false);
    let data = h.root.join("usr2");
    earlier_data(&data);
    // Targets outside the staging directory: inside the host's root, and outside it.
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    put(&outside, b"canary", b"outside the host root\n");
    put(&h.root, b"outside-canary", b"next to DATA_DIR\n");
    let outside_str = outside.display().to_string();
    let absolute = format!("{}/absolute-evil", h.root.display());
    let absolute_out = format!("{outside_str}/absolute-evil");
    let www = h.dir.path().join("www");
    let server = HttpServer::start(&h, &www);
    let r = h.remote();

    // Valid data and manifest in every archive: only the hostile members are wrong.
    let good: &[u8] = b"good data\n";
    let manifest = format!("{}  good.txt\n", sha256(good));
    type Case<'a> = (&'a str, &'a str, Vec<Member<'a>>);
    let cases: Vec<Case> = vec![
        ("dotdot", "../evil", vec![Member::File("../evil", b"x")]),
        (
            "dotdot-deep",
            "./sub/../../evil",
            vec![Member::File("./sub/../../evil", b"x")],
        ),
        ("absolute", &absolute, vec![Member::File(&absolute, b"x")]),
        (
            "absolute-out",
            &absolute_out,
            vec![Member::File(&absolute_out, b"x")],
        ),
        (
            "symlink-out",
            "escape/symlink-evil",
            vec![
                Member::Symlink("escape", &outside_str),
                Member::File("escape/symlink-evil", b"x"),
            ],
        ),
        (
            "symlink-up",
            "up/relative-evil",
            vec![
                Member::Symlink("up", ".."),
                Member::File("up/relative-evil", b"x"),
            ],
        ),
        (
            "symlink-then-dir",
            "./sneaky/dir-evil",
            vec![
                Member::Symlink("./sneaky", &outside_str),
                Member::Dir("./sneaky/"),
                Member::File("./sneaky/dir-evil", b"x"),
            ],
        ),
        (
            "hardlink-out",
            "hl",
            vec![Member::HardLink("hl", "../outside-canary")],
        ),
        ("fifo", "pipe", vec![Member::Fifo("pipe")]),
        ("device", "./null", vec![Member::CharDev("./null", 1, 3)]),
    ];
    let var = |snap: BTreeMap<Vec<u8>, Entry>| {
        let mut snap = snap;
        snap.retain(|k, _| !k.starts_with(b"var"));
        snap
    };
    let root_before = var(snapshot(&h.root));
    let outside_before = snapshot(&outside);
    for (file, member, hostile) in cases {
        let archive = format!("{file}.tar.gz");
        let mut members = vec![
            Member::Dir("./"),
            Member::File("./good.txt", good),
            Member::File("./MANIFEST.sha256", manifest.as_bytes()),
        ];
        members.extend(hostile);
        write_tar_gz(&www.join(&archive), &members);
        let url = server.signed_url(&archive);
        let out = run(
            &r,
            &inputs(
                &s3_base("/usr2", &url),
                &[(
                    "SOURCE",
                    Some(&format!("s3://test-bucket/backups/{archive}")),
                )],
            ),
        );
        assert_exit(&out, 3);
        assert_url_not_shown(&out, &url);
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("restore: refused: {member} (")),
            "{file}: names {member}:\n{err}"
        );
        assert!(err.contains("nothing was extracted"), "{file}:\n{err}");
        assert!(out.result().is_none());
        assert_same(&var(snapshot(&h.root)), &root_before, file);
        assert_same(&snapshot(&outside), &outside_before, file);
        assert!(!marker(&h).exists());
    }

    // The same archive without a hostile member goes through.
    let archive = "fine.tar.gz";
    write_tar_gz(
        &www.join(archive),
        &[
            Member::Dir("./"),
            Member::File("./good.txt", good),
            Member::File("./MANIFEST.sha256", manifest.as_bytes()),
        ],
    );
    let url = server.signed_url(archive);
    let out = run(
        &r,
        &inputs(
            &s3_base("/usr2", &url),
            &[("SOURCE", Some("s3://test-bucket/backups/fine.tar.gz"))],
        ),
    );
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(data.join("good.txt")).unwrap(), good);
    assert_eq!(asides(&data).len(), 1);
    assert_same(&snapshot(&outside), &outside_before, "at the end");
    drop(server);
}

#[test]
fn bad_s3_inputs_change_nothing_and_never_show_the_url() {
    let h = TestHost::up_root("rs3d", 54, false);
    install_source_key(&h);
    let src = backup_dir(&h);
    generate(&src, 5, 0x5eed_0054);
    write_manifest(&src);
    let www = h.dir.path().join("www");
    pack(&src, &www.join(ARCHIVE));
    let data = h.root.join("usr2");
    earlier_data(&data);
    let server = HttpServer::start(&h, &www);
    let url = server.signed_url(ARCHIVE);
    let r = h.remote();
    let s3 = s3_base("/usr2", &url);
    let mut ssh = ssh_base(&h, "rti", "/usr2", &src);
    ssh.push(("SOURCE_URL", url.clone()));
    let file = vec![
        ("SHOP", SHOP.to_string()),
        ("APP", "rti".to_string()),
        ("DATA_DIR", "/usr2".to_string()),
        ("SOURCE", "file:///backups/tfrsync-12345678/".to_string()),
        ("SOURCE_URL", url.clone()),
    ];
    let with_space = url.replacen("?", " ?", 1);
    let with_quote = url.replacen("?", "\"?", 1);
    let ftp = url.replacen("http://", "ftp://", 1);
    let long_bucket = format!("s3://{}/k.tar.gz", "b".repeat(64));

    let whole = snapshot(&h.root);
    // (base, change, what the one line must mention)
    type Case<'a> = (&'a [(&'a str, String)], (&'a str, Option<&'a str>), &'a str);
    let cases: Vec<Case> = vec![
        (&s3, ("SOURCE_URL", None), "SOURCE_URL"),
        (&s3, ("SOURCE_URL", Some("")), "SOURCE_URL"),
        // Complete ssh:// and file:// inputs, but with a SOURCE_URL.
        (&ssh, ("SHOP", Some(SHOP)), "SOURCE_URL"),
        (&file, ("SHOP", Some(SHOP)), "SOURCE_URL"),
        (&s3, ("SOURCE_URL", Some(&ftp)), "SOURCE_URL"),
        (
            &s3,
            ("SOURCE_URL", Some("file:///etc/passwd")),
            "SOURCE_URL",
        ),
        (&s3, ("SOURCE_URL", Some(&with_space)), "SOURCE_URL"),
        (&s3, ("SOURCE_URL", Some(&with_quote)), "SOURCE_URL"),
        (&s3, ("SOURCE", Some("s3://ab/k.tar.gz")), "bucket"),
        (&s3, ("SOURCE", Some("s3://Test-Bucket/k.tar.gz")), "bucket"),
        (&s3, ("SOURCE", Some("s3://test_bucket/k.tar.gz")), "bucket"),
        (
            &s3,
            ("SOURCE", Some("s3://-test-bucket/k.tar.gz")),
            "bucket",
        ),
        (
            &s3,
            ("SOURCE", Some("s3://test-bucket./k.tar.gz")),
            "bucket",
        ),
        (&s3, ("SOURCE", Some(&long_bucket)), "bucket"),
        (&s3, ("SOURCE", Some("s3:///k.tar.gz")), "bucket"),
        (&s3, ("SOURCE", Some("s3://test-bucket/")), "key"),
        (&s3, ("SOURCE", Some("s3://test-bucket/k.zip")), "key"),
        (
            &s3,
            ("SOURCE", Some("s3://test-bucket/k.tar.gz.part")),
            "key",
        ),
        (&s3, ("SOURCE", Some("s3://test-bucket")), "SOURCE"),
        (
            &s3,
            ("SOURCE", Some("s3://test-bucket/a\nb.tar")),
            "control",
        ),
    ];
    for (base, (name, value), mentions) in cases {
        let out = run(&r, &inputs(base, &[(name, value)]));
        let what = format!("{name}={value:?} with SOURCE {:?}", base[3].1);
        assert_eq!(out.exit_code, 2, "{what}:\n{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.starts_with("restore: ") && err.lines().count() == 1,
            "{what}: one clear line: {err}"
        );
        assert!(err.contains(mentions), "{what}: mentions {mentions}: {err}");
        assert_url_not_shown(&out, &url);
        assert!(out.result().is_none());
        assert_eq!(snapshot(&h.root), whole, "{what} changed the host");
    }
    drop(server);
}

#[test]
fn a_failed_download_is_reported_without_the_url_and_changes_nothing() {
    let h = TestHost::up_root("rs3e", 55, false);
    let www = h.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = h.root.join("usr2");
    earlier_data(&data);
    let server = HttpServer::start(&h, &www);
    let r = h.remote();
    let before = snapshot(&data);

    // No such object: 404.
    let url = server.signed_url(ARCHIVE);
    let out = run(&r, &inputs(&s3_base("/usr2", &url), &[]));
    assert_exit(&out, 1);
    assert_url_not_shown(&out, &url);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "restore: cannot download the archive of {S3_SOURCE} (curl exit 0, HTTP status 404)"
        )),
        "{err}"
    );
    assert!(out.result().is_none());
    assert_same(&snapshot(&data), &before, "DATA_DIR keeps its content");
    assert!(!archive_on_host(&data).exists(), "no archive left");
    assert!(!staging(&data).exists(), "no staging copy");
    assert!(!marker(&h).exists());
    assert!(
        files_containing(&h.root, FAKE_SIGNATURE).is_empty(),
        "the URL is not stored on the host"
    );

    // Nothing listens: no HTTP status at all.
    let url = url.replacen(&format!(":{HTTP_PORT}/"), ":8001/", 1);
    let out = run(&r, &inputs(&s3_base("/usr2", &url), &[]));
    assert_exit(&out, 1);
    assert_url_not_shown(&out, &url);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "restore: cannot download the archive of {S3_SOURCE} (curl exit 7, HTTP status 000)"
        )),
        "{err}"
    );
    assert_same(&snapshot(&data), &before, "DATA_DIR keeps its content");
    assert!(!archive_on_host(&data).exists());
    assert!(!staging(&data).exists());
    drop(server);
}

/// The manifest is read by the host's python (names are bytes): under CentOS 7's bash 4.2
/// with its python 2.7 and with 3.6, a tricky tree (backslashes, newlines, non-UTF-8 names,
/// the manifest's escapes) restores byte-identical from a file:// source, and a manifest
/// line that is not `<sha256>  <path>` is named. No host needed: the script runs here.
#[test]
fn the_manifest_is_read_alike_by_centos7_pythons() {
    for (version, py) in common::host_pythons() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("backup");
        generate(&src, 60, 0x5eed_0007);
        let m = write_manifest(&src);
        let run = || {
            Command::new(common::host_bash())
                .arg(common::repo().join("bootstrap/restore.sh"))
                .env_clear()
                .env(
                    "PATH",
                    format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", py.path().display()),
                )
                .env("POSCLOUD_ROOT", root.path())
                .envs([
                    ("SHOP", SHOP),
                    ("APP", "rti"),
                    ("DATA_DIR", "/usr2"),
                    ("SOURCE", "file:///backup/"),
                ])
                .output()
                .unwrap()
        };
        let out = run();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "python {version}: {err}");
        let res: serde_json::Value = text(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("POSCLOUD_RESULT "))
            .map(|j| serde_json::from_str(j).unwrap())
            .unwrap_or_else(|| panic!("python {version}: no result: {err}"));
        assert_eq!(res["files"], m.files, "python {version}: {res}");
        assert_eq!(res["manifest_sha256"], m.sha256, "python {version}: {res}");
        assert_same_tree(&root.path().join("usr2"), &src, "after the restore");

        let mut bad = std::fs::read(src.join(MANIFEST)).unwrap();
        bad.extend_from_slice(b"not a manifest line\n");
        std::fs::write(src.join(MANIFEST), &bad).unwrap();
        let out = run();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "python {version}: {err}");
        let n = bad.iter().filter(|b| **b == b'\n').count();
        assert!(
            err.contains(&format!(
                "restore: bad manifest {MANIFEST}: line {n} is not '<sha256>  <path>'"
            )),
            "python {version}: {err}"
        );
    }
}
