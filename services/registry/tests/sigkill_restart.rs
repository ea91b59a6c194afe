//! The `ct-registry` process is SIGKILLed after writes and started again: it serves the same
//! subjects, versions and ids, because its whole state is the compacted `_schemas` topic.

use std::{
    net::TcpListener,
    process::{Child, Command},
    time::Duration,
};

use ct_testkit::TestContext;
use serde_json::{Value, json};

const CT: &str = "application/vnd.schemaregistry.v1+json";

struct Process {
    url: String,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(ctx: &TestContext, topic: &str) -> Process {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ct-registry"))
        .env("CT_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("CT_KAFKA__BOOTSTRAP_SERVERS", &ctx.kafka.bootstrap_servers)
        .env("CT_REGISTRY__TOPIC", topic)
        .env("CT_TELEMETRY__FILTER", "warn")
        .spawn()
        .expect("start ct-registry");
    let process = Process { url: format!("http://127.0.0.1:{port}"), child };
    let ready = ct_testkit::eventually(Duration::from_secs(60), || async {
        reqwest::get(format!("{}/schemas/types", process.url)).await.ok().filter(|r| r.status().is_success())
    })
    .await;
    assert!(ready.is_some(), "ct-registry did not answer within 60 s");
    process
}

async fn get(url: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{url}{path}")).await.expect("request");
    (response.status().as_u16(), response.json().await.expect("JSON"))
}

async fn register(url: &str, subject: &str, schema: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("content-type", CT)
        .body(json!({"schema": schema}).to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

async fn snapshot(url: &str) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for path in
        ["/subjects", "/subjects/k-value/versions", "/subjects/k-value/versions/2", "/schemas/ids/1", "/schemas/ids/2"]
    {
        out.push(get(url, path).await);
    }
    out
}

#[tokio::test]
async fn a_sigkilled_registry_restarts_with_the_same_subjects_versions_and_ids() {
    let ctx = TestContext::new();
    let topic = ctx.topic("_schemas");
    let spec = ct_platform::topics::TopicSpec {
        name: topic.clone(),
        partitions: 1,
        config: [("cleanup.policy".to_owned(), "compact".to_owned())].into(),
    };
    ct_platform::kafka::ensure_topics(&ctx.kafka, std::slice::from_ref(&spec)).await.unwrap();

    let first = start(&ctx, &topic).await;
    let v1 = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}"#;
    let id1 = register(&first.url, "k-value", v1).await;
    let id2 = register(&first.url, "k-value", v2).await;
    assert_ne!(id1, id2);
    let before = snapshot(&first.url).await;
    assert!(before.iter().all(|(status, _)| *status == 200), "{before:?}");
    drop(first); // SIGKILL: no shutdown hook runs

    let restarted = start(&ctx, &topic).await;
    assert_eq!(snapshot(&restarted.url).await, before, "the same state after SIGKILL and restart");
    assert_eq!(register(&restarted.url, "k-value", v2).await, id2, "re-registering returns the same id");
}
