//! Test kit for integration tests on the real stack (Kafka, Postgres, Redis started by
//! `deploy/stack.sh up`). Each [`TestContext`] has its own topic names, consumer group, Postgres
//! schema and Redis key prefix, so tests run in parallel without seeing each other's data.
//!
//! A missing service fails the test with a message that says how to start it; nothing is skipped.

pub mod bench;
pub mod receivers;

use std::{path::PathBuf, time::Duration};

pub use ct_platform::topics::{PipelineTopics, Slice};
use ct_platform::{
    config::{KafkaConfig, PostgresConfig, RedisConfig},
    kafka,
    topics::TopicSpec,
};

/// Addresses of the stack, from the same `CT_` variables the services read, with the local defaults.
pub fn kafka_config() -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: env_or("CT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        properties: Default::default(),
    }
}

/// A password no log line or error body may ever show: the tests' Postgres URL carries it (the
/// local Postgres trusts local connections, so it is never checked), and the test command scans
/// the logs of the whole run for it (`deploy/scan-test-logs.sh`).
pub const CANARY_PASSWORD: &str = "ct-canary-5f3a9e";

pub fn postgres_url() -> String {
    env_or("CT_POSTGRES__URL", &format!("postgres://postgres:{CANARY_PASSWORD}@127.0.0.1:5432/controltower"))
}

