//! `versions`: what each repository has deployed per environment, where its branches stand, and
//! whether a deployment drifts from the target branch and **since when** (vision §3.1, §5.1
//! `GET /versions`). From `ci.deploy.completed` and `ci.branch.updated`; in a schema of its own
//! (`<postgres.schema>_versions`) and group (`<consumer.name>-versions`), run inside the projector
//! like `daily-counts`. The pure step is [`observe`]; the store applies the changes in log order
//! with the progress in one transaction; `ct rebuild versions` rebuilds it.
//!
//! Drift: a deployment drifts when the target branch's head (`versions.target_branch`, `main`)
//! is another commit. `drift_since` is the `ts` of the event that made them differ (a newer head,
//! or a deployment of an older commit), and is cleared by the event that brings them together.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use ct_core::{Envelope, payload::Payload};
use ct_platform::{
    consumer::{self, Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::Migration,
    readmodel::{Checksums, Copy, ReadModel},
    registry::RegistryClient,
};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::Config;

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 0, name: "consumer progress", sql: ct_platform::postgres::PROGRESS_TABLE_SQL },
    Migration { version: 1, name: "versions", sql: include_str!("../migrations/versions/0001_versions.sql") },
];

/// What one event says about versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Deployed { repo: String, environment: String, commit: String, tag: Option<String> },
    BranchHead { repo: String, branch: String, commit: String, ahead: Option<i64>, behind: Option<i64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub event_id: String,
    pub at: DateTime<Utc>,
    pub change: Option<Change>,
}

/// The version change `event` reports, if any.
pub fn observe(event: &Envelope) -> Option<Change> {
    match event.payload() {
        Payload::CiDeployCompleted(d) => Some(Change::Deployed {
            repo: d.repo.clone(),
            environment: d.environment.clone(),
            commit: d.commit.clone(),
            tag: d.tag.clone(),
        }),
        Payload::CiBranchUpdated(b) => Some(Change::BranchHead {
            repo: b.repo.clone(),
            branch: b.branch.clone(),
            commit: b.commit.clone(),
            ahead: b.ahead,
            behind: b.behind,
        }),
        _ => None,
    }
}

/// This model's configuration, derived from the projector's.
fn own(mut config: Config) -> Config {
    config.consumer.name = format!("{}-versions", config.consumer.name);
    config.postgres.schema = format!("{}_versions", config.postgres.schema);
    config.postgres.extra_schemas.clear();
    config
}

pub struct Versions {
    pool: PgPool,
    registry: RegistryClient,
    consumer: String,
    target_branch: String,
}

impl Pipeline for Versions {
    type Item = Observed;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Observed, ProcessError>> {
        Box::pin(async move {
            // The projector's main pipeline owns the dead letters of the events topic.
            Ok(match self.registry.decode_event_or_skip(record).await? {
                Some(event) => {
                    Observed { event_id: event.event_id().to_owned(), at: event.ts(), change: observe(&event) }
                }
                None => Observed { event_id: String::new(), at: DateTime::<Utc>::MIN_UTC, change: None },
            })
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move { Ok(ct_platform::postgres::load_progress(&self.pool, &self.consumer, topic).await?) })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Observed)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await?;
            let changes: Vec<&Observed> = items.iter().map(|(_, o)| o).filter(|o| o.change.is_some()).collect();
            if !changes.is_empty() {
                let ids: Vec<&str> = changes.iter().map(|o| o.event_id.as_str()).collect();
                let new: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO seen (event_id) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
                )
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                let mut new: HashSet<String> = new.into_iter().collect();
                // In log order; a batch may hold one eventId twice: the first occurrence counts.
                for observed in changes.into_iter().filter(|o| new.remove(&o.event_id)) {
                    self.apply_change(&mut tx, observed).await?;
                }
            }
            ct_platform::postgres::advance_progress(&mut tx, &self.consumer, topic, progress).await?;
            Ok(tx.commit().await?)
        })
    }
}

impl Versions {
    async fn apply_change(&self, tx: &mut PgConnection, observed: &Observed) -> Result<(), sqlx::Error> {
        let Some(change) = &observed.change else { return Ok(()) };
        let repo = match change {
            Change::Deployed { repo, environment, commit, tag } => {
                // An older deployment arriving late changes history only.
                sqlx::query(
                    "INSERT INTO deployments (repo, environment, commit, tag, deployed_at, target_branch)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (repo, environment) DO UPDATE
                         SET commit = EXCLUDED.commit, tag = EXCLUDED.tag, deployed_at = EXCLUDED.deployed_at,
                             target_branch = EXCLUDED.target_branch
                         WHERE deployments.deployed_at <= EXCLUDED.deployed_at",
                )
                .bind(repo)
                .bind(environment)
                .bind(commit)
                .bind(tag)
                .bind(observed.at)
                .bind(&self.target_branch)
                .execute(&mut *tx)
                .await?;
                self.history(tx, observed, repo, "deploy", environment, commit, tag.as_deref(), None, None).await?;
                repo
            }
            Change::BranchHead { repo, branch, commit, ahead, behind } => {
                sqlx::query(
                    "INSERT INTO branch_heads (repo, branch, commit, ahead, behind, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (repo, branch) DO UPDATE
                         SET commit = EXCLUDED.commit, ahead = EXCLUDED.ahead, behind = EXCLUDED.behind,
                             updated_at = EXCLUDED.updated_at
                         WHERE branch_heads.updated_at <= EXCLUDED.updated_at",
                )
                .bind(repo)
                .bind(branch)
                .bind(commit)
                .bind(ahead)
                .bind(behind)
                .bind(observed.at)
                .execute(&mut *tx)
                .await?;
                self.history(tx, observed, repo, "branch", branch, commit, None, *ahead, *behind).await?;
                repo
            }
        };
        // Every environment of the repo against the target branch's head: a drift starts at the
        // event that made them differ and ends at the one that brings them together.
        sqlx::query(
            "UPDATE deployments d SET drift_since = CASE
                 WHEN h.commit IS NULL OR h.commit = d.commit THEN NULL
                 ELSE COALESCE(d.drift_since, $3) END
             FROM (SELECT $1::text AS repo) r
             LEFT JOIN branch_heads h ON h.repo = r.repo AND h.branch = $2
             WHERE d.repo = r.repo",
        )
        .bind(repo)
        .bind(&self.target_branch)
        .bind(observed.at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        tx: &mut PgConnection,
        observed: &Observed,
        repo: &str,
        kind: &str,
        target: &str,
        commit: &str,
        tag: Option<&str>,
        ahead: Option<i64>,
        behind: Option<i64>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO version_history (event_id, repo, at, kind, target, commit, tag, ahead, behind)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&observed.event_id)
        .bind(repo)
        .bind(observed.at)
        .bind(kind)
        .bind(target)
        .bind(commit)
        .bind(tag)
        .bind(ahead)
        .bind(behind)
        .execute(&mut *tx)
        .await
        .map(drop)
    }
}

