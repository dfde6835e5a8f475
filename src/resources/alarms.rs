//! Recovery and alerts: the stack's SNS topic (the stack file's `alert_email` subscribed),
//! a CloudWatch alarm on `StatusCheckFailed_System` that recovers the instance (EC2's
//! `recover` action: the same instance, ids, addresses and volumes, on other hardware) and
//! tells the topic, and one on `StatusCheckFailed_Instance` that tells the topic. What is
//! found, planned, made and removed.
//!
//! Both services are found by name (`poscloud-<shop>-<env>-<role>`: the topic's ARN is
//! known from the account and region, the alarms are asked for by name), so no id record
//! is kept; their tags (the same four as every resource) are set at creation.

use super::change::{step, Change, Step};
use super::{need, touched, Apply, Made, Teardown};
use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::{Error, Kind, Result};
use crate::resources::discover::Discovered;
use crate::spec::{StackId, StackSpec};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
use serde::Serialize;

pub use crate::aws::metrics::NAMESPACE;
/// SNS lists a subscription that waits for its e-mail's link under this ARN.
const PENDING: &str = "PendingConfirmation";

/// The stack's alert topic and its subscriptions.
#[derive(Debug, Clone, Serialize)]
pub struct AlertTopic {
    pub arn: String,
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub protocol: String,
    pub endpoint: String,
    /// None while it waits for the recipient's confirmation (SNS gives no ARN then).
    pub arn: Option<String>,
}

impl Subscription {
    pub fn pending(&self) -> bool {
        self.arn.is_none()
    }
}

impl AlertTopic {
    /// The e-mail subscriptions (confirmed or pending).
    pub fn emails(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.iter().filter(|s| s.protocol == "email")
    }
}

/// One of the stack's two alarms, as CloudWatch describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Alarm {
    pub role: Role,
    pub name: String,
    pub namespace: String,
    pub metric: String,
    /// The `InstanceId` dimension: the instance it watches.
    pub instance: Option<String>,
    pub statistic: Option<String>,
    pub period: Option<i32>,
    pub evaluation_periods: Option<i32>,
    pub threshold: Option<f64>,
    pub comparison: Option<String>,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub actions_enabled: bool,
    /// OK, ALARM or INSUFFICIENT_DATA.
    pub state: String,
}

/// What an alarm of the stack is set to.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub metric: &'static str,
    pub statistic: &'static str,
    /// Seconds: status checks are one-minute metrics (free with basic monitoring).
    pub period: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison: &'static str,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
}

pub const ROLES: [Role; 2] = [Role::AlarmSystem, Role::AlarmInstance];

/// The topic's ARN (found and made by name; IAM's ARNs in this code name the `aws`
/// partition too).
pub fn topic_arn(id: &StackId, account: &str, region: &str) -> String {
    format!(
        "arn:aws:sns:{region}:{account}:{}",
        tags::name(id, Role::AlertTopic)
    )
}

/// EC2's recover action for alarms in `region`.
pub fn recover_arn(region: &str) -> String {
    format!("arn:aws:automate:{region}:ec2:recover")
}

