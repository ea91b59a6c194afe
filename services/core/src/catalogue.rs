//! The system catalogue: which systems Control Tower watches, which source may speak for each,
//! and when each is expected to send heartbeats (business hours in its time zone, minus the
//! holidays of the calendar the project ships). Pure data and rules: loading the file is the
//! platform's job (`ct_platform::catalogue`).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::Source;

/// The whole catalogue, as `config/catalogue.toml` writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub calendar: CalendarSpec,
    pub systems: Vec<SystemSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// An IANA time zone, e.g. `Europe/London`.
    pub time_zone: String,
    /// Local opening and closing times of a working day (`09:00`, `17:30`).
    pub opens: String,
    pub closes: String,
    /// `Mon` … `Sun`.
    pub working_days: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub id: String,
    pub name: String,
    /// The only source whose heartbeats and runs may speak for this system.
    pub owner: Source,
    pub heartbeat: HeartbeatSpec,
    /// The evaluator's SLOs (by name) that apply to this system; unset: all of them.
    #[serde(default)]
    pub slos: Option<Vec<String>>,
}

impl SystemSpec {
    pub fn has_slo(&self, name: &str) -> bool {
        self.slos.as_ref().is_none_or(|names| names.iter().any(|n| n == name))
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSpec {
    /// How often the system sends a heartbeat.
    pub period_s: i64,
    /// How late a heartbeat may be before the system turns amber (gap > period + grace).
    pub grace_s: i64,
    /// A gap longer than this turns the system red.
    pub red_after_s: i64,
    /// Count only business time in gaps (a system that sleeps at night and on holidays).
    pub business_hours_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
    #[error("`{field}` must be a time like 09:00, not `{value}`")]
    Time { field: &'static str, value: String },
    #[error("unknown working day `{0}` (Mon … Sun)")]
    Weekday(String),
    #[error("holiday line {line}: `{text}` is not a date like 2026-12-25")]
    Holiday { line: usize, text: String },
    #[error("system `{0}` is listed twice")]
    Duplicate(String),
    #[error("system `{id}`: {reason}")]
    System { id: String, reason: String },
}

/// Working hours in a time zone, without holidays.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: Tz,
    opens: NaiveTime,
    closes: NaiveTime,
    working_days: BTreeSet<u32>,
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// `holidays` is the text of a holiday file: one `YYYY-MM-DD` per line, `#` comments.
    pub fn new(spec: &CalendarSpec, holidays: &str) -> Result<Calendar, CatalogueError> {
        let tz: Tz = spec.time_zone.parse().map_err(|_| CatalogueError::TimeZone(spec.time_zone.clone()))?;
        let time = |field: &'static str, value: &str| {
            NaiveTime::parse_from_str(value, "%H:%M")
                .map_err(|_| CatalogueError::Time { field, value: value.to_owned() })
        };
        let working_days = spec
            .working_days
            .iter()
            .map(|d| {
                d.parse::<Weekday>().map(|w| w.num_days_from_monday()).map_err(|_| CatalogueError::Weekday(d.clone()))
            })
            .collect::<Result<_, _>>()?;
        let mut dates = BTreeSet::new();
        for (index, line) in holidays.lines().enumerate() {
            let text = line.split('#').next().unwrap_or_default().trim();
            if text.is_empty() {
                continue;
            }
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| CatalogueError::Holiday { line: index + 1, text: text.to_owned() })?;
            dates.insert(date);
        }
        Ok(Calendar {
            tz,
            opens: time("calendar.opens", &spec.opens)?,
            closes: time("calendar.closes", &spec.closes)?,
            working_days,
            holidays: dates,
        })
    }

    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        self.working_days.contains(&day.weekday().num_days_from_monday()) && !self.holidays.contains(&day)
    }

    /// Seconds of business time in `[from, to)`. Each local working day contributes the overlap
    /// with its opening hours, computed in the time zone, so a day of 23 or 25 hours is counted
    /// right. Gaps are capped at 400 days of walking.
    pub fn business_seconds(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        if to <= from {
            return 0;
        }
        let first = from.with_timezone(&self.tz).date_naive();
        let last = to.with_timezone(&self.tz).date_naive();
        let mut total = 0;
        let mut day = first;
        let mut walked = 0;
        while day <= last && walked < 400 {
            if self.is_working_day(day)
                && let (Some(open), Some(close)) = (self.local(day, self.opens), self.local(day, self.closes))
            {
                let start = open.max(from);
                let end = close.min(to);
                if end > start {
                    total += (end - start).num_seconds();
                }
            }
            day = day.succ_opt().unwrap_or(day);
            walked += 1;
        }
        total
    }

    /// A local wall time on `day` as UTC; in a DST gap, the first valid instant after it.
    fn local(&self, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        let naive = day.and_time(time);
        match self.tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            chrono::LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
            chrono::LocalResult::None => self.local(day, time + Duration::hours(1)),
        }
    }
}

impl Catalogue {
    /// Checks the catalogue as a whole (unique ids, sane thresholds).
    pub fn validate(&self) -> Result<(), CatalogueError> {
        let mut seen = BTreeSet::new();
        for system in &self.systems {
            if !seen.insert(system.id.as_str()) {
                return Err(CatalogueError::Duplicate(system.id.clone()));
            }
            let h = system.heartbeat;
            if h.period_s <= 0 || h.grace_s < 0 || h.red_after_s <= h.period_s + h.grace_s {
                return Err(CatalogueError::System {
                    id: system.id.clone(),
                    reason: "heartbeat needs period_s > 0, grace_s >= 0 and red_after_s > period_s + grace_s".into(),
                });
            }
            if !Source::PRODUCERS.contains(&system.owner) {
                return Err(CatalogueError::System {
                    id: system.id.clone(),
                    reason: "its owner must be a producer source".into(),
                });
            }
        }
        Ok(())
    }