/// Runs the model (with the projector's `config`) until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve(own(config), shutdown).await
}

async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = ct_platform::postgres::connect(&config.postgres).await?;
    ct_platform::postgres::migrate(&pool, "versions", MIGRATIONS).await?;
    let model = Versions {
        pool,
        registry: RegistryClient::new(&config.registry.url),
        consumer: config.consumer.name.clone(),
        target_branch: config.versions.target_branch.clone(),
    };
    Ok(consumer::run(&model, &config.kafka, &config.settings(), shutdown).await?)
}

/// `ct rebuild versions`.
pub struct VersionsModel(pub Config);

const TABLES: &[(&str, &str)] = &[
    ("deployments", "repo, environment"),
    ("branch_heads", "repo, branch"),
    ("version_history", "event_id"),
    ("seen", "event_id"),
];

impl ReadModel for VersionsModel {
    fn name(&self) -> &'static str {
        "versions"
    }

    fn postgres(&self) -> &ct_platform::config::PostgresConfig {
        &self.0.postgres
    }

    fn kafka(&self) -> &ct_platform::config::KafkaConfig {
        &self.0.kafka
    }

    fn consumer(&self) -> &str {
        &self.0.consumer.name
    }

    fn topics(&self) -> Vec<String> {
        vec![self.0.consumer.topic.clone()]
    }

    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(ct_platform::postgres::migrate(pool, "versions", MIGRATIONS))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        Box::pin(async move {
            let mut sums = Checksums::new();
            for (table, order) in TABLES {
                let sql = format!("SELECT md5(string_agg(md5(t::text), '' ORDER BY {order})) FROM {table} t");
                let sum: Option<String> = sqlx::query_scalar(&sql).fetch_one(pool).await?;
                sums.insert((*table).to_owned(), sum.unwrap_or_else(|| "empty".to_owned()));
            }
            Ok(sums)
        })
    }

    fn run_copy(&self, copy: Copy, stop: CancellationToken) -> BoxFuture<'static, Result<(), String>> {
        let mut config = self.0.clone();
        config.consumer.name = copy.consumer;
        config.consumer.horizon = copy.horizon;
        config.consumer.batch_max = config.consumer.batch_max.max(10_000);
        config.postgres.schema = copy.schema;
        Box::pin(async move { serve(config, stop).await.map_err(|e| format!("{e:#}")) })
    }
}

impl VersionsModel {
    /// The model as the projector with `config` runs it.
    pub fn of(config: Config) -> VersionsModel {
        VersionsModel(own(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_and_branch_heads_are_observed_and_other_events_are_not() {
        let deploy = parse(serde_json::json!({"eventId": "d1", "type": "ci.deploy.completed",
            "ts": "2025-09-24T10:00:00Z", "source": "github",
            "payload": {"repo": "swan-portal", "environment": "production", "tag": "v1.2.0", "commit": "abc123"}}));
        assert_eq!(
            observe(&deploy),
            Some(Change::Deployed {
                repo: "swan-portal".into(),
                environment: "production".into(),
                commit: "abc123".into(),
                tag: Some("v1.2.0".into()),
            })
        );
        let head = parse(serde_json::json!({"eventId": "b1", "type": "ci.branch.updated",
            "ts": "2025-09-24T11:00:00Z", "source": "github",
            "payload": {"repo": "swan-portal", "branch": "main", "commit": "def456", "ahead": 2}}));
        assert!(matches!(observe(&head), Some(Change::BranchHead { ahead: Some(2), behind: None, .. })));
        let heartbeat = parse(serde_json::json!({"eventId": "h1", "type": "system.heartbeat",
            "ts": "2025-09-24T11:00:00Z", "source": "github", "payload": {"systemId": "github"}}));
        assert_eq!(observe(&heartbeat), None);
    }

    fn parse(body: serde_json::Value) -> Envelope {
        let redactor = ct_core::redact::Redactor::new("t");
        let options = ct_core::envelope::ParseOptions {
            redactor: &redactor,
            received_at: "2025-09-25T00:00:00Z".parse().unwrap(),
            max_future_skew: chrono::Duration::minutes(5),
        };
        Envelope::parse(&body, &options).unwrap().0
    }
}