/// The alarm of `role`: two failed one-minute checks in a row (AWS's own example for the
/// recover action), the topic told of the alarm and of the return to OK.
pub fn wanted(role: Role, topic: &str, region: &str) -> Wanted {
    let (metric, mut actions) = match role {
        Role::AlarmSystem => ("StatusCheckFailed_System", vec![recover_arn(region)]),
        _ => ("StatusCheckFailed_Instance", vec![]),
    };
    actions.push(topic.to_string());
    Wanted {
        metric,
        statistic: "Maximum",
        period: 60,
        evaluation_periods: 2,
        threshold: 1.0,
        comparison: "GreaterThanOrEqualToThreshold",
        alarm_actions: actions,
        ok_actions: vec![topic.to_string()],
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// How `a` differs from what it should be (watching `instance`): one phrase each.
pub fn differences(a: &Alarm, w: &Wanted, instance: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    match (a.instance.as_deref(), instance) {
        (Some(on), Some(i)) if on != i => out.push(format!("watches {on}, not the stack's {i}")),
        (None, Some(i)) => out.push(format!("watches no instance, not the stack's {i}")),
        _ => {}
    }
    if a.namespace != NAMESPACE || a.metric != w.metric {
        out.push(format!(
            "metric is {}/{}, not {NAMESPACE}/{}",
            a.namespace, a.metric, w.metric
        ));
    }
    let settings = a.statistic.as_deref() != Some(w.statistic)
        || a.period != Some(w.period)
        || a.evaluation_periods != Some(w.evaluation_periods)
        || a.threshold != Some(w.threshold)
        || a.comparison.as_deref() != Some(w.comparison);
    if settings {
        out.push(format!(
            "settings are {} {}s x{} {} {}, not {} {}s x{} {} {}",
            a.statistic.as_deref().unwrap_or("-"),
            a.period.unwrap_or_default(),
            a.evaluation_periods.unwrap_or_default(),
            a.comparison.as_deref().unwrap_or("-"),
            a.threshold.unwrap_or_default(),
            w.statistic,
            w.period,
            w.evaluation_periods,
            w.comparison,
            w.threshold
        ));
    }
    if sorted(&a.alarm_actions) != sorted(&w.alarm_actions) {
        out.push(format!(
            "alarm actions are [{}], not [{}]",
            a.alarm_actions.join(", "),
            w.alarm_actions.join(", ")
        ));
    }
    if sorted(&a.ok_actions) != sorted(&w.ok_actions) {
        out.push(format!("OK actions are [{}]", a.ok_actions.join(", ")));
    }
    if !a.actions_enabled {
        out.push("actions are disabled".into());
    }
    out
}

impl Aws {
    /// The stack's topic (with its subscriptions) and alarms, read at once.
    pub(crate) async fn find_alerts(
        &self,
        id: &StackId,
    ) -> Result<(Option<AlertTopic>, Vec<Alarm>)> {
        let topic = async {
            let account = self.account_id().await?;
            self.find_topic(&topic_arn(id, &account, &self.region))
                .await
        };
        tokio::try_join!(topic, self.find_alarms(id))
    }

    async fn find_topic(&self, arn: &str) -> Result<Option<AlertTopic>> {
        match self.sns.get_topic_attributes().topic_arn(arn).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(self.err("GetTopicAttributes", Some(arn), e)),
        }
        let pages = self
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(arn)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("ListSubscriptionsByTopic", Some(arn), e))?;
        let subscriptions = pages
            .iter()
            .flat_map(|p| p.subscriptions())
            .map(|s| Subscription {
                protocol: s.protocol().unwrap_or_default().to_string(),
                endpoint: s.endpoint().unwrap_or_default().to_string(),
                arn: s
                    .subscription_arn()
                    .filter(|a| *a != PENDING && a.starts_with("arn:"))
                    .map(str::to_string),
            })
            .collect();
        Ok(Some(AlertTopic {
            arn: arn.to_string(),
            subscriptions,
        }))
    }

    async fn find_alarms(&self, id: &StackId) -> Result<Vec<Alarm>> {
        let names: Vec<String> = ROLES.iter().map(|r| tags::name(id, *r)).collect();
        let pages = self
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(names.clone()))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeAlarms", None, e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.metric_alarms())
            .filter_map(|a| {
                let name = a.alarm_name()?.to_string();
                let role = ROLES[names.iter().position(|n| *n == name)?];
                Some(Alarm {
                    role,
                    name,
                    namespace: a.namespace().unwrap_or_default().to_string(),
                    metric: a.metric_name().unwrap_or_default().to_string(),
                    instance: a
                        .dimensions()
                        .iter()
                        .find(|d| d.name() == Some("InstanceId"))
                        .and_then(|d| d.value())
                        .map(str::to_string),
                    statistic: a.statistic().map(|s| s.as_str().to_string()),
                    period: a.period(),
                    evaluation_periods: a.evaluation_periods(),
                    threshold: a.threshold(),
                    comparison: a.comparison_operator().map(|c| c.as_str().to_string()),
                    alarm_actions: a.alarm_actions().to_vec(),
                    ok_actions: a.ok_actions().to_vec(),
                    actions_enabled: a.actions_enabled().unwrap_or(true),
                    state: a
                        .state_value()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    /// CreateTopic is idempotent by name (the same ARN again).
    pub async fn create_alert_topic(&self, id: &StackId) -> Result<String> {
        let mut req = self
            .sns
            .create_topic()
            .name(tags::name(id, Role::AlertTopic));
        for (k, v) in tags::pairs(id, Role::AlertTopic) {
            let tag = aws_sdk_sns::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::failed(format!("SNS tag: {e}")))?;
            req = req.tags(tag);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("CreateTopic", None, e))?;
        let arn = out.topic_arn().unwrap_or_default().to_string();
        self.wrote("CreateTopic", &arn);
        Ok(arn)
    }

    /// Subscribes an address (SNS mails it a link; an address subscribed already is
    /// answered with its subscription again). The ARN, or None while pending.
    pub async fn subscribe_email(&self, topic: &str, email: &str) -> Result<Option<String>> {
        let out = self
            .sns
            .subscribe()
            .topic_arn(topic)
            .protocol("email")
            .endpoint(email)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| self.err("Subscribe", Some(topic), e))?;
        self.wrote("Subscribe", topic);
        Ok(out
            .subscription_arn()
            .filter(|a| a.starts_with("arn:"))
            .map(str::to_string))
    }

    pub async fn unsubscribe(&self, arn: &str) -> Result<()> {
        self.sns
            .unsubscribe()
            .subscription_arn(arn)
            .send()
            .await
            .map_err(|e| self.err("Unsubscribe", Some(arn), e))?;
        self.wrote("Unsubscribe", arn);
        Ok(())
    }

    /// PutMetricAlarm: creates the alarm or replaces its settings (the tags count only at
    /// creation: CloudWatch ignores them on an update).
    pub async fn put_alarm(
        &self,
        id: &StackId,
        role: Role,
        instance: &str,
        w: &Wanted,
    ) -> Result<()> {
        let name = tags::name(id, role);
        let mut req = self
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&name)
            .alarm_description(format!(
                "poscloud {id}: {} of {instance} (docs/runbooks/alarms.md)",
                w.metric
            ))
            .namespace(NAMESPACE)
            .metric_name(w.metric)
            .dimensions(
                Dimension::builder()
                    .name("InstanceId")
                    .value(instance)
                    .build(),
            )
            .statistic(Statistic::from(w.statistic))
            .period(w.period)
            .evaluation_periods(w.evaluation_periods)
            .threshold(w.threshold)
            .comparison_operator(ComparisonOperator::from(w.comparison))
            .actions_enabled(true)
            .set_alarm_actions(Some(w.alarm_actions.clone()))
            .set_ok_actions(Some(w.ok_actions.clone()));
        for (k, v) in tags::pairs(id, role) {
            req = req.tags(
                aws_sdk_cloudwatch::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| self.err("PutMetricAlarm", Some(&name), e))?;
        self.wrote("PutMetricAlarm", &name);
        Ok(())
    }

    pub async fn delete_alarms(&self, names: &[String]) -> Result<()> {
        self.cloudwatch
            .delete_alarms()
            .set_alarm_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| self.err("DeleteAlarms", Some(&names.join(",")), e))?;
        self.wrote("DeleteAlarms", &names.join(","));
        Ok(())
    }

    /// Deletes the topic and, with it, every subscription (SNS does both in one call).
    pub async fn delete_topic(&self, arn: &str) -> Result<()> {
        self.sns
            .delete_topic()
            .topic_arn(arn)
            .send()
            .await
            .map_err(|e| self.err("DeleteTopic", Some(arn), e))?;
        self.wrote("DeleteTopic", arn);
        Ok(())
    }
}

/// The topic with exactly the stack file's address subscribed, then each alarm watching the
/// stack's instance with its actions.
pub fn plan(spec: &StackSpec, d: &Discovered, region: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let topic = d.alert_topic.as_ref();
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    if topic.is_none() {
        changes.push(Change::CreateAlertTopic);
    }
    let want = spec.alert_email.as_deref();
    let same = |s: &Subscription, e: &str| s.endpoint.eq_ignore_ascii_case(e);
    if let Some(e) = want {
        if !topic.is_some_and(|t| t.emails().any(|s| same(s, e))) {
            changes.push(Change::SubscribeAlerts {
                email: e.to_string(),
            });
        }
    }
    for s in topic.iter().flat_map(|t| t.emails()) {
        if want.is_some_and(|e| same(s, e)) {
            continue;
        }
        if s.pending() {
            // SNS gives an unconfirmed subscription no ARN to unsubscribe with; it lapses
            // when its confirmation link expires.
            drift.push(format!(
                "{} is subscribed (pending confirmation) but not the stack's alert_email",
                s.endpoint
            ));
        } else {
            changes.push(Change::UnsubscribeAlerts {
                email: s.endpoint.clone(),
            });
        }
    }
    steps.push(step(
        Role::AlertTopic,
        topic.map(|t| t.arn.as_str()),
        changes,
        drift,
    ));
    // The ARN the topic has or will have (the account is known once discovered).
    let arn = topic.map(|t| t.arn.clone()).unwrap_or_else(|| {
        d.id.as_ref()
            .map(|id| topic_arn(id, &d.account, region))
            .unwrap_or_default()
    });
    let instance = d.instance().map(|i| i.id.as_str());
    for role in ROLES {
        let w = wanted(role, &arn, region);
        let alarm = d.alarms.iter().find(|a| a.role == role);
        let changes = match alarm {
            None => vec![Change::PutAlarm {
                role,
                why: String::new(),
            }],
            Some(a) => {
                // No instance yet: the launch comes first, and the alarm is set again after it.
                let mut why = differences(a, &w, instance);
                if instance.is_none() {
                    why.push("the instance is to be launched".into());
                }
                if why.is_empty() {
                    vec![]
                } else {
                    vec![Change::PutAlarm {
                        role,
                        why: why.join("; "),
                    }]
                }
            }
        };
        steps.push(step(role, alarm.map(|a| a.name.as_str()), changes, vec![]));
    }
    steps
}

/// Whether `a` (one of this module's changes) waits for `b`: an alarm names the instance and
/// the topic, a subscription the topic.
pub fn needs(a: &Change, b: &Change) -> bool {
    match a {
        Change::SubscribeAlerts { .. } => matches!(b, Change::CreateAlertTopic),
        Change::PutAlarm { .. } => matches!(b, Change::CreateAlertTopic | Change::Launch { .. }),
        _ => false,
    }
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    match change {
        Change::CreateAlertTopic => {
            let arn = x.aws.create_alert_topic(x.id()).await?;
            x.write(|d| {
                d.alert_topic = Some(AlertTopic {
                    arn: arn.clone(),
                    subscriptions: Vec::new(),
                })
            });
            touched(arn)
        }
        Change::SubscribeAlerts { email } => {
            let topic = need(
                "the alert topic",
                x.read(|d| d.alert_topic.as_ref().map(|t| t.arn.clone())),
            )?;
            let arn = x.aws.subscribe_email(&topic, email).await?;
            x.write(|d| {
                if let Some(t) = d.alert_topic.as_mut() {
                    t.subscriptions.push(Subscription {
                        protocol: "email".into(),
                        endpoint: email.clone(),
                        arn,
                    });
                }
            });
            touched(email.clone())
        }
        Change::UnsubscribeAlerts { email } => {
            let arn = need(
                &format!("the subscription of {email}"),
                x.read(|d| {
                    d.alert_topic.as_ref().and_then(|t| {
                        t.emails()
                            .find(|s| s.endpoint == *email)
                            .and_then(|s| s.arn.clone())
                    })
                }),
            )?;
            match x.aws.unsubscribe(&arn).await {
                Err(e) if e.kind() != Kind::NotFound => return Err(e),
                _ => {}
            }
            x.write(|d| {
                if let Some(t) = d.alert_topic.as_mut() {
                    t.subscriptions
                        .retain(|s| s.arn.as_deref() != Some(arn.as_str()));
                }
            });
            touched(arn)
        }
        Change::PutAlarm { role, .. } => {
            let topic = need(
                "the alert topic",
                x.read(|d| d.alert_topic.as_ref().map(|t| t.arn.clone())),
            )?;
            let instance = need(
                "the instance",
                x.read(|d| d.instance().map(|i| i.id.clone())),
            )?;
            let w = wanted(*role, &topic, &x.aws.region);
            x.aws.put_alarm(x.id(), *role, &instance, &w).await?;
            touched(tags::name(x.id(), *role))
        }
        other => unreachable!("not an alert change: {other}"),
    }
}

/// Deletes the alarms (one call) and the topic with its subscriptions, at once: nothing else
/// depends on them.
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    let names: Vec<String> = d.alarms.iter().map(|a| a.name.clone()).collect();
    let alarms = async {
        if !names.is_empty() {
            t.one(
                format!("delete alarms {}", names.join(", ")),
                t.aws.delete_alarms(&names),
            )
            .await;
        }
    };
    let topic = async {
        if let Some(topic) = &d.alert_topic {
            t.one(
                format!("delete SNS topic {} and its subscriptions", topic.arn),
                t.aws.delete_topic(&topic.arn),
            )
            .await;
        }
    };
    tokio::join!(alarms, topic);
}
