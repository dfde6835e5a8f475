//! Test rig: a real AWS emulator (moto server) per test, a recording HTTP proxy between
//! poscloud and the emulator, and helpers to run the real binary.
//!
//! Write calls are counted from the HTTP requests the proxy sees, never from poscloud's own
//! log. The proxy can also kill poscloud (SIGKILL, by PID) right after a chosen write has
//! reached the emulator, before poscloud sees the answer: the harshest crash point.
#![allow(dead_code)]

pub mod data;
pub mod host;
pub mod run;
pub mod vpn;

pub use run::{Poscloud, Run};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// CentOS 7's bash (4.2.45, built by scripts/setup.sh): what host scripts run under in tests,
/// on test hosts (first on their PATH) and where a test runs a script itself.
pub fn host_bash() -> PathBuf {
    let p = std::env::var_os("TESTHOST_BASH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/poscloud/bash-4.2.45/bin/bash"));
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// CentOS 7's pythons (2.7 and 3.6; this machine image has them under pyenv), each in a
/// directory of its own as `python3`, the name host scripts look for first: put the
/// directory first on PATH to run a script's python under that version.
pub fn host_pythons() -> Vec<(String, tempfile::TempDir)> {
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".pyenv"));
    ["2.7.18", "3.6.15"]
        .into_iter()
        .map(|v| {
            let bin = pyenv.join(format!("versions/{v}/bin/python"));
            assert!(
                bin.is_file(),
                "{} missing (CentOS 7's python {v})",
                bin.display()
            );
            let dir = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(&bin, dir.path().join("python3")).unwrap();
            (v.to_string(), dir)
        })
        .collect()
}

/// Polls `f` every 200 ms until it holds (true) or `within` has passed (false): the one
/// way the tests wait for something that settles (a ping, a tunnel, a log line).
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long something that must happen (a ping answered, a daemon's socket, a log line) may
/// take on this 2-core machine while other tests and builds run. Generous on purpose: a
/// wait returns as soon as the thing happens, so only a real failure pays the full wait.
pub const SETTLE: Duration = Duration::from_secs(60);

/// The arguments of `provision --until infra` of one stack (prod with --yes).
pub fn infra_args<'a>(shop: &'a str, env: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "provision",
        "--shop",
        shop,
        "--env",
        env,
        "--until",
        "infra",
    ];
    if env == "prod" {
        args.push("--yes");
    }
    args
}

/// The venv's python, which runs tests/rig/emulator.py (moto's server with the SSM agent
/// stand-in and the console of the test hosts).
fn emulator_python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run scripts/setup.sh first (it installs the emulator)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// AWS's behaviour modelled in front of moto for every test (tests/rig/aws_model.py): new
/// resources missing from lists and unknown by id for a moment, instances `pending` and
/// `shutting-down` for a while, IAM propagation, dependency and in-use errors, ClientToken.
/// Small times, so that CI stays fast; a test may set others with `Rig::set_model`.
pub const STRICT: &str = r#"{"list_lag": 1.0, "read_lag": 0.5, "write_lag": 0.3,
  "pending": 0.5, "shutting_down": 0.5, "eni_detach": 0.5, "iam_propagation": 1.0,
  "in_use": "alternate",
  "dependencies": true, "client_token": true, "termination_protection": true}"#;

/// The access key of the tests' own SDK clients: the AWS model lets them see the truth (what
/// moto holds), so that a check after a run is not fooled by the lag poscloud must handle.
pub const TRUTH_KEY: &str = "rig-truth";

/// One emulator (tests/rig/emulator.py) on a free loopback port; stopped (by PID) when
/// dropped. `hosts` is its registry of test hosts (see `TestHost::bind`).
pub struct Emulator {
    /// None: no emulator, nothing listens on `port` (see `Rig::offline`).
    child: Option<Child>,
    pub port: u16,
    model: tempfile::NamedTempFile,
}

