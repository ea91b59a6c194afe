//! Health rules as data: a catalogued system's status at a moment of the log's clock, and why.
//! Pure: the evaluator gathers the facts (from the log, before a clock tick) and calls
//! [`evaluate`]; the same facts and the same moment always give the same verdict, word for word,
//! so a rebuild reproduces every status and every reason.

use std::sync::LazyLock;

use apache_avro::Schema;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    avro::CodecError,
    catalogue::{Calendar, SystemSpec},
};

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

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Green, Status::Amber, Status::Red, Status::Unknown].into_iter().find(|s| s.as_str() == text)
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
    /// Intake latency (`ingest.receivedAt - ts`) of the system's events over the last 24 h.
    pub intake: Option<Intake>,
    /// The system's SLOs whose objective is missed over their window, as sentences
    /// (`ct_core::slo::describe_missed`), in the configuration's order.
    pub missed_slos: Vec<String>,
}

/// The 95th percentile of intake latency over a window, and how many events it was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    pub p95: Duration,
    pub events: u64,
}

impl Intake {
    /// The nearest-rank 95th percentile of a histogram of `(latency in seconds, events)` sorted by
    /// latency; `None` when it holds no event.
    pub fn from_histogram(histogram: &[(i64, u64)]) -> Option<Intake> {
        let events: u64 = histogram.iter().map(|(_, n)| n).sum();
        if events == 0 {
            return None;
        }
        let rank = (events * 95).div_ceil(100);
        let mut seen = 0;
        let p95 = histogram
            .iter()
            .find(|(_, n)| {
                seen += n;
                seen >= rank
            })
            .map_or(0, |(latency, _)| *latency);
        Some(Intake { p95: Duration::seconds(p95), events })
    }
}

/// Thresholds of the error rule (the seeds: errors in the last 24 h, by severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub amber_at: u32,
    pub red_at: u32,
}

impl Default for ErrorRule {
    fn default() -> Self {
        Self { amber_at: 1, red_at: 10 }
    }
}

/// Thresholds of the intake-latency rule (the seeds: p95 over 24 h under 5 min green, 5-10 min
/// amber, over 10 min red), and the fewest events the percentile needs to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRule {
    pub amber_from_s: i64,
    pub red_from_s: i64,
    pub min_events: u64,
}

impl Default for LatencyRule {
    fn default() -> Self {
        Self { amber_from_s: 300, red_from_s: 600, min_events: 20 }
    }
}

/// Every rule's thresholds (configuration: `[rules]` of the health evaluator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub errors: ErrorRule,
    pub intake_latency: LatencyRule,
}

/// A status with the rule that decided it and a sentence a person reads ("amber because ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub rule: &'static str,
    pub message: String,
}

/// `1h02m`, `6m12s`, `17m`, `45s`: durations as a person reads them (seconds only under an
/// hour), without rounding up.
pub fn human(duration: Duration) -> String {
    let total = duration.num_seconds().max(0);
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) if s == 0 => format!("{m}m"),
        (0, m) => format!("{m}m{s:02}s"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m:02}m"),
    }
}

