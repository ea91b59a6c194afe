//! The events side of the evaluator: what each event says about the catalogued systems (pure,
//! [`observe`]), stored as pending facts with the event's partition and offset until a clock tick
//! whose offsets cover it folds it in (`evaluator.rs`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ct_core::{
    Envelope, Payload, Source,
    catalogue::{Catalogue, Ownership},
    payload::{RunStatus, Severity},
};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};
use sqlx::PgPool;

use crate::evaluator::Evaluator;

/// One event as seen by one system its source owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub system_id: String,
    pub event_id: String,
    pub ts: DateTime<Utc>,
    /// Intake latency: `ingest.receivedAt - ts`, whole seconds, never negative.
    pub latency_s: i64,
    /// A heartbeat of this system from its owner.
    pub heartbeat: bool,
    /// A `backend.fn.error` of severity high or critical.
    pub high_error: bool,
    /// A run of the system: started (with its job, the run's trigger) or completed.
    pub run: Option<RunFact>,
    /// What CI reported deployed, or where a branch stands (the drift rule).
    pub version: Option<VersionFact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFact {
    /// `deploy` (scope: the environment) or `head` (scope: the branch).
    pub kind: &'static str,
    pub repo: String,
    pub scope: String,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFact {
    pub run_id: String,
    pub job: Option<String>,
    /// `started`, or how it ended: `success`, `failed`, `cancelled`.
    pub status: &'static str,
}

/// A record the evaluator does not count, and why (`unknown_system`, `not_owner`, `undecodable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub reason: &'static str,
    pub system_id: String,
    pub source: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub facts: Vec<Fact>,
    pub ignored: Option<Ignored>,
}

/// What `event` says: a fact for every catalogued system its source owns (its intake latency
/// counts there), with the heartbeat flag only for the system a heartbeat names when the source
/// owns it. A heartbeat for an unknown system or another source's is ignored and counted (the
/// edge refuses both today; records from before the catalogue may still be in the log).
pub fn observe(catalogue: &Catalogue, event: &Envelope) -> Observed {
    let source = event.source();
    let mut observed = Observed::default();
    let mut beats_for = None;
    if let Payload::SystemHeartbeat(heartbeat) = event.payload() {
        match catalogue.ownership(&heartbeat.system_id, source) {
            Ownership::Owner => beats_for = Some(heartbeat.system_id.as_str()),
            Ownership::UnknownSystem => {
                observed.ignored = Some(Ignored {
                    reason: "unknown_system",
                    system_id: heartbeat.system_id.clone(),
                    source: source.as_str(),
                })
            }
            Ownership::OwnedBy(_) => {
                observed.ignored = Some(Ignored {
                    reason: "not_owner",
                    system_id: heartbeat.system_id.clone(),
                    source: source.as_str(),
                })
            }
        }
    }
    let high_error = matches!(event.payload(), Payload::BackendFnError(e) if matches!(e.severity, Severity::High | Severity::Critical));
    let run = match event.payload() {
        Payload::RunStarted(r) => {
            Some(RunFact { run_id: r.run_id.clone(), job: Some(r.trigger.clone()), status: "started" })
        }
        Payload::RunCompleted(r) => Some(RunFact {
            run_id: r.run_id.clone(),
            job: None,
            status: match r.status {
                RunStatus::Success => "success",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
            },
        }),
        _ => None,
    };
    let version = match event.payload() {
        Payload::CiDeployCompleted(d) => Some(VersionFact {
            kind: "deploy",
            repo: d.repo.clone(),
            scope: d.environment.clone(),
            commit: d.commit.clone(),
        }),
        Payload::CiBranchUpdated(b) => {
            Some(VersionFact { kind: "head", repo: b.repo.clone(), scope: b.branch.clone(), commit: b.commit.clone() })
        }
        _ => None,
    };
    let latency_s = (event.ingest().received_at - event.ts()).num_seconds().max(0);
    for system in catalogue.systems.iter().filter(|s| s.owner == source) {
        observed.facts.push(Fact {
            system_id: system.id.clone(),
            event_id: event.event_id().to_owned(),
            ts: event.ts(),
            latency_s,
            heartbeat: beats_for == Some(system.id.as_str()),
            high_error,
            run: run.clone(),
            version: version.clone(),
        });
    }
    // Triggered runs, announced by the runner: they belong to the platform (no catalogued system,
    // so no status), and feed only the run rules (the run-SLA alert, the runs SLO).
    if source == Source::ControlTower
        && let Some(run) = run
    {
        observed.facts.push(Fact {
            system_id: crate::alerts::PLATFORM_SYSTEM.to_owned(),
            event_id: event.event_id().to_owned(),
            ts: event.ts(),
            latency_s,
            heartbeat: false,
            high_error: false,
            run: Some(run),
            version: None,
        });
    }
    observed
}

