//! `/versions` over the real pipeline: CI reports deployments and branch heads through the edge;
//! the projector's `versions` model says which deployment drifts from `main` and since when, and
//! a rebuild gives the same rows.

mod common;

use std::time::Duration;

use ct_testkit::eventually;
use serde_json::{Value, json};

async fn report(s: &common::Stack, id: &str, event_type: &str, ts: &str, payload: Value) {
    let body = json!({"eventId": id, "type": event_type, "ts": ts, "source": "github", "payload": payload});
    assert_eq!(s.post("dev-token-github", &body).await, 202, "{body}");
}

/// `GET /versions` once its entry for `swan-portal` satisfies `ready`.
async fn versions_when(s: &common::Stack, ready: impl Fn(&Value) -> bool) -> Value {
    let found = eventually(Duration::from_secs(30), || async {
        let (status, body, _) = s.get(Some("dev-token-viewer"), "/versions").await;
        (status == 200 && body.as_array().and_then(|a| a.first()).is_some_and(&ready)).then_some(body)
    })
    .await;
    match found {
        Some(body) => body,
        None => panic!(
            "GET /versions never showed the expected state: {:?}",
            s.get(Some("dev-token-viewer"), "/versions").await
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_drifts_from_main_when_main_moves_and_stops_when_the_new_commit_is_deployed() {
    let s = common::stack().await;
    assert_eq!(s.get(Some("dev-token-viewer"), "/versions").await.1, json!([]));
    report(
        &s,
        "dep_1",
        "ci.deploy.completed",
        "2025-09-24T10:00:00Z",
        json!({"repo": "swan-portal", "environment": "production", "tag": "v1.0.0", "commit": "aaa111"}),
    )
    .await;
    report(
        &s,
        "br_1",
        "ci.branch.updated",
        "2025-09-24T10:05:00Z",
        json!({"repo": "swan-portal", "branch": "main", "commit": "aaa111"}),
    )
    .await;
    // Another branch moving does not make production drift.
    report(
        &s,
        "br_2",
        "ci.branch.updated",
        "2025-09-24T10:06:00Z",
        json!({"repo": "swan-portal", "branch": "feature-x", "commit": "fff999"}),
    )
    .await;
    let versions = versions_when(&s, |v| v["head"]["commit"] == "aaa111").await;
    assert_eq!(versions[0]["drifting"], false, "{versions}");
    assert_eq!(versions[0]["driftSince"], Value::Null);

    report(
        &s,
        "br_3",
        "ci.branch.updated",
        "2025-09-24T11:00:00Z",
        json!({"repo": "swan-portal", "branch": "main", "commit": "bbb222", "ahead": 2}),
    )
    .await;
    let versions = versions_when(&s, |v| v["drifting"] == true).await;
    let v = &versions[0];
    assert_eq!(
        (v["repo"].as_str(), v["environment"].as_str(), v["commit"].as_str()),
        (Some("swan-portal"), Some("production"), Some("aaa111"))
    );
    assert_eq!(
        (v["targetBranch"].as_str(), v["head"]["commit"].as_str(), v["head"]["ahead"].as_i64()),
        (Some("main"), Some("bbb222"), Some(2))
    );
    assert_eq!(v["driftSince"], "2025-09-24T11:00:00Z", "the drift began with the newer head");
    // Main moving again keeps the drift's start.
    report(
        &s,
        "br_4",
        "ci.branch.updated",
        "2025-09-24T12:00:00Z",
        json!({"repo": "swan-portal", "branch": "main", "commit": "ccc333"}),
    )
    .await;
    let versions = versions_when(&s, |v| v["head"]["commit"] == "ccc333").await;
    assert_eq!(versions[0]["driftSince"], "2025-09-24T11:00:00Z");

    report(
        &s,
        "dep_2",
        "ci.deploy.completed",
        "2025-09-24T13:00:00Z",
        json!({"repo": "swan-portal", "environment": "production", "tag": "v1.1.0", "commit": "ccc333"}),
    )
    .await;
    let versions = versions_when(&s, |v| v["commit"] == "ccc333").await;
    assert_eq!((versions[0]["drifting"].clone(), versions[0]["driftSince"].clone()), (json!(false), Value::Null));

    let (status, history, _) = s.get(Some("dev-token-viewer"), "/versions/swan-portal/history?limit=2").await;
    assert_eq!(status, 200);
    let kinds: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["commit"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("deploy", "ccc333"), ("branch", "ccc333")]);
    assert_eq!(history[0]["environment"], "production");
    assert_eq!(history[1]["branch"], "main");
    let (status, body, _) = s.get(Some("dev-token-viewer"), "/versions/nope/history").await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("repo")), "{body}");
    assert_eq!(s.get(None, "/versions").await.0, 401);

    let projector = ct_projector::Config::for_slice(&s.ctx.slice(&s.topics, &s.registry));
    let report = ct_platform::readmodel::rebuild(
        &ct_projector::versions::VersionsModel::of(projector),
        false,
        Duration::from_secs(120),
    )
    .await
    .expect("rebuild");
    assert!(report.identical, "{:?}", report.differing_tables);
}