impl Emulator {
    pub fn start(hosts: &std::path::Path) -> Emulator {
        let port = free_port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("poscloud-moto-{port}.log")))
                .unwrap();
        let model = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(model.path(), STRICT).unwrap();
        let child = Command::new(emulator_python())
            .arg(repo().join("tests/rig/emulator.py"))
            .arg("--hosts")
            .arg(hosts)
            .arg("--aws-model")
            .arg(model.path())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_AMIS_PATH", repo().join("tests/fixtures/amis.json"))
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let emu = Emulator {
            child: Some(child),
            port,
            model,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        emu
    }

    /// No emulator: a free loopback port nobody listens on.
    fn none() -> Emulator {
        let model = tempfile::NamedTempFile::new().unwrap();
        Emulator {
            child: None,
            port: free_port(),
            model,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the AWS model (JSON as in tests/rig/aws_model.py; "{}" turns it off). The
    /// emulator reads it again before its next request.
    pub fn set_model(&self, json: &str) {
        let tmp = self.model.path().with_extension("new");
        std::fs::write(&tmp, json).unwrap();
        std::fs::rename(&tmp, self.model.path()).unwrap();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request poscloud made, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub action: String,
    pub status: u16,
    /// The request body (JSON for SSM, form-encoded for EC2/IAM).
    pub body: String,
}

/// Reads are Describe*, Get*, List*; every other API action changes something. Written here
/// independently of poscloud's own notion, so the tests do not trust the code they test.
/// S3 speaks REST: its requests are recorded as "METHOD /path", and GET/HEAD are reads.
pub fn is_write(action: &str) -> bool {
    if let Some((method, _)) = action.split_once(' ') {
        return !matches!(method, "GET" | "HEAD");
    }
    !(action.starts_with("Describe") || action.starts_with("Get") || action.starts_with("List"))
}

#[derive(Default)]
struct ProxyState {
    calls: Vec<Call>,
    writes: usize,
    /// Kill this PID right after the n-th write (1-based) the emulator carried out.
    kill_after_write: Option<(usize, u32)>,
    /// Extra delay before each write is forwarded (to widen race windows).
    write_delay: Duration,
    /// Fault injection, when on.
    faults: Option<FaultState>,
    /// Every fault injected since the last reset.
    injected: Vec<Injected>,
}

/// What a faulted call gets instead of (or on top of) the emulator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The service's own throttling error, in its protocol's wire format: EC2
    /// `RequestLimitExceeded` (503), IAM/STS `Throttling` (400), SSM `ThrottlingException`
    /// (400, JSON), S3 `SlowDown` (503).
    Throttle,
    /// HTTP 500 with the protocol's internal-error body.
    Status500,
    /// HTTP 503 with the protocol's unavailable body.
    Status503,
    /// The connection is closed without any answer.
    Reset,
    /// The answer comes 0.2 to 1.5 s late (no error).
    Delay,
}

pub const ALL_FAULTS: [FaultKind; 5] = [
    FaultKind::Throttle,
    FaultKind::Status500,
    FaultKind::Status503,
    FaultKind::Reset,
    FaultKind::Delay,
];

/// When a fault strikes: before the call reaches the emulator (nothing happened), or after
/// (the emulator did the work, the client gets an error or no answer: the case that makes
/// duplicates when a create is simply sent again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAt {
    Before,
    After,
}

/// One injected fault, as recorded by the proxy.
#[derive(Debug, Clone)]
pub struct Injected {
    pub action: String,
    pub kind: FaultKind,
    pub at: FaultAt,
}

impl Injected {
    /// A write that the emulator carried out but whose answer the client never saw intact.
    pub fn is_lost_write(&self) -> bool {
        self.at == FaultAt::After && self.kind != FaultKind::Delay && is_write(&self.action)
    }
}

/// Which calls fail and how: `percent` of calls, kinds drawn from `kinds`, half before and
/// half after forwarding, all from a seeded generator (the same seed gives the same
/// sequence of decisions; which call gets which depends on the order calls arrive).
#[derive(Debug, Clone)]
pub struct Faults {
    pub percent: u32,
    pub seed: u64,
    pub kinds: Vec<FaultKind>,
    /// Besides the random ones: the first call of each of these actions reaches the
    /// emulator and is then answered with this fault (a lost answer, for certain).
    pub lose_first: Vec<(String, FaultKind)>,
}

