//! CloudWatch's AWS/EC2 metrics of one instance over a window, hour by hour (what `report
//! performance` computes on: src/report/performance.rs).

use crate::aws::Aws;
use crate::error::Result;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// EC2's metrics (the alarms watch two of them: resources/alarms.rs).
pub const NAMESPACE: &str = "AWS/EC2";

/// One-hour periods: CloudWatch keeps them 455 days (one-minute data only 15), and a month
/// is at most 744 of them per query.
pub const PERIOD: i32 = 3600;

/// The hourly datapoints of an instance's metrics (hours without data are absent).
#[derive(Debug, Clone, Default)]
pub struct InstanceMetrics {
    /// CPUUtilization's Average per hour (percent).
    pub cpu_hourly_avg: Vec<f64>,
    /// CPUUtilization's Sum and SampleCount per hour: the month's mean is Σsum / Σcount.
    pub cpu_sum: Vec<f64>,
    pub cpu_samples: Vec<f64>,
    /// NetworkIn / NetworkOut Sum per hour (bytes).
    pub network_in: Vec<f64>,
    pub network_out: Vec<f64>,
    /// StatusCheckFailed_System / _Instance Sum per hour (failed one-minute checks).
    pub check_failed_system: Vec<f64>,
    pub check_failed_instance: Vec<f64>,
}

/// (query id, metric, statistic)
const QUERIES: [(&str, &str, &str); 7] = [
    ("cpu_avg", "CPUUtilization", "Average"),
    ("cpu_sum", "CPUUtilization", "Sum"),
    ("cpu_n", "CPUUtilization", "SampleCount"),
    ("net_in", "NetworkIn", "Sum"),
    ("net_out", "NetworkOut", "Sum"),
    ("sys", "StatusCheckFailed_System", "Sum"),
    ("inst", "StatusCheckFailed_Instance", "Sum"),
];

impl Aws {
    /// Every metric of `instance` in [from, to), in one GetMetricData (pages followed).
    pub async fn instance_metrics(
        &self,
        instance: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<InstanceMetrics> {
        let queries: Vec<MetricDataQuery> = QUERIES
            .iter()
            .map(|(id, metric, stat)| {
                MetricDataQuery::builder()
                    .id(*id)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace(NAMESPACE)
                                    .metric_name(*metric)
                                    .dimensions(
                                        Dimension::builder()
                                            .name("InstanceId")
                                            .value(instance)
                                            .build(),
                                    )
                                    .build(),
                            )
                            .period(PERIOD)
                            .stat(*stat)
                            .build(),
                    )
                    .return_data(true)
                    .build()
            })
            .collect();
        let pages = self
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(DateTime::from(from))
            .end_time(DateTime::from(to))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("GetMetricData", Some(instance), e))?;
        let mut by_id: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in pages.iter().flat_map(|p| p.metric_data_results()) {
            by_id
                .entry(r.id().unwrap_or_default().to_string())
                .or_default()
                .extend(r.values().iter().copied().filter(|v| v.is_finite()));
        }
        let mut take = |id: &str| by_id.remove(id).unwrap_or_default();
        Ok(InstanceMetrics {
            cpu_hourly_avg: take("cpu_avg"),
            cpu_sum: take("cpu_sum"),
            cpu_samples: take("cpu_n"),
            network_in: take("net_in"),
            network_out: take("net_out"),
            check_failed_system: take("sys"),
            check_failed_instance: take("inst"),
        })
    }
}
