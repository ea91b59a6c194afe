//! The daily digest's pure rules: which local day an event belongs to, when a day's digest is due,
//! what each event adds to its day ([`observe`]), and the digest itself, built from the day's
//! counts, rendered as JSON and Markdown and hashed ([`Digest::render`]). The same counts always
//! give the same bytes, so a rebuilt digest has the same SHA-256 as the live one.

use std::{collections::BTreeMap, fmt::Write as _};

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    Envelope, Payload,
    money::minor_unit_exponent,
    payload::{RunStatus, Severity},
};

/// The local calendar day holding `at`.
pub fn local_day(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The first instant at or after the local time `time` on `day`: a time inside a spring-forward
/// gap moves to the end of the gap; an ambiguous one (autumn) is its first occurrence.
pub fn local_instant(day: NaiveDate, time: NaiveTime, zone: Tz) -> DateTime<Utc> {
    let mut local = day.and_time(time);
    // Gaps last an hour or two in every zone of the database; step through by minutes.
    for _ in 0..=24 * 60 {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(at) => return at.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => local += chrono::Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&day.and_time(time))
}

/// The UTC span of a local day: `[start, end)`. 23 hours on a spring-forward day, 25 in autumn.
pub fn day_span(day: NaiveDate, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    (local_instant(day, NaiveTime::MIN, zone), local_instant(next, NaiveTime::MIN, zone))
}

/// When the digest of `day` is due: `publish_at` local time on the following day.
pub fn due_at(day: NaiveDate, publish_at: NaiveTime, zone: Tz) -> DateTime<Utc> {
    local_instant(day.checked_add_days(Days::new(1)).unwrap_or(day), publish_at, zone)
}

/// What counts in a digest: a metric, one of its dimensions, and an amount (minor units) where
/// the metric has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub day: NaiveDate,
    pub metric: &'static str,
    pub dimension: String,
    pub amount: i64,
}

pub mod metric {
    pub const EVENTS_BY_SOURCE: &str = "events.source";
    pub const EVENTS_BY_TYPE: &str = "events.type";
    pub const ERRORS_BY_SEVERITY: &str = "errors.severity";
    pub const ERRORS_BY_FUNCTION: &str = "errors.function";
    pub const RUNS_BY_STATUS: &str = "runs.status";
    pub const CI_FAILURES_BY_REPO: &str = "ci_failures.repo";
    pub const INVOICES_BY_CURRENCY: &str = "invoices.currency";
    pub const PAYMENTS_BY_STATUS: &str = "payments.status";
    pub const PAID_BY_CURRENCY: &str = "paid.currency";
    /// `<period>|<contractor id>` of each timesheet (the timesheet gate reads these; the digest
    /// does not show them).
    pub const TIMESHEETS_BY_PERIOD: &str = "timesheets.period";
    /// Dead letters parked per category, as last reported by the DLQ categoriser at or before
    /// the day's end (`ct.v1.DlqDepth` on the audit topic).
    pub const DLQ_PARKED: &str = "dlq.parked";
    /// Dead letters resolved by people that day, by outcome (`ct.v1.DlqAudit`).
    pub const DLQ_RESOLVED: &str = "dlq.resolved";
    /// Per system, its status changes that day (`ct.health.v1`).
    pub const STATUS_CHANGES: &str = "status.changes";
    /// `<system>|<status>`: seconds of the day the system spent in that status.
    pub const STATUS_SECONDS: &str = "status.seconds";
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// What one event adds to the digest of its local day (by its `ts`).
pub fn observe(event: &Envelope, zone: Tz) -> Vec<Fact> {
    let day = local_day(event.ts(), zone);
    let fact = |metric, dimension: &str, amount| Fact { day, metric, dimension: dimension.to_owned(), amount };
    let mut facts = vec![
        fact(metric::EVENTS_BY_SOURCE, event.source().as_str(), 0),
        fact(metric::EVENTS_BY_TYPE, event.event_type().as_str(), 0),
    ];
    match event.payload() {
        Payload::BackendFnError(e) => {
            facts.push(fact(metric::ERRORS_BY_SEVERITY, severity(e.severity), 0));
            facts.push(fact(metric::ERRORS_BY_FUNCTION, &e.fn_name, 0));
        }
        Payload::RunCompleted(r) => facts.push(fact(
            metric::RUNS_BY_STATUS,
            match r.status {
                RunStatus::Success => "success",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
            },
            0,
        )),
        Payload::CiWorkflowFailed(c) => facts.push(fact(metric::CI_FAILURES_BY_REPO, &c.repo, 0)),
        Payload::ExcelTimesheetIngested(t) => {
            // One spelling per week, so `2026-w7` and `2026-W07` meet at the gate.
            let period =
                crate::timesheets::parse_period(&t.period).map_or_else(|| t.period.clone(), crate::timesheets::period);
            facts.push(fact(metric::TIMESHEETS_BY_PERIOD, &format!("{period}|{}", t.contractor_id), 0));
        }
        Payload::FinanceInvoiceGenerated(i) => {
            facts.push(fact(metric::INVOICES_BY_CURRENCY, &i.currency, i.total_minor));
        }
        Payload::FinancePaymentWebhook(p) => {
            facts.push(fact(metric::PAYMENTS_BY_STATUS, &p.status_to.to_ascii_lowercase(), 0));
            if p.status_to.eq_ignore_ascii_case("paid")
                && let (Some(amount), Some(currency)) = (p.amount_minor, &p.currency)
            {
                facts.push(fact(metric::PAID_BY_CURRENCY, currency, amount));
            }
        }
        _ => {}
    }
    facts
}

/// A count and, for money, the sum of the amounts in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: i64,
    pub amount_minor: i64,
}

