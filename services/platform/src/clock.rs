//! The log's clock as time-dependent read models read it (design invariant 10): a tick is applied
//! only once the events it names are stored, so the same ticks over the same log give the same
//! state however the topics interleave when read. Shared by the health evaluator and the digest:
//! a model implements [`Clocked`], its consumers end their batches with [`finish`], and its clock
//! consumer is a [`ClockPipeline`].

use std::{collections::HashMap, sync::Arc};

use ct_core::clock::Tick;
use sqlx::{PgConnection, PgPool};

use crate::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};

/// Are the records below `ends` (end offset per partition, by partition number) all stored, by
/// `progress` (partition -> next offset)? An empty partition at the tick needs nothing.
pub fn covered(ends: &[i64], progress: &HashMap<i32, i64>) -> bool {
    ends.iter().enumerate().all(|(partition, end)| {
        *end <= 0 || i32::try_from(partition).ok().and_then(|p| progress.get(&p)).is_some_and(|next| next >= end)
    })
}

/// Decodes a clock record and checks it names the topics this reader reads (`audit_topic`,
/// `health_topic`: `None` when the reader follows no such topic). A tick for other topics is the
/// record's fault.
pub async fn decode_tick(
    registry: &RegistryClient,
    record: &Incoming,
    events_topic: &str,
    audit_topic: Option<&str>,
    health_topic: Option<&str>,
) -> Result<Tick, ProcessError> {
    let tick = registry.decode_record_with(record, ct_core::clock::decode_tick).await?;
    for (kind, read, ticked) in
        [("audit", audit_topic, tick.audit_topic.as_str()), ("health", health_topic, tick.health_topic.as_str())]
    {
        if let Some(read) = read
            && !ticked.is_empty()
            && ticked != read
        {
            return Err(ProcessError::Record(format!(
                "a tick for {kind} topic `{ticked}`; this reader reads `{read}`"
            )));
        }
    }
    if tick.events_topic != events_topic {
        return Err(ProcessError::Record(format!(
            "a tick for events topic `{}`; this reader reads `{events_topic}`",
            tick.events_topic
        )));
    }
    Ok(tick)
}

/// A read model driven by the log's clock (the health evaluator, the digest): its consumers each
/// end their batch transaction with [`finish`], and its clock consumer is a [`ClockPipeline`].
pub trait Clocked: Send + Sync + 'static {
    /// The consumer name: the progress key every consumer of the model shares.
    fn consumer(&self) -> &str;
    /// The events topic whose offsets ticks carry.
    fn events_topic(&self) -> &str;
    /// The audit topic whose offsets ticks carry, when the model follows one.
    fn audit_topic(&self) -> Option<&str>;
    /// The status-change topic whose offsets ticks carry, when the model follows it.
    fn health_topic(&self) -> Option<&str> {
        None
    }
    /// Applies, in clock order, the pending ticks whose records are stored; runs inside a batch
    /// transaction, after its progress was advanced.
    fn advance<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// Ends the batch transaction of any consumer of `model`: its progress, then whatever ticks
/// became ready, then the commit. Whichever consumer commits last applies what became ready.
pub async fn finish<C: Clocked + ?Sized>(
    model: &C,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    topic: &str,
    progress: &[Advance],
) -> Result<(), ProcessError> {
    crate::postgres::advance_progress(&mut tx, model.consumer(), topic, progress).await?;
    model.advance(&mut tx).await.map_err(classify)?;
    tx.commit().await.map_err(classify)
}

/// The clock consumer of a [`Clocked`] model: stores each tick in the model's `pending_ticks`
/// (`clock_offset`, `minute`, `events_end`, `written_at`, `audit_end`, `health_end`) and lets the
/// model advance.
pub struct ClockPipeline<C: ?Sized> {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub model: Arc<C>,
}

impl<C: Clocked + ?Sized> Pipeline for ClockPipeline<C> {
    type Item = Tick;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Tick, ProcessError>> {
        Box::pin(decode_tick(
            &self.registry,
            record,
            self.model.events_topic(),
            self.model.audit_topic(),
            self.model.health_topic(),
        ))
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move {
            crate::postgres::load_progress(&self.pool, self.model.consumer(), topic).await.map_err(classify)
        })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Tick)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = crate::postgres::begin_batch(&self.pool).await.map_err(classify)?;
            for (at, tick) in items {
                sqlx::query(
                    "INSERT INTO pending_ticks (clock_offset, minute, events_end, written_at, audit_end, health_end)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(at.offset)
                .bind(tick.minute)
                .bind(&tick.events_end)
                .bind(tick.written_at)
                .bind(&tick.audit_end)
                .bind(&tick.health_end)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            finish(&*self.model, tx, topic, progress).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_waits_for_every_partition_it_names() {
        let progress: HashMap<i32, i64> = [(0, 10), (2, 4)].into();
        assert!(covered(&[10, 0, 4], &progress), "partition 1 was empty at the tick");
        assert!(!covered(&[11, 0, 4], &progress), "partition 0 is one record short");
        assert!(!covered(&[10, 1, 4], &progress), "partition 1 has a record not stored yet");
        assert!(covered(&[], &progress));
    }
}
