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
use ct_core::trend;
use ct_platform::http_error::ApiError;
use serde_json::Value;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    health::rows_or_none,
    routes::{bad, cursor_param, limit_param, page, reject_unknown, split_page},
    views::{DailyReport, DailyReportSummary, SloCompliance, SystemTrend, TrendReport},
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

/// The zone of the trend's weeks and months (the digest's default).
const TREND_ZONE: chrono_tz::Tz = chrono_tz::Europe::London;

/// `GET /reports/weekly[?week=2026-W47 | ?month=2026-11]`: per catalogued system, the time in
/// each status and SLO compliance over an ISO week (the last complete one by default) or a
/// calendar month, Europe/London.
pub async fn weekly(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<TrendReport>, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["week", "month"])?;
    let now = Utc::now();
    let period = match (params.get("week"), params.get("month")) {
        (Some(_), Some(_)) => return Err(bad("month", "give `week` or `month`, not both")),
        (Some(week), None) => trend::week(week, TREND_ZONE)
            .ok_or_else(|| bad("week", format!("`week` must be an ISO week such as 2026-W47, not `{week}`")))?,
        (None, Some(month)) => trend::month(month, TREND_ZONE)
            .ok_or_else(|| bad("month", format!("`month` must be a calendar month such as 2026-11, not `{month}`")))?,
        (None, None) => trend::last_complete_week(now, TREND_ZONE),
    };
    if period.from > now {
        return Err(bad(
            if params.contains_key("month") { "month" } else { "week" },
            format!("{} has not begun", period.name),
        ));
    }
    let until = period.to.min(now);
    // The status in force at the start, then every change inside the period.
    let changes = rows_or_none(
        sqlx::query(
            "(SELECT DISTINCT ON (system_id) system_id, at, status, true AS before FROM history
              WHERE at < $1 ORDER BY system_id, at DESC)
             UNION ALL
             (SELECT system_id, at, status, false FROM history WHERE at >= $1 AND at < $2)
             ORDER BY system_id, at",
        )
        .bind(period.from)
        .bind(until),
        &app.pool,
    )
    .await?;
    let slos = rows_or_none(
        sqlx::query(
            "SELECT m.slo, m.system_id, m.job, sum(m.good)::bigint AS good, sum(m.total)::bigint AS total,
                    max(s.objective) AS objective
             FROM slo_minutes m LEFT JOIN slo_status s USING (slo, system_id, job)
             WHERE m.minute >= $1 AND m.minute < $2
             GROUP BY m.slo, m.system_id, m.job ORDER BY m.slo, m.job",
        )
        .bind(period.from)
        .bind(until),
        &app.pool,
    )
    .await?;
    let observed = (until - period.from).num_seconds().max(1) as f64;
    let systems = app
        .catalogue
        .systems
        .iter()
        .map(|spec| {
            let mine = changes.iter().filter(|row| row.get::<String, _>("system_id") == spec.id);
            let (mut before, mut inside) = (None, Vec::new());
            for row in mine {
                let status: String = row.get("status");
                if row.get::<bool, _>("before") {
                    before = Some(status);
                } else {
                    inside.push((row.get::<DateTime<Utc>, _>("at"), status));
                }
            }
            let seconds = trend::time_in_status(before.as_deref(), &inside, period.from, until);
            let shares = seconds.iter().map(|(status, s)| (status.clone(), *s as f64 / observed)).collect();
            let slos = slos
                .iter()
                .filter(|row| row.get::<String, _>("system_id") == spec.id)
                .map(|row| {
                    let (good, total): (i64, i64) = (row.get("good"), row.get("total"));
                    let objective: Option<f64> = row.get("objective");
                    let sli = (total > 0).then(|| good as f64 / total as f64);
                    SloCompliance {
                        slo: row.get("slo"),
                        job: row.get("job"),
                        objective,
                        good,
                        total,
                        sli,
                        met: sli.zip(objective).map(|(sli, objective)| sli >= objective),
                    }
                })
                .collect();
            SystemTrend { system_id: spec.id.clone(), name: spec.name.clone(), seconds, shares, slos }
        })
        .collect();
    Ok(Json(TrendReport {
        period: period.name,
        time_zone: TREND_ZONE.name().to_owned(),
        from: period.from,
        to: period.to,
        observed_until: until,
        systems,
    }))
}
