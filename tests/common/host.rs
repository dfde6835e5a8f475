//! A test host: a network namespace with a real sshd (and optionally a podman service with
//! a Docker-compatible socket), built by tests/rig/testhost.sh and removed when dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

pub struct TestHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub client_key: PathBuf,
    pub host_key_pub: PathBuf,
    pub wrong_host_key_pub: PathBuf,
    /// The host's own root directory: scripts act below it (POSCLOUD_ROOT).
    pub root: PathBuf,
    pub dir: tempfile::TempDir,
}

/// POSCLOUD_TEST_SLOT (0-3, default 0) moves every test host and VPN peer to names and
/// addresses of their own, so that two checkouts can run the same test files at once.
pub fn slot() -> u8 {
    match std::env::var("POSCLOUD_TEST_SLOT") {
        Err(_) => 0,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|s| *s <= 3)
            .unwrap_or_else(|| panic!("POSCLOUD_TEST_SLOT must be 0-3, got {v:?}")),
    }
}

/// A name and index unique to this slot (indexes 1-60 each slot: testhost.sh takes 1-254).
pub fn slotted(name: &str, index: u8) -> (String, u8) {
    assert!((1..=60).contains(&index), "test host index {index}: 1-60");
    match slot() {
        0 => (name.to_string(), index),
        s => (format!("{name}z{s}"), index + 64 * s),
    }
}

fn script() -> PathBuf {
    super::repo().join("tests/rig/testhost.sh")
}

impl TestHost {
    /// NAME and INDEX must be unique among hosts up at the same time. The login is
    /// `centos` with sudo, as on a CentOS 7 AMI (root login refused).
    pub fn up(name: &str, index: u8, podman: bool) -> TestHost {
        TestHost::up_with(name, index, podman, false)
    }

    /// A host that lets root log in: one poscloud did not create (a `--target` host, the
    /// cutover source, a backup server).
    pub fn up_root(name: &str, index: u8, podman: bool) -> TestHost {
        TestHost::up_with(name, index, podman, true)
    }

    fn up_with(name: &str, index: u8, podman: bool, root: bool) -> TestHost {
        let (name, index) = slotted(name, index);
        let name = name.as_str();
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("bash");
        c.arg(script())
            .args(["up", name, &index.to_string()])
            .arg(dir.path());
        if podman {
            c.arg("--podman");
        }
        if root {
            c.args(["--login", "root"]);
        }
        let out = c.output().expect("run testhost.sh");
        assert!(
            out.status.success(),
            "testhost.sh up {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kv: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| {
            kv.get(k)
                .unwrap_or_else(|| panic!("testhost.sh printed no {k}: {kv:?}"))
                .clone()
        };
        TestHost {
            name: name.to_string(),
            address: get("ADDRESS"),
            port: get("PORT").parse().unwrap(),
            user: get("USER"),
            client_key: get("CLIENT_KEY").into(),
            host_key_pub: get("HOST_KEY_PUB").into(),
            wrong_host_key_pub: get("WRONG_HOST_KEY_PUB").into(),
            root: get("ROOT").into(),
            dir,
        }
    }

