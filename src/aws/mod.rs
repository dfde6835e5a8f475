//! The only layer that calls the AWS SDK. Everything above it works with plain values.

pub mod ec2;
pub mod metrics;
pub mod preflight;
pub mod quotas;
pub mod retry;
pub mod s3;
pub mod ssm;
pub mod ssm_run;
pub mod tags;

use crate::error::{AwsFailure, Error, Kind, Resource, Result};
use crate::journal::Journal;
use crate::ui::Notify;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
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
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sns: aws_sdk_sns::Client,
    pub quotas: aws_sdk_servicequotas::Client,
    pub region: String,
    endpoint: String,
    journal: Journal,
    /// Region, credentials and (once asked) account: shared with the journal.
    pub at: crate::journal::Whereabouts,
    /// Where this run's notes go (set by whoever connects: the UI's).
    notes: Notify,
    /// What the clients of another run are made from (`for_run`).
    shared: Shared,
}

/// The configuration every run's clients are made from: region, credentials (and their
/// cache), timeouts, retries.
#[derive(Clone)]
struct Shared {
    conf: aws_config::SdkConfig,
    path_style: bool,
    region: String,
    endpoint: String,
    at: crate::journal::Whereabouts,
}

impl Aws {
    /// Builds the clients and checks, without any AWS call, that a region and credentials exist.
    /// Its notes (retries, waits) go to `notes`.
    pub async fn connect(c: &Connect, journal: Journal, notes: Notify) -> Result<Aws> {
        // Any region of the right form may stand behind a custom endpoint; AWS's own
        // endpoints only have AWS's regions (a typo would only fail at the DNS lookup).
        let check_region = |r: &str| match &c.endpoint_url {
            Some(_) => crate::spec::region_name(r),
            None => crate::spec::validate_region(r),
        };
        if let Some(r) = &c.region {
            check_region(r)?;
        }
        if let Some(p) = &c.profile {
            check_profile(p).await?;
        }
        if let Some(e) = &c.endpoint_url {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::usage(format!(
                    "--endpoint-url {e:?} must start with http:// or https://"
                )));
            }
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Standard mode with more attempts (see retry::MAX_ATTEMPTS for why), jittered
            // backoff for throttling, 5xx and lost connections; each retry is shown.
            .retry_config(retry::config())
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
        let region = conf.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::usage(format!(
                "no AWS region: profile `{}` in {} sets none",
                c.profile.as_deref().unwrap_or("default"),
                config_files().0
            ))
            .next("pass --region, set AWS_REGION, or add `region = ...` to that profile")
        })?;
        check_region(&region)?;
        let creds = conf
            .credentials_provider()
            .ok_or_else(|| Error::usage("no AWS credential provider is configured"))?;
        let credentials = match creds.provide_credentials().await {
            // The chain's order: a named profile, else the environment's keys, else the
            // default profile (or the instance's role).
            Ok(_) => match &c.profile {
                Some(p) => format!("profile {p}"),
                None if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() => {
                    "environment credentials".into()
                }
                None => "profile default".into(),
            },
            Err(e) => {
                return Err(Error::usage(format!(
                    "no usable AWS credentials: {}",
                    causes(&e)
                ))
                .next("set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`"))
            }
        };
        let at = crate::journal::Whereabouts {
            region: region.clone(),
            credentials,
            account: Default::default(),
        };
        journal.set_whereabouts(at.clone());
        let endpoint = c
            .endpoint_url
            .clone()
            .unwrap_or_else(|| format!("the {region} AWS endpoints"));
        Ok(Aws::with_clients(
            Shared {
                conf,
                path_style: c.endpoint_url.is_some(),
                region,
                endpoint,
                at,
            },
            journal,
            notes,
        ))
    }

    /// The clients of one run, each with the interceptors that show its retries to `notes`
    /// and log its calls.
    fn with_clients(shared: Shared, journal: Journal, notes: Notify) -> Aws {
        let conf = &shared.conf;
        // The same for every service's client: retries shown, calls logged, failures no
        // retry can heal failed at once.
        macro_rules! client {
            ($sdk:ident $(, $extra:ident($($arg:expr),*))*) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(conf)
                        .interceptor(retry::RetryNotes(notes.clone()))
                        .interceptor(retry::CallLog)
                        .retry_classifier(retry::Unhealable)
                        $(.$extra($($arg),*))*
                        .build(),
                )
            };
        }
        Aws {
            ec2: client!(aws_sdk_ec2),
            iam: client!(aws_sdk_iam),
            ssm: client!(aws_sdk_ssm),
            // Path-style keeps bucket names out of host names (needed for custom endpoints).
            // No default CRC32 headers: presigned PUT URLs must work with a plain `curl -T`
            // on the host, which sends no checksum header.
            s3: client!(
                aws_sdk_s3,
                force_path_style(shared.path_style),
                request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired
                )
            ),
            sts: client!(aws_sdk_sts),
            cloudwatch: client!(aws_sdk_cloudwatch),
            sns: client!(aws_sdk_sns),
            quotas: client!(aws_sdk_servicequotas),
            region: shared.region.clone(),
            endpoint: shared.endpoint.clone(),
            journal,
            at: shared.at.clone(),
            notes,
            shared,
        }
    }

    /// Clients for another run on the same configuration and credentials (one lookup for
    /// all): the shops of a batch, each recording its own writes in `journal` and showing
    /// its notes (retries, waits) to `notes`.
    pub fn for_run(&self, journal: Journal, notes: Notify) -> Aws {
        journal.set_whereabouts(self.at.clone());
        let shared = Shared {
            at: self.at.clone(),
            ..self.shared.clone()
        };
        Aws::with_clients(shared, journal, notes)
    }

    /// The same account and credentials in another region (a fleet read region by region):
    /// its clients share this run's journal file and notes.
    pub fn in_region(&self, region: &str, journal: Journal) -> Aws {
        let conf = self
            .shared
            .conf
            .to_builder()
            .region(Region::new(region.to_string()))
            .build();
        let at = crate::journal::Whereabouts {
            region: region.to_string(),
            credentials: self.at.credentials.clone(),
            account: self.at.account.clone(),
        };
        journal.set_whereabouts(at.clone());
        let endpoint = match self.shared.path_style {
            // A custom endpoint answers for every region.
            true => self.shared.endpoint.clone(),
            false => format!("the {region} AWS endpoints"),
        };
        let shared = Shared {
            conf,
            path_style: self.shared.path_style,
            region: region.to_string(),
            endpoint,
            at,
        };
        Aws::with_clients(shared, journal, self.notes.clone())
    }

    /// A line about the calls of this run (a retry, a wait), for the user.
    pub(crate) fn note(&self, msg: impl AsRef<str>) {
        self.notes.note(msg)
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
    pub(crate) fn err<E>(
        &self,
        op: &'static str,
        resource: Option<&str>,
        e: SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let error = match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                let detail = causes(&e);
                Error::Unreachable {
                    op,
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    hint: unreachable_hint(&detail),
                    detail,
                }
            }
            _ => {
                // An answer that is no AWS error (a proxy's or a broken server's page) has
                // no code: name its HTTP status instead.
                let code = match (e.code(), e.raw_response()) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(r)) => format!("HTTP {}", r.status().as_u16()),
                    (None, None) => "Unknown".to_string(),
                };
                let message = e
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| causes(&e));
                Error::Aws(Box::new(AwsFailure {
                    op,
                    region: self.region.clone(),
                    resource: Resource(resource.map(str::to_string)),
                    kind: classify(&code, &message),
                    message,
                    code,
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

/// The AWS config and credentials files, as the SDK finds them (for messages).
fn config_files() -> (String, String) {
    let file = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    (
        file("AWS_CONFIG_FILE", "~/.aws/config"),
        file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
    )
}

/// Each profile must exist (as `check_profile`): a fleet's accounts checked before any call.
pub async fn check_profiles(names: &[String]) -> Result<()> {
    for n in names {
        check_profile(n).await?;
    }
    Ok(())
}

/// A profile named with --profile or AWS_PROFILE must exist: otherwise the SDK quietly falls
/// back to other credentials, or fails much later with no word of the profile. (`default`
/// may be absent: then the SDK's other sources apply, as for every AWS tool.)
async fn check_profile(name: &str) -> Result<()> {
    use aws_runtime::env_config::file::EnvConfigFiles;
    use aws_types::os_shim_internal::{Env, Fs};
    let (config, credentials) = config_files();
    let set =
        aws_config::profile::load(&Fs::real(), &Env::real(), &EnvConfigFiles::default(), None)
            .await
            .map_err(|e| {
                Error::usage(format!(
                    "cannot read {config} or {credentials}: {}",
                    causes(&e)
                ))
            })?;
    if name == "default" || set.get_profile(name).is_some() {
        return Ok(());
    }
    let mut known: Vec<&str> = set.profiles().collect();
    known.sort_unstable();
    let guess = crate::spec::closest(name, known.iter().copied())
        .map(|g| format!(" (did you mean {g}?)"))
        .unwrap_or_default();
    let known = if known.is_empty() {
        "there are no profiles there".to_string()
    } else {
        format!("known profiles: {}", known.join(", "))
    };
    Err(Error::usage(format!(
        "AWS profile `{name}` is not in {config} or {credentials}{guess}; {known}"
    ))
    .next(format!(
        "pass --profile (or set AWS_PROFILE) with one of them, or add it with `aws configure --profile {name}`"
    )))
}

/// An error and its causes, each by its Display, joined with ": ". (The SDK's
/// DisplayErrorContext ends with a Debug dump of the whole error, request and response
/// included: not for users' eyes.)
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The operations poscloud calls that change something: the journal records their failures
/// as well as their successes (`wrote`). Every other operation it calls only reads. A unit
/// test checks that each operation a call site records with `wrote` is here.
const WRITES: &[&str] = &[
    "AddRoleToInstanceProfile",
    "AllocateAddress",
    "AssociateAddress",
    "AssociateRouteTable",
    "AttachInternetGateway",
    "AttachRolePolicy",
    "AuthorizeSecurityGroupEgress",
    "AuthorizeSecurityGroupIngress",
    "CreateBucket",
    "CreateInstanceProfile",
    "CreateInternetGateway",
    "CreateNetworkInterface",
    "CreateRole",
    "CreateRoute",
    "CreateRouteTable",
    "CreateSecurityGroup",
    "CreateSnapshot",
    "CreateSubnet",
    "CreateVpc",
    "CreateTopic",
    "DeleteInstanceProfile",
    "DeleteInternetGateway",
    "DeleteNetworkInterface",
    "DeleteObject",
    "DeleteParameter",
    "DeleteRole",
    "DeleteRolePolicy",
    "DeleteRouteTable",
    "DeleteSecurityGroup",
    "DeleteSnapshot",
    "DeleteSubnet",
    "DeleteVpc",
    "DetachInternetGateway",
    "DetachRolePolicy",
    "DisassociateAddress",
    "DisassociateRouteTable",
    "ModifyInstanceAttribute",
    "ModifyInstanceMetadataOptions",
    "PutBucketEncryption",
    "PutBucketLifecycleConfiguration",
    "PutObject",
    "PutParameter",
    "PutPublicAccessBlock",
    "PutRolePolicy",
    "ReleaseAddress",
    "RemoveRoleFromInstanceProfile",
    "RequestServiceQuotaIncrease",
    "RevokeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RunInstances",
    "SendCommand",
    "TerminateInstances",
    // Alerts (resources/alarms.rs).
    "DeleteAlarms",
    "DeleteTopic",
    "PutMetricAlarm",
    "Subscribe",
    "Unsubscribe",
];

fn is_write(op: &str) -> bool {
    WRITES.contains(&op)
}

/// What to check when AWS could not be reached; refused and unresolved fail at once (see
/// retry::Unhealable), the rest after the retries.
fn unreachable_hint(detail: &str) -> &'static str {
    if detail.contains("Connection refused") {
        "nothing accepts connections there (not retried): is the endpoint right (--endpoint-url, AWS_ENDPOINT_URL) and its server up? is the region right?"
    } else if retry::UNHEALABLE.iter().any(|u| detail.contains(u)) {
        "the endpoint's host name does not resolve (not retried): is the region right (--region, AWS_REGION, the profile's region)? is --endpoint-url right? is DNS working?"
    } else {
        "check the network (a proxy, a firewall), --region and --endpoint-url; the call was already retried"
    }
}

/// What an SDK error is, by its code, before it becomes ours (a resource's call that
/// expects one kind of failure: a retried attach meeting its own `Conflict`).
pub(crate) fn kind_of<E>(e: &SdkError<E, HttpResponse>) -> Kind
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Kind::Unreachable,
        _ => match (e.code(), e.raw_response()) {
            (Some(c), _) => classify(c, e.message().unwrap_or_default()),
            (None, Some(r)) => classify(&format!("HTTP {}", r.status().as_u16()), ""),
            (None, None) => Kind::Failed,
        },
    }
}

