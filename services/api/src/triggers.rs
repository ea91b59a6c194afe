//! Triggers and people's decisions on runs: `POST /triggers/{name}`, `POST /runs/{id}/cancel`,
//! `/approve`, `/reject`. Each writes a `ct.v1.RunRecord` to `ct.runs.v1`; the runner's read
//! model applies it and the runner executes. Nothing here writes a table.
//!
//! `Idempotency-Key` (IETF draft `httpapi-idempotency-key-header`): the run id is derived from
//! who asked, the trigger and the key, so a repeat names the same run. While a key's request is
//! being written, its Postgres advisory lock is held (a concurrent repeat gets 409), until the
//! read model shows the run, so a later repeat finds it and compares the body's fingerprint.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use ct_core::{
    redact::{RedactionReport, Redactor},
    runs::{self, RecordKind, RunRecord, TriggerSpec, Triggers},
};
use ct_platform::{audit::RecordWriter, http_error::ApiError, registry::RegistryClient};
use governor::{DefaultDirectRateLimiter, Quota, clock::Clock as _};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use sqlx::Row;

use crate::{
    AppState,
    auth::{Permission, Role},
    health::{json_body, no_schema_yet, optional_text, reason},
    routes::internal,
    views::TriggeredRun,
};

/// The most a request waits for the read model to show the run it wrote (it is durable before;
/// this only makes a repeat of the key find it).
const OBSERVE: Duration = Duration::from_secs(3);
const MAX_KEY_CHARS: usize = 255;

/// The allow-list compiled: each trigger's input validator and rate limiter.
pub struct Catalogue {
    pub triggers: Arc<Triggers>,
    validators: HashMap<String, jsonschema::Validator>,
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    writer: RecordWriter,
    redactor: Redactor,
}

impl Catalogue {
    pub fn new(config: &crate::Config, triggers: Arc<Triggers>) -> anyhow::Result<Catalogue> {
        let mut validators = HashMap::new();
        let mut limiters = HashMap::new();
        for (name, spec) in &triggers.triggers {
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&spec.inputs)
                .map_err(|e| anyhow::anyhow!("triggers.\"{name}\".inputs is not a JSON Schema: {e}"))?;
            validators.insert(name.clone(), validator);
            let per_minute = NonZeroU32::new(spec.rate_limit.per_minute).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(spec.rate_limit.burst).unwrap_or(NonZeroU32::MIN);
            limiters
                .insert(name.clone(), governor::RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)));
        }
        let writer = RecordWriter::new(
            &config.kafka,
            RegistryClient::new(&config.registry.url),
            &config.runs.topic,
            runs::RECORD_NAME,
            runs::RECORD_SCHEMA_JSON,
            Duration::from_secs(10),
        )?;
        let redactor = Redactor::new(config.runs.redaction_salt.expose_secret().as_bytes().to_vec());
        Ok(Catalogue { triggers, validators, limiters, writer, redactor })
    }

    async fn write(&self, record: &RunRecord) -> Result<(), ApiError> {
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::warn!(%error, run_id = record.run_id, "A run record could not be written.");
            ApiError::unavailable("unavailable", "the log cannot take the request now; retry")
        };
        let datum = runs::encode_record(record).map_err(|e| unavailable(&e))?;
        self.writer.write(&record.run_id, &datum).await.map_err(|e| unavailable(&e))
    }

    /// The inputs as they go to the log: PII-named keys dropped, every string scrubbed.
    fn redact(&self, value: &Value) -> Value {
        let mut report = RedactionReport::default();
        redact_value(&self.redactor, value, &mut report)
    }
}

fn redact_value(redactor: &Redactor, value: &Value, report: &mut RedactionReport) -> Value {
    match value {
        Value::String(text) => Value::String(redactor.scrub(text, report).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact_value(redactor, v, report)).collect()),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(key, _)| !ct_core::redact::is_pii_key(key))
                .map(|(key, v)| (key.clone(), redact_value(redactor, v, report)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn not_found(run_id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no triggered run `{run_id}`")).with_field("runId")
}

/// The first violation of the trigger's input schema, as a 422 naming the field.
fn input_error(validator: &jsonschema::Validator, inputs: &Value) -> Option<ApiError> {
    let error = validator.iter_errors(inputs).next()?;
    let path = error.instance_path().to_string();
    let field = match error.kind() {
        jsonschema::error::ValidationErrorKind::Required { property } => {
            property.as_str().map(str::to_owned).unwrap_or_default()
        }
        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
            unexpected.first().cloned().unwrap_or_default()
        }
        _ => path.trim_start_matches('/').replace('/', "."),
    };
    let field = if field.is_empty() { "body".to_owned() } else { field };
    Some(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("{error}")).with_field(field))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", format!("`{name}` must be visible ASCII"))
                    .with_field(name)
            })
        })
        .transpose()
}