    /// `user@address:port`
    pub fn ssh_address(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// The machine's side of the host's veth (10.200.INDEX.1, INDEX as moved by the slot):
    /// where a proxy listens that the host must reach.
    pub fn root_side(&self) -> String {
        self.address.rsplit_once('.').unwrap().0.to_string() + ".1"
    }

    fn path(p: &std::path::Path) -> String {
        p.to_string_lossy().into_owned()
    }

    /// `--ssh user@address:port --ssh-key KEY`: this host as a stack's instance, over SSH
    /// (its host key pinned from the console or given with [`TestHost::host_key_args`]).
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "--ssh".into(),
            self.ssh_address(),
            "--ssh-key".into(),
            Self::path(&self.client_key),
        ]
    }

    /// `--target ssh://user@address:port --ssh-key KEY`: this host as a `--target`.
    pub fn target_args(&self) -> Vec<String> {
        vec![
            "--target".into(),
            format!("ssh://{}", self.ssh_address()),
            "--ssh-key".into(),
            Self::path(&self.client_key),
        ]
    }

    /// `--host-key-file HOST_KEY.pub`: this host's own key, pinned.
    pub fn host_key_args(&self) -> Vec<String> {
        vec!["--host-key-file".into(), Self::path(&self.host_key_pub)]
    }

    /// `--from ssh://… --from-host-key-file … --from-key …`: this host as a cutover source.
    pub fn source_args(&self) -> Vec<String> {
        vec![
            "--from".into(),
            format!("ssh://{}", self.ssh_address()),
            "--from-host-key-file".into(),
            Self::path(&self.host_key_pub),
            "--from-key".into(),
            Self::path(&self.client_key),
        ]
    }

    /// How many logins sshd accepted so far (to prove a run did or did not connect).
    pub fn accepted_logins(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("sshd.log"))
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Stands in for cloud-init finishing the user-data: writes a made-up marker only. Kept
    /// for the tests that need a booted host quickly; the real one is
    /// [`TestHost::run_userdata`], which runs the rendered host setup on the host.
    pub fn finish_userdata(&self) {
        let state = self.root.join("var/lib/poscloud");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("userdata.json"),
            r#"{"docker":"26.1.4","strongswan":"5.7.2","ssm_agent":"3.3.0","kernel":"test","finished":"2026-11-23T00:00:00Z"}"#,
        )
        .unwrap();
    }
}

impl TestHost {
    fn rig_cmd(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .output()
            .expect("run testhost.sh");
        assert!(
            out.status.success(),
            "testhost.sh {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Makes this host the instance of stack SHOP/ENV for the rig's emulator: SSM commands
    /// sent to the instance tagged so run here, its console is this host's
    /// (tests/rig/emulator.py).
    pub fn bind(&self, rig: &super::Rig, shop: &str, env: &str) {
        let binding = serde_json::json!({
            "host_dir": self.dir.path(), "shop": shop, "env": env,
        });
        std::fs::write(
            rig.hosts().join(format!("{}.json", self.name)),
            binding.to_string(),
        )
        .unwrap();
    }

    /// Adds variables to the agent stand-in's environment (before `agent_start`): test-only
    /// endpoints such as POSCLOUD_IMDS_URL, which the scripts honour only on a test host.
    pub fn agent_env(&self, vars: &[(&str, &str)]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("agent.env"))
            .unwrap();
        for (k, v) in vars {
            writeln!(f, "{k}={v}").unwrap();
        }
    }

    /// The SSM agent stand-in starts (user-data's `ssm` step) / stops.
    pub fn agent_start(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.rig_cmd(&["agent-start", &self.name, &dir]);
    }

    pub fn agent_stop(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.rig_cmd(&["agent-stop", &self.name, &dir]);
    }

    /// The SSM commands the agent stand-in has taken whose Comment is `comment`, with
    /// whether each has ended.
    pub fn agent_commands(&self, comment: &str) -> Vec<(String, bool)> {
        let work = self.dir.path().join("ssm/work");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&work).into_iter().flatten().flatten() {
            let job: serde_json::Value = match std::fs::read(e.path().join("job.json")) {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
                Err(_) => continue,
            };
            if job["comment"] == comment && e.path().join("started.json").exists() {
                let ended = e.path().join("result.json").exists();
                out.push((e.file_name().to_string_lossy().into_owned(), ended));
            }
        }
        out
    }

    /// The first boot ends: cloud-init's host-key block appears on the console, with this
    /// host's key or the one given.
    pub fn console(&self, key: Option<&std::path::Path>) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut args = vec!["console".to_string(), self.name.clone(), dir];
        if let Some(k) = key {
            args.push(k.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.rig_cmd(&args);
    }

    /// This host as the booted instance of SHOP/ENV: bound, user-data's marker left, the
    /// agent online and the host key on the console. poscloud then reaches it the default
    /// way: SSM with the online check on, the host key pinned from the console.
    pub fn boot(&self, rig: &super::Rig, shop: &str, env: &str) {
        self.bind(rig, shop, env);
        self.finish_userdata();
        self.agent_start();
        self.console(None);
    }

    /// The SSH transport to this host with its client key and its host key pinned.
    pub fn remote(&self) -> poscloud::remote::Remote<'static> {
        self.remote_pinned(&self.host_key_pub, &self.client_key)
    }

