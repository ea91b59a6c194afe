//! The pages (deep dive §4.3). Each reads the read models as of the page's `as_of` and hands the
//! rows to its template; the JSON views of the API are reused where they exist.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, Duration, DurationRound, Utc};
use ct_core::{EventType, Source, dlq::Action, health::Status};
use ct_platform::http_error::ApiError;
use minijinja::{Value, context};
use sqlx::Row;

use super::{
    Page, Refusal,
    charts::{self, Group, Series},
    rfc3339,
};
use crate::{
    AppState,
    auth::Permission,
    cursor::Cursor,
    health::rows_or_none,
    routes::bad,
    views::{DLQ_COLUMNS, DlqItem, EVENT_COLUMNS, Event, Run, TriggeredRun},
};

type Params = Query<HashMap<String, String>>;
type PageResult = Result<Response, Refusal>;

/// Rows per page of the event table and the run list.
const PAGE_ROWS: i64 = 50;

fn serial<T: serde::Serialize>(value: &T) -> Value {
    Value::from_serialize(value)
}

/// Rows of a query, an error page when the read model fails.
async fn rows(
    page: &Page,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<sqlx::postgres::PgRow>, ApiError> {
    rows_or_none(query, page.pool()).await
}

macro_rules! try_page {
    ($page:ident, $result:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => return Err($page.refuse(error)),
        }
    };
}

// --- Executive status ----------------------------------------------------------------------

/// `/ui/status?as_of&range=24h|7d|30d`: each catalogued system's status at `as_of`, the share of
/// green systems, and each one's timeline over the range before it (from the evaluator's history).
pub async fn status(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &["range"], "status", "/ui/status".into())?;
    let (range, range_name) = match page.params.get("range").map(String::as_str) {
        None | Some("24h") => (Duration::hours(24), "24h"),
        Some("7d") => (Duration::days(7), "7d"),
        Some("30d") => (Duration::days(30), "30d"),
        Some(other) => {
            let error = bad("range", format!("`range` is 24h, 7d or 30d, not `{other}`"));
            return Err(page.refuse(error));
        }
    };
    let start = page.as_of - range;
    let latest = |at: DateTime<Utc>| {
        sqlx::query(
            "SELECT DISTINCT ON (system_id) system_id, at, status, reason, message FROM history
             WHERE at <= $1 ORDER BY system_id, at DESC",
        )
        .bind(at)
    };
    let now_rows = try_page!(page, rows(&page, latest(page.as_of)).await);
    let start_rows = try_page!(page, rows(&page, latest(start)).await);
    let changes = try_page!(
        page,
        rows(
            &page,
            sqlx::query("SELECT system_id, at, status FROM history WHERE at > $1 AND at <= $2 ORDER BY system_id, at")
                .bind(start)
                .bind(page.as_of)
        )
        .await
    );
    let find = |rows: &[sqlx::postgres::PgRow], id: &str| {
        rows.iter().find(|r| r.get::<String, _>("system_id") == id).map(|r| {
            (
                r.get::<String, _>("status"),
                r.get::<DateTime<Utc>, _>("at"),
                r.get::<String, _>("reason"),
                r.get::<String, _>("message"),
            )
        })
    };
    let mut cards = Vec::new();
    let mut green = 0;
    for spec in &page.app().catalogue.systems {
        let current = find(&now_rows, &spec.id);
        let status = current.as_ref().map_or("unknown".to_owned(), |c| c.0.clone());
        green += usize::from(status == Status::Green.as_str());
        let initial = find(&start_rows, &spec.id).map_or("unknown".to_owned(), |c| c.0);
        let system_changes: Vec<(DateTime<Utc>, String)> = changes
            .iter()
            .filter(|r| r.get::<String, _>("system_id") == spec.id)
            .map(|r| (r.get("at"), r.get("status")))
            .collect();
        let spans = charts::spans(start, page.as_of, &initial, &system_changes);
        cards.push(context! {
            id => spec.id.clone(),
            name => spec.name.clone(),
            status => status,
            since => current.as_ref().map(|c| rfc3339(c.1)),
            reason => current.as_ref().map(|c| c.2.clone()),
            message => current.as_ref().map_or_else(
                || "unknown because the health evaluator had not evaluated this system by then".to_owned(),
                |c| c.3.clone()),
            timeline => Value::from_safe_string(charts::timeline(&spans)),
            changes => system_changes.len(),
        });
    }
    let total = cards.len().max(1);
    page.render(
        "status.html",
        context! {
            cards => cards,
            green_share => format!("{:.0}", 100.0 * green as f64 / total as f64),
            green => green,
            total => total,
            range => range_name,
            range_start => rfc3339(start),
        },
    )
}

