//! Recovery and alerts, and `report performance`, against the emulator: the topic with the
//! stack file's address, the two status-check alarms (metric, dimension, actions, tags) read
//! back with the test's own SDK clients; a converged re-run writes nothing; an alarm set by
//! hand to another instance is shown by status and set back by provision; a new address
//! replaces the old; teardown leaves no topic or alarm; compliance's "alarms" rule; the
//! performance report against figures computed by hand from datapoints the test put.
//!
//! moto is looser than AWS here: it confirms e-mail subscriptions at once (AWS lists them
//! as PendingConfirmation until the recipient follows SNS's link, so `pending` is never
//! seen in this rig), never evaluates alarms (their state stays INSUFFICIENT_DATA, no
//! recovery ever runs) and accepts datapoints of any age (AWS takes them up to two weeks
//! old: on AWS this report reads what EC2 itself published).

mod common;
use common::{Rig, REGION};
use std::time::{Duration, SystemTime};

const SHOP: &str = "12345678";

fn topic_name() -> String {
    format!("poscloud-{SHOP}-qa-alerts")
}

fn alarm_names() -> [String; 2] {
    [
        format!("poscloud-{SHOP}-qa-alarm-system"),
        format!("poscloud-{SHOP}-qa-alarm-instance"),
    ]
}

/// The topic's ARN and its (protocol, endpoint) subscriptions, as moto holds them.
fn topic(rig: &Rig) -> Option<(String, Vec<(String, String)>)> {
    rig.block(async {
        let topics = rig.sns.list_topics().send().await.unwrap();
        let arn = topics
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.ends_with(&format!(":{}", topic_name())))?
            .to_string();
        let subs = rig
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&arn)
            .send()
            .await
            .unwrap();
        let subs = subs
            .subscriptions()
            .iter()
            .map(|s| {
                (
                    s.protocol().unwrap().to_string(),
                    s.endpoint().unwrap().to_string(),
                )
            })
            .collect();
        Some((arn, subs))
    })
}

fn alarms(rig: &Rig) -> Vec<aws_sdk_cloudwatch::types::MetricAlarm> {
    rig.block(async {
        rig.cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(alarm_names().to_vec()))
            .send()
            .await
            .unwrap()
            .metric_alarms()
            .to_vec()
    })
}

fn tags_of_alarm(rig: &Rig, arn: &str) -> Vec<(String, String)> {
    rig.block(async {
        let mut t: Vec<(String, String)> = rig
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect();
        t.sort();
        t
    })
}

fn provision(rig: &Rig, stack: &str) -> common::Run {
    let mut args = common::infra_args(SHOP, "qa");
    args.extend(["--stack", stack]);
    rig.run(&args)
}

