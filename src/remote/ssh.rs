//! SSH transport (libssh2): key auth, the host key pinned before any credential is sent.

use super::{payload, Inputs, Outcome, Program, Sink, Stream, RUNNER};
use crate::error::{Error, Result};
use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The host key poscloud expects: an OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`),
/// learned out of band (console output, SSM, or given by the operator for edge hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    pub kind: String,
    pub blob: Vec<u8>,
}

impl PinnedKey {
    pub fn parse(line: &str) -> Result<PinnedKey> {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
            return Err(Error::usage(format!(
                "{line:?} is not an OpenSSH public host key (type base64)"
            )));
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| Error::usage("host key data is not base64"))?;
        Ok(PinnedKey {
            kind: kind.to_string(),
            blob,
        })
    }

    pub fn to_line(&self) -> String {
        format!(
            "{} {}",
            self.kind,
            base64::engine::general_purpose::STANDARD.encode(&self.blob)
        )
    }

    /// SHA256 fingerprint as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

fn fingerprint(blob: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

#[derive(Debug, Clone)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// Private key file; without it the user's ssh-agent is asked.
    pub key_file: Option<PathBuf>,
    pub host_key: PinnedKey,
}

/// Why a connection attempt failed; only `Unreachable` is worth retrying.
enum ConnectError {
    Unreachable(String),
    Fatal(Error),
}

impl SshTarget {
    /// Parses `user@host[:port]` (also with an `ssh://` prefix).
    pub fn parse_address(s: &str) -> Result<(String, String, u16)> {
        let rest = s.strip_prefix("ssh://").unwrap_or(s);
        let (user, hostport) = rest
            .split_once('@')
            .ok_or_else(|| Error::usage(format!("{s:?} is not user@host[:port]")))?;
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| Error::usage(format!("{s:?}: bad port {p:?}")))?,
            ),
            None => (hostport, 22),
        };
        let user_ok = !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
        if !user_ok || !host_ok || port == 0 {
            return Err(Error::usage(format!("{s:?} is not user@host[:port]")));
        }
        Ok((user.to_string(), host.to_string(), port))
    }

    fn where_(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    fn connect_once(&self) -> std::result::Result<ssh2::Session, ConnectError> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| ConnectError::Unreachable(format!("resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| ConnectError::Unreachable(format!("no address for {}", self.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| ConnectError::Unreachable(format!("connect {addr}: {e}")))?;
        let mut sess = ssh2::Session::new()
            .map_err(|e| ConnectError::Fatal(Error::failed(format!("ssh: {e}"))))?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(30_000);
        sess.handshake().map_err(|e| {
            ConnectError::Unreachable(format!("ssh handshake with {}: {e}", self.where_()))
        })?;
        // Pinning: compare before any credential is offered.
        let (blob, _) = sess.host_key().ok_or_else(|| {
            ConnectError::Fatal(Error::failed(format!("{} sent no host key", self.where_())))
        })?;
        if blob != self.host_key.blob.as_slice() {
            return Err(ConnectError::Fatal(Error::failed(format!(
                "host key of {} does not match the pinned key: refusing to connect (no credentials were sent)\n  offered: {}\n  pinned:  {}",
                self.where_(),
                fingerprint(blob),
                self.host_key.fingerprint()
            ))
            .next("if the host was rebuilt, check its new key out of band (console output, SSM) before pinning it again; otherwise treat this as an attack on the connection")));
        }
        let auth = match &self.key_file {
            Some(k) => sess.userauth_pubkey_file(&self.user, None, k, None),
            None => sess.userauth_agent(&self.user),
        };
        if let Err(e) = auth {
            let how = match &self.key_file {
                Some(k) => format!("key file {}", k.display()),
                None => "the keys of your ssh-agent".to_string(),
            };
            return Err(ConnectError::Fatal(
                Error::failed(format!(
                    "ssh login to {} refused with {how}: {e}",
                    self.where_()
                ))
                .next("check the user name and that the key is in the stack's operator_keys"),
            ));
        }
        Ok(sess)
    }

    /// Connects, retrying with backoff while the host is unreachable (booting).
    async fn connect(&self, within: Duration) -> Result<ssh2::Session> {
        let start = Instant::now();
        let attempt = || async {
            let t = self.clone();
            tokio::task::spawn_blocking(move || t.connect_once())
                .await
                .map_err(|e| ConnectError::Fatal(Error::failed(format!("ssh task: {e}"))))?
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(usize::MAX),
            )
            .when(|e| matches!(e, ConnectError::Unreachable(_)) && start.elapsed() < within)
            .notify(|e, wait| {
                if let ConnectError::Unreachable(m) = e {
                    tracing::info!("{m}; retrying in {wait:?}");
                }
            })
            .await
            .map_err(|e| match e {
                ConnectError::Fatal(e) => e,
                ConnectError::Unreachable(m) => Error::failed(format!(
                    "cannot reach {} over SSH within {}s: {m}",
                    self.where_(),
                    within.as_secs()
                ))
                .next("check the address, the security group/firewall (tcp/22 from your address) and that the host is running"),
            })
    }

    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        self.connect(within).await.map(|_| ())
    }

    pub async fn run(
        &self,
        script: &Program,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
    ) -> Result<Outcome> {
        let sess = self.connect(Duration::from_secs(60)).await?;
        let input = payload(script, inputs);
        let name = script.name;
        let where_ = self.where_();
        let command = runner_command(&self.user);
        tokio::task::spawn_blocking(move || exec(sess, &command, &input, timeout, sink))
            .await
            .map_err(|e| Error::failed(format!("ssh task: {e}")))?
            .map_err(|e| Error::failed(format!("running {name} on {where_}: {e}")))
    }
}

