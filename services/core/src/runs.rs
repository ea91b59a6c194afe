//! Triggered runs: the allow-list's types (`TriggerSpec`), the `ct.runs.v1` record
//! (`RunRecord`), and the pure fold of those records into a run's state (`fold`), which the runs
//! read model applies in log order, so live and rebuilt runs are the same.

use std::{collections::BTreeMap, sync::LazyLock};

use apache_avro::Schema;
use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::avro::CodecError;

pub const RECORD_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.RunRecord.avsc");
pub const RECORD_NAME: &str = "ct.v1.RunRecord";

static RECORD_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(RECORD_SCHEMA_JSON).expect("schemas-avro/ct.v1.RunRecord.avsc is valid Avro"));

pub fn record_schema() -> &'static Schema {
    &RECORD_SCHEMA
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordKind {
    Requested,
    Approved,
    Rejected,
    ApprovalExpired,
    CancelRequested,
    AttemptStarted,
    AttemptFailed,
    Succeeded,
    Failed,
    Cancelled,
    SlaBreached,
    CallbackDelivered,
    Progress,
    AwaitingContinue,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Requested => "requested",
            RecordKind::Approved => "approved",
            RecordKind::Rejected => "rejected",
            RecordKind::ApprovalExpired => "approval_expired",
            RecordKind::CancelRequested => "cancel_requested",
            RecordKind::AttemptStarted => "attempt_started",
            RecordKind::AttemptFailed => "attempt_failed",
            RecordKind::Succeeded => "succeeded",
            RecordKind::Failed => "failed",
            RecordKind::Cancelled => "cancelled",
            RecordKind::SlaBreached => "sla_breached",
            RecordKind::CallbackDelivered => "callback_delivered",
            RecordKind::Progress => "progress",
            RecordKind::AwaitingContinue => "awaiting_continue",
        }
    }
}

/// One record of `ct.runs.v1`. Field order must equal `schemas-avro/ct.v1.RunRecord.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub kind: RecordKind,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub trigger: String,
    #[serde(default)]
    pub attempt: i32,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub inputs: Option<String>,
    #[serde(default)]
    pub request_hash: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub awaiting_approval: bool,
    #[serde(default)]
    pub error_class: Option<String>,
    #[serde(default)]
    pub http_status: Option<i32>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub on_complete: Option<String>,
    #[serde(default)]
    pub on_fail: Option<String>,
    #[serde(default)]
    pub report: Option<String>,
}

impl RunRecord {
    /// A record of `kind` with every optional field empty.
    pub fn new(run_id: &str, kind: RecordKind, at: DateTime<Utc>, actor: &str, trigger: &str) -> RunRecord {
        RunRecord {
            run_id: run_id.to_owned(),
            kind,
            at,
            actor: actor.to_owned(),
            trigger: trigger.to_owned(),
            attempt: 0,
            reason: None,
            inputs: None,
            request_hash: None,
            correlation_id: None,
            awaiting_approval: false,
            error_class: None,
            http_status: None,
            duration_ms: None,
            result: None,
            on_complete: None,
            on_fail: None,
            report: None,
        }
    }
}

pub fn encode_record(record: &RunRecord) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(record_schema(), record)
}

/// The run record in `datum`, or `None` when `writer` is another record type.
pub fn decode_record(writer: &Schema, datum: &[u8]) -> Result<Option<RunRecord>, CodecError> {
    if crate::avro::record_name(writer).as_deref() != Some(RECORD_NAME) {
        return Ok(None);
    }
    crate::avro::decode_record(writer, record_schema(), datum).map(Some)
}

/// A run id: `run_` and 32 hex digits. With an `Idempotency-Key`, a digest of who asked, the
/// trigger and the key, so the same key always names the same run; otherwise random bytes.
pub fn run_id_for_key(actor: &str, trigger: &str, key: &str) -> String {
    let digest = Sha256::new().chain_update(actor).chain_update("\n").chain_update(trigger).chain_update("\n");
    let digest = digest.chain_update(key).finalize();
    format!("run_{}", hex::encode(&digest[..16]))
}

pub fn run_id_from_bytes(bytes: [u8; 16]) -> String {
    format!("run_{}", hex::encode(bytes))
}

