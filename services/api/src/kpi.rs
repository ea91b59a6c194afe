//! `GET /metrics/kpi`: the KPIs of vision §7.1 (`ct_core::kpi` says which events mark them),
//! from the digest's model (`kpi_marks` and `timesheet_gates` in `ct_digest`): a snapshot over
//! the last 7 and 30 days before `asOf`, and daily or weekly buckets (Europe/London) to chart.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Query, State},
    http::HeaderMap,
};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use ct_core::{
    digest::local_instant,
    kpi::{self, Compliance, FailureRate, LeadTimes},
    timesheets::monday_of,
};
use ct_platform::http_error::ApiError;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    health::rows_or_none,
    routes::{bad, reject_unknown},
    views::{KpiBucket, KpiReport, KpiWindow},
};

/// The zone of the buckets (the digest's default).
const ZONE: Tz = chrono_tz::Europe::London;
const WINDOWS: [i64; 2] = [7, 30];
const DAILY_BUCKETS: u64 = 30;
const WEEKLY_BUCKETS: u64 = 12;

/// A lead time that ended at `at`, in seconds.
struct Lead {
    at: DateTime<Utc>,
    seconds: f64,
}

/// The first end after each start, paired with that start (`ct_core::kpi`), ending in `(from, to]`.
async fn leads(app: &AppState, kind: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Lead>, ApiError> {
    let rows = rows_or_none(
        sqlx::query(
            "SELECT e.at, extract(epoch FROM e.at - s.at)::float8 AS seconds
             FROM kpi_marks e
             CROSS JOIN LATERAL (
                 SELECT max(at) AS at FROM kpi_marks
                 WHERE kind = e.kind AND key = e.key AND edge = 'start' AND at <= e.at
             ) s
             WHERE e.kind = $1 AND e.edge = 'end' AND e.at > $2 AND e.at <= $3 AND s.at IS NOT NULL
               AND NOT EXISTS (
                 SELECT 1 FROM kpi_marks o
                 WHERE o.kind = e.kind AND o.key = e.key AND o.edge = 'end' AND o.at >= s.at
                   AND (o.at < e.at OR (o.at = e.at AND o.event_id < e.event_id))
               )",
        )
        .bind(kind)
        .bind(from)
        .bind(to),
        &app.pool,
    )
    .await?;
    Ok(rows.iter().map(|row| Lead { at: row.get("at"), seconds: row.get("seconds") }).collect())
}

/// A completed run: when, its subsystem, whether it failed.
type RunRow = (DateTime<Utc>, String, bool);

/// Runs completed in `(from, to]`.
async fn runs(app: &AppState, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>, ApiError> {
    let rows = rows_or_none(
        sqlx::query(
            "SELECT at, subsystem, outcome = 'failed' AS failed FROM kpi_marks
             WHERE kind = $1 AND at > $2 AND at <= $3",
        )
        .bind(kpi::RUN)
        .bind(from)
        .bind(to),
        &app.pool,
    )
    .await?;
    Ok(rows.iter().map(|row| (row.get("at"), row.get("subsystem"), row.get("failed"))).collect())
}

/// Timesheet gates whose deadline is in `(from, to]`: (deadline, complete).
async fn gates(app: &AppState, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, bool)>, ApiError> {
    let rows = rows_or_none(
        sqlx::query(
            "SELECT deadline, received = expected AS complete FROM timesheet_gates WHERE deadline > $1 AND deadline <= $2",
        )
        .bind(from)
        .bind(to),
        &app.pool,
    )
    .await?;
    Ok(rows.iter().map(|row| (row.get("deadline"), row.get("complete"))).collect())
}

fn summarise_runs<'a>(runs: impl Iterator<Item = &'a RunRow>) -> FailureRate {
    let (mut total, mut failed) = (0, 0);
    for (_, _, f) in runs {
        total += 1;
        failed += i64::from(*f);
    }
    kpi::failure_rate(total, failed)
}

fn summarise_gates<'a>(gates: impl Iterator<Item = &'a (DateTime<Utc>, bool)>) -> Compliance {
    let (mut weeks, mut complete) = (0, 0);
    for (_, c) in gates {
        weeks += 1;
        complete += i64::from(*c);
    }
    kpi::compliance(weeks, complete)
}

