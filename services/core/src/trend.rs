//! The weekly and monthly health trend, as pure rules: how long a system spent in each status
//! over a period, from its status changes (the health evaluator's `history`), and the calendar
//! periods themselves in a time zone (ISO weeks; calendar months, the window SLO tools lack).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::{digest::local_instant, timesheets};

/// Seconds spent in each status between `from` and `to`: `before` is the status in force at
/// `from` (`None`: never evaluated, counted as `unknown`), `changes` the changes inside the period
/// in time order (a change at or after `to` is ignored).
pub fn time_in_status(
    before: Option<&str>,
    changes: &[(DateTime<Utc>, String)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<String, i64> {
    let mut seconds = BTreeMap::new();
    if to <= from {
        return seconds;
    }
    let mut current = before.unwrap_or("unknown").to_owned();
    let mut since = from;
    for (at, status) in changes.iter().filter(|(at, _)| *at >= from && *at < to) {
        *seconds.entry(current).or_insert(0) += (*at - since).num_seconds();
        current = status.clone();
        since = *at;
    }
    *seconds.entry(current).or_insert(0) += (to - since).num_seconds();
    seconds.retain(|_, s| *s > 0);
    seconds
}

/// A calendar period of the trend: its name and UTC bounds in `zone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The ISO week `2026-W47` in `zone` (Monday 00:00 to Monday 00:00, local).
pub fn week(name: &str, zone: Tz) -> Option<Period> {
    let monday = timesheets::parse_period(name)?;
    let next = monday.checked_add_days(chrono::Days::new(7))?;
    Some(Period {
        name: timesheets::period(monday),
        from: local_instant(monday, NaiveTime::MIN, zone),
        to: local_instant(next, NaiveTime::MIN, zone),
    })
}

/// The calendar month `2026-11` in `zone`.
pub fn month(name: &str, zone: Tz) -> Option<Period> {
    let first = NaiveDate::parse_from_str(&format!("{}-01", name.trim()), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(Months::new(1))?;
    Some(Period {
        name: format!("{:04}-{:02}", first.year(), first.month()),
        from: local_instant(first, NaiveTime::MIN, zone),
        to: local_instant(next, NaiveTime::MIN, zone),
    })
}

/// The last ISO week that ended at or before `at`, in `zone`.
pub fn last_complete_week(at: DateTime<Utc>, zone: Tz) -> Period {
    let this_monday = timesheets::monday_of(at.with_timezone(&zone).date_naive());
    let previous = this_monday.checked_sub_days(chrono::Days::new(7)).unwrap_or(this_monday);
    week(&timesheets::period(previous), zone).expect("a week built from a date has a name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn time_is_split_at_each_change_and_before_the_first_is_what_was_in_force() {
        let changes = vec![
            (t("2026-11-16T06:00:00Z"), "amber".to_owned()),
            (t("2026-11-16T12:00:00Z"), "green".to_owned()),
            (t("2026-11-30T00:00:00Z"), "red".to_owned()), // after the period
        ];
        let seconds = time_in_status(Some("green"), &changes, t("2026-11-16T00:00:00Z"), t("2026-11-17T00:00:00Z"));
        assert_eq!(seconds, BTreeMap::from([("amber".into(), 6 * 3600), ("green".into(), 18 * 3600)]));
        let never = time_in_status(None, &[], t("2026-11-16T00:00:00Z"), t("2026-11-16T01:00:00Z"));
        assert_eq!(never, BTreeMap::from([("unknown".into(), 3600)]));
    }

    #[test]
    fn weeks_and_months_are_local_and_the_clock_change_is_inside_them() {
        let london = chrono_tz::Europe::London;
        let w13 = week("2026-W13", london).unwrap();
        assert_eq!((w13.from, w13.to), (t("2026-03-23T00:00:00Z"), t("2026-03-29T23:00:00Z")));
        assert_eq!((w13.to - w13.from).num_hours(), 167);
        let october = month("2026-10", london).unwrap();
        assert_eq!((october.from, october.to), (t("2026-09-30T23:00:00Z"), t("2026-11-01T00:00:00Z")));
        assert_eq!(month("2026-13", london), None);
        assert_eq!(last_complete_week(t("2026-11-30T09:00:00Z"), london).name, "2026-W48");
    }
}