/// `command` as root for `user`: as is for root, else through sudo (a CentOS host's `centos`
/// login: the Docker socket and /var/lib/poscloud are root's). `-n`: fail at once rather than
/// ask for a password nobody can type.
pub fn as_root(user: &str, command: String) -> String {
    if user == "root" {
        command
    } else {
        format!("sudo -n {command}")
    }
}

/// The runner's command line, as root.
fn runner_command(user: &str) -> String {
    as_root(user, format!("bash -c '{}'", RUNNER.replace('\'', r"'\''")))
}

/// Runs the runner over one channel: payload on stdin, both output streams read without
/// blocking so neither pipe can fill up and stall the other.
fn exec(
    sess: ssh2::Session,
    command: &str,
    input: &str,
    timeout: Duration,
    sink: Sink,
) -> std::result::Result<Outcome, String> {
    let mut ch = sess.channel_session().map_err(|e| e.to_string())?;
    ch.exec(command).map_err(|e| e.to_string())?;
    ch.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    ch.send_eof().map_err(|e| e.to_string())?;
    sess.set_blocking(false);
    let start = Instant::now();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 32 * 1024];
    loop {
        let mut progressed = false;
        for (stream, which) in [(Stream::Stdout, 0), (Stream::Stderr, 1)] {
            let n = if which == 0 {
                ch.read(&mut buf)
            } else {
                ch.stderr().read(&mut buf)
            };
            match n {
                Ok(0) => {}
                Ok(n) => {
                    progressed = true;
                    sink(stream, &buf[..n]);
                    if which == 0 { &mut out } else { &mut err }.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if ch.eof() && !progressed {
            break;
        }
        if start.elapsed() > timeout {
            let _ = ch.close();
            return Err(format!(
                "no result within {}s; the script was stopped",
                timeout.as_secs()
            ));
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    sess.set_blocking(true);
    ch.wait_close().map_err(|e| e.to_string())?;
    let exit_code = ch.exit_status().map_err(|e| e.to_string())?;
    Ok(Outcome {
        exit_code,
        stdout: out,
        stderr: err,
    })
}
