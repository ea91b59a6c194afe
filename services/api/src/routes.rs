//! The read endpoints. Bad query parameters are 400 naming the parameter; unknown ids are 404.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use ct_core::{EventType, Source};
use ct_platform::{http_error::ApiError, registry::encode_segment};
use serde_json::json;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    cursor::Cursor,
    views::{EVENT_COLUMNS, Event, Readiness, Run, Transition, TriggeredRun},
};

pub const MAX_LIMIT: i64 = 500;
pub const DEFAULT_LIMIT: i64 = 100;

type Params = Query<HashMap<String, String>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/{event_id}", get(get_event))
        .route("/events/{event_id}/lineage", get(crate::lineage::lineage))
        .route("/runs", get(list_runs))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/cancel", axum::routing::post(crate::triggers::cancel))
        .route("/runs/{run_id}/approve", axum::routing::post(crate::triggers::approve))
        .route("/runs/{run_id}/reject", axum::routing::post(crate::triggers::reject))
        .route("/triggers", get(crate::triggers::list))
        .route("/triggers/{name}", axum::routing::post(crate::triggers::trigger))
        // The control-room API (seed control-room-api-plan §3.2) over the same runs.
        .route("/api/v1/jobs/run", axum::routing::post(crate::triggers::run_job))
        .route("/api/v1/jobs/validate", axum::routing::post(crate::triggers::validate_job))
        .route("/api/v1/runs/{run_id}", get(get_run))
        .route("/api/v1/runs/{run_id}/cancel", axum::routing::post(crate::triggers::cancel))
        .route("/api/v1/runs/{run_id}/events", axum::routing::post(crate::triggers::report))
        .route("/api/v1/lineage/graph", get(crate::triggers::lineage_graph))
        .route("/api/v1/webhooks/continue", axum::routing::post(crate::triggers::continue_run))
        .route("/api/v1/artifacts", axum::routing::post(crate::artifacts::upload))
        .route("/api/v1/artifacts/{artifact_id}", get(crate::artifacts::download))
        .route("/systems", get(crate::health::list_systems))
        .route("/systems/{system_id}/history", get(crate::health::history))
        .route("/health", get(crate::health::health))
        .route("/slos", get(crate::health::list_slos))
        .route("/alerts", get(crate::health::alerts))
        .route("/alerts/{alert_id}/ack", axum::routing::post(crate::health::acknowledge))
        .route("/silences", axum::routing::post(crate::health::silence).get(crate::health::list_silences))
        .route("/silences/{silence_id}/expire", axum::routing::post(crate::health::expire_silence))
        .route("/reports/daily", get(crate::reports::daily))
        .route("/reports/daily/history", get(crate::reports::history))
        .route("/reports/weekly", get(crate::reports::weekly))
        .route("/metrics/kpi", get(crate::kpi::kpi))
        .route("/versions", get(crate::versions::list))
        .route("/versions/{repo}/history", get(crate::versions::history))
        .route("/audit", get(crate::audit::list))
        .route("/dlq", get(crate::dlq::list))
        .route("/dlq/{item_id}", get(crate::dlq::get_one))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .merge(crate::ui::router())
        .with_state(state)
}

/// `GET /readyz`: 200 when Postgres answers within a second, else 503 naming it (no address).
async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let ping =
        tokio::time::timeout(std::time::Duration::from_secs(1), sqlx::query("SELECT 1").execute(&app.pool)).await;
    let postgres = match ping {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "Readiness: Postgres refused.");
            "error: unavailable".to_owned()
        }
        Err(_) => "error: no answer within 1 s".to_owned(),
    };
    let status = if postgres == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { postgres })).into_response()
}

pub(crate) fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message).with_field(param)
}

pub(crate) fn internal(error: sqlx::Error) -> ApiError {
    tracing::error!(%error, "Read model query failed.");
    ApiError::unavailable("read_model_unavailable", "the read model is unavailable; retry")
}

pub(crate) fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad(name, format!("`{name}` must be an RFC 3339 timestamp like 2025-09-27T00:00:00Z")))
        })
        .transpose()
}

/// An optional `[from, to)` interval.
pub(crate) type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `from` and `to` (RFC 3339); `to` before `from` is refused naming `to`.
pub(crate) fn time_range(params: &HashMap<String, String>) -> Result<TimeRange, ApiError> {
    let (from, to) = (time_param(params, "from")?, time_param(params, "to")?);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(bad("to", "`to` is before `from`"));
    }
    Ok((from, to))
}

/// The one row `sql` finds for `id` (bound as `$1`), or 404 naming `field`.
pub(crate) async fn fetch_one_by_id(
    pool: &sqlx::PgPool,
    sql: &str,
    id: &str,
    what: &str,
    field: &str,
) -> Result<sqlx::postgres::PgRow, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} `{id}`")).with_field(field);
    // No stored id holds U+0000 (Postgres cannot store it), and Postgres refuses to compare one.
    if id.contains('\0') {
        return Err(not_found());
    }
    sqlx::query(sql).bind(id).fetch_optional(pool).await.map_err(internal)?.ok_or_else(not_found)
}