#[test]
fn alarms_and_topic_lifecycle() {
    let rig = Rig::new();
    let stack = rig.stack_with_alerts("qa", "ops@example.com");
    provision(&rig, &stack).ok();
    let instance = rig.instance_id(SHOP, "qa");

    // The topic, tagged, with the address subscribed by e-mail.
    let (arn, subs) = topic(&rig).expect("the alert topic exists");
    assert_eq!(subs, [("email".to_string(), "ops@example.com".to_string())]);
    let mut topic_tags: Vec<(String, String)> = rig.block(async {
        rig.sns
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    });
    topic_tags.sort();
    let tags = |role: &str| {
        let mut t = vec![
            ("Name".to_string(), format!("poscloud-{SHOP}-qa-{role}")),
            ("poscloud:env".to_string(), "qa".to_string()),
            ("poscloud:role".to_string(), role.to_string()),
            ("poscloud:shop".to_string(), SHOP.to_string()),
        ];
        t.sort();
        t
    };
    assert_eq!(topic_tags, tags("alerts"));

    // Two alarms on the instance's status checks, with their actions and tags.
    let found = alarms(&rig);
    assert_eq!(found.len(), 2, "{found:?}");
    let recover = format!("arn:aws:automate:{REGION}:ec2:recover");
    for (name, metric, role, actions) in [
        (
            &alarm_names()[0],
            "StatusCheckFailed_System",
            "alarm-system",
            vec![recover.clone(), arn.clone()],
        ),
        (
            &alarm_names()[1],
            "StatusCheckFailed_Instance",
            "alarm-instance",
            vec![arn.clone()],
        ),
    ] {
        let a = found
            .iter()
            .find(|a| a.alarm_name() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name}: {found:?}"));
        assert_eq!(a.namespace(), Some("AWS/EC2"));
        assert_eq!(a.metric_name(), Some(metric));
        let dims: Vec<(&str, &str)> = a
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap(), d.value().unwrap()))
            .collect();
        assert_eq!(dims, [("InstanceId", instance.as_str())]);
        let mut got = a.alarm_actions().to_vec();
        got.sort();
        let mut want = actions;
        want.sort();
        assert_eq!(got, want, "{name}");
        assert_eq!(a.ok_actions(), std::slice::from_ref(&arn), "{name}");
        assert_eq!(a.period(), Some(60));
        assert_eq!(a.evaluation_periods(), Some(2));
        assert_eq!(a.threshold(), Some(1.0));
        assert_eq!(
            a.comparison_operator().map(|c| c.as_str()),
            Some("GreaterThanOrEqualToThreshold")
        );
        assert_eq!(tags_of_alarm(&rig, a.alarm_arn().unwrap()), tags(role));
    }

    // Converged: a re-run, a plan and status make no write.
    rig.proxy.reset();
    provision(&rig, &stack).ok().no_aws_write();
    rig.run(&["status", "--shop", SHOP, "--env", "qa", "--stack", &stack])
        .ok()
        .no_aws_write()
        .stdout_has("ops@example.com");

    // The alarm set by hand to another instance (as after a replacement): status names it
    // and counts it drifted, provision sets it back with one PutMetricAlarm.
    rig.block(async {
        rig.cloudwatch
            .put_metric_alarm()
            .alarm_name(&alarm_names()[0])
            .namespace("AWS/EC2")
            .metric_name("StatusCheckFailed_System")
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name("InstanceId")
                    .value("i-0123456789abcdef0")
                    .build(),
            )
            .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
            .period(60)
            .evaluation_periods(2)
            .threshold(1.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
            )
            .alarm_actions(&arn)
            .ok_actions(&arn)
            .send()
            .await
            .unwrap();
    });
    let st = rig
        .run(&[
            "--output", "json", "status", "--shop", SHOP, "--env", "qa", "--stack", &stack,
        ])
        .ok();
    assert_eq!(st.json()["drifted"], 1, "{}", st.stdout);
    rig.run(&["status", "--shop", SHOP, "--env", "qa", "--stack", &stack])
        .ok()
        .stdout_has(&format!(
            "watches i-0123456789abcdef0, not the stack's {instance}"
        ));
    rig.proxy.reset();
    let fixed = provision(&rig, &stack).ok();
    let writes: Vec<String> = fixed
        .writes()
        .into_iter()
        .filter(|w| w != "PutParameter" && w != "DeleteParameter")
        .collect();
    assert_eq!(
        writes,
        ["PutMetricAlarm"],
        "only the alarm (besides the lock)"
    );
    let a = alarms(&rig);
    let system = a
        .iter()
        .find(|a| a.alarm_name() == Some(alarm_names()[0].as_str()))
        .unwrap();
    assert_eq!(system.dimensions()[0].value(), Some(instance.as_str()));
    assert!(system.alarm_actions().contains(&recover));

    // Another address in the stack file: subscribed, the old one unsubscribed.
    let night = rig.stack_with_alerts("qa", "night-shift@example.org");
    rig.proxy.reset();
    let changed = provision(&rig, &night).ok();
    let mut w = changed.writes();
    w.retain(|w| w == "Subscribe" || w == "Unsubscribe");
    w.sort();
    assert_eq!(w, ["Subscribe", "Unsubscribe"]);
    assert_eq!(
        topic(&rig).unwrap().1,
        [("email".to_string(), "night-shift@example.org".to_string())]
    );

    // Compliance: "alarms" passes; an alarm deleted with the test's own client fails it, and
    // only it.
    let doc = rig
        .run(&["--output", "json", "report", "compliance"])
        .ok()
        .json();
    let checks = doc["stacks"][0]["checks"].as_array().unwrap().clone();
    let rule = checks.iter().find(|c| c["rule"] == "alarms").unwrap();
    assert_eq!(rule["status"], "pass", "{rule}");
    rig.block(async {
        rig.cloudwatch
            .delete_alarms()
            .alarm_names(&alarm_names()[1])
            .send()
            .await
            .unwrap();
    });
    let r = rig.run(&["--output", "json", "report", "compliance"]);
    assert_eq!(r.code, 1, "{r:?}");
    let doc = r.json();
    assert_eq!(doc["stacks"][0]["failed"], serde_json::json!(["alarms"]));
    let text = rig.run(&["report", "compliance"]).status(1);
    assert!(
        text.stdout.contains("alarm: instance check missing"),
        "{}",
        text.stdout
    );

    // Teardown: no topic, no alarm, nothing tagged.
    rig.run(&["teardown", "--shop", SHOP, "--env", "qa", "--yes"])
        .ok();
    assert!(topic(&rig).is_none());
    assert!(alarms(&rig).is_empty());
    assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
}

