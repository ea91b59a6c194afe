//! Dead letters, without I/O: the context a stage attaches to one (carried in `ct-dlq-*`
//! headers, as Kafka Connect carries its `__connect.errors.*` context, so the record value stays
//! the original bytes any tool can decode), the three categories, the rules that choose one
//! (data from configuration, first match wins), the retry schedule, and the audit record.

use std::{fmt, str::FromStr, sync::LazyLock, time::Duration};

use apache_avro::Schema;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::CodecError;

/// Header names of the dead-letter context.
pub mod header {
    pub const PREFIX: &str = "ct-dlq-";
    pub const STAGE: &str = "ct-dlq-stage";
    pub const STEP: &str = "ct-dlq-step";
    pub const ERROR_CLASS: &str = "ct-dlq-error-class";
    pub const ERROR_MESSAGE: &str = "ct-dlq-error-message";
    pub const ATTEMPT: &str = "ct-dlq-attempt";
    pub const ORIGINAL_TOPIC: &str = "ct-dlq-original-topic";
    pub const ORIGINAL_PARTITION: &str = "ct-dlq-original-partition";
    pub const ORIGINAL_OFFSET: &str = "ct-dlq-original-offset";
    pub const FIRST_FAILURE_AT: &str = "ct-dlq-first-failure-at";
    pub const LAST_FAILURE_AT: &str = "ct-dlq-last-failure-at";
    /// Set by the categoriser.
    pub const CATEGORY: &str = "ct-dlq-category";
    pub const RULE: &str = "ct-dlq-rule";
    /// Set on `ct.retry.v1`: the stage that must take the record again, and the attempt that
    /// failed (the stage's next failure of it is attempt + 1).
    pub const RETRY_STAGE: &str = "ct-retry-stage";
    pub const RETRY_ATTEMPT: &str = "ct-retry-attempt";
    /// `scheduler` (automatic transient retry) or `replay` (an SRE's `ct dlq replay`).
    pub const RETRY_ORIGIN: &str = "ct-retry-origin";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Category {
    /// The record cannot be decoded or validated: replaying it as is fails again.
    Schema,
    /// A dependency was down or slow: retried automatically with backoff.
    Transient,
    /// Anything else, and transient failures that used up their attempts: needs a person.
    Critical,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Schema, Category::Transient, Category::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Schema => "SCHEMA",
            Category::Transient => "TRANSIENT",
            Category::Critical => "CRITICAL",
        }
    }

    /// `schema`, `transient`, `critical`: for topic names, URLs and metric labels.
    pub fn lowercase(self) -> &'static str {
        match self {
            Category::Schema => "schema",
            Category::Transient => "transient",
            Category::Critical => "critical",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category `{0}` (expected schema, transient or critical)")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

/// The dead-letter context of one record, read from its headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    pub stage: String,
    pub step: String,
    pub error_class: String,
    pub message: String,
    pub attempt: u32,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub first_failure_at: DateTime<Utc>,
    pub last_failure_at: DateTime<Utc>,
}

