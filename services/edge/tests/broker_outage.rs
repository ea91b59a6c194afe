//! The broker dies while requests are in flight: every request that got 202 is on the topic
//! once the broker is back, and every other one got a retryable 5xx that succeeds when retried
//! with the same eventId.
//!
//! One test in its own binary: cargo runs test binaries one at a time, so stopping the shared
//! broker here disturbs no other test.

mod common;

use std::{collections::BTreeMap, process::Command, sync::Arc, time::Duration};

use common::{TestEdge, event};
use tokio::sync::Mutex;

fn stack(args: &[&str]) {
    let status = Command::new("bash")
        .arg(ct_testkit::repo_root().join("deploy/stack.sh"))
        .args(args)
        .status()
        .expect("run deploy/stack.sh");
    assert!(status.success(), "deploy/stack.sh {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_broker_crash_and_the_rest_are_retryable() {
    let edge = Arc::new(TestEdge::start_with(|c| c.events.delivery_timeout_ms = 4_000).await);
    let outcomes: Arc<Mutex<BTreeMap<String, u16>>> = Arc::default();

    let sender = {
        let (edge, outcomes) = (Arc::clone(&edge), Arc::clone(&outcomes));
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..300 {
                let (edge, outcomes) = (Arc::clone(&edge), Arc::clone(&outcomes));
                handles.push(tokio::spawn(async move {
                    let id = format!("evt_outage_{i:04}");
                    let (status, _, _) = edge.send("dev-token-finance", &event(&id).to_string()).await;
                    outcomes.lock().await.insert(id, status);
                }));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for handle in handles {
                handle.await.expect("request task");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    tokio::task::spawn_blocking(|| stack(&["down", "kafka", "--kill"])).await.unwrap();
    sender.await.expect("sender");
    tokio::task::spawn_blocking(|| stack(&["up"])).await.unwrap();

    let outcomes = outcomes.lock().await.clone();
    let accepted: Vec<_> = outcomes.iter().filter(|(_, s)| **s == 202).map(|(id, _)| id.clone()).collect();
    let refused: Vec<_> = outcomes.iter().filter(|(_, s)| **s != 202).collect();
    assert_eq!(outcomes.len(), 300);
    assert!(!refused.is_empty(), "the outage should have refused some requests");
    for (id, status) in &refused {
        assert!(matches!(**status, 500..=599), "{id} got {status}, not a retryable 5xx");
    }

    // Producers retry the refused ones with the same eventId.
    for (id, _) in &refused {
        let body = event(id).to_string();
        let retried = ct_testkit::eventually(Duration::from_secs(60), || async {
            let (status, _, _) = edge.send("dev-token-finance", &body).await;
            (status == 202).then_some(())
        })
        .await;
        assert!(retried.is_some(), "{id} was never accepted on retry");
    }

    let registry = edge.registry();
    let mut on_topic: BTreeMap<String, usize> = BTreeMap::new();
    for record in edge.records() {
        let decoded = registry.decode_event(&record.value).await.expect("decodes");
        *on_topic.entry(decoded.event_id().to_owned()).or_default() += 1;
    }
    let lost: Vec<_> = accepted.iter().filter(|id| !on_topic.contains_key(*id)).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
    assert_eq!(on_topic.len(), 300, "every event is on the topic after the retries");
    let doubled = on_topic.values().filter(|n| **n > 1).count();
    eprintln!(
        "outage: {} accepted first time, {} retried, {doubled} eventIds written twice (timed out yet stored)",
        accepted.len(),
        refused.len()
    );
}
