//! The timesheet completeness gate (vision §6.2), as pure rules: the timesheets of an ISO week
//! are due by a local deadline in the following week (Monday 10:00 Europe/London by default);
//! at the first clock tick at or after it, the gate compares who was expected with who sent one
//! (`excel.timesheet.ingested`, by `contractorId` and `period`), and is **blocked** when more are
//! missing than the threshold allows. ct-digest decides it from the log's clock, so a rebuild
//! decides the same gates.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Days, IsoWeek, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

use crate::digest::local_instant;

/// When a week's timesheets are due: `weekday` at `at`, local time, in the week after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub weekday: Weekday,
    pub at: NaiveTime,
    pub zone: Tz,
}

impl Deadline {
    /// The deadline of the ISO week that starts on `monday`.
    pub fn of_week(&self, monday: NaiveDate) -> DateTime<Utc> {
        let day =
            monday.checked_add_days(Days::new(7 + u64::from(self.weekday.num_days_from_monday()))).unwrap_or(monday);
        local_instant(day, self.at, self.zone)
    }

    /// The first week whose deadline is at or after `at` (a first tick decides no gate of a week
    /// that ended before the service knew the time): the week before `at`'s local week, or that
    /// week itself once the deadline has passed.
    pub fn first_week(&self, at: DateTime<Utc>) -> NaiveDate {
        let this_week = monday_of(at.with_timezone(&self.zone).date_naive());
        let previous = this_week.checked_sub_days(Days::new(7)).unwrap_or(NaiveDate::MIN);
        if self.of_week(previous) >= at { previous } else { this_week }
    }
}

/// The Monday of `day`'s ISO week.
pub fn monday_of(day: NaiveDate) -> NaiveDate {
    day.checked_sub_days(Days::new(u64::from(day.weekday().num_days_from_monday()))).unwrap_or(day)
}

/// The ISO week's name as producers write `period`: `2026-W07`.
pub fn period(monday: NaiveDate) -> String {
    let week: IsoWeek = monday.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

/// The Monday of a `period` (`2026-W07`; `2026-w7` is read the same), or `None`.
pub fn parse_period(text: &str) -> Option<NaiveDate> {
    let (year, week) = text.trim().split_once(['W', 'w'])?;
    let year: i32 = year.strip_suffix('-')?.parse().ok()?;
    let week: u32 = week.parse().ok()?;
    NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
}

/// A decided gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub period: String,
    pub deadline: DateTime<Utc>,
    pub expected: usize,
    /// Expected contractors with a timesheet for the period by the deadline.
    pub received: usize,
    /// Expected contractors without one, sorted.
    pub missing: Vec<String>,
    pub threshold: usize,
    /// More missing than the threshold: invoices for the week should wait.
    pub blocked: bool,
}

/// The gate of the week starting `monday`: `received` are the contractor ids with a timesheet for
/// its period (ids nobody expected do not count).
pub fn decide(
    monday: NaiveDate,
    deadline: &Deadline,
    expected: &BTreeSet<String>,
    received: &BTreeSet<String>,
    threshold: usize,
) -> Gate {
    let missing: Vec<String> = expected.difference(received).cloned().collect();
    Gate {
        period: period(monday),
        deadline: deadline.of_week(monday),
        expected: expected.len(),
        received: expected.len() - missing.len(),
        blocked: missing.len() > threshold,
        missing,
        threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Deadline {
        Deadline {
            weekday: Weekday::Mon,
            at: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            zone: chrono_tz::Europe::London,
        }
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn periods_are_iso_weeks_across_year_ends() {
        assert_eq!(period(date("2026-11-23")), "2026-W48");
        assert_eq!(period(date("2025-12-29")), "2026-W01", "ISO week 1 of 2026 starts in 2025");
        assert_eq!(parse_period("2026-W01"), Some(date("2025-12-29")));
        assert_eq!(parse_period("2026-w48"), Some(date("2026-11-23")));
        assert_eq!(parse_period("2026-W54"), None);
        assert_eq!(parse_period("2026/48"), None);
    }

    #[test]
    fn the_deadline_is_monday_ten_local_after_the_week_in_either_season() {
        // Week 12 of 2026 ends on 22 March: Monday the 23rd, 10:00 GMT.
        assert_eq!(london().of_week(date("2026-03-16")), "2026-03-23T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // Week 13 ends on the 29th (the clocks go forward): Monday the 30th, 10:00 BST.
        assert_eq!(london().of_week(date("2026-03-23")), "2026-03-30T09:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // A first tick before Monday's deadline: the first gate is the previous week's; after it,
        // this week's (the previous week's deadline passed before the service knew the time).
        assert_eq!(london().first_week("2026-03-23T09:59:00Z".parse().unwrap()), date("2026-03-16"));
        assert_eq!(london().first_week("2026-03-23T10:00:00Z".parse().unwrap()), date("2026-03-16"));
        assert_eq!(london().first_week("2026-03-29T20:00:00Z".parse().unwrap()), date("2026-03-23"));
    }

    #[test]
    fn blocked_only_when_more_are_missing_than_the_threshold() {
        let expected: BTreeSet<String> = ["C1", "C2", "C3"].map(String::from).into();
        let some: BTreeSet<String> = ["C1", "C3", "C9"].map(String::from).into();
        let gate = decide(date("2026-11-16"), &london(), &expected, &some, 0);
        assert_eq!((gate.received, gate.missing.clone(), gate.blocked), (2, vec!["C2".to_owned()], true));
        assert_eq!(gate.period, "2026-W47");
        assert!(!decide(date("2026-11-16"), &london(), &expected, &some, 1).blocked);
        assert!(!decide(date("2026-11-16"), &london(), &expected, &expected, 0).blocked);
    }
}
