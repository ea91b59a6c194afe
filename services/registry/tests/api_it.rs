//! The registry's REST API on the real broker: each test gets its own `_schemas` topic.

use std::time::Duration;

use ct_testkit::TestContext;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const CT: &str = "application/vnd.schemaregistry.v1+json";
const V1: &str = r#"{"type":"record","name":"Order","namespace":"t","fields":[{"name":"id","type":"string"}]}"#;
const V2_DEFAULT: &str = r#"{"type":"record","name":"Order","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}"#;
const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"Order","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"note","type":"string"}]}"#;

/// The text the registry stores and returns for `schema` (see `canonical.rs`).
fn canonical(schema: &str) -> String {
    ct_registry::canonical::to_text(&ct_registry::canonical::canonical(&serde_json::from_str(schema).unwrap()))
}

struct Registry {
    url: String,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

async fn start(ctx: &TestContext, topic: &str) -> Registry {
    let (url, shutdown) = ct_registry::spawn_local(ctx.kafka.clone(), topic).await.expect("registry starts");
    Registry { url, shutdown, http: reqwest::Client::new() }
}

async fn schemas_topic(ctx: &TestContext) -> String {
    ctx.topic("_schemas")
}

impl Registry {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.header("content-type", CT).body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        if status < 500 {
            assert_eq!(response.headers()["content-type"], CT, "{path}");
        }
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(&format!("/subjects/{subject}/versions"), json!({"schema": schema})).await
    }
}

#[tokio::test]
async fn register_lookup_and_read_back() {
    let ctx = TestContext::new();
    let topic = schemas_topic(&ctx).await;
    let r = start(&ctx, &topic).await;

    assert_eq!(r.register("orders-value", V1).await, (200, json!({"id": 1})));
    assert_eq!(r.register("orders-value", V1).await, (200, json!({"id": 1})), "same schema, same id");
    // The same schema under a second subject reuses its id.
    assert_eq!(r.register("other%2Fname-value", V1).await, (200, json!({"id": 1})));
    assert_eq!(r.register("orders-value", V2_DEFAULT).await, (200, json!({"id": 2})));

    assert_eq!(r.get("/subjects").await, (200, json!(["orders-value", "other/name-value"])));
    assert_eq!(r.get("/subjects/orders-value/versions").await, (200, json!([1, 2])));
    let (status, latest) = r.get("/subjects/orders-value/versions/latest").await;
    assert_eq!((status, latest["version"].clone(), latest["id"].clone()), (200, json!(2), json!(2)));
    assert_eq!(latest["schema"], canonical(V2_DEFAULT));
    let (_, raw) = r.get("/subjects/orders-value/versions/1/schema").await;
    assert_eq!(raw, serde_json::from_str::<Value>(&canonical(V1)).unwrap());
    let (status, by_id) = r.get("/schemas/ids/2").await;
    assert_eq!((status, &by_id["schema"]), (200, &json!(canonical(V2_DEFAULT))));
    assert_eq!(
        r.get("/schemas/ids/1/versions").await,
        (200, json!([{"subject": "orders-value", "version": 1}, {"subject": "other/name-value", "version": 1}]))
    );
    assert_eq!(r.get("/schemas/types").await, (200, json!(["AVRO"])));

    let (status, found) = r.post("/subjects/orders-value?normalize=False&deleted=False", json!({"schema": V1})).await;
    assert_eq!((status, found["version"].clone(), found["id"].clone()), (200, json!(1), json!(1)));
    r.shutdown.cancel();
}

