//! The VPN test rig: a test host with the POS staged and an "internet" bridge, and florist
//! routers ("mainstore" peers) in network namespaces of the test's own, each with its own
//! charon configured by the test (not by poscloud).
//!
//! In the test host's namespace `pc-NAME` a bridge `inet0` (5.5.5.1/24) stands for the
//! internet; each peer hangs on it with a veth (5.5.5.10, .20, …). The test host forwards
//! the POS's packets (default route via lan0, 192.168.222.1) and SNATs them to 5.5.5.1, as
//! AWS does with the POS's Elastic IP: so the peer needs no route to 192.168.222.0/24 (which
//! it must route into the tunnel). Each peer has an empty bridge `lan` as its LAN. This
//! kernel has no ESP: both charons use userspace ESP (kernel-libipsec, UDP on 4500).

pub use super::host::alive;
use super::host::TestHost;
use base64::Engine;
use poscloud::remote::{no_sink, Inputs, Outcome, Script};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const VPN: Script = Script::Vpn;
/// The test host's "internet" (a bridge in its namespace; a public range whose addresses
/// exist only inside the namespaces the tests make): .1 is the POS's Elastic IP (SNAT),
/// peers are .10, .20, …
pub const INET: &str = "5.5.5";
pub const EIP: &str = "5.5.5.1";
pub const POS_NET: &str = "192.168.222.0/24";
pub const POS_IP: &str = "192.168.222.233";

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn err(o: &Outcome) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        o.stdout_text(),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub use super::eventually;

