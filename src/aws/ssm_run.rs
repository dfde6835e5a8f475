//! SSM Run Command calls: send a shell command, read its invocation.

use super::Aws;
use crate::error::Result;
use aws_sdk_ssm::types::CommandInvocationStatus;

/// What GetCommandInvocation told us, reduced to what the transport needs.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub status: CommandInvocationStatus,
    pub details: String,
    pub response_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One AWS-RunShellScript request.
pub struct SendShell<'a> {
    pub instance_id: &'a str,
    pub command: String,
    pub execution_timeout_secs: u64,
    /// Delivery timeout: a command not started by then never runs.
    pub delivery_timeout_secs: i32,
    pub comment: String,
    pub output_bucket: Option<(&'a str, &'a str)>,
}

impl Aws {
    pub async fn send_shell(&self, r: &SendShell<'_>) -> Result<String> {
        let mut req = self
            .ssm
            .send_command()
            .document_name("AWS-RunShellScript")
            .instance_ids(r.instance_id)
            .parameters("commands", vec![r.command.clone()])
            .parameters(
                "executionTimeout",
                vec![r.execution_timeout_secs.to_string()],
            )
            .timeout_seconds(r.delivery_timeout_secs)
            .comment(&r.comment);
        if let Some((bucket, prefix)) = r.output_bucket {
            req = req
                .output_s3_bucket_name(bucket)
                .output_s3_key_prefix(prefix);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("SendCommand", Some(r.instance_id), e))?;
        let id = out
            .command()
            .and_then(|c| c.command_id())
            .unwrap_or_default()
            .to_string();
        self.wrote("SendCommand", &id);
        Ok(id)
    }

    /// None while the invocation is not visible yet (right after SendCommand).
    pub async fn command_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<Invocation>> {
        match self
            .ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await
        {
            Ok(o) => Ok(Some(Invocation {
                status: o
                    .status()
                    .cloned()
                    .unwrap_or(CommandInvocationStatus::Pending),
                details: o.status_details().unwrap_or_default().to_string(),
                response_code: o.response_code(),
                stdout: o.standard_output_content().unwrap_or_default().to_string(),
                stderr: o.standard_error_content().unwrap_or_default().to_string(),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_invocation_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err("GetCommandInvocation", Some(command_id), e)),
        }
    }

    /// Is the instance's SSM agent registered and online? (DescribeInstanceInformation)
    pub async fn ssm_online(&self, instance_id: &str) -> Result<bool> {
        let out = self
            .ssm
            .describe_instance_information()
            .filters(
                aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .values(instance_id)
                    .build()
                    .map_err(|e| crate::error::Error::failed(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| self.err("DescribeInstanceInformation", Some(instance_id), e))?;
        Ok(out
            .instance_information_list()
            .iter()
            .any(|i| i.ping_status() == Some(&aws_sdk_ssm::types::PingStatus::Online)))
    }
}
