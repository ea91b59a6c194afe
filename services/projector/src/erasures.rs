//! Erasures (`ct erase`, [`ct_core::erasure`]): the projector's second pipeline reads the audit
//! topic, keeps the `ct.v1.Erasure` records in `erasures` and replaces the payloads they cover
//! with `{"erased": true}`; every other audit record only advances the progress. New events are
//! checked against `erasures` as they are inserted (`store::insert_events`), so the result does
//! not depend on which of the two the projector reads first: a rebuild gives the same rows.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use ct_core::erasure::{self, Erasure};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};
use sqlx::PgPool;

pub struct Erasures {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub consumer: String,
    /// Set after an erasure: the Redis views (recent events) are rebuilt from Postgres.
    pub views_stale: Arc<AtomicBool>,
}

impl Pipeline for Erasures {
    type Item = Option<Erasure>;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Option<Erasure>, ProcessError>> {
        Box::pin(async move {
            let value = record
                .value
                .as_deref()
                .ok_or_else(|| ProcessError::Record("the audit record has no value".to_owned()))?;
            Ok(self.registry.decode_with(value, erasure::decode).await?)
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move {
            ct_platform::postgres::load_progress(&self.pool, &self.consumer, topic).await.map_err(classify)
        })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Option<Erasure>)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            apply(&self.pool, &self.consumer, items, topic, progress).await?;
            if items.iter().any(|(_, erasure)| erasure.is_some()) {
                self.views_stale.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
    }
}

async fn apply(
    pool: &PgPool,
    consumer: &str,
    items: &[(Coordinates, Option<Erasure>)],
    topic: &str,
    progress: &[Advance],
) -> Result<(), ProcessError> {
    let mut tx = pool.begin().await.map_err(classify)?;
    let erasures: Vec<&Erasure> = items.iter().filter_map(|(_, e)| e.as_ref()).collect();
    if !erasures.is_empty() {
        // Exclusive: no event batch is between its look at `erasures` and its commit meanwhile,
        // and each one after this sees the erasure.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ct-swap'))")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    for e in erasures {
        sqlx::query(
            "INSERT INTO erasures (erasure_id, source, before, actor, at, reason) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (erasure_id) DO NOTHING",
        )
        .bind(&e.erasure_id)
        .bind(&e.source)
        .bind(e.before)
        .bind(&e.actor)
        .bind(e.at)
        .bind(&e.reason)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let erased = sqlx::query("UPDATE events SET payload = $3 WHERE source = $1 AND ts < $2 AND payload <> $3")
            .bind(&e.source)
            .bind(e.before)
            .bind(erasure::erased_payload())
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        tracing::info!(erasure_id = %e.erasure_id, source = %e.source, before = %e.before, actor = %e.actor, erased, "Erasure applied.");
    }
    ct_platform::postgres::advance_progress(&mut tx, consumer, topic, progress).await?;
    tx.commit().await.map_err(classify)
}
