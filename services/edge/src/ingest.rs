//! The path every accepted event takes, from HTTP push and pull polling alike: parse and redact,
//! claim the `eventId`, encode Avro in the Confluent wire format, produce with `acks=all`, and
//! answer only after the broker acknowledged.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use ct_core::{
    Envelope,
    avro::{self, wire},
    catalogue::{Catalogue, Ownership},
    envelope::ParseOptions,
    event_type::EventType,
    json::Json,
    payload::Payload,
    redact::{RedactionReport, Redactor},
};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tracing::Instrument as _;

use crate::{
    error::ApiError,
    idempotency::{self, Claim, IdempotencyStore, Receipt},
};

/// The result of an accepted (or recognised duplicate) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: String,
    pub receipt: Receipt,
    pub duplicate: bool,
}

/// A validated, redacted event, its record value (Confluent wire format, encoded once) and its
/// content digest (what "the same event" means for idempotency, identical for every door).
pub struct Candidate {
    pub event: Envelope,
    pub digest: String,
    pub value: Vec<u8>,
}

/// Why events were not accepted; `index` is the event at fault when there were several.
#[derive(Debug)]
pub struct Refused {
    pub index: Option<usize>,
    pub error: ApiError,
}

impl Refused {
    fn whole(error: ApiError) -> Self {
        Self { index: None, error }
    }
}

/// The ingest path's metric handles, registered once: looking a metric up by name and labels per
/// event costs a hash and a comparison of every label.
pub struct IngestMetrics {
    accepted: Vec<(EventType, metrics::Counter)>,
    duplicates: metrics::Counter,
    produce_duration: metrics::Histogram,
}

impl IngestMetrics {
    /// Handles of the global recorder, installed here if it is not yet (a handle taken before
    /// would record nowhere).
    pub fn new() -> Self {
        ct_platform::metrics::install();
        Self {
            accepted: EventType::ALL
                .iter()
                .map(|t| (*t, metrics::counter!("ct_edge_events_accepted_total", "type" => t.as_str())))
                .collect(),
            duplicates: metrics::counter!("ct_edge_duplicates_total"),
            produce_duration: metrics::histogram!("ct_edge_produce_duration_seconds"),
        }
    }

