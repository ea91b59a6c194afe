//! `/reports/daily` and its history over the real pipeline: events through the edge, the digest
//! decided by ct-digest at the clock's 08:00, served as JSON and Markdown to every role.

mod common;

use std::time::Duration;

use ct_testkit::eventually;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_digest_is_served_as_json_and_markdown_with_its_history() {
    let s = common::stack().await;
    let stop = tokio_util::sync::CancellationToken::new();
    s.spawn_digest(&stop).await;
    let viewer = Some("dev-token-viewer");

    let (status, body, _) = s.get(viewer, "/reports/daily").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    for (query, field) in [("?date=24-09-2025", "date"), ("?date=2025-02-30", "date"), ("?day=2025-09-24", "day")] {
        let (status, body, _) = s.get(viewer, &format!("/reports/daily{query}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    assert_eq!(s.get(None, "/reports/daily").await.0, 401);

    for (i, (source, body)) in [
        ("backend", json!({"fnName": "timesheetParse", "severity": "high"})),
        ("github", json!({"repo": "swan-portal", "runId": 7, "job": "build", "url": "https://ci/7"})),
        ("finance", json!({"invoiceId": "INV-1", "period": "2025-09", "total": 1234.56})),
    ]
    .into_iter()
    .enumerate()
    {
        let event_type = match source {
            "backend" => "backend.fn.error",
            "github" => "ci.workflow.failed",
            _ => "finance.invoice.generated",
        };
        let event = json!({"eventId": format!("rep_{i}"), "type": event_type, "ts": "2025-09-24T10:00:00Z",
                           "source": source, "payload": body});
        assert_eq!(s.post(&format!("dev-token-{source}"), &event).await, 202);
    }
    // 08:00 BST on the 25th: the first tick, so the 24th's digest is due at once.
    s.tick("2025-09-25T07:00:00Z").await;
    let report = eventually(Duration::from_secs(60), || async {
        let (status, body, _) = s.get(viewer, "/reports/daily").await;
        (status == 200).then_some(body)
    })
    .await
    .expect("the digest of the 24th is served");
    assert_eq!(report["day"], "2025-09-24");
    assert_eq!(report["digest"]["events"]["total"], 3);
    assert_eq!(report["digest"]["failures"]["ci_failures_by_repo"]["swan-portal"], 1);
    assert_eq!(report["digest"]["payments"]["invoiced_minor"]["GBP"], 123456);
    assert_eq!(s.get(viewer, "/reports/daily?date=2025-09-24").await.1, report);
    let (status, body, _) = s.get(viewer, "/reports/daily?date=2025-09-30").await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("date")), "{body}");

    let markdown = s
        .http
        .get(format!("{}/reports/daily?date=2025-09-24", s.api))
        .bearer_auth("dev-token-viewer")
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap();
    assert_eq!(markdown.headers()["content-type"], "text/markdown; charset=utf-8");
    let text = markdown.text().await.unwrap();
    assert!(text.starts_with("# Daily digest: Wednesday 24 September 2025 (Europe/London)"), "{text}");
    assert!(text.ends_with(&format!("Content SHA-256: `{}`\n", report["sha256"].as_str().unwrap())), "{text}");
    assert!(text.contains("Invoices generated: 1 (GBP 1234.56)."), "{text}");

    let (status, history, _) = s.get(viewer, "/reports/daily/history").await;
    assert_eq!(status, 200);
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!((history[0]["day"].clone(), history[0]["events"].clone()), (json!("2025-09-24"), json!(3)));
    assert_eq!(history[0]["sha256"], report["sha256"]);
    stop.cancel();
}
