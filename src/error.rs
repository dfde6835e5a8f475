//! One error type for the library; each kind maps to one exit code (docs/architecture.md, the man pages' EXIT STATUS).

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes: 0 ok, 1 failure, 2 usage/bad input, 3 locked, 4 blocked by protection,
/// 130 interrupted (Ctrl-C, as a shell reports SIGINT).
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_LOCKED: i32 = 3;
pub const EXIT_PROTECTED: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input: arguments, stack files, credentials setup. Nothing was changed.
    #[error("{0}")]
    Usage(String),

    /// A stack profile value that fails validation.
    #[error("{file}: `{key}`: {reason}")]
    Profile {
        file: String,
        key: String,
        reason: String,
    },

    /// Another run holds the shop+env lock.
    #[error("{stack} is locked by {holder}{stale}\n  next: wait for that run to end; if it is gone, run the same command with --break-lock")]
    Locked {
        stack: String,
        holder: String,
        stale: String,
    },

    /// Refused because the stack is protected (prod).
    #[error("{0}")]
    Protected(String),

    /// An AWS call failed (boxed: it is the largest variant).
    #[error("{0}")]
    Aws(Box<AwsFailure>),

    /// The AWS endpoint could not be reached at all.
    #[error("cannot reach AWS in {region} ({endpoint}) during {op}: {detail}\n  next: {hint}")]
    Unreachable {
        op: &'static str,
        region: String,
        endpoint: String,
        detail: String,
        hint: &'static str,
    },

    /// Anything else that went wrong, already phrased for the user.
    #[error("{0}")]
    Failed(String),

    /// Stopped by Ctrl-C; what was done so far stays.
    #[error("{0}")]
    Interrupted(String),

    /// Failed, and the command's printed result already says what (batch runs): the exit
    /// code is a failure's, and no separate error document is printed.
    #[error("{0}")]
    Reported(String),
}

/// An AWS API error with where it happened and what to do next.
#[derive(Debug)]
pub struct AwsFailure {
    pub op: &'static str,
    pub region: String,
    pub resource: Resource,
    pub code: String,
    pub message: String,
    pub hint: &'static str,
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed in {}{}: {}: {}{}",
            self.op, self.region, self.resource, self.code, self.message, self.hint
        )
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

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }
}
