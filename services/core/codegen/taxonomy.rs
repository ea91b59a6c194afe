//! The event taxonomy, read from `schemas-avro/` and turned into Rust.
//!
//! `ct.v1.Event.avsc` names the payload records in its union, in branch order; each record's
//! `doc` starts with its event type (`backend.fn.error: ...`). A record may carry:
//! - `ct.sources`: the sources that may emit the type (absent: any producer);
//! - `ct.parse: "custom"`: its payload is parsed by a hand-written hook
//!   (`payload::custom::<record_in_snake_case>`), for rules that span fields (money and currency);
//! - `ct.example`: `{"source": ..., "payload": {...}}`, a valid body with every optional field;
//! - `ct.notes`: prose for the OpenAPI description (read by `clients/taxonomy/generate.py`).
//!
//! and each field a `ct.parse` kind (how the edge reads it from producer JSON, and its wire form);
//! without one, the kind follows from the Avro type where that is unambiguous. Used by ct-core's
//! `build.rs` and by `tests/taxonomy.rs`, so both see the same rules. Errors name the file.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// The field kinds the edge's parser (`payload.rs`, `Fields`) has a method for. Each takes the
/// field's wire name; `symbol` (Avro enums) is implied by the type.
pub const PARSE_KINDS: &[&str] = &[
    "id",
    "text",
    "opt_text",
    "int",
    "opt_int",
    "non_negative",
    "opt_non_negative",
    "opt_unit_interval",
    "opt_centi",
    "item_count",
    "string_map",
    "int_map",
];

/// Kinds only a `ct.parse: "custom"` record may use (its hook reads them).
pub const CUSTOM_KINDS: &[&str] = &["money", "opt_money", "currency", "opt_currency"];

pub struct Taxonomy {
    pub types: Vec<EventDef>,
    /// Every `.avsc` the composed `ct.v1.Event` schema needs, by full name.
    pub schema_files: Vec<String>,
}

pub struct EventDef {
    /// The dotted name producers send (`backend.fn.error`).
    pub name: String,
    /// The Avro record's short name (`BackendFnError`).
    pub record: String,
    pub doc: String,
    pub sources: Option<Vec<String>>,
    pub custom_parse: bool,
    pub fields: Vec<FieldDef>,
    pub example_source: String,
    pub example_payload: String,
}

pub struct FieldDef {
    pub name: String,
    pub doc: Option<String>,
    pub rust_type: String,
    pub kind: String,
    /// An Avro enum: its name and symbols.
    pub symbols: Option<(String, Vec<String>)>,
}