/// What an `Idempotency-Key`'s second use must repeat: the trigger and the body, byte for byte.
pub fn request_hash(trigger: &str, body: &[u8]) -> String {
    hex::encode(Sha256::new().chain_update(trigger).chain_update("\n").chain_update(body).finalize())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    AwaitingApproval,
    Queued,
    Running,
    Success,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::AwaitingApproval,
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Success,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled)
    }
}

/// A run's state as the records so far made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub run_id: String,
    pub trigger: String,
    pub status: RunStatus,
    pub initiator: String,
    pub reason: Option<String>,
    pub inputs: Option<String>,
    pub request_hash: Option<String>,
    pub correlation_id: Option<String>,
    pub attempt: i32,
    pub requested_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancel_requested_by: Option<String>,
    pub sla_breached: bool,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub result: Option<String>,
    pub on_complete: Option<String>,
    pub on_fail: Option<String>,
    pub callback_delivered_at: Option<DateTime<Utc>>,
    /// The latest progress report (JSON text) of the running job.
    pub progress: Option<String>,
    /// The target accepted the current attempt and will finish it by a continuation; since when.
    pub awaiting_continue_since: Option<DateTime<Utc>>,
}

impl Run {
    /// The callback this ended run owes: `on_complete` after success, `on_fail` otherwise.
    pub fn callback(&self) -> Option<&str> {
        match self.status {
            RunStatus::Success => self.on_complete.as_deref(),
            RunStatus::Failed | RunStatus::Cancelled => self.on_fail.as_deref(),
            _ => None,
        }
    }
}

/// Why a record changed nothing: it does not fit the run's state (a duplicate, a late attempt
/// after a cancel, an approval of a run that needs none). Kept in the transitions as ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored(pub String);

/// The run after `record`. `run` is `None` before its `REQUESTED`.
pub fn fold(run: Option<&Run>, record: &RunRecord) -> Result<Run, Ignored> {
    use RecordKind as K;
    use RunStatus as S;
    let ignore = |why: &str| Err(Ignored(why.to_owned()));
    let Some(run) = run else {
        if record.kind != K::Requested {
            return ignore("no such run");
        }
        return Ok(Run {
            run_id: record.run_id.clone(),
            trigger: record.trigger.clone(),
            status: if record.awaiting_approval { S::AwaitingApproval } else { S::Queued },
            initiator: record.actor.clone(),
            reason: record.reason.clone(),
            inputs: record.inputs.clone(),
            request_hash: record.request_hash.clone(),
            correlation_id: record.correlation_id.clone(),
            attempt: 0,
            requested_at: record.at,
            decided_by: None,
            decided_at: None,
            started_at: None,
            completed_at: None,
            cancel_requested_by: None,
            sla_breached: false,
            error_class: None,
            error: None,
            result: None,
            on_complete: record.on_complete.clone(),
            on_fail: record.on_fail.clone(),
            callback_delivered_at: None,
            progress: None,
            awaiting_continue_since: None,
        });
    };
    let mut next = run.clone();
    let end = |next: &mut Run, status: RunStatus| {
        next.status = status;
        next.completed_at = Some(record.at);
    };
    match (record.kind, run.status) {
        (K::Requested, _) => return ignore("the run exists already"),
        (K::CallbackDelivered, status) if status.is_final() => {
            if run.callback().is_none() || run.callback_delivered_at.is_some() {
                return ignore("no callback is owed");
            }
            next.callback_delivered_at = Some(record.at);
        }
        (K::CallbackDelivered, _) => return ignore("the run has not ended"),
        (_, status) if status.is_final() => return ignore("the run has ended"),
        (K::Approved, S::AwaitingApproval) => {
            next.status = S::Queued;
            (next.decided_by, next.decided_at) = (Some(record.actor.clone()), Some(record.at));
        }
        (K::Rejected | K::ApprovalExpired, S::AwaitingApproval) => {
            (next.decided_by, next.decided_at) = (Some(record.actor.clone()), Some(record.at));
            next.error = record.reason.clone();
            next.error_class = Some(record.kind.as_str().to_owned());
            end(&mut next, S::Cancelled);
        }
        (K::Approved | K::Rejected | K::ApprovalExpired, _) => return ignore("the run is not awaiting approval"),
        (K::CancelRequested, S::AwaitingApproval | S::Queued) => {
            next.cancel_requested_by = Some(record.actor.clone());
            next.error_class = Some("cancelled".to_owned());
            next.error = record.reason.clone();
            end(&mut next, S::Cancelled);
        }
        (K::CancelRequested, _) => {
            if run.cancel_requested_by.is_some() {
                return ignore("a cancel was requested already");
            }
            next.cancel_requested_by = Some(record.actor.clone());
        }
        (K::AttemptStarted, S::Queued | S::Running) => {
            next.awaiting_continue_since = None;
            if record.attempt != run.attempt + 1 {
                return ignore("not the next attempt");
            }
            if run.cancel_requested_by.is_some() {
                return ignore("a cancel was requested");
            }
            next.status = S::Running;
            next.attempt = record.attempt;
            next.started_at.get_or_insert(record.at);
        }
        (K::AttemptFailed | K::Succeeded | K::Failed, S::Running) if record.attempt != run.attempt => {
            return ignore("not the current attempt");
        }
        (K::AttemptFailed, S::Running) => {
            next.error_class = record.error_class.clone();
            next.error = record.reason.clone();
        }
        (K::Succeeded, S::Running) => {
            next.result = record.result.clone();
            (next.error_class, next.error) = (None, None);
            end(&mut next, S::Success);
        }
        (K::Failed, S::Running) => {
            next.error_class = record.error_class.clone();
            next.error = record.reason.clone();
            // A failure may say what it got to (a chain: its steps' outcomes).
            if record.result.is_some() {
                next.result = record.result.clone();
            }
            end(&mut next, S::Failed);
        }
        (K::Cancelled, S::Running) => {
            next.error_class = Some("cancelled".to_owned());
            next.error = record.reason.clone();
            end(&mut next, S::Cancelled);
        }
        (K::SlaBreached, S::Running) if !run.sla_breached => next.sla_breached = true,
        (K::Progress, S::Running) => next.progress = record.report.clone(),
        (K::AwaitingContinue, S::Running) if record.attempt == run.attempt && run.awaiting_continue_since.is_none() => {
            next.awaiting_continue_since = Some(record.at);
        }
        (K::Progress, _) => return ignore("the run is not running"),
        _ => return ignore("does not apply in this state"),
    }
    Ok(next)
}

