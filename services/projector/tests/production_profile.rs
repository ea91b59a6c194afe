//! The projector binary under `profile = "production"` with a file of its own: it starts, serves
//! `/healthz`, and never prints its database password.

use std::time::Duration;

use ct_testkit::{ServiceProcess, TestContext, free_port, postgres_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_starts_from_its_own_file_and_never_logs_the_database_password() {
    let ctx = TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 1), ("ct.dlq.v1", 1), ("ct.audit.v1", 1)]).await;
    let (registry_url, _registry) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let password = format!("pg-pw-{}", ctx.id);
    // Local Postgres trusts the local user, so any password connects; it must still never print.
    let url = postgres_url().replacen("postgres@", &format!("postgres:{password}@"), 1);
    let port = free_port();
    let config = format!(
        r#"profile = "production"
[kafka]
bootstrap_servers = "{kafka}"
[consumer]
name = "{group}"
topic = "{events}"
dlq_topic = "{dlq}"
retry_topic = "{dlq}"
audit_topic = "{audit}"
[registry]
url = "{registry_url}"
[postgres]
url = "{url}"
schema = "{schema}"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[http]
listen = "127.0.0.1:{port}"
"#,
        kafka = ctx.kafka.bootstrap_servers,
        group = ctx.group("projector"),
        events = topics[0],
        dlq = topics[1],
        audit = topics[2],
        schema = ctx.postgres().schema,
        redis = ctx.redis().url,
        prefix = ctx.redis().key_prefix,
    );
    let dir = std::env::temp_dir().join(format!("ct-projector-production-{}", ctx.id));
    let mut projector =
        ServiceProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_ct-projector")), "projector", &config, &dir);
    assert!(
        projector.healthy(port, "/healthz", Duration::from_secs(30)).await,
        "the projector did not start:\n{}",
        projector.logs()
    );
    projector.stop();
    let logs = projector.logs();
    assert!(logs.contains("Consumer joined its group."), "{logs}");
    assert!(!logs.contains(&password), "the database password was logged:\n{logs}");
    let _ = std::fs::remove_dir_all(dir);
}
