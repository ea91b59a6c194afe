//! Alerts on the evaluator's clock. At each tick, after the statuses: the conditions that hold
//! (a burst of high-severity function errors, a red system) go through
//! `ct_core::alerting::step`, and each transition updates `alerts` and writes one notification
//! per channel of its route into `notifications`, in the tick's transaction. So alerts, like
//! statuses, are a function of the log, and `notify.rs` delivers what was decided exactly when
//! it commits (an outbox: a receiver that is down delays a notification, never drops it).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use ct_core::{
    alerting::{self, ActionKind, Condition, Open, Policy, SilenceSpec, Transition, step},
    health::{Status, human},
};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};

use crate::evaluator::Evaluator;

/// `[alerts]`: the policy and where each transition goes (channel names of `[notify.channels]`).
#[derive(Debug, Clone, Deserialize)]
pub struct AlertsConfig {
    pub enabled: bool,
    #[serde(flatten)]
    pub policy: Policy,
    /// Channels told when an alert fires, repeats or resolves.
    pub primary: Vec<String>,
    /// Channels told when an alert escalates.
    pub escalation: Vec<String>,
    /// The branch whose head a deployment should run (the versions model's `target_branch`).
    pub drift_target_branch: String,
    pub quiet_hours: alerting::QuietHours,
}

/// A row of `pending_actions` taken by a tick.
struct AppliedAction {
    audit_id: String,
    alert_id: String,
    action: String,
    actor: String,
    requested_at: DateTime<Utc>,
    reason: String,
    rule: Option<String>,
    system_id: Option<String>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for AppliedAction {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(AppliedAction {
            audit_id: row.try_get("audit_id")?,
            alert_id: row.try_get("alert_id")?,
            action: row.try_get("action")?,
            actor: row.try_get("actor")?,
            requested_at: row.try_get("requested_at")?,
            reason: row.try_get("reason")?,
            rule: row.try_get("rule")?,
            system_id: row.try_get("system_id")?,
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
        })
    }
}

/// What the evaluator needs to decide alerts.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub config: AlertsConfig,
    /// `config.quiet_hours`, compiled (checked when the configuration loads).
    pub quiet: Option<alerting::Quiet>,
    /// Notifications are written `pending` (delivered by the notifier) or, in a rebuild's copy,
    /// `suppressed` (decided again, never sent again).
    pub deliver: bool,
    /// Each allow-listed trigger's `sla_s`: a triggered run of that job (announced by the runner
    /// as `ct.run.*` events of source `control_tower`) is late after it, not after `run_sla_s`.
    pub job_slas: std::collections::BTreeMap<String, i64>,
}

/// The `system_id` of platform-wide alerts: the dead-letter queue and triggered runs belong to no
/// catalogued system.
pub const PLATFORM_SYSTEM: &str = "control_tower";