/// A dataset in OpenLineage's naming: a namespace (where) and a name (what).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
}

/// A lineage edge that no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedEdge {
    pub input: Dataset,
    pub output: Dataset,
}

/// What a running job reports (`POST /api/v1/runs/{id}/events`, the `PROGRESS` record's
/// `report`): a message, metrics, and the datasets it read and wrote; every input feeds every
/// output (OpenLineage's run event), and `removed` withdraws edges reported before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Report {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Dataset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Dataset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<RemovedEdge>,
}

impl Report {
    /// The edges the report adds: every input to every output.
    pub fn edges(&self) -> Vec<(&Dataset, &Dataset)> {
        self.inputs.iter().flat_map(|i| self.outputs.iter().map(move |o| (i, o))).collect()
    }
}

/// The allow-list: trigger name → what it runs and under which rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    pub triggers: BTreeMap<String, TriggerSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    pub description: String,
    /// What a run calls; a chain has `steps` instead.
    #[serde(default)]
    pub target: Option<Target>,
    /// A chain: each step runs another allow-listed trigger as a child run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// JSON Schema (2020-12) of the request body.
    pub inputs: serde_json::Value,
    pub retry: RetryPolicy,
    /// One attempt's time limit.
    pub timeout_s: u64,
    /// A run still running this long after its first attempt started is marked `sla_breached`.
    pub sla_s: u64,
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub window: Option<Window>,
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// One step of a chain (vision §6.1, §6.2): a child run of `trigger` with the chain's inputs,
/// run only `when` an earlier step's result says so (otherwise skipped, and the chain goes on to
/// the next step). After the step, `on_success` (default `next`) or `on_failure` (default `stop`)
/// says where the chain goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    pub trigger: String,
    #[serde(default)]
    pub when: Option<Condition>,
    #[serde(default)]
    pub on_success: Branch,
    #[serde(default = "Branch::stop")]
    pub on_failure: Branch,
}

