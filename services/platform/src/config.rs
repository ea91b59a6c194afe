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

/// The figment of `defaults` (TOML text), then `file`, then the `CT_` environment.
pub fn figment(defaults: &str, file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::new().merge(Toml::string(defaults));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    Ok(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
}

/// Loads and deserialises a service's config.
pub fn load<C: DeserializeOwned>(defaults: &str, file: Option<&Path>) -> Result<C, ConfigError> {
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
}

/// The schema registry a service reads writer schemas from.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryConfig {
    pub url: String,
}

/// A service's compiled-in defaults alone (tests start from these).
pub fn defaults<C: DeserializeOwned>(defaults: &str) -> C {
    extract(figment(defaults, None).expect("the defaults file parses")).expect("the defaults are complete")
}

#[derive(Debug, Clone, Deserialize)]
pub struct PostgresConfig {
    pub url: String,
    pub max_connections: u32,
    /// Schema that holds this service's tables (tests use one per test).
    pub schema: String,
    /// How long a query waits for a connection (sqlx keeps reconnecting meanwhile) before it
    /// fails as transient.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

fn default_acquire_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix for every key, so tests and tenants do not collide.
    pub key_prefix: String,
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

    const DEFAULTS: &str = r#"
        # the default profile
        profile = "dev"
        [kafka]
        bootstrap_servers = "127.0.0.1:9092"
        [telemetry]
        filter = "info"
        format = "pretty"
    "#;

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
            assert!(config.kafka.properties.is_empty());
            Ok(())
        });
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
