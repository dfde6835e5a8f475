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
