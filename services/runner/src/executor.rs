//! The executor: turns queued runs into calls to their trigger's target, with retries, timeouts
//! and cancels, writing every step to `ct.runs.v1`.
//!
//! Exactly one effect: every attempt of a run sends the same `Idempotency-Key` (the run id), so a
//! target that honours it applies the effect once however often the runner retries or restarts.
//! A run is executed by whoever holds its Postgres advisory lock (all of an instance's locks are on
//! one connection of its own: a runner that dies closes it, and the next scan of any runner
//! resumes the run as a new attempt).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use ct_core::runs::{ChainMove, RecordKind, Run, RunRecord, RunStatus, TriggerSpec, Triggers};
use ct_platform::audit::RecordWriter;
use serde::Deserialize;
use serde_json::json;
use sqlx::{PgPool, Row};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::model;

/// The most of a target's answer kept as the run's result.
const MAX_RESULT_BYTES: usize = 8 * 1024;
/// How often a waiter looks at the model when no notification came (one may be lost while the
/// listener reconnects, or the model runs in another instance that notifies another database).
const FALLBACK_LOOK: Duration = Duration::from_millis(500);
/// The least time between two scans, however many batches the model commits.
const SCAN_SPACING: Duration = Duration::from_millis(20);

/// What the model changed, from its `pg_notify` per committed batch: a counter for every
/// change (the scan waits on it) and one per run someone waits for.
#[derive(Default)]
pub struct Changes {
    all: watch::Sender<u64>,
    runs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Changes {
    fn notify(&self, payload: &str) {
        self.all.send_modify(|n| *n += 1);
        let runs = self.runs.lock().expect("not poisoned");
        if payload == model::EVERY_RUN {
            runs.values().for_each(|run| run.send_modify(|n| *n += 1));
        } else {
            payload.split(',').filter_map(|id| runs.get(id)).for_each(|run| run.send_modify(|n| *n += 1));
        }
    }

    /// A receiver that sees every later change of any run.
    pub fn watch_all(&self) -> watch::Receiver<u64> {
        self.all.subscribe()
    }

    /// A receiver that sees every later change of `run_id`.
    fn watch(&self, run_id: &str) -> watch::Receiver<u64> {
        self.runs.lock().expect("not poisoned").entry(run_id.to_owned()).or_default().subscribe()
    }

    fn forget(&self, run_id: &str) {
        self.runs.lock().expect("not poisoned").remove(run_id);
    }
}

/// Waits for the next change `changed` announces, or `fallback`, whichever comes first.
async fn next_change(changed: &mut watch::Receiver<u64>, fallback: Duration) {
    // A sender dropped (the run's own task ended and forgot it) answers at once: wait instead.
    if let Ok(Err(_)) = tokio::time::timeout(fallback, changed.changed()).await {
        tokio::time::sleep(fallback).await;
    }
}

/// Listens to the model's notifications until `shutdown` (sqlx reconnects a lost listener; what
/// was notified meanwhile is covered by the waiters' fallback look).
pub async fn listen(pool: PgPool, channel: String, changes: Arc<Changes>, shutdown: CancellationToken) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            loop {
                let notification = listener.recv().await?;
                changes.notify(notification.payload());
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = listener => {
                if let Err(error) = outcome {
                    tracing::warn!(error = %error, "The runs listener failed; reconnecting in a second.");
                }
            }
        }
        changes.notify(model::EVERY_RUN);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecutorConfig {
    pub enabled: bool,
    pub poll_interval_ms: u64,
    pub max_concurrent: usize,
    pub observe_timeout_ms: u64,
    pub actor: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CallbacksConfig {
    pub secret: secrecy::SecretString,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the runs read model: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("writing to the runs topic: {0}")]
    Write(#[from] ct_platform::audit::WriteError),
    #[error("encoding a run record: {0}")]
    Encode(#[from] ct_core::avro::CodecError),
    #[error("the read model did not show run {0}'s record in time")]
    NotObserved(String),
}

pub struct Executor {
    pool: PgPool,
    writer: RecordWriter,
    triggers: Arc<Triggers>,
    http: reqwest::Client,
    config: ExecutorConfig,
    callbacks: CallbacksConfig,
    /// Callbacks that failed: per run, the tries so far and when to try again.
    retries: Mutex<HashMap<String, (u32, Instant)>>,
    permits: Arc<Semaphore>,
    /// Runs this instance executes now.
    busy: Mutex<HashSet<String>>,
    /// Expiries and SLA breaches written and not yet seen in the model (so one scan writes one).
    marked: Mutex<HashSet<(String, RecordKind)>>,
    pub changes: Arc<Changes>,
    /// The connection holding the locks of the runs this instance executes.
    locks: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    /// The attempt this instance last started per run, until the run ends: when the model was
    /// slow to show it, the next claim waits for it instead of writing it again.
    started: Mutex<std::collections::HashMap<String, i32>>,
}

/// What one call to a target came to.
enum Outcome {
    Success {
        status: u16,
        body: String,
        duration: Duration,
    },
    /// 202: the target will finish the attempt through `POST /api/v1/webhooks/continue`.
    Accepted {
        status: u16,
        duration: Duration,
    },
    Failure {
        class: &'static str,
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
        duration: Duration,
    },
    Cancelled,
}

impl Executor {
    pub fn new(
        pool: PgPool,
        writer: RecordWriter,
        triggers: Arc<Triggers>,
        config: ExecutorConfig,
        callbacks: CallbacksConfig,
    ) -> Result<Executor, reqwest::Error> {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Executor {
            pool,
            writer,
            triggers,
            http,
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            callbacks,
            retries: Mutex::default(),
            busy: Mutex::default(),
            marked: Mutex::default(),
            started: Mutex::default(),
            changes: Arc::default(),
            locks: tokio::sync::Mutex::new(None),
        })
    }

    async fn write(&self, record: &RunRecord) -> Result<(), ExecError> {
        let datum = ct_core::runs::encode_record(record)?;
        self.writer.write(&record.run_id, &datum).await?;
        metrics::counter!("ct_runner_records_total", "kind" => record.kind.as_str()).increment(1);
        Ok(())
    }

    /// Writes a run's last record and waits until the model shows the run ended, so no scan
    /// claims it again meanwhile (the lock is released when this returns).
    async fn finish(&self, record: &RunRecord) -> Result<(), ExecError> {
        self.write(record).await?;
        self.observe(&record.run_id, |r| r.status.is_final()).await.map(drop)
    }

    fn record(&self, run: &Run, kind: RecordKind, attempt: i32) -> RunRecord {
        RunRecord { attempt, ..RunRecord::new(&run.run_id, kind, Utc::now(), &self.config.actor, &run.trigger) }
    }

    /// One pass over the open runs: claims the queued and orphaned running ones, and writes
    /// expired approvals and breached SLAs.
    async fn scan(self: &Arc<Self>) -> Result<(), ExecError> {
        let rows = sqlx::query(
            "SELECT run_id, trigger, status, requested_at, started_at, sla_breached, awaiting_continue_since,
                    cancel_requested_by IS NOT NULL AS cancel_requested FROM trigger_runs
             WHERE status IN ('awaiting_approval', 'queued', 'running') ORDER BY requested_at LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = Utc::now();
        let mut still_open = HashSet::new();
        for row in rows {
            let run_id: String = row.get("run_id");
            let trigger: String = row.get("trigger");
            let status = RunStatus::parse(row.get("status")).unwrap_or(RunStatus::Failed);
            let spec = self.triggers.triggers.get(&trigger);
            let age = |at: chrono::DateTime<Utc>| (now - at).to_std().unwrap_or_default();
            let mark = match (status, spec) {
                (RunStatus::AwaitingApproval, Some(TriggerSpec { approval: Some(approval), .. }))
                    if age(row.get("requested_at")) > Duration::from_secs(approval.timeout_s) =>
                {
                    Some((RecordKind::ApprovalExpired, format!("no approver within {} s", approval.timeout_s)))
                }
                (RunStatus::Running, Some(spec))
                    if !row.get::<bool, _>("sla_breached")
                        && row
                            .get::<Option<chrono::DateTime<Utc>>, _>("started_at")
                            .is_some_and(|at| age(at) > Duration::from_secs(spec.sla_s)) =>
                {
                    Some((RecordKind::SlaBreached, format!("still running after the SLA of {} s", spec.sla_s)))
                }
                _ => None,
            };
            if let Some((kind, reason)) = mark {
                still_open.insert((run_id.clone(), kind));
                if self.marked.lock().expect("not poisoned").insert((run_id.clone(), kind)) {
                    let record = RunRecord {
                        reason: Some(reason),
                        ..RunRecord::new(&run_id, kind, now, &self.config.actor, &trigger)
                    };
                    self.write(&record).await?;
                }
            }
            // A run whose target will continue it is left alone until it is cancelled or waited
            // too long.
            let waiting = row
                .get::<Option<chrono::DateTime<Utc>>, _>("awaiting_continue_since")
                .is_some_and(|since| spec.is_none_or(|spec| age(since) <= Duration::from_secs(spec.timeout_s)))
                && !row.get::<bool, _>("cancel_requested");
            if matches!(status, RunStatus::Queued | RunStatus::Running)
                && !waiting
                && self.permits.available_permits() > 0
            {
                self.claim(run_id).await?;
            }
        }
        self.marked.lock().expect("not poisoned").retain(|key| still_open.contains(key));
        self.callbacks_owed().await
    }

    /// Delivers the callbacks of ended runs that nobody acknowledged yet (each in its own task,
    /// under the run's lock, so one runner delivers it).
    async fn callbacks_owed(self: &Arc<Self>) -> Result<(), ExecError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM trigger_runs WHERE callback_delivered_at IS NULL
               AND (on_complete IS NOT NULL OR on_fail IS NOT NULL) AND status IN ('success', 'failed', 'cancelled')
             ORDER BY completed_at LIMIT 100",
            model::RUN_COLUMNS
        ))
        .fetch_all(&self.pool)
        .await?;
        let now = Instant::now();
        for run in rows.iter().map(model::run_from_row) {
            let Some(url) = run.callback().map(str::to_owned) else { continue };
            let due = self.retries.lock().expect("not poisoned").get(&run.run_id).is_none_or(|(_, at)| *at <= now);
            if !due || self.busy.lock().expect("not poisoned").contains(&run.run_id) {
                continue;
            }
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else { return Ok(()) };
            if !self.advisory("SELECT pg_try_advisory_lock(hashtext('ct-runner'), hashtext($1))", &run.run_id).await? {
                continue;
            }
            self.busy.lock().expect("not poisoned").insert(run.run_id.clone());
            let executor = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(error) = executor.deliver(&run, &url).await {
                    tracing::warn!(run_id = run.run_id, error = %error, "Callback not recorded; retrying.");
                }
                let unlock = "SELECT pg_advisory_unlock(hashtext('ct-runner'), hashtext($1))";
                if let Err(error) = executor.advisory(unlock, &run.run_id).await {
                    tracing::warn!(run_id = run.run_id, error = %error, "Releasing a run's lock failed.");
                }
                executor.changes.forget(&run.run_id);
                executor.busy.lock().expect("not poisoned").remove(&run.run_id);
                drop(permit);
            });
        }
        Ok(())
    }

    /// One try of `run`'s callback to `url`: signed (Standard Webhooks); a 2xx is recorded as
    /// `CALLBACK_DELIVERED`, anything else waits for the next try.
    async fn deliver(&self, run: &Run, url: &str) -> Result<(), ExecError> {
        let result: Option<serde_json::Value> = run.result.as_deref().and_then(|r| serde_json::from_str(r).ok());
        let body = json!({
            "runId": run.run_id,
            "trigger": run.trigger,
            "status": run.status.as_str(),
            "attempt": run.attempt,
            "correlationId": run.correlation_id,
            "completedAt": run.completed_at,
            "error": run.error_class.as_ref().map(|class| json!({"class": class, "message": run.error})),
            "result": result,
        })
        .to_string();
        let id = format!("{}.{}", run.run_id, run.status.as_str());
        let timestamp = Utc::now().timestamp();
        let secret = secrecy::ExposeSecret::expose_secret(&self.callbacks.secret);
        let signature = ct_core::signature::standard_webhooks_signature(secret, &id, timestamp, body.as_bytes());
        let answer = self
            .http
            .post(url)
            .timeout(Duration::from_millis(self.callbacks.timeout_ms))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let status = match answer {
            Ok(response) if response.status().is_success() => response.status().as_u16(),
            failed => {
                let what = failed.map_or_else(|e| e.to_string(), |r| format!("answered {}", r.status()));
                let mut retries = self.retries.lock().expect("not poisoned");
                let tries = retries.get(&run.run_id).map_or(1, |(tries, _)| tries + 1);
                let wait = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(self.callbacks.backoff_base_ms))
                    .with_max_delay(Duration::from_millis(self.callbacks.backoff_max_ms))
                    .with_jitter()
                    .without_max_times()
                    .build()
                    .nth(usize::try_from(tries - 1).unwrap_or(0))
                    .unwrap_or(Duration::from_millis(self.callbacks.backoff_max_ms));
                tracing::debug!(run_id = run.run_id, tries, what, "Callback not acknowledged.");
                metrics::counter!("ct_runner_callback_failures_total").increment(1);
                retries.insert(run.run_id.clone(), (tries, Instant::now() + wait));
                return Ok(());
            }
        };
        let record = RunRecord {
            http_status: Some(i32::from(status)),
            reason: Some(format!("{url} acknowledged")),
            ..self.record(run, RecordKind::CallbackDelivered, 0)
        };
        self.write(&record).await?;
        self.observe(&run.run_id, |r| r.callback_delivered_at.is_some()).await?;
        self.retries.lock().expect("not poisoned").remove(&run.run_id);
        Ok(())
    }

    /// Starts executing `run_id` unless this instance already is, has no room, or another
    /// runner holds the run's lock.
    async fn claim(self: &Arc<Self>, run_id: String) -> Result<(), ExecError> {
        if self.busy.lock().expect("not poisoned").contains(&run_id) {
            return Ok(());
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else { return Ok(()) };
        if !self.advisory("SELECT pg_try_advisory_lock(hashtext('ct-runner'), hashtext($1))", &run_id).await? {
            return Ok(());
        }
        self.busy.lock().expect("not poisoned").insert(run_id.clone());
        let executor = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = executor.execute(&run_id).await {
                tracing::warn!(run_id, error = %error, "Run paused; the next scan resumes it.");
            }
            let unlock = "SELECT pg_advisory_unlock(hashtext('ct-runner'), hashtext($1))";
            if let Err(error) = executor.advisory(unlock, &run_id).await {
                tracing::warn!(run_id, error = %error, "Releasing a run's lock failed; its connection was closed.");
            }
            if model::load(&executor.pool, &run_id).await.is_ok_and(|run| run.is_none_or(|r| r.status.is_final())) {
                executor.started.lock().expect("not poisoned").remove(&run_id);
            }
            executor.changes.forget(&run_id);
            executor.busy.lock().expect("not poisoned").remove(&run_id);
            drop(permit);
        });
        Ok(())
    }

    /// Runs `sql` (taking or releasing a run's session lock) on the lock connection: one per
    /// executor, never returned to the pool, so the locks die with it (a crashed runner's runs
    /// are free at once). A failed connection is dropped, which releases every lock it held,
    /// and the next call opens another.
    async fn advisory(&self, sql: &str, run_id: &str) -> Result<bool, ExecError> {
        let mut connection = self.locks.lock().await;
        if connection.is_none() {
            *connection = Some(self.pool.acquire().await?.detach());
        }
        let outcome = sqlx::query_scalar(sql).bind(run_id).fetch_one(connection.as_mut().expect("opened above")).await;
        if outcome.is_err() {
            *connection = None;
        }
        Ok(outcome?)
    }

    async fn execute(&self, run_id: &str) -> Result<(), ExecError> {
        loop {
            let Some(run) = model::load(&self.pool, run_id).await? else { return Ok(()) };
            if !matches!(run.status, RunStatus::Queued | RunStatus::Running) {
                return Ok(());
            }
            let Some(spec) = self.triggers.triggers.get(&run.trigger) else {
                let mut record = self.record(&run, RecordKind::AttemptStarted, run.attempt + 1);
                if run.status == RunStatus::Queued {
                    self.write(&record).await?;
                    self.observe(run_id, |r| r.attempt == record.attempt || r.status.is_final()).await?;
                }
                record.kind = RecordKind::Failed;
                record.error_class = Some("unknown_trigger".into());
                record.reason = Some(format!("`{}` is not in this runner's allow-list", run.trigger));
                return self.finish(&record).await;
            };
            if !spec.steps.is_empty() {
                return self.run_chain(run, spec).await;
            }
            if run.cancel_requested_by.is_some() {
                return self.cancel(&run, spec).await;
            }
            if let Some(since) = run.awaiting_continue_since
                && run.status == RunStatus::Running
            {
                if (Utc::now() - since).to_std().unwrap_or_default() <= Duration::from_secs(spec.timeout_s) {
                    return Ok(());
                }
                let record = RunRecord {
                    error_class: Some("timeout".into()),
                    reason: Some(format!("no continuation within {} s of the target's 202", spec.timeout_s)),
                    ..self.record(&run, RecordKind::Failed, run.attempt)
                };
                return self.finish(&record).await;
            }
            let attempt = run.attempt + 1;
            if attempt > spec.retry.attempts {
                let record = RunRecord {
                    error_class: Some("attempts_exhausted".into()),
                    reason: Some(format!(
                        "all {} attempts were started; the last one's outcome is unknown",
                        run.attempt
                    )),
                    ..self.record(&run, RecordKind::Failed, run.attempt)
                };
                return self.finish(&record).await;
            }
            let written = self.started.lock().expect("not poisoned").get(run_id) == Some(&attempt);
            if !written {
                let mut started = self.record(&run, RecordKind::AttemptStarted, attempt);
                if run.status == RunStatus::Running {
                    started.reason = Some(format!("attempt {} was interrupted (runner restart); resumed", run.attempt));
                }
                self.write(&started).await?;
                self.started.lock().expect("not poisoned").insert(run_id.to_owned(), attempt);
            }
            let run = self
                .observe(run_id, |r| r.attempt >= attempt || r.status.is_final() || r.cancel_requested_by.is_some())
                .await?;
            if run.attempt != attempt || run.status != RunStatus::Running {
                continue;
            }
            match self.call(spec, &run, attempt).await {
                Outcome::Success { status, body, duration } => {
                    let record = RunRecord {
                        http_status: Some(i32::from(status)),
                        duration_ms: Some(millis(duration)),
                        result: Some(body),
                        ..self.record(&run, RecordKind::Succeeded, attempt)
                    };
                    metrics::counter!("ct_runner_runs_total", "outcome" => "success").increment(1);
                    return self.finish(&record).await;
                }
                Outcome::Cancelled => return self.cancel(&run, spec).await,
                Outcome::Accepted { status, duration } => {
                    let record = RunRecord {
                        http_status: Some(i32::from(status)),
                        duration_ms: Some(millis(duration)),
                        reason: Some("the target accepted the attempt and will continue it".into()),
                        ..self.record(&run, RecordKind::AwaitingContinue, attempt)
                    };
                    self.write(&record).await?;
                    self.observe(run_id, |r| r.awaiting_continue_since.is_some() || r.status.is_final()).await?;
                    return Ok(());
                }
                Outcome::Failure { class, status, message, retry_after, duration } => {
                    let last = attempt >= spec.retry.attempts || spec.retry.non_retryable.iter().any(|c| c == class);
                    let kind = if last { RecordKind::Failed } else { RecordKind::AttemptFailed };
                    let record = RunRecord {
                        error_class: Some(class.to_owned()),
                        http_status: status.map(i32::from),
                        duration_ms: Some(millis(duration)),
                        reason: Some(message),
                        ..self.record(&run, kind, attempt)
                    };
                    if last {
                        metrics::counter!("ct_runner_runs_total", "outcome" => "failed").increment(1);
                        return self.finish(&record).await;
                    }
                    self.write(&record).await?;
                    let delay = backoff(spec, attempt).max(retry_after.unwrap_or_default());
                    if self.cancelled_within(run_id, delay).await? {
                        let run = model::load(&self.pool, run_id).await?.unwrap_or(run);
                        return self.cancel(&run, spec).await;
                    }
                }
            }
        }
    }

    /// A chain: each step's child run in order (requested by the runner, executed like any run),
    /// skipped when its condition does not hold, the chain failed by a failed step unless the
    /// step says continue. Child ids are derived from the chain's, so a resumed chain walks the
    /// same children again without starting them twice.
    async fn run_chain(&self, mut run: Run, spec: &TriggerSpec) -> Result<(), ExecError> {
        if run.status == RunStatus::Queued {
            if run.cancel_requested_by.is_some() {
                return Ok(());
            }
            self.write(&self.record(&run, RecordKind::AttemptStarted, run.attempt + 1)).await?;
            let attempt = run.attempt + 1;
            run = self
                .observe(&run.run_id, |r| {
                    r.attempt >= attempt || r.status.is_final() || r.cancel_requested_by.is_some()
                })
                .await?;
            if run.status != RunStatus::Running {
                return Ok(());
            }
        }
        let mut results = std::collections::BTreeMap::new();
        let mut outcomes = serde_json::Map::new();
        let mut next = ChainMove::Run(0);
        while let ChainMove::Run(index) = next {
            let step = &spec.steps[index];
            let child_id = ct_core::runs::child_run_id(&run.run_id, &step.name);
            if model::load(&self.pool, &child_id).await?.is_none() {
                if step.when.as_ref().is_some_and(|when| !when.holds(&results)) {
                    outcomes.insert(step.name.clone(), json!("skipped"));
                    next = if index + 1 < spec.steps.len() { ChainMove::Run(index + 1) } else { ChainMove::Succeed };
                    continue;
                }
                if run.cancel_requested_by.is_none() {
                    let request = RunRecord {
                        inputs: run.inputs.clone(),
                        correlation_id: run.correlation_id.clone(),
                        reason: Some(format!("step `{}` of {}", step.name, run.run_id)),
                        ..RunRecord::new(
                            &child_id,
                            RecordKind::Requested,
                            Utc::now(),
                            &self.config.actor,
                            &step.trigger,
                        )
                    };
                    self.write(&request).await?;
                }
            }
            let Some(child) = self.child_ended(&run.run_id, &child_id).await? else {
                // The chain was cancelled: so is the step under way, then the chain.
                let cancel = RunRecord {
                    reason: Some(format!("its chain {} was cancelled", run.run_id)),
                    ..RunRecord::new(
                        &child_id,
                        RecordKind::CancelRequested,
                        Utc::now(),
                        &self.config.actor,
                        &step.trigger,
                    )
                };
                self.write(&cancel).await?;
                let run = model::load(&self.pool, &run.run_id).await?.unwrap_or(run);
                return self.cancel(&run, spec).await;
            };
            outcomes.insert(step.name.clone(), json!(child.status.as_str()));
            let succeeded = child.status == RunStatus::Success;
            if succeeded {
                let result = child.result.as_deref().and_then(|r| serde_json::from_str(r).ok());
                results.insert(step.name.clone(), result.unwrap_or(serde_json::Value::Null));
            }
            next = ct_core::runs::after_step(&spec.steps, index, succeeded);
            if next == ChainMove::Fail {
                let record = RunRecord {
                    error_class: Some("step_failed".into()),
                    reason: Some(format!("step `{}` ended {}", step.name, child.status.as_str())),
                    result: Some(json!({ "steps": outcomes }).to_string()),
                    ..self.record(&run, RecordKind::Failed, run.attempt)
                };
                metrics::counter!("ct_runner_runs_total", "outcome" => "failed").increment(1);
                return self.finish(&record).await;
            }
        }
        let record = RunRecord {
            result: Some(json!({ "steps": outcomes }).to_string()),
            ..self.record(&run, RecordKind::Succeeded, run.attempt)
        };
        metrics::counter!("ct_runner_runs_total", "outcome" => "success").increment(1);
        self.finish(&record).await
    }

    /// The child run once it has ended, or `None` as soon as its chain is to be cancelled.
    async fn child_ended(&self, chain_id: &str, child_id: &str) -> Result<Option<Run>, ExecError> {
        let (mut chain_changed, mut child_changed) = (self.changes.watch(chain_id), self.changes.watch(child_id));
        loop {
            if model::load(&self.pool, chain_id).await?.is_some_and(|chain| chain.cancel_requested_by.is_some()) {
                return Ok(None);
            }
            if let Some(child) = model::load(&self.pool, child_id).await?
                && child.status.is_final()
            {
                return Ok(Some(child));
            }
            tokio::select! {
                () = next_change(&mut chain_changed, FALLBACK_LOOK) => {}
                () = next_change(&mut child_changed, FALLBACK_LOOK) => {}
            }
        }
    }

    /// Tells the target (when it can be told) and ends the run as cancelled.
    async fn cancel(&self, run: &Run, spec: &TriggerSpec) -> Result<(), ExecError> {
        if let Some(url) = spec.target.as_ref().and_then(|t| t.cancel_url.as_ref()) {
            let told = self
                .http
                .post(url)
                .timeout(Duration::from_secs(5))
                .header("idempotency-key", &run.run_id)
                .json(&json!({"runId": run.run_id}))
                .send()
                .await;
            if let Err(error) = told.and_then(|r| r.error_for_status()) {
                tracing::warn!(run_id = run.run_id, error = %error, "The target was not told of the cancel.");
            }
        }
        let record = RunRecord {
            reason: Some(format!("cancelled by {}", run.cancel_requested_by.as_deref().unwrap_or("a person"))),
            ..self.record(run, RecordKind::Cancelled, run.attempt)
        };
        metrics::counter!("ct_runner_runs_total", "outcome" => "cancelled").increment(1);
        self.finish(&record).await
    }

    /// One attempt: the target's answer, or `Cancelled` as soon as the model shows a cancel.
    async fn call(&self, spec: &TriggerSpec, run: &Run, attempt: i32) -> Outcome {
        let inputs: serde_json::Value =
            run.inputs.as_deref().and_then(|text| serde_json::from_str(text).ok()).unwrap_or(json!({}));
        let body = json!({
            "runId": run.run_id,
            "attempt": attempt,
            "trigger": run.trigger,
            "inputs": inputs,
            "correlationId": run.correlation_id,
        });
        let started = Instant::now();
        let request = self
            .http
            .post(spec.target.as_ref().map_or("", |t| t.url.as_str()))
            .timeout(Duration::from_secs(spec.timeout_s))
            .header("idempotency-key", &run.run_id)
            .header("x-ct-attempt", attempt.to_string())
            .json(&body)
            .send();
        let response = tokio::select! {
            response = request => response,
            () = self.cancel_requested(&run.run_id) => return Outcome::Cancelled,
        };
        let failure = |class, status, message, retry_after| Outcome::Failure {
            class,
            status,
            message,
            retry_after,
            duration: started.elapsed(),
        };
        let response = match response {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return failure("timeout", None, format!("no answer within {} s", spec.timeout_s), None);
            }
            Err(error) => return failure("connect", None, format!("{error}"), None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match response.text().await {
            Ok(text) => truncate(text),
            Err(error) => {
                return failure("connect", Some(status.as_u16()), format!("reading the answer: {error}"), None);
            }
        };
        if status == reqwest::StatusCode::ACCEPTED {
            return Outcome::Accepted { status: status.as_u16(), duration: started.elapsed() };
        }
        if status.is_success() {
            return Outcome::Success { status: status.as_u16(), body: text, duration: started.elapsed() };
        }
        let class = match status.as_u16() {
            429 => "http_429",
            408 => "timeout",
            400..=499 => "http_4xx",
            _ => "http_5xx",
        };
        failure(class, Some(status.as_u16()), format!("the target answered {status}: {text}"), retry_after)
    }

    /// Resolves once the model shows a cancel request for `run_id` (never, if none comes).
    async fn cancel_requested(&self, run_id: &str) {
        let mut changed = self.changes.watch(run_id);
        loop {
            if let Ok(Some(run)) = model::load(&self.pool, run_id).await
                && (run.cancel_requested_by.is_some() || run.status.is_final())
            {
                return;
            }
            next_change(&mut changed, FALLBACK_LOOK).await;
        }
    }

    /// Waits `delay`; `true` when a cancel came first.
    async fn cancelled_within(&self, run_id: &str, delay: Duration) -> Result<bool, ExecError> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(false),
            () = self.cancel_requested(run_id) => Ok(true),
        }
    }

    /// The run once the model shows what `seen` waits for (read-your-writes through the log).
    async fn observe(&self, run_id: &str, seen: impl Fn(&Run) -> bool) -> Result<Run, ExecError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.observe_timeout_ms);
        let mut changed = self.changes.watch(run_id);
        loop {
            if let Some(run) = model::load(&self.pool, run_id).await?
                && seen(&run)
            {
                return Ok(run);
            }
            if Instant::now() > deadline {
                return Err(ExecError::NotObserved(run_id.to_owned()));
            }
            next_change(&mut changed, FALLBACK_LOOK.min(deadline - Instant::now())).await;
        }
    }
}

