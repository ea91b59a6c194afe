//! `/health`, `/systems` and `/systems/{systemId}/history`: the statuses the health evaluator
//! (`ct-health`, schema `ct_health`) keeps, for exactly the catalogued systems, in catalogue
//! order. The API computes no status: it shows the evaluator's, with its reason and message.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use ct_core::alerting::{self, Action, ActionKind, SilenceSpec};
use ct_platform::http_error::ApiError;
use ct_platform::registry::RegistryClient;
use serde_json::{Value, json};
use sqlx::Row;

pub use ct_core::health::Status;

use crate::{
    AppState,
    auth::Permission,
    routes::bad,
    routes::{cursor_param, internal, limit_param, page, reject_unknown, split_page},
    views::{Alert, Health, LastEvent, Slo, StatusChange, System, SystemHealth},
};

const ALERT_STATES: [&str; 3] = ["firing", "acknowledged", "resolved"];

/// `undefined_table`: the evaluator has not created its schema yet (never started).
pub(crate) fn no_schema_yet(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("42P01"))
}

/// The rows of a query on the evaluator's tables: none while its schema does not exist.
pub(crate) async fn rows_or_none(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &sqlx::PgPool,
) -> Result<Vec<sqlx::postgres::PgRow>, ApiError> {
    match query.fetch_all(pool).await {
        Ok(rows) => Ok(rows),
        Err(error) if no_schema_yet(&error) => Ok(Vec::new()),
        Err(error) => Err(internal(error)),
    }
}

/// Each catalogued system's status as last evaluated, or `unknown` when it was never evaluated.
async fn statuses(app: &AppState) -> Result<Vec<SystemHealth>, ApiError> {
    let rows = rows_or_none(
        sqlx::query("SELECT system_id, status, reason, message, last_transition_time, evaluated_at FROM statuses"),
        &app.pool,
    )
    .await?;
    Ok(app
        .catalogue
        .systems
        .iter()
        .map(|spec| match rows.iter().find(|row| row.get::<String, _>("system_id") == spec.id) {
            Some(row) => {
                let status = Status::parse(row.get("status")).unwrap_or(Status::Unknown);
                SystemHealth {
                    system_id: spec.id.clone(),
                    name: spec.name.clone(),
                    status,
                    statuspage: status.statuspage(),
                    reason: Some(row.get("reason")),
                    message: row.get("message"),
                    last_transition_time: Some(row.get("last_transition_time")),
                    evaluated_at: Some(row.get("evaluated_at")),
                }
            }
            None => SystemHealth {
                system_id: spec.id.clone(),
                name: spec.name.clone(),
                status: Status::Unknown,
                statuspage: Status::Unknown.statuspage(),
                reason: None,
                message: "unknown because the health evaluator has not evaluated this system yet".to_owned(),
                last_transition_time: None,
                evaluated_at: None,
            },
        })
        .collect())
}

pub async fn health(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    let systems = statuses(&app).await?;
    let status = Status::overall(systems.iter().map(|s| s.status));
    let evaluated_at = systems.iter().filter_map(|s| s.evaluated_at).max();
    Ok(Json(Health { status, statuspage: status.statuspage(), evaluated_at, systems }).into_response())
}

/// The SLOs the evaluator reports, of catalogued systems, in catalogue order, then by SLO name
/// and job.
async fn slo_rows(app: &AppState, system: Option<&str>, slo: Option<&str>) -> Result<Vec<Slo>, ApiError> {
    let rows = rows_or_none(
        sqlx::query(
            "SELECT * FROM slo_status WHERE ($1::text IS NULL OR system_id = $1) AND ($2::text IS NULL OR slo = $2)
             ORDER BY slo, job",
        )
        .bind(system)
        .bind(slo),
        &app.pool,
    )
    .await?;
    let slos: Vec<Slo> = rows.iter().map(Slo::from_row).collect();
    Ok(app
        .catalogue
        .systems
        .iter()
        .flat_map(|spec| slos.iter().filter(|s| s.system_id == spec.id).cloned().collect::<Vec<_>>())
        .collect())
}

/// `GET /slos`: every SLO of every catalogued system (and job), with its budget and burn.
/// Filters: `system`, `slo`.
pub async fn list_slos(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["system", "slo"])?;
    let system = params.get("system").map(String::as_str);
    if let Some(system) = system
        && app.catalogue.system(system).is_none()
    {
        return Err(bad("system", format!("`{system}` is not a catalogued system")));
    }
    let slo = params.get("slo").map(String::as_str);
    if let Some(slo) = slo
        && (slo.is_empty() || !slo.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(bad("slo", "an SLO name is letters, digits and dashes"));
    }
    Ok(Json(slo_rows(&app, system, slo).await?).into_response())
}