/// The stored counts of one day: metric -> dimension -> tally.
pub type DayCounts = BTreeMap<String, BTreeMap<String, Tally>>;

/// One day's digest: only what the log said about that local day. Field order is the JSON's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    pub day: NaiveDate,
    pub time_zone: String,
    /// The UTC span of the local day (23, 24 or 25 hours).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub hours: i64,
    pub due_at: DateTime<Utc>,
    /// No event at all: said outright, so silence is never ambiguous.
    pub empty: bool,
    pub events: Events,
    pub failures: Failures,
    pub payments: Payments,
    #[serde(default)]
    pub dead_letters: DeadLetters,
    /// Per catalogued system that ever reported a status: its changes that day and the seconds
    /// it spent in each status (`unknown` before it was first evaluated).
    #[serde(default)]
    pub systems: BTreeMap<String, SystemDay>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemDay {
    pub changes: i64,
    pub seconds: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    /// Parked at the end of the day (the last depth report by then); `None`: never reported.
    pub parked: Option<i64>,
    pub parked_by_category: BTreeMap<String, i64>,
    /// Resolved that day by outcome (`replayed`, `skipped`; `reparked` stayed parked).
    pub resolved_by_outcome: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub total: i64,
    pub by_source: BTreeMap<String, i64>,
    pub by_type: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    pub function_errors: i64,
    pub function_errors_by_severity: BTreeMap<String, i64>,
    pub function_errors_by_function: BTreeMap<String, i64>,
    pub runs_completed_by_status: BTreeMap<String, i64>,
    pub ci_failures: i64,
    pub ci_failures_by_repo: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payments {
    pub invoices_generated: i64,
    /// Currency -> total invoiced, minor units.
    pub invoiced_minor: BTreeMap<String, i64>,
    /// Payment status updates by the status reached.
    pub updates_by_status: BTreeMap<String, i64>,
    /// Currency -> amount paid, minor units (updates to `paid` that carry an amount).
    pub paid_minor: BTreeMap<String, i64>,
}

/// A digest as published: its JSON, its Markdown and the SHA-256 of its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub json: String,
    pub markdown: String,
    pub sha256: String,
}

