//! Schema compatibility, by apache-avro's checker (`SchemaCompatibility::can_read`), wrapped for
//! the gaps the crate has against the Avro specification and Confluent's behaviour:
//!
//! - `decimal` is rejected even when unchanged: logical types are dropped before the check (as
//!   Confluent's Java checker ignores them, decimal is checked as its underlying bytes/fixed);
//! - an enum symbol the reader lacks is an error even when the reader enum has a `default`:
//!   symbols covered by that default are removed from the writer before the check;
//! - named types renamed through `aliases` are rejected: writer names that a reader type lists
//!   as an alias are renamed to the reader's name before the check (fields likewise).

use std::{collections::HashMap, fmt, str::FromStr};

use apache_avro::{Schema, schema_compatibility::SchemaCompatibility};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(self, Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive)
    }

    fn backward(self) -> bool {
        matches!(self, Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive)
    }

    fn forward(self) -> bool {
        matches!(self, Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        serde_json::from_value(Value::String(s.to_ascii_uppercase())).map_err(|_| ())
    }
}

/// Can data written with `writer` be read with `reader`? `Err` carries the reasons.
pub fn can_read(writer: &str, reader: &str) -> Result<(), String> {
    let mut writer: Value = serde_json::from_str(writer).map_err(|e| format!("writer schema: {e}"))?;
    let mut reader: Value = serde_json::from_str(reader).map_err(|e| format!("reader schema: {e}"))?;
    strip_logical_types(&mut writer);
    strip_logical_types(&mut reader);
    let mut reader_enums = HashMap::new();
    let mut aliases = HashMap::new();
    collect_reader_facts(&reader, None, &mut reader_enums, &mut aliases);
    adapt_writer(&mut writer, None, &reader_enums, &aliases);
    let writer = Schema::parse(&writer).map_err(|e| format!("writer schema: {e}"))?;
    let reader = Schema::parse(&reader).map_err(|e| format!("reader schema: {e}"))?;
    SchemaCompatibility::can_read(&writer, &reader).map_err(|e| e.to_string())
}

/// Checks `new` against the existing versions (oldest first) at `level`; returns the reasons
/// it is incompatible, empty when it is compatible.
pub fn check(level: Level, new: &str, existing: &[&str]) -> Vec<String> {
    if level == Level::None {
        return Vec::new();
    }
    let against: &[&str] =
        if level.transitive() { existing } else { existing.last().map(std::slice::from_ref).unwrap_or(&[]) };
    let mut reasons = Vec::new();
    for (i, old) in against.iter().enumerate() {
        let which = if level.transitive() { format!("version #{}", i + 1) } else { "the latest version".to_owned() };
        if level.backward()
            && let Err(reason) = can_read(old, new)
        {
            reasons.push(format!("BACKWARD: the new schema cannot read data written with {which}: {reason}"));
        }
        if level.forward()
            && let Err(reason) = can_read(new, old)
        {
            reasons.push(format!("FORWARD: {which} cannot read data written with the new schema: {reason}"));
        }
    }
    reasons
}

fn strip_logical_types(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.remove("logicalType").is_some() {
                object.remove("precision");
                object.remove("scale");
            }
            object.values_mut().for_each(strip_logical_types);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_logical_types),
        _ => {}
    }
}

fn full_name(object: &serde_json::Map<String, Value>, enclosing: Option<&str>) -> Option<String> {
    let name = object.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    Some(match object.get("namespace").and_then(Value::as_str).or(enclosing) {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    })
}

fn namespace_of(full: &str) -> Option<&str> {
    full.rsplit_once('.').map(|(ns, _)| ns)
}

fn is_named(object: &serde_json::Map<String, Value>) -> bool {
    matches!(object.get("type").and_then(Value::as_str), Some("record" | "enum" | "fixed" | "error"))
}

