//! KPIs (vision §7.1), as pure rules: which events mark the two ends of each lead time, and how
//! the read API summarises what the marks give.
//!
//! | KPI | starts at | ends at | paired by |
//! |---|---|---|---|
//! | contract generation lead time | `desktop.trigger.contract` | `contract.docs.generated` | `contractId` |
//! | invoice cycle time | `excel.timesheet.ingested` | `finance.invoice.generated` | the events' `correlationId` |
//! | job failure rate per subsystem | | `ct.run.completed` (status) | the event's source |
//!
//! An end pairs with the latest start of its key at or before it, and only the first end after a
//! start counts (a second set of documents for one trigger is not a second lead time). Both are
//! functions of the set of marks, not of the order they were read in, so a rebuild gives the same
//! KPIs. Timesheet compliance comes from the timesheet gates (`crate::timesheets`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    Envelope,
    payload::{Payload, RunStatus},
};

pub const CONTRACT_LEAD_TIME: &str = "contract";
pub const INVOICE_CYCLE_TIME: &str = "invoice";
pub const RUN: &str = "run";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Start,
    End,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Start => "start",
            End::End => "end",
        }
    }
}

/// What one event says for the KPIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub kind: &'static str,
    pub key: String,
    pub end: End,
    /// The event's source (the subsystem of a run).
    pub subsystem: String,
    /// A run's status; empty for the lead times.
    pub outcome: String,
    pub at: DateTime<Utc>,
}

/// The event's mark, if it marks anything.
pub fn mark(event: &Envelope) -> Option<Mark> {
    let make = |kind, key: &str, end, outcome: &str| Mark {
        kind,
        key: key.to_owned(),
        end,
        subsystem: event.source().as_str().to_owned(),
        outcome: outcome.to_owned(),
        at: event.ts(),
    };
    match event.payload() {
        Payload::DesktopTriggerContract(c) => Some(make(CONTRACT_LEAD_TIME, &c.contract_id, End::Start, "")),
        Payload::ContractDocsGenerated(c) => Some(make(CONTRACT_LEAD_TIME, &c.contract_id, End::End, "")),
        Payload::ExcelTimesheetIngested(_) => {
            event.correlation_id().map(|id| make(INVOICE_CYCLE_TIME, id, End::Start, ""))
        }
        Payload::FinanceInvoiceGenerated(_) => {
            event.correlation_id().map(|id| make(INVOICE_CYCLE_TIME, id, End::End, ""))
        }
        Payload::RunCompleted(r) => Some(make(
            RUN,
            &r.run_id,
            End::End,
            match r.status {
                RunStatus::Success => "success",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
            },
        )),
        _ => None,
    }
}

/// How long a set of lead times took: how many, the median and the 95th percentile (nearest
/// rank), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadTimes {
    pub count: usize,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

pub fn lead_times(mut seconds: Vec<f64>) -> LeadTimes {
    seconds.sort_by(f64::total_cmp);
    let rank = |q: f64| -> Option<f64> {
        if seconds.is_empty() {
            return None;
        }
        let index = ((q * seconds.len() as f64).ceil() as usize).clamp(1, seconds.len()) - 1;
        Some(seconds[index])
    };
    LeadTimes { count: seconds.len(), p50_seconds: rank(0.5), p95_seconds: rank(0.95) }
}

/// Runs and failures: the failure rate is `None` without runs (no data is not 0 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRate {
    pub runs: i64,
    pub failed: i64,
    pub rate: Option<f64>,
}

pub fn failure_rate(runs: i64, failed: i64) -> FailureRate {
    FailureRate { runs, failed, rate: (runs > 0).then(|| failed as f64 / runs as f64) }
}

/// Weeks whose timesheets were all in by the deadline, of the weeks decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compliance {
    pub weeks: i64,
    pub complete: i64,
    pub rate: Option<f64>,
}

pub fn compliance(weeks: i64, complete: i64) -> Compliance {
    Compliance { weeks, complete, rate: (weeks > 0).then(|| complete as f64 / weeks as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_empty_is_none() {
        assert_eq!(lead_times(vec![]), LeadTimes { count: 0, p50_seconds: None, p95_seconds: None });
        let times = lead_times((1..=20).rev().map(f64::from).collect());
        assert_eq!((times.count, times.p50_seconds, times.p95_seconds), (20, Some(10.0), Some(19.0)));
        assert_eq!(lead_times(vec![7.0]).p95_seconds, Some(7.0));
    }

    #[test]
    fn rates_say_when_there_is_nothing_to_rate() {
        assert_eq!(failure_rate(0, 0).rate, None);
        assert_eq!(failure_rate(4, 1).rate, Some(0.25));
        assert_eq!(compliance(4, 3).rate, Some(0.75));
    }

    #[test]
    fn each_kpi_event_marks_its_end_and_others_nothing() {
        let redactor = crate::redact::Redactor::new("t");
        let options = crate::envelope::ParseOptions {
            redactor: &redactor,
            received_at: "2026-11-03T00:00:00Z".parse().unwrap(),
            max_future_skew: chrono::Duration::minutes(5),
        };
        let event = |body: serde_json::Value| Envelope::parse(&body, &options).expect("a valid event").0;
        let start = mark(&event(serde_json::json!({"eventId": "a", "type": "desktop.trigger.contract",
            "ts": "2026-11-02T09:00:00Z", "source": "desktop", "payload": {"contractorId": "C1", "contractId": "K1"}})))
        .unwrap();
        assert_eq!((start.kind, start.key.as_str(), start.end), (CONTRACT_LEAD_TIME, "K1", End::Start));
        let run = mark(&event(serde_json::json!({"eventId": "b", "type": "ct.run.completed",
            "ts": "2026-11-02T09:00:00Z", "source": "desktop", "payload": {"runId": "r1", "status": "failed"}})))
        .unwrap();
        assert_eq!((run.kind, run.subsystem.as_str(), run.outcome.as_str()), (RUN, "desktop", "failed"));
        let uncorrelated = event(serde_json::json!({"eventId": "c", "type": "finance.invoice.generated",
            "ts": "2026-11-02T09:00:00Z", "source": "finance", "payload": {"invoiceId": "I1", "period": "2026-10", "total": 1}}));
        assert_eq!(mark(&uncorrelated), None, "an invoice pairs by correlation id only");
        let heartbeat = event(serde_json::json!({"eventId": "d", "type": "system.heartbeat",
            "ts": "2026-11-02T09:00:00Z", "source": "portal", "payload": {"systemId": "portal"}}));
        assert_eq!(mark(&heartbeat), None);
    }
}