struct FaultState {
    faults: Faults,
    rng: SplitMix64,
    /// Actions of `lose_first` already answered with their fault.
    lost: Vec<String>,
}

/// SplitMix64: a tiny deterministic generator (no crate needed).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The wire protocol of a request, for errors in the format the SDK really parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// EC2 query: `<Response><Errors><Error>`.
    Ec2,
    /// IAM/STS query: `<ErrorResponse><Error>`.
    AwsQuery,
    /// SSM JSON 1.1: `{"__type": ...}` and the `x-amzn-ErrorType` header.
    Json,
    /// S3 REST-XML: `<Error>`.
    S3,
}

fn protocol_of(req: &hyper::http::request::Parts, body: &[u8]) -> Protocol {
    if req.headers.contains_key("x-amz-target") {
        return Protocol::Json;
    }
    let body = String::from_utf8_lossy(body);
    if body.split('&').any(|kv| kv.starts_with("Action=")) {
        if body.split('&').any(|kv| kv == "Version=2016-11-15") {
            Protocol::Ec2
        } else {
            Protocol::AwsQuery
        }
    } else {
        Protocol::S3
    }
}

/// The error answer a real endpoint of this protocol sends for the fault.
fn fault_response(proto: Protocol, kind: FaultKind, head: bool) -> Response<Full<Bytes>> {
    let (status, code, message) = match (proto, kind) {
        (Protocol::Ec2, FaultKind::Throttle) => {
            (503, "RequestLimitExceeded", "Request limit exceeded.")
        }
        (Protocol::AwsQuery, FaultKind::Throttle) => (400, "Throttling", "Rate exceeded"),
        (Protocol::Json, FaultKind::Throttle) => (400, "ThrottlingException", "Rate exceeded"),
        (Protocol::S3, FaultKind::Throttle) => {
            (503, "SlowDown", "Please reduce your request rate.")
        }
        (Protocol::Ec2, FaultKind::Status500) => {
            (500, "InternalError", "An internal error has occurred")
        }
        (Protocol::AwsQuery, FaultKind::Status500) => {
            (500, "ServiceFailure", "An internal error has occurred")
        }
        (Protocol::Json, FaultKind::Status500) => {
            (500, "InternalServerError", "An internal error has occurred")
        }
        (Protocol::S3, FaultKind::Status500) => (
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        (Protocol::Ec2, _) => (
            503,
            "Unavailable",
            "The server is overloaded and can't handle the request.",
        ),
        (_, _) => (
            503,
            "ServiceUnavailable",
            "Service is unable to handle request.",
        ),
    };
    let request_id = "f4a17000-0000-4000-8000-000000000000";
    let (content_type, body) = match proto {
        Protocol::Ec2 => (
            "text/xml;charset=UTF-8",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"),
        ),
        Protocol::AwsQuery => (
            "text/xml",
            format!("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>", if status < 500 { "Sender" } else { "Receiver" }),
        ),
        Protocol::Json => (
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": code, "message": message}).to_string(),
        ),
        Protocol::S3 => (
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId><HostId>faults</HostId></Error>"),
        ),
    };
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", request_id);
    if proto == Protocol::Json {
        b = b.header("x-amzn-ErrorType", code);
    }
    // HEAD answers carry no body (the SDK reads S3's HeadBucket error from the status).
    let body = if head { String::new() } else { body };
    b.body(Full::new(Bytes::from(body))).unwrap()
}

/// The connection is dropped without an answer (hyper closes it when the service fails).
#[derive(Debug)]
struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection reset")
    }
}

impl std::error::Error for ConnectionReset {}

/// Recording proxy in front of the emulator.
pub struct Proxy {
    state: Arc<Mutex<ProxyState>>,
    pub host: String,
    pub port: u16,
    _rt: tokio::runtime::Runtime,
}

