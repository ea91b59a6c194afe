//! Every body the read API answers, as types serialised by serde. Rows become views here and
//! nowhere else; a test validates each view against its schema in `openapi.yaml` (types, enums,
//! patterns, and the exact set of keys), so the document and the answers cannot drift apart.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use sqlx::{Row, postgres::PgRow};

/// A UTC time written with six fractional digits and `Z` (the document's `MicrosTimestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micros(pub DateTime<Utc>);

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ingest {
    pub received_at: Micros,
    pub trace_id: Option<String>,
}

/// `Event`: one row of the `events` read model.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub ts: Micros,
    pub source: String,
    pub correlation_id: Option<String>,
    pub payload: Value,
    pub ingest: Ingest,
    pub log: LogPosition,
}

/// The columns [`Event::from_row`] reads.
pub const EVENT_COLUMNS: &str =
    r#"event_id, type, source, ts, correlation_id, payload, received_at, trace_id, topic, "partition", "offset""#;

impl Event {
    pub fn from_row(row: &PgRow) -> Event {
        Event {
            event_id: row.get("event_id"),
            event_type: row.get("type"),
            ts: Micros(row.get("ts")),
            source: row.get("source"),
            correlation_id: row.get("correlation_id"),
            payload: row.get("payload"),
            ingest: Ingest { received_at: Micros(row.get("received_at")), trace_id: row.get("trace_id") },
            log: LogPosition { topic: row.get("topic"), partition: row.get("partition"), offset: row.get("offset") },
        }
    }
}

/// `Run` (and `RunWithEvents` when `events` is set): one row of the `runs` read model.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub trigger: Option<String>,
    pub initiator: Option<String>,
    pub inputs: Option<Value>,
    pub status: String,
    pub metrics: Option<Value>,
    pub duration_ms: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Only for the roles that may read events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

impl Run {
    pub fn from_row(row: &PgRow) -> Run {
        let started_at: Option<DateTime<Utc>> = row.get("started_at");
        let status = match (row.get::<Option<String>, _>("completed_status"), started_at) {
            (Some(done), _) => done,
            (None, Some(_)) => "running".to_owned(),
            (None, None) => "unknown".to_owned(),
        };
        Run {
            run_id: row.get("run_id"),
            trigger: row.get("trigger"),
            initiator: row.get("initiator"),
            inputs: row.get("inputs"),
            status,
            metrics: row.get("metrics"),
            duration_ms: row.get("duration_ms"),
            started_at,
            ended_at: row.get("ended_at"),
            events: None,
        }
    }
}

/// `AuditEntry`: one person's action, as the model that applied it keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: Micros,
    /// `alerts`, `dlq` or `runs`.
    pub source: &'static str,
    pub action: String,
    /// The alert, dead-letter item or run acted on.
    pub resource: String,
    pub actor: String,
    pub reason: String,
    pub outcome: String,
}

/// `LineageGraph`: datasets (OpenLineage naming) and the edges jobs reported between them.
#[derive(Debug, Clone, Serialize)]
pub struct LineageGraph {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    /// `<namespace>/<name>`.
    pub id: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineageEdge {
    pub source: String,
    pub target: String,
    pub job: String,
    pub last_run_id: String,
    pub first_seen_at: Micros,
    pub added_at: Micros,
}

/// `TriggerInfo`: one trigger of the allow-list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    pub name: String,
    pub description: String,
    /// The JSON Schema of the request body.
    pub inputs: Value,
    pub attempts: i32,
    pub timeout_s: u64,
    pub sla_s: u64,
    pub rate_limit_per_minute: u32,
    /// The least role that may approve its runs; null: no approval needed.
    pub approval_role: Option<String>,
    /// When it may be triggered (`Mon,Tue 07:00-20:00 Europe/London`); null: any time.
    pub window: Option<String>,
}

/// `TriggeredRun`: a run of an allow-listed trigger, from the runner's read model
/// (`trigger_runs`), with its records (`transitions`) on the single-run answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggeredRun {
    pub run_id: String,
    pub origin: &'static str,
    pub trigger: String,
    pub status: String,
    pub initiator: String,
    pub reason: Option<String>,
    pub inputs: Option<Value>,
    pub correlation_id: Option<String>,
    pub attempt: i32,
    pub requested_at: Micros,
    pub decided_by: Option<String>,
    pub decided_at: Option<Micros>,
    pub started_at: Option<Micros>,
    pub ended_at: Option<Micros>,
    pub duration_ms: Option<i64>,
    pub cancel_requested_by: Option<String>,
    pub sla_breached: bool,
    pub error: Option<RunError>,
    pub metrics: Option<Value>,
    pub result: Option<Value>,
    pub callbacks: Option<RunCallbacks>,
    /// The latest report of the running job (`POST /api/v1/runs/{id}/events`).
    pub progress: Option<Value>,
    /// Since when the target has the current attempt and will finish it by a continuation.
    pub awaiting_continue_since: Option<Micros>,
    pub links: RunLinks,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<Transition>>,
    /// Only for the roles that may read events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    pub class: Option<String>,
    pub message: Option<String>,
}

