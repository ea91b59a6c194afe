//! The edge binary under `profile = "production"`: it starts with the credentials of its own
//! file (and accepts an event signed with them, refuses the dev token), refuses to start with a
//! dev credential or with none, and prints no secret value in any log line.

use std::time::Duration;

use ct_core::signature::ct_signature;
use ct_testkit::{ServiceProcess, TestContext, free_port};

struct Secrets {
    token: String,
    hmac: String,
    salt: String,
}

fn config(ctx: &TestContext, topic: &str, registry_url: &str, port: u16, secrets: &Secrets) -> String {
    format!(
        r#"profile = "production"
[http]
listen = "127.0.0.1:{port}"
[kafka]
bootstrap_servers = "{kafka}"
[events]
topic = "{topic}"
redaction_salt = "{salt}"
[registry]
url = "{registry_url}"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[auth]
hmac_secrets = ["{hmac}"]
[auth.producer_tokens]
"{token}" = "finance"
"#,
        kafka = ctx.kafka.bootstrap_servers,
        redis = ctx.redis().url,
        prefix = ctx.redis().key_prefix,
        salt = secrets.salt,
        hmac = secrets.hmac,
        token = secrets.token,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_starts_with_its_own_credentials_refuses_dev_ones_and_never_logs_a_secret() {
    let ctx = TestContext::new();
    let topic = ctx.create_topics(&[("ct.events.v1", 1)]).await.remove(0);
    let (registry_url, _registry) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let dir = std::env::temp_dir().join(format!("ct-edge-production-{}", ctx.id));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_ct-edge"));
    let id = &ctx.id;
    let secrets =
        Secrets { token: format!("prod-token-{id}"), hmac: format!("prod-hmac-{id}"), salt: format!("prod-salt-{id}") };

    let port = free_port();
    let mut edge = ServiceProcess::start(binary, "edge", &config(&ctx, &topic, &registry_url, port, &secrets), &dir);
    assert!(edge.healthy(port, "/readyz", Duration::from_secs(60)).await, "the edge did not start:\n{}", edge.logs());
    let body = format!(
        r#"{{"eventId":"prod_{id}","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{{"invoiceId":"INV-1","period":"2025-09","total":1,"contact":"jo@example.com"}}}}"#
    );
    let http = reqwest::Client::new();
    let send = |token: &str| {
        http.post(format!("http://127.0.0.1:{port}/events"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("x-ct-signature", ct_signature(&secrets.hmac, body.as_bytes()))
            .body(body.clone())
            .send()
    };
    assert_eq!(send(&secrets.token).await.unwrap().status(), 202, "{}", edge.logs());
    assert_eq!(send("dev-token-finance").await.unwrap().status(), 401, "the dev token works in production");
    edge.stop();
    let logs = edge.logs();
    for secret in [&secrets.token, &secrets.hmac, &secrets.salt] {
        assert!(!logs.contains(secret.as_str()), "a secret value was logged:\n{logs}");
    }

    // A dev credential in a production file, or no credential at all: refused at start, by name.
    let cases = [
        (Secrets { hmac: "dev-webhook-secret".into(), ..secrets_of(id) }, "dev HMAC secret"),
        (Secrets { token: "dev-token-finance".into(), ..secrets_of(id) }, "dev producer tokens"),
        (Secrets { salt: "dev-redaction-salt".into(), ..secrets_of(id) }, "dev redaction salt"),
    ];
    for (n, (bad, rule)) in cases.into_iter().enumerate() {
        let port = free_port();
        let mut edge = ServiceProcess::start(
            binary,
            &format!("refused-{n}"),
            &config(&ctx, &topic, &registry_url, port, &bad),
            &dir,
        );
        assert_eq!(edge.exit_code(Duration::from_secs(20)).await, Some(64), "{rule}: {}", edge.logs());
        assert!(edge.logs().contains(rule), "{rule}: {}", edge.logs());
    }
    let bare = format!(
        "profile = \"production\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[registry]\nurl = \"{registry_url}\"\n",
        free_port()
    );
    let mut edge = ServiceProcess::start(binary, "bare", &bare, &dir);
    assert_eq!(edge.exit_code(Duration::from_secs(20)).await, Some(64), "{}", edge.logs());
    let _ = std::fs::remove_dir_all(dir);
}

fn secrets_of(id: &str) -> Secrets {
    Secrets { token: format!("prod-token-{id}"), hmac: format!("prod-hmac-{id}"), salt: format!("prod-salt-{id}") }
}