/// The API action of an AWS request: JSON protocols name it in X-Amz-Target, query
/// protocols (EC2, IAM) in the form body.
fn action_of(req: &hyper::http::request::Parts, body: &[u8]) -> String {
    if let Some(t) = req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    let body = String::from_utf8_lossy(body);
    body.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", req.method, req.uri.path()))
}

/// Decides whether this call is faulted, and how (None: passed through untouched).
fn draw_fault(state: &Mutex<ProxyState>, action: &str) -> Option<(FaultKind, FaultAt, Duration)> {
    let mut s = state.lock().unwrap();
    let f = s.faults.as_mut()?;
    if let Some((a, kind)) = f
        .faults
        .lose_first
        .iter()
        .find(|(a, _)| *a == action && !f.lost.iter().any(|l| l == a))
    {
        f.lost.push(a.to_string());
        return Some((*kind, FaultAt::After, Duration::from_millis(500)));
    }
    if f.rng.below(100) >= u64::from(f.faults.percent) || f.faults.kinds.is_empty() {
        return None;
    }
    let kind = f.faults.kinds[f.rng.below(f.faults.kinds.len() as u64) as usize];
    let at = if f.rng.below(2) == 0 {
        FaultAt::Before
    } else {
        FaultAt::After
    };
    let delay = Duration::from_millis(200 + f.rng.below(1300));
    Some((kind, at, delay))
}

type HandlerResult = Result<Response<Full<Bytes>>, ConnectionReset>;

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<ProxyState>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: u16,
) -> HandlerResult {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let action = action_of(&parts, &body);
    let proto = protocol_of(&parts, &body);
    let head = parts.method == hyper::Method::HEAD;
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let fault = draw_fault(&state, &action);
    if let Some((kind, at, _)) = fault {
        state.lock().unwrap().injected.push(Injected {
            action: action.clone(),
            kind,
            at,
        });
    }
    let record = |status: u16| {
        state.lock().unwrap().calls.push(Call {
            action: action.clone(),
            status,
            body: body_text.clone(),
        });
    };
    match fault {
        Some((FaultKind::Delay, FaultAt::Before, d)) => tokio::time::sleep(d).await,
        Some((FaultKind::Reset, FaultAt::Before, _)) => {
            record(0);
            return Err(ConnectionReset);
        }
        Some((kind, FaultAt::Before, _)) => {
            let resp = fault_response(proto, kind, head);
            record(resp.status().as_u16());
            return Ok(resp);
        }
        _ => {}
    }
    let delay = if is_write(&action) {
        state.lock().unwrap().write_delay
    } else {
        Duration::ZERO
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let uri = format!(
        "http://127.0.0.1:{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut b = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in parts.headers.iter() {
        b = b.header(k, v);
    }
    let resp = client.request(b.body(Full::new(body)).unwrap()).await;
    let (status, resp) = match resp {
        Ok(r) => {
            let (p, body) = r.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (p.status.as_u16(), Response::from_parts(p, Full::new(bytes)))
        }
        Err(e) => (
            502,
            Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap(),
        ),
    };
    let kill = {
        let mut s = state.lock().unwrap();
        let mut kill = None;
        // Writes AWS carried out: one refused (e.g. a NotFound while a new resource
        // settles, then retried) changed nothing.
        if is_write(&action) && status < 300 {
            s.writes += 1;
            if let Some((n, pid)) = s.kill_after_write {
                if s.writes == n {
                    kill = Some(pid);
                }
            }
        }
        kill
    };
    record(status);
    if let Some(pid) = kill {
        // The write happened; poscloud dies before it learns the result.
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    // The emulator did the work; the client learns it late, or gets an error, or nothing.
    match fault {
        Some((FaultKind::Delay, FaultAt::After, d)) => {
            tokio::time::sleep(d).await;
            Ok(resp)
        }
        Some((FaultKind::Reset, FaultAt::After, _)) => Err(ConnectionReset),
        Some((kind, FaultAt::After, _)) => Ok(fault_response(proto, kind, head)),
        _ => Ok(resp),
    }
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        Proxy::start_on("127.0.0.1", upstream)
    }

    /// A proxy listening on `host` (e.g. the root side of a test host's veth, so that the
    /// test host can reach the emulator with presigned URLs poscloud made for this endpoint).
    pub fn start_on(host: &str, upstream: u16) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((host, 0)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        rt.spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, st.clone(), client.clone(), upstream)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Proxy {
            state,
            host: host.to_string(),
            port,
            _rt: rt,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Write actions seen since the last reset.
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| is_write(&c.action))
            .map(|c| c.action)
            .collect()
    }

    /// The writes that succeeded (a write refused by AWS's eventual consistency, e.g. a
    /// NotFound for a resource made moments ago, and retried, is in `writes` only).
    pub fn ok_writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| is_write(&c.action) && c.status < 300)
            .map(|c| c.action)
            .collect()
    }

    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.calls.clear();
        s.writes = 0;
        s.kill_after_write = None;
        s.injected.clear();
    }

    /// Faults `percent` % of the calls from now on (None: none); see [`Faults`].
    pub fn set_faults(&self, faults: Option<Faults>) {
        let mut s = self.state.lock().unwrap();
        s.faults = faults.map(|f| FaultState {
            rng: SplitMix64(f.seed),
            faults: f,
            lost: Vec::new(),
        });
    }

    /// The faults injected since the last reset.
    pub fn injected(&self) -> Vec<Injected> {
        self.state.lock().unwrap().injected.clone()
    }

    pub fn kill_after_write(&self, n: usize, pid: u32) {
        let mut s = self.state.lock().unwrap();
        s.writes = 0;
        s.kill_after_write = Some((n, pid));
    }

    pub fn set_write_delay(&self, d: Duration) {
        self.state.lock().unwrap().write_delay = d;
    }
}