// --- Event stream --------------------------------------------------------------------------

const EVENT_FILTERS: [&str; 7] = ["source", "type", "correlation_id", "q", "from", "to", "cursor"];

/// `/ui/events`: the table (newest first, cursor paged, up to `as_of`), its hourly timeline and
/// the live tail. Every role sees ids, types and times; payloads only on the drill-down and only
/// for the roles that may read events.
pub async fn events(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &EVENT_FILTERS, "events", "/ui/events".into())?;
    let p = &page.params.clone();
    let source = match p.get("source").map(|s| s.parse::<Source>()) {
        Some(Err(_)) => return Err(page.refuse(bad("source", format!("unknown source `{}`", p["source"])))),
        other => other.map(|s| s.map(Source::as_str).unwrap_or_default()),
    };
    let event_type = match p.get("type").map(|t| t.parse::<EventType>()) {
        Some(Err(_)) => return Err(page.refuse(bad("type", format!("unknown event type `{}`", p["type"])))),
        other => other.map(|t| t.map(EventType::as_str).unwrap_or_default()),
    };
    let (from, to) = try_page!(page, crate::routes::time_range(p));
    // Nothing after `as_of`, whatever `to` says.
    let to = to.map_or(page.as_of, |to| to.min(page.as_of));
    let cursor = try_page!(page, crate::routes::cursor_param(p));
    let q = p.get("q").map(|q| q.trim().to_owned());
    let correlation = p.get("correlation_id").cloned();
    let filter = EventFilter { source, event_type, correlation: correlation.as_deref(), q: q.as_deref() };
    let mut query = sqlx::QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE true"));
    filter.push(&mut query, from, Some(to));
    if let Some(cursor) = &cursor {
        query.push(" AND (ts, event_id) < (").push_bind(cursor.at).push(", ").push_bind(cursor.id.clone()).push(")");
    }
    query.push(" ORDER BY ts DESC, event_id DESC LIMIT ").push_bind(PAGE_ROWS + 1);
    let found = try_page!(page, rows(&page, query.build()).await);
    let (found, next) = crate::routes::split_page(&found, PAGE_ROWS, "ts", "event_id");
    let events: Vec<Value> = found
        .iter()
        .map(Event::from_row)
        .map(|e| context! { id => e.event_id, type => e.event_type, source => e.source, ts => serial(&e.ts), correlation_id => e.correlation_id })
        .collect();
    // The timeline: events per hour over the range (by default the 24 hours up to `as_of`; at
    // most the 7 days up to its end).
    let end = to;
    let start = from.unwrap_or(end - Duration::hours(24)).max(end - Duration::days(7));
    let mut query =
        sqlx::QueryBuilder::new("SELECT date_trunc('hour', ts) AS hour, count(*) AS n FROM events WHERE true");
    filter.push(&mut query, Some(start), Some(end));
    query.push(" GROUP BY 1 ORDER BY 1");
    let hours = try_page!(page, rows(&page, query.build()).await);
    let counts: HashMap<DateTime<Utc>, i64> = hours.iter().map(|r| (r.get("hour"), r.get("n"))).collect();
    let mut groups = Vec::new();
    let mut hour = start.duration_trunc(Duration::hours(1)).unwrap_or(start);
    while hour <= end && groups.len() < 24 * 31 {
        groups.push(Group {
            label: hour.format("%d %H:00").to_string(),
            values: vec![counts.get(&hour).copied().unwrap_or(0) as f64],
        });
        hour += Duration::hours(1);
    }
    let every = (groups.len() / 8).max(1);
    let chart = charts::bars("Events per hour", &[Series { name: "events", class: "s0" }], &groups, every);
    let next = next.map(|c: Cursor| {
        let mut query: Vec<String> = page
            .params
            .iter()
            .filter(|(k, _)| *k != "cursor")
            .map(|(k, v)| format!("{k}={}", super::encode(v)))
            .collect();
        query.sort();
        query.push(format!("cursor={}", c.encode()));
        format!("/ui/events?{}", query.join("&"))
    });
    page.render(
        "events.html",
        context! {
            events => events,
            next => next,
            chart => Value::from_safe_string(chart),
            sources => Source::SENDERS.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            types => EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            f => context! { source => source, type => event_type, correlation_id => correlation, q => q,
                            from => p.get("from"), to => p.get("to") },
        },
    )
}

