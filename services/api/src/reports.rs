//! `/reports/daily` and `/reports/daily/history`: the daily digests `ct-digest` decided (schema
//! `ct_digest`). The API renders nothing: it serves the digest's own JSON and Markdown, whose
//! SHA-256 the digest carries.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, Utc};
use ct_platform::http_error::ApiError;
use serde_json::Value;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    health::rows_or_none,
    routes::{bad, cursor_param, limit_param, page, reject_unknown, split_page},
    views::{DailyReport, DailyReportSummary},
};

fn day_param(params: &HashMap<String, String>) -> Result<Option<NaiveDate>, ApiError> {
    params
        .get("date")
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| bad("date", format!("`date` must be a calendar day YYYY-MM-DD, not `{d}`")))
        })
        .transpose()
}

/// Does the caller ask for Markdown (`Accept: text/markdown`) rather than JSON?
fn wants_markdown(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|part| part.trim().starts_with("text/markdown")))
}

/// `GET /reports/daily[?date=YYYY-MM-DD]`: the digest of `date`, or without it the latest
/// decided one (this morning's, covering yesterday). JSON by default; the Markdown with
/// `Accept: text/markdown`.
pub async fn daily(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["date"])?;
    let day = day_param(&params)?;
    let rows = rows_or_none(
        sqlx::query(
            "SELECT day, time_zone, sha256, json, markdown, due_at, published_at, late FROM digests
             WHERE $1::date IS NULL OR day = $1 ORDER BY day DESC LIMIT 1",
        )
        .bind(day),
        &app.pool,
    )
    .await?;
    let Some(row) = rows.first() else {
        return Err(match day {
            Some(day) => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no digest of {day} was decided"))
                .with_field("date"),
            None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no digest was decided yet"),
        });
    };
    if wants_markdown(&headers) {
        let mut response = row.get::<String, _>("markdown").into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/markdown; charset=utf-8"));
        return Ok(response);
    }
    let digest: Value = serde_json::from_str(row.get::<&str, _>("json")).unwrap_or(Value::Null);
    Ok(Json(DailyReport {
        day: row.get::<NaiveDate, _>("day").to_string(),
        time_zone: row.get("time_zone"),
        sha256: row.get("sha256"),
        due_at: row.get("due_at"),
        published_at: row.get("published_at"),
        late: row.get("late"),
        digest,
    })
    .into_response())
}

/// `GET /reports/daily/history`: every decided digest, newest day first, paged on the day.
pub async fn history(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["limit", "cursor"])?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let rows = rows_or_none(
        sqlx::query(
            "SELECT day, day::text AS id, due_at AS at, time_zone, sha256, due_at, published_at, late,
                    (json::jsonb -> 'events' ->> 'total')::bigint AS events, (json::jsonb ->> 'empty')::boolean AS empty
             FROM digests
             WHERE $1::timestamptz IS NULL OR (due_at, day::text) < ($1, $2)
             ORDER BY due_at DESC, day DESC LIMIT $3",
        )
        .bind(cursor.as_ref().map(|c| c.at))
        .bind(cursor.as_ref().map(|c| c.id.clone()))
        .bind(limit + 1),
        &app.pool,
    )
    .await?;
    let (rows, next) = split_page(&rows, limit, "at", "id");
    let items = rows
        .iter()
        .map(|row| DailyReportSummary {
            day: row.get("id"),
            time_zone: row.get("time_zone"),
            sha256: row.get("sha256"),
            due_at: row.get::<DateTime<Utc>, _>("due_at"),
            published_at: row.get("published_at"),
            late: row.get("late"),
            events: row.get::<Option<i64>, _>("events").unwrap_or(0),
            empty: row.get::<Option<bool>, _>("empty").unwrap_or(false),
        })
        .collect();
    Ok(page(items, next, "/reports/daily/history", &params))
}
