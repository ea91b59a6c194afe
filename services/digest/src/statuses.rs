//! The status side of the digest: the health evaluator's status changes (`ct.health.v1`, from
//! its outbox) wait in `pending_changes` with their partition and offset until a tick whose
//! health offsets cover them (`builder.rs` folds them into `status_changes`, once per system and
//! transition time). Each digest then says, per system, how often its status changed that day
//! and how long it spent in each status.

use std::{collections::HashMap, sync::Arc};

use ct_core::health::{Change, StatusSymbol};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};
use sqlx::PgPool;

use crate::builder::Builder;

/// The consumer of the status-change topic.
pub struct Statuses {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub builder: Arc<Builder>,
}

fn status_name(status: StatusSymbol) -> &'static str {
    match status {
        StatusSymbol::Green => "green",
        StatusSymbol::Amber => "amber",
        StatusSymbol::Red => "red",
        StatusSymbol::Unknown => "unknown",
    }
}

impl Pipeline for Statuses {
    type Item = Change;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Change, ProcessError>> {
        Box::pin(self.registry.decode_record_with(record, ct_core::health::decode_change))
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(self.builder.stored_progress(&self.pool, topic))
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Change)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await.map_err(classify)?;
            let partitions: Vec<i32> = items.iter().map(|(at, _)| at.partition).collect();
            let offsets: Vec<i64> = items.iter().map(|(at, _)| at.offset).collect();
            let systems: Vec<&str> = items.iter().map(|(_, c)| c.system_id.as_str()).collect();
            let statuses: Vec<&str> = items.iter().map(|(_, c)| status_name(c.status)).collect();
            let times: Vec<chrono::DateTime<chrono::Utc>> = items.iter().map(|(_, c)| c.last_transition_time).collect();
            sqlx::query(
                "INSERT INTO pending_changes (\"partition\", \"offset\", system_id, status, at)
                 SELECT * FROM UNNEST($1::int[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(&partitions)
            .bind(&offsets)
            .bind(&systems)
            .bind(&statuses)
            .bind(&times)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            ct_platform::clock::finish(&*self.builder, tx, topic, progress).await
        })
    }
}