/// The consumer of the events topic.
pub struct Facts {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub evaluator: std::sync::Arc<Evaluator>,
}

impl Pipeline for Facts {
    type Item = Observed;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Observed, ProcessError>> {
        Box::pin(async move {
            // The projector owns the dead letters of the events topic (and their replays through
            // ct.retry.v1); a record it cannot decode, this reader cannot either, so it is counted
            // here rather than parked a second time. An unreachable registry still pauses.
            let undecodable = || Observed {
                facts: Vec::new(),
                ignored: Some(Ignored { reason: "undecodable", system_id: String::new(), source: "" }),
            };
            Ok(match self.registry.decode_event_or_skip(record).await? {
                Some(event) => observe(&self.evaluator.systems.catalogue, &event),
                None => undecodable(),
            })
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(self.evaluator.stored_progress(&self.pool, topic))
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Observed)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await.map_err(classify)?;
            let mut columns = FactColumns::default();
            let mut ignored: BTreeMap<(&'static str, &str, &'static str), i64> = BTreeMap::new();
            for (at, observed) in items {
                for fact in &observed.facts {
                    columns.push(at, fact);
                }
                if let Some(i) = &observed.ignored {
                    *ignored.entry((i.reason, i.system_id.as_str(), i.source)).or_default() += 1;
                    metrics::counter!("ct_health_ignored_records_total", "reason" => i.reason).increment(1);
                }
            }
            sqlx::query(
                "INSERT INTO pending_facts (\"partition\", \"offset\", system_id, event_id, ts, latency_s, heartbeat, high_error,
                     run_id, job, run_status, version_kind, repo, scope, commit_sha)
                 SELECT * FROM UNNEST($1::int[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], $7::bool[],
                     $8::bool[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(&columns.partition)
            .bind(&columns.offset)
            .bind(&columns.system_id)
            .bind(&columns.event_id)
            .bind(&columns.ts)
            .bind(&columns.latency_s)
            .bind(&columns.heartbeat)
            .bind(&columns.high_error)
            .bind(&columns.run_id)
            .bind(&columns.job)
            .bind(&columns.run_status)
            .bind(&columns.version_kind)
            .bind(&columns.repo)
            .bind(&columns.scope)
            .bind(&columns.commit)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            // Key order, so that members applying partitions side by side never deadlock.
            for ((reason, system_id, source), records) in ignored {
                sqlx::query(
                    "INSERT INTO ignored (reason, system_id, source, records) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (reason, system_id, source) DO UPDATE SET records = ignored.records + EXCLUDED.records",
                )
                .bind(reason)
                .bind(system_id)
                .bind(source)
                .bind(records)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            self.evaluator.finish(tx, topic, progress).await
        })
    }
}

#[derive(Default)]
struct FactColumns<'a> {
    partition: Vec<i32>,
    offset: Vec<i64>,
    system_id: Vec<&'a str>,
    event_id: Vec<&'a str>,
    ts: Vec<DateTime<Utc>>,
    latency_s: Vec<i64>,
    heartbeat: Vec<bool>,
    high_error: Vec<bool>,
    run_id: Vec<Option<&'a str>>,
    job: Vec<Option<&'a str>>,
    run_status: Vec<Option<&'static str>>,
    version_kind: Vec<Option<&'static str>>,
    repo: Vec<Option<&'a str>>,
    scope: Vec<Option<&'a str>>,
    commit: Vec<Option<&'a str>>,
}

impl<'a> FactColumns<'a> {
    fn push(&mut self, at: &Coordinates, fact: &'a Fact) {
        self.partition.push(at.partition);
        self.offset.push(at.offset);
        self.system_id.push(&fact.system_id);
        self.event_id.push(&fact.event_id);
        self.ts.push(fact.ts);
        self.latency_s.push(fact.latency_s);
        self.heartbeat.push(fact.heartbeat);
        self.high_error.push(fact.high_error);
        self.run_id.push(fact.run.as_ref().map(|r| r.run_id.as_str()));
        self.job.push(fact.run.as_ref().and_then(|r| r.job.as_deref()));
        self.run_status.push(fact.run.as_ref().map(|r| r.status));
        self.version_kind.push(fact.version.as_ref().map(|v| v.kind));
        self.repo.push(fact.version.as_ref().map(|v| v.repo.as_str()));
        self.scope.push(fact.version.as_ref().map(|v| v.scope.as_str()));
        self.commit.push(fact.version.as_ref().map(|v| v.commit.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use ct_core::{envelope::ParseOptions, redact::Redactor};
    use serde_json::json;

    use super::*;

    fn catalogue() -> Catalogue {
        ct_platform::catalogue::CatalogueConfig::default().load().unwrap().catalogue.as_ref().clone()
    }

    fn event(body: serde_json::Value, received_at: &str) -> Envelope {
        let redactor = Redactor::new("t");
        let options = ParseOptions {
            redactor: &redactor,
            received_at: received_at.parse().unwrap(),
            max_future_skew: chrono::Duration::minutes(5),
        };
        Envelope::parse(&body, &options).unwrap().0
    }

    #[test]
    fn a_heartbeat_from_its_owner_is_a_heartbeat_fact_with_its_latency() {
        let beat = event(
            json!({"eventId": "h1", "type": "system.heartbeat", "ts": "2026-03-03T11:00:00Z", "source": "finance",
                   "payload": {"systemId": "finance"}}),
            "2026-03-03T11:00:07.900Z",
        );
        let observed = observe(&catalogue(), &beat);
        assert_eq!(observed.ignored, None);
        assert_eq!(observed.facts.len(), 1);
        let fact = &observed.facts[0];
        assert_eq!(
            (fact.system_id.as_str(), fact.heartbeat, fact.high_error, fact.latency_s),
            ("finance", true, false, 7)
        );
    }

    #[test]
    fn heartbeats_for_unknown_or_foreign_systems_are_ignored_and_counted() {
        let foreign = event(
            json!({"eventId": "h2", "type": "system.heartbeat", "ts": "2026-03-03T11:00:00Z", "source": "portal",
                   "payload": {"systemId": "finance"}}),
            "2026-03-03T11:00:00Z",
        );
        let observed = observe(&catalogue(), &foreign);
        assert_eq!(observed.ignored.as_ref().map(|i| i.reason), Some("not_owner"));
        assert!(observed.facts.iter().all(|f| !f.heartbeat), "no heartbeat for anyone");
        assert_eq!(observed.facts[0].system_id, "portal", "the event still counts for the portal's intake");
        let unknown = event(
            json!({"eventId": "h3", "type": "system.heartbeat", "ts": "2026-03-03T11:00:00Z", "source": "portal",
                   "payload": {"systemId": "made-up-17"}}),
            "2026-03-03T11:00:00Z",
        );
        assert_eq!(observe(&catalogue(), &unknown).ignored.map(|i| i.reason), Some("unknown_system"));
    }

    #[test]
    fn runs_are_facts_of_their_owners_system_with_the_job_they_started_for() {
        let started = event(
            json!({"eventId": "r1", "type": "ct.run.started", "ts": "2026-03-03T11:00:00Z", "source": "finance",
                   "payload": {"runId": "run-7", "trigger": "finance.export.backfill", "initiator": "ops"}}),
            "2026-03-03T11:00:00Z",
        );
        let fact = observe(&catalogue(), &started).facts.remove(0);
        assert_eq!(fact.system_id, "finance");
        assert_eq!(
            fact.run,
            Some(RunFact { run_id: "run-7".into(), job: Some("finance.export.backfill".into()), status: "started" })
        );
        let failed = event(
            json!({"eventId": "r2", "type": "ct.run.completed", "ts": "2026-03-03T11:09:00Z", "source": "finance",
                   "payload": {"runId": "run-7", "status": "failed"}}),
            "2026-03-03T11:09:00Z",
        );
        let fact = observe(&catalogue(), &failed).facts.remove(0);
        assert_eq!(fact.run, Some(RunFact { run_id: "run-7".into(), job: None, status: "failed" }));
    }

    #[test]
    fn high_and_critical_function_errors_count() {
        for (severity, high) in [("low", false), ("medium", false), ("high", true), ("critical", true)] {
            let error = event(
                json!({"eventId": "e1", "type": "backend.fn.error", "ts": "2026-03-03T11:00:00Z", "source": "backend",
                       "payload": {"fnName": "parse", "severity": severity}}),
                "2026-03-03T10:59:00Z",
            );
            let observed = observe(&catalogue(), &error);
            assert_eq!(observed.facts[0].high_error, high, "{severity}");
            assert_eq!(observed.facts[0].latency_s, 0, "a clock ahead of the edge is no negative latency");
        }
    }
}
