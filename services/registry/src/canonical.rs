//! The canonical text of an Avro schema: what the registry stores, returns and identifies a
//! schema by, so that two texts of one parsed schema get one id.
//!
//! It applies the transformations of Avro's Parsing Canonical Form that change spelling but not
//! meaning ([PRIMITIVES]: `{"type":"int"}` is `"int"`; [FULLNAMES]: every name and reference is
//! written in full, and `namespace` attributes go; [ORDER]: keys in a fixed order;
//! [WHITESPACE]: none), but unlike that form it keeps every attribute a reader or a person may
//! need (`doc`, `default`, `order`, `aliases`, logical types, custom properties), so a schema that
//! differs in a default is still a different schema.
//!
//! Schema references are named types defined by another registered schema; [`inline`] makes a
//! schema self-contained by writing each referenced definition in place at its first use, which is
//! what the parser and the compatibility checker read.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];
const NAMED: [&str; 4] = ["record", "error", "enum", "fixed"];

/// Key order of a type object, then of a field object; any other key follows, sorted.
const TYPE_KEYS: [&str; 14] = [
    "type",
    "name",
    "doc",
    "fields",
    "symbols",
    "items",
    "values",
    "size",
    "logicalType",
    "precision",
    "scale",
    "default",
    "aliases",
    "order",
];
const FIELD_KEYS: [&str; 6] = ["name", "type", "doc", "default", "order", "aliases"];