/// `POST /triggers/{name}` (operator and above): body = the trigger's inputs. Optional headers:
/// `Idempotency-Key`, `X-Correlation-Id`, `X-CT-Reason`. Answers `202 {"runId", "status"}`; a
/// repeat of a key with the same body `200` with the same run.
pub async fn trigger(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let inputs = json_body(&body)?;
    let request = Request {
        name: &name,
        name_field: "name",
        inputs: &inputs,
        inputs_field: "",
        reason: header_text(&headers, "x-ct-reason")?.map(str::to_owned),
        correlation_id: header_text(&headers, "x-correlation-id")?.map(str::to_owned),
        on_complete: None,
        on_fail: None,
        body: &body,
    };
    request_run(&app, &headers, &actor, request).await
}

/// A request to run a trigger, from either door (`/triggers/{name}` or `/api/v1/jobs/run`).
struct Request<'a> {
    name: &'a str,
    /// Where the trigger's name was, for a 404 (`name` or `job`).
    name_field: &'a str,
    inputs: &'a Value,
    /// Prefix of an input's field in a 422 (`""` or `inputs.`).
    inputs_field: &'a str,
    reason: Option<String>,
    correlation_id: Option<String>,
    /// Completion callbacks (only through the control-room API).
    on_complete: Option<String>,
    on_fail: Option<String>,
    /// The raw body: with the trigger's name, the fingerprint an `Idempotency-Key` must repeat.
    body: &'a [u8],
}

fn spec<'a>(catalogue: &'a Catalogue, name: &str, field: &str) -> Result<&'a TriggerSpec, ApiError> {
    catalogue.triggers.triggers.get(name).ok_or_else(|| {
        let known: Vec<&str> = catalogue.triggers.triggers.keys().map(String::as_str).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_trigger",
            format!("`{name}` is not an allow-listed trigger; triggers: {}", known.join(", ")),
        )
        .with_field(field)
    })
}

/// What every request must pass before anything is written: known trigger, valid inputs, open
/// window.
fn check<'a>(catalogue: &'a Catalogue, request: &Request<'_>) -> Result<&'a TriggerSpec, ApiError> {
    let spec = spec(catalogue, request.name, request.name_field)?;
    if let Some(error) = input_error(&catalogue.validators[request.name], request.inputs) {
        let field = error.field.clone();
        return Err(match (request.inputs_field, field.as_deref()) {
            ("", _) | (_, None) => error,
            (prefix, Some("body")) => error.with_field(prefix.trim_end_matches('.')),
            (prefix, Some(field)) => error.with_field(format!("{prefix}{field}")),
        });
    }
    if let Some(window) = &spec.window
        && !window.contains(Utc::now()).unwrap_or(false)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "outside_window",
            format!("`{}` may be triggered only {}", request.name, window.describe()),
        )
        .with_field(request.name_field));
    }
    Ok(spec)
}