pub async fn list_systems(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    let statuses = statuses(&app).await?;
    let slos = slo_rows(&app, None, None).await?;
    let ids: Vec<&str> = statuses.iter().map(|s| s.system_id.as_str()).collect();
    let rows = sqlx::query("SELECT * FROM systems WHERE system_id = ANY($1)")
        .bind(&ids)
        .fetch_all(&app.pool)
        .await
        .map_err(internal)?;
    let systems: Vec<System> = statuses
        .into_iter()
        .map(|health| {
            let row = rows.iter().find(|row| row.get::<String, _>("system_id") == health.system_id);
            System {
                last_heartbeat: row.and_then(|r| r.get("last_heartbeat")),
                events_total: row.map_or(0, |r| r.get("events_total")),
                last_event: LastEvent {
                    at: row.and_then(|r| r.get("last_event_at")),
                    event_id: row.and_then(|r| r.get("last_event_id")),
                    event_type: row.and_then(|r| r.get("last_event_type")),
                },
                slos: slos.iter().filter(|s| s.system_id == health.system_id).cloned().collect(),
                health,
            }
        })
        .collect();
    Ok(Json(systems).into_response())
}

/// `GET /systems/{systemId}/history`: status changes, newest first, paged on `at` (one change per
/// system and tick, so the key never repeats).
pub async fn history(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(system_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    if app.catalogue.system(&system_id).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no catalogued system `{system_id}`"))
            .with_field("systemId"));
    }
    reject_unknown(&params, &["limit", "cursor"])?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let rows = rows_or_none(
        sqlx::query(
            "SELECT at, status, previous, reason, message, system_id FROM history
         WHERE system_id = $1 AND ($2::timestamptz IS NULL OR (at, system_id) < ($2, $3))
         ORDER BY at DESC LIMIT $4",
        )
        .bind(&system_id)
        .bind(cursor.as_ref().map(|c| c.at))
        .bind(cursor.as_ref().map(|c| c.id.clone()))
        .bind(limit + 1),
        &app.pool,
    )
    .await?;
    let (rows, next) = split_page(&rows, limit, "at", "system_id");
    let changes = rows
        .iter()
        .map(|row| {
            let status = Status::parse(row.get("status")).unwrap_or(Status::Unknown);
            StatusChange {
                at: row.get::<DateTime<Utc>, _>("at"),
                status,
                statuspage: status.statuspage(),
                previous: row.get::<Option<String>, _>("previous").as_deref().and_then(Status::parse),
                reason: row.get("reason"),
                message: row.get("message"),
            }
        })
        .collect();
    let path = format!("/systems/{}/history", ct_platform::registry::encode_segment(&system_id));
    Ok(page(changes, next, &path, &params))
}

/// `GET /alerts`: the alerts the health evaluator decided, newest first, paged on `(firedAt, id)`
/// (both fixed when an alert fires). Filters: `state`, `system`, `rule`.
pub async fn alerts(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["state", "system", "rule", "limit", "cursor"])?;
    let state = params
        .get("state")
        .map(|s| {
            ALERT_STATES
                .into_iter()
                .find(|known| *known == s.as_str())
                .ok_or_else(|| bad("state", format!("unknown state `{s}`; allowed: {}", ALERT_STATES.join(", "))))
        })
        .transpose()?;
    if let Some(system) = params.get("system")
        && app.catalogue.system(system).is_none()
    {
        return Err(bad("system", format!("`{system}` is not a catalogued system")));
    }
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let rows = rows_or_none(
sqlx::query(
        "SELECT * FROM alerts
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR system_id = $2) AND ($3::text IS NULL OR rule = $3)
           AND ($4::timestamptz IS NULL OR (fired_at, id) < ($4, $5))
         ORDER BY fired_at DESC, id DESC LIMIT $6",
    )
    .bind(state)
    .bind(params.get("system"))
    .bind(params.get("rule"))
    .bind(cursor.as_ref().map(|c| c.at))
    .bind(cursor.as_ref().map(|c| c.id.clone()))
    .bind(limit + 1),
    &app.pool,
    )
    .await?;
    let (rows, next) = split_page(&rows, limit, "fired_at", "id");
    Ok(page(rows.iter().map(Alert::from_row).collect(), next, "/alerts", &params))
}

/// Writes people's actions on alerts to the log (the health evaluator applies them).
pub struct ActionWriter(ct_platform::audit::RecordWriter);

const MAX_REASON_CHARS: usize = 500;

