//! Triggers → runs → the target, against the real stack: the read API takes requests and
//! decisions, the runner (in process, or as its binary for the crash test) executes them
//! against `ct-target`, and the runs read model is read back through the API.

use std::{sync::Arc, time::Duration};

use ct_core::runs::Triggers;
use ct_testkit::{TestContext, eventually};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

const OPERATOR: &str = "dev-token-operator";
const MAINTAINER: &str = "dev-token-maintainer";
const OWNER: &str = "dev-token-owner";
const VIEWER: &str = "dev-token-viewer";
const WAIT: Duration = Duration::from_secs(60);

struct Rig {
    api: String,
    target: String,
    http: reqwest::Client,
    runner: ct_runner::Config,
    _stop: CancellationToken,
}

/// The shipped triggers pointed at this test's target, with short backoffs and no time window.
fn triggers(target: &str) -> Triggers {
    let mut triggers = (*ct_platform::triggers::TriggersConfig::default().load().unwrap()).clone();
    for spec in triggers.triggers.values_mut() {
        if let Some(own) = spec.target.as_mut() {
            own.url = own.url.replace("http://127.0.0.1:8095", target);
            own.cancel_url = own.cancel_url.as_ref().map(|u| u.replace("http://127.0.0.1:8095", target));
        }
        spec.window = None;
        spec.retry.backoff_base_ms = 50;
        spec.retry.backoff_max_ms = 200;
        spec.rate_limit.per_minute = 600;
        spec.rate_limit.burst = 100;
    }
    // A chain (vision §6.2's gate, in miniature): notify only when the regeneration produced a
    // document; a step whose condition never holds is skipped.
    let chain = r#"
        description = "Regenerate, then notify when a document came out."
        [[steps]]
        name = "regenerate"
        trigger = "contract.regenerate"
        [[steps]]
        name = "notify"
        trigger = "portal.notify.retry"
        when = { step = "regenerate", pointer = "/metrics/documentsGenerated", equals = 1 }
        [[steps]]
        name = "never"
        trigger = "contract.regenerate"
        when = { step = "regenerate", pointer = "/ok", equals = false }
    "#;
    triggers.triggers.insert("demo.chain".into(), chain_spec(chain));
    // Branches (vision §6.1's retry with context): a failed regeneration jumps to the notification,
    // a successful one archives and stops there.
    let branching = r#"
        description = "Regenerate; archive on success, notify on failure."
        [[steps]]
        name = "regenerate"
        trigger = "contract.regenerate"
        on_failure = "notify"
        [[steps]]
        name = "archive"
        trigger = "contract.regenerate"
        on_success = "stop"
        [[steps]]
        name = "notify"
        trigger = "portal.notify.retry"
    "#;
    triggers.triggers.insert("demo.branches".into(), chain_spec(branching));
    triggers.validate().expect("the test's triggers are valid");
    triggers
}

/// A chain of the test: its description and steps, with one attempt, no rate limit to speak of.
fn chain_spec(description_and_steps: &str) -> ct_core::runs::TriggerSpec {
    let common = r#"
        inputs = { type = "object" }
        retry = { attempts = 1, backoff_base_ms = 50, backoff_max_ms = 50 }
        timeout_s = 60
        sla_s = 600
        rate_limit = { per_minute = 600, burst = 100 }
    "#;
    toml::from_str(&format!("{common}\n{description_and_steps}")).expect("the chain parses")
}

async fn rig(in_process_runner: bool) -> Rig {
    let ctx = TestContext::new();
    let topics = ctx.pipeline_topics().await;
    let (registry_url, stop) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let mut target = ct_target::Config::defaults();
    target.http.listen = "127.0.0.1:0".parse().unwrap();
    let target_app = ct_target::Application::build(target).await.expect("target");
    let target_url = format!("http://{}", target_app.local_addr());
    tokio::spawn(target_app.run_until_stopped(stop.clone()));
    let triggers = Arc::new(triggers(&target_url));

    // The edge and the projector, for the runner's announcements and the runs' correlated events.
    let slice = ctx.slice(&topics, &registry_url);
    let edge_app = ct_edge::Application::build(ct_edge::Config::for_slice(&slice)).await.expect("edge");
    let edge_url = format!("http://{}", edge_app.local_addr());
    tokio::spawn(edge_app.run_until_stopped(stop.clone()));
    let projector = ct_projector::Config::for_slice(&slice);
    let token = stop.clone();
    tokio::spawn(async move { ct_projector::run(projector, token).await.expect("projector") });

    let mut runner = ct_runner::Config::for_slice(&slice);
    runner.triggers.preloaded = Some(Arc::clone(&triggers));
    runner.executor.enabled = in_process_runner;
    runner.edge.url = edge_url;
    runner.announce.enabled = true;
    let (config, token) = (runner.clone(), stop.clone());
    tokio::spawn(async move { ct_runner::run(config, token).await.expect("runner") });

    let mut api = ct_api::Config::defaults();
    api.http.listen = "127.0.0.1:0".parse().unwrap();
    api.kafka = ctx.kafka.clone();
    api.registry.url = registry_url.clone();
    api.actions.audit_topic = topics.audit.clone();
    api.runs.topic = topics.runs.clone();
    api.postgres = ctx.postgres();
    api.triggers.preloaded = Some(triggers);
    let api_app = ct_api::Application::build(api).await.expect("api");
    let api_url = format!("http://{}", api_app.local_addr());
    tokio::spawn(api_app.run_until_stopped(stop.clone()));
    Rig { api: api_url, target: target_url, http: reqwest::Client::new(), runner, _stop: stop }
}