/// The stream's filters as SQL conditions: only those given, so the planner picks the index
/// that fits (a catch-all `$1 IS NULL OR ...` plan would scan every event for a rare id).
struct EventFilter<'a> {
    source: Option<&'a str>,
    event_type: Option<&'a str>,
    correlation: Option<&'a str>,
    q: Option<&'a str>,
}

impl EventFilter<'_> {
    fn push<'q>(
        &self,
        query: &mut sqlx::QueryBuilder<'q, sqlx::Postgres>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) {
        if let Some(source) = self.source {
            query.push(" AND source = ").push_bind(source.to_owned());
        }
        if let Some(event_type) = self.event_type {
            query.push(" AND type = ").push_bind(event_type.to_owned());
        }
        if let Some(correlation) = self.correlation {
            query.push(" AND correlation_id = ").push_bind(correlation.to_owned());
        }
        if let Some(q) = self.q {
            query
                .push(" AND (event_id = ")
                .push_bind(q.to_owned())
                .push(" OR correlation_id = ")
                .push_bind(q.to_owned())
                .push(")");
        }
        if let Some(from) = from {
            query.push(" AND ts >= ").push_bind(from);
        }
        if let Some(to) = to {
            query.push(" AND ts <= ").push_bind(to);
        }
    }
}

/// `/ui/events/{id}`: one event: ingest metadata, log position, trace id, its dead-letter hops,
/// and the payload as stored for the roles that may read events.
pub async fn event(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
    Query(params): Params,
) -> PageResult {
    let path = format!("/ui/events/{}", super::encode(&event_id));
    let page = Page::open(&app, &headers, params, &[], "events", path)?;
    let event = try_page!(page, crate::routes::load_event(page.app(), &event_id).await);
    let hops = try_page!(
        page,
        rows(
            &page,
            sqlx::query(&format!("SELECT {DLQ_COLUMNS} FROM dlq_items WHERE event_id = $1 ORDER BY first_failure_at"))
                .bind(&event_id)
        )
        .await
    );
    let hops: Vec<DlqItem> = hops.iter().map(DlqItem::from_row).collect();
    let payload =
        page.may(Permission::ReadEvents).then(|| serde_json::to_string_pretty(&event.payload).unwrap_or_default());
    let mut shown = serde_json::to_value(&event).unwrap_or_default();
    shown.as_object_mut().map(|o| o.remove("payload"));
    page.render("event.html", context! { event => serial(&shown), payload => payload, hops => serial(&hops) })
}

// --- Runs ----------------------------------------------------------------------------------

