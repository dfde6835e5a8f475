//! SSM Run Command transport: `AWS-RunShellScript` with the same runner and payload as SSH.

use super::{payload, Inputs, Outcome, Program, Sink, Stream, RUNNER};
use crate::aws::ssm_run::{Invocation, SendShell};
use crate::aws::Aws;
use crate::error::{Error, Result};
use aws_sdk_ssm::types::CommandInvocationStatus as S;
use backon::{ExponentialBuilder, Retryable};
use std::time::{Duration, Instant};

/// GetCommandInvocation returns at most this many characters of stdout.
pub const STDOUT_LIMIT: usize = 24_000;

pub struct SsmTarget<'a> {
    pub aws: &'a Aws,
    pub instance_id: String,
    /// Ask DescribeInstanceInformation whether the agent is online before sending. Emulators
    /// without that call (moto) need this off.
    pub check_online: bool,
    /// (bucket, key prefix) for the full output beyond the API's 24 000 characters.
    pub output: Option<(String, String)>,
}

/// AWS documents no size limit for SendCommand's parameters (the nearest documented size is
/// the 64 KB of an SSM document, into which they are substituted); poscloud sends no command
/// over this many bytes, and the compressed payload keeps every shipped script far below it.
pub const COMMAND_LIMIT: usize = 32 * 1024;

/// Where the SSM agent puts the full stdout of a single-step AWS-RunShellScript command.
pub fn stdout_key(prefix: &str, command_id: &str, instance_id: &str) -> String {
    format!(
        "{}/{command_id}/{instance_id}/awsrunShellScript/0.awsrunShellScript/stdout",
        prefix.trim_end_matches('/')
    )
}

/// The shell command SSM runs: the runner, fed the payload on stdin by a quoted here-doc
/// (neither the lowercase script name nor a base64 line can equal the delimiter, and nothing
/// in them is expanded).
pub fn command_text(script: &Program, inputs: &Inputs) -> String {
    format!(
        "bash -c '{}' <<'POSCLOUD_PAYLOAD'\n{}POSCLOUD_PAYLOAD\n",
        RUNNER.replace('\'', r"'\''"),
        payload(script, inputs)
    )
}

enum Poll {
    Pending,
    Failed(Error),
}

/// Maps a finished invocation to the script's exit code, or to an error naming why it never
/// ran to the end. `None` while it is still pending or running.
pub fn finished(inv: &Invocation, instance_id: &str) -> Option<Result<i32>> {
    let why = match inv.status {
        S::Pending | S::InProgress | S::Delayed | S::Cancelling => return None,
        S::Success => return Some(Ok(inv.response_code.max(0))),
        // The script ran and exited non-zero: an ordinary outcome for the caller to judge.
        S::Failed if inv.response_code > 0 => return Some(Ok(inv.response_code)),
        S::TimedOut if inv.details == "DeliveryTimedOut" => format!(
            "SSM could not deliver the command to {instance_id} in time (is its agent online?)"
        ),
        S::TimedOut => "the script ran past its execution timeout and was stopped".into(),
        S::Cancelled => "the command was cancelled".into(),
        _ => format!(
            "the command ended as {} ({})",
            inv.status.as_str(),
            inv.details
        ),
    };
    Some(Err(Error::failed(format!("{why} on {instance_id}")).next(
        "see the command in the SSM console (Run Command history) and the agent log on the host",
    )))
}

