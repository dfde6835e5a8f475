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

fn script() -> PathBuf {
    super::repo().join("tests/rig/testhost.sh")
}

impl TestHost {
    /// NAME and INDEX must be unique among hosts up at the same time.
    pub fn up(name: &str, index: u8, podman: bool) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("bash");
        c.arg(script())
            .args(["up", name, &index.to_string()])
            .arg(dir.path());
        if podman {
            c.arg("--podman");
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

    /// How many logins sshd accepted so far (to prove a run did or did not connect).
    pub fn accepted_logins(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("sshd.log"))
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Stands in for cloud-init finishing the user-data (it does not run on a test host).
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

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.name])
            .arg(self.dir.path())
            .output();
    }
}
