//! `report performance`: per shop, the month's CPU (average, p95), network and status-check
//! failures from the instance's hourly CloudWatch datapoints. Pure: the reading is
//! aws/metrics.rs's.
//!
//! Definitions (docs/runbooks/reports.md):
//! - CPU average: the mean of every sample of the month (Σ hourly Sum / Σ hourly
//!   SampleCount), not the mean of hourly means (an hour with fewer samples weighs less).
//! - CPU p95: the 95th percentile of the hourly averages, nearest rank (the ⌈0.95·n⌉-th
//!   smallest of n hours): the hour-long load the host stayed under 95 % of its hours.
//!   Computed here rather than asked of CloudWatch (`p95` as a statistic), which would be a
//!   percentile of raw samples per hour and has no month-wide form; the emulator computes
//!   no percentiles either.
//! - Network in/out: bytes, the month's sums.
//! - Status-check failures: failed one-minute checks of both StatusCheckFailed_System and
//!   StatusCheckFailed_Instance, summed.
//! - Data volume: the POS data directory's size and its disk's use as the month's newest
//!   good backup recorded them (the host's backup job measures both).

use crate::aws::metrics::InstanceMetrics;
use crate::spec::StackId;
use serde::Serialize;

/// One shop's month.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Performance {
    pub shop: String,
    pub env: String,
    /// The stack's instance (None: the stack has none now).
    pub instance: Option<String>,
    /// Hours with CPU data.
    pub hours: usize,
    pub cpu_avg_percent: Option<f64>,
    pub cpu_p95_percent: Option<f64>,
    pub network_in_bytes: f64,
    pub network_out_bytes: f64,
    pub status_check_failures: u64,
    /// From the month's newest good backup (None: none this month).
    pub data_bytes: Option<u64>,
    pub disk_used_percent: Option<u32>,
}

/// What the month's newest good backup recorded of the data volume.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataVolume {
    pub data_bytes: Option<u64>,
    pub disk_used_percent: Option<u32>,
}

/// Nearest-rank percentile `p` (0 < p ≤ 100) of `values`; None for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

pub fn row(
    id: &StackId,
    instance: Option<&str>,
    m: &InstanceMetrics,
    data: DataVolume,
) -> Performance {
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let samples = sum(&m.cpu_samples);
    Performance {
        shop: id.shop.to_string(),
        env: id.env.to_string(),
        instance: instance.map(str::to_string),
        hours: m.cpu_hourly_avg.len(),
        cpu_avg_percent: (samples > 0.0).then(|| sum(&m.cpu_sum) / samples),
        cpu_p95_percent: percentile(&m.cpu_hourly_avg, 95.0),
        network_in_bytes: sum(&m.network_in),
        network_out_bytes: sum(&m.network_out),
        status_check_failures: (sum(&m.check_failed_system) + sum(&m.check_failed_instance)).round()
            as u64,
        data_bytes: data.data_bytes,
        disk_used_percent: data.disk_used_percent,
    }
}

pub const HEADER: [&str; 11] = [
    "shop",
    "env",
    "instance",
    "hours",
    "cpu_avg_percent",
    "cpu_p95_percent",
    "network_in_bytes",
    "network_out_bytes",
    "status_check_failures",
    "data_bytes",
    "disk_used_percent",
];

/// A row's values for the CSV (bytes whole, percentages to two places, "" for none).
pub fn cells(p: &Performance) -> [String; 11] {
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
    [
        p.shop.clone(),
        p.env.clone(),
        p.instance.clone().unwrap_or_default(),
        p.hours.to_string(),
        pct(p.cpu_avg_percent),
        pct(p.cpu_p95_percent),
        format!("{:.0}", p.network_in_bytes),
        format!("{:.0}", p.network_out_bytes),
        p.status_check_failures.to_string(),
        p.data_bytes.map(|b| b.to_string()).unwrap_or_default(),
        p.disk_used_percent
            .map(|d| d.to_string())
            .unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentile() {
        assert_eq!(percentile(&[], 95.0), None);
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        // 20 values 1..=20: ⌈0.95·20⌉ = 19th smallest.
        let v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        // 10 values: ⌈9.5⌉ = 10th, the largest.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(10.0));
        assert_eq!(percentile(&v, 50.0), Some(5.0));
    }

    #[test]
    fn the_mean_weighs_every_sample() {
        let id = StackId {
            shop: "12345678".parse().unwrap(),
            env: crate::spec::Env::Qa,
        };
        let m = InstanceMetrics {
            cpu_hourly_avg: vec![10.0, 50.0],
            // 3 samples of 10, 1 of 50.
            cpu_sum: vec![30.0, 50.0],
            cpu_samples: vec![3.0, 1.0],
            network_in: vec![1e6, 2e6],
            network_out: vec![5.0],
            check_failed_system: vec![2.0],
            check_failed_instance: vec![1.0, 1.0],
        };
        let r = row(&id, Some("i-1"), &m, DataVolume::default());
        assert_eq!(r.cpu_avg_percent, Some(20.0));
        assert_eq!(r.cpu_p95_percent, Some(50.0));
        assert_eq!(r.network_in_bytes, 3e6);
        assert_eq!(r.status_check_failures, 4);
        assert_eq!(r.hours, 2);
        assert_eq!(cells(&r)[4], "20.00");
    }
}
