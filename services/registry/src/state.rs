//! The registry's state as a pure function of the `_schemas` records, in the record format that
//! Confluent Schema Registry and Karapace also read and write (see `records` below).
//!
//! Architecture invariant: nothing changes this state except [`State::apply`] on a record read
//! back from the topic, so every instance that has read the same prefix of the log agrees.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::compat::Level;

pub type SchemaHash = [u8; 32];

/// Identity of a schema: SHA-256 of its normalised JSON (compact, keys sorted, every attribute
/// kept, so a schema that differs only in a default or a doc is a different schema).
pub fn schema_hash(schema: &str) -> Result<SchemaHash, serde_json::Error> {
    let value: Value = serde_json::from_str(schema)?;
    // serde_json's map is ordered by key, so re-serialising sorts every object.
    let normalised = serde_json::to_string(&value)?;
    Ok(Sha256::digest(normalised.as_bytes()).into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    pub schema: String,
    pub hash: SchemaHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    pub id: i32,
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub struct State {
    schemas: BTreeMap<i32, StoredSchema>,
    id_by_hash: HashMap<SchemaHash, i32>,
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    global_level: Option<Level>,
    subject_levels: HashMap<String, Level>,
}

/// A record key of `_schemas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Schema {
        subject: String,
        version: i32,
    },
    Config {
        subject: Option<String>,
    },
    DeleteSubject {
        subject: String,
    },
    /// NOOP, MODE, CLEAR_SUBJECT, CONTEXT and anything newer: ignored.
    Other,
}

#[derive(Deserialize)]
struct RawKey {
    keytype: String,
    subject: Option<String>,
    version: Option<i32>,
}

#[derive(Deserialize)]
struct SchemaValue {
    id: i32,
    schema: String,
    #[serde(default)]
    deleted: bool,
}

#[derive(Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

#[derive(Deserialize)]
struct DeleteSubjectValue {
    version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("key is not a registry key: {0}")]
    Key(String),
    #[error("value does not fit its key: {0}")]
    Value(String),
}

impl Key {
    pub fn parse(bytes: &[u8]) -> Result<Key, RecordError> {
        let raw: RawKey = serde_json::from_slice(bytes).map_err(|e| RecordError::Key(e.to_string()))?;
        Ok(match (raw.keytype.as_str(), raw.subject, raw.version) {
            ("SCHEMA", Some(subject), Some(version)) => Key::Schema { subject, version },
            ("CONFIG", subject, _) => Key::Config { subject },
            ("DELETE_SUBJECT", Some(subject), _) => Key::DeleteSubject { subject },
            ("SCHEMA" | "DELETE_SUBJECT", _, _) => {
                return Err(RecordError::Key("SCHEMA key without subject/version".into()));
            }
            _ => Key::Other,
        })
    }
}

/// Record encodings, byte-compatible with Confluent's and Karapace's (key field order matters
/// for compaction, so keys are written by hand).
pub mod records {
    use serde_json::json;

    fn quoted(s: &str) -> String {
        serde_json::to_string(s).expect("a string serialises")
    }

    pub fn schema_key(subject: &str, version: i32) -> String {
        format!(r#"{{"keytype":"SCHEMA","subject":{},"version":{version},"magic":1}}"#, quoted(subject))
    }

    pub fn schema_value(subject: &str, version: i32, id: i32, schema: &str, deleted: bool) -> String {
        json!({"subject": subject, "version": version, "id": id, "schema": schema, "deleted": deleted}).to_string()
    }

    pub fn config_key(subject: Option<&str>) -> String {
        match subject {
            Some(s) => format!(r#"{{"keytype":"CONFIG","subject":{},"magic":0}}"#, quoted(s)),
            None => r#"{"keytype":"CONFIG","subject":null,"magic":0}"#.to_owned(),
        }
    }

    pub fn config_value(level: &str) -> String {
        json!({ "compatibilityLevel": level }).to_string()
    }
}

impl State {
    /// Applies one `_schemas` record; `value` is `None` for a tombstone.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        match Key::parse(key)? {
            Key::Schema { subject, version } => match value {
                None => {
                    if let Some(versions) = self.subjects.get_mut(&subject) {
                        versions.remove(&version);
                        if versions.is_empty() {
                            self.subjects.remove(&subject);
                        }
                    }
                }
                Some(bytes) => {
                    let v: SchemaValue =
                        serde_json::from_slice(bytes).map_err(|e| RecordError::Value(e.to_string()))?;
                    let hash = schema_hash(&v.schema).map_err(|e| RecordError::Value(e.to_string()))?;
                    self.schemas.entry(v.id).or_insert_with(|| StoredSchema { schema: v.schema, hash });
                    self.id_by_hash.entry(hash).or_insert(v.id);
                    self.subjects
                        .entry(subject)
                        .or_default()
                        .insert(version, VersionEntry { id: v.id, deleted: v.deleted });
                }
            },
            Key::Config { subject } => {
                let level = match value {
                    None => None,
                    Some(bytes) => {
                        let v: ConfigValue =
                            serde_json::from_slice(bytes).map_err(|e| RecordError::Value(e.to_string()))?;
                        Some(v.compatibility_level.parse().map_err(|()| RecordError::Value(v.compatibility_level))?)
                    }
                };
                match (subject, level) {
                    (None, level) => self.global_level = level,
                    (Some(s), Some(level)) => {
                        self.subject_levels.insert(s, level);
                    }
                    (Some(s), None) => {
                        self.subject_levels.remove(&s);
                    }
                }
            }
            Key::DeleteSubject { subject } => {
                if let Some(bytes) = value {
                    let v: DeleteSubjectValue =
                        serde_json::from_slice(bytes).map_err(|e| RecordError::Value(e.to_string()))?;
                    for (_, entry) in
                        self.subjects.get_mut(&subject).into_iter().flatten().filter(|(n, _)| **n <= v.version)
                    {
                        entry.deleted = true;
                    }
                }
            }
            Key::Other => {}
        }
        Ok(())
    }