impl ActionWriter {
    pub fn new(config: &crate::Config) -> Result<ActionWriter, rdkafka::error::KafkaError> {
        Ok(ActionWriter(ct_platform::audit::RecordWriter::new(
            &config.kafka,
            RegistryClient::new(&config.registry.url),
            &config.actions.audit_topic,
            alerting::ACTION_RECORD,
            alerting::ACTION_SCHEMA_JSON,
            std::time::Duration::from_secs(10),
        )?))
    }

    async fn write(&self, action: &Action) -> Result<(), ApiError> {
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::warn!(%error, "An alert action could not be written.");
            ApiError::unavailable("unavailable", "the log cannot take the action now; retry")
        };
        let datum = alerting::encode_action(action).map_err(|e| unavailable(&e))?;
        self.0.write(&action.alert_id, &datum).await.map_err(|e| unavailable(&e))
    }
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

pub(crate) fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {e}")).with_field("body")
    })
}

/// A string field of `body`: `None` when absent or null; 422 naming it when not a string.
pub(crate) fn optional_text(body: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.contains('\0') => Ok(Some(text.trim().to_owned())),
        Some(Value::String(_)) => Err(invalid(field, format!("`{field}` contains U+0000"))),
        Some(_) => Err(invalid(field, format!("`{field}` must be a string"))),
    }
}

/// Why a person acts: required, at most [`MAX_REASON_CHARS`].
pub(crate) fn reason(body: &Value) -> Result<String, ApiError> {
    match optional_text(body, "reason")? {
        Some(reason) if reason.chars().count() > MAX_REASON_CHARS => {
            Err(invalid("reason", format!("`reason` is longer than {MAX_REASON_CHARS} characters")))
        }
        Some(reason) if !reason.is_empty() => Ok(reason),
        _ => Err(invalid("reason", "`reason` is required: why, in a few words")),
    }
}

const ALERT_RULES: [&str; 4] = ["fn_errors", "system_red", "slo_burn", "run_sla"];
const SILENCE_STATES: [&str; 3] = ["pending", "active", "expired"];
const MAX_SILENCE_DAYS: i64 = 7;

/// `POST /silences` (operator and above), body `{"rule"?, "system"?, "startsAt"?, "endsAt",
/// "reason"}`: writes a SILENCE `ct.v1.AlertAudit` record; from the next clock tick, alerts that
/// match decide their transitions as usual but notify nobody while the silence lasts.
pub async fn silence(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let body = json_body(&body)?;
    let rule = optional_text(&body, "rule")?;
    if let Some(rule) = &rule
        && !ALERT_RULES.contains(&rule.as_str())
    {
        return Err(invalid("rule", format!("unknown rule `{rule}`; rules: {}", ALERT_RULES.join(", "))));
    }
    let system = optional_text(&body, "system")?;
    if let Some(system) = &system
        && app.catalogue.system(system).is_none()
    {
        return Err(invalid("system", format!("`{system}` is not a catalogued system")));
    }
    if rule.is_none() && system.is_none() {
        return Err(invalid("rule", "a silence needs `rule`, `system` or both (it would silence everything)"));
    }
    let time = |field: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        optional_text(&body, field)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                    invalid(field, format!("`{field}` must be an RFC 3339 time such as 2026-03-03T12:00:00Z"))
                })
            })
            .transpose()
    };
    let now = Utc::now();
    let starts_at = time("startsAt")?.unwrap_or(now);
    let Some(ends_at) = time("endsAt")? else { return Err(invalid("endsAt", "`endsAt` is required")) };
    if ends_at <= starts_at || ends_at <= now {
        return Err(invalid("endsAt", "`endsAt` must be after `startsAt` and in the future"));
    }
    if ends_at - starts_at > chrono::Duration::days(MAX_SILENCE_DAYS) {
        return Err(invalid("endsAt", format!("a silence lasts at most {MAX_SILENCE_DAYS} days")));
    }
    let reason = reason(&body)?;
    let id = format!("silence_{}", uuid::Uuid::now_v7().simple());
    let action = Action {
        audit_id: uuid::Uuid::now_v7().to_string(),
        alert_id: id.clone(),
        action: ActionKind::Silence,
        actor,
        at: now,
        reason,
        silence: Some(SilenceSpec { rule, system_id: system, starts_at, ends_at }),
    };
    app.actions.write(&action).await?;
    tracing::info!(silence = %id, actor = %action.actor, "Silence written.");
    Ok((StatusCode::ACCEPTED, Json(json!({"silenceId": id, "status": "requested"}))).into_response())
}

