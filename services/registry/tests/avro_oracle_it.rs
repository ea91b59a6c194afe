//! The registry accepts exactly the Avro schemas that Avro's own Python parser accepts, over a
//! corpus of valid and invalid schemas (`testdata/avro/corpus.json`): a schema the registry
//! registers must be readable by every client, and a refusal names the problem (42201).

use ct_testkit::{TestContext, repo_root};
use serde_json::{Value, json};

#[tokio::test]
async fn the_registry_agrees_with_avros_reference_parser() {
    let corpus_path = repo_root().join("testdata/avro/corpus.json");
    let corpus: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&corpus_path).unwrap()).unwrap();
    let oracle = tokio::process::Command::new(ct_testkit::venv_bin("python"))
        .arg(repo_root().join("services/registry/tests/avro_oracle.py"))
        .arg(&corpus_path)
        .output()
        .await
        .expect("python runs");
    assert!(oracle.status.success(), "{}", String::from_utf8_lossy(&oracle.stderr));
    let expected: Vec<bool> = serde_json::from_slice(&oracle.stdout).unwrap();
    assert_eq!(expected.len(), corpus.len());
    assert!(expected.iter().any(|v| *v) && expected.iter().any(|v| !*v), "the corpus holds both kinds");

    let ctx = TestContext::new();
    let (url, stop) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let http = reqwest::Client::new();
    let mut disagreements = Vec::new();
    for (index, (schema, valid)) in corpus.iter().zip(&expected).enumerate() {
        let response = http
            .post(format!("{url}/subjects/corpus-{index}/versions"))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&json!({"schema": schema}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let accepted = status == 200;
        if accepted != *valid {
            disagreements.push(format!("{schema}: Avro says valid={valid}, the registry answered {status} {body}"));
        } else if !accepted {
            assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)), "{schema}: {body}");
        }
    }
    stop.cancel();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