#[test]
fn without_an_address_the_topic_has_no_subscription_and_compliance_says_so() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    let (_, subs) = topic(&rig).expect("the topic exists without an address");
    assert!(subs.is_empty(), "{subs:?}");
    assert_eq!(alarms(&rig).len(), 2);
    rig.run(&["status", "--shop", SHOP, "--env", "qa"])
        .ok()
        .stdout_has("no e-mail subscribed");
    let r = rig.run(&["report", "compliance"]).status(1);
    assert!(
        r.stdout.contains("the stack file has no alert_email"),
        "{}",
        r.stdout
    );
}

/// Puts datapoints in AWS/EC2 for the instance (the test's own client: moto's instances
/// emit none).
fn put(rig: &Rig, instance: &str, metric: &str, points: &[(SystemTime, f64)]) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    rig.block(async {
        for chunk in points.chunks(500) {
            let data: Vec<MetricDatum> = chunk
                .iter()
                .map(|(t, v)| {
                    MetricDatum::builder()
                        .metric_name(metric)
                        .dimensions(
                            Dimension::builder()
                                .name("InstanceId")
                                .value(instance)
                                .build(),
                        )
                        .timestamp(DateTime::from(*t))
                        .value(*v)
                        .build()
                })
                .collect();
            rig.cloudwatch
                .put_metric_data()
                .namespace("AWS/EC2")
                .set_metric_data(Some(data))
                .send()
                .await
                .unwrap();
        }
    });
}

