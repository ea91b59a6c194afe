//! The two topic-to-topic stages, as routers for [`ct_platform::relay`]: categorising dead
//! letters, and handing transient ones back to their stage once due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ct_core::dlq::{Category, Context, Rules, header, retry_due};
use ct_platform::{
    consumer::Incoming,
    relay::{Route, Router},
};

use crate::Topics;

/// The dead-letter context of a record; one without any gets a complete one (see
/// [`Context::from_headers`]).
pub fn context_of(record: &Incoming, now: DateTime<Utc>) -> Context {
    let c = &record.coordinates;
    Context::from_headers(|name| record.header(name), (&c.topic, c.partition, c.offset), now)
}

/// `ct.dlq.v1` -> the topic of the category the rules choose. The forwarded record carries its
/// complete context (normalised) plus the category and the rule that chose it.
pub struct Categorise {
    pub rules: Rules,
    pub topics: Topics,
}

impl Router for Categorise {
    fn route(&self, record: &Incoming, now: DateTime<Utc>) -> Route {
        let context = context_of(record, now);
        let decision = self.rules.categorise(&context);
        metrics::counter!("ct_dlq_categorised_total", "category" => decision.category.lowercase(), "rule" => decision.rule.clone())
            .increment(1);
        tracing::info!(item = %context.item_id(), category = %decision.category, rule = %decision.rule, attempt = context.attempt, "Dead letter categorised.");
        let mut headers: Vec<(String, String)> =
            context.headers().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        headers.push((header::CATEGORY.to_owned(), decision.category.as_str().to_owned()));
        headers.push((header::RULE.to_owned(), decision.rule));
        Route::Forward { topic: self.topics.category(decision.category).to_owned(), headers }
    }
}

/// `ct.dlq.transient.v1` -> `ct.retry.v1` once the item's backoff has passed.
pub struct RetryWhenDue {
    pub retry_topic: String,
    pub base: Duration,
    pub cap: Duration,
}

impl Router for RetryWhenDue {
    fn route(&self, record: &Incoming, now: DateTime<Utc>) -> Route {
        let context = context_of(record, now);
        let due = retry_due(&context, self.base, self.cap);
        if due > now {
            return Route::NotBefore(due);
        }
        tracing::info!(item = %context.item_id(), attempt = context.attempt, "Transient dead letter handed back to its stage.");
        Route::Forward {
            topic: self.retry_topic.clone(),
            headers: vec![
                (header::RETRY_STAGE.to_owned(), context.stage.clone()),
                (header::RETRY_ATTEMPT.to_owned(), context.attempt.to_string()),
                (header::RETRY_ORIGIN.to_owned(), "scheduler".to_owned()),
            ],
        }
    }
}

impl Topics {
    pub fn category(&self, category: Category) -> &str {
        match category {
            Category::Schema => &self.schema,
            Category::Transient => &self.transient,
            Category::Critical => &self.critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use ct_platform::consumer::Coordinates;

    use super::*;

    fn topics() -> Topics {
        Topics {
            dlq: "dlq".into(),
            schema: "s".into(),
            transient: "t".into(),
            critical: "c".into(),
            retry: "r".into(),
            audit: "a".into(),
        }
    }

    fn record(headers: &[(&str, &str)]) -> Incoming {
        Incoming {
            coordinates: Coordinates { topic: "dlq".into(), partition: 1, offset: 5 },
            key: Some(b"portal".to_vec()),
            value: Some(b"garbage".to_vec()),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            timestamp_ms: None,
        }
    }

    fn rules() -> Rules {
        Rules {
            max_transient_attempts: 3,
            rules: vec![ct_core::dlq::CategoryRule {
                name: "down".into(),
                category: Category::Transient,
                when: ct_core::dlq::Conditions { error_class: Some("TRANSIENT".into()), ..Default::default() },
            }],
        }
    }

    fn header_of<'a>(route: &'a Route, name: &str) -> Option<&'a str> {
        let Route::Forward { headers, .. } = route else { return None };
        headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn categorised_records_carry_a_complete_context_and_the_rule() {
        let router = Categorise { rules: rules(), topics: topics() };
        let route =
            router.route(&record(&[(header::ERROR_CLASS, "TRANSIENT"), (header::STAGE, "ct-projector")]), Utc::now());
        assert!(matches!(&route, Route::Forward { topic, .. } if topic == "t"), "{route:?}");
        assert_eq!(header_of(&route, header::CATEGORY), Some("TRANSIENT"));
        assert_eq!(header_of(&route, header::RULE), Some("down"));
        assert_eq!(header_of(&route, header::ORIGINAL_OFFSET), Some("5"));
        let bare = router.route(&record(&[]), Utc::now());
        assert!(matches!(&bare, Route::Forward { topic, .. } if topic == "c"), "{bare:?}");
        assert_eq!(header_of(&bare, header::STAGE), Some("unknown"));
    }

    #[test]
    fn transient_items_wait_for_their_backoff_then_go_back_to_their_stage() {
        let router =
            RetryWhenDue { retry_topic: "r".into(), base: Duration::from_secs(2), cap: Duration::from_secs(60) };
        let failed = "2026-11-24T10:00:00+00:00";
        let record =
            record(&[(header::STAGE, "ct-projector"), (header::ATTEMPT, "2"), (header::LAST_FAILURE_AT, failed)]);
        let failed_at: DateTime<Utc> = failed.parse().unwrap();
        let early = failed_at + chrono::Duration::seconds(3);
        assert_eq!(router.route(&record, early), Route::NotBefore(failed_at + chrono::Duration::seconds(4)));
        let route = router.route(&record, failed_at + chrono::Duration::seconds(4));
        assert_eq!(header_of(&route, header::RETRY_STAGE), Some("ct-projector"));
        assert_eq!(header_of(&route, header::RETRY_ATTEMPT), Some("2"));
    }
}