impl Context {
    /// Reads the context from headers. A record that reached a dead-letter topic without it
    /// (written there by hand or by a foreign tool) still gets one: stage `unknown`, its own
    /// coordinates as the original ones and `now` as its failure time, so it is never dropped.
    pub fn from_headers<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        own: (&str, i32, i64),
        now: DateTime<Utc>,
    ) -> Context {
        let text = |name: &str, default: &str| header(name).unwrap_or(default).to_owned();
        let time = |name: &str| {
            header(name).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map_or(now, |t| t.with_timezone(&Utc))
        };
        let original_topic = header(header::ORIGINAL_TOPIC);
        let coordinates = match (
            original_topic,
            header(header::ORIGINAL_PARTITION).and_then(|p| p.parse().ok()),
            header(header::ORIGINAL_OFFSET).and_then(|o| o.parse().ok()),
        ) {
            (Some(topic), Some(partition), Some(offset)) => (topic.to_owned(), partition, offset),
            _ => (own.0.to_owned(), own.1, own.2),
        };
        let last_failure_at = time(header::LAST_FAILURE_AT);
        Context {
            stage: text(header::STAGE, "unknown"),
            step: text(header::STEP, "unknown"),
            error_class: text(header::ERROR_CLASS, "UNKNOWN"),
            message: text(header::ERROR_MESSAGE, "no dead-letter context on the record"),
            attempt: header(header::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(1).max(1),
            original_topic: coordinates.0,
            original_partition: coordinates.1,
            original_offset: coordinates.2,
            first_failure_at: header(header::FIRST_FAILURE_AT)
                .map_or(last_failure_at, |_| time(header::FIRST_FAILURE_AT)),
            last_failure_at,
        }
    }

    /// The context as `ct-dlq-*` headers (times in RFC 3339).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (header::STAGE, self.stage.clone()),
            (header::STEP, self.step.clone()),
            (header::ERROR_CLASS, self.error_class.clone()),
            (header::ERROR_MESSAGE, self.message.clone()),
            (header::ATTEMPT, self.attempt.to_string()),
            (header::ORIGINAL_TOPIC, self.original_topic.clone()),
            (header::ORIGINAL_PARTITION, self.original_partition.to_string()),
            (header::ORIGINAL_OFFSET, self.original_offset.to_string()),
            (header::FIRST_FAILURE_AT, self.first_failure_at.to_rfc3339()),
            (header::LAST_FAILURE_AT, self.last_failure_at.to_rfc3339()),
        ]
    }

    /// The id of the dead-lettered item: one per stage and original record, whatever the
    /// number of attempts, so duplicates and later attempts update one row.
    pub fn item_id(&self) -> String {
        item_id(&self.stage, &self.original_topic, self.original_partition, self.original_offset)
    }
}

pub fn item_id(stage: &str, topic: &str, partition: i32, offset: i64) -> String {
    format!("{stage}:{topic}:{partition}:{offset}")
}

/// Conditions of a rule; all that are set must hold. Text comparisons ignore case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    pub stage: Option<String>,
    pub step: Option<String>,
    pub error_class: Option<String>,
    /// Holds when the message contains any of these.
    #[serde(default)]
    pub message_contains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    pub name: String,
    pub category: Category,
    #[serde(default)]
    pub when: Conditions,
}

impl CategoryRule {
    fn matches(&self, context: &Context) -> bool {
        let equal = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have));
        let message = context.message.to_lowercase();
        equal(&self.when.stage, &context.stage)
            && equal(&self.when.step, &context.step)
            && equal(&self.when.error_class, &context.error_class)
            && (self.when.message_contains.is_empty()
                || self.when.message_contains.iter().any(|needle| message.contains(&needle.to_lowercase())))
    }
}

/// The categoriser's rules: the first that matches wins; none matching means CRITICAL.
/// A TRANSIENT choice at or beyond `max_transient_attempts` becomes CRITICAL, so retries end
/// whatever the rules say.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub max_transient_attempts: u32,
    pub rules: Vec<CategoryRule>,
}

/// The chosen category and the name of the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub category: Category,
    pub rule: String,
}

pub const NO_RULE: &str = "no-rule-matched";
pub const TRANSIENT_EXHAUSTED: &str = "transient-attempts-exhausted";

impl Rules {
    pub fn categorise(&self, context: &Context) -> Decision {
        let Some(rule) = self.rules.iter().find(|rule| rule.matches(context)) else {
            return Decision { category: Category::Critical, rule: NO_RULE.to_owned() };
        };
        if rule.category == Category::Transient && context.attempt >= self.max_transient_attempts {
            return Decision { category: Category::Critical, rule: TRANSIENT_EXHAUSTED.to_owned() };
        }
        Decision { category: rule.category, rule: rule.name.clone() }
    }
}

/// Exponential backoff of the transient retry: `base * 2^(attempt-1)`, at most `cap`.
pub fn retry_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 2_u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(cap)
}