/// `/ui/runs`: runs of the 30 days before `as_of` (success rate, duration p50/p95, failure
/// reasons), the latest producer-reported and triggered runs, and the allow-listed triggers.
pub async fn runs(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &[], "runs", "/ui/runs".into())?;
    let start = page.as_of - Duration::days(30);
    // Both kinds of run in one shape: status, duration and the reason of a failure.
    // Triggered runs only where the runner's schema exists (a deployment may not run it).
    let triggered_exist: bool = sqlx::query_scalar("SELECT to_regclass('trigger_runs') IS NOT NULL")
        .fetch_one(page.pool())
        .await
        .unwrap_or(false);
    let ended = format!(
        "SELECT completed_status AS status, duration_ms, ended_at, coalesce(trigger, 'unnamed') AS reason
           FROM runs WHERE ended_at > $1 AND ended_at <= $2 AND completed_status IS NOT NULL{}",
        if triggered_exist {
            " UNION ALL
             SELECT status, (extract(epoch FROM completed_at - started_at) * 1000)::bigint, completed_at,
                    coalesce(error_class, trigger)
               FROM trigger_runs WHERE completed_at > $1 AND completed_at <= $2 AND status IN ('success', 'failed')"
        } else {
            ""
        }
    );
    let stats = try_page!(
        page,
        rows(
            &page,
            sqlx::query(&format!(
                "WITH ended AS ({ended})
                 SELECT count(*) AS total, count(*) FILTER (WHERE status = 'success') AS ok,
                        percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
                        percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95
                 FROM ended"
            ))
            .bind(start)
            .bind(page.as_of)
        )
        .await
    );
    let reasons = try_page!(
        page,
        rows(
            &page,
            sqlx::query(&format!(
                "WITH ended AS ({ended})
                 SELECT reason, count(*) AS n FROM ended WHERE status <> 'success' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 12"
            ))
            .bind(start)
            .bind(page.as_of)
        )
        .await
    );
    let (total, ok, p50, p95) = stats.first().map_or((0, 0, None, None), |r| {
        (
            r.get::<i64, _>("total"),
            r.get::<i64, _>("ok"),
            r.get::<Option<i64>, _>("p50"),
            r.get::<Option<i64>, _>("p95"),
        )
    });
    let groups: Vec<Group> =
        reasons.iter().map(|r| Group { label: r.get("reason"), values: vec![r.get::<i64, _>("n") as f64] }).collect();
    let chart = charts::bars("Failed runs by reason", &[Series { name: "failed", class: "s2" }], &groups, 1);
    let produced = try_page!(
        page,
        rows(
            &page,
            sqlx::query("SELECT * FROM runs WHERE listed_at <= $1 ORDER BY listed_at DESC, run_id DESC LIMIT $2")
                .bind(page.as_of)
                .bind(PAGE_ROWS)
        )
        .await
    );
    // A run that ended after `as_of` was still running then.
    let produced: Vec<Run> = produced
        .iter()
        .map(Run::from_row)
        .map(|mut run| {
            if run.ended_at.is_some_and(|at| at > page.as_of) {
                (run.status, run.duration_ms, run.ended_at) = ("running".into(), None, None);
            }
            run
        })
        .collect();
    let triggered = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT * FROM trigger_runs WHERE requested_at <= $1 ORDER BY requested_at DESC, run_id DESC LIMIT 20"
            )
            .bind(page.as_of)
        )
        .await
    );
    let triggered: Vec<TriggeredRun> = triggered.iter().map(TriggeredRun::from_row).collect();
    let triggers: Vec<Value> = page
        .app()
        .triggers
        .triggers
        .triggers
        .iter()
        .map(|(name, spec)| {
            context! {
                name => name,
                description => spec.description.clone(),
                approval => spec.approval.as_ref().map(|a| a.role.clone()),
                schema => serde_json::to_string(&spec.inputs).unwrap_or_default(),
            }
        })
        .collect();
    page.render(
        "runs.html",
        context! {
            total => total,
            success_rate => (total > 0).then(|| format!("{:.1}", 100.0 * ok as f64 / total as f64)),
            p50 => p50,
            p95 => p95,
            chart => Value::from_safe_string(chart),
            produced => serial(&produced),
            triggered => serial(&triggered),
            triggers => triggers,
        },
    )
}

/// `/ui/runs/{id}`: one run (either kind) with its transitions; approve or reject when awaiting.
pub async fn run(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
    Query(params): Params,
) -> PageResult {
    let path = format!("/ui/runs/{}", super::encode(&run_id));
    let page = Page::open(&app, &headers, params, &[], "runs", path)?;
    if let Some(run) = try_page!(page, crate::triggers::load_run(page.app(), &run_id).await) {
        let transitions = try_page!(
            page,
            rows(
                &page,
                sqlx::query("SELECT * FROM run_transitions WHERE run_id = $1 ORDER BY \"offset\"").bind(&run_id)
            )
            .await
        );
        let transitions: Vec<crate::views::Transition> =
            transitions.iter().map(crate::views::Transition::from_row).collect();
        let awaiting = run.status == ct_core::runs::RunStatus::AwaitingApproval.as_str();
        return page.render(
            "run.html",
            context! { run => serial(&run), kind => "triggered", transitions => serial(&transitions), awaiting => awaiting },
        );
    }
    let row = try_page!(
        page,
        crate::routes::fetch_one_by_id(page.pool(), "SELECT * FROM runs WHERE run_id = $1", &run_id, "run", "runId")
            .await
    );
    page.render("run.html", context! { run => serial(&Run::from_row(&row)), kind => "producer" })
}

