//! `GET /dlq` and `GET /dlq/{id}`: the dead letters of the `dlq_items` read model (built by
//! ct-dlq-categoriser), newest failure first. Payloads are in there, so the events permission
//! applies.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use ct_core::dlq::Category;
use ct_platform::http_error::ApiError;
use serde_json::{Value, json};
use sqlx::{Row, postgres::PgRow};

use crate::{
    AppState,
    auth::Permission,
    routes::{bad, cursor_param, fetch_one_by_id, internal, limit_param, page, reject_unknown, split_page, time_range},
};

const STATES: [&str; 3] = ["parked", "replayed", "skipped"];

const COLUMNS: &str = "id, category, rule, stage, step, error_class, error_message, attempts, first_failure_at,
    last_failure_at, original_topic, original_partition, original_offset, source, dlq_topic, dlq_partition,
    dlq_offset, state, state_changed_at, state_actor, state_reason";

fn time(row: &PgRow, column: &str) -> String {
    row.get::<DateTime<Utc>, _>(column).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn item_json(row: &PgRow) -> Value {
    json!({
        "id": row.get::<String, _>("id"),
        "category": row.get::<String, _>("category"),
        "rule": row.get::<String, _>("rule"),
        "stage": row.get::<String, _>("stage"),
        "step": row.get::<String, _>("step"),
        "errorClass": row.get::<String, _>("error_class"),
        "error": row.get::<String, _>("error_message"),
        "attempts": row.get::<i32, _>("attempts"),
        "firstFailureAt": time(row, "first_failure_at"),
        "lastFailureAt": time(row, "last_failure_at"),
        "source": row.get::<Option<String>, _>("source"),
        "original": {"topic": row.get::<String, _>("original_topic"), "partition": row.get::<i32, _>("original_partition"), "offset": row.get::<i64, _>("original_offset")},
        "parkedAt": {"topic": row.get::<String, _>("dlq_topic"), "partition": row.get::<i32, _>("dlq_partition"), "offset": row.get::<i64, _>("dlq_offset")},
        "state": row.get::<String, _>("state"),
        "stateChangedAt": time(row, "state_changed_at"),
        "stateActor": row.get::<Option<String>, _>("state_actor"),
        "stateReason": row.get::<Option<String>, _>("state_reason"),
    })
}

pub async fn list(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    reject_unknown(&params, &["category", "stage", "source", "state", "from", "to", "limit", "cursor"])?;
    let category = params
        .get("category")
        .map(|c| c.parse::<Category>().map(Category::as_str).map_err(|e| bad("category", e.to_string())))
        .transpose()?;
    let state = params
        .get("state")
        .map(|s| {
            STATES
                .into_iter()
                .find(|known| known.eq_ignore_ascii_case(s))
                .ok_or_else(|| bad("state", format!("unknown state `{s}`; allowed: {}", STATES.join(", "))))
        })
        .transpose()?;
    let (from, to) = time_range(&params)?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM dlq_items
         WHERE ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR stage = $2)
           AND ($3::text IS NULL OR source = $3) AND ($4::text IS NULL OR state = $4)
           AND ($5::timestamptz IS NULL OR first_failure_at >= $5) AND ($6::timestamptz IS NULL OR first_failure_at < $6)
           AND ($7::timestamptz IS NULL OR (first_failure_at, id) < ($7, $8))
         ORDER BY first_failure_at DESC, id DESC LIMIT $9"
    );
    let rows = sqlx::query(&sql)
        .bind(category)
        .bind(params.get("stage"))
        .bind(params.get("source"))
        .bind(state)
        .bind(from)
        .bind(to)
        .bind(cursor.as_ref().map(|c| c.at))
        .bind(cursor.as_ref().map(|c| c.id.clone()))
        .bind(limit + 1)
        .fetch_all(&app.pool)
        .await
        .map_err(internal)?;
    // Keyed on what never changes for an item (a later failure moves only last_failure_at), so
    // paging never repeats or skips an item.
    let (rows, next) = split_page(&rows, limit, "first_failure_at", "id");
    Ok(page(rows.iter().map(item_json).collect(), next, "/dlq", &params))
}

/// One item with its record (key and value in base64, headers) and its audit trail.
pub async fn get_one(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(item_id): Path<String>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    let sql = format!("SELECT {COLUMNS}, record_key, record_value, headers FROM dlq_items WHERE id = $1");
    let row = fetch_one_by_id(&app.pool, &sql, &item_id, "dead letter", "id").await?;
    let audit = sqlx::query(
        "SELECT action, outcome, actor, at, reason, detail FROM dlq_audit WHERE item_id = $1 ORDER BY at, audit_id",
    )
    .bind(&item_id)
    .fetch_all(&app.pool)
    .await
    .map_err(internal)?;
    let mut item = item_json(&row);
    item["record"] = json!({
        "keyBase64": row.get::<Option<Vec<u8>>, _>("record_key").map(|k| STANDARD.encode(k)),
        "valueBase64": row.get::<Option<Vec<u8>>, _>("record_value").map(|v| STANDARD.encode(v)),
        "headers": row.get::<Value, _>("headers"),
    });
    item["audit"] = audit
        .iter()
        .map(|a| {
            json!({
                "action": a.get::<String, _>("action"),
                "outcome": a.get::<String, _>("outcome"),
                "actor": a.get::<String, _>("actor"),
                "at": time(a, "at"),
                "reason": a.get::<String, _>("reason"),
                "detail": a.get::<Option<String>, _>("detail"),
            })
        })
        .collect();
    Ok(Json(item).into_response())
}
