//! One error type for the library. Each error has a kind (what went wrong, classified once
//! where it arises: an AWS error in `aws::Aws::err`), a message, and, where there is one, the
//! next step for the user as data (`next`). `Display` renders them the one way the user
//! reads them: the message, then `\n  next: …`. Each variant maps to one exit code
//! (docs/architecture.md, the man pages' EXIT STATUS).

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes: 0 ok, 1 failure, 2 usage/bad input, 3 locked, 4 blocked by protection,
/// 130 interrupted (Ctrl-C, as a shell reports SIGINT).
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_LOCKED: i32 = 3;
pub const EXIT_PROTECTED: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 130;

/// What went wrong, for callers that act on it (teardown waits out `InUse`, counts
/// `NotFound` as removed) and for `--output json` (`"kind": "in-use"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Bad arguments, stack files or setup; nothing was changed.
    InvalidInput,
    /// Another run holds the stack's lock.
    Locked,
    /// Refused: the stack is protected (prod).
    Protected,
    /// AWS does not know the resource (`*.NotFound`, `NoSuchEntity`, ...).
    NotFound,
    /// Still used by something (`DependencyViolation`, `*.InUse`): often going away.
    InUse,
    /// Exists already (`*.Duplicate`, `*AlreadyExists`, `Resource.AlreadyAssociated`).
    Conflict,
    /// Not in a state for this call yet (`IncorrectInstanceState`).
    InvalidState,
    /// AWS's other refusals of a request's values (`InvalidParameterValue`, ...).
    Rejected,
    /// AWS throttled the account, also on every retry.
    Throttled,
    /// The credentials lack a permission.
    Denied,
    /// The credentials were refused (unknown, expired).
    CredentialsRefused,
    /// An account quota is used up.
    QuotaExceeded,
    /// AWS failed to answer (5xx), also when asked again.
    Unavailable,
    /// The AWS endpoint could not be reached at all.
    Unreachable,
    /// Stopped by Ctrl-C.
    Interrupted,
    /// Anything else.
    Failed,
}

#[derive(Debug)]
pub enum Error {
    /// Bad user input: arguments, stack files, credentials setup. Nothing was changed.
    Usage(Msg),

    /// A stack profile value that fails validation.
    Profile {
        file: String,
        key: String,
        reason: String,
    },

    /// Another run holds the shop+env lock.
    Locked {
        stack: String,
        holder: String,
        stale: String,
    },

    /// Refused because the stack is protected (prod).
    Protected(Msg),

    /// An AWS call failed (boxed: it is the largest variant).
    Aws(Box<AwsFailure>),

    /// The AWS endpoint could not be reached at all.
    Unreachable {
        op: &'static str,
        region: String,
        endpoint: String,
        detail: String,
        hint: &'static str,
    },

    /// Anything else that went wrong, already phrased for the user.
    Failed(Msg),

    /// Stopped by Ctrl-C; what was done so far stays.
    Interrupted(String),

    /// Failed, and the command's printed result already says what (batch runs): the exit
    /// code is a failure's, and no separate error document is printed.
    Reported(String),
}

/// A message for the user and, where there is one, what to do next.
#[derive(Debug)]
pub struct Msg {
    pub text: String,
    pub next: Option<String>,
}

/// An AWS API error with where it happened, classified once.
#[derive(Debug)]
pub struct AwsFailure {
    pub op: &'static str,
    pub region: String,
    pub resource: Resource,
    pub code: String,
    pub message: String,
    pub kind: Kind,
}

impl AwsFailure {
    /// What to do next about an AWS error of this kind (the kinds a retry or the caller
    /// cannot handle).
    pub fn next(&self) -> Option<&'static str> {
        Some(match self.kind {
            Kind::CredentialsRefused => {
                "the credentials were refused; check AWS_PROFILE or renew them (`aws sso login`)"
            }
            Kind::Denied => {
                "these credentials lack a permission; see docs/security.md for the policy poscloud needs"
            }
            Kind::QuotaExceeded => {
                "release unused Elastic IPs/VPCs in this region or ask AWS for a higher quota"
            }
            Kind::Throttled => {
                "AWS is throttling this account; each call was already tried 8 times. Run the same command again in a few minutes"
            }
            Kind::Unavailable => {
                "AWS failed to answer, also when asked again; run the same command again in a few minutes: it resumes where this run stopped"
            }
            _ => return None,
        })
    }
}

