//! A garbage record written straight to `ct.events.v1` by a third-party client (Apache Kafka's
//! own console producer) is dead-lettered by the projector, categorised SCHEMA, and listed by
//! `GET /dlq?category=schema`, while the pipeline keeps accepting events.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::stack;
use ct_testkit::{eventually, kafka_lib_dir};
use serde_json::json;

/// Writes `line` to `topic` with `kafka.tools.ConsoleProducer` from the stack's Kafka jars.
fn console_produce(bootstrap: &str, topic: &str, line: &str) {
    let classpath = kafka_lib_dir().join("*");
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(classpath)
        .args(["org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap, "--topic", topic])
        .args(["--property", "parse.key=true", "--property", "key.separator=|"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("java runs the Kafka console producer (deploy/stack.sh up installs both)");
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    assert!(child.wait().unwrap().success(), "console producer failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_event_topic_is_listed_as_a_schema_dead_letter() {
    let s = stack().await;
    let topic = s.events_topic.clone();
    let bootstrap = s.ctx.kafka.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || console_produce(&bootstrap, &topic, "portal|this is not avro {\"at\": all}"))
        .await
        .unwrap();

    let items = eventually(Duration::from_secs(30), || async {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), "/dlq?category=schema").await;
        (status == 200 && body.as_array().is_some_and(|a| !a.is_empty())).then_some(body)
    })
    .await
    .expect("the garbage record never appeared in GET /dlq?category=schema");
    let item = &items[0];
    assert_eq!(item["category"], "SCHEMA", "{item}");
    assert_eq!(item["state"], "parked");
    assert_eq!(item["step"], "decode");
    assert_eq!(item["source"], "portal");
    assert_eq!(item["original"]["topic"], json!(s.events_topic));
    assert!(item["error"].as_str().unwrap().contains("wire format"), "{item}");

    // The depth per category is in Redis (and in the categoriser's /metrics as ct_dlq_depth).
    let redis_config = s.ctx.redis();
    let redis = ct_platform::redis::connect(&redis_config).await.unwrap();
    let depth: std::collections::BTreeMap<String, i64> = eventually(Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let key = format!("{}:dlq:depth", redis_config.key_prefix);
        async move {
            let depth: std::collections::BTreeMap<String, i64> =
                redis::AsyncCommands::hgetall(&mut redis, key).await.ok()?;
            (depth.get("schema") == Some(&1)).then_some(depth)
        }
    })
    .await
    .expect("the DLQ depth never reached Redis");
    assert_eq!((depth["transient"], depth["critical"]), (0, 0), "{depth:?}");

    // The item in full: the original bytes are kept.
    let id = item["id"].as_str().unwrap();
    let (status, full, _) = s.get(Some("dev-token-maintainer"), &format!("/dlq/{id}")).await;
    assert_eq!(status, 200, "{full}");
    assert!(full["record"]["valueBase64"].as_str().is_some_and(|v| !v.is_empty()), "{full}");

    // The pipeline goes on accepting and projecting events.
    let event = json!({"eventId": "evt_after_garbage", "type": "system.heartbeat", "ts": "2026-11-20T10:00:00Z",
                       "source": "portal", "payload": {"systemId": "portal"}});
    assert_eq!(s.post("dev-token-portal", &event).await, 202);
    s.wait_events("source=portal", 1).await;

    // Filters, roles and bad parameters.
    assert!(s.get(Some("dev-token-maintainer"), "/dlq?category=critical").await.1.as_array().unwrap().is_empty());
    assert_eq!(
        s.get(Some("dev-token-maintainer"), "/dlq?source=portal&state=parked").await.1.as_array().unwrap().len(),
        1
    );
    assert_eq!(s.get(Some("dev-token-viewer"), "/dlq").await.0, 403);
    for (query, field) in
        [("category=weird", "category"), ("state=gone", "state"), ("from=x", "from"), ("limit=0", "limit")]
    {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), &format!("/dlq?{query}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    assert_eq!(s.get(Some("dev-token-maintainer"), "/dlq/nope:x:0:0").await.0, 404);
}

/// Pages of `GET /dlq` are keyed on what never changes for an item: an item that fails again
/// while a client pages (its `last_failure_at` moves to now) is listed once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_stable_while_items_fail_again() {
    let s = stack().await;
    let pool = ct_platform::postgres::connect(&s.ctx.dlq_postgres()).await.unwrap();
    ct_dlq_categoriser::store::migrate(&pool).await.unwrap();
    for (i, id) in ["dlq_a", "dlq_b", "dlq_c"].iter().enumerate() {
        sqlx::query(
            "INSERT INTO dlq_items (id, category, rule, stage, step, error_class, error_message, attempts,
                 first_failure_at, last_failure_at, original_topic, original_partition, original_offset, source,
                 headers, dlq_topic, dlq_partition, dlq_offset, state, state_changed_at)
             VALUES ($1, 'CRITICAL', 'r', 'ct-projector', 'apply', 'CRITICAL', 'm', 1,
                 $2, $2, 't', 0, $3, 'portal', '{}', 'd', 0, $3, 'parked', $2)",
        )
        .bind(id)
        .bind(chrono::Utc::now() - chrono::Duration::minutes(10 - i as i64))
        .bind(i as i64)
        .execute(&pool)
        .await
        .unwrap();
    }
    let (status, first, headers) = s.get(Some("dev-token-maintainer"), "/dlq?limit=1").await;
    assert_eq!(status, 200, "{first}");
    let mut seen = vec![first[0]["id"].as_str().unwrap().to_owned()];
    // The oldest item fails again: it is now the most recently failed one.
    sqlx::query("UPDATE dlq_items SET last_failure_at = now(), attempts = 2 WHERE id = 'dlq_a'")
        .execute(&pool)
        .await
        .unwrap();
    let mut cursor = headers.get("x-next-cursor").map(|c| c.to_str().unwrap().to_owned());
    while let Some(next) = cursor {
        let (status, page, headers) = s.get(Some("dev-token-maintainer"), &format!("/dlq?limit=1&cursor={next}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page.as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap().to_owned()));
        cursor = headers.get("x-next-cursor").map(|c| c.to_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["dlq_c", "dlq_b", "dlq_a"], "every item once, newest first failure first");
}
