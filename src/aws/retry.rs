//! Retries of AWS calls: the SDK's standard mode with more attempts, shown to the user; and
//! creates that AWS gives no idempotency token, made safe to retry.
//!
//! Why creates need care: the SDK retries any call whose answer was an error or never came
//! (throttling, 5xx, a reset connection). For CreateVpc, CreateSubnet, CreateSecurityGroup,
//! CreateNetworkInterface, AllocateAddress, ... the first attempt may have been carried out
//! with only its answer lost, so sending it again makes a second VPC, a second Elastic IP.
//! Those calls therefore go out with the SDK's retries off, and `create_once` retries them
//! itself: before each new attempt it looks for the resource by its tags (every create tags
//! atomically with TagSpecifications) and takes the one it finds instead of creating another.
//! RunInstances has a ClientToken as well (AWS then returns the same instance); IAM names are
//! unique, so a repeated CreateRole answers EntityAlreadyExists, which iam.rs accepts.

use super::Aws;
use crate::error::{Error, Kind, Result};
use aws_smithy_runtime::client::retries::classifiers::run_classifiers_on_ctx;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::{ErrorKind, RetryConfig};
use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Attempts per AWS call (the SDK's standard mode has 3).
///
/// With a share p of calls failing independently, a call fails for good with probability
/// p^attempts. A provision makes about 150 calls: at p = 20 % (an account throttled by other
/// tooling, a flaky network path) 3 attempts lose about one run in two (0.2^3 = 0.8 % per
/// call), 8 attempts about one in 3000 (0.2^8 = 2.6e-6 per call). The cost is time only when
/// things go wrong: the jittered backoff doubles from 1 s up to MAX_BACKOFF, at most about
/// 70 s for one call that needs all 8 attempts. Standard rather than adaptive mode: poscloud
/// makes few calls, one after the other, so there is no steady request rate for adaptive
/// mode's client-side rate limiter to tune, and it would also slow the calls after a
/// throttle that are not being throttled.
pub const MAX_ATTEMPTS: u32 = 8;

/// The longest wait between two attempts (the SDK's default).
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// The retry configuration of every client.
pub fn config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_max_backoff(MAX_BACKOFF)
}

/// Why the SDK would retry this attempt, in words, judged by the SDK's own retry
/// classifiers (the ones its retry strategy runs); None when it would not retry.
fn retry_reason(ctx: &InterceptorContext, rc: &RuntimeComponents) -> Option<String> {
    let RetryAction::RetryIndicated(RetryReason::RetryableError { kind, .. }) =
        run_classifiers_on_ctx(rc.retry_classifiers(), ctx)
    else {
        return None;
    };
    let status = ctx.response().map(|r| r.status().as_u16());
    let what = match (kind, status) {
        (ErrorKind::ThrottlingError, _) => "throttled",
        (_, None) => "no answer (connection lost or timed out)",
        (ErrorKind::ServerError, _) => "server error",
        _ => "transient error",
    };
    Some(match status {
        Some(s) => format!("{what} (HTTP {s})"),
        None => what.to_string(),
    })
}

/// Failures that another attempt cannot heal, which the SDK's transient-error classifier
/// would still retry 8 times over about a minute: a host name that does not resolve (an
/// unknown region, a mistyped --endpoint-url) and a refused connection (nothing listens
/// there). They fail at once; the error names the endpoint and what to check. Credentials
/// refused and access denied are not retried by the SDK in the first place.
#[derive(Debug)]
pub(crate) struct Unhealable;

/// What an unhealable connection failure says, in the causes of the connector's error.
pub(crate) const UNHEALABLE: &[&str] = &[
    "dns error",
    "failed to lookup address",
    "Name or service not known",
    "Connection refused",
];

impl ClassifyRetry for Unhealable {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(e)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let Some(c) = e.as_connector_error() else {
            return RetryAction::NoActionIndicated;
        };
        let text = super::causes(c);
        if UNHEALABLE.iter().any(|u| text.contains(u)) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "poscloud unhealable connection failures"
    }

    // After the SDK's transient-error classifier, whose "retry" this overrides.
    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The previous attempt's failure, kept between attempts of one operation.
#[derive(Debug, Clone)]
struct LastFailure(String);

impl Storable for LastFailure {
    type Storer = StoreReplace<Self>;
}

/// "EC2 DescribeVpcs": the service and operation of the call `cfg` belongs to.
fn operation(cfg: &ConfigBag) -> Option<String> {
    cfg.load::<Metadata>()
        .map(|m| format!("{} {}", m.service(), m.name()))
}