/// `23h 10m`, `50m`, `0m`.
fn duration_text(seconds: i64) -> String {
    let minutes = seconds / 60;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

fn counts(day: &DayCounts, metric: &str) -> BTreeMap<String, i64> {
    day.get(metric).map(|m| m.iter().map(|(k, t)| (k.clone(), t.count)).collect()).unwrap_or_default()
}

fn amounts(day: &DayCounts, metric: &str) -> BTreeMap<String, i64> {
    day.get(metric).map(|m| m.iter().map(|(k, t)| (k.clone(), t.amount_minor)).collect()).unwrap_or_default()
}

impl Digest {
    pub fn build(day: NaiveDate, zone: Tz, publish_at: NaiveTime, counts_of_day: &DayCounts) -> Digest {
        let (from, to) = day_span(day, zone);
        let by_source = counts(counts_of_day, metric::EVENTS_BY_SOURCE);
        let total = by_source.values().sum();
        let errors = counts(counts_of_day, metric::ERRORS_BY_SEVERITY);
        let ci = counts(counts_of_day, metric::CI_FAILURES_BY_REPO);
        let invoices = counts(counts_of_day, metric::INVOICES_BY_CURRENCY);
        Digest {
            day,
            time_zone: zone.name().to_owned(),
            from,
            to,
            hours: (to - from).num_hours(),
            due_at: due_at(day, publish_at, zone),
            empty: total == 0,
            events: Events { total, by_source, by_type: counts(counts_of_day, metric::EVENTS_BY_TYPE) },
            failures: Failures {
                function_errors: errors.values().sum(),
                function_errors_by_severity: errors,
                function_errors_by_function: counts(counts_of_day, metric::ERRORS_BY_FUNCTION),
                runs_completed_by_status: counts(counts_of_day, metric::RUNS_BY_STATUS),
                ci_failures: ci.values().sum(),
                ci_failures_by_repo: ci,
            },
            payments: Payments {
                invoices_generated: invoices.values().sum(),
                invoiced_minor: amounts(counts_of_day, metric::INVOICES_BY_CURRENCY),
                updates_by_status: counts(counts_of_day, metric::PAYMENTS_BY_STATUS),
                paid_minor: amounts(counts_of_day, metric::PAID_BY_CURRENCY),
            },
            dead_letters: {
                let parked_by_category = counts(counts_of_day, metric::DLQ_PARKED);
                DeadLetters {
                    parked: counts_of_day.contains_key(metric::DLQ_PARKED).then(|| parked_by_category.values().sum()),
                    parked_by_category,
                    resolved_by_outcome: counts(counts_of_day, metric::DLQ_RESOLVED),
                }
            },
            systems: {
                let mut systems: BTreeMap<String, SystemDay> = counts(counts_of_day, metric::STATUS_CHANGES)
                    .into_iter()
                    .map(|(system, changes)| (system, SystemDay { changes, seconds: BTreeMap::new() }))
                    .collect();
                for (key, seconds) in counts(counts_of_day, metric::STATUS_SECONDS) {
                    if let Some((system, status)) = key.split_once('|') {
                        systems.entry(system.to_owned()).or_default().seconds.insert(status.to_owned(), seconds);
                    }
                }
                systems
            },
        }
    }

    /// The JSON (pretty, fields in declaration order, maps sorted), its SHA-256, and the
    /// Markdown, which ends with the same hash.
    pub fn render(&self) -> Rendered {
        let json = serde_json::to_string_pretty(self).expect("a digest serialises") + "\n";
        let sha256 = hex::encode(Sha256::digest(json.as_bytes()));
        let markdown = self.markdown(&sha256);
        Rendered { json, markdown, sha256 }
    }

    fn markdown(&self, sha256: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Daily digest: {} ({})\n", self.day.format("%A %-d %B %Y"), self.time_zone);
        let _ = writeln!(
            md,
            "Covers the local day from 00:00 to 24:00, {} hours ({} to {}).\n",
            self.hours,
            self.from.format("%Y-%m-%d %H:%M UTC"),
            self.to.format("%Y-%m-%d %H:%M UTC")
        );
        md += "## Events\n\n";
        if self.empty {
            md += "No events were received for this day.\n\n";
        } else {
            let _ = writeln!(md, "{} new events.\n", self.events.total);
            table(&mut md, ("Source", "Events"), &self.events.by_source);
            table(&mut md, ("Type", "Events"), &self.events.by_type);
        }
        md += "## Failures\n\n";
        let f = &self.failures;
        if f.function_errors == 0 {
            md += "Function errors: none.\n\n";
        } else {
            let severities: Vec<String> = ["critical", "high", "medium", "low"]
                .iter()
                .filter_map(|s| f.function_errors_by_severity.get(*s).map(|n| format!("{s} {n}")))
                .collect();
            let _ = writeln!(md, "Function errors: {} ({}).\n", f.function_errors, severities.join(", "));
            table(&mut md, ("Function", "Errors"), &f.function_errors_by_function);
        }
        if f.runs_completed_by_status.is_empty() {
            md += "Runs completed: none.\n\n";
        } else {
            let total: i64 = f.runs_completed_by_status.values().sum();
            let parts: Vec<String> = f.runs_completed_by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let _ = writeln!(md, "Runs completed: {total} ({}).\n", parts.join(", "));
        }
        if f.ci_failures == 0 {
            md += "CI workflow failures: none.\n\n";
        } else {
            let _ = writeln!(md, "CI workflow failures: {}.\n", f.ci_failures);
            table(&mut md, ("Repository", "Failures"), &f.ci_failures_by_repo);
        }
        md += "## Payments\n\n";
        let p = &self.payments;
        let _ = writeln!(md, "Invoices generated: {}{}.\n", p.invoices_generated, money_list(&p.invoiced_minor));
        if p.updates_by_status.is_empty() {
            md += "Payment updates: none.\n\n";
        } else {
            let parts: Vec<String> = p.updates_by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let _ = writeln!(md, "Payment updates: {}.\n", parts.join(", "));
            if !p.paid_minor.is_empty() {
                let paid: Vec<String> = p.paid_minor.iter().map(|(c, minor)| format_money(*minor, c)).collect();
                let _ = writeln!(md, "Paid: {}.\n", paid.join(", "));
            }
        }
        md += "## Dead letters\n\n";
        let d = &self.dead_letters;
        match d.parked {
            None => md += "Parked: no depth reported yet.\n\n",
            Some(0) => md += "Parked at the end of the day: none.\n\n",
            Some(parked) => {
                let parts: Vec<String> = d.parked_by_category.iter().map(|(c, n)| format!("{c} {n}")).collect();
                let _ = writeln!(md, "Parked at the end of the day: {parked} ({}).\n", parts.join(", "));
            }
        }
        if d.resolved_by_outcome.is_empty() {
            md += "Resolved: none.\n\n";
        } else {
            let parts: Vec<String> = d.resolved_by_outcome.iter().map(|(o, n)| format!("{o} {n}")).collect();
            let _ = writeln!(md, "Resolved: {}.\n", parts.join(", "));
        }
        md += "## Systems\n\n";
        if self.systems.is_empty() {
            md += "No status reported yet.\n\n";
        } else {
            md += "| System | Changes | Time in each status |\n|---|---:|---|\n";
            for (system, day) in &self.systems {
                let spent: Vec<String> =
                    day.seconds.iter().map(|(status, s)| format!("{status} {}", duration_text(*s))).collect();
                let _ = writeln!(md, "| {system} | {} | {} |", day.changes, spent.join(", "));
            }
            md += "\n";
        }
        let _ = writeln!(md, "---\nContent SHA-256: `{sha256}`");
        md
    }
}

fn table(md: &mut String, (what, count): (&str, &str), rows: &BTreeMap<String, i64>) {
    let _ = writeln!(md, "| {what} | {count} |\n|---|---:|");
    for (name, n) in rows {
        let _ = writeln!(md, "| {} | {n} |", name.replace('|', "\\|"));
    }
    md.push('\n');
}

fn money_list(amounts: &BTreeMap<String, i64>) -> String {
    if amounts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = amounts.iter().map(|(currency, minor)| format_money(*minor, currency)).collect();
    format!(" ({})", parts.join(", "))
}

/// `123456, GBP` -> `GBP 1234.56`, exactly (no floats).
pub fn format_money(minor: i64, currency: &str) -> String {
    let exponent = minor_unit_exponent(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let unsigned = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{currency} {sign}{unsigned}");
    }
    let scale = 10u64.pow(exponent);
    format!("{currency} {sign}{}.{:0width$}", unsigned / scale, unsigned % scale, width = exponent as usize)
}

pub const RECORD_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.Digest.avsc");

static RECORD_SCHEMA: std::sync::LazyLock<apache_avro::Schema> = std::sync::LazyLock::new(|| {
    apache_avro::Schema::parse_str(RECORD_SCHEMA_JSON).expect("schemas-avro/ct.v1.Digest.avsc is valid Avro")
});

/// A digest as published on `ct.digests.v1`. Field order must equal `ct.v1.Digest.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub day: String,
    pub time_zone: String,
    pub sha256: String,
    pub json: String,
    pub markdown: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub due_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub published_at: DateTime<Utc>,
    pub late: bool,
}

