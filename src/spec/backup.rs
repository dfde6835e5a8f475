//! A stack's `[backup]` table: when the host backs its POS data up to S3 and how long S3 keeps
//! each backup (the bucket's lifecycle rules expire them by their `poscloud:keep` tag).

use super::Env;
use serde::{Deserialize, Serialize};

/// As the stack file says it; every key optional (defaults per env: `for_env`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    /// systemd OnCalendar in host time, which is UTC on CentOS AMIs (systemd 219 reads no
    /// time zone). Default `*-*-* 08:00:00`: 03:00 US Eastern, 00:00 US Pacific (shops closed).
    schedule: Option<String>,
    /// How long a daily backup is kept (days).
    daily_days: Option<i64>,
    /// How many monthly backups are kept (the first of each month, kept months × 31 days).
    monthly: Option<i64>,
    /// Whether `teardown` leaves the stack's backups in S3 (they still expire by lifecycle).
    keep_after_teardown: Option<bool>,
}

/// Validated backup settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupSpec {
    pub schedule: String,
    pub daily_days: u32,
    pub monthly: u32,
    pub keep_after_teardown: bool,
}

pub const MAX_DAYS: i64 = 3650;
pub const MAX_MONTHLY: i64 = 120;

impl BackupSpec {
    /// prod: 30 daily + 12 monthly, kept after a teardown; qa/dev: 7 daily, removed with it.
    pub fn for_env(env: Env, raw: RawBackup) -> Result<BackupSpec, (&'static str, String)> {
        let prod = env == Env::Prod;
        let schedule = raw.schedule.unwrap_or_else(|| "*-*-* 08:00:00".into());
        check_schedule(&schedule).map_err(|r| ("backup.schedule", r))?;
        let daily_days = raw.daily_days.unwrap_or(if prod { 30 } else { 7 });
        if !(1..=MAX_DAYS).contains(&daily_days) {
            return Err((
                "backup.daily_days",
                format!("{daily_days}: days a daily backup is kept, 1-{MAX_DAYS}"),
            ));
        }
        let monthly = raw.monthly.unwrap_or(if prod { 12 } else { 0 });
        if !(0..=MAX_MONTHLY).contains(&monthly) {
            return Err((
                "backup.monthly",
                format!("{monthly}: monthly backups kept, 0-{MAX_MONTHLY}"),
            ));
        }
        Ok(BackupSpec {
            schedule,
            daily_days: daily_days as u32,
            monthly: monthly as u32,
            keep_after_teardown: raw.keep_after_teardown.unwrap_or(prod),
        })
    }

    /// How long S3 keeps a monthly backup: a month is counted as 31 days, so N of them are
    /// always there (0: no monthly backups).
    pub fn monthly_days(&self) -> u32 {
        self.monthly * 31
    }

    /// The retention periods in use (days), each a lifecycle rule of the bucket.
    pub fn keep_days(&self) -> Vec<u32> {
        let mut d = vec![self.daily_days];
        if self.monthly > 0 && self.monthly_days() != self.daily_days {
            d.push(self.monthly_days());
        }
        d
    }
}

/// What systemd 219 (CentOS 7) reads in OnCalendar and this check can vouch for: a
/// shorthand (`daily`, `weekly`, `monthly`, `hourly`) or `[WEEKDAYS ]DATE TIME` with DATE
/// `*-*-*` (or `*-*-D`, `*-M-D`) and TIME `HH:MM[:SS]` (each field a number, `*` or a list).
pub fn check_schedule(s: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{s:?}: a systemd OnCalendar expression CentOS 7's systemd reads: daily, weekly, monthly, hourly, or e.g. \"*-*-* 02:30:00\", \"Mon..Fri *-*-* 23:00\""
        )
    };
    if ["daily", "weekly", "monthly", "hourly"].contains(&s) {
        return Ok(());
    }
    let parts: Vec<&str> = s.split(' ').collect();
    let (days, date, time) = match parts.as_slice() {
        [date, time] => (None, *date, *time),
        [days, date, time] => (Some(*days), *date, *time),
        _ => return Err(bad()),
    };
    let field = |f: &str, max: u32| {
        f == "*"
            || f.split(',').all(|n| {
                n.split("..").count() <= 2
                    && n.split("..")
                        .all(|v| v.len() <= 4 && v.parse::<u32>().is_ok_and(|x| x <= max))
            })
    };
    let weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let days_ok = days.is_none_or(|d| {
        d.split(',')
            .all(|r| r.split("..").all(|w| weekdays.contains(&w)) && r.split("..").count() <= 2)
    });
    let date: Vec<&str> = date.split('-').collect();
    let date_ok = date.len() == 3
        && (date[0] == "*"
            || date[0]
                .parse::<u32>()
                .is_ok_and(|y| (1970..=2200).contains(&y)))
        && field(date[1], 12)
        && field(date[2], 31);
    let time: Vec<&str> = time.split(':').collect();
    let time_ok = (2..=3).contains(&time.len())
        && field(time[0], 23)
        && field(time[1], 59)
        && time.get(2).is_none_or(|s| field(s, 59));
    if days_ok && date_ok && time_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_systemd_219_reads_pass_and_others_do_not() {
        for ok in [
            "daily",
            "*-*-* 02:30:00",
            "*-*-* 2:30",
            "Mon..Fri *-*-* 23:00",
            "Sat,Sun *-*-* 04:00:00",
            "*-*-1 03:00",
            "*-*-* 00,12:00",
        ] {
            assert!(check_schedule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "nightly",
            "*-*-* 25:00",
            "*-*-* 02:61",
            "Mon-Fri *-*-* 23:00",
            "*-*-* 02:30:00 UTC", // time zones came with systemd 235
            "*-*-* 02:30; rm -rf /",
            "02:30",
        ] {
            assert!(check_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_per_env() {
        let prod = BackupSpec::for_env(Env::Prod, RawBackup::default()).unwrap();
        assert_eq!(
            (prod.daily_days, prod.monthly, prod.keep_after_teardown),
            (30, 12, true)
        );
        assert_eq!(prod.keep_days(), vec![30, 372]);
        let qa = BackupSpec::for_env(Env::Qa, RawBackup::default()).unwrap();
        assert_eq!(
            (qa.daily_days, qa.monthly, qa.keep_after_teardown),
            (7, 0, false)
        );
        assert_eq!(qa.keep_days(), vec![7]);
    }
}