// --- Finance -------------------------------------------------------------------------------

/// `/ui/finance`: invoices generated and paid per day over the 30 days before `as_of`, and the
/// average days from an invoice to its payment (paid in that window).
pub async fn finance(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &[], "finance", "/ui/finance".into())?;
    let start = page.as_of - Duration::days(30);
    // One read of the finance events (index-only, by `events_finance`), summed here: the
    // window's, and the invoices generated up to 90 days before it, for the time to pay.
    let found = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT type, ts, payload->>'invoice_id' AS invoice, payload->>'status_to' = 'paid' AS paid,
                        coalesce((payload->>'total_minor')::bigint, (payload->>'amount_minor')::bigint, 0) AS minor
                 FROM events WHERE type IN ('finance.invoice.generated', 'finance.payment.webhook')
                   AND ts > $1 - interval '90 days' AND ts <= $2
                 ORDER BY ts"
            )
            .bind(start)
            .bind(page.as_of)
        )
        .await
    );
    let records: Vec<FinanceRecord> = found
        .iter()
        .map(|r| FinanceRecord {
            generated: r.get::<String, _>("type") == "finance.invoice.generated",
            at: r.get("ts"),
            invoice: r.get::<Option<String>, _>("invoice").unwrap_or_default(),
            paid: r.get::<Option<bool>, _>("paid").unwrap_or(false),
            minor: r.get("minor"),
        })
        .collect();
    let summary = finance_summary(&records, start, page.as_of);
    let mut groups = Vec::new();
    let mut day = start.duration_trunc(Duration::days(1)).unwrap_or(start) + Duration::days(1);
    while day <= page.as_of {
        let (generated, paid) = summary.by_day.get(&day).copied().unwrap_or_default();
        groups.push(Group { label: day.format("%m-%d").to_string(), values: vec![generated as f64, paid as f64] });
        day += Duration::days(1);
    }
    let series = [Series { name: "generated", class: "s0" }, Series { name: "paid", class: "s1" }];
    let chart = charts::bars("Invoices per day", &series, &groups, 5);
    let days = summary.average_days_to_pay();
    page.render(
        "finance.html",
        context! {
            chart => Value::from_safe_string(chart),
            generated => summary.generated,
            paid => summary.paid,
            generated_money => money(summary.generated_minor),
            paid_money => money(summary.paid_minor),
            paired => summary.paired,
            days_to_pay => days.map(|d| format!("{d:.1}")),
            hours_to_pay => days.map(|d| format!("{:.1}", d * 24.0)),
        },
    )
}

/// A finance event as the page reads it: an invoice generated, or a payment update.
#[derive(Debug, Clone)]
struct FinanceRecord {
    generated: bool,
    at: DateTime<Utc>,
    invoice: String,
    /// A payment update to `paid`.
    paid: bool,
    /// The invoice's total, or the amount paid.
    minor: i64,
}

#[derive(Debug, Default, PartialEq)]
struct FinanceSummary {
    /// Per UTC day in the window: invoices generated and paid.
    by_day: HashMap<DateTime<Utc>, (i64, i64)>,
    generated: i64,
    paid: i64,
    generated_minor: i64,
    paid_minor: i64,
    /// Invoices first paid in the window whose generation was read, and their days to pay.
    paired: i64,
    days_to_pay: f64,
}

impl FinanceSummary {
    fn average_days_to_pay(&self) -> Option<f64> {
        (self.paired > 0).then(|| self.days_to_pay / self.paired as f64)
    }
}

/// Sums `records` (ordered by time) over `(start, end]`; each invoice's time to pay runs from its
/// first generation to its first payment, counted when that payment is in the window.
fn finance_summary(records: &[FinanceRecord], start: DateTime<Utc>, end: DateTime<Utc>) -> FinanceSummary {
    let mut summary = FinanceSummary::default();
    let mut generated_at: HashMap<&str, DateTime<Utc>> = HashMap::new();
    let mut paid: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for record in records.iter().filter(|r| r.at <= end) {
        let inside = record.at > start;
        let day = record.at.duration_trunc(Duration::days(1)).unwrap_or(record.at);
        if record.generated {
            generated_at.entry(&record.invoice).or_insert(record.at);
            if inside {
                summary.generated += 1;
                summary.generated_minor += record.minor;
                summary.by_day.entry(day).or_default().0 += 1;
            }
        } else if record.paid && inside {
            summary.paid += 1;
            summary.paid_minor += record.minor;
            summary.by_day.entry(day).or_default().1 += 1;
            if paid.insert(&record.invoice)
                && let Some(at) = generated_at.get(record.invoice.as_str())
            {
                summary.paired += 1;
                summary.days_to_pay += (record.at - *at).num_seconds() as f64 / 86_400.0;
            }
        }
    }
    summary
}