pub fn redis_url() -> String {
    env_or("CT_REDIS__URL", "redis://127.0.0.1:6379")
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// The repository root (for `deploy/stack.sh`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Where `deploy/stack.sh` keeps the Kafka jars (the same `CT_KAFKA_LIB_DIR` / `CT_STATE_DIR`
/// overrides), for tests that run Apache Kafka's own tools.
pub fn kafka_lib_dir() -> PathBuf {
    match std::env::var_os("CT_KAFKA_LIB_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CT_STATE_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| repo_root().join(".state"), PathBuf::from)
            .join("kafka-lib"),
    }
}

/// One test's isolated slice of the stack.
pub struct TestContext {
    pub id: String,
    pub kafka: KafkaConfig,
}

impl TestContext {
    /// Checks that the broker answers; panics with instructions when it does not.
    pub fn new() -> Self {
        ct_platform::telemetry::init_for_tests();
        let kafka = kafka_config();
        if let Err(error) = kafka::ping(&kafka, Duration::from_secs(10)) {
            panic!(
                "Kafka does not answer at {} ({error}); start the stack with `deploy/stack.sh up` \
                 (the README's test command does it for you)",
                kafka.bootstrap_servers
            );
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self { id, kafka }
    }

    /// A topic name unique to this test, e.g. `t.3f2a.ct.events.v1`.
    pub fn topic(&self, base: &str) -> String {
        format!("t.{}.{base}", self.id)
    }

    pub fn group(&self, base: &str) -> String {
        format!("t.{}.{base}", self.id)
    }

    /// Creates this test's copies of the topics.
    pub async fn create_topics(&self, specs: &[(&str, i32)]) -> Vec<String> {
        let specs: Vec<TopicSpec> =
            specs.iter().map(|(base, partitions)| TopicSpec::new(self.topic(base), *partitions)).collect();
        kafka::ensure_topics(&self.kafka, &specs).await.expect("create test topics");
        specs.into_iter().map(|s| s.name).collect()
    }

    /// This test's copies of every pipeline topic (design §5).
    pub async fn pipeline_topics(&self) -> PipelineTopics {
        let names = self
            .create_topics(&[
                ("ct.events.v1", 3),
                ("ct.dlq.v1", 1),
                ("ct.dlq.schema.v1", 1),
                ("ct.dlq.transient.v1", 1),
                ("ct.dlq.critical.v1", 1),
                ("ct.retry.v1", 1),
                ("ct.audit.v1", 1),
                ("ct.clock.v1", 1),
                ("ct.health.v1", 1),
                ("ct.runs.v1", 3),
            ])
            .await;
        let [events, dlq, schema, transient, critical, retry, audit, clock, health, runs] =
            <[String; 10]>::try_from(names).expect("ten topics");
        PipelineTopics { events, dlq, schema, transient, critical, retry, audit, clock, health, runs }
    }

    /// Postgres config for a schema of this test's own (the projector's, in pipeline tests),
    /// which also reads the test's dead-letter and health schemas ([`TestContext::dlq_postgres`],
    /// [`TestContext::health_postgres`]), as the read API does.
    pub fn postgres(&self) -> PostgresConfig {
        PostgresConfig {
            url: postgres_url(),
            max_connections: 5,
            schema: format!("t_{}", self.id),
            acquire_timeout_ms: 10_000,
            extra_schemas: vec![
                self.dlq_postgres().schema,
                self.health_postgres().schema,
                self.runs_postgres().schema,
                self.digest_postgres().schema,
                format!("t_{}_versions", self.id),
            ],
            statement_timeout_ms: 60_000,
        }
    }

    /// The schema of this test's `dlq_items` read model (a read model owns its schema).
    pub fn dlq_postgres(&self) -> PostgresConfig {
        PostgresConfig {
            url: postgres_url(),
            max_connections: 5,
            schema: format!("t_{}_dlq", self.id),
            acquire_timeout_ms: 10_000,
            extra_schemas: Vec::new(),
            statement_timeout_ms: 60_000,
        }
    }

    /// The schema of this test's health evaluator.
    pub fn health_postgres(&self) -> PostgresConfig {
        PostgresConfig { schema: format!("t_{}_health", self.id), ..self.dlq_postgres() }
    }

    /// The schema of this test's daily digest.
    pub fn digest_postgres(&self) -> PostgresConfig {
        PostgresConfig { schema: format!("t_{}_digest", self.id), ..self.dlq_postgres() }
    }

    /// The schema of this test's runs read model (the runner's).
    pub fn runs_postgres(&self) -> PostgresConfig {
        PostgresConfig { schema: format!("t_{}_runs", self.id), ..self.dlq_postgres() }
    }

    pub fn redis(&self) -> RedisConfig {
        RedisConfig { url: redis_url(), key_prefix: format!("t:{}", self.id), timeout_ms: 2_000 }
    }

    /// This test's slice of the stack for services that run together (`Config::for_slice`).
    pub fn slice(&self, topics: &PipelineTopics, registry_url: &str) -> Slice {
        Slice {
            kafka: self.kafka.clone(),
            topics: topics.clone(),
            prefix: format!("t.{}.", self.id),
            postgres: self.postgres(),
            dlq_postgres: self.dlq_postgres(),
            health_postgres: self.health_postgres(),
            digest_postgres: self.digest_postgres(),
            runs_postgres: self.runs_postgres(),
            redis: self.redis(),
            registry_url: registry_url.to_owned(),
        }
    }
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `deploy/stack.sh` with `args` (e.g. `["down", "postgres"]`) and asserts it succeeded.
pub fn stack(args: &[&str]) {
    let status = std::process::Command::new("bash")
        .arg(repo_root().join("deploy/stack.sh"))
        .args(args)
        .status()
        .expect("stack.sh");
    assert!(status.success(), "deploy/stack.sh {args:?} failed");
}

/// `body` parsed as the edge parses a producer's event (received at 2025-09-28T00:00:00Z, five
/// minutes of future skew allowed): for tests that write valid events straight to the log.
pub fn parse_event(body: &serde_json::Value) -> ct_core::Envelope {
    let redactor = ct_core::redact::Redactor::new("t");
    let options = ct_core::envelope::ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-28T00:00:00Z".parse().expect("literal time"),
        max_future_skew: chrono::Duration::minutes(5),
    };
    ct_core::Envelope::parse(body, &options).expect("test events are valid").0
}

/// The `i`-th of a deterministic mix of valid events (invoices, heartbeats, function errors).
pub fn sample_event(i: usize) -> ct_core::Envelope {
    use serde_json::json;
    let redactor = ct_core::redact::Redactor::new("t");
    let options = ct_core::envelope::ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-27T12:00:00Z".parse().expect("literal time"),
        max_future_skew: chrono::Duration::minutes(5),
    };
    let ts = format!("2025-09-27T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60);
    let body = match i % 3 {
        0 => json!({"eventId": format!("f_{i}"), "type": "finance.invoice.generated", "ts": ts, "source": "finance",
                    "payload": {"invoiceId": format!("INV-{i}"), "period": "2025-09", "total": 10}}),
        1 => json!({"eventId": format!("f_{i}"), "type": "system.heartbeat", "ts": ts, "source": "portal",
                    "payload": {"systemId": "portal"}}),
        _ => json!({"eventId": format!("f_{i}"), "type": "backend.fn.error", "ts": ts, "source": "backend",
                    "payload": {"fnName": "parse", "severity": "low"}}),
    };
    ct_core::Envelope::parse(&body, &options).expect("sample events are valid").0
}

/// `event` in the Confluent wire format under `schema_id`.
pub fn wire_event(schema_id: u32, event: &ct_core::Envelope) -> Vec<u8> {
    let mut value = Vec::new();
    ct_core::avro::wire::write_header(schema_id, &mut value);
    ct_core::avro::encode_event(event, &mut value).expect("sample events encode");
    value
}

/// A service binary started as an operator starts it: `--config <file>`, its output kept in a
/// file beside the config, so a test can read the logs (and look for secrets in them).
pub struct ServiceProcess {
    child: std::process::Child,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary --config <dir>/<name>.toml` with `config` as that file's text.
    pub fn start(binary: &std::path::Path, name: &str, config: &str, dir: &std::path::Path) -> ServiceProcess {
        std::fs::create_dir_all(dir).expect("create the test folder");
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).expect("write the config file");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create the log file");
        let child = std::process::Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .env_remove("CT_CONFIG")
            .env_remove("CT_PROFILE")
            .env("RUST_LOG", "debug,rdkafka=info,sqlx=warn,hyper=info,h2=info,reqwest=info")
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        ServiceProcess { child, log }
    }

    /// Polls `GET path` on `port` until it answers 200; `false` if the process exits first or
    /// `timeout` passes.
    pub async fn healthy(&mut self, port: u16, path: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if http_status(port, path).await == Some(200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Waits for the process to exit by itself; its exit code, `None` if it was still running
    /// after `timeout` (it is then killed).
    pub async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop();
        None
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.stop();
        // Kept with the in-process logs, for the test command's scan for secrets.
        if let Some(dir) = std::env::var_os("CT_TEST_LOG_DIR").filter(|d| !d.is_empty()) {
            let name = self.log.file_name().and_then(|n| n.to_str()).unwrap_or("service.log");
            let copy = PathBuf::from(dir).join(format!("process-{}-{name}", uuid::Uuid::new_v4().simple()));
            let _ = std::fs::copy(&self.log, copy);
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The status code of a plain `GET path` on 127.0.0.1:`port` (`None`: no answer).
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A program of the test command's Python virtualenv (`.state/venv/bin/<name>`, or under
/// `CT_STATE_DIR`), made by `deploy/bootstrap.sh`; fails loudly when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let state = std::env::var_os("CT_STATE_DIR").map_or_else(|| repo_root().join(".state"), PathBuf::from);
    let program = state.join("venv/bin").join(name);
    assert!(
        program.exists(),
        "{} is missing: run `bash deploy/bootstrap.sh` (the README's test command does)",
        program.display()
    );
    program
}

/// A TCP proxy in front of a real dependency that can be frozen: while frozen it keeps every
/// connection open and accepts new ones but forwards nothing, as a hung server does (a
/// stopped process, a full disk, a network partition that drops packets).
pub struct FreezableProxy {
    pub address: std::net::SocketAddr,
    frozen: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl FreezableProxy {
    /// Starts forwarding `127.0.0.1:<port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> FreezableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let frozen = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let (target, gate) = (target.to_owned(), std::sync::Arc::clone(&frozen));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, gate.subscribe()));
                tokio::spawn(forward(server_read, client_write, gate.subscribe()));
            }
        });
        FreezableProxy { address, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0; 16 * 1024];
    loop {
        // While frozen, nothing is read, so nothing is answered.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// The Kafka headers of a dead letter with `context`, as a stage writes them to `ct.dlq.v1`.
pub fn dead_letter_headers(context: &ct_core::dlq::Context) -> rdkafka::message::OwnedHeaders {
    context.headers().iter().fold(rdkafka::message::OwnedHeaders::new(), |h, (key, value)| {
        h.insert(rdkafka::message::Header { key, value: Some(value.as_str()) })
    })
}

/// A real trace collector for one test: Jaeger v2 (built by `deploy/jaeger.sh` into the state
/// folder) with in-memory storage, OTLP/HTTP in on `otlp_url`, its query API on `query_url`.
pub struct Jaeger {
    pub otlp_url: String,
    pub query_url: String,
    pub process: ServiceProcess,
}

impl Jaeger {
    pub async fn start(dir: &std::path::Path) -> Jaeger {
        let state = std::env::var_os("CT_STATE_DIR").map_or_else(|| repo_root().join(".state"), PathBuf::from);
        let binary = state.join("bin/jaeger");
        assert!(
            binary.exists(),
            "{} is missing: run `bash deploy/jaeger.sh` (the README's test command does)",
            binary.display()
        );
        let (otlp, query, grpc) = (free_port(), free_port(), free_port());
        // YAML (the collector reads it whatever the file is called).
        let config = format!(
            r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
        );
        let mut process = ServiceProcess::start(&binary, "jaeger", &config, dir);
        assert!(
            process.healthy(query, "/api/services", Duration::from_secs(60)).await,
            "Jaeger did not start:\n{}",
            process.logs()
        );
        // The receivers start after the query extension.
        let receiving = eventually(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", otlp)).await.ok().map(drop)
        });
        assert!(receiving.await.is_some(), "Jaeger's OTLP receiver did not open:\n{}", process.logs());
        Jaeger { otlp_url: format!("http://127.0.0.1:{otlp}"), query_url: format!("http://127.0.0.1:{query}"), process }
    }
}
