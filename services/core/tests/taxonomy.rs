//! One source of truth for the event taxonomy: `schemas-avro/ct.v1.Event.avsc` (its payload
//! union, in order) and the payload records it names (each record's `doc` starts with its type,
//! `backend.fn.error: ...`). Every other place that spells the taxonomy out is checked against it,
//! and a difference fails naming the file: the Rust enum and payload structs, the samples, the
//! codec's schema list, both OpenAPI documents, and the clients' generated taxonomy. A second test adds a throw-away type to
//! a scratch copy of the schemas and shows that every place is named.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The files the checker reads, relative to the repository root.
const PLACES: &[&str] = &[
    "schemas-avro",
    "services/core/src/event_type.rs",
    "services/core/src/payload.rs",
    "services/core/src/samples.rs",
    "services/core/src/avro.rs",
    "services/edge/openapi.yaml",
    "services/api/openapi.yaml",
    "clients/taxonomy/taxonomy.json",
];

struct Type {
    name: String,
    record: String,
    fields: Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The taxonomy as the schemas say it.
fn taxonomy(root: &Path, problems: &mut Vec<String>) -> Vec<Type> {
    let envelope = json(&root.join("schemas-avro/ct.v1.Event.avsc"));
    let union = envelope["fields"].as_array().unwrap().iter().find(|f| f["name"] == "payload").unwrap()["type"].clone();
    let mut types = Vec::new();
    for full in union.as_array().unwrap() {
        let full = full.as_str().unwrap();
        let record = full.trim_start_matches("ct.v1.");
        let path = root.join(format!("schemas-avro/{full}.avsc"));
        if !path.exists() {
            problems.push(format!("schemas-avro/{full}.avsc: missing (named by ct.v1.Event's payload union)"));
            continue;
        }
        let schema = json(&path);
        let doc = schema["doc"].as_str().unwrap_or_default();
        let Some((name, _)) = doc.split_once(": ") else {
            problems.push(format!("schemas-avro/{full}.avsc: `doc` must start with the event type (`a.b.c: ...`)"));
            continue;
        };
        let fields =
            schema["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect();
        types.push(Type { name: name.to_owned(), record: record.to_owned(), fields });
    }
    types
}

fn check_same(place: &str, what: &str, found: &[String], expected: &[String], problems: &mut Vec<String>) {
    if found != expected {
        let missing: Vec<&String> = expected.iter().filter(|e| !found.contains(e)).collect();
        let extra: Vec<&String> = found.iter().filter(|f| !expected.contains(f)).collect();
        problems.push(format!(
            "{place}: {what} differ from schemas-avro (missing {missing:?}, not in the schemas {extra:?}, or another order)"
        ));
    }
}

/// Every difference between the schemas and the places that spell the taxonomy out.
fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let types = taxonomy(root, &mut problems);
    let names: Vec<String> = types.iter().map(|t| t.name.clone()).collect();
    let records: Vec<String> = types.iter().map(|t| t.record.clone()).collect();

    let event_type = std::fs::read_to_string(root.join("services/core/src/event_type.rs")).unwrap();
    let arms = |pattern: &str| -> Vec<String> {
        let re = arm_value(pattern);
        event_type.lines().filter_map(re).collect()
    };
    check_same(
        "services/core/src/event_type.rs",
        "the `as_str` names",
        &arms("=> \"").into_iter().filter(|n| !n.starts_with("ct.v1.")).collect::<Vec<_>>(),
        &names,
        &mut problems,
    );
    check_same(
        "services/core/src/event_type.rs",
        "the `avro_record` names",
        &arms("=> \"ct.v1.").into_iter().map(|r| r.trim_start_matches("ct.v1.").to_owned()).collect::<Vec<_>>(),
        &records,
        &mut problems,
    );

    let payload = std::fs::read_to_string(root.join("services/core/src/payload.rs")).unwrap();
    for t in &types {
        let Some(start) = payload.find(&format!("pub struct {} {{", t.record)) else {
            problems.push(format!("services/core/src/payload.rs: no `pub struct {}` for {}", t.record, t.name));
            continue;
        };
        let body = &payload[start..start + payload[start..].find('}').unwrap_or(0)];
        let fields: Vec<String> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub ")?.split_once(':').map(|(n, _)| n.trim().to_owned()))
            .filter(|n| !n.starts_with("struct"))
            .collect();
        check_same(
            "services/core/src/payload.rs",
            &format!("the fields of {}", t.record),
            &fields,
            &t.fields,
            &mut problems,
        );
    }

    let samples = std::fs::read_to_string(root.join("services/core/src/samples.rs")).unwrap();
    for t in &types {
        if !samples.contains(&format!("EventType::{}", t.record)) {
            problems.push(format!("services/core/src/samples.rs: no sample body for {}", t.name));
        }
    }

    let avro = std::fs::read_to_string(root.join("services/core/src/avro.rs")).unwrap();
    for t in &types {
        if !avro.contains(&format!("(\"ct.v1.{}\", include_str!", t.record)) {
            problems.push(format!(
                "services/core/src/avro.rs: the codec does not include schemas-avro/ct.v1.{}.avsc",
                t.record
            ));
        }
    }

    let edge = yaml(&root.join("services/edge/openapi.yaml"));
    let schemas = &edge["components"]["schemas"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    check_same(
        "services/edge/openapi.yaml",
        "the EventType enum",
        &strings(&schemas["EventType"]["enum"]),
        &names,
        &mut problems,
    );
    let one_of: Vec<String> = schemas["Envelope"]["properties"]["payload"]["oneOf"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["$ref"].as_str()?.rsplit('/').next().map(str::to_owned)).collect())
        .unwrap_or_default();
    check_same("services/edge/openapi.yaml", "the payload schemas of Envelope", &one_of, &records, &mut problems);
    for t in &types {
        let schema = &schemas[t.record.as_str()];
        if schema["title"].as_str() != Some(t.name.as_str()) {
            problems.push(format!("services/edge/openapi.yaml: schema {} must have `title: {}`", t.record, t.name));
            continue;
        }
        for field in &t.fields {
            // Amounts are stored in integer units (`<name>_minor` for money, `<name>_centi` for
            // hundredths) and sent as `<name>`.
            let wire = field.strip_suffix("_minor").or_else(|| field.strip_suffix("_centi")).unwrap_or(field);
            if schema["properties"].get(wire).is_none() {
                problems.push(format!(
                    "services/edge/openapi.yaml: {} has no property `{wire}` ({field} in the schema)",
                    t.record
                ));
            }
        }
    }
    let api = yaml(&root.join("services/api/openapi.yaml"));
    check_same(
        "services/api/openapi.yaml",
        "the EventType enum",
        &strings(&api["components"]["schemas"]["EventType"]["enum"]),
        &names,
        &mut problems,
    );
    let generated = json(&root.join("clients/taxonomy/taxonomy.json"));
    let generated: Vec<String> = generated["eventTypes"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["type"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    check_same(
        "clients/taxonomy/taxonomy.json",
        "the event types (run clients/taxonomy/generate.py)",
        &generated,
        &names,
        &mut problems,
    );
    problems
}

/// The quoted text after `marker` on a match arm line (`EventType::X => "..."`), if any.
fn arm_value(marker: &str) -> impl Fn(&str) -> Option<String> + '_ {
    move |line: &str| {
        let line = line.trim();
        if !line.starts_with("EventType::") {
            return None;
        }
        let (_, rest) = line.split_once(marker)?;
        let value = rest.split('"').next()?;
        Some(if marker.ends_with("ct.v1.") { format!("ct.v1.{value}") } else { value.to_owned() })
    }
}

#[test]
fn every_place_that_spells_the_taxonomy_agrees_with_the_schemas() {
    let problems = check(&root());
    assert!(problems.is_empty(), "the taxonomy differs from schemas-avro:\n{}", problems.join("\n"));
}

#[test]
fn a_throwaway_event_type_in_a_scratch_copy_is_named_in_every_place_that_must_follow() {
    let scratch = std::env::temp_dir().join(format!("ct-taxonomy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for place in PLACES {
        let (from, to) = (root().join(place), scratch.join(place));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        if from.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        } else {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    assert!(check(&scratch).is_empty(), "the scratch copy starts consistent");
    std::fs::write(
        scratch.join("schemas-avro/ct.v1.ThrowawayPing.avsc"),
        r#"{"type": "record", "name": "ThrowawayPing", "namespace": "ct.v1", "doc": "throwaway.ping: a test type.",
            "fields": [{"name": "note", "type": "string"}]}"#,
    )
    .unwrap();
    let envelope_path = scratch.join("schemas-avro/ct.v1.Event.avsc");
    let envelope = std::fs::read_to_string(&envelope_path).unwrap();
    std::fs::write(
        &envelope_path,
        envelope.replace("\"ct.v1.SystemHeartbeat\"]", "\"ct.v1.SystemHeartbeat\", \"ct.v1.ThrowawayPing\"]"),
    )
    .unwrap();
    let problems = check(&scratch);
    let report = problems.join("\n");
    for place in &PLACES[1..] {
        assert!(problems.iter().any(|p| p.starts_with(place)), "{place} is not named:\n{report}");
    }
    assert!(report.contains("ThrowawayPing"), "{report}");
    let _ = std::fs::remove_dir_all(&scratch);
}