#[tokio::test]
async fn errors_use_confluent_codes() {
    let ctx = TestContext::new();
    let topic = schemas_topic(&ctx).await;
    let r = start(&ctx, &topic).await;
    r.register("s-value", V1).await;

    let code = |(status, body): (u16, Value)| (status, body["error_code"].as_u64().unwrap_or(0));
    assert_eq!(code(r.get("/subjects/nope/versions").await), (404, 40401));
    assert_eq!(code(r.get("/subjects/s-value/versions/9").await), (404, 40402));
    assert_eq!(code(r.get("/schemas/ids/999").await), (404, 40403));
    assert_eq!(code(r.post("/subjects/s-value", json!({"schema": V2_NO_DEFAULT})).await), (404, 40403));
    assert_eq!(code(r.post("/subjects/nope", json!({"schema": V1})).await), (404, 40401));
    assert_eq!(code(r.get("/subjects/s-value/versions/0").await), (422, 42202));
    assert_eq!(code(r.get("/subjects/s-value/versions/abc").await), (422, 42202));
    assert_eq!(code(r.register("s-value", r#"{"type":"recrod"}"#).await), (422, 42201));
    assert_eq!(
        code(r.post("/subjects/s-value/versions", json!({"schema": V1, "schemaType": "PROTOBUF"})).await),
        (422, 42201)
    );
    assert_eq!(code(r.put("/config", json!({"compatibility": "SIDEWAYS"})).await), (422, 42203));
    assert_eq!(code(r.get("/config/s-value").await), (404, 40408));
    assert_eq!(code(r.delete("/subjects/s-value?permanent=true").await), (404, 40405));
    assert_eq!(code(r.register("s-value", V2_NO_DEFAULT).await), (409, 409));
    // A path segment that is not UTF-8 is refused by the framework, in the same JSON shape.
    assert_eq!(code(r.get("/subjects/%FF/versions").await), (400, 400));

    // Malformed JSON is a client error, never a 5xx.
    let response = r
        .http
        .post(format!("{}/subjects/s-value/versions", r.url))
        .header("content-type", CT)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    r.shutdown.cancel();
}

#[tokio::test]
async fn compatibility_levels_and_config() {
    let ctx = TestContext::new();
    let topic = schemas_topic(&ctx).await;
    let r = start(&ctx, &topic).await;
    assert_eq!(r.get("/config").await, (200, json!({"compatibilityLevel": "BACKWARD"})));
    r.register("c-value", V1).await;

    let check = |level: &'static str, schema: &'static str| {
        let r = &r;
        async move {
            assert_eq!(r.put("/config/c-value", json!({"compatibility": level})).await.0, 200);
            let (_, body) =
                r.post("/compatibility/subjects/c-value/versions/latest?verbose=True", json!({"schema": schema})).await;
            body["is_compatible"].as_bool().expect("is_compatible")
        }
    };
    assert!(check("BACKWARD", V2_DEFAULT).await);
    assert!(!check("BACKWARD", V2_NO_DEFAULT).await);
    assert!(check("FORWARD", V2_NO_DEFAULT).await);
    assert!(check("FULL", V2_DEFAULT).await);
    assert!(!check("FULL", V2_NO_DEFAULT).await);
    assert!(check("NONE", r#"{"type":"string"}"#).await);
    for transitive in ["BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"] {
        assert!(check(transitive, V2_DEFAULT).await, "{transitive}");
    }
    let (_, verbose) =
        r.post("/compatibility/subjects/c-value/versions/latest?verbose=true", json!({"schema": V2_NO_DEFAULT})).await;
    assert!(verbose["messages"].as_array().is_some_and(|m| !m.is_empty()), "{verbose}");
    assert_eq!(r.get("/config/c-value").await, (200, json!({"compatibilityLevel": "FULL_TRANSITIVE"})));
    assert_eq!(r.delete("/config/c-value").await, (200, json!({"compatibilityLevel": "FULL_TRANSITIVE"})));
    assert_eq!(r.get("/config/c-value?defaultToGlobal=true").await, (200, json!({"compatibilityLevel": "BACKWARD"})));
    r.shutdown.cancel();
}

#[tokio::test]
async fn deletes_are_soft_then_permanent_and_ids_stay_resolvable() {
    let ctx = TestContext::new();
    let topic = schemas_topic(&ctx).await;
    let r = start(&ctx, &topic).await;
    r.register("d-value", V1).await;
    r.register("d-value", V2_DEFAULT).await;

    assert_eq!(r.delete("/subjects/d-value/versions/2").await, (200, json!(2)));
    assert_eq!(r.get("/subjects/d-value/versions").await, (200, json!([1])));
    assert_eq!(r.get("/subjects/d-value/versions?deleted=true").await, (200, json!([1, 2])));
    assert_eq!(r.delete("/subjects/d-value/versions/2").await.1["error_code"], 40406);
    assert_eq!(r.delete("/subjects/d-value/versions/1?permanent=true").await.1["error_code"], 40407);

    assert_eq!(r.delete("/subjects/d-value").await, (200, json!([1])));
    assert_eq!(r.get("/subjects").await, (200, json!([])));
    assert_eq!(r.get("/subjects?deleted=true").await, (200, json!(["d-value"])));
    assert_eq!(r.delete("/subjects/d-value").await.1["error_code"], 40404);
    assert_eq!(r.get("/schemas/ids/2").await.0, 200, "old data still decodes");

    // Re-registering a soft-deleted schema gives the same id and the next version.
    assert_eq!(r.register("d-value", V2_DEFAULT).await, (200, json!({"id": 2})));
    assert_eq!(r.get("/subjects/d-value/versions").await, (200, json!([3])));

    r.delete("/subjects/d-value").await;
    assert_eq!(r.delete("/subjects/d-value?permanent=true").await, (200, json!([1, 2, 3])));
    assert_eq!(r.get("/subjects/d-value/versions?deleted=true").await.1["error_code"], 40401);
    r.shutdown.cancel();
}

async fn snapshot(r: &Registry) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for path in [
        "/subjects",
        "/subjects/a-value/versions",
        "/subjects/a-value/versions/1",
        "/subjects/a-value/versions/2",
        "/subjects/b-value/versions/latest",
        "/config/b-value",
        "/schemas/ids/3",
    ] {
        out.push(r.get(path).await);
    }
    out
}

#[tokio::test]
async fn restart_and_second_instance_serve_the_same_state() {
    let ctx = TestContext::new();
    let topic = schemas_topic(&ctx).await;
    let first = start(&ctx, &topic).await;
    first.register("a-value", V1).await;
    first.register("a-value", V2_DEFAULT).await;
    first.register("b-value", r#"{"type":"string"}"#).await;
    first.put("/config/b-value", json!({"compatibility": "NONE"})).await;
    let before = snapshot(&first).await;
    let second = start(&ctx, &topic).await;
    assert_eq!(snapshot(&second).await, before, "a second instance reads the same log");
    first.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let restarted = start(&ctx, &topic).await;
    assert_eq!(snapshot(&restarted).await, before, "a restart reads the same log");
    // A write through one instance is visible to the other once it has read the log.
    restarted.register("c-value", V1).await;
    let seen = ct_testkit::eventually(Duration::from_secs(10), || async {
        (second.get("/subjects").await.1 == json!(["a-value", "b-value", "c-value"])).then_some(())
    })
    .await;
    assert!(seen.is_some(), "second instance did not see the new subject");
}

#[tokio::test]
async fn one_parsed_schema_is_one_schema_whatever_its_spelling() {
    let ctx = TestContext::new();
    let r = start(&ctx, &schemas_topic(&ctx).await).await;
    assert_eq!(r.register("spell-value", V1).await, (200, json!({"id": 1})));
    // Other whitespace, key order, a primitive as an object and the name written in full.
    let respelled = r#"{ "fields": [ { "type": {"type": "string"}, "name": "id" } ],
                         "name": "t.Order", "type": "record" }"#;
    assert_eq!(r.register("spell-value", respelled).await, (200, json!({"id": 1})), "a cosmetic difference");
    assert_eq!(r.get("/subjects/spell-value/versions").await, (200, json!([1])), "no new version");
    let (_, found) = r.post("/subjects/spell-value", json!({"schema": respelled})).await;
    assert_eq!((found["version"].clone(), found["id"].clone()), (json!(1), json!(1)));
    let expected = r#"{"type":"record","name":"t.Order","fields":[{"name":"id","type":"string"}]}"#;
    assert_eq!(r.get("/schemas/ids/1").await.1["schema"], expected, "canonical text, whatever was sent");
    assert_eq!(canonical(respelled), expected);
    // A default is meaning, not spelling.
    assert_eq!(r.register("spell-value", V2_DEFAULT).await, (200, json!({"id": 2})));
    r.shutdown.cancel();
}

const ADDRESS: &str =
    r#"{"type":"record","name":"Address","namespace":"t","fields":[{"name":"city","type":"string"}]}"#;
const CUSTOMER: &str = r#"{"type":"record","name":"Customer","namespace":"t","fields":[{"name":"home","type":"Address"},{"name":"work","type":["null","Address"],"default":null}]}"#;

#[tokio::test]
async fn references_register_resolve_and_protect_what_they_name() {
    let ctx = TestContext::new();
    let r = start(&ctx, &schemas_topic(&ctx).await).await;
    let code = |(status, body): (u16, Value)| (status, body["error_code"].as_u64().unwrap_or(0));
    assert_eq!(r.register("address-value", ADDRESS).await, (200, json!({"id": 1})));
    assert_eq!(
        code(r.register("customer-value", CUSTOMER).await),
        (422, 42201),
        "Address is unknown without a reference"
    );
    let reference = json!([{"name": "t.Address", "subject": "address-value", "version": 1}]);
    let missing = json!([{"name": "t.Address", "subject": "address-value", "version": 7}]);
    assert_eq!(
        code(r.post("/subjects/customer-value/versions", json!({"schema": CUSTOMER, "references": missing})).await),
        (422, 42201)
    );
    let (status, id) =
        r.post("/subjects/customer-value/versions", json!({"schema": CUSTOMER, "references": reference})).await;
    assert_eq!((status, &id), (200, &json!({"id": 2})));
    // Latest (-1) resolves to the version that exists now, so it is the same schema again.
    let latest = json!([{"name": "t.Address", "subject": "address-value", "version": -1}]);
    assert_eq!(
        r.post("/subjects/customer-value/versions", json!({"schema": CUSTOMER, "references": latest})).await.1,
        id
    );

    let (_, by_id) = r.get("/schemas/ids/2").await;
    assert_eq!(by_id["references"], reference);
    let (_, version) = r.get("/subjects/customer-value/versions/1").await;
    assert_eq!(version["references"], reference);
    assert_eq!(r.get("/subjects/address-value/versions/1/referencedby").await, (200, json!([2])));
    let (_, found) = r.post("/subjects/customer-value", json!({"schema": CUSTOMER, "references": reference})).await;
    assert_eq!(found["id"], 2);

    // Compatibility reads the referenced definitions: a field without a default is refused.
    let evolved = r#"{"type":"record","name":"Customer","namespace":"t","fields":[{"name":"home","type":"Address"},{"name":"work","type":["null","Address"],"default":null},{"name":"vip","type":"boolean"}]}"#;
    let (_, verdict) = r
        .post(
            "/compatibility/subjects/customer-value/versions/latest",
            json!({"schema": evolved, "references": reference}),
        )
        .await;
    assert_eq!(verdict, json!({"is_compatible": false}));

    // What is referenced cannot be deleted.
    assert_eq!(code(r.delete("/subjects/address-value/versions/1").await), (422, 42206));
    assert_eq!(code(r.delete("/subjects/address-value").await), (422, 42206));
    assert_eq!(r.delete("/subjects/customer-value").await.0, 200);
    assert_eq!(r.get("/subjects/address-value/versions/1/referencedby").await, (200, json!([])));
    assert_eq!(r.delete("/subjects/address-value/versions/1").await, (200, json!(1)));
    r.shutdown.cancel();
}

#[tokio::test]
async fn modes_guard_writes_and_import_keeps_ids() {
    let ctx = TestContext::new();
    let r = start(&ctx, &schemas_topic(&ctx).await).await;
    let code = |(status, body): (u16, Value)| (status, body["error_code"].as_u64().unwrap_or(0));
    assert_eq!(r.get("/mode").await, (200, json!({"mode": "READWRITE"})));
    r.register("m-value", V1).await;

    assert_eq!(r.put("/mode", json!({"mode": "READONLY"})).await, (200, json!({"mode": "READONLY"})));
    assert_eq!(code(r.register("m-value", V2_DEFAULT).await), (422, 42205));
    assert_eq!(code(r.delete("/subjects/m-value/versions/1").await), (422, 42205));
    assert_eq!(code(r.delete("/subjects/m-value").await), (422, 42205));
    assert_eq!(r.get("/subjects/m-value/versions/1").await.0, 200, "reads go on");
    // A subject's own mode overrides the global one.
    assert_eq!(r.put("/mode/m-value", json!({"mode": "READWRITE"})).await.0, 200);
    assert_eq!(r.register("m-value", V2_DEFAULT).await, (200, json!({"id": 2})));
    assert_eq!(r.delete("/mode/m-value").await, (200, json!({"mode": "READWRITE"})));
    assert_eq!(code(r.get("/mode/m-value").await), (404, 40409));
    assert_eq!(r.get("/mode/m-value?defaultToGlobal=true").await, (200, json!({"mode": "READONLY"})));
    assert_eq!(code(r.put("/mode", json!({"mode": "SIDEWAYS"})).await), (422, 42204));

    // IMPORT: refused over existing subjects unless forced; ids and versions chosen by the caller.
    assert_eq!(code(r.put("/mode", json!({"mode": "IMPORT"})).await), (422, 42205));
    assert_eq!(r.put("/mode?force=true", json!({"mode": "IMPORT"})).await, (200, json!({"mode": "IMPORT"})));
    let imported = json!({"schema": r#"{"type":"string"}"#, "id": 100, "version": 5});
    assert_eq!(r.post("/subjects/imported-value/versions", imported).await, (200, json!({"id": 100})));
    assert_eq!(r.get("/subjects/imported-value/versions").await, (200, json!([5])));
    let clash = json!({"schema": r#"{"type":"long"}"#, "id": 100, "version": 6});
    assert_eq!(code(r.post("/subjects/imported-value/versions", clash).await), (422, 42205));
    let no_id = json!({"schema": r#"{"type":"long"}"#});
    assert_eq!(code(r.post("/subjects/imported-value/versions", no_id).await), (422, 42205), "IMPORT needs the id");
    let other_id = json!({"schema": r#"{"type":"string"}"#, "id": 300});
    assert_eq!(code(r.post("/subjects/imported-value/versions", other_id).await), (422, 42207), "registered under 100");
    assert_eq!(r.put("/mode", json!({"mode": "READWRITE"})).await.0, 200);
    let chosen = json!({"schema": r#"{"type":"long"}"#, "id": 200});
    assert_eq!(
        code(r.post("/subjects/other-value/versions", chosen).await),
        (422, 42205),
        "ids are chosen only in IMPORT"
    );
    let agreeing = json!({"schema": r#"{"type":"long"}"#, "id": 101, "version": 1});
    assert_eq!(
        r.post("/subjects/other-value/versions", agreeing).await,
        (200, json!({"id": 101})),
        "the id it would get anyway"
    );
    assert_eq!(
        r.register("other-value", r#"{"type":"long"}"#).await,
        (200, json!({"id": 101})),
        "new ids follow imported ones"
    );
    // A global READONLY_OVERRIDE wins over a subject's own mode.
    assert_eq!(r.put("/mode/other-value", json!({"mode": "READWRITE"})).await.0, 200);
    assert_eq!(r.put("/mode", json!({"mode": "READONLY_OVERRIDE"})).await.0, 200);
    assert_eq!(code(r.register("other-value", r#"{"type":"int"}"#).await), (422, 42205));
    r.shutdown.cancel();
}

#[tokio::test]
async fn listings_filter_and_page() {
    let ctx = TestContext::new();
    let r = start(&ctx, &schemas_topic(&ctx).await).await;
    r.register("a-value", V1).await;
    r.register("a-value", V2_DEFAULT).await;
    r.register("b-value", V1).await;
    r.register("zz-key", r#"{"type":"string"}"#).await;
    r.delete("/subjects/zz-key").await;

    assert_eq!(r.get("/subjects?subjectPrefix=a").await, (200, json!(["a-value"])));
    assert_eq!(r.get("/subjects?deletedOnly=true").await, (200, json!(["zz-key"])));
    assert_eq!(r.get("/subjects?deleted=true&offset=1&limit=2").await, (200, json!(["b-value", "zz-key"])));
    assert_eq!(r.get("/subjects/zz-key/versions?deletedOnly=true").await, (200, json!([1])));
    assert_eq!(r.get("/subjects/a-value/versions?offset=1").await, (200, json!([2])));
    assert_eq!(r.get("/subjects?offset=abc").await.1["error_code"], 400);

    let (_, latest) = r.get("/schemas?latestOnly=true").await;
    let rows: Vec<(String, i64, i64)> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["subject"].as_str().unwrap().to_owned(), x["version"].as_i64().unwrap(), x["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(rows, vec![("a-value".into(), 2, 2), ("b-value".into(), 1, 1)]);
    assert_eq!(r.get("/schemas?subjectPrefix=a").await.1.as_array().map(Vec::len), Some(2));
    assert_eq!(r.get("/schemas/ids/1/subjects").await, (200, json!(["a-value", "b-value"])));
    assert_eq!(r.get("/schemas/ids/1/subjects?subject=b-value").await, (200, json!(["b-value"])));
    assert_eq!(r.get("/schemas/ids/1/versions?limit=1").await, (200, json!([{"subject": "a-value", "version": 1}])));
    assert_eq!(r.get("/schemas/ids/3/subjects?deleted=true").await, (200, json!(["zz-key"])));
    assert_eq!(r.get("/contexts").await, (200, json!(["."])));
    let (_, by_id) = r.get("/schemas/ids/2").await;
    let (status, by_guid) = r.get(&format!("/schemas/guids/{}", by_id["guid"].as_str().unwrap())).await;
    assert_eq!((status, &by_guid["id"], &by_guid["schema"]), (200, &json!(2), &by_id["schema"]));
    r.shutdown.cancel();
}

#[tokio::test]
async fn the_shared_layer_answers_in_confluents_error_shape() {
    let ctx = TestContext::new();
    let r = start(&ctx, &schemas_topic(&ctx).await).await;
    let too_big = "x".repeat(2 * 1024 * 1024);
    let response = r
        .http
        .post(format!("{}/subjects/big-value/versions", r.url))
        .header("content-type", CT)
        .body(too_big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], 413, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("bytes")), "{body}");
    r.shutdown.cancel();
}
