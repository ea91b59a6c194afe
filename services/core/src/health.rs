//! Health rules as data: a catalogued system's status at a moment of the log's clock, and why.
//! Pure: the evaluator gathers the facts (from the log, before a clock tick) and calls
//! [`evaluate`]; the same facts and the same moment always give the same verdict, word for word,
//! so a rebuild reproduces every status and every reason.

use chrono::{DateTime, Duration, Utc};

use crate::catalogue::{Calendar, SystemSpec};

/// Statuses, with the words Statuspage uses for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Green,
    Unknown,
    Amber,
    Red,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Amber => "amber",
            Status::Red => "red",
            Status::Unknown => "unknown",
        }
    }

    /// The most severe status among systems that report one; `unknown` only when none does, so
    /// a system that never sends heartbeats does not hide the others.
    pub fn overall(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses.into_iter().filter(|s| *s != Status::Unknown).max().unwrap_or(Status::Unknown)
    }

    /// Statuspage's component status for this status.
    pub fn statuspage(self) -> &'static str {
        match self {
            Status::Green => "operational",
            Status::Amber => "degraded_performance",
            Status::Red => "major_outage",
            Status::Unknown => "unknown",
        }
    }
}

impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What the log says about one system, as of the moment evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The latest heartbeat's `ts`, if any.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// `backend.fn.error` events of severity `high` in the 24 h before the moment.
    pub high_errors_24h: u32,
}

/// Thresholds of the error rule (the seeds: errors in the last 24 h, by severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRule {
    pub amber_at: u32,
    pub red_at: u32,
}

impl Default for ErrorRule {
    fn default() -> Self {
        Self { amber_at: 1, red_at: 10 }
    }
}

/// A status with the rule that decided it and a sentence a person reads ("amber because ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub rule: &'static str,
    pub message: String,
}

/// `1h02m`, `17m`, `45s`: durations as a person reads them, without rounding up.
pub fn human(duration: Duration) -> String {
    let total = duration.num_seconds().max(0);
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m:02}m"),
    }
}

fn heartbeat_verdict(spec: &SystemSpec, calendar: &Calendar, facts: &Facts, at: DateTime<Utc>) -> Verdict {
    let Some(last) = facts.last_heartbeat else {
        return Verdict { status: Status::Unknown, rule: "heartbeat", message: "no heartbeat seen yet".into() };
    };
    let h = spec.heartbeat;
    let (gap, kind) = if h.business_hours_only {
        (Duration::seconds(calendar.business_seconds(last, at)), " of business time")
    } else {
        (at - last, "")
    };
    let since = last.format("%Y-%m-%d %H:%M UTC");
    let amber_after = Duration::seconds(h.period_s + h.grace_s);
    let red_after = Duration::seconds(h.red_after_s);
    if gap > red_after {
        Verdict {
            status: Status::Red,
            rule: "heartbeat",
            message: format!("no heartbeat for {}{kind} since {since} (red after {})", human(gap), human(red_after)),
        }
    } else if gap > amber_after {
        Verdict {
            status: Status::Amber,
            rule: "heartbeat",
            message: format!(
                "no heartbeat for {}{kind} since {since} (amber after {})",
                human(gap),
                human(amber_after)
            ),
        }
    } else {
        Verdict { status: Status::Green, rule: "heartbeat", message: format!("last heartbeat at {since}") }
    }
}

fn error_verdict(rule: ErrorRule, facts: &Facts) -> Verdict {
    let n = facts.high_errors_24h;
    let status = if n >= rule.red_at {
        Status::Red
    } else if n >= rule.amber_at {
        Status::Amber
    } else {
        Status::Green
    };
    let plural = if n == 1 { "" } else { "s" };
    Verdict { status, rule: "errors", message: format!("{n} high-severity function error{plural} in the last 24 h") }
}