/// Minor units as major with two decimals (the pages show totals; currency per invoice is GBP
/// in every dataset so far, and the page says "in minor units' currency").
fn money(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, (minor % 100).abs())
}

// --- CI ------------------------------------------------------------------------------------

/// `/ui/ci`: failed workflows per repo over the 7 days before `as_of`, each repo's latest failure.
pub async fn ci(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &[], "ci", "/ui/ci".into())?;
    let start = page.as_of - Duration::days(7);
    let latest = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT DISTINCT ON (payload->>'repo') payload->>'repo' AS repo, event_id, ts,
                        payload->>'job' AS job, payload->>'branch' AS branch, payload->>'url' AS url,
                        count(*) OVER (PARTITION BY payload->>'repo') AS failures
                 FROM events WHERE type = 'ci.workflow.failed' AND ts > $1 AND ts <= $2
                 ORDER BY payload->>'repo', ts DESC, event_id DESC"
            )
            .bind(start)
            .bind(page.as_of)
        )
        .await
    );
    let mut repos: Vec<Value> = Vec::new();
    let mut groups = Vec::new();
    let mut ordered: Vec<&sqlx::postgres::PgRow> = latest.iter().collect();
    ordered.sort_by_key(|r| (std::cmp::Reverse(r.get::<i64, _>("failures")), r.get::<String, _>("repo")));
    for row in ordered {
        let repo: String = row.get("repo");
        groups.push(Group { label: repo.clone(), values: vec![row.get::<i64, _>("failures") as f64] });
        repos.push(context! {
            repo => repo,
            failures => row.get::<i64, _>("failures"),
            event_id => row.get::<String, _>("event_id"),
            at => rfc3339(row.get("ts")),
            job => row.get::<Option<String>, _>("job"),
            branch => row.get::<Option<String>, _>("branch"),
            url => row.get::<Option<String>, _>("url"),
        });
    }
    let chart =
        charts::bars("Failed workflows per repo, 7 days", &[Series { name: "failed", class: "s2" }], &groups, 1);
    page.render("ci.html", context! { repos => repos, chart => Value::from_safe_string(chart) })
}

// --- Exceptions ----------------------------------------------------------------------------

