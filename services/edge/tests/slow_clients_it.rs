//! The shared HTTP layer on the real edge: slow clients cannot exhaust it, oversized bodies are
//! refused before they are read, requests in progress are capped, every request is bounded in
//! time, metric labels stay bounded whatever clients send, unknown routes get JSON, and
//! `/metrics` can live on a listener of its own.

mod common;

use std::time::{Duration, Instant};

use common::{TestEdge, event};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn host(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// The median latency of `n` signed single-event requests.
async fn median_latency(edge: &TestEdge, prefix: &str, n: usize) -> Duration {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let body = event(&format!("{prefix}_{i}")).to_string();
        let started = Instant::now();
        let (status, answer, _) = edge.send("dev-token-finance", &body).await;
        assert_eq!(status, 202, "{answer}");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_slow_the_others() {
    let edge = TestEdge::start_with(|c| c.http.limits.header_read_timeout_ms = 1_000).await;
    let normal = median_latency(&edge, "evt_before", 20).await;

    // 300 connections sending a request head one byte every 200 ms.
    let address = host(&edge.url);
    let mut slow = Vec::new();
    for _ in 0..300 {
        let address = address.clone();
        slow.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&address).await else { return None };
            let opened = Instant::now();
            for byte in b"POST /events HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n".iter() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The edge closes the connection once the header-read timeout has passed.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
            Some(opened.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = median_latency(&edge, "evt_during", 20).await;
    assert!(
        during < normal * 5 + Duration::from_millis(50),
        "with slow clients connected the median was {during:?}, against {normal:?} before"
    );
    for handle in slow {
        let held = handle.await.unwrap().expect("connected");
        assert!(held < Duration::from_secs(5), "a slow client held its connection for {held:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let edge = TestEdge::start().await;
    let mut stream = TcpStream::connect(host(&edge.url)).await.unwrap();
    let head = "POST /events/batch HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer dev-token-finance\r\n\
                Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // No body is sent: the answer comes from the declared length alone.
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
}

#[tokio::test]
async fn requests_in_progress_are_capped_and_bounded_in_time() {
    let edge = TestEdge::start_with(|c| {
        c.http.limits.max_concurrent_requests = 1;
        c.http.limits.request_timeout_ms = 1_500;
    })
    .await;
    // One request sends its body slowly and holds the only slot.
    let mut stream = TcpStream::connect(host(&edge.url)).await.unwrap();
    let head = "POST /events HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer dev-token-finance\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, body, headers) = edge.send("dev-token-finance", &event("evt_shed").to_string()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("overloaded")), "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));

    // The slow one is cut off at the request timeout, and the slot is free again.
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
    assert_eq!(edge.send("dev-token-finance", &event("evt_after").to_string()).await.0, 202);
}

#[tokio::test]
async fn labels_stay_bounded_and_unknown_routes_answer_json() {
    let metrics_port = ct_testkit::free_port();
    let edge = TestEdge::start_with(|c| {
        c.http.limits.metrics_listen = Some(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    })
    .await;
    let brew = reqwest::Method::from_bytes(b"BREWCOFFEE").unwrap();
    for path in ["/events", "/no/such/route", "/random-1", "/random-2"] {
        let response = edge.http.request(brew.clone(), format!("{}{path}", edge.url)).send().await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert!(matches!(status, 404 | 405), "{path}: {status}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let on_public = edge.http.get(format!("{}/metrics", edge.url)).send().await.unwrap();
    assert_eq!(on_public.status(), 404, "/metrics is not on the public listener when it has its own");
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"method="other""#), "unknown methods share one label");
    assert!(!metrics.contains("BREWCOFFEE") && !metrics.contains("random-1"), "no label from what clients sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_gets_503_within_its_timeout_and_frees_the_permits() {
    let redis_address = ct_testkit::redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let proxy = ct_testkit::FreezableProxy::start(&redis_address).await;
    let edge = TestEdge::start_with(|c| {
        c.redis.url = format!("redis://{}", proxy.address);
        c.redis.timeout_ms = 500;
        c.events.max_events_in_progress = 4;
        c.events.max_batch_events = 4;
    })
    .await;
    assert_eq!(edge.send("dev-token-finance", &event("evt_before_hang").to_string()).await.0, 202);

    proxy.freeze();
    // More requests than permits: each is answered within the timeout and gives its permit back.
    let requests = (0..8).map(|i| {
        let edge = &edge;
        async move {
            let started = Instant::now();
            let (status, body, headers) =
                edge.send("dev-token-finance", &event(&format!("evt_hung_{i}")).to_string()).await;
            (status, body, headers.contains_key("retry-after"), started.elapsed())
        }
    });
    for (status, body, retry_after, took) in futures::future::join_all(requests).await {
        assert_eq!(
            (status, body["error"]["code"].as_str(), retry_after),
            (503, Some("idempotency_unavailable"), true),
            "{body}"
        );
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
    }
    let (status, ready, _) = TestEdge::answer(edge.http.get(format!("{}/readyz", edge.url))).await;
    assert_eq!((status, ready["redis"].as_str()), (503, Some("error: unavailable")), "{ready}");
    assert!(!ready.to_string().contains(&proxy.address.to_string()), "no internal address: {ready}");

    proxy.thaw();
    let recovered = ct_testkit::eventually(Duration::from_secs(10), || async {
        (edge.send("dev-token-finance", &event("evt_after_hang").to_string()).await.0 == 202).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "the edge recovers by itself when Redis answers again");
}