async fn request_run(
    app: &AppState,
    headers: &HeaderMap,
    actor: &str,
    request: Request<'_>,
) -> Result<Response, ApiError> {
    let catalogue = &app.triggers;
    let name = request.name;
    let key = header_text(headers, "idempotency-key")?;
    if let Some(key) = key
        && (key.is_empty() || key.len() > MAX_KEY_CHARS)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("`Idempotency-Key` must be 1 to {MAX_KEY_CHARS} characters"),
        )
        .with_field("Idempotency-Key"));
    }
    let spec = check(catalogue, &request)?;
    let hash = runs::request_hash(name, request.body);
    let run_id = match key {
        Some(key) => runs::run_id_for_key(actor, name, key),
        None => runs::run_id_from_bytes(*uuid::Uuid::new_v4().as_bytes()),
    };
    let record = RunRecord {
        reason: request.reason,
        inputs: Some(catalogue.redact(request.inputs).to_string()),
        request_hash: Some(hash.clone()),
        correlation_id: Some(request.correlation_id.unwrap_or_else(|| run_id.clone())),
        awaiting_approval: spec.approval.is_some(),
        on_complete: request.on_complete,
        on_fail: request.on_fail,
        ..RunRecord::new(&run_id, RecordKind::Requested, Utc::now(), actor, name)
    };
    let Some(_) = key else {
        charge(catalogue, name)?;
        catalogue.write(&record).await?;
        tracing::info!(run_id, trigger = name, actor, "Run requested.");
        return Ok(accepted(StatusCode::ACCEPTED, &run_id, &record));
    };
    // Held until the model shows the run (or OBSERVE passes): a concurrent repeat gets 409.
    let mut lock = app.pool.begin().await.map_err(internal)?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('ct-api-idempotency'), hashtext($1))")
            .bind(&run_id)
            .fetch_one(&mut *lock)
            .await
            .map_err(internal)?;
    if !locked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being processed; retry",
        )
        .with_field("Idempotency-Key")
        .retry_after(1));
    }
    // Every query of a keyed request runs on this one connection: waiting requests hold one
    // connection each, never two (the pool cannot run dry by waiting on itself).
    if let Some(existing) = stored_hash(&mut lock, &run_id).await? {
        if existing.as_deref() != Some(hash.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another trigger or body",
            )
            .with_field("Idempotency-Key"));
        }
        // The run exists, so its table does.
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM trigger_runs WHERE run_id = $1")
            .bind(&run_id)
            .fetch_optional(&mut *lock)
            .await
            .map_err(internal)?;
        let status = status.unwrap_or_else(|| "queued".into());
        return Ok(
            (StatusCode::OK, Json(json!({"runId": run_id, "status": status, "duplicate": true}))).into_response()
        );
    }
    charge(catalogue, name)?;
    catalogue.write(&record).await?;
    tracing::info!(run_id, trigger = name, actor, "Run requested.");
    let deadline = tokio::time::Instant::now() + OBSERVE;
    while tokio::time::Instant::now() < deadline && stored_hash(&mut lock, &run_id).await?.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(lock);
    Ok(accepted(StatusCode::ACCEPTED, &run_id, &record))
}

fn charge(catalogue: &Catalogue, name: &str) -> Result<(), ApiError> {
    catalogue.limiters[name].check().map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("`{name}` is triggered too often; retry later"),
        )
        .with_field("name")
        .retry_after(wait.as_secs() + 1)
    })
}

fn accepted(status: StatusCode, run_id: &str, record: &RunRecord) -> Response {
    let state = if record.awaiting_approval { "awaiting_approval" } else { "queued" };
    (status, Json(json!({"runId": run_id, "status": state}))).into_response()
}

