//! Alerts on the evaluator's clock. At each tick, after the statuses: the conditions that hold
//! (a burst of high-severity function errors, a red system) go through
//! `ct_core::alerting::step`, and each transition updates `alerts` and writes one notification
//! per channel of its route into `notifications`, in the tick's transaction. So alerts, like
//! statuses, are a function of the log, and `notify.rs` delivers what was decided exactly when
//! it commits (an outbox: a receiver that is down delays a notification, never drops it).

use chrono::{DateTime, Duration, Utc};
use ct_core::{
    alerting::{Condition, Open, Policy, Transition, step},
    health::{Status, human},
};
use serde::Deserialize;
use sqlx::PgConnection;

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
}

/// What the evaluator needs to decide alerts.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub config: AlertsConfig,
    /// Notifications are written `pending` (delivered by the notifier) or, in a rebuild's copy,
    /// `suppressed` (decided again, never sent again).
    pub deliver: bool,
}

fn minute_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl Alerting {
    /// Decides the alerts at `minute`, given each catalogued system's status and message.
    pub async fn evaluate(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        statuses: &[(String, Status, String)],
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

        for transition in step(&open, &holding, minute, policy) {
            let key = transition.key().to_owned();
            let (id, summary): (String, String) =
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
                        (id, condition.summary.clone())
                    }
                    Transition::Repeat { summary, .. } => sqlx::query_as(
                        "UPDATE alerts SET last_notified_at = $2, summary = $3 WHERE key = $1 AND state <> 'resolved'
                         RETURNING id, summary",
                    )
                    .bind(&key)
                    .bind(minute)
                    .bind(summary)
                    .fetch_one(&mut *tx)
                    .await?,
                    Transition::Escalate { summary, .. } => {
                        sqlx::query_as(
                            "UPDATE alerts SET escalated_at = $2, summary = $3 WHERE key = $1 AND state <> 'resolved'
                         RETURNING id, summary",
                        )
                        .bind(&key)
                        .bind(minute)
                        .bind(summary)
                        .fetch_one(&mut *tx)
                        .await?
                    }
                    Transition::Resolve { .. } => sqlx::query_as(
                        "UPDATE alerts SET state = 'resolved', resolved_at = $2 WHERE key = $1 AND state <> 'resolved'
                         RETURNING id, summary",
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
                    "INSERT INTO notifications (alert_id, transition, channel, at, title, body, state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&id)
                .bind(name)
                .bind(channel)
                .bind(minute)
                .bind(&title)
                .bind(&body)
                .bind(if self.deliver { "pending" } else { "suppressed" })
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
    }
}