    pub fn schema(&self, id: i32) -> Option<&StoredSchema> {
        self.schemas.get(&id)
    }

    pub fn id_for_hash(&self, hash: &SchemaHash) -> Option<i32> {
        self.id_by_hash.get(hash).copied()
    }

    pub fn next_id(&self) -> i32 {
        self.schemas.keys().next_back().map_or(1, |id| id + 1)
    }

    /// Versions of a subject, optionally with soft-deleted ones.
    pub fn versions(&self, subject: &str, include_deleted: bool) -> Vec<(i32, VersionEntry)> {
        self.subjects
            .get(subject)
            .map(|v| v.iter().filter(|(_, e)| include_deleted || !e.deleted).map(|(n, e)| (*n, *e)).collect())
            .unwrap_or_default()
    }

    /// The highest version number ever used in the subject (soft-deleted included).
    pub fn max_version(&self, subject: &str) -> i32 {
        self.subjects.get(subject).and_then(|v| v.keys().next_back().copied()).unwrap_or(0)
    }

    pub fn subject_exists(&self, subject: &str) -> bool {
        self.subjects.contains_key(subject)
    }

    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| include_deleted || versions.values().any(|e| !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Every (subject, version) that uses schema `id`.
    pub fn usages(&self, id: i32, include_deleted: bool) -> Vec<(String, i32)> {
        self.subjects
            .iter()
            .flat_map(|(s, versions)| {
                versions
                    .iter()
                    .filter(move |(_, e)| e.id == id && (include_deleted || !e.deleted))
                    .map(move |(v, _)| (s.clone(), *v))
            })
            .collect()
    }

    pub fn global_level(&self) -> Level {
        self.global_level.unwrap_or(Level::Backward)
    }

    pub fn subject_level(&self, subject: &str) -> Option<Level> {
        self.subject_levels.get(subject).copied()
    }

    pub fn effective_level(&self, subject: &str) -> Level {
        self.subject_level(subject).unwrap_or_else(|| self.global_level())
    }
}

#[cfg(test)]
mod tests {
    use super::{records::*, *};

    const S1: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
    const S2: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":1}]}"#;

    fn apply(state: &mut State, key: String, value: Option<String>) {
        state.apply(key.as_bytes(), value.as_deref().map(str::as_bytes)).expect("apply");
    }

    #[test]
    fn replaying_the_log_rebuilds_subjects_versions_ids_and_levels() {
        let mut state = State::default();
        apply(&mut state, schema_key("a-value", 1), Some(schema_value("a-value", 1, 1, S1, false)));
        apply(&mut state, schema_key("a-value", 2), Some(schema_value("a-value", 2, 2, S2, false)));
        apply(&mut state, schema_key("b-value", 1), Some(schema_value("b-value", 1, 1, S1, false)));
        apply(&mut state, config_key(None), Some(config_value("FULL")));
        apply(&mut state, config_key(Some("b-value")), Some(config_value("NONE")));
        apply(&mut state, r#"{"keytype":"NOOP","magic":0}"#.to_owned(), None);

        assert_eq!(state.subjects(false), vec!["a-value", "b-value"]);
        assert_eq!(
            state.versions("a-value", false).iter().map(|(v, e)| (*v, e.id)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 2)]
        );
        assert_eq!(state.usages(1, false), vec![("a-value".to_owned(), 1), ("b-value".to_owned(), 1)]);
        assert_eq!(state.effective_level("a-value"), Level::Full);
        assert_eq!(state.effective_level("b-value"), Level::None);
        assert_eq!(state.next_id(), 3);

        apply(
            &mut state,
            r#"{"keytype":"DELETE_SUBJECT","subject":"a-value","magic":0}"#.to_owned(),
            Some(r#"{"subject":"a-value","version":2}"#.to_owned()),
        );
        assert_eq!(state.subjects(false), vec!["b-value"]);
        assert_eq!(state.subjects(true), vec!["a-value", "b-value"]);
        assert!(state.schema(2).is_some(), "soft-deleted ids stay resolvable");

        apply(&mut state, schema_key("a-value", 1), None);
        apply(&mut state, schema_key("a-value", 2), None);
        assert!(!state.subject_exists("a-value"));
        apply(&mut state, config_key(Some("b-value")), None);
        assert_eq!(state.effective_level("b-value"), Level::Full);
    }

    #[test]
    fn keys_are_written_in_confluent_field_order() {
        assert_eq!(schema_key("x/y", 3), r#"{"keytype":"SCHEMA","subject":"x/y","version":3,"magic":1}"#);
        assert_eq!(config_key(None), r#"{"keytype":"CONFIG","subject":null,"magic":0}"#);
    }

    #[test]
    fn the_hash_sees_defaults_but_not_whitespace_or_key_order() {
        let spaced = r#"{ "fields": [{"type":"int", "name":"x"}], "name":"A", "type":"record" }"#;
        assert_eq!(schema_hash(S1).unwrap(), schema_hash(spaced).unwrap());
        assert_ne!(schema_hash(S1).unwrap(), schema_hash(S2).unwrap());
    }

    #[test]
    fn garbage_records_are_errors_not_panics() {
        let mut state = State::default();
        assert!(state.apply(b"not json", None).is_err());
        assert!(state.apply(schema_key("a", 1).as_bytes(), Some(b"{}")).is_err());
    }
}
