//! The only layer that calls the AWS SDK. Everything above it works with plain values.

pub mod discover;
pub mod ec2;
pub mod iam;
pub mod preflight;
pub mod s3;
pub mod ssm;
pub mod ssm_run;
pub mod tags;

use crate::error::{AwsFailure, Error, Resource, Result};
use crate::journal::Journal;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// How to reach AWS: from the global command-line options.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

/// SDK clients for one region, plus the journal every write is recorded in.
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    pub region: String,
    endpoint: String,
    journal: Journal,
}

impl Aws {
    /// Builds the clients and checks, without any AWS call, that a region and credentials exist.
    pub async fn connect(c: &Connect, journal: Journal) -> Result<Aws> {
        if let Some(r) = &c.region {
            crate::spec::validate_region(r)?;
        }
        if let Some(e) = &c.endpoint_url {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::usage(format!(
                    "--endpoint-url {e:?} must start with http:// or https://"
                )));
            }
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Standard mode: 3 attempts with jittered backoff for throttling and 5xx.
            .retry_config(RetryConfig::standard())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(r) = &c.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(p) = &c.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &c.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let conf = loader.load().await;
        let region = conf
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| Error::usage("no AWS region: pass --region or set AWS_REGION"))?;
        crate::spec::validate_region(&region)?;
        let creds = conf
            .credentials_provider()
            .ok_or_else(|| Error::usage("no AWS credential provider is configured"))?;
        if let Err(e) = creds.provide_credentials().await {
            return Err(Error::usage(format!(
                "no usable AWS credentials: {}\n  next: set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`",
                DisplayErrorContext(&e)
            )));
        }
        let endpoint = c
            .endpoint_url
            .clone()
            .unwrap_or_else(|| format!("the {region} AWS endpoints"));
        Ok(Aws {
            ec2: aws_sdk_ec2::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            ssm: aws_sdk_ssm::Client::new(&conf),
            // Path-style keeps bucket names out of host names (needed for custom endpoints).
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(c.endpoint_url.is_some())
                    // No default CRC32 headers: presigned PUT URLs must work with a plain
                    // `curl -T` on the host, which sends no checksum header.
                    .request_checksum_calculation(
                        aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                    )
                    .build(),
            ),
            sts: aws_sdk_sts::Client::new(&conf),
            region,
            endpoint,
            journal,
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Records a write that succeeded, for the audit trail.
    pub(crate) fn wrote(&self, op: &str, resource: &str) {
        tracing::debug!(op, resource, "write ok");
        self.journal.write(op, resource, "ok");
    }

    /// Turns an SDK error into ours, naming the operation, region and resource, and records
    /// it in the journal when the operation was a write.
    pub(crate) fn err<E, R>(
        &self,
        op: &'static str,
        resource: Option<&str>,
        e: SdkError<E, R>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let error = match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Error::Unreachable {
                op,
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
                detail: DisplayErrorContext(&e).to_string(),
            },
            _ => {
                let code = e.code().unwrap_or("Unknown").to_string();
                let hint = hint(&code);
                Error::Aws(Box::new(AwsFailure {
                    op,
                    region: self.region.clone(),
                    resource: Resource(resource.map(str::to_string)),
                    message: e
                        .message()
                        .map(str::to_string)
                        .unwrap_or_else(|| DisplayErrorContext(&e).to_string()),
                    code,
                    hint,
                }))
            }
        };
        if is_write(op) {
            self.journal
                .write(op, resource.unwrap_or("-"), &format!("error: {error}"));
        }
        error
    }
}

/// Reads are Describe*/Get*/List*/Head*; everything else changes something.
pub fn is_write(op: &str) -> bool {
    !["Describe", "Get", "List", "Head"]
        .iter()
        .any(|p| op.starts_with(p))
}

fn hint(code: &str) -> &'static str {
    match code {
        "AuthFailure" | "InvalidClientTokenId" | "UnrecognizedClientException"
        | "SignatureDoesNotMatch" | "ExpiredToken" | "ExpiredTokenException" => {
            "\n  next: the credentials were refused; check AWS_PROFILE or renew them (`aws sso login`)"
        }
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            "\n  next: these credentials lack a permission; see docs/security.md for the policy poscloud needs"
        }
        "AddressLimitExceeded" | "VpcLimitExceeded" => {
            "\n  next: release unused Elastic IPs/VPCs in this region or ask AWS for a higher quota"
        }
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => {
            "\n  next: AWS is throttling this account; the SDK already retried. Run the same command again in a minute"
        }
        _ => "",
    }
}