/// Where a chain goes after a step: the `next` step (`continue` is the same, read better after a
/// failure), `stop` (the chain ends: succeeded after a success, failed after a failure), or a
/// later step's name (a jump; the steps in between are not reached). Only forward jumps, so a
/// chain always ends. A failure the chain goes on from does not fail the chain; its result shows
/// every step's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Branch {
    #[default]
    Next,
    Stop,
    Step(String),
}

impl Branch {
    fn stop() -> Branch {
        Branch::Stop
    }
}

impl From<String> for Branch {
    fn from(text: String) -> Branch {
        match text.as_str() {
            "next" | "continue" => Branch::Next,
            "stop" => Branch::Stop,
            _ => Branch::Step(text),
        }
    }
}

impl From<Branch> for String {
    fn from(branch: Branch) -> String {
        match branch {
            Branch::Next => "next".into(),
            Branch::Stop => "stop".into(),
            Branch::Step(name) => name,
        }
    }
}

/// What a chain does after one of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainMove {
    /// Run the step at this index.
    Run(usize),
    Succeed,
    Fail,
}

/// The chain's move after the step at `index` `succeeded` (or failed). `steps` has passed
/// [`Triggers::validate`], so a jump names a later step.
pub fn after_step(steps: &[Step], index: usize, succeeded: bool) -> ChainMove {
    let step = &steps[index];
    let next = || if index + 1 < steps.len() { ChainMove::Run(index + 1) } else { ChainMove::Succeed };
    match if succeeded { &step.on_success } else { &step.on_failure } {
        Branch::Next => next(),
        Branch::Stop if succeeded => ChainMove::Succeed,
        Branch::Stop => ChainMove::Fail,
        Branch::Step(name) => steps.iter().position(|s| &s.name == name).map_or(ChainMove::Fail, ChainMove::Run),
    }
}

/// True when the result of the earlier step `step` (which must have succeeded) holds `equals`
/// at the JSON pointer `pointer` (e.g. the timesheet gate: `/missing` equals 0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub step: String,
    pub pointer: String,
    pub equals: serde_json::Value,
}

impl Condition {
    /// `results`: each earlier step's result when it succeeded.
    pub fn holds(&self, results: &BTreeMap<String, serde_json::Value>) -> bool {
        results.get(&self.step).and_then(|result| result.pointer(&self.pointer)) == Some(&self.equals)
    }
}

/// The id of a chain's child run for `step`: the same on every walk of the chain, so a resumed
/// chain finds the children it already started.
pub fn child_run_id(parent: &str, step: &str) -> String {
    run_id_for_key(parent, "step", step)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// POSTed `{runId, attempt, trigger, inputs, correlationId}` with `Idempotency-Key: <runId>`.
    pub url: String,
    /// When set, POSTed `{runId}` when a running run is cancelled.
    #[serde(default)]
    pub cancel_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub attempts: i32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Error classes never retried: `http_4xx`, `http_429`, `http_5xx`, `timeout`, `connect`.
    #[serde(default)]
    pub non_retryable: Vec<String>,
}

pub const ERROR_CLASSES: &[&str] = &["http_4xx", "http_429", "http_5xx", "timeout", "connect"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The least role that may approve (`maintainer` or `owner`); never the requester.
    pub role: String,
    /// Unapproved this long after the request: cancelled.
    pub timeout_s: u64,
}

/// When a trigger may be requested: on `days`, from `starts` to `ends` local time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub days: Vec<String>,
    pub starts: String,
    pub ends: String,
    pub time_zone: String,
}

impl Window {
    /// Whether `at` falls inside; `Err` names what is malformed.
    pub fn contains(&self, at: DateTime<Utc>) -> Result<bool, String> {
        let zone: chrono_tz::Tz =
            self.time_zone.parse().map_err(|_| format!("window.time_zone `{}` is not a time zone", self.time_zone))?;
        let time = |name: &str, text: &str| {
            NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| format!("window.{name} `{text}` is not HH:MM"))
        };
        let (starts, ends) = (time("starts", &self.starts)?, time("ends", &self.ends)?);
        let days = self
            .days
            .iter()
            .map(|d| d.parse::<Weekday>().map_err(|_| format!("window.days: `{d}` is not a weekday")))
            .collect::<Result<Vec<_>, _>>()?;
        let local = at.with_timezone(&zone);
        Ok(days.contains(&local.weekday()) && starts <= local.time() && local.time() < ends)
    }

    pub fn describe(&self) -> String {
        format!("{} {}-{} {}", self.days.join(","), self.starts, self.ends, self.time_zone)
    }
}

