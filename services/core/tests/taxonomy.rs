//! One source of truth for the event taxonomy: `schemas-avro/` (the payload union of
//! `ct.v1.Event`, in order, and the records it names with their `ct.*` attributes).
//!
//! Everything else is generated from it: the Rust enum, payload structs, parse calls, examples and
//! codec schema list by ct-core's `build.rs`; the OpenAPI enums and payload schemas and the
//! clients' typed helpers by `clients/taxonomy/generate.py` (whose `--check` the test command
//! runs). These tests show that the built crate says what the schemas say, and that a throw-away
//! type added to a scratch copy of the schemas reaches every generated place, or fails naming the
//! file and the rule.

use std::path::{Path, PathBuf};

use ct_core::{EventType, Source, envelope::ParseOptions, redact::Redactor, samples::sample};
use serde_json::Value;

#[path = "../codegen/taxonomy.rs"]
#[allow(dead_code)]
mod codegen;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_built_taxonomy_is_what_the_schemas_say() {
    let schemas = codegen::read(&root().join("schemas-avro")).expect("the schemas are readable");
    let built: Vec<(&str, &str)> = EventType::ALL.iter().map(|t| (t.as_str(), t.avro_record())).collect();
    let expected: Vec<(String, String)> =
        schemas.types.iter().map(|t| (t.name.clone(), format!("ct.v1.{}", t.record))).collect();
    assert_eq!(
        built,
        expected.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect::<Vec<_>>(),
        "rebuild ct-core: its build.rs generates EventType from schemas-avro"
    );
    for (t, def) in EventType::ALL.into_iter().zip(&schemas.types) {
        let allowed = t.allowed_sources().map(|s| s.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>());
        assert_eq!(allowed, def.sources, "{t}: ct.sources");
        // Every example parses, under its own source, into its own type.
        let redactor = Redactor::new("test");
        let options = ParseOptions {
            redactor: &redactor,
            received_at: "2025-09-27T10:00:01Z".parse().unwrap(),
            max_future_skew: chrono::Duration::minutes(5),
        };
        let (event, _) = ct_core::Envelope::parse(&sample(t), &options)
            .unwrap_or_else(|e| panic!("{t}: the ct.example is refused: {e:?}"));
        assert_eq!((event.event_type(), event.payload().event_type()), (t, t));
        assert!(t.accepts_source(event.source()));
    }
    assert!(!EventType::CiWorkflowFailed.accepts_source(Source::Backend));
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

fn python() -> PathBuf {
    let state = std::env::var_os("CT_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| root().join(".state"));
    let venv = state.join("venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

/// Runs the document and client generator on another checkout; its error text on failure.
fn generate_documents(scratch: &Path, check: bool) -> Result<String, String> {
    let mut command = std::process::Command::new(python());
    command.arg(scratch.join("clients/taxonomy/generate.py")).arg("--root").arg(scratch);
    if check {
        command.arg("--check");
    }
    let output = command.output().expect("python runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() { Ok(text) } else { Err(text) }
}

const THROWAWAY: &str = r#"{"type": "record", "name": "ThrowawayPing", "namespace": "ct.v1",
 "doc": "throwaway.ping: a type that exists only in this test.",
 "ct.sources": ["website"],
 "ct.example": {"source": "website", "payload": {"pingId": "p1", "hops": 3}},
 "fields": [
  {"name": "ping_id", "type": "string", "ct.parse": "id"},
  {"name": "hops", "type": ["null", "long"], "default": null, "ct.parse": "opt_non_negative"}
 ]}"#;

/// The generated places a new type must reach: (file, text it must contain).
const GENERATED_PLACES: &[(&str, &str)] = &[
    ("services/edge/openapi.yaml", "        - throwaway.ping\n"),
    ("services/edge/openapi.yaml", "            - $ref: '#/components/schemas/ThrowawayPing'\n"),
    ("services/edge/openapi.yaml", "    ThrowawayPing:\n      title: throwaway.ping\n"),
    ("services/edge/openapi.yaml", "        pingId: {$ref: '#/components/schemas/Id'}\n"),
    ("services/api/openapi.yaml", "        - throwaway.ping\n"),
    ("clients/taxonomy/taxonomy.json", "\"type\": \"throwaway.ping\""),
    ("clients/python/src/controltower/taxonomy.json", "\"type\": \"throwaway.ping\""),
    ("clients/typescript/src/taxonomy.json", "\"type\": \"throwaway.ping\""),
    ("clients/typescript/src/payloads.ts", "\"throwaway.ping\": ThrowawayPingPayload;"),
    ("clients/python/src/controltower/helpers.pyi", "def throwaway_ping(self, *, ping_id:"),
    ("clients/rust/src/payloads.rs", "pub struct ThrowawayPing {"),
];

#[test]
fn a_throwaway_event_type_in_a_scratch_copy_reaches_every_generated_place() {
    let scratch = std::env::temp_dir().join(format!("ct-taxonomy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for place in [
        "schemas-avro",
        "services/edge/openapi.yaml",
        "services/api/openapi.yaml",
        "clients/taxonomy",
        "clients/python/src/controltower/taxonomy.json",
        "clients/python/src/controltower/helpers.pyi",
        "clients/typescript/src/taxonomy.json",
        "clients/typescript/src/payloads.ts",
        "clients/rust/src/payloads.rs",
    ] {
        copy(&root().join(place), &scratch.join(place));
    }
    let schemas = scratch.join("schemas-avro");
    generate_documents(&scratch, true).expect("the scratch copy starts up to date");
    let before = codegen::generate(&schemas).expect("the schemas generate");

    // Adding a type: its record, and its branch at the end of the union. Nothing else by hand.
    std::fs::write(schemas.join("ct.v1.ThrowawayPing.avsc"), THROWAWAY).unwrap();
    let envelope_path = schemas.join("ct.v1.Event.avsc");
    let envelope = std::fs::read_to_string(&envelope_path).unwrap();
    let last = codegen::read(&schemas).expect("the schemas read").types.last().expect("a type").record.clone();
    let grown = envelope.replace(&format!("\"ct.v1.{last}\"]"), &format!("\"ct.v1.{last}\", \"ct.v1.ThrowawayPing\"]"));
    assert_ne!(grown, envelope, "the union does not end with its last branch");
    std::fs::write(&envelope_path, grown).unwrap();

    // The Rust build's generated files follow.
    let after: std::collections::BTreeMap<_, _> =
        codegen::generate(&schemas).expect("the grown schemas generate").into_iter().collect();
    let expect = |file: &str, text: &str| {
        assert!(after[file].contains(text), "build.rs's {file} lacks {text:?}:\n{}", after[file]);
    };
    expect("event_type.rs", "    ThrowawayPing,\n");
    expect("event_type.rs", "EventType::ThrowawayPing => \"throwaway.ping\",");
    expect("event_type.rs", "EventType::ThrowawayPing => \"ct.v1.ThrowawayPing\",");
    expect("event_type.rs", "EventType::ThrowawayPing => Some(&[Source::Website]),");
    expect("payload.rs", "pub struct ThrowawayPing {\n    pub ping_id: String,\n    pub hops: Option<i64>,\n}");
    expect("payload.rs", "    ThrowawayPing(ThrowawayPing),");
    expect("payload.rs", "ping_id: f.id(\"ping_id\")?,");
    expect("payload.rs", "hops: f.opt_non_negative(\"hops\")?,");
    expect("samples.rs", "(EventType::ThrowawayPing, \"website\", ");
    expect("schema_files.rs", "(\"ct.v1.ThrowawayPing\", include_str!");
    for (file, text) in &before {
        assert_ne!(&after[file], text, "{file} did not change");
    }

    // The documents and the clients follow once the generator runs; until then --check names them.
    let stale = generate_documents(&scratch, true).expect_err("the documents are stale until regenerated");
    for (place, _) in GENERATED_PLACES {
        assert!(stale.contains(place), "--check does not name {place}: {stale}");
    }
    generate_documents(&scratch, false).expect("the generator runs");
    for (place, text) in GENERATED_PLACES {
        let content = std::fs::read_to_string(scratch.join(place)).unwrap();
        assert!(content.contains(text), "{place} lacks {text:?}");
    }
    let edge: Value = serde_norway::from_str(&std::fs::read_to_string(scratch.join(GENERATED_PLACES[0].0)).unwrap())
        .expect("the generated OpenAPI is YAML");
    let ping = &edge["components"]["schemas"]["ThrowawayPing"];
    assert_eq!(ping["anyOf"][0]["required"][0], "ping_id", "{ping}");
    assert!(ping["description"].as_str().unwrap().starts_with("Source `website`. Required field: `ping_id`."));
    generate_documents(&scratch, true).expect("up to date after regenerating");

    // A schema the generators cannot follow fails, naming the file and what is missing.
    let place = "schemas-avro/ct.v1.ThrowawayPing.avsc";
    let cases = [
        (
            THROWAWAY.replace(r#" "ct.example": {"source": "website", "payload": {"pingId": "p1", "hops": 3}},"#, ""),
            "ct.example",
        ),
        (
            THROWAWAY.replace(
                r#""type": ["null", "long"], "default": null, "ct.parse": "opt_non_negative""#,
                r#""type": {"type": "array", "items": "string"}"#,
            ),
            "field `hops` has the Avro type",
        ),
        (
            THROWAWAY.replace(r#""ct.parse": "opt_non_negative""#, r#""ct.parse": "money""#),
            "unknown `ct.parse` kind \"money\"",
        ),
        (THROWAWAY.replace("throwaway.ping: ", "throwaway ping "), "`doc` must start with the event type"),
        (
            THROWAWAY.replace(r#""type": "string", "ct.parse": "id""#, r#""type": "int""#),
            "field `ping_id` needs a `ct.parse` kind",
        ),
    ];
    for (schema, rule) in cases {
        assert_ne!(schema, THROWAWAY, "the case for {rule:?} did not change the schema");
        std::fs::write(schemas.join("ct.v1.ThrowawayPing.avsc"), schema).unwrap();
        let problem = codegen::generate(&schemas).err().unwrap_or_else(|| panic!("{rule:?} was not refused"));
        assert!(problem.starts_with(place) && problem.contains(rule), "{rule:?}: {problem}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