/// Where the run's outcome is called back, and when that call was acknowledged.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCallbacks {
    pub on_complete: Option<String>,
    pub on_fail: Option<String>,
    pub delivered_at: Option<Micros>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLinks {
    #[serde(rename = "self")]
    pub own: String,
    pub events: String,
    pub log: LogKey,
}

/// Where a run's records are: every record of `ct.runs.v1` with this key.
#[derive(Debug, Clone, Serialize)]
pub struct LogKey {
    pub topic: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub kind: String,
    pub at: Micros,
    pub actor: String,
    pub attempt: i32,
    pub reason: Option<String>,
    pub error_class: Option<String>,
    pub http_status: Option<i32>,
    pub duration_ms: Option<i64>,
    /// Why the record changed nothing (a duplicate, a late attempt after a cancel), or null.
    pub ignored_because: Option<String>,
    pub partition: i32,
    pub offset: i64,
}

impl TriggeredRun {
    pub fn from_row(row: &PgRow) -> TriggeredRun {
        let run_id: String = row.get("run_id");
        let correlation_id: Option<String> = row.get("correlation_id");
        let started_at: Option<DateTime<Utc>> = row.get("started_at");
        let ended_at: Option<DateTime<Utc>> = row.get("completed_at");
        let result: Option<Value> = row
            .get::<Option<String>, _>("result")
            .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
        let (error_class, error): (Option<String>, Option<String>) = (row.get("error_class"), row.get("error"));
        let (on_complete, on_fail): (Option<String>, Option<String>) = (row.get("on_complete"), row.get("on_fail"));
        let delivered_at = row.get::<Option<DateTime<Utc>>, _>("callback_delivered_at").map(Micros);
        TriggeredRun {
            callbacks: (on_complete.is_some() || on_fail.is_some()).then_some(RunCallbacks {
                on_complete,
                on_fail,
                delivered_at,
            }),
            links: RunLinks {
                own: format!("/runs/{run_id}"),
                events: format!("/events?correlation_id={}", correlation_id.as_deref().unwrap_or(&run_id)),
                log: LogKey { topic: "ct.runs.v1".into(), key: run_id.clone() },
            },
            run_id,
            origin: "trigger",
            trigger: row.get("trigger"),
            status: row.get("status"),
            initiator: row.get("initiator"),
            reason: row.get("reason"),
            inputs: row.get::<Option<String>, _>("inputs").and_then(|text| serde_json::from_str(&text).ok()),
            correlation_id,
            attempt: row.get("attempt"),
            requested_at: Micros(row.get("requested_at")),
            decided_by: row.get("decided_by"),
            decided_at: row.get::<Option<DateTime<Utc>>, _>("decided_at").map(Micros),
            duration_ms: started_at.zip(ended_at).map(|(s, e)| (e - s).num_milliseconds()),
            started_at: started_at.map(Micros),
            ended_at: ended_at.map(Micros),
            cancel_requested_by: row.get("cancel_requested_by"),
            sla_breached: row.get("sla_breached"),
            error: (error_class.is_some() || error.is_some())
                .then_some(RunError { class: error_class, message: error }),
            metrics: result.as_ref().and_then(|r| r.get("metrics")).filter(|m| m.is_object()).cloned(),
            result,
            progress: row.get::<Option<String>, _>("progress").and_then(|text| serde_json::from_str(&text).ok()),
            awaiting_continue_since: row.get::<Option<DateTime<Utc>>, _>("awaiting_continue_since").map(Micros),
            transitions: None,
            events: None,
        }
    }
}

