//! The event stream's live tail (`GET /ui/tail`, Server-Sent Events).
//!
//! One poller per API process reads the events model by log position (per topic and partition,
//! after the last offset it saw: exact, and cheap with the `events_log_position` index) and
//! broadcasts each new row to every open tail, which applies its own filters. It runs only while
//! someone watches, so an idle API costs nothing. Rows carry no payload: every role may watch.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{AppState, ui::Page};

/// One new event, as the tail shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TailEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub ts: String,
    pub correlation_id: Option<String>,
}

/// What one watcher asked to see (the stream page's filters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailFilter {
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    /// An event id or correlation id, exactly.
    pub q: Option<String>,
}

impl TailFilter {
    pub fn matches(&self, event: &TailEvent) -> bool {
        self.source.as_ref().is_none_or(|s| *s == event.source)
            && self.event_type.as_ref().is_none_or(|t| *t == event.event_type)
            && self.correlation_id.as_ref().is_none_or(|c| event.correlation_id.as_ref() == Some(c))
            && self.q.as_ref().is_none_or(|q| *q == event.event_id || event.correlation_id.as_ref() == Some(q))
    }
}

pub struct Tail {
    sender: broadcast::Sender<Arc<TailEvent>>,
    running: std::sync::Mutex<bool>,
    pool: sqlx::PgPool,
    poll: Duration,
    shutdown: CancellationToken,
}

/// A tail that falls this far behind loses the oldest rows (and is told so).
const BUFFER: usize = 4_096;
/// Rows read per partition and poll.
const BATCH: i64 = 1_000;

impl Tail {
    pub fn new(pool: sqlx::PgPool, poll: Duration, shutdown: CancellationToken) -> Tail {
        Tail { sender: broadcast::channel(BUFFER).0, running: std::sync::Mutex::new(false), pool, poll, shutdown }
    }

    /// A new watcher; starts the poller if it is not running.
    fn subscribe(self: &Arc<Self>) -> broadcast::Receiver<Arc<TailEvent>> {
        let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let receiver = self.sender.subscribe();
        if !*running {
            *running = true;
            tokio::spawn(self.clone().poll_while_watched());
        }
        receiver
    }

    async fn poll_while_watched(self: Arc<Self>) {
        let mut positions: Option<BTreeMap<(String, i32), i64>> = None;
        loop {
            match self.poll_once(&mut positions).await {
                Ok(events) => {
                    for event in events {
                        let _ = self.sender.send(Arc::new(event));
                    }
                }
                // Postgres away: the watchers keep their connection and see rows when it is back.
                Err(error) => tracing::warn!(%error, "Live tail: the events model did not answer."),
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = self.shutdown.cancelled() => {}
            }
            let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.sender.receiver_count() == 0 || self.shutdown.is_cancelled() {
                *running = false;
                return;
            }
        }
    }