/// The heartbeat rule alone (the heartbeat SLO's time slices are its verdicts).
pub fn heartbeat_verdict(spec: &SystemSpec, calendar: &Calendar, facts: &Facts, at: DateTime<Utc>) -> Verdict {
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

/// Too few events say nothing about a percentile: the rule then leaves the status to the others.
fn latency_verdict(rule: LatencyRule, facts: &Facts) -> Verdict {
    let verdict = |status, message| Verdict { status, rule: "intake_latency", message };
    let Some(intake) = facts.intake.filter(|i| i.events >= rule.min_events) else {
        let events = facts.intake.map_or(0, |i| i.events);
        return verdict(
            Status::Green,
            format!("intake p95 not judged: {events} events in the last 24 h (fewer than {})", rule.min_events),
        );
    };
    let p95 = human(intake.p95);
    let (amber, red) = (Duration::seconds(rule.amber_from_s), Duration::seconds(rule.red_from_s));
    if intake.p95 > red {
        verdict(Status::Red, format!("intake p95 is {p95} over the last 24 h (red over {})", human(red)))
    } else if intake.p95 >= amber {
        verdict(Status::Amber, format!("intake p95 is {p95} over the last 24 h (amber from {})", human(amber)))
    } else {
        verdict(Status::Green, format!("intake p95 is {p95} over the last 24 h"))
    }
}

/// A missed objective (the budget of its window is spent) degrades the system; burning fast is
/// the alerts' business.
fn slo_verdict(facts: &Facts) -> Verdict {
    let verdict = |status, message| Verdict { status, rule: "slo", message };
    match facts.missed_slos.as_slice() {
        [] => verdict(Status::Green, "every SLO is met".into()),
        [one] => verdict(Status::Amber, one.clone()),
        [first, rest @ ..] => {
            let plural = if rest.len() == 1 { "" } else { "s" };
            verdict(Status::Amber, format!("{first} (and {} more SLO{plural} missed)", rest.len()))
        }
    }
}

/// Whether the heartbeat rule judges the minute ending at `at`: always, or only in business
/// time for a system that sleeps (the heartbeat SLO counts these minutes).
pub fn heartbeat_judges(spec: &SystemSpec, calendar: &Calendar, at: DateTime<Utc>) -> bool {
    !spec.heartbeat.business_hours_only || calendar.business_seconds(at - Duration::minutes(1), at) > 0
}

/// The system's status at `at`: the worst of its rules (red > amber > unknown > green); among
/// equals, the first rule in the order heartbeat, errors, intake latency, SLOs. The message says
/// which rule and why.
pub fn evaluate(spec: &SystemSpec, calendar: &Calendar, rules: &Rules, facts: &Facts, at: DateTime<Utc>) -> Verdict {
    let verdicts = [
        heartbeat_verdict(spec, calendar, facts, at),
        error_verdict(rules.errors, facts),
        latency_verdict(rules.intake_latency, facts),
        slo_verdict(facts),
    ];
    let worst = verdicts.iter().map(|v| v.status).max().unwrap_or(Status::Unknown);
    let decisive = verdicts.into_iter().find(|v| v.status == worst).expect("one verdict has the worst status");
    Verdict { message: format!("{} because {}", worst.as_str(), decisive.message), ..decisive }
}

/// The status symbols of `ct.v1.HealthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusSymbol {
    Green,
    Amber,
    Red,
    Unknown,
}

impl From<Status> for StatusSymbol {
    fn from(status: Status) -> Self {
        match status {
            Status::Green => StatusSymbol::Green,
            Status::Amber => StatusSymbol::Amber,
            Status::Red => StatusSymbol::Red,
            Status::Unknown => StatusSymbol::Unknown,
        }
    }
}

/// A status change: the value of `ct.health.v1`. Field order must equal
/// `schemas-avro/ct.v1.HealthChange.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub system_id: String,
    pub status: StatusSymbol,
    pub previous: Option<StatusSymbol>,
    pub statuspage: String,
    pub reason: String,
    pub message: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub last_transition_time: DateTime<Utc>,
}

pub const CHANGE_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.HealthChange.avsc");

static CHANGE_SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(CHANGE_SCHEMA_JSON).expect("schemas-avro/ct.v1.HealthChange.avsc is valid Avro")
});

pub fn change_schema() -> &'static Schema {
    &CHANGE_SCHEMA
}

pub fn encode_change(change: &Change) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(change_schema(), change)
}