    fn accepted(&self, event_type: EventType) {
        if let Some((_, counter)) = self.accepted.iter().find(|(t, _)| *t == event_type) {
            counter.increment(1);
        }
    }
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Ingestor {
    pub producer: FutureProducer,
    /// Which source may speak for which system (heartbeats).
    pub catalogue: std::sync::Arc<Catalogue>,
    pub topic: String,
    pub schema_id: u32,
    pub redactor: Redactor,
    pub idempotency: IdempotencyStore,
    pub max_future_skew: chrono::Duration,
    pub metrics: IngestMetrics,
}

/// A W3C `traceparent` for the record: the caller's when valid, otherwise a new root.
pub fn traceparent_for(incoming: Option<&str>) -> String {
    if let Some(tp) = incoming.filter(|tp| ct_platform::telemetry::trace_id_of(tp).is_some()) {
        return tp.to_owned();
    }
    // Trace id (16 bytes) and span id (8), written straight into `00-<trace>-<span>-01`.
    let ids: [u8; 24] = rand::random();
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex::encode_to_slice(&ids[..16], &mut text[3..35]).expect("32 hex digits for 16 bytes");
    hex::encode_to_slice(&ids[16..], &mut text[36..52]).expect("16 hex digits for 8 bytes");
    String::from_utf8(text.to_vec()).expect("hex digits and dashes are ASCII")
}

fn store_unavailable(error: idempotency::StoreError) -> ApiError {
    tracing::warn!(%error, "Idempotency store unavailable.");
    ApiError::unavailable(
        "idempotency_unavailable",
        "the idempotency store is unavailable; retry with the same eventId",
    )
}

/// The answer to a claim that found the id held: by different content, or by the same content
/// still being produced.
fn held_elsewhere(claim: &Claim) -> ApiError {
    let error = if *claim == Claim::Conflict {
        ApiError::new(
            StatusCode::CONFLICT,
            "event_id_conflict",
            "this eventId was already accepted with a different body",
        )
    } else {
        ApiError::unavailable("in_flight", "an identical request with this eventId is being processed; retry")
    };
    error.with_field("eventId")
}

impl Ingestor {
    /// Validates and redacts an event (counting redactions by kind); a 422 names the field and the rule.
    pub fn parse(&self, body: &Json<'_>) -> Result<(Envelope, RedactionReport), ApiError> {
        let options =
            ParseOptions { redactor: &self.redactor, received_at: Utc::now(), max_future_skew: self.max_future_skew };
        let (event, report) = Envelope::parse_json(body, &options).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("{} (rule: {})", e.message, e.rule),
            )
            .with_field(e.field)
        })?;
        self.check_ownership(&event)?;
        // Counted here so pushed and polled events both show in the metric.
        for (kind, count) in &report.counts {
            metrics::counter!("ct_edge_redactions_total", "kind" => kind.as_str()).increment(u64::from(*count));
        }
        Ok((event, report))
    }

    /// A heartbeat speaks for a system: only a catalogued one, and only from its owner, so no
    /// producer can invent systems or turn another's status.
    fn check_ownership(&self, event: &Envelope) -> Result<(), ApiError> {
        let Payload::SystemHeartbeat(heartbeat) = event.payload() else { return Ok(()) };
        match self.catalogue.ownership(&heartbeat.system_id, event.source()) {
            Ownership::Owner => Ok(()),
            Ownership::UnknownSystem => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("`{}` is not a catalogued system (rule: unknown_system)", heartbeat.system_id),
            )
            .with_field("payload.systemId")),
            Ownership::OwnedBy(owner) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_system",
                format!(
                    "system `{}` belongs to source `{owner}`; `{}` may not speak for it",
                    heartbeat.system_id,
                    event.source()
                ),
            )
            .with_field("payload.systemId")),
        }
    }

    /// Encodes `event` as the record it will be (with the trace id of `traceparent`) and takes
    /// its content digest from that one encoding.
    pub fn candidate(&self, mut event: Envelope, traceparent: &str) -> Result<Candidate, ApiError> {
        if let Some(trace_id) = ct_platform::telemetry::trace_id_of(traceparent) {
            event.set_trace_id(trace_id);
        }
        let mut value = Vec::with_capacity(256);
        wire::write_header(self.schema_id, &mut value);
        let digest = avro::encode_event_with_digest(&event, &mut value).map_err(|e| {
            tracing::error!(error = %e, "Avro encoding of a validated event failed.");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        })?;
        Ok(Candidate { event, digest, value })
    }

    /// Claims the id, produces, and records the receipt: [`Ingestor::accept_all`] for one event,
    /// without its per-batch bookkeeping (the path of every `POST /events`).
    pub async fn accept(&self, event: Envelope, traceparent: &str) -> Result<Accepted, ApiError> {
        let candidate = self.candidate(event, traceparent)?;
        let (event_id, digest) = (candidate.event.event_id(), candidate.digest.as_str());
        let owner = idempotency::new_owner();
        let mut claims = self.idempotency.claim_all(&[(event_id, digest)], &owner).await.map_err(store_unavailable)?;
        match claims.pop().expect("one answer per claimed id") {
            Claim::Claimed => {}
            Claim::Duplicate(receipt) => {
                self.metrics.duplicates.increment(1);
                return Ok(Accepted { event_id: event_id.to_owned(), receipt, duplicate: true });
            }
            held => return Err(held_elsewhere(&held)),
        }
        match self.produce(&candidate, traceparent).await {
            Ok(receipt) => {
                self.metrics.accepted(candidate.event.event_type());
                self.idempotency.complete_later(&[(event_id, digest, &receipt)], &owner);
                Ok(Accepted { event_id: event_id.to_owned(), receipt, duplicate: false })
            }
            Err(error) => {
                self.idempotency.release_later(&[event_id], &owner);
                Err(error)
            }
        }
    }

    /// Accepts events together: one Redis round trip claims every id, all records are produced
    /// at once, and one round trip records the receipts. Nothing is produced unless every id could
    /// be claimed or is a recognised duplicate. When some records are not acknowledged, the
    /// acknowledged ones keep their receipts (a retry of the same events answers them as
    /// duplicates) and the rest are released, so retrying the same events is always safe.
    pub async fn accept_all(&self, candidates: Vec<Candidate>, traceparent: &str) -> Result<Vec<Accepted>, Refused> {
        let redis_down = |error| Refused::whole(store_unavailable(error));
        let owner = idempotency::new_owner();
        let keys: Vec<(&str, &str)> = candidates.iter().map(|c| (c.event.event_id(), c.digest.as_str())).collect();
        let claims = self.idempotency.claim_all(&keys, &owner).await.map_err(redis_down)?;
        let claimed_ids =
            || claims.iter().zip(&keys).filter(|(claim, _)| **claim == Claim::Claimed).map(|(_, (id, _))| *id);
        if let Some((index, claim)) =
            claims.iter().enumerate().find(|(_, claim)| matches!(claim, Claim::Conflict | Claim::InFlight))
        {
            let ours: Vec<&str> = claimed_ids().collect();
            self.idempotency.release_later(&ours, &owner);
            return Err(Refused { index: Some(index), error: held_elsewhere(claim) });
        }
        drop(keys);

        let produced = futures::future::join_all(candidates.iter().zip(&claims).map(|(candidate, claim)| {
            let claimed = *claim == Claim::Claimed;
            async move { if claimed { Some(self.produce(candidate, traceparent).await) } else { None } }
        }))
        .await;

        let mut receipts = Vec::new();
        let mut failed = Vec::new();
        for (index, (candidate, outcome)) in candidates.iter().zip(&produced).enumerate() {
            match outcome {
                Some(Ok(receipt)) => {
                    // Counted when stored, even if another event of the batch then fails.
                    self.metrics.accepted(candidate.event.event_type());
                    receipts.push((candidate.event.event_id(), candidate.digest.as_str(), receipt));
                }
                Some(Err(_)) => failed.push((index, candidate.event.event_id())),
                None => {}
            }
        }
        self.idempotency.complete_later(&receipts, &owner);
        if let Some(&(first_failed, _)) = failed.first() {
            let ids: Vec<&str> = failed.iter().map(|(_, id)| *id).collect();
            self.idempotency.release_later(&ids, &owner);
            let error = produced
                .into_iter()
                .nth(first_failed)
                .flatten()
                .and_then(Result::err)
                .expect("the first failed outcome is an error");
            return Err(Refused { index: Some(first_failed), error });
        }

        Ok(candidates
            .into_iter()
            .zip(claims)
            .zip(produced)
            .map(|((candidate, claim), outcome)| {
                let event_id = candidate.event.event_id().to_owned();
                match (claim, outcome) {
                    (Claim::Duplicate(receipt), _) => {
                        self.metrics.duplicates.increment(1);
                        Accepted { event_id, receipt, duplicate: true }
                    }
                    (_, Some(Ok(receipt))) => Accepted { event_id, receipt, duplicate: false },
                    _ => unreachable!("refusals and failures returned above"),
                }
            })
            .collect())
    }

    async fn produce(&self, candidate: &Candidate, traceparent: &str) -> Result<Receipt, ApiError> {
        // The producer span (messaging conventions); the record carries its context, so the
        // consumer's span is its child. Without an exporter the request's traceparent is kept.
        let span = tracing::info_span!(
            target: ct_platform::telemetry::TRACE_TARGET,
            "publish",
            otel.name = format!("{} publish", self.topic),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %self.topic,
            messaging.message.id = candidate.event.event_id(),
        );
        let header = ct_platform::telemetry::traceparent_of(&span);
        self.send(candidate, header.as_deref().unwrap_or(traceparent)).instrument(span).await
    }

    async fn send(&self, candidate: &Candidate, traceparent: &str) -> Result<Receipt, ApiError> {
        let (event, value) = (&candidate.event, &candidate.value);
        let mut schema_id = itoa::Buffer::new();
        let schema_id = schema_id.format(self.schema_id);
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header { key: "traceparent", value: Some(traceparent) })
            .insert(Header { key: "content-type", value: Some("application/vnd.ct.event.v1+avro") })
            .insert(Header { key: "ct-schema-id", value: Some(schema_id) });
        let record = FutureRecord::to(&self.topic).key(event.source().as_str()).payload(&value).headers(headers);
        let started = Instant::now();
        let delivery = match self.producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                metrics::counter!("ct_edge_backpressure_total", "reason" => "queue_full").increment(1);
                return Err(ApiError::unavailable(
                    "backpressure",
                    "the broker is not keeping up; retry with the same eventId",
                ));
            }
            Err((error, _)) => {
                tracing::warn!(%error, "Producing an event failed.");
                return Err(ApiError::unavailable(
                    "broker_unavailable",
                    "the event was not stored; retry with the same eventId",
                ));
            }
        };
        let outcome = delivery.await;
        self.metrics.produce_duration.record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(d)) => Ok(Receipt { topic: self.topic.clone(), partition: d.partition, offset: d.offset }),
            Ok(Err((error, _))) => {
                metrics::counter!("ct_edge_backpressure_total", "reason" => "delivery_failed").increment(1);
                tracing::warn!(%error, "The broker did not acknowledge an event.");
                Err(ApiError::unavailable(
                    "broker_unavailable",
                    "the broker did not acknowledge the event; retry with the same eventId",
                ))
            }
            Err(_) => {
                Err(ApiError::unavailable("broker_unavailable", "the producer shut down; retry with the same eventId"))
            }
        }
    }
}

/// How long a claim lives without a receipt: the delivery timeout plus a margin.
pub fn pending_ttl(delivery_timeout: Duration) -> Duration {
    delivery_timeout + Duration::from_secs(5)
}