/// Shows each retry the SDK makes: "EC2 DescribeVpcs: throttled (HTTP 503), retrying
/// (attempt 2 of 8)", to the run's notes. Registered on every client.
#[derive(Debug)]
pub(crate) struct RetryNotes(pub(crate) crate::ui::Notify);

impl Intercept for RetryNotes {
    fn name(&self) -> &'static str {
        "poscloud retry notes"
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(why) = retry_reason(ctx.inner(), rc) {
            cfg.interceptor_state().store_put(LastFailure(why));
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            let op = operation(cfg).unwrap_or_else(|| "AWS call".into());
            let max = cfg
                .load::<RetryConfig>()
                .map_or(MAX_ATTEMPTS, |r| r.max_attempts());
            let why = cfg.load::<LastFailure>().map_or("failed", |f| f.0.as_str());
            self.0.note(format!(
                "{op}: {why}, retrying (attempt {attempt} of {max})"
            ));
        }
        Ok(())
    }
}

/// When the call began (its first attempt), and what it is about, kept for `CallLog`.
#[derive(Debug, Clone)]
struct CallStart(Instant);

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug, Clone)]
struct CallResource(String);

impl Storable for CallResource {
    type Storer = StoreReplace<Self>;
}

/// `-v`: one line per AWS call on stderr (the debug log, with its timestamp): service,
/// operation, the resource where the request names one, the answer's status, the time
/// taken and the attempts made, e.g. `AWS EC2 DeleteVpc vpc-0f3c: HTTP 200 in 87ms, 1 attempt`.
/// Registered on every client.
#[derive(Debug)]
pub(crate) struct CallLog;

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "poscloud call log"
    }

    fn read_before_execution(
        &self,
        _ctx: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(CallStart(Instant::now()));
        Ok(())
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(r) = resource_of(ctx.request()) {
            cfg.interceptor_state().store_put(CallResource(r));
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return Ok(());
        }
        let op = operation(cfg).unwrap_or_else(|| "call".into());
        let resource = cfg
            .load::<CallResource>()
            .map(|r| format!(" {}", r.0))
            .unwrap_or_default();
        let status = match (ctx.response(), ctx.output_or_error()) {
            (Some(r), _) => format!("HTTP {}", r.status().as_u16()),
            (None, Some(Err(e))) => {
                let why = match e.as_connector_error() {
                    Some(c) => super::causes(c),
                    None => e.to_string(),
                };
                format!("no answer ({why})")
            }
            (None, _) => "no answer".into(),
        };
        let took = cfg
            .load::<CallStart>()
            .map(|s| crate::ui::duration(s.0.elapsed()))
            .unwrap_or_else(|| "?".into());
        let attempts = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let plural = if attempts == 1 { "" } else { "s" };
        tracing::debug!("AWS {op}{resource}: {status} in {took}, {attempts} attempt{plural}");
        Ok(())
    }
}

/// The resource a request names, read off the wire: the first `...Id` or `...Name`
/// parameter of a query-protocol form (EC2, IAM, STS), `Name`/`Path`/`InstanceIds` of a JSON
/// body (SSM), the bucket and key of an S3 path. Never a value of another parameter (user
/// data, a parameter's value), so no secret reaches the log.
fn resource_of(req: &aws_smithy_runtime_api::http::Request) -> Option<String> {
    let body = req.body().bytes().unwrap_or_default();
    let found = if body.starts_with(b"{") {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        ["Name", "Path", "InstanceId", "CommandId"]
            .iter()
            .find_map(|k| v[k].as_str().map(str::to_string))
            .or_else(|| v["InstanceIds"][0].as_str().map(str::to_string))
    } else if body.starts_with(b"Action=") {
        std::str::from_utf8(body).ok()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            // `InstanceId.1` → `InstanceId`; filters and tags are not what a call is about.
            let base = k.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
            let named = (base.ends_with("Id") || base.ends_with("Name"))
                && !k.starts_with("Filter")
                && !k.contains("Tag");
            named.then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    } else {
        // S3: path style (/bucket/key) or virtual-hosted (bucket.s3.region.amazonaws.com).
        let uri = req.uri();
        let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.split('?').next().unwrap_or("");
        match host.split_once(".s3.") {
            Some((bucket, _)) => Some(format!("{bucket}/{path}")),
            None => Some(path.to_string()),
        }
    };
    found.filter(|r| !r.is_empty()).map(|mut r| {
        if r.len() > 80 {
            let cut = (0..=80).rev().find(|&i| r.is_char_boundary(i)).unwrap_or(0);
            r.truncate(cut);
            r.push('…');
        }
        r
    })
}

