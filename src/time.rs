//! A moment as poscloud records it: in records, reports and JSON output it is RFC 3339 in
//! UTC to the second (`2026-11-23T01:04:05Z`); it reads any RFC 3339 time (AWS's have
//! fractions). Ages and durations are computed on the value, never on the text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(SystemTime);

impl Time {
    pub fn now() -> Time {
        Time(SystemTime::now())
    }

    pub fn system(self) -> SystemTime {
        self.0
    }

    /// Whole seconds from `self` to `later` (none if `later` is earlier).
    pub fn secs_until(self, later: Time) -> Option<u64> {
        later.0.duration_since(self.0).ok().map(|d| d.as_secs())
    }

    /// How long ago, at `now` (zero for a time to come).
    pub fn age_at(self, now: SystemTime) -> Duration {
        now.duration_since(self.0).unwrap_or_default()
    }
}

/// An AWS SDK time (none if it cannot be a system time).
pub fn sdk_time(t: &aws_smithy_types::DateTime) -> Option<Time> {
    SystemTime::try_from(*t).ok().map(Time)
}

impl From<SystemTime> for Time {
    fn from(t: SystemTime) -> Time {
        Time(t)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.0))
    }
}

impl FromStr for Time {
    type Err = humantime::TimestampError;

    fn from_str(s: &str) -> Result<Time, Self::Err> {
        humantime::parse_rfc3339_weak(s).map(Time)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_reads_rfc3339_and_writes_it_to_the_second() {
        let t: Time = "2026-11-23T01:00:00.250Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-23T01:00:00Z");
        let later: Time = "2026-11-23T01:04:05Z".parse().unwrap();
        assert_eq!(t.secs_until(later), Some(244));
        assert_eq!(later.secs_until(t), None);
        let v: Time = serde_json::from_value(serde_json::json!("2026-11-23T01:04:05Z")).unwrap();
        assert_eq!(serde_json::to_value(v).unwrap(), "2026-11-23T01:04:05Z");
        assert!(serde_json::from_value::<Time>(serde_json::json!("yesterday")).is_err());
    }
}