impl Transition {
    pub fn from_row(row: &PgRow) -> Transition {
        Transition {
            kind: row.get("kind"),
            at: Micros(row.get("at")),
            actor: row.get("actor"),
            attempt: row.get("attempt"),
            reason: row.get("reason"),
            error_class: row.get("error_class"),
            http_status: row.get("http_status"),
            duration_ms: row.get("duration_ms"),
            ignored_because: row.get("ignored_because"),
            partition: row.get("partition"),
            offset: row.get("offset"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastEvent {
    pub at: Option<DateTime<Utc>>,
    pub event_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
}

/// `SystemHealth`: a catalogued system's status as the health evaluator last evaluated it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemHealth {
    pub system_id: String,
    pub name: String,
    pub status: crate::health::Status,
    pub statuspage: &'static str,
    pub reason: Option<String>,
    pub message: String,
    pub last_transition_time: Option<DateTime<Utc>>,
    pub evaluated_at: Option<DateTime<Utc>>,
}

/// `System`: the status, then the `systems` read model's row, then the system's SLOs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct System {
    #[serde(flatten)]
    pub health: SystemHealth,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub events_total: i64,
    pub last_event: LastEvent,
    pub slos: Vec<Slo>,
}

/// `Slo`: one objective of one system (or one of its jobs) as of the evaluator's last tick.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slo {
    pub slo: String,
    pub system_id: String,
    pub job: Option<String>,
    pub budgeting: String,
    pub objective: f64,
    pub window_days: i32,
    pub good: i64,
    pub total: i64,
    pub sli: Option<f64>,
    pub error_budget_remaining: Option<f64>,
    pub judged: bool,
    pub burning: Option<String>,
    pub evaluated_at: DateTime<Utc>,
}

impl Slo {
    pub fn from_row(row: &PgRow) -> Slo {
        let job: String = row.get("job");
        Slo {
            slo: row.get("slo"),
            system_id: row.get("system_id"),
            job: (!job.is_empty()).then_some(job),
            budgeting: row.get("budgeting"),
            objective: row.get("objective"),
            window_days: row.get("window_days"),
            good: row.get("good"),
            total: row.get("total"),
            sli: row.get("sli"),
            error_budget_remaining: row.get("budget_remaining"),
            judged: row.get("judged"),
            burning: row.get("burning"),
            evaluated_at: row.get("evaluated_at"),
        }
    }
}

/// `Health`: the overall status and each system's.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: crate::health::Status,
    pub statuspage: &'static str,
    pub evaluated_at: Option<DateTime<Utc>>,
    pub systems: Vec<SystemHealth>,
}

/// `Alert`: one incident from firing to resolved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: String,
    pub key: String,
    pub rule: String,
    pub system_id: String,
    pub state: String,
    pub summary: String,
    pub fired_at: DateTime<Utc>,
    pub last_notified_at: DateTime<Utc>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl Alert {
    pub fn from_row(row: &PgRow) -> Alert {
        Alert {
            id: row.get("id"),
            key: row.get("key"),
            rule: row.get("rule"),
            system_id: row.get("system_id"),
            state: row.get("state"),
            summary: row.get("summary"),
            fired_at: row.get("fired_at"),
            last_notified_at: row.get("last_notified_at"),
            escalated_at: row.get("escalated_at"),
            acknowledged_at: row.get("acknowledged_at"),
            resolved_at: row.get("resolved_at"),
        }
    }
}

/// `StatusChange`: one row of a system's history.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub at: DateTime<Utc>,
    pub status: crate::health::Status,
    pub statuspage: &'static str,
    pub previous: Option<crate::health::Status>,
    pub reason: String,
    pub message: String,
}

/// `DailyReport`: one day's digest as decided, and how it was published.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyReport {
    pub day: String,
    pub time_zone: String,
    pub sha256: String,
    pub due_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub late: Option<bool>,
    /// The digest's own JSON (`DailyDigest`), as hashed and archived.
    pub digest: Value,
}

/// `DailyReportSummary`: one row of the digests' history.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyReportSummary {
    pub day: String,
    pub time_zone: String,
    pub sha256: String,
    pub due_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub late: Option<bool>,
    pub events: i64,
    pub empty: bool,
}

/// `Version`: one repository's deployment to one environment, against its target branch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub repo: String,
    pub environment: String,
    pub commit: String,
    pub tag: Option<String>,
    pub deployed_at: DateTime<Utc>,
    pub target_branch: String,
    pub head: Option<BranchHead>,
    pub drifting: bool,
    pub drift_since: Option<DateTime<Utc>>,
}

/// `BranchHead`: where the target branch stands.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchHead {
    pub commit: String,
    pub ahead: Option<i64>,
    pub behind: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// `VersionChange`: one deployment or branch update of a repository.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionChange {
    pub at: DateTime<Utc>,
    pub event_id: String,
    pub kind: String,
    pub environment: Option<String>,
    pub branch: Option<String>,
    pub commit: String,
    pub tag: Option<String>,
    pub ahead: Option<i64>,
    pub behind: Option<i64>,
}

/// `Readiness`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub postgres: String,
}

/// `DlqItem` (and `DlqItemDetail` when `record` and `audit` are set).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqItem {
    pub id: String,
    pub category: String,
    pub rule: String,
    pub stage: String,
    pub step: String,
    pub error_class: String,
    pub error: String,
    pub attempts: i32,
    pub first_failure_at: Micros,
    pub last_failure_at: Micros,
    pub source: Option<String>,
    pub original: LogPosition,
    pub parked_at: LogPosition,
    pub state: String,
    pub state_changed_at: Micros,
    pub state_actor: Option<String>,
    pub state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<DlqRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<DlqAudit>>,
}

/// The columns [`DlqItem::from_row`] reads.
pub const DLQ_COLUMNS: &str = "id, category, rule, stage, step, error_class, error_message, attempts, first_failure_at,
    last_failure_at, original_topic, original_partition, original_offset, source, dlq_topic, dlq_partition,
    dlq_offset, state, state_changed_at, state_actor, state_reason";

