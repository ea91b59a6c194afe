//! Artifacts through the real stack: stored content-addressed, read back byte for byte, announced
//! as an `artifact.pointer.written` event through the edge and projected like any event.

mod common;

use common::stack;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_is_stored_once_read_back_and_announced() {
    let s = stack().await;
    let upload = |body: &'static [u8], token: &'static str| {
        s.http
            .post(format!("{}/api/v1/artifacts", s.api))
            .bearer_auth(token)
            .header("content-type", "application/pdf")
            .header("x-ct-run-id", "run_artifact_test")
            .body(body)
            .send()
    };
    let bytes: &'static [u8] = b"%PDF-1.7 contract K456";
    let first = upload(bytes, "dev-token-operator").await.unwrap();
    assert_eq!(first.status(), 201, "{:?}", first.text().await);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    let sha256 = hex_sha256(bytes);
    assert_eq!(first["sha256"], sha256.as_str());
    assert_eq!(first["artifactId"], format!("art_{sha256}"));
    assert_eq!(first["sizeBytes"], bytes.len());
    assert_eq!(location, format!("/api/v1/artifacts/art_{sha256}"));

    let again = upload(bytes, "dev-token-operator").await.unwrap();
    assert_eq!(again.status(), 201, "a repeat upload is the same artifact: {:?}", again.text().await);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (again["artifactId"].clone(), again["eventId"].clone()),
        (first["artifactId"].clone(), first["eventId"].clone())
    );

    let read = s.http.get(format!("{}{location}", s.api)).bearer_auth("dev-token-maintainer").send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["content-type"], "application/pdf");
    assert_eq!(read.headers()["x-checksum-sha256"], sha256.as_str());
    assert_eq!(read.bytes().await.unwrap().as_ref(), bytes);
    let viewer = s.http.get(format!("{}{location}", s.api)).bearer_auth("dev-token-viewer").send().await.unwrap();
    assert_eq!(viewer.status(), 403);
    let missing = s.http.get(format!("{}/api/v1/artifacts/art_nope", s.api)).bearer_auth("dev-token-maintainer").send();
    assert_eq!(missing.await.unwrap().status(), 404);
    let empty = upload(b"", "dev-token-operator").await.unwrap();
    assert_eq!(empty.status(), 422);
    assert_eq!(upload(bytes, "dev-token-viewer").await.unwrap().status(), 403);
    let bad_run = s
        .http
        .post(format!("{}/api/v1/artifacts", s.api))
        .bearer_auth("dev-token-operator")
        .header("x-ct-run-id", "")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_run.status(), 400);
    let body: Value = bad_run.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["field"].as_str()),
        (Some("invalid_header"), Some("X-CT-Run-Id"))
    );

    let events = s.wait_events("type=artifact.pointer.written&correlation_id=run_artifact_test", 1).await;
    assert_eq!(events.len(), 1, "one announcement for two uploads of the same bytes");
    assert_eq!(events[0]["source"], "control_tower");
    assert_eq!(events[0]["payload"]["sha256"], sha256.as_str());
    assert_eq!(events[0]["payload"]["uri"], location.as_str());
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
