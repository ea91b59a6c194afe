//! Triggered runs told to the rest of the platform: each run that started is announced as a
//! `ct.run.started` event and, once it ended, a `ct.run.completed` event, sent through the edge as
//! source `control_tower`. The health evaluator reads them like producers' run reports (the
//! run-SLA alert with the trigger's `sla_s`, the runs SLO); the projector keeps the events but
//! does not list them as producers' runs.
//!
//! Both bodies are functions of the runs model only (event id from the run id, `ts` the start or
//! end the model holds), so sending one again is the edge's duplicate. That is what makes the
//! announcer simple: it remembers in memory what it sent and, after a restart, sends again what
//! falls in `announce.horizon_s` (runs still running, and runs ended within it). After its first
//! look it reads only runs still running and runs ended since its last complete look (less a
//! 10-minute margin for the model's lag).

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use ct_core::runs::{Run, RunStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::model;

/// How late the model may show a run's end (its record time) and still be looked at.
const MODEL_LAG_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

#[derive(Debug, Clone, Deserialize)]
pub struct AnnounceConfig {
    pub enabled: bool,
    /// Runs ended longer ago than this are not sent again after a restart.
    pub horizon_s: u64,
    /// How often the model is looked at.
    pub interval_ms: u64,
}

/// The two announcements of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Started,
    Completed,
}

/// The event announcing `phase` of `run`, or `None` when there is nothing to announce (a run
/// cancelled before it started is no run to the health rules).
fn announcement(run: &Run, phase: Phase) -> Option<ct_client::Event> {
    let started_at = run.started_at?;
    let correlation_id = run.correlation_id.clone().unwrap_or_else(|| run.run_id.clone());
    let (event_type, ts, payload) = match phase {
        Phase::Started => {
            let inputs: serde_json::Map<String, Value> =
                run.inputs.as_deref().and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default();
            let inputs: serde_json::Map<String, Value> = inputs
                .into_iter()
                .map(|(key, value)| {
                    let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                    (key, Value::String(text))
                })
                .collect();
            let payload = json!({"runId": run.run_id, "trigger": run.trigger, "initiator": run.initiator,
                "inputs": inputs});
            ("ct.run.started", started_at, payload)
        }
        Phase::Completed => {
            let status = match run.status {
                RunStatus::Success => "success",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
                _ => return None,
            };
            let ended_at = run.completed_at?;
            let metrics: serde_json::Map<String, Value> = run
                .result
                .as_deref()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .and_then(|result| result.get("metrics").and_then(Value::as_object).cloned())
                .map(|metrics| metrics.into_iter().filter(|(_, v)| v.is_i64()).collect())
                .unwrap_or_default();
            let payload = json!({"runId": run.run_id, "status": status,
                "durationMs": (ended_at - started_at).num_milliseconds().max(0), "metrics": metrics});
            ("ct.run.completed", ended_at, payload)
        }
    };
    let suffix = match phase {
        Phase::Started => "started",
        Phase::Completed => "completed",
    };
    let event = ct_client::Event::new(event_type, payload).ok()?;
    Some(
        event
            .with_id(format!("evt_{}_{suffix}", run.run_id))
            .with_ts(ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .with_correlation_id(correlation_id),
    )
}

/// Sends what the model says is owed until `shutdown`. An edge that refuses or cannot be reached
/// is tried again at the next look (the client retries 5xx and timeouts itself).
pub async fn run(
    pool: PgPool,
    config: AnnounceConfig,
    edge: ct_client::EdgeConfig,
    changes: Arc<crate::executor::Changes>,
    shutdown: CancellationToken,
) {
    let client = edge.client(ct_client::RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(200),
        cap: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
    });
    let mut sent: HashSet<(String, Phase)> = HashSet::new();
    let mut any_change = changes.watch_all();
    let interval = Duration::from_millis(config.interval_ms.max(50));
    // The first look covers the horizon; later ones only runs ended since the last complete look
    // (less a margin for the model's lag), so a look does not read a day of runs every second.
    let mut since = Utc::now() - chrono::Duration::seconds(i64::try_from(config.horizon_s).unwrap_or(i64::MAX));
    loop {
        let look_started = Utc::now();
        let mut complete = true;
        match owed(&pool, since).await {
            Ok(runs) => {
                for run in runs {
                    for phase in [Phase::Started, Phase::Completed] {
                        let key = (run.run_id.clone(), phase);
                        if sent.contains(&key) {
                            continue;
                        }
                        let Some(event) = announcement(&run, phase) else { continue };
                        match client.send(&event).await {
                            Ok(_) => {
                                metrics::counter!("ct_runner_announcements_total", "outcome" => "sent").increment(1);
                                sent.insert(key);
                            }
                            Err(error) => {
                                complete = false;
                                metrics::counter!("ct_runner_announcements_total", "outcome" => "failed").increment(1);
                                tracing::warn!(run_id = run.run_id, error = %error, "A run announcement was not accepted; trying again.");
                            }
                        }
                    }
                }
            }
            Err(error) => {
                complete = false;
                tracing::warn!(error = %error, "Reading the runs to announce failed; trying again.");
            }
        }
        if complete {
            since = since.max(look_started - MODEL_LAG_MARGIN);
        }
        prune(&mut sent, &pool, since).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
            _ = any_change.changed() => {}
        }
    }
}