/// When a transient item may be retried: its last failure plus the backoff of its attempt.
/// An absolute time taken from the record itself, so the delay survives restarts.
pub fn retry_due(context: &Context, base: Duration, cap: Duration) -> DateTime<Utc> {
    let delay = chrono::Duration::from_std(retry_delay(context.attempt, base, cap)).unwrap_or(chrono::Duration::MAX);
    context.last_failure_at.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Replay,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Replayed,
    Reparked,
    Skipped,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replay => "REPLAY",
            Action::Skip => "SKIP",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Replayed => "REPLAYED",
            Outcome::Reparked => "REPARKED",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

/// What was done to a dead letter, by whom, when and why: the value of `ct.audit.v1`.
/// Field order must equal `schemas-avro/ct.v1.DlqAudit.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub audit_id: String,
    pub item_id: String,
    pub action: Action,
    pub outcome: Outcome,
    pub actor: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub reason: String,
    pub detail: Option<String>,
    pub attempt: i32,
}

pub const AUDIT_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.DlqAudit.avsc");

static AUDIT_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(AUDIT_SCHEMA_JSON).expect("schemas-avro/ct.v1.DlqAudit.avsc is valid Avro"));

pub fn audit_schema() -> &'static Schema {
    &AUDIT_SCHEMA
}

/// The Avro datum (no wire header) of an audit record. Audits are rare, so the `Value` path's
/// cost does not matter here.
pub fn encode_audit(audit: &Audit) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(audit_schema(), audit)
}

/// Decodes an audit datum written with `writer`, resolved against the current schema.
pub fn decode_audit(writer: &Schema, datum: &[u8]) -> Result<Audit, CodecError> {
    crate::avro::decode_record(writer, audit_schema(), datum)
}

/// The dead-letter audit in `datum`, or `None` when `writer` is another record type of the audit
/// topic (an alert action).
pub fn decode_dlq_audit(writer: &Schema, datum: &[u8]) -> Result<Option<Audit>, CodecError> {
    if crate::avro::record_name(writer).as_deref() != Some("ct.v1.DlqAudit") {
        return Ok(None);
    }
    decode_audit(writer, datum).map(Some)
}

/// The number of parked dead letters, published by the categoriser on the audit topic. Field
/// order must equal `schemas-avro/ct.v1.DlqDepth.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depth {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub written_at: DateTime<Utc>,
    pub parked: i64,
    pub by_category: std::collections::BTreeMap<String, i64>,
}

pub const DEPTH_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.DlqDepth.avsc");
pub const DEPTH_RECORD: &str = "ct.v1.DlqDepth";

static DEPTH_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(DEPTH_SCHEMA_JSON).expect("schemas-avro/ct.v1.DlqDepth.avsc is valid Avro"));

pub fn encode_depth(depth: &Depth) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(&DEPTH_SCHEMA, depth)
}

/// The depth report in `datum`, or `None` when `writer` is another record type of the audit topic.
pub fn decode_depth(writer: &Schema, datum: &[u8]) -> Result<Option<Depth>, CodecError> {
    if crate::avro::record_name(writer).as_deref() != Some(DEPTH_RECORD) {
        return Ok(None);
    }
    crate::avro::decode_record(writer, &DEPTH_SCHEMA, datum).map(Some)
}

/// What a replay or skip of dead letters would do: printed by `ct dlq replay|skip --dry-run` and
/// before asking, and shown by the exceptions page for one item. Pure, so both say the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub action: &'static str,
    pub items: usize,
    /// `category/stage` -> count.
    pub by_category_and_stage: std::collections::BTreeMap<String, usize>,
    /// Where the records go (replay) or what is written (skip).
    pub destination: String,
    pub audit_topic: String,
    pub ids: Vec<String>,
    pub dry_run: bool,
}

/// One dead letter as a plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlanItem<'a> {
    pub id: &'a str,
    pub category: &'a str,
    pub stage: &'a str,
}

/// The plan of `action` over `items`; a replay hands the records back through `retry_topic`.
pub fn plan<'a>(
    action: Action,
    items: impl IntoIterator<Item = PlanItem<'a>>,
    retry_topic: &str,
    audit_topic: &str,
    dry_run: bool,
) -> Plan {
    let mut by_category_and_stage = std::collections::BTreeMap::new();
    let mut ids = Vec::new();
    for item in items {
        *by_category_and_stage.entry(format!("{}/{}", item.category, item.stage)).or_insert(0) += 1;
        ids.push(item.id.to_owned());
    }
    let destination = match action {
        Action::Replay => format!("{retry_topic} (header {} = the item's stage)", header::RETRY_STAGE),
        Action::Skip => "nowhere: the items are marked skipped".to_owned(),
    };
    Plan {
        action: action.as_str(),
        items: ids.len(),
        by_category_and_stage,
        destination,
        audit_topic: audit_topic.to_owned(),
        ids,
        dry_run,
    }
}

