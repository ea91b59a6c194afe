//! The events side of the digest: what each event adds to its local day
//! (`ct_core::digest::observe`, pure), stored as one row of `pending_events` (the event's facts
//! in (metric, dimension) order) with its partition and offset until a clock tick whose offsets
//! cover it folds them in (`builder.rs`).
//!
//! Each batch claims its events' ids in `counted` as it stores them, and keeps the facts of the
//! ids it claimed: a second copy of an event (the same id later in the log) stores nothing. The
//! claim is spread over the batches, so a tick's fold only moves facts into the day counts.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use chrono::NaiveDate;
use ct_core::{
    digest::{self, Fact},
    kpi::{self, Mark},
};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    registry::RegistryClient,
};
use sqlx::PgPool;

use crate::builder::Builder;

/// The consumer of the events topic.
pub struct Counting {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub builder: Arc<Builder>,
}

/// One event's facts, or nothing for a record the digest cannot read.
pub struct Observed {
    pub event_id: String,
    pub facts: Vec<Fact>,
    /// What the event says for the KPIs.
    pub mark: Option<Mark>,
}

/// The facts of the events claimed now, one element per fact; the statement groups them into
/// one row per event.
#[derive(Default)]
struct FactColumns<'a> {
    partition: Vec<i32>,
    offset: Vec<i64>,
    day: Vec<NaiveDate>,
    metric: Vec<&'static str>,
    dimension: Vec<&'a str>,
    amount: Vec<i64>,
}

/// An event's facts in (metric, dimension) byte order, the order of their row's arrays.
fn sorted(mut facts: Vec<Fact>) -> Vec<Fact> {
    facts.sort_by(|a, b| (a.metric, &a.dimension).cmp(&(b.metric, &b.dimension)));
    facts
}

impl<'a> FactColumns<'a> {
    /// `facts` as [`sorted`] left them (when the record was decoded).
    fn push(&mut self, at: &Coordinates, facts: &'a [Fact]) {
        for fact in facts {
            self.partition.push(at.partition);
            self.offset.push(at.offset);
            self.day.push(fact.day);
            self.metric.push(fact.metric);
            self.dimension.push(&fact.dimension);
            self.amount.push(fact.amount);
        }
    }
}

/// Claims in `counted` the ids of the events in `items` that have facts, for the first copy of
/// each (lowest partition and offset); returns where the copies claimed now (ids not counted
/// before) are: a second copy in the same batch is not among them.
async fn claim_first_copies(
    tx: &mut sqlx::PgConnection,
    items: &[(Coordinates, Observed)],
) -> Result<HashSet<(i32, i64)>, sqlx::Error> {
    let mut firsts: Vec<&(Coordinates, Observed)> = items.iter().filter(|(_, o)| !o.facts.is_empty()).collect();
    firsts.sort_by_key(|(at, _)| (at.partition, at.offset));
    let mut seen = HashSet::with_capacity(firsts.len());
    firsts.retain(|(_, o)| seen.insert(o.event_id.as_str()));
    // One key order for every writer, so two instances claiming overlapping ids cannot deadlock.
    firsts.sort_unstable_by(|(_, a), (_, b)| a.event_id.cmp(&b.event_id));
    if firsts.is_empty() {
        return Ok(HashSet::new());
    }
    let claimed: Vec<String> = sqlx::query_scalar(
        "INSERT INTO counted (event_id, day) SELECT * FROM UNNEST($1::text[], $2::date[])
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(firsts.iter().map(|(_, o)| o.event_id.as_str()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|(_, o)| o.facts[0].day).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let claimed: HashSet<String> = claimed.into_iter().collect();
    Ok(firsts
        .into_iter()
        .filter(|(_, o)| claimed.contains(&o.event_id))
        .map(|(at, _)| (at.partition, at.offset))
        .collect())
}

impl Pipeline for Counting {
    type Item = Observed;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Observed, ProcessError>> {
        Box::pin(async move {
            // The projector owns the dead letters of the events topic; a record it cannot decode,
            // this reader cannot either, so it is counted as undecodable here rather than parked a
            // second time. An unreachable registry still pauses.
            let undecodable = || {
                metrics::counter!("ct_digest_undecodable_records_total").increment(1);
                Observed { event_id: String::new(), facts: Vec::new(), mark: None }
            };
            Ok(match self.registry.decode_event_or_skip(record).await? {
                Some(event) => Observed {
                    event_id: event.event_id().to_owned(),
                    facts: sorted(digest::observe(&event, self.builder.zone)),
                    mark: kpi::mark(&event),
                },
                None => undecodable(),
            })
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(self.builder.stored_progress(&self.pool, topic))
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Observed)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await.map_err(classify)?;
            let mut fresh = claim_first_copies(&mut tx, items).await.map_err(classify)?;
            let mut columns = FactColumns::default();
            // Each claimed record once: a batch can hold a record twice (read again after its
            // partition was revoked and given back), and both copies would share one row.
            for (at, observed) in items.iter().filter(|(at, _)| fresh.remove(&(at.partition, at.offset))) {
                columns.push(at, &observed.facts);
            }
            // A plain insert: the claim above made each row new, and `ON CONFLICT` would add a
            // speculative-insertion record to the WAL per row.
            if !columns.partition.is_empty() {
                sqlx::query(
                    "INSERT INTO pending_events (\"partition\", \"offset\", day, metrics, dimensions, amounts)
                     SELECT p, o, min(d), array_agg(m ORDER BY n), array_agg(dim ORDER BY n), array_agg(a ORDER BY n)
                     FROM UNNEST($1::int[], $2::bigint[], $3::date[], $4::text[], $5::text[], $6::bigint[])
                         WITH ORDINALITY AS fact(p, o, d, m, dim, a, n)
                     GROUP BY p, o",
                )
                .bind(&columns.partition)
                .bind(&columns.offset)
                .bind(&columns.day)
                .bind(&columns.metric)
                .bind(&columns.dimension)
                .bind(&columns.amount)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            let marks: Vec<(&str, &Mark)> =
                items.iter().filter_map(|(_, o)| o.mark.as_ref().map(|m| (o.event_id.as_str(), m))).collect();
            if !marks.is_empty() {
                // A second copy of an event (same id) marks nothing more.
                sqlx::query(
                    "INSERT INTO kpi_marks (event_id, kind, key, edge, subsystem, outcome, at)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(marks.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .bind(marks.iter().map(|(_, m)| m.kind).collect::<Vec<_>>())
                .bind(marks.iter().map(|(_, m)| m.key.as_str()).collect::<Vec<_>>())
                .bind(marks.iter().map(|(_, m)| m.end.as_str()).collect::<Vec<_>>())
                .bind(marks.iter().map(|(_, m)| m.subsystem.as_str()).collect::<Vec<_>>())
                .bind(marks.iter().map(|(_, m)| m.outcome.as_str()).collect::<Vec<_>>())
                .bind(marks.iter().map(|(_, m)| m.at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            ct_platform::clock::finish(&*self.builder, tx, topic, progress).await
        })
    }
}