/// 32 random bytes, base64: a PSK as poscloud makes them.
pub fn new_psk() -> String {
    let mut b = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// TERM, then KILL after 5 s; only when the PID is still the named program.
pub fn kill_pid(pid: u32, comm: &str) {
    let is_it = || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
            && alive(pid)
    };
    if !is_it() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if !eventually(Duration::from_secs(5), || !is_it()) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// A test host with the POS staged; stops the POS side's charon (by its recorded PID)
/// before the host goes down.
pub struct Pos {
    pub h: TestHost,
    /// IPSEC_USERSPACE=1 on every run (else vpn.sh probes the kernel for ESP).
    pub userspace: bool,
}

impl Pos {
    pub fn up(name: &str, index: u8) -> Pos {
        let h = TestHost::up(name, index, true);
        let pos = Pos { h, userspace: true };
        pos.stage();
        // The internet side of the test host, and the Elastic IP's NAT.
        let ns = pos.netns();
        for cmd in [
            "ip link add inet0 type bridge",
            "ip addr add 5.5.5.1/24 dev inet0",
            "ip link set inet0 up",
            "sysctl -qw net.ipv4.ip_forward=1",
            "iptables -t nat -A POSTROUTING -s 192.168.222.0/24 -o inet0 -j SNAT --to-source 5.5.5.1",
        ] {
            let mut a = vec!["ip", "netns", "exec", &ns];
            a.extend(cmd.split(' '));
            sh(&a);
        }
        pos
    }

    /// This staged host as the booted instance of SHOP (qa) for the rig's emulator, its SSM
    /// agent pointed at the emulator's IMDS and SSM (for the VPN keys it reads itself)
    /// through a proxy on the host's veth, which the caller keeps alive.
    pub fn boot(&self, rig: &super::Rig, shop: &str) -> super::Proxy {
        let proxy = super::Proxy::start_on(&self.h.root_side(), rig.emu.port);
        self.h.bind(rig, shop, "qa");
        self.h.finish_userdata();
        let url = proxy.url();
        self.h.agent_env(&[
            ("POSCLOUD_IMDS_URL", url.as_str()),
            ("POSCLOUD_SSM_URL", &format!("{url}/")),
        ]);
        self.h.agent_start();
        self.h.console(None);
        proxy
    }

    /// pos.sh stage: the holder with eth1, and the POS container in its namespace.
    pub fn stage(&self) {
        let (url, sha) = self.h.pos_artifact("true\n");
        let inputs = [
            ("ACTION", "stage"),
            ("SHOP", "12345678"),
            ("APP", "rti"),
            ("MOUNT_POINT", "/usr2"),
            ("HEALTH_CMD", "test -f /opt/pos/.installed"),
            ("IMAGE", "poscloud/base:test"),
            ("POS_IP", POS_IP),
            ("PREFIX", "24"),
            ("GATEWAY", "192.168.222.1"),
            ("DATA_DIR", "/var/lib/poscloud/data/rti"),
            ("ARTIFACT_URL", &url),
            ("ARTIFACT_SHA256", &sha),
            ("MEMORY", "256m"),
        ];
        let out = self.run(&Script::Pos, &inputs);
        assert_eq!(out.exit_code, 0, "stage: {}", err(&out));
    }

    pub fn netns(&self) -> String {
        format!("pc-{}", self.h.name)
    }

    pub fn run(&self, s: &Script, inputs: &[(&str, &str)]) -> Outcome {
        let mut i = Inputs::new();
        for (k, v) in inputs {
            i = i.set(k, *v).unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(
            self.h
                .remote()
                .run(s, &i, Duration::from_secs(300), no_sink()),
        )
        .unwrap()
    }

    pub fn vpn(&self, action: &str, extra: &[(&str, &str)]) -> Outcome {
        let mut inputs = vec![("ACTION", action)];
        if self.userspace {
            inputs.push(("IPSEC_USERSPACE", "1"));
        }
        inputs.extend_from_slice(extra);
        self.run(&VPN, &inputs)
    }

    /// apply for a location towards `peer`, with this PSK and IKE version.
    pub fn apply(&self, location: &str, peer: &Peer, psk: &str, ike: &str) -> Outcome {
        let inputs = [
            ("LOCATION", location),
            ("PEER_IP", peer.ip.as_str()),
            ("PEER_NETS", peer.lan.as_str()),
            ("LOCAL_NET", POS_NET),
            ("LOCAL_IP", POS_IP),
            ("LOCAL_ID", EIP),
            ("IKE_VERSION", ike),
            ("PSK", psk),
        ];
        self.vpn("apply", &inputs)
    }

    pub fn state(&self) -> PathBuf {
        self.h.root.join("var/lib/poscloud/vpn")
    }

    pub fn conf(&self) -> PathBuf {
        self.h.root.join("etc/poscloud/vpn")
    }

    pub fn charon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state().join("charon.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The holder's main process as the root namespace sees it (found by its cgroup).
    pub fn holder_pid(&self) -> u32 {
        let (_, id) = self.h.docker(&["inspect", "-f", "{{.Id}}", "pos-net"]);
        assert!(!id.is_empty());
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| c.contains(&id)) {
                found.push(p);
            }
        }
        *found.iter().min().expect("the holder's process")
    }

    /// `addr` answers a ping from eth1's namespace (the holder's, which the POS container
    /// shares) within `SETTLE`: a tunnel just brought up may need a moment on a busy machine.
    pub fn ping(&self, addr: &str) -> bool {
        eventually(super::SETTLE, || self.ping_once(addr, 1))
    }

    /// Nothing answers `addr`: three pings in three seconds, none answered.
    pub fn silent(&self, addr: &str) -> bool {
        !self.ping_once(addr, 3)
    }

    fn ping_once(&self, addr: &str, count: u32) -> bool {
        let pid = self.holder_pid().to_string();
        let count = count.to_string();
        ok(&[
            "nsenter", "-t", &pid, "-n", "ping", "-c", &count, "-i", "1", "-W1", "-I", POS_IP, addr,
        ])
    }

    pub fn status(&self, location: &str) -> serde_json::Value {
        let out = self.vpn("status", &[("LOCATION", location)]);
        assert_eq!(out.exit_code, 0, "{}", err(&out));
        out.result().expect("status result")["locations"][0].clone()
    }
}

impl Drop for Pos {
    fn drop(&mut self) {
        if let Some(pid) = self.charon_pid() {
            kill_pid(pid, "charon");
        }
    }
}

/// The florist's router: its own namespace on the test host's internet bridge, a LAN
/// bridge, and its own charon configured by the test.
pub struct Peer {
    pub netns: String,
    pub ip: String,
    pub lan: String,
    /// The POS side's IKE identity as this router expects it (its public address).
    pub pos_id: String,
    dir: tempfile::TempDir,
    charon: Option<u32>,
    httpd: Option<Child>,
}

impl Peer {
    /// `tag`: 1–5 lowercase letters/digits, unique on the machine; `n`: 1–9, unique on the
    /// host (its address 5.5.5.<n>0 and LAN 10.<n>0.0.0/24).
    pub fn up(pos: &Pos, tag: &str, n: u8) -> Peer {
        let tag = super::host::slotted(tag, 1).0;
        let tag = tag.as_str();
        let netns = format!("pcv-{tag}");
        let _ = ok(&["ip", "netns", "del", &netns]);
        sh(&["ip", "netns", "add", &netns]);
        let peer = Peer {
            netns: netns.clone(),
            ip: format!("{INET}.{n}0"),
            lan: format!("10.{n}0.0.0/24"),
            pos_id: EIP.to_string(),
            dir: tempfile::tempdir().unwrap(),
            charon: None,
            httpd: None,
        };
        let outer = format!("pcv{tag}o");
        sh(&[
            "ip",
            "-n",
            &pos.netns(),
            "link",
            "add",
            &outer,
            "type",
            "veth",
            "peer",
            "name",
            "wan0",
            "netns",
            &netns,
        ]);
        sh(&[
            "ip",
            "-n",
            &pos.netns(),
            "link",
            "set",
            &outer,
            "master",
            "inet0",
            "up",
        ]);
        let lan_ip = format!("10.{n}0.0.1/24");
        let wan_ip = format!("{}/24", peer.ip);
        for cmd in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &wan_ip, "dev", "wan0"],
            vec!["link", "set", "wan0", "up"],
            vec!["link", "add", "lan", "type", "bridge"],
            vec!["addr", "add", &lan_ip, "dev", "lan"],
            vec!["link", "set", "lan", "up"],
        ] {
            let mut a = vec!["ip", "-n", &netns];
            a.extend(cmd);
            sh(&a);
        }
        peer
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// Puts a test host on this router's LAN as 10.<n>0.0.10 (a veth from its namespace to
    /// the LAN bridge), routes the POS address back through the router, and forwards that
    /// address's SSH port to the host's sshd (which listens on its own address only).
    /// Returns the LAN address. The veth goes with the namespaces.
    pub fn attach_host(&self, h: &TestHost, tag: &str) -> String {
        let lan_prefix = &self.lan[..self.lan.len() - "0/24".len()];
        let addr = format!("{lan_prefix}10");
        let gw = format!("{lan_prefix}1");
        let ns = format!("pc-{}", h.name);
        let inner = format!("pcl{tag}");
        sh(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            &inner,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
            "netns",
            &self.netns,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.netns,
            "link",
            "set",
            &inner,
            "master",
            "lan",
            "up",
        ]);
        // The router forwards between its LAN and the tunnel.
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.netns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let cidr = format!("{addr}/24");
        sh(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", &inner]);
        sh(&["ip", "-n", &ns, "link", "set", &inner, "up"]);
        // The POS address alone: test hosts have a 192.168.222.0/24 of their own (lan0).
        let pos = format!("{POS_IP}/32");
        sh(&["ip", "-n", &ns, "route", "add", &pos, "via", &gw]);
        let to = format!("{}:{}", h.address, h.port);
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            &addr,
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
        addr
    }

    pub fn vici(&self) -> String {
        format!("unix://{}", self.path("charon.vici").display())
    }

    /// Writes the router's swanctl.conf (IKE version, the key) and (re)loads it; starts its
    /// charon first if needed.
    pub fn configure(&mut self, ike: &str, psk: &str) {
        let (proposals, esp) = if ike == "1" {
            ("aes256-sha256-ecp256", "aes256gcm16-ecp256")
        } else {
            ("aes256gcm16-prfsha256-ecp256", "aes256gcm16-ecp256")
        };
        let conf = format!(
            "connections {{\n  pos {{\n    version = {ike}\n    local_addrs = {ip}\n    remote_addrs = %any\n    proposals = {proposals}\n    local {{\n      auth = psk\n      id = {ip}\n    }}\n    remote {{\n      auth = psk\n      id = {pos_id}\n    }}\n    children {{\n      lan {{\n        local_ts = {lan}\n        remote_ts = {POS_NET}\n        esp_proposals = {esp}\n      }}\n    }}\n  }}\n}}\nsecrets {{\n  ike-pos {{\n    id = {pos_id}\n    secret = \"{psk}\"\n  }}\n}}\n",
            ip = self.ip,
            lan = self.lan,
            pos_id = self.pos_id,
        );
        let file = self.path("swanctl.conf");
        std::fs::write(&file, conf).unwrap();
        if self.charon.is_none() {
            self.start_charon();
        }
        let out = Command::new("swanctl")
            .args(["--load-all", "--clear", "--noprompt", "--file"])
            .arg(&file)
            .args(["--uri", &self.vici()])
            .env("STRONGSWAN_CONF", self.path("strongswan.conf"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "peer swanctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start_charon(&mut self) {
        std::fs::write(
            self.path("strongswan.conf"),
            format!(
                "charon {{\n  load_modular = no\n  load = random nonce openssl aes sha1 sha2 hmac gcm gmp curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici\n  plugins {{ vici {{ socket = unix://{vici} }} }}\n  filelog {{ peer {{ path = {log}\n  default = 1\n flush_line = yes }} }}\n}}\nswanctl {{ load = pem pkcs1 x509 pubkey random }}\n",
                vici = self.path("charon.vici").display(),
                log = self.path("charon.log").display(),
            ),
        )
        .unwrap();
        let out = std::fs::File::create(self.path("charon.out")).unwrap();
        // ip netns exec, unshare -m (no --fork) and sh all exec: the child is charon.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=755 tmpfs /run && exec /usr/lib/ipsec/charon")
            .env("STRONGSWAN_CONF", self.path("strongswan.conf"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let child_pid = child.id();
        self.charon = Some(child_pid);
        // Not waited for: Drop kills it by PID (and the test process reaps nothing it needs).
        std::mem::forget(child);
        let sock = self.path("charon.vici");
        eventually(super::SETTLE, || sock.exists() || !alive(child_pid));
        assert!(
            sock.exists(),
            "the peer's charon did not start ({}): {}",
            if alive(child_pid) {
                "no vici socket yet"
            } else {
                "it exited"
            },
            std::fs::read_to_string(self.path("charon.out")).unwrap_or_default()
        );
    }

    /// Serves `data` as http://<LAN address>:8080/blob from the peer's LAN.
    pub fn serve(&mut self, data: &[u8]) {
        let www = self.path("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("blob"), data).unwrap();
        let addr = format!("{}:8080", self.lan.replace(".0/24", ".1"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "busybox",
                "httpd",
                "-f",
                "-p",
                &addr,
                "-h",
            ])
            .arg(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.httpd = Some(child);
    }

    pub fn lan_ip(&self) -> String {
        self.lan.replace(".0/24", ".1")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.httpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.charon {
            kill_pid(pid, "charon");
        }
        // The veth goes with the namespace.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}
