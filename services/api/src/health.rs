//! `/health`, `/systems` and `/systems/{systemId}/history`: the statuses the health evaluator
//! (`ct-health`, schema `ct_health`) keeps, for exactly the catalogued systems, in catalogue
//! order. The API computes no status: it shows the evaluator's, with its reason and message.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use ct_platform::http_error::ApiError;
use sqlx::Row;

pub use ct_core::health::Status;

use crate::{
    AppState,
    auth::Permission,
    routes::bad,
    routes::{cursor_param, internal, limit_param, page, reject_unknown, split_page},
    views::{Alert, Health, LastEvent, StatusChange, System, SystemHealth},
};

const ALERT_STATES: [&str; 3] = ["firing", "acknowledged", "resolved"];

/// `undefined_table`: the evaluator has not created its schema yet (never started).
fn no_schema_yet(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("42P01"))
}

/// Each catalogued system's status as last evaluated, or `unknown` when it was never evaluated.
async fn statuses(app: &AppState) -> Result<Vec<SystemHealth>, ApiError> {
    let rows = match sqlx::query(
        "SELECT system_id, status, reason, message, last_transition_time, evaluated_at FROM statuses",
    )
    .fetch_all(&app.pool)
    .await
    {
        Ok(rows) => rows,
        Err(error) if no_schema_yet(&error) => Vec::new(),
        Err(error) => return Err(internal(error)),
    };
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

pub async fn list_systems(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    let statuses = statuses(&app).await?;
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
    let rows = match sqlx::query(
        "SELECT at, status, previous, reason, message, system_id FROM history
         WHERE system_id = $1 AND ($2::timestamptz IS NULL OR (at, system_id) < ($2, $3))
         ORDER BY at DESC LIMIT $4",
    )
    .bind(&system_id)
    .bind(cursor.as_ref().map(|c| c.at))
    .bind(cursor.as_ref().map(|c| c.id.clone()))
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await
    {
        Ok(rows) => rows,
        Err(error) if no_schema_yet(&error) => Vec::new(),
        Err(error) => return Err(internal(error)),
    };
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
    let rows = match sqlx::query(
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
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await
    {
        Ok(rows) => rows,
        Err(error) if no_schema_yet(&error) => Vec::new(),
        Err(error) => return Err(internal(error)),
    };
    let (rows, next) = split_page(&rows, limit, "fired_at", "id");
    Ok(page(rows.iter().map(Alert::from_row).collect(), next, "/alerts", &params))
}
