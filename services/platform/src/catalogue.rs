//! Loads the system catalogue (`ct_core::catalogue`): the project's `config/catalogue.toml` and
//! `config/uk-bank-holidays.txt` are compiled in, and `[catalogue]` of any service may name other
//! files instead (e.g. next year's holidays) without a rebuild.

use std::{path::PathBuf, sync::Arc};

use ct_core::catalogue::{Calendar, Catalogue, CatalogueError};
use serde::Deserialize;

const DEFAULT_CATALOGUE: &str = include_str!("../../../config/catalogue.toml");
const DEFAULT_HOLIDAYS: &str = include_str!("../../../config/uk-bank-holidays.txt");

/// `[catalogue]`: both keys optional; unset means the files the project ships.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogueConfig {
    /// A catalogue file in the format of `config/catalogue.toml`.
    pub file: Option<PathBuf>,
    /// A holiday file in the format of `config/uk-bank-holidays.txt`.
    pub holidays_file: Option<PathBuf>,
}

/// The catalogue with its calendar, shared by whoever needs it.
#[derive(Debug, Clone)]
pub struct Systems {
    pub catalogue: Arc<Catalogue>,
    pub calendar: Arc<Calendar>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: {source}")]
    Parse { origin: String, source: toml::de::Error },
    #[error("{origin}: {source}")]
    Invalid { origin: String, source: CatalogueError },
}

impl CatalogueConfig {
    pub fn load(&self) -> Result<Systems, LoadError> {
        let read = |path: &Option<PathBuf>, default: &str| -> Result<(String, String), LoadError> {
            match path {
                Some(path) => std::fs::read_to_string(path)
                    .map(|text| (path.display().to_string(), text))
                    .map_err(|source| LoadError::Read { path: path.clone(), source }),
                None => Ok(("the built-in catalogue".to_owned(), default.to_owned())),
            }
        };
        let (origin, text) = read(&self.file, DEFAULT_CATALOGUE)?;
        let catalogue: Catalogue =
            toml::from_str(&text).map_err(|source| LoadError::Parse { origin: origin.clone(), source })?;
        catalogue.validate().map_err(|source| LoadError::Invalid { origin: origin.clone(), source })?;
        let (holidays_origin, holidays) = read(&self.holidays_file, DEFAULT_HOLIDAYS)?;
        let calendar = Calendar::new(&catalogue.calendar, &holidays)
            .map_err(|source| LoadError::Invalid { origin: holidays_origin, source })?;
        Ok(Systems { catalogue: Arc::new(catalogue), calendar: Arc::new(calendar) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_loads_with_the_six_systems_each_owned_by_its_source() {
        let systems = CatalogueConfig::default().load().expect("the shipped files are valid");
        let ids: Vec<&str> = systems.catalogue.systems.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["portal", "backend", "finance", "desktop", "github", "website"]);
        for system in &systems.catalogue.systems {
            assert_eq!(system.owner.as_str(), system.id);
        }
        assert!(!systems.calendar.is_working_day("2026-12-25".parse().unwrap()), "Christmas");
    }

    #[test]
    fn a_broken_file_names_itself() {
        let dir = std::env::temp_dir().join(format!("ct-catalogue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("catalogue.toml");
        let text = "systems = []\n[calendar]\ntime_zone = \"Mars/Olympus\"\nopens = \"09:00\"\ncloses = \"17:30\"\nworking_days = []\n";
        std::fs::write(&file, text).unwrap();
        let error = CatalogueConfig { file: Some(file.clone()), holidays_file: None }.load().unwrap_err();
        assert!(error.to_string().contains("Mars/Olympus"), "{error}");
    }
}
