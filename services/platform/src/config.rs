//! Layered, typed configuration: a commented defaults file compiled into the binary, then an
//! optional file, then `CT_`-prefixed environment variables (`__` separates nesting levels, so
//! `CT_KAFKA__BOOTSTRAP_SERVERS` sets `kafka.bootstrap_servers`).

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, de::DeserializeOwned};

pub const ENV_PREFIX: &str = "CT_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("configuration rule broken: {0}")]
    Rule(String),
}

/// A service's compiled-in defaults: `base` applies under every profile; `dev` (the local
/// stack's documented credentials) is merged over it only when the profile is `dev`, so a
/// production configuration never contains a dev token or secret it did not set itself.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub base: &'static str,
    pub dev: &'static str,
}

/// The figment of the defaults, then `file`, then the `CT_` environment; the dev defaults are
/// included when that layering says `profile = "dev"` (or says nothing).
pub fn figment(defaults: Defaults, file: Option<&Path>) -> Result<Figment, ConfigError> {
    if let Some(path) = file
        && !path.exists()
    {
        return Err(ConfigError::MissingFile(path.display().to_string()));
    }
    let layered = |dev: bool| {
        let mut figment = Figment::new().merge(Toml::string(defaults.base));
        if dev {
            figment = figment.merge(Toml::string(defaults.dev));
        }
        if let Some(path) = file {
            figment = figment.merge(Toml::file(path));
        }
        figment.merge(Env::prefixed(ENV_PREFIX).split("__"))
    };
    let profile: Profile = match layered(false).extract_inner::<Option<Profile>>("profile") {
        Ok(profile) => profile.unwrap_or_default(),
        Err(error) if error.missing() => Profile::Dev,
        Err(error) => return Err(ConfigError::Invalid(Box::new(error))),
    };
    Ok(layered(profile == Profile::Dev))
}

/// Loads and deserialises a service's config.
pub fn load<C: DeserializeOwned>(defaults: Defaults, file: Option<&Path>) -> Result<C, ConfigError> {
    extract(figment(defaults, file)?)
}

pub fn extract<C: DeserializeOwned>(figment: Figment) -> Result<C, ConfigError> {
    figment.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))
}

/// `dev` allows the documented dev credentials; `production` refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Dev,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied last.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Where a service listens (its API, or `/metrics` and `/healthz` for a consumer).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// Timeouts, caps and the optional metrics listener (see [`crate::http::HttpLimits`]).
    #[serde(flatten)]
    pub limits: crate::http::HttpLimits,
}

/// The schema registry a service reads writer schemas from.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryConfig {
    pub url: String,
}

/// A service's compiled-in defaults alone, dev profile (tests start from these).
pub fn defaults<C: DeserializeOwned>(defaults: Defaults) -> C {
    extract(figment(defaults, None).expect("the defaults file parses")).expect("the defaults are complete")
}

#[derive(Clone, Deserialize)]
pub struct PostgresConfig {
    pub url: String,
    pub max_connections: u32,
    /// Schema that holds this service's tables (tests use one per test).
    pub schema: String,
    /// How long a query waits for a connection (sqlx keeps reconnecting meanwhile) before it
    /// fails as transient.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Other read models' schemas this service reads (after its own in `search_path`); a reader
    /// such as the read API names every schema it serves from. Writers leave it empty.
    #[serde(default)]
    pub extra_schemas: Vec<String>,
    /// Postgres cancels any statement that runs longer (`statement_timeout`; 0: never), so a
    /// stuck query fails as a dependency fault instead of holding a connection forever.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

fn default_acquire_timeout_ms() -> u64 {
    10_000
}

fn default_statement_timeout_ms() -> u64 {
    60_000
}

#[derive(Clone, Deserialize)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix for every key, so tests and tenants do not collide.
    pub key_prefix: String,
    /// How long a command or a connection attempt may take before it fails.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_redis_timeout_ms() -> u64 {
    2_000
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redacted_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("schema", &self.schema)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("extra_schemas", &self.extra_schemas)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `url` without its password (and without the user when it cannot be parsed at all), for
/// logs, errors and `Debug`: connection URLs may carry credentials.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetryConfig {
    /// `tracing` filter directives, e.g. `info,ct_edge=debug`. `RUST_LOG` overrides it.
    pub filter: String,
    pub format: LogFormat,
    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318/v1/traces`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

#[cfg(test)]
// figment's `Jail` closures must return its large `figment::Error`.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        profile: Profile,
        kafka: KafkaConfig,
        telemetry: TelemetryConfig,
    }

    const DEFAULTS: Defaults = Defaults {
        base: r#"
            # the default profile
            profile = "dev"
            [kafka]
            bootstrap_servers = "127.0.0.1:9092"
            [telemetry]
            filter = "info"
            format = "pretty"
        "#,
        dev: r#"
            [kafka.properties]
            "client.id" = "dev-only"
        "#,
    };

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file("ct.toml", "[kafka]\nbootstrap_servers = \"file:9092\"\n[telemetry]\nformat = \"json\"")?;
            jail.set_env("CT_KAFKA__BOOTSTRAP_SERVERS", "env:9092");
            jail.set_env("CT_PROFILE", "production");
            let config: Sample = load(DEFAULTS, Some(Path::new("ct.toml"))).expect("loads");
            assert_eq!(config.kafka.bootstrap_servers, "env:9092");
            assert_eq!(config.telemetry.format, LogFormat::Json);
            assert_eq!(config.telemetry.filter, "info");
            assert_eq!(config.profile, Profile::Production);
            assert!(config.kafka.properties.is_empty(), "dev defaults merged under production");
            Ok(())
        });
    }

    #[test]
    fn dev_defaults_apply_only_under_the_dev_profile() {
        Jail::expect_with(|jail| {
            let config: Sample = load(DEFAULTS, None).expect("loads");
            assert_eq!(config.kafka.properties.get("client.id").map(String::as_str), Some("dev-only"));
            jail.create_file("prod.toml", "profile = \"production\"")?;
            let config: Sample = load(DEFAULTS, Some(Path::new("prod.toml"))).expect("loads");
            assert!(config.kafka.properties.is_empty());
            Ok(())
        });
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redacted_url("postgres://ct:s3cret@db:5432/x"), "postgres://ct:***@db:5432/x");
        assert_eq!(redacted_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let config = PostgresConfig {
            url: "postgres://ct:s3cret@db/x".into(),
            max_connections: 1,
            schema: "ct".into(),
            acquire_timeout_ms: 1,
            extra_schemas: Vec::new(),
            statement_timeout_ms: 60_000,
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_value_names_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("CT_PROFILE", "staging");
            let err = load::<Sample>(DEFAULTS, None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("profile") && err.contains("staging"), "{err}");
            assert!(matches!(load::<Sample>(DEFAULTS, Some(Path::new("nope.toml"))), Err(ConfigError::MissingFile(_))));
            Ok(())
        });
    }
}