    /// The SSH transport with a chosen pinned host key and login key.
    pub fn remote_pinned(
        &self,
        host_key: &std::path::Path,
        login_key: &std::path::Path,
    ) -> poscloud::remote::Remote<'static> {
        let line = std::fs::read_to_string(host_key).unwrap();
        poscloud::remote::Remote::Ssh(poscloud::remote::ssh::SshTarget {
            user: self.user.clone(),
            host: self.address.clone(),
            port: self.port,
            key_file: Some(login_key.to_path_buf()),
            host_key: poscloud::remote::ssh::PinnedKey::parse(line.trim()).unwrap(),
        })
    }

    /// A POS artifact on the host (a tarball with `install_sh` as install.sh) at
    /// /srv/pos-rti.tar; returns its file:// URL and SHA-256.
    pub fn pos_artifact(&self, install_sh: &str) -> (String, String) {
        let src = self.dir.path().join("artifact");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("install.sh"), install_sh).unwrap();
        let tar = self.root.join("srv/pos-rti.tar");
        std::fs::create_dir_all(tar.parent().unwrap()).unwrap();
        let ok = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .arg("install.sh")
            .status()
            .unwrap();
        assert!(ok.success());
        let sum = Command::new("sha256sum").arg(&tar).output().unwrap();
        let sum = String::from_utf8(sum.stdout).unwrap()[..64].to_string();
        ("file:///srv/pos-rti.tar".to_string(), sum)
    }

    /// A stack file at `path`: the qa profile plus a [pos] that builds its media from the
    /// small test kickstart and installs the artifact of `pos_artifact` ("v1").
    pub fn media_stack(&self, path: &std::path::Path) -> String {
        let (url, sum) = self.pos_artifact("echo v1 >/opt/pos/app/version\n");
        let ks = super::repo().join("tests/fixtures/media-test.ks");
        let pos = format!(
            "\n[pos]\napp = \"rti\"\nversion = \"1.0-test\"\nkickstart = \"{}\"\nartifact_url = \"{url}\"\nartifact_sha256 = \"{sum}\"\nmemory = \"256m\"\n",
            ks.display()
        );
        let base = std::fs::read_to_string(super::repo().join("stacks/qa.toml")).unwrap();
        std::fs::write(path, base + &pos).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// The test process's docker CLI against this host's engine (outside poscloud):
    /// success and trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}/podman.sock", self.dir.path().display()),
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    /// The POS address answers a ping from the VPC side (lan0) within `SETTLE`: a link
    /// handed over a moment ago may need a moment more on a busy machine.
    pub fn pos_answers(&self) -> bool {
        super::eventually(super::SETTLE, || self.ping_pos(1))
    }

    /// Nothing answers on the POS address: three pings in three seconds, none answered.
    pub fn pos_silent(&self) -> bool {
        !self.ping_pos(3)
    }

    /// `count` pings 1 s apart; true if any was answered.
    fn ping_pos(&self, count: u32) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &format!("pc-{}", self.name)])
            .args(["ping", "-c", &count.to_string(), "-i", "1", "-W1"])
            .arg("192.168.222.233")
            .output()
            .unwrap()
            .status
            .success()
    }
}

/// One stack's test: the rig, its test host and the stack file, with runs that name the
/// stack (`--shop SHOP --env qa --stack FILE`). Each test file's `setup()` makes the host
/// and the stack it needs and returns one.
pub struct Setup {
    pub rig: super::Rig,
    pub h: TestHost,
    pub shop: &'static str,
    pub stack: String,
}

impl Setup {
    pub fn new(rig: super::Rig, h: TestHost, shop: &'static str, stack: String) -> Setup {
        Setup {
            rig,
            h,
            shop,
            stack,
        }
    }

