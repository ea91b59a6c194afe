//! `GET /audit` (maintainer and owner): people's actions, newest first, from the read models
//! that apply them, each of which keeps them as written on the log: alert acknowledgements and
//! silences (`ct_health.alert_actions`, from `ct.audit.v1`), dead-letter replays and skips
//! (`ct_dlq.dlq_audit`, from `ct.audit.v1`) and trigger requests, approvals, rejections and
//! cancels (`ct_runs.run_transitions`, from `ct.runs.v1`). Nothing here can change them.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use chrono::{DateTime, Utc};
use ct_platform::http_error::ApiError;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    cursor::Cursor,
    health::rows_or_none,
    routes::{bad, cursor_param, limit_param, page, reject_unknown, time_range},
    views::{AuditEntry, Micros},
};

/// Each source: its name and a query giving `id, at, action, resource, actor, reason, outcome`
/// with `$1..$4` = from, to, cursor time, cursor id, and `$5` = limit.
const SOURCES: &[(&str, &str)] = &[
    (
        "alerts",
        "SELECT audit_id AS id, requested_at AS at, lower(action) AS action, alert_id AS resource, actor, reason,
                outcome FROM alert_actions",
    ),
    (
        "dlq",
        "SELECT audit_id AS id, at, lower(action) AS action, item_id AS resource, actor, reason, outcome
           FROM dlq_audit",
    ),
    (
        "runs",
        "SELECT 'ct.runs.v1:' || \"partition\" || ':' || \"offset\" AS id, at, kind AS action, run_id AS resource,
                actor, coalesce(reason, '') AS reason,
                CASE WHEN ignored_because IS NULL THEN 'applied' ELSE 'ignored: ' || ignored_because END AS outcome
           FROM run_transitions WHERE kind IN ('requested', 'approved', 'rejected', 'cancel_requested')",
    ),
];

pub async fn list(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    reject_unknown(&params, &["source", "from", "to", "limit", "cursor"])?;
    let wanted = params.get("source").map(String::as_str);
    if let Some(source) = wanted
        && !SOURCES.iter().any(|(name, _)| *name == source)
    {
        return Err(bad("source", format!("`source` is alerts, dlq or runs, not `{source}`")));
    }
    let (from, to) = time_range(&params)?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let mut entries: Vec<AuditEntry> = Vec::new();
    for (source, select) in SOURCES.iter().filter(|(name, _)| wanted.is_none_or(|w| w == *name)) {
        let sql = format!(
            "SELECT * FROM ({select}) a
             WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)
               AND ($3::timestamptz IS NULL OR (at, id) < ($3, $4))
             ORDER BY at DESC, id DESC LIMIT $5"
        );
        let query = sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .bind(cursor.as_ref().map(|c| c.at))
            .bind(cursor.as_ref().map(|c| c.id.clone()))
            .bind(limit + 1);
        for row in rows_or_none(query, &app.pool).await? {
            entries.push(AuditEntry {
                id: row.get("id"),
                at: Micros(row.get::<DateTime<Utc>, _>("at")),
                source,
                action: row.get("action"),
                resource: row.get("resource"),
                actor: row.get("actor"),
                reason: row.get("reason"),
                outcome: row.get("outcome"),
            });
        }
    }
    entries.sort_by(|a, b| (b.at.0, &b.id).cmp(&(a.at.0, &a.id)));
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next = more.then(|| entries.last().map(|e| Cursor { at: e.at.0, id: e.id.clone() })).flatten();
    Ok(page(entries, next, "/audit", &params))
}