impl SsmTarget<'_> {
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        if !self.check_online {
            tracing::info!("SSM online check skipped (--no-ssm-online-check)");
            return Ok(());
        }
        let start = Instant::now();
        (|| async {
            match self.aws.ssm_online(&self.instance_id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Poll::Pending),
                Err(e) => Err(Poll::Failed(e)),
            }
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(2))
                .with_max_delay(Duration::from_secs(15))
                .with_max_times(usize::MAX),
        )
        .when(|e| matches!(e, Poll::Pending) && start.elapsed() < within)
        .await
        .map_err(|e| match e {
            Poll::Failed(e) => e,
            Poll::Pending => Error::failed(format!(
                "the SSM agent of {} did not come online within {}s",
                self.instance_id,
                within.as_secs()
            ))
            .next("check the instance's user-data log (/var/log/poscloud-host-setup.log) through the console, and its instance profile"),
        })
    }

    pub async fn run(
        &self,
        script: &Program,
        inputs: &Inputs,
        timeout: Duration,
        sink: Sink,
    ) -> Result<Outcome> {
        let id = &self.instance_id;
        let command = command_text(script, inputs);
        if command.len() > COMMAND_LIMIT {
            return Err(Error::failed(format!(
                "the SSM command for {} would be {} bytes, over the {COMMAND_LIMIT} poscloud sends",
                script.name,
                command.len()
            ))
            .next("its inputs are too large; report this as a bug"));
        }
        let command_id = self
            .aws
            .send_shell(&SendShell {
                instance_id: id,
                command,
                execution_timeout_secs: timeout.as_secs().max(1),
                delivery_timeout_secs: 600,
                comment: format!("poscloud {}", script.name),
                output_bucket: self.output.as_ref().map(|(b, p)| (b.as_str(), p.as_str())),
            })
            .await?;
        let deadline = Instant::now() + timeout + Duration::from_secs(660);
        let inv = (|| async {
            match self.aws.command_invocation(&command_id, id).await {
                Ok(Some(inv)) if finished(&inv, id).is_some() => Ok(inv),
                Ok(_) => Err(Poll::Pending),
                Err(e) => Err(Poll::Failed(e)),
            }
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(usize::MAX),
        )
        .when(|e| matches!(e, Poll::Pending) && Instant::now() < deadline)
        .await
        .map_err(|e| match e {
            Poll::Failed(e) => e,
            Poll::Pending => Error::failed(format!(
                "command {command_id} on {id} did not finish in time"
            )),
        })?;
        let exit_code = finished(&inv, id).expect("finished")?;
        let mut stdout = inv.stdout;
        if stdout.chars().count() >= STDOUT_LIMIT {
            stdout = self.full_stdout(&command_id, stdout).await?;
        }
        sink(Stream::Stdout, stdout.as_bytes());
        sink(Stream::Stderr, inv.stderr.as_bytes());
        Ok(Outcome {
            exit_code,
            stdout: stdout.into_bytes(),
            stderr: inv.stderr.into_bytes(),
        })
    }
}

impl SsmTarget<'_> {
    /// The API cut stdout at 24 000 characters: read the whole of it from S3.
    pub async fn full_stdout(&self, command_id: &str, cut: String) -> Result<String> {
        let Some((bucket, prefix)) = &self.output else {
            tracing::warn!(
                "stdout of {command_id} was cut at {STDOUT_LIMIT} characters (no output bucket)"
            );
            return Ok(cut);
        };
        let key = stdout_key(prefix, command_id, &self.instance_id);
        match self.aws.get_object_text(bucket, &key).await? {
            Some(full) => Ok(full),
            None => {
                tracing::warn!("stdout of {command_id} was cut and s3://{bucket}/{key} is missing");
                Ok(cut)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(status: S, details: &str, rc: i32) -> Invocation {
        Invocation {
            status,
            details: details.into(),
            response_code: rc,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    #[test]
    fn statuses_map_to_exit_codes_or_clear_errors() {
        let f = |s, d, rc| finished(&inv(s, d, rc), "i-1");
        assert!(f(S::Pending, "Pending", -1).is_none());
        assert!(f(S::InProgress, "InProgress", -1).is_none());
        assert!(f(S::Delayed, "Delayed", -1).is_none());
        assert_eq!(f(S::Success, "Success", 0).unwrap().unwrap(), 0);
        assert_eq!(f(S::Failed, "Failed", 3).unwrap().unwrap(), 3);
        let err = |s, d, rc| f(s, d, rc).unwrap().unwrap_err().to_string();
        assert!(err(S::TimedOut, "DeliveryTimedOut", -1).contains("could not deliver"));
        assert!(err(S::TimedOut, "ExecutionTimedOut", -1).contains("execution timeout"));
        assert!(err(S::Cancelled, "Cancelled", -1).contains("cancelled"));
        assert!(err(S::Failed, "Undeliverable", -1).contains("Undeliverable"));
    }

    #[test]
    fn every_shipped_script_fits_in_a_command_with_room_to_spare() {
        let inputs = Inputs::new().set("X", "y".repeat(2000)).unwrap();
        for s in crate::remote::Script::ALL {
            let n = command_text(&s.into(), &inputs).len();
            assert!(
                n < COMMAND_LIMIT * 3 / 4,
                "{}: {n} bytes as an SSM command",
                s.name()
            );
        }
    }

    #[test]
    fn the_command_keeps_inputs_out_of_the_script_text() {
        let s = crate::remote::Program {
            name: "t.sh",
            body: "echo \"$X\"\n",
        };
        let i = Inputs::new()
            .set("X", "$(touch /tmp/pwned) 'quoted'")
            .unwrap();
        let c = command_text(&s, &i);
        assert!(!c.contains("pwned"), "inputs travel base64-encoded: {c}");
        assert!(c.starts_with("bash -c '"));
        assert!(c.ends_with("\nPOSCLOUD_PAYLOAD\n"));
    }
}