/// `Some(request_hash)` when the run exists in the model. In a savepoint: a missing table (the
/// runner never started) must not abort the transaction that holds the key's lock.
async fn stored_hash(
    lock: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    run_id: &str,
) -> Result<Option<Option<String>>, ApiError> {
    let mut savepoint = sqlx::Connection::begin(&mut **lock).await.map_err(internal)?;
    let found = sqlx::query("SELECT request_hash FROM trigger_runs WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(&mut *savepoint)
        .await;
    match found {
        Ok(row) => {
            savepoint.commit().await.map_err(internal)?;
            Ok(row.map(|r| r.get("request_hash")))
        }
        Err(error) if no_schema_yet(&error) => {
            savepoint.rollback().await.map_err(internal)?;
            Ok(None)
        }
        Err(error) => Err(internal(error)),
    }
}

/// The run `run_id` (else 404 naming `runId`) when it `fits`; otherwise 409 `code`, `why` it
/// does not.
async fn run_where(
    app: &AppState,
    run_id: &str,
    fits: impl Fn(&TriggeredRun) -> bool,
    code: &'static str,
    why: impl Fn(&TriggeredRun) -> String,
) -> Result<TriggeredRun, ApiError> {
    let run = load_run(app, run_id).await?.ok_or_else(|| not_found(run_id))?;
    if !fits(&run) {
        return Err(ApiError::new(StatusCode::CONFLICT, code, why(&run)).with_field("runId"));
    }
    Ok(run)
}

/// A triggered run from the runner's read model (`None` also while its schema does not exist).
pub(crate) async fn load_run(app: &AppState, run_id: &str) -> Result<Option<TriggeredRun>, ApiError> {
    if run_id.contains('\0') {
        return Ok(None);
    }
    match sqlx::query("SELECT * FROM trigger_runs WHERE run_id = $1").bind(run_id).fetch_optional(&app.pool).await {
        Ok(row) => Ok(row.as_ref().map(TriggeredRun::from_row)),
        Err(error) if no_schema_yet(&error) => Ok(None),
        Err(error) => Err(internal(error)),
    }
}

/// `POST /runs/{id}/cancel` (operator and above), body `{"reason"}` optional: a queued or
/// awaiting run ends at once; a running one when the runner has stopped the call.
pub async fn cancel(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let reason = if body.is_empty() { None } else { optional_text(&json_body(&body)?, "reason")? };
    let ended = |run: &TriggeredRun| runs::RunStatus::parse(&run.status).is_none_or(runs::RunStatus::is_final);
    let run =
        run_where(&app, &run_id, |run| !ended(run), "run_ended", |run| format!("the run has ended: {}", run.status))
            .await?;
    let record =
        RunRecord { reason, ..RunRecord::new(&run_id, RecordKind::CancelRequested, Utc::now(), &actor, &run.trigger) };
    app.triggers.write(&record).await?;
    tracing::info!(run_id, actor, "Run cancel requested.");
    Ok((StatusCode::ACCEPTED, Json(json!({"runId": run_id, "status": "cancel_requested"}))).into_response())
}

/// `POST /runs/{id}/approve` and `/reject` (maintainer and above, and at least the trigger's
/// approver role), body `{"reason"}` required; never the requester.
pub async fn approve(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    path: Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(state, headers, path, body, RecordKind::Approved).await
}

pub async fn reject(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    path: Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(state, headers, path, body, RecordKind::Rejected).await
}

async fn decide(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
    body: Bytes,
    kind: RecordKind,
) -> Result<Response, ApiError> {
    let (role, actor) = app.users.actor(&headers, Permission::Approve)?;
    let reason = reason(&json_body(&body)?)?;
    let awaiting = |run: &TriggeredRun| run.status == runs::RunStatus::AwaitingApproval.as_str();
    let run = run_where(&app, &run_id, awaiting, "not_awaiting_approval", |run| {
        format!("the run is {}, not awaiting approval", run.status)
    })
    .await?;
    let needed = app.triggers.triggers.triggers.get(&run.trigger).and_then(|s: &TriggerSpec| s.approval.as_ref());
    if let Some(approval) = needed
        && approval.role == "owner"
        && role != Role::Owner
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an owner may decide on this trigger's runs",
        ));
    }
    if run.initiator == actor {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_approval",
            "the requester may not decide on their own run",
        )
        .with_field("Authorization"));
    }
    let record = RunRecord { reason: Some(reason), ..RunRecord::new(&run_id, kind, Utc::now(), &actor, &run.trigger) };
    app.triggers.write(&record).await?;
    tracing::info!(run_id, actor, decision = kind.as_str(), "Run decision written.");
    Ok((StatusCode::ACCEPTED, Json(json!({"runId": run_id, "decision": kind.as_str()}))).into_response())
}

/// `GET /triggers` (any role): the allow-list, so people and pages know what may be run.
pub async fn list(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    let triggers: Vec<crate::views::TriggerInfo> = app
        .triggers
        .triggers
        .triggers
        .iter()
        .map(|(name, spec)| crate::views::TriggerInfo {
            name: name.clone(),
            description: spec.description.clone(),
            inputs: spec.inputs.clone(),
            attempts: spec.retry.attempts,
            timeout_s: spec.timeout_s,
            sla_s: spec.sla_s,
            rate_limit_per_minute: spec.rate_limit.per_minute,
            approval_role: spec.approval.as_ref().map(|a| a.role.clone()),
            window: spec.window.as_ref().map(|w| w.describe()),
        })
        .collect();
    Ok(Json(triggers).into_response())
}

