//! The `dlq_items` handler: what a record of each input topic means for the read model. Pure
//! except for decoding audit records, whose writer schema comes from the registry.

use chrono::{DateTime, Utc};
use ct_core::dlq::{Audit, Category, Context, header};
use ct_platform::consumer::{Coordinates, Incoming};

/// One intended change of `dlq_items`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A categorised dead letter: insert it, or update the item when this is a later attempt.
    Parked(Box<Parked>),
    /// The item went back to its stage through the retry topic.
    HandedBack { item_id: String, attempt: i32, origin: String, at: DateTime<Utc> },
    /// An SRE replayed or skipped the item.
    Audited(Audit),
}

impl Change {
    /// The item this change is about.
    pub fn item_id(&self) -> &str {
        match self {
            Change::Parked(item) => &item.id,
            Change::HandedBack { item_id, .. } => item_id,
            Change::Audited(audit) => &audit.item_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parked {
    pub id: String,
    pub context: Context,
    pub category: Category,
    pub rule: String,
    /// The original record's key: the source system on `ct.events.v1`.
    pub source: Option<String>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: serde_json::Value,
    pub at: Coordinates,
    /// The record's eventId when it is an event (set by the pipeline, which decodes it).
    pub event_id: Option<String>,
}

fn record_time(record: &Incoming) -> DateTime<Utc> {
    record.timestamp_ms.and_then(DateTime::from_timestamp_millis).unwrap_or(DateTime::UNIX_EPOCH)
}

/// A record of a category topic. Its context is complete (the categoriser normalised it); the
/// fallbacks only matter for records written there by other tools.
pub fn parked(record: &Incoming) -> Change {
    let context = crate::routing::context_of(record, record_time(record));
    let category = record.header(header::CATEGORY).and_then(|c| c.parse().ok()).unwrap_or(Category::Critical);
    let headers = serde_json::Value::Object(
        record.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
    );
    Change::Parked(Box::new(Parked {
        id: context.item_id(),
        category,
        rule: record.header(header::RULE).unwrap_or("unknown").to_owned(),
        source: record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
        at: record.coordinates.clone(),
        context,
        event_id: None,
    }))
}

/// A record of the retry topic.
pub fn handed_back(record: &Incoming) -> Option<Change> {
    let stage = record.header(header::RETRY_STAGE)?;
    let context = crate::routing::context_of(record, record_time(record));
    Some(Change::HandedBack {
        item_id: ct_core::dlq::item_id(
            stage,
            &context.original_topic,
            context.original_partition,
            context.original_offset,
        ),
        attempt: record.header(header::RETRY_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(context.attempt as i32),
        origin: record.header(header::RETRY_ORIGIN).unwrap_or("unknown").to_owned(),
        at: record_time(record),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, headers: &[(&str, &str)]) -> Incoming {
        Incoming {
            coordinates: Coordinates { topic: topic.into(), partition: 0, offset: 3 },
            key: Some(b"finance".to_vec()),
            value: Some(vec![0, 0, 0, 0, 1, 2]),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            timestamp_ms: Some(1_790_000_000_000),
        }
    }

    #[test]
    fn a_categorised_record_becomes_an_item_of_its_original_record() {
        let change = parked(&record(
            "ct.dlq.schema.v1",
            &[
                (header::STAGE, "ct-projector"),
                (header::CATEGORY, "SCHEMA"),
                (header::RULE, "undecodable"),
                (header::ORIGINAL_TOPIC, "ct.events.v1"),
                (header::ORIGINAL_PARTITION, "4"),
                (header::ORIGINAL_OFFSET, "77"),
            ],
        ));
        let Change::Parked(item) = change else { panic!("not parked: {change:?}") };
        assert_eq!(item.id, "ct-projector:ct.events.v1:4:77");
        assert_eq!(
            (item.category, item.rule.as_str(), item.source.as_deref()),
            (Category::Schema, "undecodable", Some("finance"))
        );
        assert_eq!(item.headers[header::STAGE], "ct-projector");
        assert_eq!(item.at.topic, "ct.dlq.schema.v1");
        // Without a last-failure header the record's own timestamp is the failure time.
        assert_eq!(item.context.last_failure_at.timestamp_millis(), 1_790_000_000_000);
    }

    #[test]
    fn a_retry_record_hands_back_the_item_of_its_stage() {
        let retry = record(
            "ct.retry.v1",
            &[
                (header::STAGE, "ct-projector"),
                (header::RETRY_STAGE, "ct-projector"),
                (header::RETRY_ATTEMPT, "2"),
                (header::RETRY_ORIGIN, "replay"),
                (header::ORIGINAL_TOPIC, "ct.events.v1"),
                (header::ORIGINAL_PARTITION, "4"),
                (header::ORIGINAL_OFFSET, "77"),
            ],
        );
        let Some(Change::HandedBack { item_id, attempt, origin, .. }) = handed_back(&retry) else { panic!() };
        assert_eq!((item_id.as_str(), attempt, origin.as_str()), ("ct-projector:ct.events.v1:4:77", 2, "replay"));
        assert_eq!(handed_back(&record("ct.retry.v1", &[])), None);
    }
}