/// The wait after failed attempt `attempt`: the policy's exponential backoff with jitter.
fn backoff(spec: &TriggerSpec, attempt: i32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(spec.retry.backoff_base_ms))
        .with_max_delay(Duration::from_millis(spec.retry.backoff_max_ms))
        .with_jitter()
        .without_max_times()
        .build()
        .nth(usize::try_from(attempt.max(1) - 1).unwrap_or(0))
        .unwrap_or(Duration::from_millis(spec.retry.backoff_max_ms))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_RESULT_BYTES {
        let mut end = MAX_RESULT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Scans when the model changed (at most every `SCAN_SPACING`) and at least every
/// `poll_interval_ms` (expiries and SLAs need no change), until `shutdown`.
pub async fn run(executor: Arc<Executor>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_millis(executor.config.poll_interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changed = executor.changes.all.subscribe();
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
            _ = changed.changed() => {}
        }
        match executor.scan().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("Runner scans again.");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %error, "Runner scan failed; retrying every poll interval.");
            }
            Err(_) => {}
        }
        tokio::time::sleep(SCAN_SPACING).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let triggers = ct_platform::triggers::TriggersConfig::default().load().unwrap();
        let spec = &triggers.triggers["contract.regenerate"];
        let first = backoff(spec, 1);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1000), "{first:?}");
        assert!(backoff(spec, 20) <= Duration::from_millis(2 * spec.retry.backoff_max_ms));
    }
}