pub fn is_primitive(name: &str) -> bool {
    PRIMITIVES.contains(&name)
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() && !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn namespace_of(full_name: &str) -> Option<&str> {
    full_name.rfind('.').map(|dot| &full_name[..dot])
}

/// The canonical value of a schema that Avro's parser has accepted.
pub fn canonical(schema: &Value) -> Value {
    walk(schema, None)
}

fn walk(schema: &Value, namespace: Option<&str>) -> Value {
    match schema {
        Value::String(name) if is_primitive(name) => schema.clone(),
        Value::String(name) => Value::String(full_name(name, namespace)),
        Value::Array(branches) => Value::Array(branches.iter().map(|b| walk(b, namespace)).collect()),
        Value::Object(object) => walk_object(object, namespace),
        other => other.clone(),
    }
}

fn walk_object(object: &Map<String, Value>, namespace: Option<&str>) -> Value {
    let Some(kind) = object.get("type") else { return Value::Object(object.clone()) };
    let kind_name = kind.as_str();
    if object.len() == 1 {
        // `{"type": X}` means X, whether X is a primitive, a reference or a nested schema.
        return walk(kind, namespace);
    }
    let mut out = object.clone();
    match kind_name {
        Some(kind) if NAMED.contains(&kind) => {
            let name = object.get("name").and_then(Value::as_str).unwrap_or_default();
            let own_namespace = match object.get("namespace") {
                Some(Value::String(ns)) => Some(ns.as_str()),
                Some(_) => Some(""),
                None => namespace,
            };
            let full = full_name(name, own_namespace);
            let inner = namespace_of(&full).map(str::to_owned);
            out.remove("namespace");
            if let Some(Value::Array(aliases)) = object.get("aliases") {
                let aliases = aliases
                    .iter()
                    .map(|a| a.as_str().map_or_else(|| a.clone(), |a| Value::String(full_name(a, inner.as_deref()))))
                    .collect();
                out.insert("aliases".into(), Value::Array(aliases));
            }
            out.insert("name".into(), Value::String(full));
            if let Some(Value::Array(fields)) = object.get("fields") {
                let fields = fields
                    .iter()
                    .map(|field| match field {
                        Value::Object(field) => {
                            let mut field = field.clone();
                            if let Some(t) = field.get("type") {
                                let t = walk(t, inner.as_deref());
                                field.insert("type".into(), t);
                            }
                            Value::Object(field)
                        }
                        other => other.clone(),
                    })
                    .collect();
                out.insert("fields".into(), Value::Array(fields));
            }
        }
        Some("array") => {
            if let Some(items) = object.get("items") {
                out.insert("items".into(), walk(items, namespace));
            }
        }
        Some("map") => {
            if let Some(values) = object.get("values") {
                out.insert("values".into(), walk(values, namespace));
            }
        }
        Some(_) => {}
        None => {
            out.insert("type".into(), walk(kind, namespace));
        }
    }
    Value::Object(out)
}

/// Compact JSON with the keys in canonical order.
pub fn to_text(canonical: &Value) -> String {
    let mut out = String::new();
    write(canonical, &TYPE_KEYS, &mut out);
    out
}

fn write(value: &Value, order: &[&str], out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            let rank = |k: &str| order.iter().position(|o| *o == k).unwrap_or(order.len());
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                match (key.as_str(), &object[key]) {
                    ("fields", Value::Array(fields)) => {
                        out.push('[');
                        for (j, field) in fields.iter().enumerate() {
                            if j > 0 {
                                out.push(',');
                            }
                            write(field, &FIELD_KEYS, out);
                        }
                        out.push(']');
                    }
                    // Defaults and custom properties are data, not schemas: their keys keep JSON order.
                    ("default", v) => out.push_str(&v.to_string()),
                    (_, v) if v.is_object() && !order.contains(&key.as_str()) => out.push_str(&v.to_string()),
                    (_, v) => write(v, &TYPE_KEYS, out),
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, &TYPE_KEYS, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Every named type a canonical schema defines, by full name.
pub fn definitions(canonical: &Value, into: &mut HashMap<String, Value>) {
    match canonical {
        Value::Array(branches) => branches.iter().for_each(|b| definitions(b, into)),
        Value::Object(object) => {
            let kind = object.get("type");
            if kind.and_then(Value::as_str).is_some_and(|k| NAMED.contains(&k))
                && let Some(name) = object.get("name").and_then(Value::as_str)
            {
                into.entry(name.to_owned()).or_insert_with(|| canonical.clone());
            }
            for field in object.get("fields").and_then(Value::as_array).into_iter().flatten() {
                if let Some(t) = field.get("type") {
                    definitions(t, into);
                }
            }
            for key in ["items", "values"] {
                if let Some(inner) = object.get(key) {
                    definitions(inner, into);
                }
            }
            if let Some(inner) = kind.filter(|k| !k.is_string()) {
                definitions(inner, into);
            }
        }
        _ => {}
    }
}

/// `canonical` with each name it uses but does not define replaced, at its first use, by the
/// definition in `referenced` (itself inlined): a self-contained schema.
pub fn inline(canonical: &Value, referenced: &HashMap<String, Value>) -> Value {
    let mut defined = HashSet::new();
    let mut own = HashMap::new();
    definitions(canonical, &mut own);
    defined.extend(own.into_keys());
    inline_walk(canonical, referenced, &mut defined)
}

fn inline_walk(schema: &Value, referenced: &HashMap<String, Value>, defined: &mut HashSet<String>) -> Value {
    match schema {
        Value::String(name) if !is_primitive(name) && !defined.contains(name) => match referenced.get(name) {
            Some(definition) => {
                let mut nested = HashMap::new();
                definitions(definition, &mut nested);
                defined.extend(nested.into_keys());
                inline_walk(definition, referenced, defined)
            }
            None => schema.clone(),
        },
        Value::Array(branches) => Value::Array(branches.iter().map(|b| inline_walk(b, referenced, defined)).collect()),
        Value::Object(object) => {
            let mut out = object.clone();
            if let Some(Value::Array(fields)) = object.get("fields") {
                let fields = fields
                    .iter()
                    .map(|field| {
                        let mut field = field.clone();
                        if let Some(t) = field.get("type").cloned() {
                            field["type"] = inline_walk(&t, referenced, defined);
                        }
                        field
                    })
                    .collect();
                out.insert("fields".into(), Value::Array(fields));
            }
            for key in ["items", "values"] {
                if let Some(inner) = object.get(key) {
                    out.insert(key.into(), inline_walk(inner, referenced, defined));
                }
            }
            if let Some(inner) = object.get("type").filter(|k| !k.is_string()) {
                out.insert("type".into(), inline_walk(inner, referenced, defined));
            }
            Value::Object(out)
        }
        _ => schema.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(schema: &str) -> String {
        to_text(&canonical(&serde_json::from_str(schema).unwrap()))
    }

    #[test]
    fn spellings_of_one_schema_have_one_text() {
        let plain = r#"{"type":"record","name":"Order","namespace":"shop","doc":"An order.","fields":[
            {"name":"id","type":"string"},
            {"name":"line","type":{"type":"record","name":"Line","fields":[{"name":"n","type":"int"}]}},
            {"name":"next","type":["null","Line"],"default":null}]}"#;
        let spelled = r#"{
            "fields": [
              {"type": {"type": "string"}, "name": "id"},
              {"name": "line", "type": {"name": "shop.Line", "type": "record", "fields": [{"type": {"type": "int"}, "name": "n"}]}},
              {"default": null, "name": "next", "type": ["null", "shop.Line"]}
            ],
            "doc": "An order.", "name": "shop.Order", "type": "record"
        }"#;
        assert_eq!(text(plain), text(spelled));
        assert_eq!(
            text(plain),
            r#"{"type":"record","name":"shop.Order","doc":"An order.","fields":[{"name":"id","type":"string"},{"name":"line","type":{"type":"record","name":"shop.Line","fields":[{"name":"n","type":"int"}]}},{"name":"next","type":["null","shop.Line"],"default":null}]}"#
        );
    }

    #[test]
    fn meaningful_attributes_stay() {
        let with_default = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":1,"doc":"d"}]}"#;
        let without = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
        assert_ne!(text(with_default), text(without));
        let logical = r#"{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}"#;
        assert_eq!(text(logical), logical);
        assert_eq!(
            text(r#"{"type":"long","connect.name":{"b":1,"a":2}}"#),
            r#"{"type":"long","connect.name":{"a":2,"b":1}}"#
        );
    }

    #[test]
    fn an_empty_namespace_resets_the_enclosing_one() {
        let schema = r#"{"type":"record","name":"A","namespace":"n","fields":[
            {"name":"e","type":{"type":"enum","name":"E","namespace":"","symbols":["X"],"aliases":["Old"]}}]}"#;
        assert_eq!(
            text(schema),
            r#"{"type":"record","name":"n.A","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["X"],"aliases":["Old"]}}]}"#
        );
    }

    #[test]
    fn references_are_inlined_once_at_their_first_use() {
        let address: Value = canonical(
            &serde_json::from_str(
                r#"{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}"#,
            )
            .unwrap(),
        );
        let mut referenced = HashMap::new();
        definitions(&address, &mut referenced);
        let order = canonical(
            &serde_json::from_str(
                r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"from","type":"Address"},{"name":"to","type":"Address"}]}"#,
            )
            .unwrap(),
        );
        let resolved = inline(&order, &referenced);
        assert_eq!(resolved["fields"][0]["type"], address);
        assert_eq!(resolved["fields"][1]["type"], "shop.Address");
        apache_avro::Schema::parse(&resolved).expect("self-contained");
    }

    #[test]
    fn the_event_schema_parses_to_the_same_schema_after_canonicalisation() {
        let original = ct_core::avro::event_schema();
        let text = text(ct_core::avro::event_schema_json());
        let reparsed = apache_avro::Schema::parse_str(&text).expect("canonical text parses");
        assert_eq!(&reparsed, original);
        assert_eq!(reparsed.canonical_form(), original.canonical_form());
    }
}
