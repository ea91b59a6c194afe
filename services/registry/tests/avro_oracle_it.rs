//! The registry accepts exactly the Avro schemas that Avro's own Python parser accepts, over a
//! corpus of valid and invalid schemas (`testdata/avro/corpus.json`): a schema the registry
//! registers must be readable by every client, and a refusal names the problem (42201). The
//! canonical text it returns means what was sent: Avro's Parsing Canonical Form of both is equal.

use ct_testkit::{TestContext, repo_root};
use serde_json::{Value, json};

#[tokio::test]
async fn the_registry_agrees_with_avros_reference_parser() {
    let corpus_path = repo_root().join("testdata/avro/corpus.json");
    let corpus: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&corpus_path).unwrap()).unwrap();
    let sent_forms = canonical_forms(&corpus_path).await;
    let expected: Vec<bool> = sent_forms.iter().map(Option::is_some).collect();
    assert_eq!(expected.len(), corpus.len());
    assert!(expected.iter().any(|v| *v) && expected.iter().any(|v| !*v), "the corpus holds both kinds");

    let ctx = TestContext::new();
    let (url, stop) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let http = reqwest::Client::new();
    let mut disagreements = Vec::new();
    let mut returned = Vec::new();
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
        if accepted {
            let id = body["id"].as_i64().expect("an id");
            let stored: Value = http.get(format!("{url}/schemas/ids/{id}")).send().await.unwrap().json().await.unwrap();
            returned.push((index, stored["schema"].as_str().expect("schema text").to_owned()));
        }
        if accepted != *valid {
            disagreements.push(format!("{schema}: Avro says valid={valid}, the registry answered {status} {body}"));
        } else if !accepted {
            assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)), "{schema}: {body}");
        }
    }
    stop.cancel();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));

    let returned_path = std::env::temp_dir().join(format!("ct-avro-returned-{}.json", ctx.id));
    std::fs::write(&returned_path, serde_json::to_vec(&returned.iter().map(|(_, t)| t).collect::<Vec<_>>()).unwrap())
        .unwrap();
    let returned_forms = canonical_forms(&returned_path).await;
    for ((index, text), form) in returned.iter().zip(returned_forms) {
        assert!(form.is_some(), "Avro cannot parse the returned text {text}");
        assert_eq!(form, sent_forms[*index], "{} came back as {text}", corpus[*index]);
    }
}

/// Avro's Parsing Canonical Form of each schema text in the JSON list at `path` (None: invalid).
async fn canonical_forms(path: &std::path::Path) -> Vec<Option<String>> {
    let oracle = tokio::process::Command::new(ct_testkit::venv_bin("python"))
        .arg(repo_root().join("services/registry/tests/avro_oracle.py"))
        .arg(path)
        .output()
        .await
        .expect("python runs");
    assert!(oracle.status.success(), "{}", String::from_utf8_lossy(&oracle.stderr));
    serde_json::from_slice(&oracle.stdout).unwrap()
}