    pub fn system(&self, id: &str) -> Option<&SystemSpec> {
        self.systems.iter().find(|s| s.id == id)
    }
}

/// Why a producer may not speak for a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    Owner,
    UnknownSystem,
    OwnedBy(Source),
}

impl Catalogue {
    pub fn ownership(&self, system_id: &str, source: Source) -> Ownership {
        match self.system(system_id) {
            None => Ownership::UnknownSystem,
            Some(spec) if spec.owner == source => Ownership::Owner,
            Some(spec) => Ownership::OwnedBy(spec.owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Calendar {
        let spec = CalendarSpec {
            time_zone: "Europe/London".into(),
            opens: "09:00".into(),
            closes: "17:30".into(),
            working_days: ["Mon", "Tue", "Wed", "Thu", "Fri"].map(String::from).to_vec(),
        };
        Calendar::new(&spec, "# comment\n2026-12-25  # Christmas Day\n\n2026-12-28\n").expect("valid calendar")
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn business_time_counts_only_working_hours_of_working_days() {
        let c = london();
        // Tuesday in winter (London = UTC).
        assert_eq!(c.business_seconds(at("2026-03-03T11:00:00Z"), at("2026-03-03T11:20:00Z")), 1200);
        // 02:00 to 03:00 and a whole Saturday count nothing.
        assert_eq!(c.business_seconds(at("2026-03-03T02:00:00Z"), at("2026-03-03T03:00:00Z")), 0);
        assert_eq!(c.business_seconds(at("2026-03-07T00:00:00Z"), at("2026-03-08T00:00:00Z")), 0);
        // Tuesday 17:00 to Wednesday 09:30: the last half hour and the first.
        assert_eq!(c.business_seconds(at("2026-03-03T17:00:00Z"), at("2026-03-04T09:30:00Z")), 3600);
        // Friday 17:00 to Monday 09:15: 30 + 15 minutes.
        assert_eq!(c.business_seconds(at("2026-03-06T17:00:00Z"), at("2026-03-09T09:15:00Z")), 2700);
        // A holiday (Friday 25 December) counts nothing.
        assert_eq!(c.business_seconds(at("2026-12-25T00:00:00Z"), at("2026-12-26T00:00:00Z")), 0);
        assert_eq!(c.business_seconds(at("2026-03-03T12:00:00Z"), at("2026-03-03T11:00:00Z")), 0);
    }

    #[test]
    fn business_hours_follow_summer_time() {
        let c = london();
        // Monday 30 March 2026, the day after the clocks go forward: 09:00 local is 08:00 UTC.
        assert_eq!(c.business_seconds(at("2026-03-30T07:30:00Z"), at("2026-03-30T08:00:00Z")), 0);
        assert_eq!(c.business_seconds(at("2026-03-30T08:00:00Z"), at("2026-03-30T09:00:00Z")), 3600);
        // A whole working day is 8.5 hours whatever the offset.
        assert_eq!(c.business_seconds(at("2026-03-30T00:00:00Z"), at("2026-03-31T00:00:00Z")), 30_600);
        assert_eq!(c.business_seconds(at("2026-10-26T00:00:00Z"), at("2026-10-27T00:00:00Z")), 30_600);
    }

    #[test]
    fn bad_calendars_name_the_problem() {
        let mut spec = CalendarSpec {
            time_zone: "Mars/Olympus".into(),
            opens: "09:00".into(),
            closes: "17:30".into(),
            working_days: vec!["Mon".into()],
        };
        assert!(matches!(Calendar::new(&spec, ""), Err(CatalogueError::TimeZone(_))));
        spec.time_zone = "Europe/London".into();
        assert!(matches!(Calendar::new(&spec, "2026-13-01\n"), Err(CatalogueError::Holiday { line: 1, .. })));
        spec.opens = "9am".into();
        assert!(matches!(Calendar::new(&spec, ""), Err(CatalogueError::Time { field: "calendar.opens", .. })));
    }

    #[test]
    fn ownership_tells_owner_stranger_and_unknown_apart() {
        let spec = |id: &str, owner: Source| SystemSpec {
            id: id.into(),
            name: id.into(),
            owner,
            heartbeat: HeartbeatSpec { period_s: 300, grace_s: 600, red_after_s: 3600, business_hours_only: true },
            slos: None,
        };
        let catalogue = Catalogue {
            calendar: CalendarSpec {
                time_zone: "UTC".into(),
                opens: "09:00".into(),
                closes: "17:00".into(),
                working_days: vec![],
            },
            systems: vec![spec("portal", Source::Portal), spec("finance", Source::Finance)],
        };
        catalogue.validate().expect("valid");
        assert_eq!(catalogue.ownership("portal", Source::Portal), Ownership::Owner);
        assert_eq!(catalogue.ownership("portal", Source::Finance), Ownership::OwnedBy(Source::Portal));
        assert_eq!(catalogue.ownership("made-up", Source::Portal), Ownership::UnknownSystem);
        let twice = Catalogue { systems: vec![spec("a", Source::Portal), spec("a", Source::Portal)], ..catalogue };
        assert!(matches!(twice.validate(), Err(CatalogueError::Duplicate(_))));
    }
}
