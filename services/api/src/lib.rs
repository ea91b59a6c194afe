//! `ct-api`: the read API over the projector's read models (`events`, `runs`, `systems`), behind
//! bearer tokens with the roles of deep dive §5.1.
//!
//! Architecture invariant: it never writes a read model; it meets the projector and the other
//! models only through their Postgres schemas. People's actions (acknowledging an alert) are
//! records it writes to the log (`ct.audit.v1`), which the owning model applies.

pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod cursor;
pub mod dlq;
pub mod health;
pub mod kpi;
pub mod lineage;
pub mod reports;
pub mod routes;
pub mod triggers;
pub mod ui;
pub mod versions;
pub mod views;

use std::{collections::BTreeMap, net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context as _;
use ct_platform::config::{
    ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RegistryConfig, TelemetryConfig,
};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Compiled-in defaults; the dev user tokens only under the dev profile.
pub const DEFAULTS: ct_platform::config::Defaults = ct_platform::config::Defaults {
    base: include_str!("../config.default.toml"),
    dev: include_str!("../config.dev.toml"),
};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub http: HttpConfig,
    pub postgres: PostgresConfig,
    pub auth: AuthConfig,
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub actions: ActionsConfig,
    pub runs: RunsConfig,
    pub artifacts: artifacts::ArtifactsConfig,
    /// How the API reaches the edge (artifact announcements).
    pub edge: ct_client::EdgeConfig,
    /// The trigger allow-list (unset: the project's `config/triggers.toml`); the runner must
    /// load the same.
    #[serde(default)]
    pub triggers: ct_platform::triggers::TriggersConfig,
    pub telemetry: TelemetryConfig,
    /// The system catalogue (unset: the one the project ships): the systems `/systems` lists.
    #[serde(default)]
    pub catalogue: ct_platform::catalogue::CatalogueConfig,
    /// The dashboards (`/ui/...`): sessions and the live tail.
    pub ui: ui::UiConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionsConfig {
    /// Where people's actions go (`ct.v1.AlertAudit` records, subject `<topic>-ct.v1.AlertAudit`).
    pub audit_topic: String,
    /// Where a dead-letter replay hands records back (the categoriser's `topics.retry`): named
    /// by the replay plan the exceptions page shows.
    pub retry_topic: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunsConfig {
    /// Where trigger requests and decisions go (`ct.v1.RunRecord`, keyed by run id).
    pub topic: String,
    /// Salt of the hashes that replace PII found in trigger inputs (as the edge's).
    pub redaction_salt: secrecy::SecretString,
    /// Hosts a completion callback may call (`callbacks.onComplete`/`onFail` of a job request).
    #[serde(default)]
    pub callback_hosts: Vec<String>,
}

#[derive(Clone, Deserialize)]
pub struct AuthConfig {
    /// Token -> role. The tokens are secrets: `Debug` shows only how many there are.
    pub user_tokens: BTreeMap<String, auth::Role>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("user_tokens", &format_args!("[{} redacted]", self.user_tokens.len()))
            .finish()
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = ct_platform::config::load(DEFAULTS, file)?;
        config.validate()?;
        Ok(config)
    }

    /// Rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.profile == Profile::Production {
            if self.auth.user_tokens.keys().any(|t| t.starts_with("dev-token-")) {
                return Err(ConfigError::Rule("dev user tokens are refused under the production profile".into()));
            }
            if self.edge.has_dev_token() {
                return Err(ConfigError::Rule(
                    "edge.producer_token: dev tokens are refused under the production profile".into(),
                ));
            }
            if secrecy::ExposeSecret::expose_secret(&self.runs.redaction_salt).starts_with("dev-") {
                return Err(ConfigError::Rule(
                    "runs.redaction_salt: the dev salt is refused under the production profile".into(),
                ));
            }
            if secrecy::ExposeSecret::expose_secret(&self.ui.session_key).starts_with("dev-") {
                return Err(ConfigError::Rule(
                    "ui.session_key: the dev key is refused under the production profile".into(),
                ));
            }
            if self.auth.user_tokens.is_empty() {
                return Err(ConfigError::Rule("auth.user_tokens must list at least one token in production".into()));
            }
        }
        if !(60..=30 * 86_400).contains(&self.ui.session_ttl_s) {
            return Err(ConfigError::Rule("ui.session_ttl_s must be from 60 s to 30 days".into()));
        }
        if secrecy::ExposeSecret::expose_secret(&self.ui.session_key).len() < 32 {
            return Err(ConfigError::Rule("ui.session_key must be at least 32 bytes".into()));
        }
        if self.auth.user_tokens.keys().any(|t| t.len() < 8) {
            return Err(ConfigError::Rule("auth.user_tokens: tokens must be at least 8 characters".into()));
        }
        Ok(())
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULTS)
    }
}

pub struct AppState {
    pub config: Config,
    pub pool: PgPool,
    pub users: auth::Users,
    pub catalogue: Arc<ct_core::catalogue::Catalogue>,
    pub actions: health::ActionWriter,
    pub triggers: triggers::Catalogue,
    pub artifacts: artifacts::Store,
    pub ui: ui::Ui,
}

pub struct Application {
    server: ct_platform::http::Server,
    streams: CancellationToken,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
        let catalogue = config.catalogue.load().context("loading the system catalogue")?.catalogue;
        let sessions = auth::Sessions::new(
            secrecy::ExposeSecret::expose_secret(&config.ui.session_key).as_bytes(),
            config.ui.session_ttl_s,
            config.ui.secure_cookie,
        );
        let users = auth::Users::new(&config.auth.user_tokens, sessions);
        let actions = health::ActionWriter::new(&config).context("creating the Kafka producer")?;
        let triggers = config.triggers.load().context("loading the triggers")?;
        let triggers = triggers::Catalogue::new(&config, triggers)?;
        let artifacts = artifacts::Store::new(config.artifacts.clone(), &config.edge);
        // Ends the dashboards' live tails when the server stops (they would hold the drain open).
        let streams = CancellationToken::new();
        let ui = ui::Ui::new(&config.ui, pool.clone(), streams.clone());
        let state =
            Arc::new(AppState { users, pool, config: config.clone(), catalogue, actions, triggers, artifacts, ui });
        let server = ct_platform::http::Server::bind(config.http.listen, routes::router(state), &config.http.limits)
            .await
            .with_context(|| format!("binding {}", config.http.listen))?;
        Ok(Application { server, streams })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "Read API listening.");
        let streams = self.streams.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            streams.cancel();
        });
        self.server.run(shutdown).await?;
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config).await?.run_until_stopped(shutdown).await
}
