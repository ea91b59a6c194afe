//! `GET /events/{eventId}/lineage`: where one event went. Its ingest (the edge accepted it: a
//! projected event was acknowledged by the broker), its log position, the read-model rows it
//! produced, every dead-letter hop with its hand-backs and audits, the runs that share its
//! correlation id, and its trace id. Read from the projector's, the categoriser's and nothing
//! else's tables; maintainer and above (it shows payload-bearing records' positions).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use ct_platform::http_error::ApiError;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    health::rows_or_none,
    routes::{internal, load_event},
    views::{DLQ_COLUMNS, DlqAudit, DlqItem, Micros},
};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub correlation_id: Option<String>,
    pub ingest: IngestVerdict,
    pub log: crate::views::LogPosition,
    pub read_models: Vec<ReadModelRow>,
    pub dead_letters: Vec<DeadLetterHop>,
    pub correlated_runs: Vec<CorrelatedRun>,
    pub trace_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestVerdict {
    /// `accepted`: only events the broker acknowledged reach the read models.
    pub verdict: &'static str,
    pub received_at: Micros,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadModelRow {
    pub model: &'static str,
    pub table: &'static str,
    pub key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterHop {
    #[serde(flatten)]
    pub item: DlqItem,
    pub handbacks: Vec<Handback>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handback {
    pub attempt: i32,
    pub origin: String,
    pub at: Micros,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedRun {
    pub run_id: String,
    pub trigger: Option<String>,
    pub status: String,
    pub started_at: Option<Micros>,
    pub ended_at: Option<Micros>,
}

pub async fn lineage(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    let event = load_event(&app, &event_id).await?;

    let mut read_models = vec![
        ReadModelRow { model: "projector", table: "events", key: event.event_id.clone() },
        ReadModelRow { model: "projector", table: "type_counts", key: event.event_type.clone() },
        ReadModelRow { model: "projector", table: "systems", key: event.source.clone() },
    ];
    let run_id = event.payload.get("run_id").and_then(Value::as_str).map(str::to_owned);
    if event.event_type.starts_with("ct.run.")
        && let Some(run_id) = &run_id
    {
        read_models.push(ReadModelRow { model: "projector", table: "runs", key: run_id.clone() });
    }

    // Hops of this record: by the eventId the categoriser decoded, or by the original position.
    let sql = format!(
        "SELECT {DLQ_COLUMNS} FROM dlq_items
         WHERE event_id = $1 OR (original_topic = $2 AND original_partition = $3 AND original_offset = $4)
         ORDER BY first_failure_at, id"
    );
    let items = rows_or_none(
        sqlx::query(&sql).bind(&event.event_id).bind(&event.log.topic).bind(event.log.partition).bind(event.log.offset),
        &app.pool,
    )
    .await?;
    let mut dead_letters = Vec::with_capacity(items.len());
    for row in &items {
        let mut item = DlqItem::from_row(row);
        let audit = sqlx::query(
            "SELECT action, outcome, actor, at, reason, detail FROM dlq_audit WHERE item_id = $1 ORDER BY at, audit_id",
        )
        .bind(&item.id)
        .fetch_all(&app.pool)
        .await
        .map_err(internal)?;
        item.audit = Some(audit.iter().map(DlqAudit::from_row).collect());
        let handbacks =
            sqlx::query("SELECT attempt, origin, at FROM dlq_handbacks WHERE item_id = $1 ORDER BY attempt, at")
                .bind(&item.id)
                .fetch_all(&app.pool)
                .await
                .map_err(internal)?
                .iter()
                .map(|h| Handback { attempt: h.get("attempt"), origin: h.get("origin"), at: Micros(h.get("at")) })
                .collect();
        dead_letters.push(DeadLetterHop { item, handbacks });
    }

    // Runs sharing the correlation id: the run it names, and runs of events that carry it.
    let correlated_runs = match &event.correlation_id {
        None => Vec::new(),
        Some(correlation_id) => sqlx::query(
            "SELECT DISTINCT r.run_id, r.trigger, r.completed_status, r.started_at, r.ended_at FROM runs r
             WHERE r.run_id = $1
                OR r.run_id IN (SELECT e.payload->>'run_id' FROM events e
                                WHERE e.correlation_id = $1 AND e.type LIKE 'ct.run.%')
             ORDER BY r.run_id LIMIT 100",
        )
        .bind(correlation_id)
        .fetch_all(&app.pool)
        .await
        .map_err(internal)?
        .iter()
        .map(|r| CorrelatedRun {
            run_id: r.get("run_id"),
            trigger: r.get("trigger"),
            status: r.get::<Option<String>, _>("completed_status").unwrap_or_else(|| "running".to_owned()),
            started_at: r.get::<Option<chrono::DateTime<chrono::Utc>>, _>("started_at").map(Micros),
            ended_at: r.get::<Option<chrono::DateTime<chrono::Utc>>, _>("ended_at").map(Micros),
        })
        .collect(),
    };

    Ok(Json(Lineage {
        trace_id: event.ingest.trace_id.clone(),
        ingest: IngestVerdict { verdict: "accepted", received_at: event.ingest.received_at },
        event_id: event.event_id,
        event_type: event.event_type,
        source: event.source,
        correlation_id: event.correlation_id,
        log: event.log,
        read_models,
        dead_letters,
        correlated_runs,
    })
    .into_response())
}