fn summarise_leads<'a>(leads: impl Iterator<Item = &'a Lead>) -> LeadTimes {
    kpi::lead_times(leads.map(|l| l.seconds).collect())
}

/// `GET /metrics/kpi[?asOf=<RFC 3339>][&bucket=day|week]`.
pub async fn kpi(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<KpiReport>, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["asOf", "bucket"])?;
    let as_of = match params.get("asOf") {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| bad("asOf", format!("`asOf` must be an RFC 3339 time, not `{text}`")))?
            .with_timezone(&Utc),
    };
    let weekly = match params.get("bucket").map(String::as_str) {
        None | Some("day") => false,
        Some("week") => true,
        Some(other) => return Err(bad("bucket", format!("`bucket` must be `day` or `week`, not `{other}`"))),
    };
    // Buckets are whole local days or ISO weeks, the last one holding `asOf`.
    let today = as_of.with_timezone(&ZONE).date_naive();
    let bucket_starts: Vec<NaiveDate> = if weekly {
        let monday = monday_of(today);
        (0..WEEKLY_BUCKETS).rev().filter_map(|i| monday.checked_sub_days(Days::new(7 * i))).collect()
    } else {
        (0..DAILY_BUCKETS).rev().filter_map(|i| today.checked_sub_days(Days::new(i))).collect()
    };
    let start = |day: NaiveDate| local_instant(day, NaiveTime::MIN, ZONE);
    let first = bucket_starts.first().map_or(as_of, |d| start(*d));
    let from = first.min(as_of - chrono::Duration::days(30));

    let (contracts, invoices) = (
        leads(&app, kpi::CONTRACT_LEAD_TIME, from, as_of).await?,
        leads(&app, kpi::INVOICE_CYCLE_TIME, from, as_of).await?,
    );
    let runs = runs(&app, from, as_of).await?;
    let gates = gates(&app, from.min(as_of - chrono::Duration::weeks(13)), as_of).await?;

    let windows = WINDOWS
        .iter()
        .map(|days| {
            let since = as_of - chrono::Duration::days(*days);
            let mut by_subsystem: std::collections::BTreeMap<String, Vec<&RunRow>> = Default::default();
            for run in runs.iter().filter(|r| r.0 > since) {
                by_subsystem.entry(run.1.clone()).or_default().push(run);
            }
            KpiWindow {
                days: *days,
                contract_lead_time: summarise_leads(contracts.iter().filter(|l| l.at > since)),
                invoice_cycle_time: summarise_leads(invoices.iter().filter(|l| l.at > since)),
                job_failure_rate: summarise_runs(runs.iter().filter(|r| r.0 > since)),
                job_failure_rate_by_subsystem: by_subsystem
                    .into_iter()
                    .map(|(subsystem, runs)| (subsystem, summarise_runs(runs.into_iter())))
                    .collect(),
            }
        })
        .collect();
    let compliance_over =
        |weeks: i64| summarise_gates(gates.iter().filter(|g| g.0 > as_of - chrono::Duration::weeks(weeks)));
    let buckets = bucket_starts
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let (from, to) = (start(*day), bucket_starts.get(i + 1).map_or(as_of, |next| start(*next)).min(as_of));
            let inside = |at: &DateTime<Utc>| *at >= from && *at < to || (*at == as_of && to == as_of);
            KpiBucket {
                start: day.to_string(),
                contract_lead_time: summarise_leads(contracts.iter().filter(|l| inside(&l.at))),
                invoice_cycle_time: summarise_leads(invoices.iter().filter(|l| inside(&l.at))),
                job_failure_rate: summarise_runs(runs.iter().filter(|r| inside(&r.0))),
                timesheet_compliance: summarise_gates(gates.iter().filter(|g| inside(&g.0))),
            }
        })
        .collect();
    Ok(Json(KpiReport {
        as_of,
        time_zone: ZONE.name().to_owned(),
        windows,
        timesheet_compliance_4_weeks: compliance_over(4),
        timesheet_compliance_13_weeks: compliance_over(13),
        bucket: if weekly { "week" } else { "day" }.to_owned(),
        buckets,
    }))
}
