//! The pure part of the projector: decoded events in, intended writes out. No I/O.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use ct_core::{Envelope, payload::Payload};
use ct_platform::consumer::Coordinates;
use serde_json::Value;

/// One row of `events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: String,
    pub event_type: &'static str,
    pub source: &'static str,
    pub ts: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub payload: Value,
    pub received_at: DateTime<Utc>,
    pub trace_id: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunEffect {
    Started { run_id: String, trigger: String, initiator: String, inputs: Value, at: DateTime<Utc> },
    Completed { run_id: String, status: &'static str, duration_ms: Option<i64>, metrics: Value, at: DateTime<Utc> },
}

impl RunEffect {
    pub fn run_id(&self) -> &str {
        match self {
            RunEffect::Started { run_id, .. } | RunEffect::Completed { run_id, .. } => run_id,
        }
    }
}

/// Everything one event changes, applied only if its row is new (one event, one effect).
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub row: EventRow,
    pub run: Option<RunEffect>,
    /// The system a heartbeat speaks for.
    pub heartbeat_of: Option<String>,
}

/// The writes of a batch: its effects, keeping the first occurrence of an `eventId` within it.
pub fn plan(items: &[(Coordinates, Effect)]) -> Vec<&Effect> {
    let mut seen = HashSet::with_capacity(items.len());
    items.iter().map(|(_, effect)| effect).filter(|effect| seen.insert(effect.row.event_id.as_str())).collect()
}

/// What one event read at `coordinates` would change. Computed per record as it is decoded, so
/// this work overlaps the previous batch's transaction.
pub fn effect(coordinates: &Coordinates, event: &Envelope) -> Effect {
    let row = EventRow {
        event_id: event.event_id().to_owned(),
        event_type: event.event_type().as_str(),
        source: event.source().as_str(),
        ts: event.ts(),
        correlation_id: event.correlation_id().map(str::to_owned),
        payload: event.payload_json(),
        received_at: event.ingest().received_at,
        trace_id: event.ingest().trace_id.clone(),
        topic: coordinates.topic.clone(),
        partition: coordinates.partition,
        offset: coordinates.offset,
    };
    let (run, heartbeat_of) = match event.payload() {
        // The runner's announcements of triggered runs (source `control_tower`) feed the health
        // rules; those runs are the runs read model's (`GET /runs?origin=trigger`), not listed
        // again as producers' runs. The events themselves are kept like any other.
        Payload::RunStarted(_) | Payload::RunCompleted(_) if event.source() == ct_core::Source::ControlTower => {
            (None, None)
        }
        Payload::RunStarted(r) => (
            Some(RunEffect::Started {
                run_id: r.run_id.clone(),
                trigger: r.trigger.clone(),
                initiator: r.initiator.clone(),
                inputs: serde_json::to_value(&r.inputs).unwrap_or(Value::Null),
                at: event.ts(),
            }),
            None,
        ),
        Payload::RunCompleted(r) => (
            Some(RunEffect::Completed {
                run_id: r.run_id.clone(),
                status: match r.status {
                    ct_core::payload::RunStatus::Success => "success",
                    ct_core::payload::RunStatus::Failed => "failed",
                    ct_core::payload::RunStatus::Cancelled => "cancelled",
                },
                duration_ms: r.duration_ms,
                metrics: serde_json::to_value(&r.metrics).unwrap_or(Value::Null),
                at: event.ts(),
            }),
            None,
        ),
        Payload::SystemHeartbeat(h) => (None, Some(h.system_id.clone())),
        _ => (None, None),
    };
    Effect { row, run, heartbeat_of }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use ct_core::{envelope::ParseOptions, redact::Redactor};
    use serde_json::json;

    use super::*;

    fn event(body: Value) -> Envelope {
        let redactor = Redactor::new("t");
        let options =
            ParseOptions { redactor: &redactor, received_at: Utc::now(), max_future_skew: Duration::minutes(5) };
        Envelope::parse(&body, &options).unwrap().0
    }

    fn at(offset: i64) -> Coordinates {
        Coordinates { topic: "t".into(), partition: 0, offset }
    }

    #[test]
    fn duplicates_in_a_batch_keep_the_first_and_runs_and_heartbeats_are_planned() {
        let started =
            event(json!({"eventId":"e1","type":"ct.run.started","ts":"2025-09-27T10:00:00Z","source":"desktop",
            "payload":{"runId":"run_1","trigger":"desktop.trigger.contract","initiator":"staff-1"}}));
        let heartbeat =
            event(json!({"eventId":"e2","type":"system.heartbeat","ts":"2025-09-27T10:00:01Z","source":"portal",
            "payload":{"systemId":"portal"}}));
        let items: Vec<(Coordinates, Effect)> = [(at(0), &started), (at(1), &heartbeat), (at(2), &started)]
            .into_iter()
            .map(|(at, event)| (at.clone(), effect(&at, event)))
            .collect();
        let effects = plan(&items);
        assert_eq!(effects.len(), 2);
        assert_eq!(effects[0].row.offset, 0);
        assert!(matches!(&effects[0].run, Some(RunEffect::Started { run_id, .. }) if run_id == "run_1"));
        assert_eq!(effects[1].heartbeat_of.as_deref(), Some("portal"));
        assert_eq!(effects[1].row.payload, json!({"system_id":"portal","version":null,"uptime_s":null}));
    }

    #[test]
    fn the_runners_announcements_are_kept_as_events_but_are_not_producers_runs() {
        let announced =
            event(json!({"eventId":"e3","type":"ct.run.started","ts":"2025-09-27T10:00:00Z","source":"control_tower",
            "payload":{"runId":"run_2","trigger":"contract.regenerate","initiator":"op"}}));
        let effect = effect(&at(3), &announced);
        assert!(effect.run.is_none());
        assert_eq!((effect.row.event_id.as_str(), effect.row.source), ("e3", "control_tower"));
    }
}