impl Rig {
    async fn post(&self, token: Option<&str>, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.api)).body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn trigger(&self, token: &str, name: &str, body: Value) -> String {
        let (status, answer) = self.post(Some(token), &format!("/triggers/{name}"), &[], &body.to_string()).await;
        assert_eq!(status, 202, "{answer}");
        answer["runId"].as_str().expect("a run id").to_owned()
    }

    async fn run(&self, token: &str, run_id: &str) -> Value {
        let response =
            self.http.get(format!("{}/runs/{run_id}", self.api)).bearer_auth(token).send().await.expect("api answers");
        response.json().await.expect("JSON")
    }

    async fn run_with_status(&self, run_id: &str, status: &str) -> Value {
        eventually(WAIT, || async {
            let run = self.run(MAINTAINER, run_id).await;
            (run["status"] == status).then_some(run)
        })
        .await
        .unwrap_or_else(|| panic!("run {run_id} never became {status}: {}", "see the run"))
    }

    async fn target(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.target)).send().await.unwrap().json().await.unwrap()
    }

    async fn owe(&self, owed: Value) {
        let status = self.http.post(format!("{}/_control", self.target)).json(&owed).send().await.unwrap().status();
        assert_eq!(status, 200);
    }
}

/// The kinds of the records that changed the run, in log order.
fn kinds(run: &Value) -> Vec<String> {
    run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ignoredBecause"].is_null())
        .map(|t| t["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// Deep dive §7.3 as written: an operator triggers, a maintainer reads the run.
#[tokio::test]
async fn deep_dive_7_3_trigger_and_read_the_run() {
    let rig = rig(true).await;
    let (status, answer) = rig
        .post(
            Some(OPERATOR),
            "/triggers/contract.regenerate",
            &[("content-type", "application/json")],
            r#"{"contractId":"K456"}"#,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["runId"].as_str().unwrap();
    assert!(run_id.starts_with("run_") && run_id.len() == 36, "{run_id}");
    assert_eq!(answer["status"], "queued");

    let run = rig.run_with_status(run_id, "success").await;
    assert_eq!(run["origin"], "trigger");
    assert_eq!(run["trigger"], "contract.regenerate");
    assert_eq!(run["inputs"], json!({"contractId": "K456"}));
    assert_eq!(run["attempt"], 1);
    assert_eq!(run["metrics"], json!({"documentsGenerated": 1}));
    assert_eq!(run["links"]["events"], format!("/events?correlation_id={run_id}"));
    assert_eq!(run["links"]["log"], json!({"topic": "ct.runs.v1", "key": run_id}));
    assert!(run["initiator"].as_str().unwrap().starts_with("operator:"));
    assert_eq!(kinds(&run), ["requested", "attempt_started", "succeeded"]);
    assert!(run["events"].is_array(), "a maintainer sees the correlated events");
    let viewer = rig.run(VIEWER, run_id).await;
    assert_eq!(viewer["status"], "success");
    assert!(viewer.get("events").is_none(), "a viewer does not see events");

    let calls = rig.target("/_calls").await;
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["idempotencyKey"], run_id);
    assert_eq!(calls[0]["attempt"], "1");
    assert_eq!(calls[0]["body"]["inputs"]["contractId"], "K456");
    assert_eq!(calls[0]["body"]["correlationId"], run_id);

    let listed = rig
        .http
        .get(format!("{}/runs?origin=trigger&status=success", rig.api))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().iter().filter(|r| r["runId"] == run_id).count(), 1, "{listed}");

    // The runner announced the run through the edge (for the health rules): both events carry the
    // run's correlation id, come from control_tower, and are not listed again as a producer's run.
    let announced = eventually(WAIT, || async {
        let run = rig.run(MAINTAINER, run_id).await;
        let types: Vec<(String, String)> = run["events"]
            .as_array()?
            .iter()
            .map(|e| (e["type"].as_str().unwrap_or("").to_owned(), e["source"].as_str().unwrap_or("").to_owned()))
            .collect();
        (types.len() == 2).then_some(types)
    })
    .await
    .expect("the run's two announcements were projected");
    let control_tower = "control_tower".to_owned();
    assert!(announced.contains(&("ct.run.started".to_owned(), control_tower.clone())), "{announced:?}");
    assert!(announced.contains(&("ct.run.completed".to_owned(), control_tower)), "{announced:?}");
    let producers = rig.http.get(format!("{}/runs", rig.api)).bearer_auth(VIEWER).send().await.unwrap();
    let producers: Value = producers.json().await.unwrap();
    assert!(!producers.as_array().unwrap().iter().any(|r| r["runId"] == run_id), "{producers}");
}

/// A target that fails twice then succeeds: three attempts, one effect; and the model rebuilt
/// from the log equals the live one.
#[tokio::test]
async fn two_failures_then_success_is_one_effect_and_a_rebuild_equals_live() {
    let rig = rig(true).await;
    rig.owe(json!({"fail": 2})).await;
    let run_id = rig.trigger(OPERATOR, "contract.regenerate", json!({"contractId": "K1"})).await;
    let run = rig.run_with_status(&run_id, "success").await;
    assert_eq!(run["attempt"], 3);
    assert_eq!(
        kinds(&run),
        [
            "requested",
            "attempt_started",
            "attempt_failed",
            "attempt_started",
            "attempt_failed",
            "attempt_started",
            "succeeded"
        ]
    );
    let failed: Vec<&Value> =
        run["transitions"].as_array().unwrap().iter().filter(|t| t["kind"] == "attempt_failed").collect();
    assert!(failed.iter().all(|t| t["errorClass"] == "http_5xx" && t["httpStatus"] == 500), "{failed:?}");
    assert_eq!(rig.target("/_effects").await, json!({ run_id.clone(): 1 }));
    let outcomes: Vec<Value> =
        rig.target("/_calls").await.as_array().unwrap().iter().map(|c| c["outcome"].clone()).collect();
    assert_eq!(outcomes, [json!("failed"), json!("failed"), json!("effect")]);

    // A non-retryable answer ends the run at once.
    rig.owe(json!({"fail": 1, "failStatus": 400})).await;
    let refused = rig.trigger(OPERATOR, "contract.regenerate", json!({"contractId": "K2"})).await;
    let run = rig.run_with_status(&refused, "failed").await;
    assert_eq!((run["attempt"].clone(), run["error"]["class"].clone()), (json!(1), json!("http_4xx")));

    let report = ct_platform::readmodel::rebuild(&ct_runner::model::RunsModel(rig.runner.clone()), true, WAIT)
        .await
        .expect("rebuild");
    assert!(report.identical, "{report:?}");
    assert!(report.swapped_out.is_some(), "{report:?}");
    assert_eq!(rig.run(MAINTAINER, &run_id).await["attempt"], 3, "the swapped-in model serves");
}

fn fingerprint(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    format!("operator:{}", digest[..4].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[tokio::test]
async fn bad_requests_and_idempotency_keys() {
    let rig = rig(true).await;
    let json_type = ("content-type", "application/json");
    // (token, path, body, status, code, field)
    type Case<'a> = (Option<&'a str>, &'a str, &'a str, u16, &'a str, Option<&'a str>);
    let cases: &[Case<'_>] = &[
        (None, "/triggers/contract.regenerate", r#"{"contractId":"K1"}"#, 401, "unauthorized", Some("Authorization")),
        (Some(VIEWER), "/triggers/contract.regenerate", r#"{"contractId":"K1"}"#, 403, "forbidden", None),
        (Some(OPERATOR), "/triggers/rm.rf", r#"{}"#, 404, "unknown_trigger", Some("name")),
        (Some(OPERATOR), "/triggers/contract.regenerate", r#"{"contractId":"#, 400, "invalid_json", Some("body")),
        (Some(OPERATOR), "/triggers/contract.regenerate", r#"{}"#, 422, "invalid_input", Some("contractId")),
        (
            Some(OPERATOR),
            "/triggers/contract.regenerate",
            r#"{"contractId":"K 1;"}"#,
            422,
            "invalid_input",
            Some("contractId"),
        ),
        (
            Some(OPERATOR),
            "/triggers/contract.regenerate",
            r#"{"contractId":"K1","x":1}"#,
            422,
            "invalid_input",
            Some("x"),
        ),
        (
            Some(OPERATOR),
            "/triggers/finance.export.backfill",
            r#"{"fromDate":"2026-13-45"}"#,
            422,
            "invalid_input",
            Some("fromDate"),
        ),
        (Some(OPERATOR), "/runs/run_nope/cancel", "", 404, "not_found", Some("runId")),
        (Some(OPERATOR), "/runs/run_nope/approve", r#"{"reason":"ok"}"#, 403, "forbidden", None),
        (Some(MAINTAINER), "/runs/run_nope/approve", r#"{"reason":"ok"}"#, 404, "not_found", Some("runId")),
        (Some(MAINTAINER), "/runs/run_nope/approve", r#"{}"#, 422, "invalid_field", Some("reason")),
    ];
    for (token, path, body, status, code, field) in cases {
        let (got, answer) = rig.post(*token, path, &[json_type], body).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (*status, Some(*code)), "{path} {body}: {answer}");
        assert_eq!(answer["error"]["field"].as_str(), *field, "{path} {body}: {answer}");
    }

    let path = "/triggers/portal.notify.retry";
    let key = ("idempotency-key", "upload-U1-retry-1");
    let (first, answer) = rig.post(Some(OPERATOR), path, &[key], r#"{"uploadId":"U1"}"#).await;
    assert_eq!(first, 202, "{answer}");
    let run_id = answer["runId"].as_str().unwrap().to_owned();
    let (again, repeat) = rig.post(Some(OPERATOR), path, &[key], r#"{"uploadId":"U1"}"#).await;
    assert_eq!((again, repeat["runId"].as_str()), (200, Some(run_id.as_str())), "{repeat}");
    assert_eq!(repeat["duplicate"], true);
    let (other, refused) = rig.post(Some(OPERATOR), path, &[key], r#"{"uploadId":"U2"}"#).await;
    assert_eq!((other, refused["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{refused}");
    rig.run_with_status(&run_id, "success").await;
    assert_eq!(rig.target("/_effects").await, json!({ run_id.clone(): 1 }), "one run, one effect");

    // A key whose first request is still being written: 409 (the test holds its lock).
    let pool = ct_platform::postgres::connect(&rig.runner.postgres).await.unwrap();
    let busy_key = "still-in-flight";
    let busy_run = ct_core::runs::run_id_for_key(&fingerprint(OPERATOR), "portal.notify.retry", busy_key);
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ct-api-idempotency'), hashtext($1))")
        .bind(&busy_run)
        .execute(&mut *lock)
        .await
        .unwrap();
    let (status, answer) =
        rig.post(Some(OPERATOR), path, &[("idempotency-key", busy_key)], r#"{"uploadId":"U3"}"#).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("idempotency_key_in_flight")), "{answer}");
    lock.rollback().await.unwrap();
    let (status, answer) =
        rig.post(Some(OPERATOR), path, &[("idempotency-key", busy_key)], r#"{"uploadId":"U3"}"#).await;
    assert_eq!((status, answer["runId"].as_str()), (202, Some(busy_run.as_str())), "{answer}");
}

#[tokio::test]
async fn cancel_a_running_run() {
    let rig = rig(true).await;
    rig.owe(json!({"hangs": 1, "hangMs": 60000})).await;
    let run_id = rig.trigger(OPERATOR, "contract.regenerate", json!({"contractId": "K9"})).await;
    rig.run_with_status(&run_id, "running").await;
    let (status, answer) =
        rig.post(Some(OPERATOR), &format!("/runs/{run_id}/cancel"), &[], r#"{"reason":"wrong contract"}"#).await;
    assert_eq!(status, 202, "{answer}");
    let run = rig.run_with_status(&run_id, "cancelled").await;
    assert_eq!(run["error"]["class"], "cancelled");
    assert!(run["cancelRequestedBy"].as_str().unwrap().starts_with("operator:"));
    assert_eq!(kinds(&run), ["requested", "attempt_started", "cancel_requested", "cancelled"]);
    let calls = rig.target("/_calls").await;
    let told: Vec<&Value> = calls.as_array().unwrap().iter().filter(|c| c["outcome"] == "cancel").collect();
    assert_eq!(told.len(), 1, "the target is told: {calls}");
    assert_eq!(told[0]["body"]["runId"], run_id);
    let (status, answer) = rig.post(Some(OPERATOR), &format!("/runs/{run_id}/cancel"), &[], "").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("run_ended")), "{answer}");
}

#[tokio::test]
async fn approvals_refuse_the_requester_and_accept_a_second_approver() {
    let rig = rig(true).await;
    let run_id = rig.trigger(MAINTAINER, "finance.export.backfill", json!({"fromDate": "2026-11-01"})).await;
    let run = rig.run_with_status(&run_id, "awaiting_approval").await;
    assert_eq!(run["attempt"], 0);
    let reason = r#"{"reason":"month-end backfill agreed with finance"}"#;
    let approve = format!("/runs/{run_id}/approve");
    let (status, answer) = rig.post(Some(OPERATOR), &approve, &[], reason).await;
    assert_eq!(status, 403, "operators cannot approve: {answer}");
    let (status, answer) = rig.post(Some(MAINTAINER), &approve, &[], reason).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("self_approval")), "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rig.target("/_calls").await.as_array().unwrap().is_empty(), "nothing runs before approval");
    let (status, answer) = rig.post(Some(OWNER), &approve, &[], reason).await;
    assert_eq!(status, 202, "{answer}");
    let run = rig.run_with_status(&run_id, "success").await;
    assert!(run["decidedBy"].as_str().unwrap().starts_with("owner:"));
    assert_eq!(kinds(&run), ["requested", "approved", "attempt_started", "succeeded"]);

    let rejected = rig.trigger(OPERATOR, "finance.export.backfill", json!({"fromDate": "2026-10-01"})).await;
    rig.run_with_status(&rejected, "awaiting_approval").await;
    let (status, _) = rig.post(Some(MAINTAINER), &format!("/runs/{rejected}/reject"), &[], reason).await;
    assert_eq!(status, 202);
    let run = rig.run_with_status(&rejected, "cancelled").await;
    assert_eq!(run["error"]["class"], "rejected");
    let (status, answer) = rig.post(Some(OWNER), &format!("/runs/{rejected}/approve"), &[], reason).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("not_awaiting_approval")), "{answer}");
    assert_eq!(rig.target("/_effects").await.as_object().unwrap().len(), 1, "the rejected run never ran");

    // The decisions are in the audit trail, newest first; a viewer may not read it.
    let audit = |token: &'static str| rig.http.get(format!("{}/audit?source=runs", rig.api)).bearer_auth(token).send();
    assert_eq!(audit(VIEWER).await.unwrap().status(), 403);
    let entries: Value = audit(MAINTAINER).await.unwrap().json().await.unwrap();
    let actions: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["resource"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("rejected", rejected.as_str()),
            ("requested", rejected.as_str()),
            ("approved", run_id.as_str()),
            ("requested", run_id.as_str())
        ],
        "{entries}"
    );
    assert!(entries[2]["actor"].as_str().unwrap().starts_with("owner:"));
    assert_eq!(entries[2]["reason"], "month-end backfill agreed with finance");
}

/// The runner's process SIGKILLed while the target works on the call: the next runner resumes
/// the run as a new attempt with the same key, and the target applies the effect once.
#[tokio::test]
async fn a_runner_killed_mid_call_still_makes_one_effect() {
    let rig = rig(false).await;
    rig.owe(json!({"hangs": 1, "hangMs": 120000})).await;
    let dir = std::env::temp_dir().join(format!("ct-runner-kill-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let triggers_file = dir.join("triggers.toml");
    std::fs::write(&triggers_file, toml::to_string(&triggers(&rig.target)).unwrap()).unwrap();
    let port = ct_testkit::free_port();
    let config = format!(
        r#"
[kafka]
bootstrap_servers = "{kafka}"
# A SIGKILLed member's partitions move after the session timeout (librdkafka's default: 45 s).
properties = {{ "session.timeout.ms" = "6000" }}
[consumer]
name = "{name}"
topic = "{topic}"
dlq_topic = "{dlq}"
[registry]
url = "{registry}"
[postgres]
url = "{postgres}"
schema = "{schema}"
[triggers]
file = "{triggers}"
[http]
listen = "127.0.0.1:{port}"
[edge]
url = "{edge}"
"#,
        edge = rig.runner.edge.url,
        kafka = rig.runner.kafka.bootstrap_servers,
        name = rig.runner.consumer.name,
        topic = rig.runner.consumer.topic,
        dlq = rig.runner.consumer.dlq_topic,
        registry = rig.runner.registry.url,
        postgres = rig.runner.postgres.url,
        schema = rig.runner.postgres.schema,
        triggers = triggers_file.display(),
    );
    let mut process = ct_testkit::ServiceProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_ct-runner")),
        "runner",
        &config,
        &dir,
    );
    assert!(process.healthy(port, "/healthz", WAIT).await, "the runner starts: {}", process.logs());

    let run_id = rig.trigger(OPERATOR, "contract.regenerate", json!({"contractId": "K7"})).await;
    eventually(WAIT, || async { (rig.target("/_effects").await[&run_id] == 1).then_some(()) })
        .await
        .expect("the call reached the target");
    process.stop(); // SIGKILL
    assert_eq!(rig.run(MAINTAINER, &run_id).await["status"], "running");

    // Another runner in the same consumer group (the in-process one only runs the model).
    let mut resumed = rig.runner.clone();
    resumed.executor.enabled = true;
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move { ct_runner::run(resumed, token).await.expect("runner") });
    let run = rig.run_with_status(&run_id, "success").await;
    stop.cancel();
    assert_eq!(run["attempt"], 2);
    assert_eq!(kinds(&run), ["requested", "attempt_started", "attempt_started", "succeeded"]);
    let resumed = run["transitions"].as_array().unwrap().iter().find(|t| t["attempt"] == 2).unwrap();
    assert!(resumed["reason"].as_str().unwrap().contains("interrupted"), "{run}");
    assert_eq!(rig.target("/_effects").await, json!({ run_id.clone(): 1 }), "one effect");
    let outcomes: Vec<Value> =
        rig.target("/_calls").await.as_array().unwrap().iter().map(|c| c["outcome"].clone()).collect();
    assert_eq!(outcomes, [json!("effect"), json!("replayed")]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// The control-room API's doors to the same runs: validate (nothing written), run, read, cancel.
#[tokio::test]
async fn control_room_api_validates_runs_reads_and_cancels_jobs() {
    let rig = rig(true).await;
    let job = r#"{"job":"contract.regenerate","inputs":{"contractId":"K77"},"reason":"client asked"}"#;
    let (status, answer) = rig.post(Some(OPERATOR), "/api/v1/jobs/validate", &[], job).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["valid"], true);
    assert_eq!(answer["status"], "queued");
    assert!(answer["target"].as_str().unwrap().ends_with("/contracts/regenerate"), "{answer}");
    let invalid: &[(&str, u16, &str, &str)] = &[
        (r#"{"inputs":{}}"#, 422, "invalid_field", "job"),
        (r#"{"job":"contract.regenerate","inputs":[]}"#, 422, "invalid_field", "inputs"),
        (r#"{"job":"contract.regenerate","inputs":{}}"#, 422, "invalid_input", "inputs.contractId"),
        (r#"{"job":"nope","inputs":{}}"#, 404, "unknown_trigger", "job"),
    ];
    for (body, status, code, field) in invalid {
        for path in ["/api/v1/jobs/validate", "/api/v1/jobs/run"] {
            let (got, answer) = rig.post(Some(OPERATOR), path, &[], body).await;
            assert_eq!(
                (got, answer["error"]["code"].as_str(), answer["error"]["field"].as_str()),
                (*status, Some(*code), Some(*field)),
                "{path} {body}: {answer}"
            );
        }
    }
    assert!(rig.target("/_calls").await.as_array().unwrap().is_empty(), "validation ran nothing");

    rig.owe(json!({"hangs": 1, "hangMs": 60000})).await;
    let (status, answer) = rig.post(Some(OPERATOR), "/api/v1/jobs/run", &[("idempotency-key", "cr-1")], job).await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["runId"].as_str().unwrap().to_owned();
    let (again, repeat) = rig.post(Some(OPERATOR), "/api/v1/jobs/run", &[("idempotency-key", "cr-1")], job).await;
    assert_eq!((again, repeat["runId"].as_str()), (200, Some(run_id.as_str())), "{repeat}");
    eventually(WAIT, || async {
        let run: Value = rig
            .http
            .get(format!("{}/api/v1/runs/{run_id}", rig.api))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (run["status"] == "running").then_some(())
    })
    .await
    .expect("the job runs");
    let (status, _) = rig.post(Some(OPERATOR), &format!("/api/v1/runs/{run_id}/cancel"), &[], "").await;
    assert_eq!(status, 202);
    let run = rig.run_with_status(&run_id, "cancelled").await;
    assert_eq!(run["reason"], "client asked");
}

/// A receiver that is down while the run ends gets the signed callback once it is up, and only
/// once; a host outside `runs.callback_hosts` is refused.
#[tokio::test]
async fn a_callback_receiver_that_was_down_gets_the_callback_once() {
    let rig = rig(true).await;
    let refused = r#"{"job":"contract.regenerate","inputs":{"contractId":"K5"},"callbacks":{"onComplete":"http://example.invalid/cb"}}"#;
    let (status, answer) = rig.post(Some(OPERATOR), "/api/v1/jobs/run", &[], refused).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("callbacks.onComplete")), "{answer}");

    let port = ct_testkit::free_port();
    let job = json!({"job": "contract.regenerate", "inputs": {"contractId": "K5"},
        "callbacks": {"onComplete": format!("http://127.0.0.1:{port}/done"), "onFail": format!("http://127.0.0.1:{port}/failed")}});
    let (status, answer) = rig.post(Some(OPERATOR), "/api/v1/jobs/run", &[], &job.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["runId"].as_str().unwrap().to_owned();
    let run = rig.run_with_status(&run_id, "success").await;
    assert!(run["callbacks"]["deliveredAt"].is_null(), "{run}");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the receiver is down: tries fail

    let received: Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, String)>>> = Arc::default();
    let store = Arc::clone(&received);
    let app =
        axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let store = Arc::clone(&store);
            async move {
                store.lock().unwrap().push((uri.path().to_owned(), headers, body));
                "ok"
            }
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let run = eventually(WAIT, || async {
        let run = rig.run(MAINTAINER, &run_id).await;
        (!run["callbacks"]["deliveredAt"].is_null()).then_some(run)
    })
    .await
    .expect("the callback is acknowledged");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "exactly one callback: {received:?}");
    let (path, headers, body) = &received[0];
    assert_eq!(path, "/done");
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), format!("{run_id}.success"));
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let expected = ct_core::signature::standard_webhooks_signature(
        "dev-callback-secret",
        &header("webhook-id"),
        timestamp,
        body.as_bytes(),
    );
    assert_eq!(header("webhook-signature"), expected);
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!((body["runId"].as_str(), body["status"].as_str()), (Some(run_id.as_str()), Some("success")));
    assert_eq!(body["result"]["metrics"]["documentsGenerated"], 1);
    assert!(kinds(&run).ends_with(&["succeeded".to_owned(), "callback_delivered".to_owned()]), "{run}");
}

/// A running job reports progress and lineage; the graph shows the edges until a later report
/// withdraws one; reports to a run that is not running are refused.
#[tokio::test]
async fn a_running_job_reports_progress_and_lineage() {
    let rig = rig(true).await;
    rig.owe(json!({"hangs": 1, "hangMs": 60000})).await;
    let run_id = rig.trigger(OPERATOR, "contract.regenerate", json!({"contractId": "K8"})).await;
    rig.run_with_status(&run_id, "running").await;
    let events = format!("/api/v1/runs/{run_id}/events");
    let report = json!({
        "message": "3 of 5 documents",
        "metrics": {"documentsGenerated": 3},
        "inputs": [{"namespace": "postgres://portal", "name": "contracts"}],
        "outputs": [{"namespace": "s3://documents", "name": "contract-pdfs"}, {"namespace": "s3://documents", "name": "summaries"}],
    });
    let (status, answer) = rig.post(Some(OPERATOR), &events, &[], &report.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = rig.post(Some(OPERATOR), &events, &[], r#"{"inputs":[{"namespace":"x"}]}"#).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("name")), "{answer}");
    let (status, answer) = rig.post(Some(OPERATOR), &events, &[], r#"{"progress":1}"#).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("progress")), "{answer}");

    let graph = |query: &'static str| {
        let rig = &rig;
        async move {
            let url = format!("{}/api/v1/lineage/graph{query}", rig.api);
            rig.http.get(url).bearer_auth(MAINTAINER).send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let shown = eventually(WAIT, || async {
        let graph = graph("?job=contract.regenerate").await;
        (graph["edges"].as_array().is_some_and(|e| e.len() == 2)).then_some(graph)
    })
    .await
    .expect("both edges are in the graph");
    assert_eq!(shown["edges"][0]["source"], "postgres://portal/contracts");
    assert_eq!(shown["edges"][0]["lastRunId"], run_id.as_str());
    assert_eq!(shown["nodes"].as_array().unwrap().len(), 3);
    let run = rig.run(MAINTAINER, &run_id).await;
    assert_eq!(run["progress"]["metrics"]["documentsGenerated"], 3, "{run}");

    let withdraw = json!({"removed": [{"input": {"namespace": "postgres://portal", "name": "contracts"},
        "output": {"namespace": "s3://documents", "name": "summaries"}}]});
    let (status, _) = rig.post(Some(OPERATOR), &events, &[], &withdraw.to_string()).await;
    assert_eq!(status, 202);
    eventually(WAIT, || async { (graph("").await["edges"].as_array().map(Vec::len) == Some(1)).then_some(()) })
        .await
        .expect("the withdrawn edge leaves the graph");
    let (status, answer) = rig.post(Some(OPERATOR), &format!("/runs/{run_id}/cancel"), &[], "").await;
    assert_eq!(status, 202, "{answer}");
    rig.run_with_status(&run_id, "cancelled").await;
    let (status, answer) = rig.post(Some(OPERATOR), &events, &[], &report.to_string()).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("run_not_running")), "{answer}");
    let viewer = rig.http.get(format!("{}/api/v1/lineage/graph", rig.api)).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(viewer.status(), 403);
}

/// A target that answers 202 keeps the run running until it posts the outcome to
/// `/api/v1/webhooks/continue`; a second continuation is refused.
#[tokio::test]
async fn a_target_that_answers_202_continues_the_run_later() {
    let rig = rig(true).await;
    rig.owe(json!({"accepts": 1})).await;
    let run_id = rig.trigger(OPERATOR, "contract.regenerate", json!({"contractId": "K3"})).await;
    let waiting = eventually(WAIT, || async {
        let run = rig.run(MAINTAINER, &run_id).await;
        (!run["awaitingContinueSince"].is_null()).then_some(run)
    })
    .await
    .expect("the run waits for its continuation");
    assert_eq!(waiting["status"], "running");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.target("/_calls").await.as_array().unwrap().len(), 1, "a waiting run is not called again");

    let (status, answer) =
        rig.post(Some(OPERATOR), "/api/v1/webhooks/continue", &[], r#"{"runId":"run_nope","status":"success"}"#).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (404, Some("runId")), "{answer}");
    let (status, answer) = rig
        .post(Some(OPERATOR), "/api/v1/webhooks/continue", &[], &json!({"runId": run_id, "status": "done"}).to_string())
        .await;
    assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("status")), "{answer}");
    let done = json!({"runId": run_id, "status": "success", "result": {"metrics": {"documentsGenerated": 5}}});
    let (status, answer) = rig.post(Some(OPERATOR), "/api/v1/webhooks/continue", &[], &done.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let run = rig.run_with_status(&run_id, "success").await;
    assert_eq!(run["metrics"]["documentsGenerated"], 5);
    assert_eq!(kinds(&run), ["requested", "attempt_started", "awaiting_continue", "succeeded"]);
    let (status, answer) = rig.post(Some(OPERATOR), "/api/v1/webhooks/continue", &[], &done.to_string()).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("not_awaiting_continue")), "{answer}");
}

/// A chain runs its steps as child runs in order, skips a step whose condition does not hold,
/// stops at a failed step, and follows `on_success` / `on_failure` branches.
#[tokio::test]
async fn a_chain_runs_its_steps_as_child_runs_and_stops_at_a_failure() {
    let rig = rig(true).await;
    let run_id = rig.trigger(OPERATOR, "demo.chain", json!({"contractId": "K1"})).await;
    let run = rig.run_with_status(&run_id, "success").await;
    assert_eq!(
        run["result"]["steps"],
        json!({"regenerate": "success", "notify": "success", "never": "skipped"}),
        "{run}"
    );
    let regenerate = ct_core::runs::child_run_id(&run_id, "regenerate");
    let notify = ct_core::runs::child_run_id(&run_id, "notify");
    assert_eq!(rig.target("/_effects").await, json!({ regenerate.clone(): 1, notify.clone(): 1 }));
    let child = rig.run(MAINTAINER, &regenerate).await;
    assert_eq!(
        (child["trigger"].as_str(), child["correlationId"].as_str()),
        (Some("contract.regenerate"), Some(run_id.as_str()))
    );
    let paths: Vec<Value> = rig.target("/_calls").await.as_array().unwrap().iter().map(|c| c["path"].clone()).collect();
    assert_eq!(paths, [json!("/contracts/regenerate"), json!("/portal/notify-retry")], "in order");

    rig.owe(json!({"fail": 1, "failStatus": 400})).await;
    let failing = rig.trigger(OPERATOR, "demo.chain", json!({"contractId": "K2"})).await;
    let run = rig.run_with_status(&failing, "failed").await;
    assert_eq!(run["error"]["class"], "step_failed");
    assert_eq!(run["result"]["steps"], json!({"regenerate": "failed"}), "{run}");
    let notify = ct_core::runs::child_run_id(&failing, "notify");
    let response = rig.http.get(format!("{}/runs/{notify}", rig.api)).bearer_auth(MAINTAINER).send().await.unwrap();
    assert_eq!(response.status(), 404, "the step after the failure never started");

    let smooth = rig.trigger(OPERATOR, "demo.branches", json!({"contractId": "K3"})).await;
    let run = rig.run_with_status(&smooth, "success").await;
    assert_eq!(run["result"]["steps"], json!({"regenerate": "success", "archive": "success"}), "{run}");
    rig.owe(json!({"fail": 1, "failStatus": 400})).await;
    let recovered = rig.trigger(OPERATOR, "demo.branches", json!({"contractId": "K4"})).await;
    let run = rig.run_with_status(&recovered, "success").await;
    assert_eq!(
        run["result"]["steps"],
        json!({"regenerate": "failed", "notify": "success"}),
        "the failure jumped over `archive` to `notify`: {run}"
    );
    let effects = rig.target("/_effects").await;
    assert_eq!(effects[ct_core::runs::child_run_id(&recovered, "notify")], 1, "{effects}");
    assert!(effects.get(ct_core::runs::child_run_id(&recovered, "archive")).is_none(), "{effects}");
}
