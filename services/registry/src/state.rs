//! The registry's state as a pure function of the `_schemas` records, in the record format that
//! Confluent Schema Registry and Karapace also read and write (see `records` below).
//!
//! Architecture invariant: nothing changes this state except [`State::apply`] on a record read
//! back from the topic, so every instance that has read the same prefix of the log agrees.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{canonical, compat::Level};

pub type SchemaHash = [u8; 32];

/// A named type that a schema takes from another registered schema (Confluent's shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// A schema's canonical text and its identity: SHA-256 of that text and its references. Avro
/// texts are canonicalised ([`canonical`]), so two spellings of one parsed schema are one schema;
/// other types (written by other registries into a shared topic) are compacted JSON with sorted
/// keys. Every attribute is kept, so a schema that differs in a default or a doc is another one.
pub fn identity(schema: &str, references: &[Reference], avro: bool) -> Result<(String, SchemaHash), serde_json::Error> {
    let value: Value = serde_json::from_str(schema)?;
    let text = if avro { canonical::to_text(&canonical::canonical(&value)) } else { serde_json::to_string(&value)? };
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(references)?);
    Ok((text, hasher.finalize().into()))
}

/// A stable identifier for a schema's content (Confluent's `guid`), derived from its identity so
/// every instance and every rebuild gives the same one.
pub fn guid(hash: &SchemaHash) -> String {
    let bytes: [u8; 16] = hash[..16].try_into().expect("16 of 32 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    /// Canonical text.
    pub schema: String,
    pub schema_type: Option<String>,
    pub references: Vec<Reference>,
    pub hash: SchemaHash,
}

/// Who may write to a subject (Confluent's modes): READONLY refuses registrations and deletions;
/// IMPORT lets a registration choose its id and version (migrations from another registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Readwrite,
    Readonly,
    ReadonlyOverride,
    Import,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::ReadonlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
        }
    }

    pub fn parse(raw: &str) -> Option<Mode> {
        serde_json::from_value(Value::String(raw.to_ascii_uppercase())).ok()
    }

    pub fn read_only(self) -> bool {
        matches!(self, Mode::Readonly | Mode::ReadonlyOverride)
    }
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
    global_mode: Option<Mode>,
    subject_modes: HashMap<String, Mode>,
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
    Mode {
        subject: Option<String>,
    },
    /// NOOP, CLEAR_SUBJECT, CONTEXT and anything newer: ignored.
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
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct ModeValue {
    mode: String,
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
            ("MODE", subject, _) => Key::Mode { subject },
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

    /// A version's record; `references` is omitted when empty, as Confluent writes it.
    pub fn schema_value(subject: &str, version: i32, id: i32, schema: &super::StoredSchema, deleted: bool) -> String {
        let mut value =
            json!({"subject": subject, "version": version, "id": id, "schema": schema.schema, "deleted": deleted});
        if !schema.references.is_empty() {
            value["references"] = json!(schema.references);
        }
        if let Some(kind) = &schema.schema_type {
            value["schemaType"] = json!(kind);
        }
        value.to_string()
    }

    pub fn mode_key(subject: Option<&str>) -> String {
        match subject {
            Some(s) => format!(r#"{{"keytype":"MODE","subject":{},"magic":0}}"#, quoted(s)),
            None => r#"{"keytype":"MODE","subject":null,"magic":0}"#.to_owned(),
        }
    }

    pub fn mode_value(mode: super::Mode) -> String {
        json!({ "mode": mode.as_str() }).to_string()
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
                    let avro = v.schema_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("AVRO"));
                    let (text, hash) =
                        identity(&v.schema, &v.references, avro).map_err(|e| RecordError::Value(e.to_string()))?;
                    self.schemas.entry(v.id).or_insert_with(|| StoredSchema {
                        schema: text,
                        schema_type: v.schema_type.filter(|_| !avro),
                        references: v.references,
                        hash,
                    });
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
            Key::Mode { subject } => {
                let mode = match value {
                    None => None,
                    Some(bytes) => {
                        let v: ModeValue =
                            serde_json::from_slice(bytes).map_err(|e| RecordError::Value(e.to_string()))?;
                        Some(Mode::parse(&v.mode).ok_or(RecordError::Value(v.mode))?)
                    }
                };
                match (subject, mode) {
                    (None, mode) => self.global_mode = mode,
                    (Some(s), Some(mode)) => {
                        self.subject_modes.insert(s, mode);
                    }
                    (Some(s), None) => {
                        self.subject_modes.remove(&s);
                    }
                }
            }
            Key::Other => {}
        }
        Ok(())
    }

    pub fn global_mode(&self) -> Mode {
        self.global_mode.unwrap_or(Mode::Readwrite)
    }

    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_modes.get(subject).copied()
    }

    /// The subject's own mode, else the global one; a global READONLY_OVERRIDE wins over both.
    pub fn effective_mode(&self, subject: &str) -> Mode {
        match self.global_mode() {
            Mode::ReadonlyOverride => Mode::ReadonlyOverride,
            global => self.subject_mode(subject).unwrap_or(global),
        }
    }

    /// Ids of the schemas whose live versions reference `subject` version `version`.
    pub fn referenced_by(&self, subject: &str, version: i32) -> Vec<i32> {
        let live: std::collections::BTreeSet<i32> =
            self.subjects.values().flat_map(|v| v.values()).filter(|e| !e.deleted).map(|e| e.id).collect();
        live.into_iter()
            .filter(|id| {
                self.schemas
                    .get(id)
                    .is_some_and(|s| s.references.iter().any(|r| r.subject == subject && r.version == version))
            })
            .collect()
    }

    /// Every definition the references of a schema provide (transitively), by full name, as
    /// canonical values: what [`canonical::inline`] needs to make the schema self-contained.
    pub fn referenced_definitions(&self, references: &[Reference]) -> Result<HashMap<String, Value>, String> {
        let mut definitions = HashMap::new();
        let mut pending: Vec<Reference> = references.to_vec();
        let mut seen = std::collections::HashSet::new();
        while let Some(reference) = pending.pop() {
            if !seen.insert((reference.subject.clone(), reference.version)) {
                continue;
            }
            let id = self
                .subjects
                .get(&reference.subject)
                .and_then(|v| v.get(&reference.version))
                .map(|e| e.id)
                .ok_or_else(|| {
                    format!(
                        "reference `{}` names subject `{}` version {}, which does not exist",
                        reference.name, reference.subject, reference.version
                    )
                })?;
            let stored = self.schema(id).ok_or_else(|| format!("schema {id} is missing"))?;
            let value: Value = serde_json::from_str(&stored.schema).map_err(|e| e.to_string())?;
            canonical::definitions(&value, &mut definitions);
            pending.extend(stored.references.iter().cloned());
        }
        Ok(definitions)
    }

    /// The self-contained text of schema `id` (its references written in place).
    pub fn resolved_text(&self, id: i32) -> Option<String> {
        let stored = self.schema(id)?;
        if stored.references.is_empty() {
            return Some(stored.schema.clone());
        }
        let definitions = self.referenced_definitions(&stored.references).ok()?;
        let value: Value = serde_json::from_str(&stored.schema).ok()?;
        Some(canonical::to_text(&canonical::inline(&value, &definitions)))
    }

    /// Every live (subject, version, id), by subject then version.
    pub fn all_versions(&self, include_deleted: bool) -> Vec<(String, i32, i32)> {
        self.subjects
            .iter()
            .flat_map(|(s, versions)| {
                versions
                    .iter()
                    .filter(move |(_, e)| include_deleted || !e.deleted)
                    .map(move |(v, e)| (s.clone(), *v, e.id))
            })
            .collect()
    }

    pub fn id_for_guid(&self, guid_text: &str) -> Option<i32> {
        self.schemas.iter().find(|(_, s)| guid(&s.hash) == guid_text).map(|(id, _)| *id)
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

    fn value(subject: &str, version: i32, id: i32, schema: &str) -> Option<String> {
        let (text, hash) = identity(schema, &[], true).unwrap();
        let stored = StoredSchema { schema: text, schema_type: None, references: vec![], hash };
        Some(schema_value(subject, version, id, &stored, false))
    }

    #[test]
    fn replaying_the_log_rebuilds_subjects_versions_ids_and_levels() {
        let mut state = State::default();
        apply(&mut state, schema_key("a-value", 1), value("a-value", 1, 1, S1));
        apply(&mut state, schema_key("a-value", 2), value("a-value", 2, 2, S2));
        apply(&mut state, schema_key("b-value", 1), value("b-value", 1, 1, S1));
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
    fn identity_sees_defaults_and_references_but_not_spelling() {
        let hash = |s: &str, refs: &[Reference]| identity(s, refs, true).unwrap().1;
        let spaced = r#"{ "fields": [{"type":{"type":"int"}, "name":"x"}], "name":"A", "type":"record" }"#;
        assert_eq!(hash(S1, &[]), hash(spaced, &[]));
        assert_ne!(hash(S1, &[]), hash(S2, &[]));
        let reference = Reference { name: "B".into(), subject: "b".into(), version: 1 };
        assert_ne!(hash(S1, &[]), hash(S1, &[reference]));
    }

    #[test]
    fn modes_replay_per_subject_and_globally() {
        let mut state = State::default();
        assert_eq!(state.effective_mode("a"), Mode::Readwrite);
        apply(&mut state, mode_key(None), Some(mode_value(Mode::Readonly)));
        apply(&mut state, mode_key(Some("a")), Some(mode_value(Mode::Import)));
        assert_eq!((state.effective_mode("a"), state.effective_mode("b")), (Mode::Import, Mode::Readonly));
        apply(&mut state, mode_key(Some("a")), None);
        assert_eq!(state.effective_mode("a"), Mode::Readonly);
    }

    #[test]
    fn garbage_records_are_errors_not_panics() {
        let mut state = State::default();
        assert!(state.apply(b"not json", None).is_err());
        assert!(state.apply(schema_key("a", 1).as_bytes(), Some(b"{}")).is_err());
    }
}