/// The control-room API's job request (`POST /api/v1/jobs/run` and `/validate`): `{"job",
/// "inputs", "reason"?, "correlationId"?}`.
fn job_request<'a>(body: &'a Value, raw: &'a [u8], hosts: &[String]) -> Result<Request<'a>, ApiError> {
    let name = match body.get("job") {
        Some(Value::String(name)) => name.as_str(),
        _ => return Err(crate::health::invalid("job", "`job` is required: the name of an allow-listed trigger")),
    };
    static EMPTY: Value = Value::Null;
    let inputs = body.get("inputs").unwrap_or(&EMPTY);
    if !inputs.is_object() {
        return Err(crate::health::invalid("inputs", "`inputs` must be an object (the trigger's inputs)"));
    }
    Ok(Request {
        name,
        name_field: "job",
        inputs,
        inputs_field: "inputs.",
        reason: optional_text(body, "reason")?,
        correlation_id: optional_text(body, "correlationId")?,
        on_complete: callback(body, "onComplete", hosts)?,
        on_fail: callback(body, "onFail", hosts)?,
        body: raw,
    })
}

/// `callbacks.<which>`: an http(s) URL on an allowed host, or absent.
fn callback(body: &Value, which: &str, hosts: &[String]) -> Result<Option<String>, ApiError> {
    let field = format!("callbacks.{which}");
    let invalid = |message: String| crate::health::invalid(&field, message);
    let value = match body.get("callbacks") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(callbacks)) => callbacks.get(which),
        Some(_) => return Err(crate::health::invalid("callbacks", "`callbacks` must be an object")),
    };
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(_) => return Err(invalid(format!("`{field}` must be a URL"))),
    };
    let parsed = url::Url::parse(text).map_err(|e| invalid(format!("`{field}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("`{field}` must be an http or https URL")));
    }
    match parsed.host_str() {
        Some(host) if hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host)) => Ok(Some(text.clone())),
        host => Err(invalid(format!(
            "`{field}`: host `{}` is not allowed (runs.callback_hosts: {})",
            host.unwrap_or_default(),
            hosts.join(", ")
        ))),
    }
}

/// `POST /api/v1/jobs/run` (operator and above): `POST /triggers/{name}` with the control-room
/// API's body; the same checks, answers and `Idempotency-Key` rules.
pub async fn run_job(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let parsed = json_body(&body)?;
    let request = job_request(&parsed, &body, &app.config.runs.callback_hosts)?;
    request_run(&app, &headers, &actor, request).await
}

/// `POST /api/v1/jobs/validate` (operator and above): every check of a run request, and what
/// would run; writes nothing and spends no rate limit.
pub async fn validate_job(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    app.users.actor(&headers, Permission::Operate)?;
    let parsed = json_body(&body)?;
    let request = job_request(&parsed, &body, &app.config.runs.callback_hosts)?;
    let spec = check(&app.triggers, &request)?;
    Ok(Json(json!({
        "valid": true,
        "job": request.name,
        "status": if spec.approval.is_some() { "awaiting_approval" } else { "queued" },
        "target": spec.target.as_ref().map(|t| t.url.clone()),
        "attempts": spec.retry.attempts,
        "timeoutS": spec.timeout_s,
        "approvalRole": spec.approval.as_ref().map(|a| a.role.clone()),
    }))
    .into_response())
}

const MAX_REPORT_DATASETS: usize = 100;
const MAX_REPORT_MESSAGE_CHARS: usize = 500;

/// `POST /api/v1/runs/{id}/events` (operator and above; a running job reports with such a
/// token): `{message?, metrics?, inputs?, outputs?, removed?}` becomes a `PROGRESS` record; the
/// runs model keeps the latest report and the lineage edges it adds or withdraws.
pub async fn report(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let report: runs::Report = serde_json::from_value(json_body(&body)?).map_err(|e| {
        let message = e.to_string();
        // serde names the field between backticks ("unknown field `x`", "missing field `name`").
        let field = message.split('`').nth(1).filter(|f| !f.contains(' ')).unwrap_or("body").to_owned();
        crate::health::invalid(&field, message)
    })?;
    if report.message.as_ref().is_some_and(|m| m.chars().count() > MAX_REPORT_MESSAGE_CHARS) {
        return Err(crate::health::invalid(
            "message",
            format!("`message` is longer than {MAX_REPORT_MESSAGE_CHARS} characters"),
        ));
    }
    for (field, count) in
        [("inputs", report.inputs.len()), ("outputs", report.outputs.len()), ("removed", report.removed.len())]
    {
        if count > MAX_REPORT_DATASETS {
            return Err(crate::health::invalid(
                field,
                format!("`{field}` lists more than {MAX_REPORT_DATASETS} items"),
            ));
        }
    }
    let running = |run: &TriggeredRun| run.status == runs::RunStatus::Running.as_str();
    let run = run_where(&app, &run_id, running, "run_not_running", |run| {
        format!("the run is {}; only a running job reports", run.status)
    })
    .await?;
    let text = serde_json::to_string(&report).map_err(|e| ApiError::unavailable("unavailable", e.to_string()))?;
    let record = RunRecord {
        report: Some(text),
        ..RunRecord::new(&run_id, RecordKind::Progress, Utc::now(), &actor, &run.trigger)
    };
    app.triggers.write(&record).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"runId": run_id, "status": "accepted"}))).into_response())
}