/// `/ui/exceptions`: dead letters parked per category per day over the 14 days before `as_of`,
/// retries, the top error signatures; the parked items for the roles that may read events.
pub async fn exceptions(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &[], "exceptions", "/ui/exceptions".into())?;
    let start = page.as_of - Duration::days(14);
    // An item was parked at the end of a day if it had failed by then and had not left yet.
    let depth = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT d.day, i.category, count(i.id) AS n
                 FROM (SELECT generate_series(date_trunc('day', $1::timestamptz) + interval '1 day', $2::timestamptz, interval '1 day')
                       UNION SELECT $2::timestamptz) AS d(day)
                 JOIN dlq_items i ON i.first_failure_at <= d.day AND (i.state = 'parked' OR i.state_changed_at > d.day)
                 GROUP BY 1, 2"
            )
            .bind(start)
            .bind(page.as_of)
        )
        .await
    );
    let categories = ct_core::dlq::Category::ALL;
    let mut groups = Vec::new();
    let mut day = start.duration_trunc(Duration::days(1)).unwrap_or(start) + Duration::days(1);
    loop {
        // Each midnight in the range, then `as_of` itself.
        let (at, label) =
            if day < page.as_of { (day, day.format("%m-%d").to_string()) } else { (page.as_of, "as of".to_owned()) };
        let count = |category: &str| {
            depth
                .iter()
                .find(|r| r.get::<DateTime<Utc>, _>("day") == at && r.get::<String, _>("category") == category)
                .map_or(0, |r| r.get::<i64, _>("n"))
        };
        groups.push(Group { label, values: categories.iter().map(|c| count(c.as_str()) as f64).collect() });
        if at == page.as_of {
            break;
        }
        day += Duration::days(1);
    }
    let series = [
        Series { name: "SCHEMA", class: "s0" },
        Series { name: "TRANSIENT", class: "s1" },
        Series { name: "CRITICAL", class: "s2" },
    ];
    let chart = charts::bars("Parked dead letters at the end of each day", &series, &groups, 2);
    let summary = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT count(*) FILTER (WHERE state = 'parked' OR state_changed_at > $1) AS parked,
                        coalesce(sum(attempts - 1), 0)::bigint AS retries, count(*) AS items
                 FROM dlq_items WHERE first_failure_at <= $1"
            )
            .bind(page.as_of)
        )
        .await
    );
    let signatures = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT category, error_class, rule, count(*) AS n, max(last_failure_at) AS last
                 FROM dlq_items WHERE first_failure_at <= $1 GROUP BY 1, 2, 3 ORDER BY n DESC, last DESC LIMIT 10"
            )
            .bind(page.as_of)
        )
        .await
    );
    let signatures: Vec<Value> = signatures
        .iter()
        .map(|r| {
            context! { category => r.get::<String, _>("category"), error_class => r.get::<String, _>("error_class"),
            rule => r.get::<String, _>("rule"), count => r.get::<i64, _>("n"), last => rfc3339(r.get("last")) }
        })
        .collect();
    let items = if page.may(Permission::ReadEvents) {
        let found = try_page!(
            page,
            rows(
                &page,
                sqlx::query(&format!(
                    "SELECT {DLQ_COLUMNS} FROM dlq_items WHERE first_failure_at <= $1
                     ORDER BY first_failure_at DESC, id DESC LIMIT $2"
                ))
                .bind(page.as_of)
                .bind(PAGE_ROWS)
            )
            .await
        );
        Some(found.iter().map(DlqItem::from_row).collect::<Vec<_>>())
    } else {
        None
    };
    let (parked, retries, total): (i64, i64, i64) =
        summary.first().map_or((0, 0, 0), |r| (r.get("parked"), r.get("retries"), r.get("items")));
    page.render(
        "exceptions.html",
        context! {
            chart => Value::from_safe_string(chart),
            parked => parked,
            retries => retries,
            total => total,
            signatures => signatures,
            items => items.as_ref().map(serial),
        },
    )
}

/// `/ui/exceptions/{id}` (roles that may read events): one dead letter and what replaying it
/// would do: the plan `ct dlq replay --dry-run` prints.
pub async fn exception(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(item_id): Path<String>,
    Query(params): Params,
) -> PageResult {
    let path = format!("/ui/exceptions/{}", super::encode(&item_id));
    let page = Page::open(&app, &headers, params, &[], "exceptions", path)?;
    if !page.may(Permission::ReadEvents) {
        let role = page.caller.role.as_str();
        return Err(page.refuse(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {role} role may not read dead letters (they hold payloads)"),
        )));
    }
    let sql = format!("SELECT {DLQ_COLUMNS} FROM dlq_items WHERE id = $1");
    let row =
        try_page!(page, crate::routes::fetch_one_by_id(page.pool(), &sql, &item_id, "dead letter", "itemId").await);
    let item = DlqItem::from_row(&row);
    let item_plan = ct_core::dlq::PlanItem { id: &item.id, category: &item.category, stage: &item.stage };
    let actions = &page.app().config.actions;
    let plan = ct_core::dlq::plan(Action::Replay, [item_plan], &actions.retry_topic, &actions.audit_topic, true);
    let command = format!("ct dlq replay --id {} --dry-run", item.id);
    page.render(
        "exception.html",
        context! { item => serial(&item), plan => plan.lines().join("\n"), command => command, parked => item.state == "parked" },
    )
}

// --- Reports -------------------------------------------------------------------------------