/// Emulator + proxy + a scratch home for one test; SDK clients that bypass the proxy.
pub struct Rig {
    pub emu: Emulator,
    pub proxy: Proxy,
    pub home: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub s3: aws_sdk_s3::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with(Emulator::start)
    }

    /// A rig with no emulator behind its proxy, for runs that must make no AWS call at all
    /// (bad input): the proxy still records every call (answered 502), so a run that calls
    /// fails its `no_aws_call()`; without moto's start-up such a test costs one poscloud run.
    pub fn offline() -> Rig {
        Rig::with(|_| Emulator::none())
    }

    fn with(emulator: impl FnOnce(&std::path::Path) -> Emulator) -> Rig {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("hosts")).unwrap();
        let emu = emulator(&home.path().join("hosts"));
        let proxy = Proxy::start(emu.port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conf = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(emu.url())
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    TRUTH_KEY, "testing", None, None, "tests",
                ))
                .load(),
        );
        Rig {
            ec2: aws_sdk_ec2::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            ssm: aws_sdk_ssm::Client::new(&conf),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            ),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&conf),
            sns: aws_sdk_sns::Client::new(&conf),
            emu,
            proxy,
            home,
            rt,
        }
    }

    /// The id of the stack's instance (the first not terminated), as moto holds it.
    pub fn instance_id(&self, shop: &str, env: &str) -> String {
        self.block(async {
            let out = self
                .ec2
                .describe_instances()
                .filters(f("tag:poscloud:shop", shop))
                .filters(f("tag:poscloud:env", env))
                .send()
                .await
                .unwrap();
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| {
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated")
                })
                .and_then(|i| i.instance_id())
                .expect("the stack has an instance")
                .to_string()
        })
    }

    /// Sets the AWS model of the emulator (see `Emulator::set_model`).
    pub fn set_model(&self, json: &str) {
        self.emu.set_model(json);
    }

    /// The account's applied quota values in the emulator's Service Quotas (the AWS model's
    /// `quotas`, beside `STRICT`): `[("vpc/L-F678F1CE", 20)]`, a key may start with
    /// `REGION/`. Quotas not named have no applied value (AWS's default holds).
    pub fn set_quotas(&self, applied: &[(&str, u32)]) {
        let mut model: serde_json::Value = serde_json::from_str(STRICT).unwrap();
        model["quotas"] = applied
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        self.set_model(&model.to_string());
    }

    /// The emulator's registry of test hosts standing for instances.
    pub fn hosts(&self) -> PathBuf {
        self.home.path().join("hosts")
    }

    pub fn journal(&self) -> PathBuf {
        self.home.path().join("journal.jsonl")
    }

    /// The poscloud binary with dummy credentials, the proxy as endpoint, and a scratch HOME
    /// (so no real ~/.aws configuration is read and no instance metadata is asked).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_poscloud"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("USER", "tester")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_ENDPOINT_URL", self.proxy.url())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POSCLOUD_JOURNAL", self.journal())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// A poscloud run to make (see `run.rs`): `rig.poscloud(args).env(…).stdin(…).run()`.
    pub fn poscloud<S: AsRef<str>>(&self, args: impl IntoIterator<Item = S>) -> Poscloud<'_> {
        Poscloud::new(self).args(args)
    }

    /// Runs poscloud with these arguments: `rig.run(args).status(2).stderr_has(…)`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.poscloud(args).run()
    }

    /// `provision --until infra` of one stack: the AWS part only (prod confirmed with --yes:
    /// no terminal here).
    pub fn provision_infra(&self, shop: &str, env: &str) -> Run {
        self.run(&infra_args(shop, env))
    }

    /// Appends journal lines as poscloud writes them, one successful write each:
    /// (time, "shop/env", operation, resource).
    pub fn journal_writes(&self, lines: &[(&str, &str, &str, &str)]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.journal())
            .unwrap();
        for (time, stack, op, resource) in lines {
            let (shop, env) = stack.split_once('/').unwrap();
            let line = serde_json::json!({"time": time, "run": "1-1", "user": "tester",
                "host": "test", "command": format!("provision --shop {shop} --env {env}"),
                "event": "write", "op": op, "resource": resource, "result": "ok"});
            writeln!(f, "{line}").unwrap();
        }
    }

    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A stack file in the scratch dir: stacks/qa.toml with `from` replaced by `to`.
    /// The POS Elastic IP of the one stack in the emulator (its `eip-pos` role tag).
    pub fn pos_eip(&self) -> String {
        self.block(async {
            self.ec2
                .describe_addresses()
                .send()
                .await
                .unwrap()
                .addresses()
                .iter()
                .find(|a| {
                    a.tags()
                        .iter()
                        .any(|t| t.key() == Some("poscloud:role") && t.value() == Some("eip-pos"))
                })
                .and_then(|a| a.public_ip().map(str::to_string))
                .expect("a POS Elastic IP")
        })
    }

    /// stacks/<env>.toml with an `alert_email` (the alarms' topic has it subscribed), in
    /// the scratch dir; its path.
    pub fn stack_with_alerts(&self, env: &str, email: &str) -> String {
        let base = std::fs::read_to_string(repo().join(format!("stacks/{env}.toml"))).unwrap();
        let p = self
            .home
            .path()
            .join(format!("{env}-alerts-{}.toml", email.len()));
        std::fs::write(&p, format!("alert_email = \"{email}\"\n{base}")).unwrap();
        p.to_string_lossy().into_owned()
    }

    pub fn stack_file(&self, name: &str, from: &str, to: &str) -> String {
        let base = std::fs::read_to_string(repo().join("stacks/qa.toml")).unwrap();
        assert!(base.contains(from), "{from} not in stacks/qa.toml");
        let p = self.home.path().join(name);
        std::fs::write(&p, base.replace(from, to)).unwrap();
        p.to_string_lossy().into_owned()
    }
}