/// The system's status at `at`: the worst of its rules (red > amber > unknown > green); among
/// equals, the first rule in the order heartbeat, errors. The message says which rule and why.
pub fn evaluate(
    spec: &SystemSpec,
    calendar: &Calendar,
    errors: ErrorRule,
    facts: &Facts,
    at: DateTime<Utc>,
) -> Verdict {
    let verdicts = [heartbeat_verdict(spec, calendar, facts, at), error_verdict(errors, facts)];
    let worst = verdicts.iter().map(|v| v.status).max().unwrap_or(Status::Unknown);
    let decisive = verdicts.into_iter().find(|v| v.status == worst).expect("one verdict has the worst status");
    Verdict { message: format!("{} because {}", worst.as_str(), decisive.message), ..decisive }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Source,
        catalogue::{CalendarSpec, HeartbeatSpec},
    };

    fn spec() -> SystemSpec {
        SystemSpec {
            id: "finance".into(),
            name: "Finance".into(),
            owner: Source::Finance,
            heartbeat: HeartbeatSpec { period_s: 300, grace_s: 600, red_after_s: 3600, business_hours_only: true },
        }
    }

    fn calendar() -> Calendar {
        let spec = CalendarSpec {
            time_zone: "Europe/London".into(),
            opens: "09:00".into(),
            closes: "17:30".into(),
            working_days: ["Mon", "Tue", "Wed", "Thu", "Fri"].map(String::from).to_vec(),
        };
        Calendar::new(&spec, "2026-12-25\n").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn status_at(last: &str, now: &str) -> Verdict {
        let facts = Facts { last_heartbeat: Some(at(last)), high_errors_24h: 0 };
        evaluate(&spec(), &calendar(), ErrorRule::default(), &facts, at(now))
    }

    #[test]
    fn a_heartbeat_stopping_on_a_tuesday_turns_amber_after_the_grace_then_red() {
        // Tuesday 3 March 2026, 11:00 (London = UTC in winter).
        assert_eq!(status_at("2026-03-03T11:00:00Z", "2026-03-03T11:15:00Z").status, Status::Green, "15 m is allowed");
        let amber = status_at("2026-03-03T11:00:00Z", "2026-03-03T11:16:00Z");
        assert_eq!(amber.status, Status::Amber);
        assert_eq!(
            amber.message,
            "amber because no heartbeat for 16m of business time since 2026-03-03 11:00 UTC (amber after 15m)"
        );
        let red = status_at("2026-03-03T11:00:00Z", "2026-03-03T12:01:00Z");
        assert_eq!((red.status, red.rule), (Status::Red, "heartbeat"));
        assert!(red.message.contains("1h01m"), "{}", red.message);
    }

    #[test]
    fn the_same_gap_on_a_saturday_or_at_night_changes_nothing() {
        assert_eq!(status_at("2026-03-07T11:00:00Z", "2026-03-07T15:00:00Z").status, Status::Green, "Saturday");
        assert_eq!(status_at("2026-03-03T01:00:00Z", "2026-03-03T05:00:00Z").status, Status::Green, "02:00");
        assert_eq!(status_at("2026-12-24T17:29:00Z", "2026-12-28T09:00:00Z").status, Status::Green, "Christmas");
        // Friday evening to Monday 09:20: 1 + 20 minutes of business time.
        assert_eq!(status_at("2026-03-06T17:29:00Z", "2026-03-09T09:20:00Z").status, Status::Amber);
    }

    #[test]
    fn errors_and_heartbeats_combine_worst_first() {
        let facts = Facts { last_heartbeat: Some(at("2026-03-03T11:00:00Z")), high_errors_24h: 3 };
        let v = evaluate(&spec(), &calendar(), ErrorRule::default(), &facts, at("2026-03-03T11:05:00Z"));
        assert_eq!((v.status, v.rule), (Status::Amber, "errors"));
        assert_eq!(v.message, "amber because 3 high-severity function errors in the last 24 h");
        let none = Facts::default();
        let v = evaluate(&spec(), &calendar(), ErrorRule::default(), &none, at("2026-03-03T11:05:00Z"));
        assert_eq!((v.status, v.message.as_str()), (Status::Unknown, "unknown because no heartbeat seen yet"));
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::seconds(45)), "45s");
        assert_eq!(human(Duration::seconds(17 * 60 + 59)), "17m");
        assert_eq!(human(Duration::seconds(3600)), "1h");
        assert_eq!(human(Duration::seconds(3720)), "1h02m");
    }
}
