//! The registry binary under `profile = "production"` with a file of its own: it starts and serves.

use std::time::Duration;

use ct_testkit::{ServiceProcess, TestContext, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_starts_from_its_own_file() {
    let ctx = TestContext::new();
    ctx.create_topics(&[("_schemas", 1)]).await;
    let port = free_port();
    let config = format!(
        "profile = \"production\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[kafka]\nbootstrap_servers = \"{}\"\n[registry]\ntopic = \"{}\"\n",
        ctx.kafka.bootstrap_servers,
        ctx.topic("_schemas"),
    );
    let dir = std::env::temp_dir().join(format!("ct-registry-production-{}", ctx.id));
    let mut registry =
        ServiceProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_ct-registry")), "registry", &config, &dir);
    assert!(
        registry.healthy(port, "/schemas/types", Duration::from_secs(60)).await,
        "the registry did not start:\n{}",
        registry.logs()
    );
    registry.stop();
    let _ = std::fs::remove_dir_all(dir);
}