/// AWS's error codes (and, where one code means two things, its message) as kinds: the one
/// place that reads them.
pub(crate) fn classify(code: &str, message: &str) -> Kind {
    match code {
        "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException" => Kind::CredentialsRefused,
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => Kind::Denied,
        "AddressLimitExceeded" | "VpcLimitExceeded" => Kind::QuotaExceeded,
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "SlowDown" => {
            Kind::Throttled
        }
        "InternalError" | "InternalFailure" | "ServiceFailure" | "ServiceUnavailable"
        | "Unavailable" => Kind::Unavailable,
        c if c.starts_with("HTTP 5") => Kind::Unavailable,
        // "Network interface 'eni-…' is currently in use".
        "InvalidParameterValue" if message.contains("in use") => Kind::InUse,
        "DependencyViolation" => Kind::InUse,
        c if c.ends_with(".InUse") => Kind::InUse,
        // A detach of a gateway that is detached already: what it would remove is gone.
        "NoSuchEntity" | "ParameterNotFound" | "Gateway.NotAttached" => Kind::NotFound,
        // Service Quotas: no applied value (the default applies), or no such quota.
        "NoSuchResourceException" => Kind::NotFound,
        "TooManyRequestsException" => Kind::Throttled,
        "DependencyAccessDeniedException" => Kind::Denied,
        // Service Quotas: a request of this quota is open already.
        "ResourceAlreadyExistsException" => Kind::Conflict,
        "IllegalArgumentException" => Kind::Rejected,
        // SNS's NotFoundException, CloudWatch's DeleteAlarms of a name it does not know.
        "NotFound" | "ResourceNotFound" => Kind::NotFound,
        c if c.ends_with(".NotFound") => Kind::NotFound,
        "EntityAlreadyExists"
        | "RouteAlreadyExists"
        | "Resource.AlreadyAssociated"
        | "ParameterAlreadyExists" => Kind::Conflict,
        c if c.ends_with(".Duplicate") => Kind::Conflict,
        "IncorrectInstanceState" | "IncorrectState" => Kind::InvalidState,
        c if c.starts_with("Invalid") || c.starts_with("Validation") => Kind::Rejected,
        _ => Kind::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("dispatch failure")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_displayed_never_debug_dumped() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ));
        assert_eq!(causes(&e), "dispatch failure: connection reset by peer");
    }

    #[test]
    fn durations_are_read_at_a_glance() {
        // Steps and the -v call log.
        for (ms, want) in [
            (0, "0ms"),
            (12, "12ms"),
            (1234, "1.234s"),
            (59_999, "59.999s"),
            (123_456, "2m03s"),
        ] {
            assert_eq!(crate::ui::duration(Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn unreachable_endpoints_say_what_to_check() {
        // The connector's words for each (hyper-util's, as causes() joins them).
        let refused = "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)";
        let dns = "dispatch failure: io error: client error (Connect): dns error: failed to lookup address information: Name or service not known";
        assert!(unreachable_hint(refused).contains("is the endpoint right"));
        assert!(unreachable_hint(dns).contains("is the region right"));
        assert!(unreachable_hint(dns).contains("does not resolve"));
        assert!(unreachable_hint("timeout").contains("already retried"));
    }

    fn next_of(code: &str) -> Option<&'static str> {
        AwsFailure {
            op: "DescribeVpcs",
            region: "eu-west-1".into(),
            resource: Resource(None),
            code: code.into(),
            message: String::new(),
            kind: classify(code, ""),
        }
        .next()
    }

    #[test]
    fn the_throttling_hint_names_the_real_attempt_count() {
        for code in [
            "RequestLimitExceeded",
            "Throttling",
            "ThrottlingException",
            "SlowDown",
        ] {
            assert!(
                next_of(code)
                    .unwrap()
                    .contains(&format!("tried {} times", retry::MAX_ATTEMPTS)),
                "{code}"
            );
        }
        assert!(next_of("HTTP 502")
            .unwrap()
            .contains("run the same command again"));
        assert_eq!(next_of("InvalidVpcID.NotFound"), None);
    }

    #[test]
    fn aws_codes_are_classified_once() {
        for (code, message, kind) in [
            ("DependencyViolation", "", Kind::InUse),
            ("InvalidIPAddress.InUse", "", Kind::InUse),
            (
                "InvalidParameterValue",
                "Network interface 'eni-1' is currently in use",
                Kind::InUse,
            ),
            ("InvalidParameterValue", "bad cidr", Kind::Rejected),
            ("InvalidVpcID.NotFound", "", Kind::NotFound),
            ("NoSuchEntity", "", Kind::NotFound),
            ("ParameterNotFound", "", Kind::NotFound),
            ("InvalidPermission.Duplicate", "", Kind::Conflict),
            ("Resource.AlreadyAssociated", "", Kind::Conflict),
            ("IncorrectInstanceState", "", Kind::InvalidState),
            ("RequestLimitExceeded", "", Kind::Throttled),
            ("UnauthorizedOperation", "", Kind::Denied),
            ("AuthFailure", "", Kind::CredentialsRefused),
            ("VpcLimitExceeded", "", Kind::QuotaExceeded),
            ("HTTP 503", "", Kind::Unavailable),
            ("SomethingNew", "", Kind::Failed),
        ] {
            assert_eq!(classify(code, message), kind, "{code}: {message}");
        }
    }

    #[test]
    fn every_recorded_write_is_in_the_write_table() {
        // The call sites that record a success (`wrote("Op", …)`, or `wrote(op, …)` with the
        // op named a line above): a failure of the same op must be journaled too.
        let sources = [
            include_str!("../resources/alarms.rs"),
            include_str!("../resources/bucket.rs"),
            include_str!("../resources/eips.rs"),
            include_str!("../resources/eni.rs"),
            include_str!("../resources/iam.rs"),
            include_str!("../resources/instance.rs"),
            include_str!("../resources/network.rs"),
            include_str!("../resources/records.rs"),
            include_str!("../resources/security_groups.rs"),
            include_str!("../resources/subnet.rs"),
            include_str!("s3.rs"),
            include_str!("ssm.rs"),
            include_str!("ssm_run.rs"),
            include_str!("ec2.rs"),
            include_str!("quotas.rs"),
        ];
        let mut seen = 0;
        for src in sources {
            for piece in src.split("wrote(").skip(1) {
                let Some(name) = piece.trim_start().strip_prefix('"') else {
                    continue;
                };
                let op = &name[..name.find('"').unwrap()];
                assert!(
                    is_write(op),
                    "{op} is recorded as a write but not in WRITES"
                );
                seen += 1;
            }
            for piece in src.split("let op = \"").skip(1) {
                let op = &piece[..piece.find('"').unwrap()];
                assert!(
                    is_write(op),
                    "{op} is recorded as a write but not in WRITES"
                );
            }
        }
        assert!(seen > 30, "{seen}");
        assert!(!is_write("DescribeVpcs"));
    }
}
