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
use ct_core::dlq::Category;
use ct_platform::http_error::ApiError;

use crate::{
    AppState,
    auth::Permission,
    routes::{bad, cursor_param, fetch_one_by_id, internal, limit_param, page, reject_unknown, split_page, time_range},
    views::{DLQ_COLUMNS, DlqAudit, DlqItem, DlqRecord},
};

const STATES: [&str; 3] = ["parked", "replayed", "skipped"];

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
        "SELECT {DLQ_COLUMNS} FROM dlq_items
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
    Ok(page(rows.iter().map(DlqItem::from_row).collect(), next, "/dlq", &params))
}

/// One item with its record (key and value in base64, headers) and its audit trail.
pub async fn get_one(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(item_id): Path<String>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    let sql = format!("SELECT {DLQ_COLUMNS}, record_key, record_value, headers FROM dlq_items WHERE id = $1");
    let row = fetch_one_by_id(&app.pool, &sql, &item_id, "dead letter", "id").await?;
    let audit = sqlx::query(
        "SELECT action, outcome, actor, at, reason, detail FROM dlq_audit WHERE item_id = $1 ORDER BY at, audit_id",
    )
    .bind(&item_id)
    .fetch_all(&app.pool)
    .await
    .map_err(internal)?;
    let mut item = DlqItem::from_row(&row);
    item.record = Some(DlqRecord::from_row(&row));
    item.audit = Some(audit.iter().map(DlqAudit::from_row).collect());
    Ok(Json(item).into_response())
}