/// The resource an AWS error is about, printed as " for <id>" (or nothing).
#[derive(Debug, Default, Clone)]
pub struct Resource(pub Option<String>);

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(id) => write!(f, " for {id}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Error {
    /// The message, then the next step on its own line: `\n  next: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        match self.next_step() {
            Some(next) => write!(f, "\n  next: {next}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Profile { .. } => EXIT_USAGE,
            Error::Locked { .. } => EXIT_LOCKED,
            Error::Protected(_) => EXIT_PROTECTED,
            Error::Interrupted(_) => EXIT_INTERRUPTED,
            _ => EXIT_FAILURE,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::Usage(_) | Error::Profile { .. } => Kind::InvalidInput,
            Error::Locked { .. } => Kind::Locked,
            Error::Protected(_) => Kind::Protected,
            Error::Aws(f) => f.kind,
            Error::Unreachable { .. } => Kind::Unreachable,
            Error::Interrupted(_) => Kind::Interrupted,
            Error::Failed(_) | Error::Reported(_) => Kind::Failed,
        }
    }

    /// What went wrong, without the next step.
    pub fn message(&self) -> String {
        match self {
            Error::Usage(m) | Error::Protected(m) | Error::Failed(m) => m.text.clone(),
            Error::Profile { file, key, reason } => format!("{file}: `{key}`: {reason}"),
            Error::Locked {
                stack,
                holder,
                stale,
            } => format!("{stack} is locked by {holder}{stale}"),
            Error::Aws(a) => format!(
                "{} failed in {}{}: {}: {}",
                a.op, a.region, a.resource, a.code, a.message
            ),
            Error::Unreachable {
                op,
                region,
                endpoint,
                detail,
                ..
            } => format!("cannot reach AWS in {region} ({endpoint}) during {op}: {detail}"),
            Error::Interrupted(m) | Error::Reported(m) => m.clone(),
        }
    }

    /// What the user can do about it, if poscloud knows.
    pub fn next_step(&self) -> Option<&str> {
        match self {
            Error::Usage(m) | Error::Protected(m) | Error::Failed(m) => m.next.as_deref(),
            Error::Locked { .. } => Some(
                "wait for that run to end; if it is gone, run the same command with --break-lock",
            ),
            Error::Aws(a) => a.next(),
            Error::Unreachable { hint, .. } => Some(hint),
            _ => None,
        }
    }

    /// Bad input (exit 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(Msg::new(msg))
    }

    /// A failure already phrased for the user (exit 1).
    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(Msg::new(msg))
    }

    /// Refused by protection (exit 4).
    pub fn protected(msg: impl Into<String>) -> Self {
        Error::Protected(Msg::new(msg))
    }

    /// Adds the next step: `Error::failed("…").next("run … again")`. (Errors whose next step
    /// follows from their kind — AWS's, a lock's — keep their own.)
    pub fn next(mut self, advice: impl Into<String>) -> Self {
        match &mut self {
            Error::Usage(m) | Error::Protected(m) | Error::Failed(m) => {
                m.next = Some(advice.into())
            }
            _ => debug_assert!(false, "{self:?} has its own next step"),
        }
        self
    }

    /// The `--output json` error document: `{"error", "kind", "next", "exit_code"}`.
    pub fn to_json(&self, exit_code: i32) -> serde_json::Value {
        serde_json::json!({
            "error": self.message(),
            "kind": self.kind(),
            "next": self.next_step(),
            "exit_code": exit_code,
        })
    }
}

impl Msg {
    fn new(text: impl Into<String>) -> Msg {
        Msg {
            text: text.into(),
            next: None,
        }
    }
}