impl FieldDef {
    /// The name producers send: amounts are stored as `<name>_minor`/`<name>_centi`.
    pub fn wire_name(&self) -> &str {
        match self.kind.as_str() {
            "money" | "opt_money" => self.name.strip_suffix("_minor").unwrap_or(&self.name),
            "opt_centi" => self.name.strip_suffix("_centi").unwrap_or(&self.name),
            _ => &self.name,
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

fn schema_path(dir: &Path, full_name: &str) -> PathBuf {
    dir.join(format!("{full_name}.avsc"))
}

/// `backend_fn_error` → `BackendFnError`; `control_tower` → `ControlTower`.
pub fn pascal_case(snake: &str) -> String {
    snake
        .split(['_', '.', '-'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

/// `FinanceInvoiceGenerated` → `finance_invoice_generated`.
pub fn snake_case(pascal: &str) -> String {
    let mut out = String::new();
    for (i, c) in pascal.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A field's Avro type as the generator sees it.
struct Shape {
    rust_type: String,
    /// The kind a field of this type gets when it names none.
    default_kind: Option<&'static str>,
    symbols: Option<(String, Vec<String>)>,
}

fn shape(rust_type: &str, default_kind: Option<&'static str>) -> Shape {
    Shape { rust_type: rust_type.to_owned(), default_kind, symbols: None }
}

fn rust_type(place: &str, field: &str, avro: &Value) -> Result<Shape, String> {
    let unsupported = || {
        format!("{place}: field `{field}` has the Avro type {avro}, which the taxonomy generator does not map to Rust")
    };
    Ok(match avro {
        Value::String(t) => match t.as_str() {
            "string" => shape("String", Some("text")),
            "long" => shape("i64", Some("int")),
            "int" => shape("i32", None),
            "double" => shape("f64", None),
            "boolean" => shape("bool", None),
            _ => return Err(unsupported()),
        },
        Value::Array(branches) if branches.len() == 2 && branches[0] == "null" => match branches[1].as_str() {
            Some("string") => shape("Option<String>", Some("opt_text")),
            Some("long") => shape("Option<i64>", Some("opt_int")),
            Some("double") => shape("Option<f64>", None),
            _ => return Err(unsupported()),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("enum") => {
                let name = o.get("name").and_then(Value::as_str).ok_or_else(unsupported)?;
                let symbols = o
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or_else(unsupported)?
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned).ok_or_else(unsupported))
                    .collect::<Result<Vec<_>, _>>()?;
                Shape {
                    rust_type: name.to_owned(),
                    default_kind: Some("symbol"),
                    symbols: Some((name.to_owned(), symbols)),
                }
            }
            Some("map") => match o.get("values").and_then(Value::as_str) {
                Some("string") => shape("BTreeMap<String, String>", Some("string_map")),
                Some("long") => shape("BTreeMap<String, i64>", Some("int_map")),
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        },
        _ => return Err(unsupported()),
    })
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("ct.v1.") => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        Value::Object(o) => {
            for key in ["type", "items", "values", "fields"] {
                if let Some(v) = o.get(key) {
                    references(v, out);
                }
            }
        }
        _ => {}
    }
}

/// Reads the taxonomy from a `schemas-avro` folder.
pub fn read(dir: &Path) -> Result<Taxonomy, String> {
    let envelope_path = schema_path(dir, "ct.v1.Event");
    let envelope = read_json(&envelope_path)?;
    let place = |full: &str| format!("schemas-avro/{full}.avsc");
    let union = envelope["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["name"] == "payload"))
        .and_then(|f| f["type"].as_array())
        .ok_or_else(|| format!("{}: no `payload` union", place("ct.v1.Event")))?;

    let mut schema_files = vec!["ct.v1.Event".to_owned()];
    let mut pending = Vec::new();
    references(&envelope, &mut pending);
    while let Some(name) = pending.pop() {
        if schema_files.contains(&name) {
            continue;
        }
        let path = schema_path(dir, &name);
        if !path.exists() {
            return Err(format!("{}: missing (named by ct.v1.Event)", place(&name)));
        }
        references(&read_json(&path)?, &mut pending);
        schema_files.push(name);
    }
    schema_files.sort();

    let mut types = Vec::new();
    let mut names = BTreeSet::new();
    for branch in union {
        let full = branch.as_str().ok_or_else(|| format!("{}: a union branch is not a name", place("ct.v1.Event")))?;
        let place = place(full);
        let schema = read_json(&schema_path(dir, full))?;
        let record = full.rsplit('.').next().unwrap_or(full).to_owned();
        let doc = schema["doc"].as_str().unwrap_or_default();
        let Some((name, doc)) = doc.split_once(": ") else {
            return Err(format!("{place}: `doc` must start with the event type (`a.b.c: ...`)"));
        };
        if !names.insert(name.to_owned()) {
            return Err(format!("{place}: the event type `{name}` is named twice"));
        }
        let sources = match &schema["ct.sources"] {
            Value::Null => None,
            Value::Array(s) => Some(
                s.iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("{place}: `ct.sources` must list source names"))?,
            ),
            _ => return Err(format!("{place}: `ct.sources` must be an array of source names")),
        };
        let custom_parse = match schema["ct.parse"].as_str() {
            None => false,
            Some("custom") => true,
            Some(other) => return Err(format!("{place}: record `ct.parse` may only be \"custom\", not {other:?}")),
        };
        let example = &schema["ct.example"];
        let (Some(example_source), Some(example_payload)) =
            (example["source"].as_str(), example.get("payload").filter(|p| p.is_object()))
        else {
            return Err(format!(
                "{place}: needs `ct.example`: {{\"source\": ..., \"payload\": {{...}}}}, a valid body with every optional field"
            ));
        };
        let mut fields = Vec::new();
        for field in schema["fields"].as_array().ok_or_else(|| format!("{place}: no `fields`"))? {
            let fname = field["name"].as_str().ok_or_else(|| format!("{place}: a field has no name"))?.to_owned();
            let Shape { rust_type, default_kind, symbols } = rust_type(&place, &fname, &field["type"])?;
            let kind = match (field["ct.parse"].as_str(), default_kind) {
                (Some(kind), _) => kind.to_owned(),
                (None, Some(kind)) => kind.to_owned(),
                (None, None) => {
                    return Err(format!(
                        "{place}: field `{fname}` needs a `ct.parse` kind (one of {})",
                        PARSE_KINDS.join(", ")
                    ));
                }
            };
            let known = kind == "symbol"
                || PARSE_KINDS.contains(&kind.as_str())
                || (custom_parse && CUSTOM_KINDS.contains(&kind.as_str()));
            if !known {
                return Err(format!(
                    "{place}: field `{fname}` has the unknown `ct.parse` kind {kind:?} (one of {}{})",
                    PARSE_KINDS.join(", "),
                    if custom_parse { format!(", {}", CUSTOM_KINDS.join(", ")) } else { String::new() }
                ));
            }
            let doc = field["doc"].as_str().map(str::to_owned);
            fields.push(FieldDef { name: fname, doc, rust_type, kind, symbols });
        }
        types.push(EventDef {
            name: name.to_owned(),
            record,
            doc: doc.to_owned(),
            sources,
            custom_parse,
            fields,
            example_source: example_source.to_owned(),
            example_payload: example_payload.to_string(),
        });
    }
    Ok(Taxonomy { types, schema_files })
}

const HEADER: &str = "// Generated by ct-core's build.rs from schemas-avro/ (codegen/taxonomy.rs); do not edit.\n";

/// `EventType`, its names, records and source bindings.
pub fn event_type_rs(t: &Taxonomy) -> String {
    let mut out = String::from(HEADER);
    out += "/// One event type. The declaration order is the branch order of the payload union in\n";
    out += "/// `ct.v1.Event`; new types go at the end.\n";
    out += "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\npub enum EventType {\n";
    for e in &t.types {
        let _ = writeln!(out, "    #[doc = {:?}]\n    {},", format!("`{}`: {}", e.name, e.doc), e.record);
    }
    out += "}\n\nimpl EventType {\n";
    let _ = writeln!(out, "    pub const ALL: [EventType; {}] = [", t.types.len());
    for e in &t.types {
        let _ = writeln!(out, "        EventType::{},", e.record);
    }
    out += "    ];\n\n    /// The dotted name producers send in `type`.\n";
    out += "    pub fn as_str(self) -> &'static str {\n        match self {\n";
    for e in &t.types {
        let _ = writeln!(out, "            EventType::{} => {:?},", e.record, e.name);
    }
    out += "        }\n    }\n\n    /// The Avro record (in `schemas-avro/`) that carries this type's payload.\n";
    out += "    pub fn avro_record(self) -> &'static str {\n        match self {\n";
    for e in &t.types {
        let _ = writeln!(out, "            EventType::{} => \"ct.v1.{}\",", e.record, e.record);
    }
    out += "        }\n    }\n\n    /// Which sources may emit this type (`ct.sources`). `None` means any producer.\n";
    out += "    pub fn allowed_sources(self) -> Option<&'static [Source]> {\n        match self {\n";
    for e in &t.types {
        let sources = match &e.sources {
            None => "None".to_owned(),
            Some(s) => format!(
                "Some(&[{}])",
                s.iter().map(|s| format!("Source::{}", pascal_case(s))).collect::<Vec<_>>().join(", ")
            ),
        };
        let _ = writeln!(out, "            EventType::{} => {sources},", e.record);
    }
    out += "        }\n    }\n}\n";
    out
}

/// The payload structs, their enums, the `Payload` union and the per-type field parsing.
pub fn payload_rs(t: &Taxonomy) -> String {
    let mut out = String::from(HEADER);
    let mut enums = BTreeSet::new();
    for e in &t.types {
        for f in &e.fields {
            let Some((name, symbols)) = &f.symbols else { continue };
            if !enums.insert(name.clone()) {
                continue;
            }
            out += "#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]\n";
            let _ = writeln!(out, "pub enum {name} {{");
            for s in symbols {
                let _ = writeln!(out, "    #[serde(rename = {s:?})]\n    {},", pascal_case(s));
            }
            out += "}\n\n";
        }
        let _ = writeln!(out, "#[doc = {:?}]", format!("`{}`: {}", e.name, e.doc));
        out += "#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n";
        let _ = writeln!(out, "pub struct {} {{", e.record);
        for f in &e.fields {
            if let Some(doc) = &f.doc {
                let _ = writeln!(out, "    #[doc = {doc:?}]");
            }
            let _ = writeln!(out, "    pub {}: {},", f.name, f.rust_type);
        }
        out += "}\n\n";
    }
    out += "/// The payload union. Variant order is the branch order of `ct.v1.Event.payload` and of\n";
    out += "/// [`EventType::ALL`].\n#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\npub enum Payload {\n";
    for e in &t.types {
        let _ = writeln!(out, "    {}({}),", e.record, e.record);
    }
    out += "}\n\nimpl Payload {\n    pub fn event_type(&self) -> EventType {\n        match self {\n";
    for e in &t.types {
        let _ = writeln!(out, "            Payload::{}(_) => EventType::{},", e.record, e.record);
    }
    out += "        }\n    }\n}\n\n";
    out += "/// Reads the payload fields of `event_type`, in the schema's field order.\n";
    out += "fn parse_fields(event_type: EventType, f: &mut Fields<'_>) -> Result<Payload, FieldError> {\n";
    out += "    Ok(match event_type {\n";
    for e in &t.types {
        if e.custom_parse {
            let _ = writeln!(
                out,
                "        EventType::{r} => Payload::{r}(custom::{}(f)?),",
                snake_case(&e.record),
                r = e.record
            );
            continue;
        }
        let _ = writeln!(out, "        EventType::{r} => Payload::{r}({r} {{", r = e.record);
        for f in &e.fields {
            let call = match &f.symbols {
                Some((name, symbols)) => format!(
                    "f.symbol({:?}, &[{}])?",
                    f.wire_name(),
                    symbols
                        .iter()
                        .map(|s| format!("({s:?}, {name}::{})", pascal_case(s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("f.{}({:?})?", f.kind, f.wire_name()),
            };
            let _ = writeln!(out, "            {}: {call},", f.name);
        }
        out += "        }),\n";
    }
    out += "    })\n}\n";
    out
}

/// One example body per type (`ct.example`), for `samples::sample`.
pub fn samples_rs(t: &Taxonomy) -> String {
    let mut out = String::from(HEADER);
    out += "/// Each type's `ct.example`: the source and the payload as JSON text.\n";
    out += "const EXAMPLES: &[(EventType, &str, &str)] = &[\n";
    for e in &t.types {
        let _ = writeln!(out, "    (EventType::{}, {:?}, {:?}),", e.record, e.example_source, e.example_payload);
    }
    out += "];\n";
    out
}

/// The `.avsc` files the codec composes `ct.v1.Event` from.
pub fn schema_files_rs(t: &Taxonomy) -> String {
    let mut out = String::from(HEADER);
    out += "/// Every `.avsc` file the event schema needs, by the full name of the type it defines.\n";
    out += "pub const SCHEMA_FILES: &[(&str, &str)] = &[\n";
    for name in &t.schema_files {
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../../schemas-avro/{name}.avsc\"))),"
        );
    }
    out += "];\n";
    out
}

/// Every generated file, by its name under `OUT_DIR`.
pub fn generate(dir: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let t = read(dir)?;
    Ok(vec![
        ("event_type.rs", event_type_rs(&t)),
        ("payload.rs", payload_rs(&t)),
        ("samples.rs", samples_rs(&t)),
        ("schema_files.rs", schema_files_rs(&t)),
    ])
}