/// `/ui/reports?date=`: a day's digest (by default the latest decided by `as_of`) and the list.
pub async fn reports(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> PageResult {
    let page = Page::open(&app, &headers, params, &["date"], "reports", "/ui/reports".into())?;
    let day = match page.params.get("date").map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")) {
        Some(Err(_)) => {
            let raw = page.params["date"].clone();
            return Err(page.refuse(bad("date", format!("`date` must be a calendar day YYYY-MM-DD, not `{raw}`"))));
        }
        other => other.map(|d| d.unwrap_or_default()),
    };
    let digest = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT day, sha256, markdown, due_at, published_at, late FROM digests
                 WHERE decided_minute <= $2 AND ($1::date IS NULL OR day = $1) ORDER BY day DESC LIMIT 1"
            )
            .bind(day)
            .bind(page.as_of)
        )
        .await
    );
    let history = try_page!(
        page,
        rows(
            &page,
            sqlx::query(
                "SELECT day, sha256, published_at, late FROM digests WHERE decided_minute <= $1 ORDER BY day DESC LIMIT 30"
            )
            .bind(page.as_of)
        )
        .await
    );
    let shown = digest.first().map(|r| {
        context! {
            day => r.get::<chrono::NaiveDate, _>("day").to_string(),
            sha256 => r.get::<String, _>("sha256"),
            html => Value::from_safe_string(markdown(&r.get::<String, _>("markdown"))),
            due_at => rfc3339(r.get("due_at")),
            published_at => r.get::<Option<DateTime<Utc>>, _>("published_at").map(rfc3339),
            late => r.get::<Option<bool>, _>("late").unwrap_or(false),
        }
    });
    let history: Vec<Value> = history
        .iter()
        .map(|r| {
            context! {
                day => r.get::<chrono::NaiveDate, _>("day").to_string(),
                sha256 => r.get::<String, _>("sha256"),
                published_at => r.get::<Option<DateTime<Utc>>, _>("published_at").map(rfc3339),
                late => r.get::<Option<bool>, _>("late").unwrap_or(false),
            }
        })
        .collect();
    page.render("reports.html", context! { digest => shown, history => history })
}

/// The digest's Markdown as HTML; raw HTML in it is shown as text, never interpreted.
fn markdown(source: &str) -> String {
    use pulldown_cmark::{Event as Md, Options, Parser, html};
    let parser = Parser::new_ext(source, Options::ENABLE_TABLES).map(|event| match event {
        Md::Html(raw) | Md::InlineHtml(raw) => Md::Text(raw),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, parser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_html_in_it_stays_text() {
        let html = markdown("# Digest\n\n| a | b |\n|---|---|\n| 1 | <script>x</script> |\n");
        assert!(html.contains("<h1>Digest</h1>") && html.contains("<table>"), "{html}");
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
    }

    #[test]
    fn finance_counts_the_window_and_pairs_each_invoice_with_its_first_payment() {
        let t = |d: u32, h: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 9, d, h, 0, 0).unwrap();
        let record = |generated, at, invoice: &str, paid, minor| FinanceRecord {
            generated,
            at,
            invoice: invoice.to_owned(),
            paid,
            minor,
        };
        let records = vec![
            record(true, t(1, 9), "INV-old", false, 500), // before the window: pairs, not counted
            record(true, t(10, 9), "INV-1", false, 1000),
            record(false, t(11, 9), "INV-1", false, 0), // an update that is not a payment
            record(false, t(12, 9), "INV-1", true, 1000), // paid 2 days after
            record(false, t(12, 10), "INV-1", true, 1000), // a repeat: counted as paid, paired once
            record(false, t(13, 9), "INV-old", true, 500), // paid 12 days after
            record(false, t(14, 9), "INV-unknown", true, 700),
            record(true, t(20, 9), "INV-late", false, 1), // after the end
        ];
        let summary = finance_summary(&records, t(5, 0), t(15, 0));
        assert_eq!((summary.generated, summary.generated_minor), (1, 1000));
        assert_eq!((summary.paid, summary.paid_minor), (4, 3200));
        assert_eq!(summary.paired, 2);
        assert_eq!(summary.average_days_to_pay(), Some(7.0));
        assert_eq!(summary.by_day.get(&t(12, 0)), Some(&(0, 2)));
        assert_eq!(summary.by_day.get(&t(10, 0)), Some(&(1, 0)));
        assert_eq!(finance_summary(&[], t(5, 0), t(15, 0)).average_days_to_pay(), None);
    }

    #[test]
    fn money_is_major_units_with_two_decimals() {
        assert_eq!(money(316_721), "3167.21");
        assert_eq!(money(5), "0.05");
    }
}