pub(crate) fn limit_param(params: &HashMap<String, String>) -> Result<i64, ApiError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad("limit", format!("`limit` must be an integer from 1 to {MAX_LIMIT}"))),
        },
    }
}

pub(crate) fn cursor_param(params: &HashMap<String, String>) -> Result<Option<Cursor>, ApiError> {
    params
        .get("cursor")
        .map(|raw| Cursor::decode(raw).ok_or_else(|| bad("cursor", "`cursor` is not a cursor this API issued")))
        .transpose()
}

/// Refuses unknown parameters, and values Postgres cannot compare (U+0000), naming the parameter.
pub(crate) fn reject_unknown(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    // The smallest unknown name, so the answer does not depend on hash order.
    if let Some(unknown) = params.keys().filter(|k| !known.contains(&k.as_str())).min() {
        return Err(bad(unknown, format!("unknown query parameter `{unknown}`; allowed: {}", known.join(", "))));
    }
    match params.iter().filter(|(_, value)| value.contains('\0')).map(|(name, _)| name).min() {
        Some(name) => Err(bad(name, format!("`{name}` contains U+0000, which no stored value holds"))),
        None => Ok(()),
    }
}

/// A page: the JSON array of items, with `X-Next-Cursor` and a `Link: rel="next"` header when
/// there is more (the deep dive's clients expect a plain array).
pub(crate) fn page<T: serde::Serialize>(
    items: Vec<T>,
    next: Option<Cursor>,
    path: &str,
    params: &HashMap<String, String>,
) -> Response {
    let mut response = Json(items).into_response();
    if let Some(next) = next {
        let token = next.encode();
        let mut query: Vec<String> =
            params.iter().filter(|(k, _)| *k != "cursor").map(|(k, v)| format!("{k}={}", encode_segment(v))).collect();
        query.sort();
        query.push(format!("cursor={token}"));
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&token) {
            headers.insert("x-next-cursor", value);
        }
        if let Ok(value) = HeaderValue::from_str(&format!("<{path}?{}>; rel=\"next\"", query.join("&"))) {
            headers.insert("link", value);
        }
    }
    response
}

/// Rows were fetched with `limit + 1`: the page, and the cursor after its last row when more exist.
pub(crate) fn split_page<'a>(
    rows: &'a [sqlx::postgres::PgRow],
    limit: i64,
    at: &str,
    id: &str,
) -> (&'a [sqlx::postgres::PgRow], Option<Cursor>) {
    let page = &rows[..rows.len().min(limit as usize)];
    let more = rows.len() > page.len();
    let next = more.then(|| page.last()).flatten().map(|r| Cursor { at: r.get(at), id: r.get(id) });
    (page, next)
}

async fn list_events(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    reject_unknown(&params, &["source", "type", "from", "to", "correlation_id", "limit", "cursor"])?;
    let source = params
        .get("source")
        .map(|s| s.parse::<Source>().map(|s| s.as_str()).map_err(|_| bad("source", format!("unknown source `{s}`"))))
        .transpose()?;
    let event_type = params
        .get("type")
        .map(|t| {
            t.parse::<EventType>().map(|t| t.as_str()).map_err(|_| bad("type", format!("unknown event type `{t}`")))
        })
        .transpose()?;
    let (from, to) = time_range(&params)?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE ($1::text IS NULL OR source = $1) AND ($2::text IS NULL OR type = $2)
           AND ($3::timestamptz IS NULL OR ts >= $3) AND ($4::timestamptz IS NULL OR ts < $4)
           AND ($5::text IS NULL OR correlation_id = $5)
           AND ($6::timestamptz IS NULL OR (ts, event_id) < ($6, $7))
         ORDER BY ts DESC, event_id DESC LIMIT $8"
    );
    let rows = sqlx::query(&sql)
        .bind(source)
        .bind(event_type)
        .bind(from)
        .bind(to)
        .bind(params.get("correlation_id"))
        .bind(cursor.as_ref().map(|c| c.at))
        .bind(cursor.as_ref().map(|c| c.id.clone()))
        .bind(limit + 1)
        .fetch_all(&app.pool)
        .await
        .map_err(internal)?;
    let (rows, next) = split_page(&rows, limit, "ts", "event_id");
    Ok(page(rows.iter().map(Event::from_row).collect(), next, "/events", &params))
}

async fn get_event(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    Ok(Json(load_event(&app, &event_id).await?).into_response())
}

