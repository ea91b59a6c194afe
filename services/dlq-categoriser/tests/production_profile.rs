//! The categoriser binary under `profile = "production"` with a file of its own: it starts, serves
//! `/healthz`, and never prints its database password.

use std::time::Duration;

use ct_testkit::{ServiceProcess, TestContext, free_port, postgres_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_starts_from_its_own_file_and_never_logs_the_database_password() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, _registry) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let password = format!("pg-pw-{}", ctx.id);
    // Local Postgres trusts the local user, so any password connects; it must still never print.
    let url = postgres_url().replacen("postgres@", &format!("postgres:{password}@"), 1);
    let port = free_port();
    let config = format!(
        r#"profile = "production"
[kafka]
bootstrap_servers = "{kafka}"
[topics]
dlq = "{dlq}"
schema = "{schema_topic}"
transient = "{transient}"
critical = "{critical}"
retry = "{retry}"
audit = "{audit}"
[categoriser]
name = "{prefix_group}categoriser"
[retry]
name = "{prefix_group}retry"
[items]
name = "{prefix_group}items"
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
        dlq = t.dlq,
        schema_topic = t.schema,
        transient = t.transient,
        critical = t.critical,
        retry = t.retry,
        audit = t.audit,
        prefix_group = ctx.group(""),
        schema = ctx.dlq_postgres().schema,
        redis = ctx.redis().url,
        prefix = ctx.redis().key_prefix,
    );
    let dir = std::env::temp_dir().join(format!("ct-categoriser-production-{}", ctx.id));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_ct-dlq-categoriser"));
    let mut categoriser = ServiceProcess::start(binary, "categoriser", &config, &dir);
    assert!(
        categoriser.healthy(port, "/healthz", Duration::from_secs(30)).await,
        "the categoriser did not start:\n{}",
        categoriser.logs()
    );
    categoriser.stop();
    let logs = categoriser.logs();
    assert!(!logs.contains(&password), "the database password was logged:\n{logs}");
    let _ = std::fs::remove_dir_all(dir);
}