/// Counts of what exists in the emulator's region, read directly through the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub vpcs: usize,
    pub eips: usize,
    pub enis: usize,
    pub live_instances: usize,
    pub security_groups: usize,
    pub roles: usize,
    pub instance_profiles: usize,
}

fn f(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

impl Rig {
    pub fn inventory(&self) -> Inventory {
        self.block(async {
            let live = self
                .ec2
                .describe_instances()
                .send()
                .await
                .unwrap()
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| {
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated")
                })
                .count();
            Inventory {
                vpcs: self.ec2.describe_vpcs().send().await.unwrap().vpcs().len(),
                eips: self
                    .ec2
                    .describe_addresses()
                    .send()
                    .await
                    .unwrap()
                    .addresses()
                    .len(),
                enis: self
                    .ec2
                    .describe_network_interfaces()
                    .send()
                    .await
                    .unwrap()
                    .network_interfaces()
                    .len(),
                live_instances: live,
                security_groups: self
                    .ec2
                    .describe_security_groups()
                    .send()
                    .await
                    .unwrap()
                    .security_groups()
                    .len(),
                roles: self.iam.list_roles().send().await.unwrap().roles().len(),
                instance_profiles: self
                    .iam
                    .list_instance_profiles()
                    .send()
                    .await
                    .unwrap()
                    .instance_profiles()
                    .len(),
            }
        })
    }

    /// Every resource carrying this stack's tags (instances: unless terminated), the IAM
    /// role/profile of its name and its SSM parameters. Empty means nothing is left.
    pub fn tagged(&self, shop: &str, env: &str) -> Vec<String> {
        let fs = vec![f("tag:poscloud:shop", shop), f("tag:poscloud:env", env)];
        let name = format!("poscloud-{shop}-{env}");
        self.block(async {
            let mut out = Vec::new();
            for v in self
                .ec2
                .describe_vpcs()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .vpcs()
            {
                out.push(format!("vpc {}", v.vpc_id().unwrap()));
            }
            for s in self
                .ec2
                .describe_subnets()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .subnets()
            {
                out.push(format!("subnet {}", s.subnet_id().unwrap()));
            }
            for g in self
                .ec2
                .describe_internet_gateways()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .internet_gateways()
            {
                out.push(format!("igw {}", g.internet_gateway_id().unwrap()));
            }
            for t in self
                .ec2
                .describe_route_tables()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .route_tables()
            {
                out.push(format!("rtb {}", t.route_table_id().unwrap()));
            }
            for g in self
                .ec2
                .describe_security_groups()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .security_groups()
            {
                out.push(format!("sg {}", g.group_id().unwrap()));
            }
            for n in self
                .ec2
                .describe_network_interfaces()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .network_interfaces()
            {
                out.push(format!("eni {}", n.network_interface_id().unwrap()));
            }
            for a in self
                .ec2
                .describe_addresses()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .addresses()
            {
                out.push(format!("eip {}", a.allocation_id().unwrap()));
            }
            for r in self
                .ec2
                .describe_instances()
                .set_filters(Some(fs.clone()))
                .send()
                .await
                .unwrap()
                .reservations()
            {
                for i in r.instances() {
                    if i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated") {
                        out.push(format!("instance {}", i.instance_id().unwrap()));
                    }
                }
            }
            if self.iam.get_role().role_name(&name).send().await.is_ok() {
                out.push(format!("role {name}"));
            }
            if self
                .iam
                .get_instance_profile()
                .instance_profile_name(&name)
                .send()
                .await
                .is_ok()
            {
                out.push(format!("profile {name}"));
            }
            let params = self
                .ssm
                .get_parameters_by_path()
                .path(format!("/poscloud/{shop}/{env}"))
                .recursive(true)
                .send()
                .await
                .unwrap();
            for p in params.parameters() {
                let name = p.name().unwrap();
                // The records of created ids (`<path>id/<role>`) apart from other parameters.
                let kind = if name.split('/').nth(4) == Some("id") {
                    "record"
                } else {
                    "parameter"
                };
                out.push(format!("{kind} {name}"));
            }
            let snaps = self
                .ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(f("tag:poscloud:shop", shop))
                .filters(f("tag:poscloud:env", env))
                .send()
                .await
                .unwrap();
            for s in snaps.snapshots() {
                out.push(format!("snapshot {}", s.snapshot_id().unwrap()));
            }
            out.extend(self.tagged_alerts(shop, env).await);
            out
        })
    }

    /// SNS topics and CloudWatch alarms carrying the stack's tags (every one in the region
    /// read with its tags: neither service filters by tag).
    async fn tagged_alerts(&self, shop: &str, env: &str) -> Vec<String> {
        let ours = |tags: Vec<(String, String)>| {
            tags.contains(&("poscloud:shop".into(), shop.into()))
                && tags.contains(&("poscloud:env".into(), env.into()))
        };
        let mut out = Vec::new();
        let topics = self.sns.list_topics().send().await.unwrap();
        for t in topics.topics() {
            let arn = t.topic_arn().unwrap();
            let tags = self
                .sns
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .unwrap();
            let tags = tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            if ours(tags) {
                out.push(format!("topic {arn}"));
            }
        }
        let alarms = self.cloudwatch.describe_alarms().send().await.unwrap();
        for a in alarms.metric_alarms() {
            let tags = self
                .cloudwatch
                .list_tags_for_resource()
                .resource_arn(a.alarm_arn().unwrap())
                .send()
                .await
                .unwrap();
            let tags = tags
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            if ours(tags) {
                out.push(format!("alarm {}", a.alarm_name().unwrap()));
            }
        }
        out
    }
}