/// One projected event, or `404 not_found` naming `eventId`.
pub(crate) async fn load_event(app: &AppState, event_id: &str) -> Result<Event, ApiError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
    Ok(Event::from_row(&fetch_one_by_id(&app.pool, &sql, event_id, "event", "eventId").await?))
}

async fn list_runs(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["limit", "cursor", "origin", "status"])?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    match params.get("origin").map(String::as_str) {
        None | Some("producer") if params.contains_key("status") => {
            return Err(bad("status", "`status` filters triggered runs only: add `origin=trigger`"));
        }
        None | Some("producer") => {}
        Some("trigger") => return list_triggered_runs(&app, &params, limit, cursor).await,
        Some(other) => return Err(bad("origin", format!("`origin` is `producer` or `trigger`, not `{other}`"))),
    }
    let rows = sqlx::query(
        "SELECT *, listed_at AS sort_at FROM runs
         WHERE ($1::timestamptz IS NULL OR (listed_at, run_id) < ($1, $2))
         ORDER BY listed_at DESC, run_id DESC LIMIT $3",
    )
    .bind(cursor.as_ref().map(|c| c.at))
    .bind(cursor.as_ref().map(|c| c.id.clone()))
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await
    .map_err(internal)?;
    let (rows, next) = split_page(&rows, limit, "sort_at", "run_id");
    Ok(page(rows.iter().map(Run::from_row).collect(), next, "/runs", &params))
}

async fn get_run(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let role = app.users.authorize(&headers, Permission::ReadStatus)?;
    if let Some(mut run) = crate::triggers::load_run(&app, &run_id).await? {
        let transitions = sqlx::query("SELECT * FROM run_transitions WHERE run_id = $1 ORDER BY \"offset\"")
            .bind(&run_id)
            .fetch_all(&app.pool)
            .await
            .map_err(internal)?;
        run.transitions = Some(transitions.iter().map(Transition::from_row).collect());
        if role.allows(Permission::ReadEvents) {
            run.events = Some(correlated_events(&app, run.correlation_id.as_deref().unwrap_or(&run_id)).await?);
        }
        return Ok(Json(run).into_response());
    }
    // No projector schema yet (a deployment running only triggers): no producer-reported run.
    let row = match fetch_one_by_id(&app.pool, "SELECT * FROM runs WHERE run_id = $1", &run_id, "run", "runId").await {
        Err(error) if error.code == "read_model_unavailable" && !projector_ready(&app).await => {
            return Err(
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no run `{run_id}`")).with_field("runId")
            );
        }
        other => other?,
    };
    let mut run = Run::from_row(&row);
    // Correlated events only for roles that may read events.
    if role.allows(Permission::ReadEvents) {
        run.events = Some(correlated_events(&app, &run_id).await?);
    }
    Ok(Json(run).into_response())
}

/// Whether the projector's `runs` table exists.
async fn projector_ready(app: &AppState) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass('runs') IS NOT NULL").fetch_one(&app.pool).await.unwrap_or(true)
}

/// The first 200 events carrying `correlation_id`, oldest first.
async fn correlated_events(app: &AppState, correlation_id: &str) -> Result<Vec<Event>, ApiError> {
    let events = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id = $1 ORDER BY ts, event_id LIMIT 200"
    ))
    .bind(correlation_id)
    .fetch_all(&app.pool)
    .await;
    match events {
        Ok(events) => Ok(events.iter().map(Event::from_row).collect()),
        // No projector schema yet: no event carries it.
        Err(error) if crate::health::no_schema_yet(&error) => Ok(Vec::new()),
        Err(error) => Err(internal(error)),
    }
}

/// `GET /runs?origin=trigger[&status=]`: triggered runs, newest request first.
async fn list_triggered_runs(
    app: &AppState,
    params: &HashMap<String, String>,
    limit: i64,
    cursor: Option<Cursor>,
) -> Result<Response, ApiError> {
    let status = params.get("status").map(String::as_str);
    if let Some(status) = status
        && ct_core::runs::RunStatus::parse(status).is_none()
    {
        return Err(bad("status", format!("unknown run status `{status}`")));
    }
    let rows = sqlx::query(
        "SELECT *, requested_at AS sort_at FROM trigger_runs
         WHERE ($1::text IS NULL OR status = $1) AND ($2::timestamptz IS NULL OR (requested_at, run_id) < ($2, $3))
         ORDER BY requested_at DESC, run_id DESC LIMIT $4",
    )
    .bind(status)
    .bind(cursor.as_ref().map(|c| c.at))
    .bind(cursor.as_ref().map(|c| c.id.clone()))
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) if crate::health::no_schema_yet(&error) => Vec::new(),
        Err(error) => return Err(internal(error)),
    };
    let (rows, next) = split_page(&rows, limit, "sort_at", "run_id");
    Ok(page(rows.iter().map(TriggeredRun::from_row).collect(), next, "/runs", params))
}