/// Reader enums with a default (name -> symbols) and reader aliases (alias -> reader name).
fn collect_reader_facts(
    value: &Value,
    namespace: Option<&str>,
    enums: &mut HashMap<String, Vec<String>>,
    aliases: &mut HashMap<String, String>,
) {
    match value {
        Value::Object(object) => {
            let mut inner_ns = namespace.map(str::to_owned);
            if is_named(object)
                && let Some(name) = full_name(object, namespace)
            {
                inner_ns = namespace_of(&name).map(str::to_owned);
                if object.get("type").and_then(Value::as_str) == Some("enum") && object.contains_key("default") {
                    let symbols = object
                        .get("symbols")
                        .and_then(Value::as_array)
                        .map(|s| s.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default();
                    enums.insert(name.clone(), symbols);
                }
                for alias in object.get("aliases").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(alias) = alias.as_str() {
                        let alias_full = match (alias.contains('.'), inner_ns.as_deref()) {
                            (false, Some(ns)) => format!("{ns}.{alias}"),
                            _ => alias.to_owned(),
                        };
                        aliases.insert(alias_full, name.clone());
                    }
                }
            }
            for child in object.values() {
                collect_reader_facts(child, inner_ns.as_deref(), enums, aliases);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_reader_facts(i, namespace, enums, aliases)),
        _ => {}
    }
}

fn adapt_writer(
    value: &mut Value,
    namespace: Option<&str>,
    reader_enums: &HashMap<String, Vec<String>>,
    aliases: &HashMap<String, String>,
) {
    match value {
        Value::String(reference) => {
            let full = match (reference.contains('.'), namespace) {
                (false, Some(ns)) => format!("{ns}.{reference}"),
                _ => reference.clone(),
            };
            if let Some(renamed) = aliases.get(&full) {
                *reference = renamed.clone();
            }
        }
        Value::Object(object) => {
            let mut inner_ns = namespace.map(str::to_owned);
            if is_named(object)
                && let Some(mut name) = full_name(object, namespace)
            {
                if let Some(renamed) = aliases.get(&name) {
                    name = renamed.clone();
                    object.insert("name".to_owned(), Value::String(name.clone()));
                    object.remove("namespace");
                }
                inner_ns = namespace_of(&name).map(str::to_owned);
                if let (Some(reader_symbols), Some(Value::Array(symbols))) =
                    (reader_enums.get(&name), object.get_mut("symbols"))
                {
                    symbols.retain(|s| s.as_str().is_some_and(|s| reader_symbols.iter().any(|r| r == s)));
                }
            }
            for (key, child) in object.iter_mut() {
                if matches!(key.as_str(), "type" | "items" | "values" | "fields")
                    || child.is_object()
                    || child.is_array()
                {
                    adapt_writer(child, inner_ns.as_deref(), reader_enums, aliases);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| adapt_writer(i, namespace, reader_enums, aliases)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
    const WITH_DEFAULT: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const WITHOUT_DEFAULT: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;
    const DROPPED_A: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[]}"#;

    #[test]
    fn each_level_decides_as_confluent_does() {
        let cases = [
            (Level::Backward, WITH_DEFAULT, vec![V1], true),
            (Level::Backward, WITHOUT_DEFAULT, vec![V1], false),
            (Level::Forward, WITHOUT_DEFAULT, vec![V1], true),
            (Level::Forward, DROPPED_A, vec![V1], false),
            (Level::Full, WITH_DEFAULT, vec![V1], true),
            (Level::Full, WITHOUT_DEFAULT, vec![V1], false),
            (Level::None, WITHOUT_DEFAULT, vec![V1], true),
            // Non-transitive levels look only at the latest version...
            (Level::Backward, WITHOUT_DEFAULT, vec![V1, WITHOUT_DEFAULT], true),
            (Level::Forward, V1, vec![WITHOUT_DEFAULT, V1], true),
            (Level::Full, WITH_DEFAULT, vec![DROPPED_A, V1], true),
            // ...transitive ones at every version.
            (Level::BackwardTransitive, WITHOUT_DEFAULT, vec![V1, WITHOUT_DEFAULT], false),
            (Level::ForwardTransitive, V1, vec![WITHOUT_DEFAULT, V1], false),
            (Level::FullTransitive, WITH_DEFAULT, vec![DROPPED_A, V1], false),
            (Level::FullTransitive, WITH_DEFAULT, vec![V1, WITH_DEFAULT], true),
        ];
        for (level, new, existing, compatible) in cases {
            let reasons = check(level, new, &existing);
            assert_eq!(reasons.is_empty(), compatible, "{level} {new} vs {existing:?}: {reasons:?}");
        }
    }

    #[test]
    fn gap_decimal_is_compatible_with_itself() {
        let decimal = r#"{"type":"record","name":"M","fields":[{"name":"x","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}"#;
        assert_eq!(can_read(decimal, decimal), Ok(()));
    }

    #[test]
    fn gap_enum_symbol_covered_by_reader_default() {
        let writer = r#"{"type":"enum","name":"S","symbols":["A","B","C"]}"#;
        let reader_with_default = r#"{"type":"enum","name":"S","symbols":["A","B"],"default":"A"}"#;
        let reader_without = r#"{"type":"enum","name":"S","symbols":["A","B"]}"#;
        assert_eq!(can_read(writer, reader_with_default), Ok(()));
        assert!(can_read(writer, reader_without).is_err());
    }

    #[test]
    fn gap_record_renamed_through_aliases() {
        let writer = r#"{"type":"record","name":"Old","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
        let reader = r#"{"type":"record","name":"New","namespace":"t","aliases":["Old"],"fields":[{"name":"a","type":"string"}]}"#;
        let reader_no_alias =
            r#"{"type":"record","name":"New","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
        assert_eq!(can_read(writer, reader), Ok(()));
        assert!(can_read(writer, reader_no_alias).is_err());
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!("backward_transitive".parse(), Ok(Level::BackwardTransitive));
        assert!("SIDEWAYS".parse::<Level>().is_err());
    }
}