pub fn decode_change(writer: &Schema, datum: &[u8]) -> Result<Change, CodecError> {
    crate::avro::decode_record(writer, change_schema(), datum)
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
            slos: None,
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
        let facts = Facts { last_heartbeat: Some(at(last)), ..Facts::default() };
        evaluate(&spec(), &calendar(), &Rules::default(), &facts, at(now))
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
        let facts = Facts {
            last_heartbeat: Some(at("2026-03-03T11:00:00Z")),
            high_errors_24h: 3,
            intake: None,
            missed_slos: Vec::new(),
        };
        let v = evaluate(&spec(), &calendar(), &Rules::default(), &facts, at("2026-03-03T11:05:00Z"));
        assert_eq!((v.status, v.rule), (Status::Amber, "errors"));
        assert_eq!(v.message, "amber because 3 high-severity function errors in the last 24 h");
        let none = Facts::default();
        let v = evaluate(&spec(), &calendar(), &Rules::default(), &none, at("2026-03-03T11:05:00Z"));
        assert_eq!((v.status, v.message.as_str()), (Status::Unknown, "unknown because no heartbeat seen yet"));
    }

    #[test]
    fn intake_latency_p95_over_24_hours_decides_with_enough_events() {
        let with = |p95_s, events| {
            let facts = Facts {
                last_heartbeat: Some(at("2026-03-03T11:00:00Z")),
                high_errors_24h: 0,
                intake: Some(Intake { p95: Duration::seconds(p95_s), events }),
                missed_slos: Vec::new(),
            };
            evaluate(&spec(), &calendar(), &Rules::default(), &facts, at("2026-03-03T11:05:00Z"))
        };
        assert_eq!(with(299, 100).status, Status::Green);
        let amber = with(6 * 60 + 12, 100);
        assert_eq!((amber.status, amber.rule), (Status::Amber, "intake_latency"));
        assert_eq!(amber.message, "amber because intake p95 is 6m12s over the last 24 h (amber from 5m)");
        assert_eq!(with(600, 100).status, Status::Amber, "10 min is still amber");
        assert_eq!(with(601, 100).status, Status::Red);
        assert_eq!(with(3600, 19).status, Status::Green, "19 events are too few to judge");
    }

    #[test]
    fn a_missed_objective_turns_the_system_amber_and_says_which() {
        let facts = Facts {
            last_heartbeat: Some(at("2026-03-03T11:00:00Z")),
            missed_slos: vec!["run-success of finance is 97.5% over 7 d (objective 99%, 40 events)".into()],
            ..Facts::default()
        };
        let v = evaluate(&spec(), &calendar(), &Rules::default(), &facts, at("2026-03-03T11:05:00Z"));
        assert_eq!((v.status, v.rule), (Status::Amber, "slo"));
        assert_eq!(v.message, "amber because run-success of finance is 97.5% over 7 d (objective 99%, 40 events)");
        assert!(heartbeat_judges(&spec(), &calendar(), at("2026-03-03T11:05:00Z")));
        assert!(!heartbeat_judges(&spec(), &calendar(), at("2026-03-07T11:05:00Z")), "a Saturday");
        assert!(heartbeat_judges(&spec(), &calendar(), at("2026-03-03T17:30:00Z")), "the last minute of the day");
        assert!(!heartbeat_judges(&spec(), &calendar(), at("2026-03-03T17:31:00Z")));
    }

    #[test]
    fn the_95th_percentile_is_the_nearest_rank() {
        assert_eq!(Intake::from_histogram(&[]), None);
        let one = Intake::from_histogram(&[(7, 1)]).unwrap();
        assert_eq!((one.p95, one.events), (Duration::seconds(7), 1));
        // 100 events: 95 at 1 s, 5 at 400 s: the 95th is still 1 s; one more slow one moves it.
        assert_eq!(Intake::from_histogram(&[(1, 95), (400, 5)]).unwrap().p95, Duration::seconds(1));
        assert_eq!(Intake::from_histogram(&[(1, 94), (400, 6)]).unwrap().p95, Duration::seconds(400));
    }

    #[test]
    fn changes_round_trip_through_their_schema() {
        let change = Change {
            system_id: "finance".into(),
            status: Status::Amber.into(),
            previous: Some(Status::Green.into()),
            statuspage: Status::Amber.statuspage().into(),
            reason: "heartbeat".into(),
            message: "amber because ...".into(),
            last_transition_time: at("2026-03-03T11:16:00Z"),
        };
        assert_eq!(decode_change(change_schema(), &encode_change(&change).unwrap()).unwrap(), change);
        assert_eq!(Status::parse("amber"), Some(Status::Amber));
        assert_eq!(Status::parse("purple"), None);
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::seconds(45)), "45s");
        assert_eq!(human(Duration::seconds(17 * 60 + 59)), "17m59s");
        assert_eq!(human(Duration::seconds(17 * 60)), "17m");
        assert_eq!(human(Duration::seconds(3600)), "1h");
        assert_eq!(human(Duration::seconds(3720)), "1h02m");
    }
}