/// Runs that started and are either still running or ended after `horizon` (the running ones
/// are few; the ended ones are bounded by the look's window).
async fn owed(pool: &PgPool, horizon: DateTime<Utc>) -> Result<Vec<Run>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM trigger_runs WHERE started_at IS NOT NULL AND (completed_at IS NULL OR completed_at > $1)
         ORDER BY started_at",
        model::RUN_COLUMNS
    ))
    .bind(horizon)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(model::run_from_row).collect())
}

/// Forgets runs that ended before `horizon` (they are no longer looked at).
async fn prune(sent: &mut HashSet<(String, Phase)>, pool: &PgPool, horizon: DateTime<Utc>) {
    if sent.len() < 10_000 {
        return;
    }
    let old: Result<Vec<String>, _> = sqlx::query_scalar("SELECT run_id FROM trigger_runs WHERE completed_at <= $1")
        .bind(horizon)
        .fetch_all(pool)
        .await;
    if let Ok(old) = old {
        let old: HashSet<String> = old.into_iter().collect();
        sent.retain(|(run_id, _)| !old.contains(run_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus) -> Run {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        Run {
            run_id: "run_1".into(),
            trigger: "contract.regenerate".into(),
            status,
            initiator: "operator:ab12".into(),
            reason: None,
            inputs: Some(r#"{"contractId":"K1","pages":3}"#.into()),
            request_hash: None,
            correlation_id: None,
            attempt: 1,
            requested_at: at("2026-11-30T10:00:00Z"),
            decided_by: None,
            decided_at: None,
            started_at: Some(at("2026-11-30T10:00:01Z")),
            completed_at: (status == RunStatus::Success).then(|| at("2026-11-30T10:00:03.5Z")),
            cancel_requested_by: None,
            sla_breached: false,
            error_class: None,
            error: None,
            result: Some(r#"{"metrics":{"documentsGenerated":1,"note":"x"}}"#.into()),
            on_complete: None,
            on_fail: None,
            callback_delivered_at: None,
            progress: None,
            awaiting_continue_since: None,
        }
    }

    #[test]
    fn announcements_are_functions_of_the_run() {
        let started = announcement(&run(RunStatus::Running), Phase::Started).unwrap().body("control_tower");
        assert_eq!(started["eventId"], "evt_run_1_started");
        assert_eq!(started["ts"], "2026-11-30T10:00:01.000000Z");
        assert_eq!(started["correlationId"], "run_1");
        assert_eq!(started["payload"]["inputs"], json!({"contractId": "K1", "pages": "3"}));
        assert!(announcement(&run(RunStatus::Running), Phase::Completed).is_none(), "not ended yet");

        let done = run(RunStatus::Success);
        let completed = announcement(&done, Phase::Completed).unwrap().body("control_tower");
        assert_eq!(completed["eventId"], "evt_run_1_completed");
        assert_eq!(completed["payload"]["durationMs"], 2500);
        assert_eq!(completed["payload"]["metrics"], json!({"documentsGenerated": 1}));
        assert_eq!(announcement(&done, Phase::Completed).unwrap().body("control_tower"), completed, "the same bytes");

        let never_started = Run { started_at: None, ..run(RunStatus::Cancelled) };
        assert!(announcement(&never_started, Phase::Started).is_none());
        assert!(announcement(&never_started, Phase::Completed).is_none());
    }
}