/// For one call sent with the SDK's retries off: the SDK's verdict on its failure (would it
/// have retried, and why), so that `create_once` retries exactly what the SDK would.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict(Arc<Mutex<Option<String>>>);

impl Verdict {
    fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// EC2 configuration for the one call: no SDK retries, this verdict recorded.
    pub(crate) fn ec2(&self) -> aws_sdk_ec2::config::Builder {
        aws_sdk_ec2::config::Builder::default()
            .retry_config(RetryConfig::disabled())
            .interceptor(self.clone())
    }

    /// The same for an IAM call.
    pub(crate) fn iam(&self) -> aws_sdk_iam::config::Builder {
        aws_sdk_iam::config::Builder::default()
            .retry_config(RetryConfig::disabled())
            .interceptor(self.clone())
    }
}

impl Intercept for Verdict {
    fn name(&self) -> &'static str {
        "poscloud create verdict"
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = retry_reason(ctx.inner(), rc);
        Ok(())
    }
}

/// How long after a create AWS's tag-filtered lists may still leave the new resource out.
/// AWS documents that EC2 is eventually consistent without a bound; seconds are usual. A
/// create whose answer was lost is sent again only when its resource is not listed this long
/// after the lost attempt.
pub const LIST_LAG: Duration = Duration::from_secs(5);

/// Errors of a create that, on a repeated attempt, mean "the earlier attempt did it" (a
/// duplicate group, an address or interface in use): look again (AWS's describe calls may
/// lag a create by a moment).
fn done_before(e: &Error) -> bool {
    matches!(e.kind(), Kind::Conflict | Kind::InUse)
}

struct Failed {
    error: Error,
    retry: Option<String>,
    attempt: u32,
}

impl Aws {
    /// Does a change exactly once under retries (mostly: creates something). `create` sends the call configured with
    /// `Verdict::ec2` (no SDK retries); when the SDK would have retried its failure, this
    /// waits (jittered exponential backoff, like the SDK's), then asks `find` for the
    /// resource by its tags: found, it is the one the failed attempt made, and it is
    /// returned; not found, the create is sent again. At most MAX_ATTEMPTS creates.
    /// `effect` names what `find` finds, for the notes ("the stack's VPC exists").
    ///
    /// AWS lists a new resource a moment after its create: the look that decides to send
    /// the create again is made LIST_LAG after the lost attempt at the earliest.
    pub(crate) async fn create_once<T, F, FF, C, CF>(
        &self,
        op: &str,
        effect: &str,
        find: F,
        create: C,
    ) -> Result<T>
    where
        F: Fn() -> FF,
        FF: Future<Output = Result<Option<T>>>,
        C: Fn(Verdict) -> CF,
        CF: Future<Output = Result<T>>,
    {
        let attempts = AtomicU32::new(0);
        let sent = Mutex::new(Instant::now());
        let (attempts, sent, find, create) = (&attempts, &sent, &find, &create);
        let once = move || async move {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if attempt > 1 {
                let failed = |error| Failed {
                    error,
                    retry: None,
                    attempt,
                };
                let mut found = find().await.map_err(failed)?;
                // Not listed may only mean not listed yet: look again once LIST_LAG has
                // passed since the lost attempt, before sending a second create.
                let since = sent.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                if found.is_none() && since < LIST_LAG {
                    tokio::time::sleep(LIST_LAG - since).await;
                    found = find().await.map_err(failed)?;
                }
                if let Some(found) = found {
                    self.note(format!(
                        "{op}: the failed attempt had taken effect ({effect}); not sending it again"
                    ));
                    return Ok(found);
                }
            }
            *sent.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            let verdict = Verdict::default();
            create(verdict.clone()).await.map_err(|error| {
                let mut retry = verdict.reason();
                if let Error::Aws(f) = &error {
                    if attempt > 1 && done_before(&error) {
                        retry = Some(format!("{} (made by the earlier attempt?)", f.code));
                    }
                }
                Failed {
                    error,
                    retry,
                    attempt,
                }
            })
        };
        once.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(MAX_BACKOFF)
                .with_jitter()
                .with_max_times(MAX_ATTEMPTS as usize - 1),
        )
        .when(|f: &Failed| f.retry.is_some())
        .notify(|f: &Failed, wait: Duration| {
            self.note(format!(
                "{op}: {}; checking whether it took effect, then retrying in {:.1}s (attempt {} of {MAX_ATTEMPTS})",
                f.retry.as_deref().unwrap_or("failed"),
                wait.as_secs_f64(),
                f.attempt + 1
            ))
        })
        .await
        .map_err(|f| f.error)
    }
}