    /// New rows since `positions` (none the first time: the poller starts at the end).
    async fn poll_once(&self, positions: &mut Option<BTreeMap<(String, i32), i64>>) -> sqlx::Result<Vec<TailEvent>> {
        // Every (topic, partition) with its last offset, by a skip scan of the index.
        let ends: Vec<(String, i32, i64)> = sqlx::query_as(
            r#"WITH RECURSIVE k AS (
                 (SELECT topic, "partition" FROM events ORDER BY topic, "partition" LIMIT 1)
                 UNION ALL
                 SELECT n.topic, n."partition" FROM k CROSS JOIN LATERAL (
                   SELECT topic, "partition" FROM events WHERE (topic, "partition") > (k.topic, k."partition")
                   ORDER BY topic, "partition" LIMIT 1) n)
               SELECT k.topic, k."partition",
                      (SELECT max("offset") FROM events e WHERE e.topic = k.topic AND e."partition" = k."partition")
               FROM k"#,
        )
        .fetch_all(&self.pool)
        .await?;
        let Some(known) = positions.as_mut() else {
            *positions = Some(ends.into_iter().map(|(t, p, o)| ((t, p), o)).collect());
            return Ok(Vec::new());
        };
        let behind: Vec<(String, i32, i64)> = ends
            .into_iter()
            // A partition first seen now is new since the poller started: all of it is new.
            .filter_map(|(t, p, end)| {
                let at = known.get(&(t.clone(), p)).copied().unwrap_or(-1);
                (end > at).then_some((t, p, at))
            })
            .collect();
        if behind.is_empty() {
            return Ok(Vec::new());
        }
        let (topics, (partitions, offsets)): (Vec<String>, (Vec<i32>, Vec<i64>)) =
            behind.into_iter().map(|(t, p, o)| (t, (p, o))).unzip();
        let rows = sqlx::query(
            r#"SELECT c.topic, c.p AS "partition", e."offset", e.event_id, e.type, e.source, e.ts, e.correlation_id
               FROM unnest($1::text[], $2::int[], $3::bigint[]) AS c(topic, p, o)
               CROSS JOIN LATERAL (
                 SELECT "offset", event_id, type, source, ts, correlation_id FROM events
                 WHERE topic = c.topic AND "partition" = c.p AND "offset" > c.o ORDER BY "offset" LIMIT $4) e
               ORDER BY e.ts, e.event_id"#,
        )
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let key = (row.get::<String, _>("topic"), row.get::<i32, _>("partition"));
            let offset: i64 = row.get("offset");
            let at = known.entry(key).or_insert(offset);
            *at = (*at).max(offset);
            events.push(TailEvent {
                event_id: row.get("event_id"),
                event_type: row.get("type"),
                source: row.get("source"),
                ts: super::rfc3339(row.get::<DateTime<Utc>, _>("ts")),
                correlation_id: row.get("correlation_id"),
            });
        }
        Ok(events)
    }
}

/// `GET /ui/tail?source&type&correlation_id&q`: `event: event` messages with the JSON of each new
/// event that passes the filters, `event: lagged` when this watcher fell behind.
pub async fn stream(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let page = match Page::open(
        &app,
        &headers,
        params,
        &["source", "type", "correlation_id", "q"],
        "events",
        "/ui/events".into(),
    ) {
        Ok(page) => page,
        Err(refusal) => return refusal.into_response(),
    };
    let filter = TailFilter {
        source: page.params.get("source").cloned(),
        event_type: page.params.get("type").cloned(),
        correlation_id: page.params.get("correlation_id").cloned(),
        q: page.params.get("q").cloned(),
    };
    let receiver = app.ui.tail.subscribe();
    let shutdown = app.ui.tail.shutdown.clone();
    let events = futures::stream::unfold((receiver, filter, shutdown), |(mut receiver, filter, shutdown)| async move {
        loop {
            let next = tokio::select! {
                next = receiver.recv() => next,
                () = shutdown.cancelled() => return None,
            };
            match next {
                Ok(event) if filter.matches(&event) => {
                    let message = SseEvent::default().event("event").json_data(&*event).ok()?;
                    return Some((Ok::<_, Infallible>(message), (receiver, filter, shutdown)));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let message = SseEvent::default().event("lagged").data(missed.to_string());
                    return Some((Ok(message), (receiver, filter, shutdown)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, event_type: &str, correlation: Option<&str>) -> TailEvent {
        TailEvent {
            event_id: "evt-1".into(),
            event_type: event_type.into(),
            source: source.into(),
            ts: "2025-09-25T09:00:00Z".into(),
            correlation_id: correlation.map(str::to_owned),
        }
    }

    #[test]
    fn a_filter_keeps_only_what_it_names() {
        let e = event("finance", "finance.invoice.generated", Some("corr-9"));
        assert!(TailFilter::default().matches(&e));
        assert!(TailFilter { source: Some("finance".into()), ..Default::default() }.matches(&e));
        assert!(!TailFilter { source: Some("github".into()), ..Default::default() }.matches(&e));
        assert!(!TailFilter { event_type: Some("ci.workflow.failed".into()), ..Default::default() }.matches(&e));
        assert!(TailFilter { q: Some("corr-9".into()), ..Default::default() }.matches(&e));
        assert!(TailFilter { q: Some("evt-1".into()), ..Default::default() }.matches(&e));
        assert!(!TailFilter { q: Some("evt".into()), ..Default::default() }.matches(&e));
        assert!(
            !TailFilter { correlation_id: Some("corr-9".into()), ..Default::default() }
                .matches(&event("finance", "x", None))
        );
    }
}