pub fn encode_published(record: &Published) -> Result<Vec<u8>, crate::avro::CodecError> {
    crate::avro::encode_record(&RECORD_SCHEMA, record)
}

pub fn decode_published(writer: &apache_avro::Schema, datum: &[u8]) -> Result<Published, crate::avro::CodecError> {
    crate::avro::decode_record(writer, &RECORD_SCHEMA, datum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONDON: Tz = chrono_tz::Europe::London;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_days_around_the_clock_changes_have_23_and_25_hours() {
        // 2026: clocks go forward on Sunday 29 March, back on Sunday 25 October.
        let cases = [
            ("2026-03-28", "2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z", 24),
            ("2026-03-29", "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z", 23),
            ("2026-03-30", "2026-03-29T23:00:00Z", "2026-03-30T23:00:00Z", 24),
            ("2026-10-24", "2026-10-23T23:00:00Z", "2026-10-24T23:00:00Z", 24),
            ("2026-10-25", "2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z", 25),
            ("2026-10-26", "2026-10-26T00:00:00Z", "2026-10-27T00:00:00Z", 24),
        ];
        for (d, from, to, hours) in cases {
            let (start, end) = day_span(day(d), LONDON);
            assert_eq!((start, end, (end - start).num_hours()), (at(from), at(to), hours), "{d}");
        }
    }

    #[test]
    fn digests_are_due_at_eight_local_on_both_sides_of_each_change() {
        let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
        // The digest of a day is due the next morning: GMT (UTC+0) before, BST (UTC+1) after.
        assert_eq!(due_at(day("2026-03-28"), eight, LONDON), at("2026-03-29T07:00:00Z"));
        assert_eq!(due_at(day("2026-03-27"), eight, LONDON), at("2026-03-28T08:00:00Z"));
        assert_eq!(due_at(day("2026-10-24"), eight, LONDON), at("2026-10-25T08:00:00Z"));
        assert_eq!(due_at(day("2026-10-25"), eight, LONDON), at("2026-10-26T08:00:00Z"));
        assert_eq!(due_at(day("2026-10-23"), eight, LONDON), at("2026-10-24T07:00:00Z"));
        // 01:30 does not exist on 29 March (01:00 -> 02:00) and happens twice on 25 October.
        let half_one = NaiveTime::from_hms_opt(1, 30, 0).unwrap();
        assert_eq!(due_at(day("2026-03-28"), half_one, LONDON), at("2026-03-29T01:00:00Z"));
        assert_eq!(due_at(day("2026-10-24"), half_one, LONDON), at("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn an_event_counts_on_its_local_day() {
        assert_eq!(local_day(at("2026-06-30T23:30:00Z"), LONDON), day("2026-07-01"));
        assert_eq!(local_day(at("2026-12-31T23:30:00Z"), LONDON), day("2026-12-31"));
    }

    #[test]
    fn published_digests_round_trip_through_their_schema() {
        let record = Published {
            day: "2026-03-29".into(),
            time_zone: "Europe/London".into(),
            sha256: "ab".into(),
            json: "{}".into(),
            markdown: "# x".into(),
            due_at: at("2026-03-30T07:00:00Z"),
            published_at: at("2026-03-30T07:03:00Z"),
            late: true,
        };
        assert_eq!(decode_published(&RECORD_SCHEMA, &encode_published(&record).unwrap()).unwrap(), record);
    }

    #[test]
    fn money_is_formatted_exactly_in_its_minor_units() {
        assert_eq!(format_money(123456, "GBP"), "GBP 1234.56");
        assert_eq!(format_money(-5, "EUR"), "EUR -0.05");
        assert_eq!(format_money(1500, "JPY"), "JPY 1500");
        assert_eq!(format_money(1234, "KWD"), "KWD 1.234");
    }

    #[test]
    fn an_empty_day_says_so_and_the_same_counts_give_the_same_bytes() {
        let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
        let empty = Digest::build(day("2026-03-29"), LONDON, eight, &DayCounts::new()).render();
        assert!(empty.markdown.contains("No events were received for this day."), "{}", empty.markdown);
        assert!(empty.markdown.contains("23 hours"));
        let mut counts = DayCounts::new();
        counts
            .entry(metric::EVENTS_BY_SOURCE.into())
            .or_default()
            .insert("backend".into(), Tally { count: 2, amount_minor: 0 });
        counts
            .entry(metric::INVOICES_BY_CURRENCY.into())
            .or_default()
            .insert("GBP".into(), Tally { count: 1, amount_minor: 123456 });
        let a = Digest::build(day("2026-03-29"), LONDON, eight, &counts).render();
        let b = Digest::build(day("2026-03-29"), LONDON, eight, &counts.clone()).render();
        assert_eq!(a, b);
        assert_ne!(a.sha256, empty.sha256);
        assert!(a.markdown.contains("Invoices generated: 1 (GBP 1234.56)."), "{}", a.markdown);
        assert!(a.markdown.ends_with(&format!("Content SHA-256: `{}`\n", a.sha256)));
    }
}