impl Triggers {
    /// What serde cannot check; `Err` names the trigger and the key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, spec) in &self.triggers {
            let fail = |what: String| Err(format!("triggers.\"{name}\".{what}"));
            if spec.retry.attempts < 1 {
                return fail("retry.attempts must be at least 1".into());
            }
            if let Some(class) = spec.retry.non_retryable.iter().find(|c| !ERROR_CLASSES.contains(&c.as_str())) {
                return fail(format!(
                    "retry.non_retryable: unknown class `{class}`; known: {}",
                    ERROR_CLASSES.join(", ")
                ));
            }
            if spec.timeout_s == 0 || spec.rate_limit.per_minute == 0 || spec.rate_limit.burst == 0 {
                return fail("timeout_s, rate_limit.per_minute and rate_limit.burst must be above 0".into());
            }
            if let Some(window) = &spec.window {
                window.contains(DateTime::UNIX_EPOCH).map_err(|e| format!("triggers.\"{name}\".{e}"))?;
            }
            if let Some(approval) = &spec.approval
                && !["maintainer", "owner"].contains(&approval.role.as_str())
            {
                return fail(format!("approval.role `{}` must be maintainer or owner", approval.role));
            }
            if !spec.inputs.is_object() {
                return fail("inputs must be a JSON Schema object".into());
            }
            match (&spec.target, spec.steps.is_empty()) {
                (Some(_), true) => {}
                (None, false) => {
                    let mut seen = Vec::new();
                    for step in &spec.steps {
                        match self.triggers.get(&step.trigger) {
                            Some(child) if child.target.is_some() => {}
                            _ => {
                                return fail(format!(
                                    "steps: `{}` runs `{}`, which is not a trigger with a target",
                                    step.name, step.trigger
                                ));
                            }
                        }
                        if seen.contains(&step.name.as_str()) {
                            return fail(format!("steps: `{}` is named twice", step.name));
                        }
                        if let Some(when) = &step.when
                            && !seen.contains(&when.step.as_str())
                        {
                            return fail(format!(
                                "steps: `{}` depends on `{}`, not an earlier step",
                                step.name, when.step
                            ));
                        }
                        seen.push(step.name.as_str());
                    }
                    for (index, step) in spec.steps.iter().enumerate() {
                        for (key, branch) in [("on_success", &step.on_success), ("on_failure", &step.on_failure)] {
                            if let Branch::Step(target) = branch
                                && !spec.steps[index + 1..].iter().any(|later| &later.name == target)
                            {
                                return fail(format!(
                                    "steps: `{}`.{key} = `{target}` is not a later step (or next, continue, stop)",
                                    step.name
                                ));
                            }
                        }
                    }
                }
                _ => return fail("needs a target or steps, not both".into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn record(kind: RecordKind, attempt: i32) -> RunRecord {
        RunRecord { attempt, ..RunRecord::new("run_1", kind, at("2026-11-30T10:00:00Z"), "ct-runner", "t") }
    }

    fn apply(records: &[RunRecord]) -> (Option<Run>, Vec<String>) {
        let mut run = None;
        let mut ignored = vec![];
        for r in records {
            match fold(run.as_ref(), r) {
                Ok(next) => run = Some(next),
                Err(Ignored(why)) => ignored.push(format!("{}: {why}", r.kind.as_str())),
            }
        }
        (run, ignored)
    }

    #[test]
    fn retries_then_success() {
        use RecordKind::*;
        let (run, ignored) = apply(&[
            record(Requested, 0),
            record(AttemptStarted, 1),
            record(AttemptFailed, 1),
            record(AttemptStarted, 2),
            record(AttemptStarted, 2),
            record(AttemptFailed, 2),
            record(AttemptStarted, 3),
            record(Succeeded, 3),
            record(Failed, 3),
        ]);
        let run = run.unwrap();
        assert_eq!((run.status, run.attempt), (RunStatus::Success, 3));
        assert_eq!(ignored, ["attempt_started: not the next attempt", "failed: the run has ended"]);
    }

    #[test]
    fn cancel_of_a_queued_run_ends_it_and_a_late_attempt_is_ignored() {
        use RecordKind::*;
        let (run, ignored) = apply(&[record(Requested, 0), record(CancelRequested, 0), record(AttemptStarted, 1)]);
        assert_eq!(run.unwrap().status, RunStatus::Cancelled);
        assert_eq!(ignored, ["attempt_started: the run has ended"]);
        let (run, ignored) = apply(&[
            record(Requested, 0),
            record(AttemptStarted, 1),
            record(CancelRequested, 0),
            record(AttemptStarted, 2),
            record(Cancelled, 0),
        ]);
        assert_eq!(run.unwrap().status, RunStatus::Cancelled);
        assert_eq!(ignored, ["attempt_started: a cancel was requested"]);
    }

    #[test]
    fn approvals_only_while_awaiting() {
        use RecordKind::*;
        let requested = RunRecord { awaiting_approval: true, ..record(Requested, 0) };
        let (run, _) = apply(std::slice::from_ref(&requested));
        assert_eq!(run.unwrap().status, RunStatus::AwaitingApproval);
        let (run, ignored) = apply(&[requested.clone(), record(AttemptStarted, 1), record(Approved, 0)]);
        assert_eq!(run.unwrap().status, RunStatus::Queued);
        assert_eq!(ignored, ["attempt_started: does not apply in this state"]);
        let (run, _) = apply(&[requested, record(ApprovalExpired, 0), record(Approved, 0)]);
        let run = run.unwrap();
        assert_eq!((run.status, run.error_class.as_deref()), (RunStatus::Cancelled, Some("approval_expired")));
    }

    #[test]
    fn a_callback_is_delivered_once_after_the_end() {
        use RecordKind::*;
        let requested = RunRecord { on_fail: Some("http://127.0.0.1/cb".into()), ..record(Requested, 0) };
        let (run, ignored) = apply(&[
            requested.clone(),
            record(CallbackDelivered, 0),
            record(AttemptStarted, 1),
            record(Failed, 1),
            record(CallbackDelivered, 0),
            record(CallbackDelivered, 0),
        ]);
        let run = run.unwrap();
        assert_eq!(run.callback(), Some("http://127.0.0.1/cb"));
        assert!(run.callback_delivered_at.is_some());
        assert_eq!(ignored, ["callback_delivered: the run has not ended", "callback_delivered: no callback is owed"]);
        let (run, _) = apply(&[requested, record(AttemptStarted, 1), record(Succeeded, 1)]);
        assert_eq!(run.unwrap().callback(), None, "on_fail is not owed after a success");
    }

    #[test]
    fn progress_counts_only_while_running_and_reports_give_edges() {
        use RecordKind::*;
        let report = Report {
            inputs: vec![Dataset { namespace: "postgres://finance".into(), name: "timesheets".into() }],
            outputs: vec![
                Dataset { namespace: "s3://docs".into(), name: "invoices".into() },
                Dataset { namespace: "s3://docs".into(), name: "summaries".into() },
            ],
            ..Report::default()
        };
        assert_eq!(report.edges().len(), 2);
        let text = serde_json::to_string(&report).unwrap();
        let progress = RunRecord { report: Some(text.clone()), ..record(Progress, 0) };
        let (run, ignored) = apply(&[record(Requested, 0), progress.clone(), record(AttemptStarted, 1), progress]);
        assert_eq!(run.unwrap().progress, Some(text));
        assert_eq!(ignored, ["progress: the run is not running"]);
        assert!(serde_json::from_str::<Report>(r#"{"inputs":[{"namespace":"a"}]}"#).is_err(), "a dataset needs a name");
    }

    #[test]
    fn a_continuation_finishes_the_attempt_the_target_accepted() {
        use RecordKind::*;
        let (run, ignored) = apply(&[
            record(Requested, 0),
            record(AttemptStarted, 1),
            record(AwaitingContinue, 2),
            record(AwaitingContinue, 1),
            record(AwaitingContinue, 1),
        ]);
        let run = run.unwrap();
        assert!(run.awaiting_continue_since.is_some());
        assert_eq!(ignored, ["awaiting_continue: does not apply in this state"; 2]);
        let done = fold(Some(&run), &record(Succeeded, 1)).unwrap();
        assert_eq!(done.status, RunStatus::Success);
    }

    #[test]
    fn records_round_trip_through_avro() {
        let mut r = record(RecordKind::Succeeded, 2);
        r.result = Some(r#"{"metrics":{"documentsGenerated":3}}"#.into());
        r.on_complete = Some("http://127.0.0.1:9/done".into());
        let datum = encode_record(&r).unwrap();
        assert_eq!(decode_record(record_schema(), &datum).unwrap(), Some(r));
    }

    #[test]
    fn run_ids_from_keys_are_stable_and_scoped() {
        let a = run_id_for_key("operator:1", "contract.regenerate", "k1");
        assert_eq!(a, run_id_for_key("operator:1", "contract.regenerate", "k1"));
        assert_ne!(a, run_id_for_key("operator:2", "contract.regenerate", "k1"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn conditions_read_earlier_results() {
        let results: BTreeMap<String, serde_json::Value> =
            [("check".to_owned(), serde_json::json!({"missing": 0}))].into();
        let gate = Condition { step: "check".into(), pointer: "/missing".into(), equals: serde_json::json!(0) };
        assert!(gate.holds(&results));
        assert!(!Condition { equals: serde_json::json!(3), ..gate.clone() }.holds(&results));
        assert!(!Condition { step: "skipped".into(), ..gate }.holds(&results));
        assert_ne!(child_run_id("run_1", "a"), child_run_id("run_1", "b"));
    }

    #[test]
    fn branches_move_a_chain_forward_and_end_it() {
        let chain: Triggers = toml::from_str(
            r#"
            [triggers.leaf]
            description = "d"
            target = { url = "http://t/leaf" }
            inputs = { type = "object" }
            retry = { attempts = 1, backoff_base_ms = 1, backoff_max_ms = 1 }
            timeout_s = 1
            sla_s = 1
            rate_limit = { per_minute = 1, burst = 1 }

            [triggers.flow]
            description = "d"
            inputs = { type = "object" }
            retry = { attempts = 1, backoff_base_ms = 1, backoff_max_ms = 1 }
            timeout_s = 1
            sla_s = 1
            rate_limit = { per_minute = 1, burst = 1 }
            [[triggers.flow.steps]]
            name = "parse"
            trigger = "leaf"
            on_failure = "notify"
            [[triggers.flow.steps]]
            name = "generate"
            trigger = "leaf"
            on_success = "stop"
            on_failure = "continue"
            [[triggers.flow.steps]]
            name = "notify"
            trigger = "leaf"
            "#,
        )
        .unwrap();
        chain.validate().unwrap();
        let steps = &chain.triggers["flow"].steps;
        assert_eq!(after_step(steps, 0, true), ChainMove::Run(1));
        assert_eq!(after_step(steps, 0, false), ChainMove::Run(2), "a jump over `generate`");
        assert_eq!(after_step(steps, 1, true), ChainMove::Succeed);
        assert_eq!(after_step(steps, 1, false), ChainMove::Run(2));
        assert_eq!(after_step(steps, 2, true), ChainMove::Succeed);
        assert_eq!(after_step(steps, 2, false), ChainMove::Fail, "stop is the default after a failure");

        let mut backwards = chain.clone();
        backwards.triggers.get_mut("flow").unwrap().steps[2].on_failure = Branch::Step("parse".into());
        let error = backwards.validate().unwrap_err();
        assert!(error.contains("`notify`.on_failure = `parse` is not a later step"), "{error}");
        let mut twice = chain;
        twice.triggers.get_mut("flow").unwrap().steps[2].name = "parse".into();
        assert!(twice.validate().unwrap_err().contains("`parse` is named twice"));
    }

    #[test]
    fn windows_are_local_time() {
        let window = Window {
            days: vec!["Mon".into(), "Tue".into()],
            starts: "09:00".into(),
            ends: "17:00".into(),
            time_zone: "Europe/London".into(),
        };
        assert!(window.contains(at("2026-07-06T08:30:00Z")).unwrap(), "09:30 BST on a Monday");
        assert!(!window.contains(at("2026-07-06T07:30:00Z")).unwrap(), "08:30 BST");
        assert!(!window.contains(at("2026-07-08T10:00:00Z")).unwrap(), "a Wednesday");
        assert!(Window { starts: "9am".into(), ..window }.contains(at("2026-07-06T08:30:00Z")).is_err());
    }
}
