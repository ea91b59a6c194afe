//! `daily-counts`: events per source per UTC day of their `ts`, in a schema of its own. The
//! smallest read model, and the example of the shape: a pure step (`count`), a store transaction
//! that applies the effects and advances the progress together, and a `ReadModel` for `ct rebuild
//! daily-counts`. Off unless `daily_counts.enabled`; it runs inside the projector process, as its
//! own consumer group (`<consumer.name>-daily-counts`) and schema (`<postgres.schema>_daily_counts`).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use ct_platform::{
    consumer::{self, Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::Migration,
    readmodel::{Checksums, Copy, ReadModel},
    registry::RegistryClient,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Config;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "daily counts",
    sql: include_str!("../migrations/daily_counts/0001_daily_counts.sql"),
}];

/// What one event counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub event_id: String,
    pub day: NaiveDate,
    pub source: &'static str,
}

/// Events per (day, source) among `new` (the events of a batch seen for the first time).
pub fn count<'a>(new: impl Iterator<Item = &'a Counted>) -> BTreeMap<(NaiveDate, &'static str), i64> {
    let mut counts = BTreeMap::new();
    for counted in new {
        *counts.entry((counted.day, counted.source)).or_default() += 1;
    }
    counts
}

/// This model's configuration, derived from the projector's.
fn own(mut config: Config) -> Config {
    config.consumer.name = format!("{}-daily-counts", config.consumer.name);
    config.postgres.schema = format!("{}_daily_counts", config.postgres.schema);
    config.postgres.extra_schemas.clear();
    config
}

pub struct DailyCounts {
    pool: PgPool,
    registry: RegistryClient,
    consumer: String,
}

impl Pipeline for DailyCounts {
    type Item = Counted;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Counted, ProcessError>> {
        Box::pin(async move {
            let value = record.value.as_deref().ok_or_else(|| ProcessError::Record("no value".to_owned()))?;
            let event = self.registry.decode_event(value).await?;
            Ok(Counted {
                event_id: event.event_id().to_owned(),
                day: event.ts().date_naive(),
                source: event.source().as_str(),
            })
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move { Ok(ct_platform::postgres::load_progress(&self.pool, &self.consumer, topic).await?) })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Counted)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await?;
            let ids: Vec<&str> = items.iter().map(|(_, c)| c.event_id.as_str()).collect();
            let new: Vec<String> = sqlx::query_scalar(
                "INSERT INTO seen (event_id) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            let mut new: std::collections::HashSet<String> = new.into_iter().collect();
            // A batch may hold one eventId twice: the first occurrence counts.
            let firsts = items.iter().map(|(_, c)| c).filter(|c| new.remove(&c.event_id));
            for ((day, source), events) in count(firsts) {
                sqlx::query(
                    "INSERT INTO daily_counts (day, source, events) VALUES ($1, $2, $3)
                     ON CONFLICT (day, source) DO UPDATE SET events = daily_counts.events + EXCLUDED.events",
                )
                .bind(day)
                .bind(source)
                .bind(events)
                .execute(&mut *tx)
                .await?;
            }
            ct_platform::postgres::advance_progress(&mut tx, &self.consumer, topic, progress).await?;
            Ok(tx.commit().await?)
        })
    }
}

/// Runs the model (with the projector's `config`) until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve(own(config), shutdown).await
}

async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = ct_platform::postgres::connect(&config.postgres).await?;
    ct_platform::postgres::migrate(&pool, "daily_counts", MIGRATIONS).await?;
    let model = DailyCounts {
        pool,
        registry: RegistryClient::new(&config.registry.url),
        consumer: config.consumer.name.clone(),
    };
    Ok(consumer::run(&model, &config.kafka, &config.settings(), shutdown).await?)
}

/// `ct rebuild daily-counts`.
pub struct DailyCountsModel(pub Config);

impl ReadModel for DailyCountsModel {
    fn name(&self) -> &'static str {
        "daily-counts"
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
        Box::pin(ct_platform::postgres::migrate(pool, "daily_counts", MIGRATIONS))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        Box::pin(async move {
            let sum: Option<String> =
                sqlx::query_scalar("SELECT md5(string_agg(md5(c::text), '' ORDER BY day, source)) FROM daily_counts c")
                    .fetch_one(pool)
                    .await?;
            Ok([("daily_counts".to_owned(), sum.unwrap_or_else(|| "empty".to_owned()))].into())
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

impl DailyCountsModel {
    /// The model as the projector with `config` runs it.
    pub fn of(config: Config) -> DailyCountsModel {
        DailyCountsModel(own(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_by_day_and_source() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2025, 9, d).unwrap();
        let events = [
            Counted { event_id: "a".into(), day: day(1), source: "finance" },
            Counted { event_id: "b".into(), day: day(1), source: "finance" },
            Counted { event_id: "c".into(), day: day(2), source: "portal" },
        ];
        let counts = count(events.iter());
        assert_eq!(counts[&(day(1), "finance")], 2);
        assert_eq!(counts[&(day(2), "portal")], 1);
        assert_eq!(counts.len(), 2);
    }
}
