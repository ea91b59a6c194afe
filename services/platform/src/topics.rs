//! Topic specifications (`deploy/topics.toml`): created explicitly, never auto-created.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self { name: name.into(), partitions, config: BTreeMap::new() }
    }
}

#[derive(Debug, Deserialize)]
struct TopicsFile {
    topic: Vec<TopicSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicsFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid topics file: {source}")]
    Parse { path: String, source: toml::de::Error },
}

pub fn parse(text: &str) -> Result<Vec<TopicSpec>, toml::de::Error> {
    Ok(toml::from_str::<TopicsFile>(text)?.topic)
}

pub fn load(path: &Path) -> Result<Vec<TopicSpec>, TopicsFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| TopicsFileError::Read { path: path.display().to_string(), source })?;
    parse(&text).map_err(|source| TopicsFileError::Parse { path: path.display().to_string(), source })
}

/// The repository's `deploy/topics.toml`, compiled in so services and tests agree on it.
pub const DEFAULT_TOPICS: &str = include_str!("../../../deploy/topics.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_topics_cover_design_section_5() {
        let topics = parse(DEFAULT_TOPICS).unwrap();
        let names: Vec<_> = topics.iter().map(|t| t.name.as_str()).collect();
        for expected in [
            "ct.events.v1",
            "ct.dlq.v1",
            "ct.dlq.schema.v1",
            "ct.dlq.transient.v1",
            "ct.dlq.critical.v1",
            "ct.retry.v1",
            "ct.runs.v1",
            "ct.health.v1",
            "ct.digests.v1",
            "ct.clock.v1",
            "_schemas",
        ] {
            assert!(names.contains(&expected), "{expected} missing");
        }
        let schemas = topics.iter().find(|t| t.name == "_schemas").unwrap();
        assert_eq!(schemas.partitions, 1);
        assert_eq!(schemas.config.get("cleanup.policy").map(String::as_str), Some("compact"));
        let clock = topics.iter().find(|t| t.name == "ct.clock.v1").unwrap();
        assert_eq!(clock.partitions, 1, "ticks are read in order");
    }
}

/// The names of the pipeline's topics (design §5), for one deployment or one test.
#[derive(Debug, Clone)]
pub struct PipelineTopics {
    pub events: String,
    pub dlq: String,
    pub schema: String,
    pub transient: String,
    pub critical: String,
    pub retry: String,
    pub audit: String,
    pub clock: String,
    pub health: String,
    pub runs: String,
}

/// One isolated slice of the stack: the topics, consumer-name prefix, Postgres schemas, Redis
/// prefix and registry a set of services shares apart from every other slice (each integration
/// test has one). Each service turns it into its configuration (`Config::for_slice`), so code
/// that starts several services knows none of their configuration types.
#[derive(Debug, Clone)]
pub struct Slice {
    pub kafka: crate::config::KafkaConfig,
    pub topics: PipelineTopics,
    /// Prefixed to every consumer name (group, progress key, transactional id).
    pub prefix: String,
    /// The projector's schema (the read API reads it, and `dlq_postgres`'s through
    /// `extra_schemas`).
    pub postgres: crate::config::PostgresConfig,
    /// The `dlq_items` read model's schema.
    pub dlq_postgres: crate::config::PostgresConfig,
    /// The health evaluator's schema.
    pub health_postgres: crate::config::PostgresConfig,
    /// The daily digest's schema.
    pub digest_postgres: crate::config::PostgresConfig,
    /// The runs read model's schema (the runner's).
    pub runs_postgres: crate::config::PostgresConfig,
    pub redis: crate::config::RedisConfig,
    pub registry_url: String,
}