/// `GET /api/v1/lineage/graph[?job=]` (maintainer and owner): the datasets and the edges between
/// them that jobs reported and did not withdraw, with the job and its latest run.
pub async fn lineage_graph(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    crate::routes::reject_unknown(&params, &["job"])?;
    let rows = crate::health::rows_or_none(
        sqlx::query(
            "SELECT * FROM lineage_edges
             WHERE added_at IS NOT NULL AND (removed_at IS NULL OR added_at > removed_at)
               AND ($1::text IS NULL OR job = $1)
             ORDER BY job, source_namespace, source_name, target_namespace, target_name LIMIT 5000",
        )
        .bind(params.get("job")),
        &app.pool,
    )
    .await?;
    let mut nodes = std::collections::BTreeMap::new();
    let edges = rows
        .iter()
        .map(|row| {
            let mut node = |namespace: String, name: String| {
                let id = format!("{namespace}/{name}");
                nodes.entry(id.clone()).or_insert(crate::views::LineageNode { id: id.clone(), namespace, name });
                id
            };
            let source = node(row.get("source_namespace"), row.get("source_name"));
            let target = node(row.get("target_namespace"), row.get("target_name"));
            crate::views::LineageEdge {
                source,
                target,
                job: row.get("job"),
                last_run_id: row.get::<Option<String>, _>("last_run_id").unwrap_or_default(),
                first_seen_at: crate::views::Micros(
                    row.get::<Option<chrono::DateTime<Utc>>, _>("first_seen_at").unwrap_or_default(),
                ),
                added_at: crate::views::Micros(
                    row.get::<Option<chrono::DateTime<Utc>>, _>("added_at").unwrap_or_default(),
                ),
            }
        })
        .collect();
    Ok(Json(crate::views::LineageGraph { nodes: nodes.into_values().collect(), edges }).into_response())
}

/// `POST /api/v1/webhooks/continue` (operator and above; the target calls it with such a token):
/// `{"runId", "status": "success" | "failed", "result"?, "error"?}` finishes the attempt the
/// target accepted with a 202.
pub async fn continue_run(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let body = json_body(&body)?;
    let invalid = crate::health::invalid;
    let run_id = optional_text(&body, "runId")?.ok_or_else(|| invalid("runId", "`runId` is required"))?;
    let kind = match optional_text(&body, "status")?.as_deref() {
        Some("success") => RecordKind::Succeeded,
        Some("failed") => RecordKind::Failed,
        _ => return Err(invalid("status", "`status` is `success` or `failed`")),
    };
    let result = match body.get("result") {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => Some(value.to_string()),
        Some(_) => return Err(invalid("result", "`result` must be an object")),
    };
    let error = optional_text(&body, "error")?;
    let waiting =
        |run: &TriggeredRun| run.status == runs::RunStatus::Running.as_str() && run.awaiting_continue_since.is_some();
    let run = run_where(&app, &run_id, waiting, "not_awaiting_continue", |run| {
        format!("the run is {} and not waiting for a continuation", run.status)
    })
    .await?;
    let record = RunRecord {
        attempt: run.attempt,
        result,
        error_class: (kind == RecordKind::Failed).then(|| "reported_failure".to_owned()),
        reason: error,
        ..RunRecord::new(&run_id, kind, Utc::now(), &actor, &run.trigger)
    };
    app.triggers.write(&record).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"runId": run_id, "status": kind.as_str()}))).into_response())
}
