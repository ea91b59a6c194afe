//! The audit side of the digest: the DLQ categoriser's depth reports and people's actions on
//! dead letters (`ct.audit.v1`, records of several types: `ct_core::audit::decode`) wait in
//! `pending_audit` with their partition and offset until a tick whose audit offsets cover them
//! (`builder.rs` folds them: resolved items into the day's counts, the day's last depth report
//! into `dlq_depth`). Alert actions on the same topic are passed over.

use std::{collections::HashMap, sync::Arc};

use ct_core::{audit::AuditRecord, digest::local_day};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};
use sqlx::PgPool;

use crate::builder::Builder;

/// The consumer of the audit topic.
pub struct DeadLetters {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub builder: Arc<Builder>,
}

impl Pipeline for DeadLetters {
    type Item = AuditRecord;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<AuditRecord, ProcessError>> {
        Box::pin(self.registry.decode_record_with(record, ct_core::audit::decode))
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(self.builder.stored_progress(&self.pool, topic))
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, AuditRecord)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await.map_err(classify)?;
            for (at, record) in items {
                let query = match record {
                    AuditRecord::Dlq(audit) => sqlx::query(
                        "INSERT INTO pending_audit (\"partition\", \"offset\", kind, audit_id, outcome, day, written_at)
                         VALUES ($1, $2, 'resolved', $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(at.partition)
                    .bind(at.offset)
                    .bind(&audit.audit_id)
                    .bind(audit.outcome.as_str().to_ascii_lowercase())
                    .bind(local_day(audit.at, self.builder.zone))
                    .bind(audit.at),
                    AuditRecord::Depth(depth) => sqlx::query(
                        "INSERT INTO pending_audit (\"partition\", \"offset\", kind, day, written_at, by_category)
                         VALUES ($1, $2, 'depth', $3, $4, $5::jsonb) ON CONFLICT DO NOTHING",
                    )
                    .bind(at.partition)
                    .bind(at.offset)
                    .bind(local_day(depth.written_at, self.builder.zone))
                    .bind(depth.written_at)
                    .bind(serde_json::to_string(&depth.by_category).unwrap_or_else(|_| "{}".into())),
                    AuditRecord::Alert(_) | AuditRecord::Other(_) => continue,
                };
                query.execute(&mut *tx).await.map_err(classify)?;
            }
            ct_platform::clock::finish(&*self.builder, tx, topic, progress).await
        })
    }
}
