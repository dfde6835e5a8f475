//! The host's user-data as `poscloud userdata` renders it: under the AWS size limit, carrying
//! every piece of the CentOS 7 host setup, and never a secret. The shell parts are cut out of
//! the rendered document and run here where that is safe (the firewall rule generator) or
//! syntax-checked (the setup script), so what is tested is what ships.

mod common;
use base64::Engine;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// AWS limit on user data before base64.
const LIMIT: usize = 16 * 1024;
const SSM_URL_EU: &str =
    "https://s3.eu-west-1.amazonaws.com/amazon-ssm-eu-west-1/latest/linux_amd64/amazon-ssm-agent.rpm";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A well-formed OpenSSH public key line of `kind` with random key material.
fn public_key(kind: &str, material: usize, comment: &str) -> String {
    let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
    blob.extend_from_slice(kind.as_bytes());
    blob.extend_from_slice(&(material as u32).to_be_bytes());
    blob.extend_from_slice(&random_bytes(material));
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("{kind} {b64} {comment}")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `poscloud userdata` with a clean environment plus `env`.
fn poscloud(region: &str, env_name: &str, stack: Option<&Path>, env: &[(&str, &str)]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poscloud"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .current_dir(home.path())
        .args(["userdata", "--shop", "12345678", "--env", env_name])
        .args(["--region", region]);
    if let Some(s) = stack {
        cmd.arg("--stack").arg(s);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn render(env_name: &str, stack: Option<&Path>) -> String {
    let r = poscloud("eu-west-1", env_name, stack, &[]);
    assert_eq!(r.code, Some(0), "poscloud userdata failed: {}", r.stderr);
    r.stdout
}

/// The content of the `write_files` entry for `path`, de-indented.
fn written_file(doc: &str, path: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start() == format!("- path: {path}"))
        .unwrap_or_else(|| panic!("no write_files entry for {path}"));
    let item_indent = lines[at].len() - lines[at].trim_start().len();
    let content = (at + 1..lines.len())
        .take_while(|&i| {
            let l = lines[i];
            l.trim().is_empty() || l.len() - l.trim_start().len() > item_indent
        })
        .find(|&i| lines[i].trim() == "content: |")
        .unwrap_or_else(|| panic!("write_files entry {path} has no block content"));
    let key_indent = lines[content].len() - lines[content].trim_start().len();
    let body: Vec<&str> = lines[content + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .copied()
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut text: String = body
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    while text.ends_with("\n\n") {
        text.pop();
    }
    text
}

/// `key=value` of the stack file the host reads.
fn stack_value(doc: &str, key: &str) -> String {
    written_file(doc, "/etc/poscloud/stack")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("/etc/poscloud/stack has no {key}"))
        .to_string()
}

/// Runs the rendered firewall rule generator for the rendered admin CIDRs.
fn firewall_rules(doc: &str, family: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("rules.sh");
    std::fs::write(
        &script,
        written_file(doc, "/usr/local/sbin/poscloud-firewall-rules"),
    )
    .unwrap();
    let out = Command::new(common::host_bash())
        .arg(&script)
        .arg(family)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ADMIN_CIDRS", stack_value(doc, "admin_cidrs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "firewall rules failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A stack profile like qa.toml with two admin CIDRs and two operator keys.
fn stack_with_access(dir: &Path, keys: &[String]) -> PathBuf {
    let qa = std::fs::read_to_string(repo().join("stacks/qa.toml")).unwrap();
    let cidrs = "admin_cidrs = [\"203.0.113.0/24\", \"198.51.100.7/32\"]";
    let key_list = keys
        .iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = qa.replace("admin_cidrs = []", cidrs).replace(
        "operator_keys = []",
        &format!("operator_keys = [{key_list}]"),
    );
    assert!(
        text.contains(cidrs) && text.contains(&keys[0]),
        "stacks/qa.toml no longer has empty admin_cidrs/operator_keys lines to replace"
    );
    let path = dir.join("access.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Everything the host setup must carry, whatever the stack.
fn assert_host_setup(doc: &str) {
    assert!(doc.starts_with("#cloud-config\n"), "not a cloud-config");
    let setup = written_file(doc, "/usr/local/sbin/poscloud-host-setup");
    let rules_script = written_file(doc, "/usr/local/sbin/poscloud-firewall-rules");
    for (what, script) in [("host setup", &setup), ("firewall rules", &rules_script)] {
        assert!(
            script.starts_with("#!/usr/bin/env bash\n"),
            "{what}: no bash shebang"
        );
        assert!(
            script
                .lines()
                .any(|l| l.starts_with("set -") && l.contains("euo pipefail")),
            "{what}: no set -euo pipefail"
        );
    }
    let syntax = Command::new(common::host_bash())
        .args(["-n", "-c", &setup])
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "rendered host setup is not valid bash: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    // The repos move to the vault and the EPEL archive before the first yum call.
    let code: Vec<&str> = setup
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let line_of = |f: &dyn Fn(&str) -> bool, what: &str| {
        code.iter()
            .position(|l| f(l))
            .unwrap_or_else(|| panic!("host setup has no {what}"))
    };
    let vault = line_of(
        &|l| l.contains("https://vault.centos.org/7.9.2009"),
        "vault URL",
    );
    let rewrite = line_of(&|l| l.trim() == "repos", "call of the repo rewrite");
    let first_yum = line_of(&|l| l.contains("yum "), "yum call");
    assert!(
        vault < rewrite && rewrite < first_yum,
        "a yum call comes before the vault rewrite"
    );
    assert!(setup.contains("mirrorlist="), "mirrorlist is not disabled");
    assert!(
        setup.contains("/pub/archive/epel/7"),
        "EPEL is not on its archive"
    );
    assert!(
        setup.contains("retry"),
        "downloads are not retried (no internet before the EIPs)"
    );

    // Docker pinned to the last el7 release, strongSwan from EPEL, the regional SSM agent.
    let install = setup
        .lines()
        .find(|l| l.contains("docker-ce-26.1."))
        .expect("docker-ce is not pinned to 26.1.x");
    assert!(install.contains("docker-ce-cli-26.1."), "{install}");
    for package in ["strongswan", "strongswan-libipsec", "rsync"] {
        assert!(
            install
                .split_whitespace()
                .any(|w| w.trim_end_matches(')') == package),
            "{package} not installed: {install}"
        );
    }
    // The SSM agent comes first, before the update and the other packages: poscloud's
    // online check waits for it.
    let agent = line_of(
        &|l| l.contains("yum -y install \"$ssm\""),
        "SSM agent install",
    );
    let update = line_of(&|l| l.contains("yum -y update"), "yum update");
    let agent_up = line_of(
        &|l| l.contains("systemctl start amazon-ssm-agent"),
        "start of the SSM agent",
    );
    assert!(
        agent < update && agent_up < update,
        "the SSM agent is installed or started after the update"
    );
    assert!(setup.contains("https://download.docker.com/linux/centos/7/"));
    assert!(stack_value(doc, "ssm_agent_url") == SSM_URL_EU);
    for service in ["docker", "amazon-ssm-agent", "auditd"] {
        assert!(
            setup
                .lines()
                .any(|l| l.starts_with("systemctl enable") && l.contains(service)),
            "{service} is not enabled"
        );
    }

    // eth1 is left to the POS container; eth0 keeps the only default route.
    for line in [
        "/etc/sysconfig/network-scripts/ifcfg-eth1",
        "ONBOOT=no",
        "BOOTPROTO=none",
        "NM_CONTROLLED=no",
        "DEFROUTE=no",
        "GATEWAYDEV=eth0",
        "net.ipv4.ip_forward=1",
        "rp_filter=2",
    ] {
        assert!(setup.contains(line), "missing {line}");
    }
    assert!(
        !setup.contains("rp_filter=1"),
        "strict rp_filter breaks two ENIs"
    );

    // sshd: keys only, no root, modern algorithms only.
    for line in [
        "PasswordAuthentication no",
        "PermitRootLogin no",
        "AuthenticationMethods publickey",
        "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr",
        "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256",
    ] {
        assert!(setup.lines().any(|l| l == line), "sshd_config lacks {line}");
    }
    for weak in ["-cbc", "hmac-sha1", "hmac-md5", "group1-sha1", "arcfour"] {
        assert!(!setup.contains(weak), "weak SSH algorithm {weak}");
    }

    // Default-drop INPUT, loopback and replies allowed; IPv6 dropped too.
    for family in ["4", "6"] {
        let rules = firewall_rules(doc, family);
        for line in [
            ":INPUT DROP [0:0]",
            "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "COMMIT",
        ] {
            assert!(rules.lines().any(|l| l == line), "IPv{family}: no {line}");
        }
        assert!(
            !rules.contains("FORWARD") && !rules.contains("*nat"),
            "IPv{family}: rules touch Docker's chains"
        );
    }
    assert!(
        setup.contains("--noflush"),
        "a full restore flushes Docker's chains"
    );

    // The run: once, logged, leaving the marker bootstrap waits for.
    assert!(doc.contains("\nruncmd:\n- [/usr/local/sbin/poscloud-host-setup]\n"));
    for path in [
        "/var/lib/poscloud/userdata.json",
        "/var/lib/poscloud/userdata.failed",
        "/var/log/poscloud-host-setup.log",
    ] {
        assert!(setup.contains(path), "no {path}");
    }
    assert!(!doc.contains("PRIVATE KEY"), "a private key in user-data");
}

#[test]
fn builtin_stacks_render_small_complete_and_without_ssh() {
    for env_name in ["prod", "qa", "dev"] {
        let doc = render(env_name, None);
        assert!(
            doc.len() < LIMIT,
            "{env_name}: {} bytes, over the AWS limit",
            doc.len()
        );
        assert_host_setup(&doc);
        assert_eq!(stack_value(&doc, "env"), env_name);
        assert_eq!(stack_value(&doc, "admin_cidrs"), "");
        assert_eq!(written_file(&doc, "/etc/poscloud/operator_keys"), "");
        // No admin CIDRs: no SSH inbound at all, the host is reached through SSM.
        let rules = firewall_rules(&doc, "4");
        assert!(
            !rules.contains("--dport 22"),
            "{env_name}: SSH open:\n{rules}"
        );
    }
}

#[test]
fn admin_cidrs_and_operator_keys_reach_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        public_key("ssh-ed25519", 32, "op1@florist"),
        public_key("ssh-rsa", 385, "op2@florist"),
    ];
    let stack = stack_with_access(dir.path(), &keys);
    let doc = render("qa", Some(&stack));
    assert!(doc.len() < LIMIT, "{} bytes, over the AWS limit", doc.len());
    assert_host_setup(&doc);

    let rules = firewall_rules(&doc, "4");
    for cidr in ["203.0.113.0/24", "198.51.100.7/32"] {
        let rule = format!(
            "-A INPUT -s {cidr} -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT"
        );
        assert!(
            rules.lines().any(|l| l == rule),
            "no SSH rule for {cidr}:\n{rules}"
        );
    }
    assert_eq!(rules.matches("--dport 22").count(), 2, "{rules}");
    assert!(
        !firewall_rules(&doc, "6").contains("--dport 22"),
        "SSH open over IPv6"
    );

    let installed = written_file(&doc, "/etc/poscloud/operator_keys");
    let want: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(installed.lines().collect::<Vec<_>>(), want, "operator keys");
    let setup = written_file(&doc, "/usr/local/sbin/poscloud-host-setup");
    assert!(
        setup.contains("authorized_keys"),
        "keys are never installed"
    );
    assert_eq!(stack_value(&doc, "login_user"), "centos");
}

#[test]
fn the_region_is_the_one_asked_for() {
    let r = poscloud("ap-southeast-2", "qa", None, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        stack_value(&r.stdout, "ssm_agent_url"),
        "https://s3.ap-southeast-2.amazonaws.com/amazon-ssm-ap-southeast-2/latest/linux_amd64/amazon-ssm-agent.rpm"
    );
    assert!(!r.stdout.contains("eu-west-1"));
}

#[test]
fn no_secret_from_the_environment_reaches_user_data() {
    let secret = hex(&random_bytes(32));
    let key_id = format!("AKIA{}", hex(&random_bytes(8)).to_uppercase());
    let token = hex(&random_bytes(48));
    let dir = tempfile::tempdir().unwrap();
    let keys = [public_key("ssh-ed25519", 32, "op@florist")];
    let stack = stack_with_access(dir.path(), &keys);
    for stack in [None, Some(stack.as_path())] {
        let r = poscloud(
            "eu-west-1",
            "prod",
            stack,
            &[
                ("AWS_SECRET_ACCESS_KEY", &secret),
                ("AWS_ACCESS_KEY_ID", &key_id),
                ("AWS_SESSION_TOKEN", &token),
                ("POSCLOUD_PSK", &secret),
            ],
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stdout.len() > 1000, "nothing rendered");
        for (name, value) in [
            ("secret key", &secret),
            ("key id", &key_id),
            ("token", &token),
        ] {
            assert!(
                !r.stdout.contains(value.as_str()),
                "the {name} is in user-data"
            );
            assert!(
                !r.stderr.contains(value.as_str()),
                "the {name} is on stderr"
            );
        }
        assert!(!r.stdout.contains("PRIVATE KEY"));
    }
}

#[test]
fn too_large_user_data_is_gzipped_and_too_large_even_then_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Random key material does not compress: 8 RSA-sized keys push the text past 16 KB,
    // while gzip still brings the template back under it.
    let keys: Vec<String> = (0..8)
        .map(|i| public_key("ssh-rsa", 520, &format!("op{i}")))
        .collect();
    let stack = stack_with_access(dir.path(), &keys);
    let r = poscloud("eu-west-1", "qa", Some(&stack), &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let json_run = {
        let home = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_poscloud"))
            .env_clear()
            .env("HOME", home.path())
            .args([
                "userdata",
                "--shop",
                "12345678",
                "--env",
                "qa",
                "--region",
                "eu-west-1",
            ])
            .arg("--stack")
            .arg(&stack)
            .args(["--output", "json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert!(
        json_run["bytes"].as_u64().unwrap() as usize > LIMIT,
        "{json_run}"
    );
    assert_eq!(json_run["gzipped"], true);
    assert!(json_run["bytes_sent"].as_u64().unwrap() as usize <= LIMIT);

    // 40 such keys do not fit even gzipped: a clear input error, exit 2.
    let keys: Vec<String> = (0..40)
        .map(|i| public_key("ssh-rsa", 520, &format!("op{i}")))
        .collect();
    let stack = stack_with_access(dir.path(), &keys);
    let r = poscloud("eu-west-1", "qa", Some(&stack), &[]);
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(
        r.stderr.contains("even gzipped") && r.stderr.contains("operator_keys"),
        "{}",
        r.stderr
    );
}

// ---- The user-data really run on a test host (tests/rig/el7/) ---------------------------

/// The two runs below share the test host udh1 (INDEX 60): one at a time.
static EL7_HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A fresh OpenSSH public key of `kind`, made with ssh-keygen (its private half deleted).
fn generated_key(dir: &Path, kind: &str, comment: &str) -> String {
    let path = dir.join(format!("op-{kind}"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", kind, "-C", comment, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success(), "ssh-keygen -t {kind}");
    std::fs::remove_file(&path).unwrap();
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn netns(host: &common::host::TestHost, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("pc-{}", host.name)])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} in the test host's netns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn root_ns(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Files and kernel state of this machine that host-setup would change if it escaped the
/// test host's private view: (what, content or "absent").
fn machine_state() -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = [
        "/etc/ssh/sshd_config",
        "/etc/sysctl.d/90-poscloud.conf",
        "/etc/poscloud/stack",
        "/etc/yum.conf",
        "/etc/yum.repos.d/CentOS-Base.repo",
        "/etc/systemd/system/poscloud-firewall.service",
        "/etc/sysconfig/network",
        "/etc/chrony.conf",
        "/etc/docker/daemon.json",
        "/etc/audit/rules.d/90-poscloud.rules",
        "/etc/passwd",
        "/var/lib/poscloud/userdata.json",
        "/var/log/poscloud-host-setup.log",
        "/home/centos/.ssh/authorized_keys",
        "/usr/local/sbin/poscloud-host-setup",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/net/ipv4/conf/all/rp_filter",
        "/proc/sys/kernel/randomize_va_space",
        "/proc/sys/fs/suid_dumpable",
    ]
    .iter()
    .map(|p| {
        let v = std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| "absent".to_string());
        (p.to_string(), v)
    })
    .collect();
    s.push((
        "iptables -S INPUT".into(),
        root_ns(&["iptables", "-S", "INPUT"]),
    ));
    s
}

/// The blocks of the yum stand-in's log: ("yum -y install …", its indented lines).
fn yum_calls(host: &common::host::TestHost) -> Vec<(String, Vec<String>)> {
    let log = std::fs::read_to_string(host.root.join("var/lib/el7-standin/yum.log"))
        .expect("the yum stand-in kept no log");
    let mut calls: Vec<(String, Vec<String>)> = Vec::new();
    for l in log.lines() {
        if let Some(c) = l.strip_prefix("== ") {
            calls.push((c.to_string(), Vec::new()));
        } else if let Some(last) = calls.last_mut() {
            last.1.push(l.trim().to_string());
        }
    }
    calls
}

fn mode_uid(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid())
}

#[test]
fn host_setup_really_runs_on_a_centos7_test_host() {
    let _one = EL7_HOST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        generated_key(dir.path(), "ed25519", "op1@florist"),
        generated_key(dir.path(), "ecdsa", "op2@florist"),
    ];
    let stack = stack_with_access(dir.path(), &keys);
    let doc = render("qa", Some(&stack));
    let before = machine_state();

    let host = common::host::TestHost::up("udh1", 60, false);
    let ssh = format!("{}:22", host.address).parse().unwrap();
    let tcp = |t| std::net::TcpStream::connect_timeout(&ssh, std::time::Duration::from_secs(t));
    assert!(tcp(10).is_ok(), "the test host's sshd does not answer");

    let run = host.run_userdata(&doc);
    assert_eq!(
        run.code,
        Some(0),
        "host-setup failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );

    // The marker, where poscloud's scripts look on a test host ($POSCLOUD_ROOT).
    let state = host.root.join("var/lib/poscloud");
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("userdata.json")).unwrap()).unwrap();
    assert_eq!(marker["shop"], "12345678");
    assert_eq!(marker["env"], "qa");
    assert_eq!(marker["docker"], "26.1.4-1.el7");
    assert_eq!(marker["strongswan"], "5.7.2-1.el7");
    assert!(marker["ssm_agent"].as_str().unwrap().starts_with("3."));
    // The AMI's kernel runs; the update installed a newer one: a reboot is due.
    assert_eq!(marker["kernel"], "3.10.0-1160.el7.x86_64");
    assert_eq!(marker["kernel_installed"], "3.10.0-1160.119.1.el7.x86_64");
    assert_eq!(marker["reboot_required"], true);
    assert_eq!(marker["selinux"], "Enforcing");
    let finished = marker["finished"].as_str().unwrap();
    assert!(
        finished.len() == 20 && finished.ends_with('Z') && finished.starts_with("20"),
        "{marker}"
    );
    assert!(!state.join("userdata.failed").exists());
    let log = host.root.join("var/log/poscloud-host-setup.log");
    assert_eq!(mode_uid(&log).0, 0o600);
    assert!(std::fs::read_to_string(&log).unwrap().contains("done: {"));

    // sshd: the poscloud block on top of CentOS's stock file, accepted by `sshd -t`, and the
    // effective values are the block's (the stock file says PasswordAuthentication yes).
    let etc = host.root.join("etc");
    let sshd_config = std::fs::read_to_string(etc.join("ssh/sshd_config")).unwrap();
    assert!(
        sshd_config.starts_with("# BEGIN poscloud\n"),
        "{sshd_config}"
    );
    assert_eq!(sshd_config.matches("# END poscloud").count(), 1);
    assert!(sshd_config.contains("\nPasswordAuthentication yes\n"));
    assert!(sshd_config.contains("Subsystem\tsftp\t/usr/libexec/openssh/sftp-server"));
    assert_eq!(mode_uid(&etc.join("ssh/sshd_config")).0, 0o600);
    let t = host.in_el7_view(&["sshd", "-t", "-f", "/etc/ssh/sshd_config"]);
    assert_eq!(t.code, Some(0), "sshd -t: {}", t.stderr);
    let effective = host.in_el7_view(&["sshd", "-T", "-f", "/etc/ssh/sshd_config"]);
    assert_eq!(effective.code, Some(0), "sshd -T: {}", effective.stderr);
    for line in [
        "permitrootlogin no",
        "passwordauthentication no",
        "authenticationmethods publickey",
        "x11forwarding no",
        "allowtcpforwarding no",
        "maxauthtries 4",
        "ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr",
        "kexalgorithms curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256",
    ] {
        assert!(
            effective.stdout.lines().any(|l| l == line),
            "sshd -T lacks {line}:\n{}",
            effective.stdout
        );
    }

    // sysctls, applied for real in the host's network namespace.
    for (key, want) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "2"),
        ("net.ipv4.conf.default.rp_filter", "2"),
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.all.log_martians", "1"),
        ("net.ipv4.conf.eth0.send_redirects", "0"),
        ("net.ipv4.tcp_syncookies", "1"),
        ("net.ipv6.conf.all.accept_ra", "0"),
    ] {
        assert_eq!(netns(&host, &["sysctl", "-n", key]).trim(), want, "{key}");
    }
    // Every line of the file it wrote is in force: net.* in the namespace, the two global
    // keys in the view's private files.
    let conf = std::fs::read_to_string(etc.join("sysctl.d/90-poscloud.conf")).unwrap();
    assert_eq!(conf.lines().count(), 23, "{conf}");
    for l in conf.lines() {
        let (key, want) = l.split_once('=').unwrap();
        let got = if key.starts_with("net.") {
            netns(&host, &["sysctl", "-n", key])
        } else {
            host.in_el7_view(&["sysctl", "-n", key]).stdout
        };
        assert_eq!(got.trim(), want, "{key}");
    }
    // iptables in the namespace: INPUT policy DROP and exactly firewall.sh's rules.
    let v4: Vec<String> = netns(&host, &["iptables", "-S", "INPUT"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        v4,
        [
            "-P INPUT DROP",
            "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -m conntrack --ctstate INVALID -j DROP",
            "-A INPUT -s 203.0.113.0/24 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT",
            "-A INPUT -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT",
            "-A INPUT -m limit --limit 5/min -j LOG --log-prefix \"poscloud-drop: \"",
        ]
    );
    let v6 = netns(&host, &["ip6tables", "-S", "INPUT"]);
    assert!(v6.starts_with("-P INPUT DROP\n"), "{v6}");
    assert!(v6.contains("-A INPUT -p ipv6-icmp -j ACCEPT") && !v6.contains("--dport 22"));
    // And it acts: the test host's own sshd, reached from outside the admin CIDRs, is cut
    // off (three tries of 1 s, none may connect).
    assert!(
        (0..3).all(|_| tcp(1).is_err()),
        "the firewall lets SSH in from 10.200.60.1"
    );

    // eth1 released and left down, the only default route via eth0.
    let eth1 = netns(&host, &["ip", "-4", "addr", "show", "dev", "eth1"]);
    assert!(
        !eth1.contains("inet ") && !eth1.contains("state UP"),
        "{eth1}"
    );
    assert_eq!(
        netns(&host, &["ip", "-4", "route", "show", "default"]).trim(),
        "default via 10.0.0.1 dev eth0"
    );
    let ifcfg = std::fs::read_to_string(etc.join("sysconfig/network-scripts/ifcfg-eth1")).unwrap();
    assert!(ifcfg.contains("\nONBOOT=no\n") && ifcfg.contains("\nNM_CONTROLLED=no\n"));

    // Operator keys in centos's authorized_keys, owned by centos, 0600 in a 0700 .ssh; and
    // they are keys ssh-keygen reads.
    let ssh_dir = host.root.join("home/centos/.ssh");
    let ak = ssh_dir.join("authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&ak)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        keys.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(mode_uid(&ak), (0o600, 1000));
    assert_eq!(mode_uid(&ssh_dir), (0o700, 1000));
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&ak)
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 2);
    // sudo never asks the login for a terminal (poscloud's SSH path runs `sudo -n` with none).
    let su = etc.join("sudoers.d/90-poscloud");
    assert_eq!(
        std::fs::read_to_string(&su).unwrap(),
        "Defaults:centos !requiretty\n"
    );
    assert_eq!(mode_uid(&su).0, 0o440);

    // yum: the repo files on the vault and the EPEL archive at every call, the SSM agent
    // installed before the update, then EPEL, then the packages.
    let calls = yum_calls(&host);
    let names: Vec<&str> = calls.iter().map(|(c, _)| c.as_str()).collect();
    let at = |prefix: &str| {
        names
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no yum call {prefix}: {names:?}"))
    };
    let agent = at(&format!("yum -y install {SSM_URL_EU}"));
    let update = at("yum -y update");
    let epel = at("yum -y install epel-release");
    let packages = at("yum -y install docker-ce-26.1.4 docker-ce-cli-26.1.4 containerd.io");
    assert!(at("yum clean all") < agent && agent < update && update < epel && epel < packages);
    assert_eq!(calls.len(), 5, "{names:?}");
    for (call, lines) in &calls[agent..] {
        for repo in ["base", "updates", "extras"] {
            let url = format!(
                "repo {repo}: baseurl=https://vault.centos.org/7.9.2009/{}/x86_64/",
                if repo == "base" { "os" } else { repo }
            );
            assert!(lines.contains(&url), "{call}: {lines:?}");
        }
        assert!(!lines.iter().any(|l| l.contains("FAILED")), "{lines:?}");
    }
    let pkg_lines = &calls[packages].1;
    for want in [
        "repo epel: baseurl=https://archives.fedoraproject.org/pub/archive/epel/7/x86_64",
        "repo docker-ce-stable: baseurl=https://download.docker.com/linux/centos/7/x86_64/stable",
        "installed: docker-ce-26.1.4-1.el7.x86_64 (docker-ce-stable)",
        "installed: strongswan-5.7.2-1.el7.x86_64 (epel)",
        "installed: strongswan-libipsec-5.7.2-1.el7.x86_64 (epel)",
        "installed: rsync-3.1.2-12.el7_9.x86_64 (updates)",
    ] {
        assert!(
            pkg_lines.iter().any(|l| l == want),
            "no {want}: {pkg_lines:?}"
        );
    }
    assert!(calls[agent]
        .1
        .iter()
        .any(|l| l.starts_with("installed: amazon-ssm-agent-")));
    assert!(calls[update]
        .1
        .iter()
        .any(|l| l.starts_with("excluded: cloud-init-")));
    let yum_conf = std::fs::read_to_string(etc.join("yum.conf")).unwrap();
    for line in [
        "retries=10",
        "timeout=60",
        "skip_missing_names_on_install=0",
    ] {
        assert_eq!(yum_conf.lines().filter(|l| *l == line).count(), 1, "{line}");
    }
    let rpm = host.in_el7_view(&[
        "rpm",
        "-q",
        "amazon-ssm-agent",
        "strongswan-libipsec",
        "rsync",
        "gpg-pubkey-621e9f35",
        "cloud-init-19.4-7.el7.centos",
    ]);
    assert_eq!(rpm.code, Some(0), "{}", rpm.stdout);

    // Services as a host that ran these systemctl calls has them.
    for unit in [
        "docker",
        "amazon-ssm-agent",
        "auditd",
        "poscloud-firewall",
        "sshd",
    ] {
        let r = host.in_el7_view(&["systemctl", "is-active", unit]);
        assert_eq!(r.stdout.trim(), "active", "{unit}");
    }
    assert_eq!(
        std::fs::read_link(etc.join("systemd/system/postfix.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(
        std::fs::read_link(
            etc.join("systemd/system/multi-user.target.wants/poscloud-firewall.service")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/poscloud-firewall.service")
    );
    let chrony = std::fs::read_to_string(etc.join("chrony.conf")).unwrap();
    assert!(chrony.starts_with("server 169.254.169.123 prefer iburst\n"));
    let audit = std::fs::read_to_string(etc.join("audit/audit.rules")).unwrap();
    assert!(audit.contains("-w /etc/ssh/sshd_config -p wa -k poscloud"));

    // Safe to run again: nothing doubled, nothing to install.
    let again = host.run_userdata(&doc);
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    let sshd_again = std::fs::read_to_string(etc.join("ssh/sshd_config")).unwrap();
    assert_eq!(
        sshd_again, sshd_config,
        "sshd_config changed on the second run"
    );
    assert_eq!(std::fs::read_to_string(&ak).unwrap().lines().count(), 2);
    assert_eq!(
        netns(&host, &["iptables", "-S", "INPUT"]).lines().count(),
        v4.len()
    );
    let network = std::fs::read_to_string(etc.join("sysconfig/network")).unwrap();
    assert_eq!(network.matches("GATEWAYDEV=eth0").count(), 1, "{network}");
    let calls = yum_calls(&host);
    assert!(
        calls[5..]
            .iter()
            .all(|(c, l)| !c.contains("install") && !l.iter().any(|l| l.starts_with("installed"))),
        "the second run installed something: {calls:?}"
    );

    // None of it reached this machine: its files and kernel state are as they were, and in
    // the view the machine's own filesystem is read-only while /etc is the host's.
    let probe = host.in_el7_view(&["touch", "/usr/lib/.el7-view-probe"]);
    assert_ne!(probe.code, Some(0));
    assert!(
        probe.stderr.contains("Read-only file system"),
        "{}",
        probe.stderr
    );
    let probe = host.in_el7_view(&["touch", "/etc/.el7-view-probe"]);
    assert_eq!(probe.code, Some(0), "{}", probe.stderr);
    assert!(etc.join(".el7-view-probe").exists());
    assert!(!Path::new("/etc/.el7-view-probe").exists());
    drop(host);
    let after = machine_state();
    for ((what, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "host-setup changed this machine's {what}");
    }
}

#[test]
fn a_package_el7_does_not_have_stops_host_setup_without_a_marker() {
    let _one = EL7_HOST.lock().unwrap_or_else(|e| e.into_inner());
    let good = render("qa", None);
    // Debian's name for the kernel-libipsec plugin, and a Docker release EL7 never got.
    for (from, to, missing) in [
        (
            "strongswan-libipsec audit",
            "strongswan-libipsec libcharon-extra-plugins audit",
            "libcharon-extra-plugins",
        ),
        ("docker-ce-26.1.4 ", "docker-ce-27.0.1 ", "docker-ce-27.0.1"),
    ] {
        assert_eq!(good.matches(from).count(), 1, "{from}");
        let doc = good.replace(from, to);
        let host = common::host::TestHost::up("udh1", 60, false);
        let run = host.run_userdata(&doc);
        assert_eq!(
            run.code,
            Some(1),
            "{missing}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout
                .contains(&format!("No package {missing} available.")),
            "{}",
            run.stdout
        );
        let state = host.root.join("var/lib/poscloud");
        assert!(
            !state.join("userdata.json").exists(),
            "marker written though {missing} is missing"
        );
        let failed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("userdata.failed")).unwrap()).unwrap();
        assert_eq!(failed["step"], "packages", "{failed}");
        assert_eq!(failed["exit"], 1);
        assert_eq!(
            failed["error"],
            format!("not in the enabled repos: {missing}"),
            "{failed}"
        );
        // Once, not retried; and yum installed nothing of that transaction.
        let calls = yum_calls(&host);
        let tries = calls
            .iter()
            .filter(|(c, _)| c.contains("containerd.io"))
            .collect::<Vec<_>>();
        assert_eq!(tries.len(), 1, "{calls:?}");
        assert!(
            !tries[0].1.iter().any(|l| l.starts_with("installed")),
            "{tries:?}"
        );
        let rpm = host.in_el7_view(&["rpm", "-q", "containerd.io"]);
        assert_eq!(rpm.stdout.trim(), "package containerd.io is not installed");
    }
}