impl Plan {
    /// The plan as the CLI prints it, line by line (at most ten ids).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} {} item(s){}",
            self.action.to_lowercase(),
            self.items,
            if self.dry_run { " (dry run)" } else { "" }
        )];
        lines.extend(self.by_category_and_stage.iter().map(|(group, count)| format!("  {count:>6}  {group}")));
        lines.push(format!("  to: {}", self.destination));
        lines.push(format!("  audit: {}", self.audit_topic));
        lines.extend(self.ids.iter().take(10).map(|id| format!("  - {id}")));
        if self.ids.len() > 10 {
            lines.push(format!("  … and {} more", self.ids.len() - 10));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn depth_reports_round_trip_and_other_records_pass() {
        let depth = Depth {
            written_at: "2026-03-03T11:00:00Z".parse().unwrap(),
            parked: 3,
            by_category: [("schema".to_owned(), 1), ("transient".to_owned(), 2)].into(),
        };
        assert_eq!(decode_depth(&DEPTH_SCHEMA, &encode_depth(&depth).unwrap()).unwrap(), Some(depth));
        assert_eq!(decode_depth(crate::alerting::action_schema(), b"").unwrap(), None);
    }

    fn context(class: &str, step: &str, message: &str, attempt: u32) -> Context {
        let attempt = attempt.to_string();
        let headers: HashMap<&str, &str> = HashMap::from([
            (header::STAGE, "ct-projector"),
            (header::STEP, step),
            (header::ERROR_CLASS, class),
            (header::ERROR_MESSAGE, message),
            (header::ATTEMPT, attempt.as_str()),
            (header::ORIGINAL_TOPIC, "ct.events.v1"),
            (header::ORIGINAL_PARTITION, "2"),
            (header::ORIGINAL_OFFSET, "41"),
            (header::FIRST_FAILURE_AT, "2026-11-24T10:00:00Z"),
            (header::LAST_FAILURE_AT, "2026-11-24T10:05:00Z"),
        ]);
        Context::from_headers(|name| headers.get(name).copied(), ("ct.dlq.v1", 0, 7), Utc::now())
    }

    fn rules() -> Rules {
        toml::from_str(
            r#"
            max_transient_attempts = 4
            [[rules]]
            name = "cannot-decode"
            category = "SCHEMA"
            when = { step = "decode" }
            [[rules]]
            name = "dependency-down"
            category = "TRANSIENT"
            when = { error_class = "transient" }
            [[rules]]
            name = "timeouts"
            category = "TRANSIENT"
            when = { message_contains = ["timed out", "Connection refused"] }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn context_comes_from_the_headers_and_names_the_original_record() {
        let c = context("SCHEMA", "decode", "bad magic byte", 1);
        assert_eq!(c.item_id(), "ct-projector:ct.events.v1:2:41");
        assert_eq!(c.first_failure_at.to_rfc3339(), "2026-11-24T10:00:00+00:00");
        assert_eq!(c.last_failure_at.to_rfc3339(), "2026-11-24T10:05:00+00:00");
    }

    #[test]
    fn context_headers_read_back_to_the_same_context() {
        let c = context("TRANSIENT", "apply", "pool timed out", 3);
        let headers = c.headers();
        let again = Context::from_headers(
            |name| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()),
            ("elsewhere", 0, 0),
            Utc::now(),
        );
        assert_eq!(again, c);
    }

    #[test]
    fn a_record_without_context_is_kept_under_its_own_coordinates() {
        let now = Utc::now();
        let c = Context::from_headers(|_| None, ("ct.dlq.v1", 1, 9), now);
        assert_eq!((c.stage.as_str(), c.attempt, c.last_failure_at), ("unknown", 1, now));
        assert_eq!(c.item_id(), "unknown:ct.dlq.v1:1:9");
        assert_eq!(rules().categorise(&c).category, Category::Critical);
    }

    #[test]
    fn the_first_matching_rule_wins_and_no_match_is_critical() {
        let rules = rules();
        let decide = |c: &Context| rules.categorise(c);
        assert_eq!(
            decide(&context("SCHEMA", "decode", "x", 1)),
            Decision { category: Category::Schema, rule: "cannot-decode".into() }
        );
        assert_eq!(decide(&context("TRANSIENT", "apply", "pool closed", 1)).rule, "dependency-down");
        assert_eq!(decide(&context("CRITICAL", "apply", "connection REFUSED", 1)).rule, "timeouts");
        assert_eq!(
            decide(&context("CRITICAL", "apply", "check constraint", 1)),
            Decision { category: Category::Critical, rule: NO_RULE.into() }
        );
    }

    #[test]
    fn transient_items_become_critical_when_their_attempts_are_used_up() {
        let rules = rules();
        assert_eq!(rules.categorise(&context("TRANSIENT", "apply", "down", 3)).category, Category::Transient);
        let exhausted = rules.categorise(&context("TRANSIENT", "apply", "down", 4));
        assert_eq!(exhausted, Decision { category: Category::Critical, rule: TRANSIENT_EXHAUSTED.into() });
        // A SCHEMA decision is not affected by the attempt count.
        assert_eq!(rules.categorise(&context("SCHEMA", "decode", "x", 9)).category, Category::Schema);
    }

    #[test]
    fn unknown_rule_fields_are_refused() {
        let error = toml::from_str::<Rules>(
            "max_transient_attempts = 1\n[[rules]]\nname='a'\ncategory='SCHEMA'\nwhen={colour='red'}",
        )
        .unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap_and_due_time_is_absolute() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (1..=6).map(|a| retry_delay(a, base, cap).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry_delay(u32::MAX, base, Duration::MAX), base.saturating_mul(1 << 20));
        let c = context("TRANSIENT", "apply", "down", 3);
        assert_eq!((retry_due(&c, base, cap) - c.last_failure_at).num_seconds(), 4);
    }

    #[test]
    fn categories_parse_in_any_case() {
        assert_eq!("schema".parse::<Category>(), Ok(Category::Schema));
        assert_eq!("CRITICAL".parse::<Category>(), Ok(Category::Critical));
        assert!("nope".parse::<Category>().is_err());
    }

    #[test]
    fn audit_records_round_trip_through_their_schema() {
        let audit = Audit {
            audit_id: "0190a1b2".into(),
            item_id: "ct-projector:ct.events.v1:2:41".into(),
            action: Action::Replay,
            outcome: Outcome::Reparked,
            actor: "sre@example".into(),
            at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            reason: "schema fixed".into(),
            detail: Some("still bad".into()),
            attempt: 2,
        };
        let datum = encode_audit(&audit).unwrap();
        assert_eq!(decode_audit(audit_schema(), &datum).unwrap(), audit);
    }

    #[test]
    fn a_plan_groups_by_category_and_stage_and_names_where_records_go() {
        let items = [
            PlanItem { id: "a", category: "SCHEMA", stage: "projector" },
            PlanItem { id: "b", category: "SCHEMA", stage: "projector" },
            PlanItem { id: "c", category: "CRITICAL", stage: "edge" },
        ];
        let plan = plan(Action::Replay, items, "ct.retry.v1", "ct.audit.v1", true);
        assert_eq!(plan.items, 3);
        assert_eq!(plan.by_category_and_stage.get("SCHEMA/projector"), Some(&2));
        assert_eq!(
            plan.lines(),
            [
                "replay 3 item(s) (dry run)",
                "       1  CRITICAL/edge",
                "       2  SCHEMA/projector",
                "  to: ct.retry.v1 (header ct-retry-stage = the item's stage)",
                "  audit: ct.audit.v1",
                "  - a",
                "  - b",
                "  - c",
            ]
        );
        let skip = super::plan(Action::Skip, items, "ct.retry.v1", "ct.audit.v1", false);
        assert_eq!(skip.destination, "nowhere: the items are marked skipped");
    }
}
