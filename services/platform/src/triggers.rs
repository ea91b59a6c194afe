//! Loads the trigger allow-list (`ct_core::runs::Triggers`): the project's
//! `config/triggers.toml` is compiled in, and `[triggers] file` of the read API and the runner may
//! name another file in its format. Both must load the same list.

use std::{path::PathBuf, sync::Arc};

use ct_core::runs::Triggers;
use serde::Deserialize;

const DEFAULT_TRIGGERS: &str = include_str!("../../../config/triggers.toml");

/// `[triggers]`: unset means the file the project ships.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TriggersConfig {
    pub file: Option<PathBuf>,
    /// Set by tests that build their list in code; never configured.
    #[serde(skip)]
    pub preloaded: Option<Arc<Triggers>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: {source}")]
    Parse { origin: String, source: toml::de::Error },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl TriggersConfig {
    pub fn load(&self) -> Result<Arc<Triggers>, LoadError> {
        if let Some(triggers) = &self.preloaded {
            return Ok(Arc::clone(triggers));
        }
        let (origin, text) = match &self.file {
            Some(path) => std::fs::read_to_string(path)
                .map(|text| (path.display().to_string(), text))
                .map_err(|source| LoadError::Read { path: path.clone(), source })?,
            None => ("the built-in triggers".to_owned(), DEFAULT_TRIGGERS.to_owned()),
        };
        let triggers: Triggers =
            toml::from_str(&text).map_err(|source| LoadError::Parse { origin: origin.clone(), source })?;
        triggers.validate().map_err(|message| LoadError::Invalid { origin, message })?;
        Ok(Arc::new(triggers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_has_the_three_seed_triggers() {
        let triggers = TriggersConfig::default().load().unwrap();
        let names: Vec<&str> = triggers.triggers.keys().map(String::as_str).collect();
        assert_eq!(names, ["contract.regenerate", "finance.export.backfill", "portal.notify.retry"]);
        assert!(triggers.triggers["finance.export.backfill"].approval.is_some());
    }
}