impl DlqItem {
    pub fn from_row(row: &PgRow) -> DlqItem {
        DlqItem {
            id: row.get("id"),
            category: row.get("category"),
            rule: row.get("rule"),
            stage: row.get("stage"),
            step: row.get("step"),
            error_class: row.get("error_class"),
            error: row.get("error_message"),
            attempts: row.get("attempts"),
            first_failure_at: Micros(row.get("first_failure_at")),
            last_failure_at: Micros(row.get("last_failure_at")),
            source: row.get("source"),
            original: LogPosition {
                topic: row.get("original_topic"),
                partition: row.get("original_partition"),
                offset: row.get("original_offset"),
            },
            parked_at: LogPosition {
                topic: row.get("dlq_topic"),
                partition: row.get("dlq_partition"),
                offset: row.get("dlq_offset"),
            },
            state: row.get("state"),
            state_changed_at: Micros(row.get("state_changed_at")),
            state_actor: row.get("state_actor"),
            state_reason: row.get("state_reason"),
            record: None,
            audit: None,
        }
    }
}

/// The parked record's bytes (base64) and headers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqRecord {
    pub key_base64: Option<String>,
    pub value_base64: Option<String>,
    pub headers: Value,
}

impl DlqRecord {
    /// From a row with `record_key`, `record_value` and `headers`.
    pub fn from_row(row: &PgRow) -> DlqRecord {
        DlqRecord {
            key_base64: row.get::<Option<Vec<u8>>, _>("record_key").map(|k| STANDARD.encode(k)),
            value_base64: row.get::<Option<Vec<u8>>, _>("record_value").map(|v| STANDARD.encode(v)),
            headers: row.get("headers"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DlqAudit {
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub at: Micros,
    pub reason: String,
    pub detail: Option<String>,
}

impl DlqAudit {
    pub fn from_row(row: &PgRow) -> DlqAudit {
        DlqAudit {
            action: row.get("action"),
            outcome: row.get("outcome"),
            actor: row.get("actor"),
            at: Micros(row.get("at")),
            reason: row.get("reason"),
            detail: row.get("detail"),
        }
    }
}

/// `KpiReport`: the KPIs as of a time (`GET /metrics/kpi`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KpiReport {
    pub as_of: DateTime<Utc>,
    pub time_zone: String,
    /// The last 7 and 30 days before `asOf`.
    pub windows: Vec<KpiWindow>,
    #[serde(rename = "timesheetCompliance4Weeks")]
    pub timesheet_compliance_4_weeks: ct_core::kpi::Compliance,
    #[serde(rename = "timesheetCompliance13Weeks")]
    pub timesheet_compliance_13_weeks: ct_core::kpi::Compliance,
    /// `day` or `week`.
    pub bucket: String,
    pub buckets: Vec<KpiBucket>,
}

/// `KpiWindow`: the KPIs over the last `days` days.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KpiWindow {
    pub days: i64,
    pub contract_lead_time: ct_core::kpi::LeadTimes,
    pub invoice_cycle_time: ct_core::kpi::LeadTimes,
    pub job_failure_rate: ct_core::kpi::FailureRate,
    pub job_failure_rate_by_subsystem: std::collections::BTreeMap<String, ct_core::kpi::FailureRate>,
}

/// `KpiBucket`: one local day or ISO week.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KpiBucket {
    /// The bucket's first local day.
    pub start: String,
    pub contract_lead_time: ct_core::kpi::LeadTimes,
    pub invoice_cycle_time: ct_core::kpi::LeadTimes,
    pub job_failure_rate: ct_core::kpi::FailureRate,
    pub timesheet_compliance: ct_core::kpi::Compliance,
}

/// `WeeklyReport`: each catalogued system's time in each status and its SLOs over a week or a
/// calendar month (`GET /reports/weekly`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendReport {
    /// `2026-W47` or `2026-11`.
    pub period: String,
    pub time_zone: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `to`, or the time of the request for a period still running.
    pub observed_until: DateTime<Utc>,
    pub systems: Vec<SystemTrend>,
}

/// `SystemTrend`: one system over the period.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemTrend {
    pub system_id: String,
    pub name: String,
    /// Seconds in each status (`green`, `amber`, `red`, `unknown`: never evaluated).
    pub seconds: std::collections::BTreeMap<String, i64>,
    /// The same as shares of the observed time, 0 to 1.
    pub shares: std::collections::BTreeMap<String, f64>,
    pub slos: Vec<SloCompliance>,
}

/// `SloCompliance`: an SLO's good and total events over the period, against its objective.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SloCompliance {
    pub slo: String,
    /// `""`: the whole system.
    pub job: String,
    pub objective: Option<f64>,
    pub good: i64,
    pub total: i64,
    /// `good / total`; `null` without events.
    pub sli: Option<f64>,
    /// `sli >= objective`; `null` without events or objective.
    pub met: Option<bool>,
}