/// `GET /silences`: the silences the evaluator applied, newest first, each `pending`, `active`
/// or `expired` as of the evaluator's clock (the minute of its last tick). Filter: `state`.
pub async fn list_silences(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["state"])?;
    let state = params
        .get("state")
        .map(|s| {
            SILENCE_STATES
                .into_iter()
                .find(|known| *known == s.as_str())
                .ok_or_else(|| bad("state", format!("unknown state `{s}`; allowed: {}", SILENCE_STATES.join(", "))))
        })
        .transpose()?;
    let rows = rows_or_none(
        sqlx::query(
            "WITH now AS (SELECT coalesce((SELECT minute FROM clock), '-infinity'::timestamptz) AS minute),
             listed AS (
                 SELECT s.*, CASE WHEN s.ends_at <= now.minute THEN 'expired'
                                  WHEN s.starts_at <= now.minute THEN 'active' ELSE 'pending' END AS state
                 FROM silences s, now
             )
             SELECT * FROM listed WHERE $1::text IS NULL OR state = $1 ORDER BY applied_at DESC, id DESC LIMIT 500",
        )
        .bind(state),
        &app.pool,
    )
    .await?;
    let silences: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.get::<String, _>("id"),
                "rule": row.get::<Option<String>, _>("rule"),
                "system": row.get::<Option<String>, _>("system_id"),
                "startsAt": row.get::<DateTime<Utc>, _>("starts_at"),
                "endsAt": row.get::<DateTime<Utc>, _>("ends_at"),
                "state": row.get::<String, _>("state"),
                "actor": row.get::<String, _>("actor"),
                "reason": row.get::<String, _>("reason"),
                "appliedAt": row.get::<DateTime<Utc>, _>("applied_at"),
            })
        })
        .collect();
    Ok(Json(silences).into_response())
}

/// `POST /silences/{silenceId}/expire` (operator and above), body `{"reason": "..."}`: writes an
/// EXPIRE `ct.v1.AlertAudit` record; the evaluator ends the silence at the next clock tick.
pub async fn expire_silence(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(silence_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let body = json_body(&body)?;
    let reason = reason(&body)?;
    let found: Option<bool> = match sqlx::query_scalar(
        "SELECT s.ends_at <= coalesce((SELECT minute FROM clock), '-infinity'::timestamptz) FROM silences s WHERE s.id = $1",
    )
    .bind(&silence_id)
    .fetch_optional(&app.pool)
    .await
    {
        Ok(found) => found,
        Err(error) if no_schema_yet(&error) => None,
        Err(error) => return Err(internal(error)),
    };
    match found {
        None => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no silence `{silence_id}`"))
                .with_field("silenceId"));
        }
        Some(true) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "silence_expired", "the silence has already ended")
                .with_field("silenceId"));
        }
        Some(false) => {}
    }
    let action = Action {
        audit_id: uuid::Uuid::now_v7().to_string(),
        alert_id: silence_id.clone(),
        action: ActionKind::Expire,
        actor,
        at: Utc::now(),
        reason,
        silence: None,
    };
    app.actions.write(&action).await?;
    tracing::info!(silence = %silence_id, actor = %action.actor, "Silence expiry written.");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"auditId": action.audit_id, "silenceId": silence_id, "status": "requested"})),
    )
        .into_response())
}

/// `POST /alerts/{alertId}/ack` (operator and above), body `{"reason": "..."}`: writes a
/// `ct.v1.AlertAudit` record to the log and answers 202; the health evaluator acknowledges the
/// alert at the next clock tick (which stops its repeats and its escalation).
pub async fn acknowledge(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(alert_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, actor) = app.users.actor(&headers, Permission::Operate)?;
    let body = json_body(&body)?;
    let reason = reason(&body)?;
    let state: Option<String> = match sqlx::query_scalar("SELECT state FROM alerts WHERE id = $1")
        .bind(&alert_id)
        .fetch_optional(&app.pool)
        .await
    {
        Ok(state) => state,
        Err(error) if no_schema_yet(&error) => None,
        Err(error) => return Err(internal(error)),
    };
    match state.as_deref() {
        None => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no alert `{alert_id}`"))
                .with_field("alertId"));
        }
        Some("firing") => {}
        Some(other) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "alert_not_firing", format!("the alert is {other}"))
                .with_field("alertId"));
        }
    }
    let action = Action {
        audit_id: uuid::Uuid::now_v7().to_string(),
        alert_id: alert_id.clone(),
        action: ActionKind::Ack,
        actor,
        at: Utc::now(),
        reason,
        silence: None,
    };
    app.actions.write(&action).await?;
    tracing::info!(alert = %alert_id, actor = %action.actor, audit = %action.audit_id, "Alert acknowledgement written.");
    Ok((StatusCode::ACCEPTED, Json(json!({"auditId": action.audit_id, "alertId": alert_id, "status": "requested"})))
        .into_response())
}