#[test]
fn performance_report_equals_the_hand_computed_figures() {
    let rig = Rig::new();
    rig.provision_infra(SHOP, "qa").ok();
    let instance = rig.instance_id(SHOP, "qa");
    let t = |s: &str| humantime::parse_rfc3339(s).unwrap();
    let hour = Duration::from_secs(3600);
    let start = t("2026-10-01T00:00:00Z");

    // CPU: 20 hours, each with two samples (at :10 and :40). Hour h's samples are h and
    // h + 2, so its average is h + 1: the hourly averages are 1..=20.
    let mut cpu = Vec::new();
    for h in 0..20u32 {
        let at = start + hour * (h + 10);
        cpu.push((at + Duration::from_secs(600), f64::from(h)));
        cpu.push((at + Duration::from_secs(2400), f64::from(h + 2)));
    }
    // One more hour with a single sample of 90 (weighs one sample in the mean).
    cpu.push((start + hour * 200, 90.0));
    // Outside October: not counted.
    cpu.push((t("2026-09-30T23:59:00Z"), 99.0));
    cpu.push((t("2026-11-01T00:00:00Z"), 99.0));
    put(&rig, &instance, "CPUUtilization", &cpu);
    put(
        &rig,
        &instance,
        "NetworkIn",
        &[
            (start + hour, 1_500_000.0),
            (start + hour * 300, 2_500_000.0),
        ],
    );
    put(
        &rig,
        &instance,
        "NetworkOut",
        &[(start + hour * 5, 4_000.0)],
    );
    put(
        &rig,
        &instance,
        "StatusCheckFailed_System",
        &[
            (start + hour * 7, 1.0),
            (start + hour * 7 + Duration::from_secs(60), 1.0),
            (start + hour * 8, 0.0),
        ],
    );
    put(
        &rig,
        &instance,
        "StatusCheckFailed_Instance",
        &[(start + hour * 400, 1.0)],
    );
    // Another instance's data is not this stack's.
    put(
        &rig,
        "i-0fedcba9876543210",
        "CPUUtilization",
        &[(start + hour * 3, 100.0)],
    );

    // By hand: samples 0..=19 and 2..=21 (sum 190 + 230 = 420) and 90: mean 510 / 41.
    // Hourly averages 1..=20 and 90 (21 hours): p95 is the ⌈0.95 × 21⌉ = 20th smallest = 20.
    let mean = 510.0 / 41.0;
    rig.proxy.reset();
    let r = rig
        .run(&[
            "--output",
            "json",
            "report",
            "performance",
            "--month",
            "2026-10",
        ])
        .ok()
        .no_aws_write();
    let doc = r.json();
    let rows = doc["stacks"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{doc}");
    let row = &rows[0];
    assert_eq!(row["shop"], SHOP);
    assert_eq!(row["env"], "qa");
    assert_eq!(row["instance"], instance.as_str());
    assert_eq!(row["hours"], 21);
    let avg = row["cpu_avg_percent"].as_f64().unwrap();
    assert!((avg - mean).abs() < 1e-9, "{avg} vs {mean}");
    assert_eq!(row["cpu_p95_percent"], 20.0);
    assert_eq!(row["network_in_bytes"], 4_000_000.0);
    assert_eq!(row["network_out_bytes"], 4_000.0);
    assert_eq!(row["status_check_failures"], 3);

    // CSV: the same figures, one row.
    let csv = rig
        .run(&["report", "performance", "--month", "2026-10", "--csv"])
        .ok();
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "shop,env,instance,hours,cpu_avg_percent,cpu_p95_percent,network_in_bytes,network_out_bytes,status_check_failures,data_bytes,disk_used_percent".to_string(),
            // No backup job on an infra-only stack: no data-volume figures (backup.rs has them).
            format!("{SHOP},qa,{instance},21,{mean:.2},20.00,4000000,4000,3,,"),
        ]
    );

    // The table: a row with the figures at a glance.
    let text = rig
        .run(&["report", "performance", "--month", "2026-10"])
        .ok();
    let line = text
        .stdout
        .lines()
        .find(|l| l.starts_with(SHOP))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            SHOP,
            "qa",
            instance.as_str(),
            "21",
            &format!("{mean:.2}"),
            "20.00",
            "4.00",
            "MB",
            "4.00",
            "kB",
            "3",
            "-",
            "-"
        ],
        "{}",
        text.stdout
    );

    // A month without data: the row, no figures.
    let doc = rig
        .run(&[
            "--output",
            "json",
            "report",
            "performance",
            "--month",
            "2026-08",
        ])
        .ok()
        .json();
    assert_eq!(doc["stacks"][0]["hours"], 0);
    assert!(doc["stacks"][0]["cpu_avg_percent"].is_null());
}