#[cfg(test)]
mod tests {
    //! Each view, filled in and with every optional field empty, against its schema in the
    //! document: the values must validate (JSON Schema), and the keys must be exactly the
    //! schema's properties (no undocumented key, no documented key missing).

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn document() -> Value {
        let text = include_str!("../openapi.yaml");
        let yaml: Value = serde_norway::from_str(text).expect("openapi.yaml parses");
        yaml
    }

    /// OpenAPI 3.0's `nullable: true` written as JSON Schema (`null` allowed).
    fn nullable_to_json_schema(schema: &mut Value) {
        match schema {
            Value::Object(object) => {
                object.values_mut().for_each(nullable_to_json_schema);
                if object.remove("nullable") == Some(Value::Bool(true)) {
                    let inner = Value::Object(std::mem::take(object));
                    object.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(nullable_to_json_schema),
            _ => {}
        }
    }

    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("{reference} resolves")))
            }
            None => schema,
        }
    }

    /// Properties and required keys of an object schema, through `$ref` and `allOf`.
    fn object_shape(doc: &Value, schema: &Value) -> Option<(BTreeMap<String, Value>, Vec<String>)> {
        let schema = resolve(doc, schema);
        let mut properties = BTreeMap::new();
        let mut required = Vec::new();
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            if let Some((p, r)) = object_shape(doc, part) {
                properties.extend(p);
                required.extend(r);
            }
        }
        if let Some(own) = schema.get("properties").and_then(Value::as_object) {
            properties.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        required.extend(
            schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned)),
        );
        (!properties.is_empty()).then_some((properties, required))
    }

    /// Every object in `value` has exactly the keys its schema lists (all required ones, and no
    /// other), recursively; `path` names the place for the failure message.
    fn assert_keys_match(doc: &Value, schema: &Value, value: &Value, path: &str) {
        let Some(object) = value.as_object() else {
            if let Some(items) = value.as_array() {
                let item_schema = resolve(doc, schema).get("items").cloned().unwrap_or(Value::Null);
                for (i, item) in items.iter().enumerate() {
                    assert_keys_match(doc, &item_schema, item, &format!("{path}[{i}]"));
                }
            }
            return;
        };
        let Some((properties, required)) = object_shape(doc, schema) else { return };
        for key in object.keys() {
            assert!(properties.contains_key(key), "{path}.{key} is answered but not in the document");
        }
        for key in &required {
            assert!(object.contains_key(key), "{path}.{key} is required by the document but not answered");
        }
        for (key, inner) in object {
            assert_keys_match(doc, &properties[key], inner, &format!("{path}.{key}"));
        }
    }

    fn check(component: &str, view: &impl Serialize) {
        let doc = document();
        let mut schemas = doc.pointer("/components/schemas").expect("components").clone();
        nullable_to_json_schema(&mut schemas);
        let root = json!({"$ref": format!("#/components/schemas/{component}"), "components": {"schemas": schemas}});
        let validator = jsonschema::validator_for(&root).expect("the document's schemas compile");
        let value = serde_json::to_value(view).expect("serialises");
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{component}: {value}\n{}", errors.join("\n"));
        assert_keys_match(&doc, &json!({"$ref": format!("#/components/schemas/{component}")}), &value, component);
    }

    fn at() -> DateTime<Utc> {
        "2025-09-27T10:00:00.123456Z".parse().unwrap()
    }

    fn event() -> Event {
        Event {
            event_id: "evt_1".into(),
            event_type: "system.heartbeat".into(),
            ts: Micros(at()),
            source: "finance".into(),
            correlation_id: Some("run_1".into()),
            payload: json!({"system_id": "finance", "version": null, "uptime_s": 5}),
            ingest: Ingest { received_at: Micros(at()), trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()) },
            log: LogPosition { topic: "ct.events.v1".into(), partition: 0, offset: 7 },
        }
    }

    #[test]
    fn events_match_the_document() {
        check("Event", &event());
        check(
            "Event",
            &Event { correlation_id: None, ingest: Ingest { received_at: Micros(at()), trace_id: None }, ..event() },
        );
    }

    #[test]
    fn daily_reports_match_the_document() {
        let mut counts = ct_core::digest::DayCounts::new();
        counts
            .entry(ct_core::digest::metric::EVENTS_BY_SOURCE.into())
            .or_default()
            .insert("backend".into(), ct_core::digest::Tally { count: 3, amount_minor: 0 });
        let day = "2025-09-24".parse().unwrap();
        let eight = chrono::NaiveTime::from_hms_opt(8, 0, 0).unwrap();
        let rendered = ct_core::digest::Digest::build(day, chrono_tz::Europe::London, eight, &counts).render();
        let report = DailyReport {
            day: "2025-09-24".into(),
            time_zone: "Europe/London".into(),
            sha256: rendered.sha256.clone(),
            due_at: at(),
            published_at: Some(at()),
            late: Some(false),
            digest: serde_json::from_str(&rendered.json).unwrap(),
        };
        check("DailyReport", &report);
        check("DailyReport", &DailyReport { published_at: None, late: None, ..report });
        check(
            "DailyReportSummary",
            &DailyReportSummary {
                day: "2025-09-24".into(),
                time_zone: "Europe/London".into(),
                sha256: rendered.sha256,
                due_at: at(),
                published_at: None,
                late: None,
                events: 3,
                empty: false,
            },
        );
    }

    #[test]
    fn kpis_and_trends_match_the_document() {
        use ct_core::kpi::{compliance, failure_rate, lead_times};
        let window = KpiWindow {
            days: 7,
            contract_lead_time: lead_times(vec![1800.0, 7200.0]),
            invoice_cycle_time: lead_times(vec![]),
            job_failure_rate: failure_rate(3, 1),
            job_failure_rate_by_subsystem: [("desktop".to_owned(), failure_rate(2, 1))].into(),
        };
        let bucket = KpiBucket {
            start: "2026-11-30".into(),
            contract_lead_time: lead_times(vec![60.0]),
            invoice_cycle_time: lead_times(vec![]),
            job_failure_rate: failure_rate(0, 0),
            timesheet_compliance: compliance(1, 1),
        };
        check(
            "KpiReport",
            &KpiReport {
                as_of: at(),
                time_zone: "Europe/London".into(),
                windows: vec![window],
                timesheet_compliance_4_weeks: compliance(4, 3),
                timesheet_compliance_13_weeks: compliance(0, 0),
                bucket: "day".into(),
                buckets: vec![bucket],
            },
        );
        let slo = |sli: Option<f64>, met: Option<bool>| SloCompliance {
            slo: "runs-success".into(),
            job: String::new(),
            objective: Some(0.99),
            good: 99,
            total: 100,
            sli,
            met,
        };
        check(
            "TrendReport",
            &TrendReport {
                period: "2026-W47".into(),
                time_zone: "Europe/London".into(),
                from: at(),
                to: at(),
                observed_until: at(),
                systems: vec![SystemTrend {
                    system_id: "portal".into(),
                    name: "Portal".into(),
                    seconds: [("green".to_owned(), 3600), ("unknown".to_owned(), 60)].into(),
                    shares: [("green".to_owned(), 0.98), ("unknown".to_owned(), 0.02)].into(),
                    slos: vec![slo(Some(0.99), Some(true)), slo(None, None)],
                }],
            },
        );
    }

    #[test]
    fn runs_match_the_document() {
        let full = Run {
            run_id: "run_1".into(),
            trigger: Some("desktop.trigger.contract".into()),
            initiator: Some("staff-1".into()),
            inputs: Some(json!({"contractId": "K1"})),
            status: "success".into(),
            metrics: Some(json!({"documentsGenerated": 3})),
            duration_ms: Some(5000),
            started_at: Some(at()),
            ended_at: Some(at()),
            events: None,
        };
        check("Run", &full);
        check("RunWithEvents", &Run { events: Some(vec![event()]), ..full.clone() });
        check("Run", &Run::from_sample());
    }

    #[test]
    fn triggered_runs_and_triggers_match_the_document() {
        let run = TriggeredRun {
            run_id: "run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into(),
            origin: "trigger",
            trigger: "contract.regenerate".into(),
            status: "success".into(),
            initiator: "operator:1a2b3c4d".into(),
            reason: Some("client asked".into()),
            inputs: Some(json!({"contractId": "K456"})),
            correlation_id: Some("run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into()),
            attempt: 2,
            requested_at: Micros(at()),
            decided_by: Some("owner:9f8e7d6c".into()),
            decided_at: Some(Micros(at())),
            started_at: Some(Micros(at())),
            ended_at: Some(Micros(at())),
            duration_ms: Some(1200),
            cancel_requested_by: None,
            sla_breached: false,
            error: Some(RunError { class: Some("http_5xx".into()), message: None }),
            metrics: Some(json!({"documentsGenerated": 1})),
            result: Some(json!({"ok": true, "metrics": {"documentsGenerated": 1}})),
            callbacks: Some(RunCallbacks {
                on_complete: Some("http://127.0.0.1:9000/done".into()),
                on_fail: None,
                delivered_at: Some(Micros(at())),
            }),
            progress: Some(json!({"message": "3 of 5 documents", "metrics": {"documentsGenerated": 3}})),
            awaiting_continue_since: Some(Micros(at())),
            links: RunLinks {
                own: "/runs/run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into(),
                events: "/events?correlation_id=run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into(),
                log: LogKey { topic: "ct.runs.v1".into(), key: "run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into() },
            },
            transitions: None,
            events: None,
        };
        check("TriggeredRun", &run);
        let queued = TriggeredRun {
            status: "queued".into(),
            reason: None,
            inputs: None,
            correlation_id: None,
            attempt: 0,
            decided_by: None,
            decided_at: None,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            error: None,
            metrics: None,
            result: None,
            callbacks: None,
            progress: None,
            awaiting_continue_since: None,
            ..run.clone()
        };
        check("TriggeredRun", &queued);
        let transition = Transition {
            kind: "attempt_failed".into(),
            at: Micros(at()),
            actor: "ct-runner".into(),
            attempt: 1,
            reason: Some("the target answered 500".into()),
            error_class: Some("http_5xx".into()),
            http_status: Some(500),
            duration_ms: Some(12),
            ignored_because: None,
            partition: 2,
            offset: 41,
        };
        let bare = Transition {
            reason: None,
            error_class: None,
            http_status: None,
            duration_ms: None,
            ignored_because: Some("not the next attempt".into()),
            ..transition.clone()
        };
        check(
            "TriggeredRunDetail",
            &TriggeredRun { transitions: Some(vec![transition, bare]), events: Some(vec![event()]), ..run.clone() },
        );
        check("TriggeredRunDetail", &TriggeredRun { transitions: Some(vec![]), ..queued });
        let info = TriggerInfo {
            name: "finance.export.backfill".into(),
            description: "Export again.".into(),
            inputs: json!({"type": "object"}),
            attempts: 2,
            timeout_s: 600,
            sla_s: 1800,
            rate_limit_per_minute: 2,
            approval_role: Some("maintainer".into()),
            window: Some("Mon,Tue 07:00-20:00 Europe/London".into()),
        };
        check("TriggerInfo", &info);
        check("TriggerInfo", &TriggerInfo { approval_role: None, window: None, ..info });
        check(
            "LineageGraph",
            &LineageGraph {
                nodes: vec![LineageNode {
                    id: "postgres://finance/timesheets".into(),
                    namespace: "postgres://finance".into(),
                    name: "timesheets".into(),
                }],
                edges: vec![LineageEdge {
                    source: "postgres://finance/timesheets".into(),
                    target: "s3://docs/invoices".into(),
                    job: "finance.export.backfill".into(),
                    last_run_id: "run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into(),
                    first_seen_at: Micros(at()),
                    added_at: Micros(at()),
                }],
            },
        );
        check(
            "AuditEntry",
            &AuditEntry {
                id: "ct.runs.v1:2:41".into(),
                at: Micros(at()),
                source: "runs",
                action: "approved".into(),
                resource: "run_0b6f4bd9c1a04e0f9d3c2a1b5e6f7a8b".into(),
                actor: "owner:9f8e7d6c".into(),
                reason: "agreed with finance".into(),
                outcome: "applied".into(),
            },
        );
    }

    #[test]
    fn systems_health_and_readiness_match_the_document() {
        let amber = crate::health::Status::Amber;
        let health = SystemHealth {
            system_id: "finance".into(),
            name: "Finance integrations".into(),
            status: amber,
            statuspage: amber.statuspage(),
            reason: Some("heartbeat".into()),
            message: "amber because no heartbeat for 16m of business time since 2026-03-03 11:00 UTC".into(),
            last_transition_time: Some(at()),
            evaluated_at: Some(at()),
        };
        let never = SystemHealth {
            status: crate::health::Status::Unknown,
            statuspage: "unknown",
            reason: None,
            message: "unknown because the health evaluator has not evaluated this system yet".into(),
            last_transition_time: None,
            evaluated_at: None,
            ..health.clone()
        };
        let system = System {
            health: health.clone(),
            last_heartbeat: Some(at()),
            events_total: 3,
            last_event: LastEvent {
                at: Some(at()),
                event_id: Some("evt_1".into()),
                event_type: Some("system.heartbeat".into()),
            },
            slos: vec![Slo {
                slo: "job-success".into(),
                system_id: "finance".into(),
                job: Some("finance.export.backfill".into()),
                budgeting: "events".into(),
                objective: 0.98,
                window_days: 30,
                good: 9,
                total: 12,
                sli: Some(0.75),
                error_budget_remaining: Some(-11.5),
                judged: true,
                burning: Some("12.5× over 6h and 12.5× over 30m (alert from 6×)".into()),
                evaluated_at: at(),
            }],
        };
        check("System", &system);
        let no_data = Slo {
            job: None,
            good: 0,
            total: 0,
            sli: None,
            error_budget_remaining: None,
            judged: false,
            burning: None,
            ..system.slos[0].clone()
        };
        check("Slo", &no_data);
        check(
            "System",
            &System {
                health: never.clone(),
                last_heartbeat: None,
                last_event: LastEvent { at: None, event_id: None, event_type: None },
                slos: Vec::new(),
                ..system
            },
        );
        check(
            "Health",
            &Health {
                status: amber,
                statuspage: amber.statuspage(),
                evaluated_at: Some(at()),
                systems: vec![health, never],
            },
        );
        let change = StatusChange {
            at: at(),
            status: amber,
            statuspage: amber.statuspage(),
            previous: Some(crate::health::Status::Green),
            reason: "heartbeat".into(),
            message: "amber because ...".into(),
        };
        check("StatusChange", &change);
        let alert = Alert {
            id: "fn-errors:backend@20260303T1104Z".into(),
            key: "fn-errors:backend".into(),
            rule: "fn_errors".into(),
            system_id: "backend".into(),
            state: "resolved".into(),
            summary: "3 high-severity function errors of backend in the last 10m (alert from 3)".into(),
            fired_at: at(),
            last_notified_at: at(),
            escalated_at: Some(at()),
            acknowledged_at: None,
            resolved_at: Some(at()),
        };
        check("Alert", &alert);
        check("Alert", &Alert { state: "firing".into(), escalated_at: None, resolved_at: None, ..alert });
        check("StatusChange", &StatusChange { previous: None, ..change });
        check("Readiness", &Readiness { postgres: "ok".into() });
    }

    #[test]
    fn dead_letters_match_the_document() {
        let position = LogPosition { topic: "ct.events.v1".into(), partition: 1, offset: 2 };
        let item = DlqItem {
            id: "ct-projector:ct.events.v1:1:2".into(),
            category: "CRITICAL".into(),
            rule: "no-rule-matched".into(),
            stage: "ct-projector".into(),
            step: "apply".into(),
            error_class: "CRITICAL".into(),
            error: "boom".into(),
            attempts: 1,
            first_failure_at: Micros(at()),
            last_failure_at: Micros(at()),
            source: Some("finance".into()),
            original: position.clone(),
            parked_at: position,
            state: "parked".into(),
            state_changed_at: Micros(at()),
            state_actor: Some("scheduler".into()),
            state_reason: None,
            record: None,
            audit: None,
        };
        check("DlqItem", &item);
        let detail = DlqItem {
            record: Some(DlqRecord {
                key_base64: Some("ZmluYW5jZQ==".into()),
                value_base64: None,
                headers: json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}),
            }),
            audit: Some(vec![DlqAudit {
                action: "REPLAY".into(),
                outcome: "REPLAYED".into(),
                actor: "sre-1".into(),
                at: Micros(at()),
                reason: "fixed".into(),
                detail: None,
            }]),
            ..item
        };
        check("DlqItemDetail", &detail);

        let lineage = crate::lineage::Lineage {
            event_id: "evt_1".into(),
            event_type: "ct.run.started".into(),
            source: "desktop".into(),
            correlation_id: Some("run_1".into()),
            ingest: crate::lineage::IngestVerdict { verdict: "accepted", received_at: Micros(at()) },
            log: LogPosition { topic: "ct.events.v1".into(), partition: 1, offset: 2 },
            read_models: vec![crate::lineage::ReadModelRow { model: "projector", table: "runs", key: "run_1".into() }],
            dead_letters: vec![crate::lineage::DeadLetterHop {
                item: DlqItem { record: None, ..detail },
                handbacks: vec![crate::lineage::Handback { attempt: 1, origin: "replay".into(), at: Micros(at()) }],
            }],
            correlated_runs: vec![crate::lineage::CorrelatedRun {
                run_id: "run_1".into(),
                trigger: None,
                status: "running".into(),
                started_at: Some(Micros(at())),
                ended_at: None,
            }],
            trace_id: None,
        };
        check("Lineage", &lineage);
    }

    // The checker itself: an undocumented key, a missing key and a wrong type each fail.
    #[test]
    #[should_panic(expected = "is answered but not in the document")]
    fn an_undocumented_key_fails() {
        check("Readiness", &json!({"postgres": "ok", "redis": "ok"}));
    }

    #[test]
    #[should_panic(expected = "is required by the document but not answered")]
    fn a_missing_key_fails() {
        let mut run = serde_json::to_value(Run::from_sample()).unwrap();
        run.as_object_mut().unwrap().remove("endedAt");
        check_keys_only("Run", &run);
    }

    #[test]
    #[should_panic(expected = "Readiness")]
    fn a_wrong_value_fails() {
        check("Readiness", &json!({"postgres": 1}));
    }

    impl Run {
        fn from_sample() -> Run {
            Run {
                run_id: "r".into(),
                trigger: None,
                initiator: None,
                inputs: None,
                status: "unknown".into(),
                metrics: None,
                duration_ms: None,
                started_at: None,
                ended_at: None,
                events: None,
            }
        }
    }

    fn check_keys_only(component: &str, value: &Value) {
        assert_keys_match(&document(), &json!({"$ref": format!("#/components/schemas/{component}")}), value, component);
    }
}