impl Rig {
    /// How many resources of one kind (vpc, instance, eip, …) a stack has.
    pub fn count(&self, shop: &str, env: &str, kind: &str) -> usize {
        self.tagged(shop, env)
            .iter()
            .filter(|l| l.split(' ').next() == Some(kind))
            .count()
    }

    /// The stack has each of its tagged resources exactly once, and no lock left.
    pub fn assert_one_stack(&self, shop: &str, env: &str, what: &str) {
        let tagged = self.tagged(shop, env);
        for (kind, n) in [
            ("vpc", 1),
            ("subnet", 1),
            ("igw", 1),
            ("rtb", 1),
            ("sg", 2),
            // eth1, created by poscloud. (eth0 is made by RunInstances, with the stack's
            // tags from its TagSpecifications on AWS; moto leaves it untagged.)
            ("eni", 1),
            ("instance", 1),
            ("eip", 2),
            ("role", 1),
            ("profile", 1),
            ("topic", 1),
            ("alarm", 2),
            // The lock is released; each created id is recorded once.
            ("parameter", 0),
            ("record", 10),
        ] {
            assert_eq!(self.count(shop, env, kind), n, "{what}: {kind}: {tagged:?}");
        }
    }

    /// SSM parameters under /poscloud (the lock included), besides the records of created
    /// ids (`/poscloud/<shop>/<env>/id/<role>`, which live as long as their resources).
    pub fn count_parameters(&self) -> usize {
        self.block(async {
            self.ssm
                .get_parameters_by_path()
                .path("/poscloud")
                .recursive(true)
                .into_paginator()
                .send()
                .try_collect()
                .await
                .unwrap()
                .iter()
                .flat_map(|page| page.parameters())
                .filter(|p| {
                    let name = p.name().unwrap_or_default();
                    name.split('/').nth(4) != Some("id")
                })
                .count()
        })
    }
}

impl Rig {
    /// Opens an inbound rule on the stack's security group of `role` (sg-host, sg-pos) behind
    /// poscloud's back, as a person in the console would: drift for the tests.
    pub fn open_inbound(&self, role: &str, protocol: &str, port: i32, cidr: &str) {
        self.block(async {
            let groups = self
                .ec2
                .describe_security_groups()
                .filters(f("tag:poscloud:role", role))
                .send()
                .await
                .unwrap();
            let sg = groups.security_groups()[0].group_id().unwrap();
            self.ec2
                .authorize_security_group_ingress()
                .group_id(sg)
                .ip_protocol(protocol)
                .from_port(port)
                .to_port(port)
                .cidr_ip(cidr)
                .send()
                .await
                .unwrap();
        })
    }
}