fn minute_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl Alerting {
    /// Applies the actions below the tick's audit offsets, in log order: an acknowledgement of a
    /// firing alert stops its repeats and its escalation. Each is kept with what it did.
    pub async fn apply_actions(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        audit_end: &[i64],
    ) -> Result<(), sqlx::Error> {
        let actions: Vec<AppliedAction> = sqlx::query_as(
            "WITH applied AS (
                 DELETE FROM pending_actions a
                 USING UNNEST($1::bigint[]) WITH ORDINALITY AS b(end_offset, n)
                 WHERE a.\"partition\" = b.n - 1 AND a.\"offset\" < b.end_offset
                 RETURNING a.*
             )
             SELECT audit_id, alert_id, action, actor, requested_at, reason, rule, system_id, starts_at, ends_at
             FROM applied ORDER BY \"partition\", \"offset\"",
        )
        .bind(audit_end)
        .fetch_all(&mut *tx)
        .await?;
        for a in actions {
            let AppliedAction { audit_id, alert_id, action, actor, requested_at, reason, .. } = &a;
            let outcome = if action == "silence" {
                sqlx::query(
                    "INSERT INTO silences (id, rule, system_id, starts_at, ends_at, actor, reason, applied_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(alert_id)
                .bind(&a.rule)
                .bind(&a.system_id)
                .bind(a.starts_at)
                .bind(a.ends_at)
                .bind(actor)
                .bind(reason)
                .bind(minute)
                .execute(&mut *tx)
                .await?;
                "silence created".to_owned()
            } else if action == "expire" {
                let ended = sqlx::query("UPDATE silences SET ends_at = $2 WHERE id = $1 AND ends_at > $2")
                    .bind(alert_id)
                    .bind(minute)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if ended == 1 { "silence expired" } else { "ignored: no such silence, or it had ended" }.to_owned()
            } else {
                let state: Option<String> = sqlx::query_scalar("SELECT state FROM alerts WHERE id = $1")
                    .bind(alert_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match state.as_deref() {
                    Some("firing") => {
                        sqlx::query("UPDATE alerts SET state = 'acknowledged', acknowledged_at = $2 WHERE id = $1")
                            .bind(alert_id)
                            .bind(minute)
                            .execute(&mut *tx)
                            .await?;
                        "acknowledged".to_owned()
                    }
                    Some(other) => format!("ignored: the alert is {other}"),
                    None => "ignored: no such alert".to_owned(),
                }
            };
            tracing::info!(alert = %alert_id, %actor, %outcome, at = %minute, "Alert action applied.");
            sqlx::query(
                "INSERT INTO alert_actions (audit_id, alert_id, action, actor, requested_at, reason, applied_at, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (audit_id) DO NOTHING",
            )
            .bind(audit_id)
            .bind(alert_id)
            .bind(action)
            .bind(actor)
            .bind(requested_at)
            .bind(reason)
            .bind(minute)
            .bind(&outcome)
            .execute(&mut *tx)
            .await?;
        }
        self.apply_depth(tx, minute, audit_end).await
    }

    /// Takes the last depth report below the tick's audit offsets; remembers since which tick the
    /// depth has been over the threshold.
    async fn apply_depth(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        audit_end: &[i64],
    ) -> Result<(), sqlx::Error> {
        let latest: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "WITH applied AS (
                 DELETE FROM pending_depths d
                 USING UNNEST($1::bigint[]) WITH ORDINALITY AS b(end_offset, n)
                 WHERE d.\"partition\" = b.n - 1 AND d.\"offset\" < b.end_offset
                 RETURNING d.*
             )
             SELECT parked, written_at FROM applied ORDER BY \"partition\" DESC, \"offset\" DESC LIMIT 1",
        )
        .bind(audit_end)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((parked, reported_at)) = latest {
            let threshold = i64::from(self.config.policy.dlq_depth_max);
            sqlx::query(
                "INSERT INTO dlq_depth (parked, reported_at, applied_at, over_since)
                 VALUES ($1, $2, $3, CASE WHEN $1 > $4 THEN $3 END)
                 ON CONFLICT (id) DO UPDATE SET parked = EXCLUDED.parked, reported_at = EXCLUDED.reported_at,
                     applied_at = EXCLUDED.applied_at,
                     over_since = CASE WHEN EXCLUDED.parked > $4 THEN COALESCE(dlq_depth.over_since, $3) END",
            )
            .bind(parked)
            .bind(reported_at)
            .bind(minute)
            .bind(threshold)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Decides the alerts at `minute`, given each catalogued system's status and message.
    pub async fn evaluate(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        statuses: &[(String, Status, String)],
        slos: &[crate::slos::Report],
    ) -> Result<(), sqlx::Error> {
        let policy = &self.config.policy;
        let window = Duration::seconds(policy.fn_errors_window_s);
        let mut holding: Vec<Condition> = Vec::new();
        let bursts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT system_id, count(*) FROM high_errors WHERE ts > $1 AND ts <= $2 GROUP BY system_id HAVING count(*) >= $3",
        )
        .bind(minute - window)
        .bind(minute)
        .bind(i64::from(policy.fn_errors_count))
        .fetch_all(&mut *tx)
        .await?;
        for (system_id, errors) in bursts {
            holding.push(Condition {
                key: format!("fn-errors:{system_id}"),
                rule: "fn_errors",
                summary: format!(
                    "{errors} high-severity function errors of {system_id} in the last {} (alert from {})",
                    human(window),
                    policy.fn_errors_count
                ),
                system_id,
            });
        }
        if policy.system_red {
            for (system_id, status, message) in statuses {
                if *status == Status::Red {
                    holding.push(Condition {
                        key: format!("system-red:{system_id}"),
                        rule: "system_red",
                        system_id: system_id.clone(),
                        summary: format!("{system_id} is {message}"),
                    });
                }
            }
        }
        for report in slos {
            if let Some(burning) = &report.burning {
                let mut key = format!("slo-burn:{}:{}", report.slo, report.system_id);
                if !report.job.is_empty() {
                    key = format!("{key}:{}", report.job);
                }
                holding.push(Condition {
                    key,
                    rule: "slo_burn",
                    system_id: report.system_id.clone(),
                    summary: format!(
                        "{} of {} burns its error budget {}",
                        report.slo,
                        report.subject(),
                        burning.describe()
                    ),
                });
            }
        }
        // A triggered run (announced by the runner: the platform's) is late after its trigger's
        // `sla_s`; a producer's run after `run_sla_s`.
        let job_slas = &self.job_slas;
        let sla_of = |system_id: &str, job: Option<&str>| match job
            .filter(|_| system_id == PLATFORM_SYSTEM)
            .and_then(|job| job_slas.get(job))
        {
            Some(&seconds) => Some(Duration::seconds(seconds)),
            None => (policy.run_sla_s > 0).then(|| Duration::seconds(policy.run_sla_s)),
        };
        let shortest = job_slas.values().copied().chain((policy.run_sla_s > 0).then_some(policy.run_sla_s)).min();
        if let Some(shortest) = shortest {
            let candidates: Vec<(String, String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
                "SELECT system_id, run_id, job, started_at FROM runs
                 WHERE completed_at IS NULL AND started_at < $1 ORDER BY system_id, run_id",
            )
            .bind(minute - Duration::seconds(shortest))
            .fetch_all(&mut *tx)
            .await?;
            for (system_id, run_id, job, started_at) in candidates {
                let Some(sla) = sla_of(&system_id, job.as_deref()).filter(|sla| started_at < minute - *sla) else {
                    continue;
                };
                holding.push(Condition {
                    key: format!("run-sla:{system_id}:{run_id}"),
                    rule: "run_sla",
                    summary: format!(
                        "run {run_id} ({}) of {system_id} has been running for {} since {} (SLA {})",
                        job.as_deref().unwrap_or("unknown job"),
                        human(minute - started_at),
                        minute_text(started_at),
                        human(sla)
                    ),
                    system_id,
                });
            }
        }
        if policy.dlq_depth_max > 0 {
            let over_for = Duration::seconds(policy.dlq_depth_for_s);
            let depth: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT parked, over_since FROM dlq_depth WHERE over_since IS NOT NULL AND over_since <= $1",
            )
            .bind(minute - over_for)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((parked, since)) = depth {
                holding.push(Condition {
                    key: "dlq-depth".into(),
                    rule: "dlq_depth",
                    system_id: PLATFORM_SYSTEM.into(),
                    summary: format!(
                        "{parked} dead letters parked, over {} since {} (alert when over {} for {})",
                        policy.dlq_depth_max,
                        minute_text(since),
                        policy.dlq_depth_max,
                        human(over_for)
                    ),
                });
            }
        }
        if policy.drift_after_s > 0 {
            let age = Duration::seconds(policy.drift_after_s);
            let drifting: Vec<(String, String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT system_id, repo, environment, deployed_commit, head_commit, drift_since FROM drift_deployments
                 WHERE drift_since IS NOT NULL AND drift_since <= $1 ORDER BY repo, environment",
            )
            .bind(minute - age)
            .fetch_all(&mut *tx)
            .await?;
            for (system_id, repo, environment, deployed, head, since) in drifting {
                holding.push(Condition {
                    key: format!("drift:{repo}:{environment}"),
                    rule: "drift",
                    summary: format!(
                        "{repo} in {environment} runs {deployed} while {} is at {head}, since {} (alert after {})",
                        self.config.drift_target_branch,
                        minute_text(since),
                        human(age)
                    ),
                    system_id,
                });
            }
        }
        holding.sort_by(|a, b| a.key.cmp(&b.key));
        let open: Vec<Open> = sqlx::query_as::<_, (String, DateTime<Utc>, DateTime<Utc>, bool, bool)>(
            "SELECT key, fired_at, last_notified_at, acknowledged_at IS NOT NULL, escalated_at IS NOT NULL
             FROM alerts WHERE state <> 'resolved' ORDER BY key",
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(key, fired_at, last_notified_at, acknowledged, escalated)| Open {
            key,
            fired_at,
            last_notified_at,
            acknowledged,
            escalated,
        })
        .collect();

        let silences: Vec<SilenceSpec> = sqlx::query_as::<_, (Option<String>, Option<String>, DateTime<Utc>, DateTime<Utc>)>(
            "SELECT rule, system_id, starts_at, ends_at FROM silences WHERE starts_at <= $1 AND ends_at > $1 ORDER BY id",
        )
        .bind(minute)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(rule, system_id, starts_at, ends_at)| SilenceSpec { rule, system_id, starts_at, ends_at })
        .collect();

        for transition in step(&open, &holding, minute, policy) {
            let key = transition.key().to_owned();
            let (id, summary, rule, system_id): (String, String, String, String) =
                match &transition {
                    Transition::Fire(condition) => {
                        let id = format!("{key}@{}", minute.format("%Y%m%dT%H%MZ"));
                        sqlx::query(
                            "INSERT INTO alerts (id, key, rule, system_id, state, summary, fired_at, last_notified_at)
                         VALUES ($1, $2, $3, $4, 'firing', $5, $6, $6)",
                        )
                        .bind(&id)
                        .bind(&key)
                        .bind(condition.rule)
                        .bind(&condition.system_id)
                        .bind(&condition.summary)
                        .bind(minute)
                        .execute(&mut *tx)
                        .await?;
                        (id, condition.summary.clone(), condition.rule.to_owned(), condition.system_id.clone())
                    }
                    Transition::Repeat { summary, .. } => sqlx::query_as(
                        "UPDATE alerts SET last_notified_at = $2, summary = $3 WHERE key = $1 AND state <> 'resolved'
                         RETURNING id, summary, rule, system_id",
                    )
                    .bind(&key)
                    .bind(minute)
                    .bind(summary)
                    .fetch_one(&mut *tx)
                    .await?,
                    Transition::Escalate { summary, .. } => {
                        sqlx::query_as(
                            "UPDATE alerts SET escalated_at = $2, summary = $3 WHERE key = $1 AND state <> 'resolved'
                         RETURNING id, summary, rule, system_id",
                        )
                        .bind(&key)
                        .bind(minute)
                        .bind(summary)
                        .fetch_one(&mut *tx)
                        .await?
                    }
                    Transition::Resolve { .. } => sqlx::query_as(
                        "UPDATE alerts SET state = 'resolved', resolved_at = $2 WHERE key = $1 AND state <> 'resolved'
                         RETURNING id, summary, rule, system_id",
                    )
                    .bind(&key)
                    .bind(minute)
                    .fetch_one(&mut *tx)
                    .await?,
                };
            let channels = if matches!(transition, Transition::Escalate { .. }) {
                &self.config.escalation
            } else {
                &self.config.primary
            };
            let name = transition.name();
            let silenced = silences.iter().any(|s| s.silences(&rule, &system_id, minute));
            let held = !silenced && self.quiet.as_ref().is_some_and(|q| q.holds(&rule, minute));
            let title = format!("[{}] {key}", name.to_uppercase());
            let body = match &transition {
                Transition::Fire(_) => format!("{summary}. Fired at {}.", minute_text(minute)),
                Transition::Repeat { .. } => format!("Still firing at {}: {summary}.", minute_text(minute)),
                Transition::Escalate { .. } => {
                    format!("Not acknowledged since it fired; escalated at {}: {summary}.", minute_text(minute))
                }
                Transition::Resolve { .. } => format!("Resolved at {}. It was: {summary}.", minute_text(minute)),
            };
            tracing::info!(alert = %id, transition = name, at = %minute, "Alert transition.");
            metrics::counter!("ct_health_alert_transitions_total", "transition" => name).increment(1);
            for channel in channels {
                sqlx::query(
                    "INSERT INTO notifications (subject, kind, channel, at, title, body, state, held)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind(name)
                .bind(channel)
                .bind(minute)
                .bind(&title)
                .bind(&body)
                .bind(if !self.deliver {
                    "suppressed"
                } else if silenced {
                    "silenced"
                } else if held {
                    "held"
                } else {
                    "pending"
                })
                .bind(held)
                .execute(&mut *tx)
                .await?;
            }
        }
        self.summarise_quiet_hours(tx, minute).await
    }

    /// At the first tick after quiet hours: one notification per channel listing what was held.
    async fn summarise_quiet_hours(&self, tx: &mut PgConnection, minute: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let Some(quiet) = &self.quiet else { return Ok(()) };
        if quiet.is_quiet(minute) {
            return Ok(());
        }
        let held: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE notifications SET summarised_at = $1 WHERE held AND summarised_at IS NULL
             RETURNING channel, title, at",
        )
        .bind(minute)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_channel: std::collections::BTreeMap<&str, Vec<(DateTime<Utc>, &str)>> = Default::default();
        for (channel, title, at) in &held {
            by_channel.entry(channel).or_default().push((*at, title));
        }
        for (channel, mut items) in by_channel {
            items.sort();
            let plural = if items.len() == 1 { "" } else { "s" };
            let title = format!("[SUMMARY] {} notification{plural} held during quiet hours", items.len());
            let mut body = format!(
                "Quiet hours ({}) ended at {}. Held while they lasted, oldest first:",
                quiet.describe(),
                minute_text(minute)
            );
            for (at, held_title) in &items {
                body.push_str(&format!("\n- {} {held_title}", minute_text(*at)));
            }
            body.push_str("\nGET /alerts?state=firing lists what is still open.");
            sqlx::query(
                "INSERT INTO notifications (subject, kind, channel, at, title, body, state)
                 VALUES ($1, 'summary', $2, $3, $4, $5, $6)",
            )
            .bind(format!("quiet-hours@{}", minute.format("%Y%m%dT%H%MZ")))
            .bind(channel)
            .bind(minute)
            .bind(&title)
            .bind(&body)
            .bind(if self.deliver { "pending" } else { "suppressed" })
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

/// The consumer of the audit topic: alert actions wait in `pending_actions`, depth reports in
/// `pending_depths`, for the tick that covers them; dead-letter audits are passed over.
pub struct Actions {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub evaluator: std::sync::Arc<Evaluator>,
}

impl Pipeline for Actions {
    type Item = ct_core::audit::AuditRecord;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<ct_core::audit::AuditRecord, ProcessError>> {
        Box::pin(self.registry.decode_record_with(record, ct_core::audit::decode))
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(self.evaluator.stored_progress(&self.pool, topic))
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, ct_core::audit::AuditRecord)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await.map_err(classify)?;
            for (at, record) in items {
                let action = match record {
                    ct_core::audit::AuditRecord::Alert(action) => action,
                    ct_core::audit::AuditRecord::Depth(depth) => {
                        sqlx::query(
                            "INSERT INTO pending_depths (\"partition\", \"offset\", parked, written_at)
                             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        )
                        .bind(at.partition)
                        .bind(at.offset)
                        .bind(depth.parked)
                        .bind(depth.written_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                        continue;
                    }
                    ct_core::audit::AuditRecord::Dlq(_) | ct_core::audit::AuditRecord::Other(_) => continue,
                };
                let silence = action.silence.as_ref();
                sqlx::query(
                    "INSERT INTO pending_actions (\"partition\", \"offset\", audit_id, alert_id, action, actor, requested_at,
                         reason, rule, system_id, starts_at, ends_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
                )
                .bind(at.partition)
                .bind(at.offset)
                .bind(&action.audit_id)
                .bind(&action.alert_id)
                .bind(match action.action {
                    ActionKind::Ack => "ack",
                    ActionKind::Silence => "silence",
                    ActionKind::Expire => "expire",
                })
                .bind(&action.actor)
                .bind(action.at)
                .bind(&action.reason)
                .bind(silence.and_then(|s| s.rule.clone()))
                .bind(silence.and_then(|s| s.system_id.clone()))
                .bind(silence.map(|s| s.starts_at))
                .bind(silence.map(|s| s.ends_at))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            self.evaluator.finish(tx, topic, progress).await
        })
    }
}