    /// `poscloud ARGS --shop SHOP --env qa --stack FILE`, to add to and run.
    pub fn poscloud<S: AsRef<str>>(
        &self,
        args: impl IntoIterator<Item = S>,
    ) -> super::Poscloud<'_> {
        self.rig
            .poscloud(args)
            .args(["--shop", self.shop, "--env", "qa", "--stack", &self.stack])
    }

    pub fn run(&self, args: &[&str]) -> super::Run {
        self.poscloud(args).run()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.name])
            .arg(self.dir.path())
            .output();
    }
}

/// Starts the installed eth1 hook (pos.sh ACTION=watch, the same files systemd would use)
/// in the background on the host, the way its unit does.
const START_WATCH: poscloud::remote::Program = poscloud::remote::Program {
    name: "start-watch",
    body: r#"set -euo pipefail
set -a
. "$POSCLOUD_ROOT/etc/poscloud/pos-net.env"
set +a
setsid "$POSCLOUD_ROOT/usr/local/libexec/poscloud/pos.sh" >"$LOG" 2>&1 </dev/null &
echo "POSCLOUD_RESULT {\"pid\":$!}"
"#,
};

impl TestHost {
    /// The installed eth1 hook, running in the background with its output in `log`.
    pub fn start_watch(&self, log: &std::path::Path) -> Watch {
        let inputs = poscloud::remote::Inputs::new()
            .set("LOG", log.to_string_lossy())
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt
            .block_on(self.remote().run(
                &START_WATCH,
                &inputs,
                std::time::Duration::from_secs(60),
                poscloud::remote::no_sink(),
            ))
            .unwrap();
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        let pid = out.result().unwrap()["pid"].as_u64().unwrap() as u32;
        Watch { pid }
    }
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The background hook; stopped by its PID (TERM, then KILL with its children) also when
/// the test fails.
pub struct Watch {
    pub pid: u32,
}

impl Watch {
    /// Stops it and returns whether it and its children (docker events) ended on TERM.
    pub fn stop(&self) -> bool {
        let kids = children(self.pid);
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(10) {
            if !alive(self.pid) && kids.iter().all(|k| !alive(*k)) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if alive(self.pid) {
            let kids = children(self.pid);
            for p in std::iter::once(self.pid).chain(kids) {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
        }
    }
}

/// What a user-data run or a command in the host's CentOS 7 view did.
pub struct El7Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

fn el7_script() -> PathBuf {
    super::repo().join("tests/rig/el7/run-userdata.sh")
}

fn el7_run(mut c: Command) -> El7Run {
    let out = c
        .env("TESTHOST_BASH", super::host_bash())
        .output()
        .expect("run tests/rig/el7/run-userdata.sh");
    El7Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl TestHost {
    /// Runs a rendered user-data document (`poscloud userdata`) on this host as cloud-init
    /// would on a CentOS 7 AMI: its write_files, then its runcmd (host-setup) under bash
    /// 4.2, with real sshd/sysctl/iptables in the host's network namespace and stand-ins
    /// for yum, rpm, systemctl and what else cannot exist here (tests/rig/el7/). The host's
    /// /etc, /var, /home, /root, /usr/local and /tmp are `DIR/root`'s (the marker lands in
    /// `DIR/root/var/lib/poscloud/userdata.json`); the machine's own files stay read-only.
    pub fn run_userdata(&self, doc: &str) -> El7Run {
        let path = self.dir.path().join("userdata.yaml");
        std::fs::write(&path, doc).unwrap();
        let mut c = Command::new("bash");
        c.arg(el7_script())
            .arg("run")
            .arg(self.dir.path())
            .arg(&path);
        el7_run(c)
    }

    /// A command in the same view as [`TestHost::run_userdata`] (after a run): the host's
    /// own /etc and /var, its network namespace, stand-ins first on PATH.
    pub fn in_el7_view(&self, args: &[&str]) -> El7Run {
        let mut c = Command::new("bash");
        c.arg(el7_script())
            .arg("exec")
            .arg(self.dir.path())
            .args(args);
        el7_run(c)
    }
}
