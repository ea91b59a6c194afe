//! Architecture invariants on the dependency graph, read from the manifests.
//!
//! - ct-core is pure: no crate that does network I/O or brings a runtime, so the domain stays
//!   testable without infrastructure.
//! - Dependencies point one way. Every workspace crate has a layer; a crate's `[dependencies]`
//!   (and build-dependencies) name only crates of lower layers, so services never depend on one
//!   another and nothing depends on a tool. `[dev-dependencies]` may also name crates of the same
//!   layer (integration tests start the real registry or edge beside the service under test),
//!   never a higher one.

use std::{collections::BTreeMap, path::PathBuf};

const FORBIDDEN_IN_CORE: &[&str] =
    &["tokio", "rdkafka", "sqlx", "redis", "axum", "reqwest", "hyper", "tonic", "ct-platform", "opentelemetry-otlp"];

/// Bottom to top. A new workspace crate must be placed here.
const LAYERS: &[(&str, u8)] = &[
    ("ct-core", 0),
    ("ct-platform", 1),
    // The producers' client: ct-core's signatures only, never the services' platform.
    ("ct-client", 1),
    ("ct-testkit", 2),
    ("ct-registry", 3),
    ("ct-edge", 3),
    ("ct-projector", 3),
    ("ct-api", 3),
    ("ct-dlq-categoriser", 3),
    ("ct-health", 3),
    ("ct-digest", 3),
    ("ct-runner", 3),
    ("ct-target", 3),
    ("ct-replay", 4),
    ("ct-load", 4),
];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every member's manifest: package name -> parsed manifest.
fn manifests() -> BTreeMap<String, toml::Table> {
    let root = workspace_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("services"))
        .expect("services/")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    dirs.push(root.join("replay"));
    dirs.push(root.join("loadtest"));
    dirs.push(root.join("clients/rust"));
    dirs.into_iter()
        .filter(|dir| dir.join("Cargo.toml").exists())
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read Cargo.toml");
            let manifest: toml::Table = text.parse().expect("Cargo.toml parses");
            let name = manifest["package"]["name"].as_str().expect("package.name").to_owned();
            (name, manifest)
        })
        .collect()
}

fn layer(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(crate_name, _)| *crate_name == name).map(|(_, layer)| *layer)
}

fn section<'a>(manifest: &'a toml::Table, name: &str) -> impl Iterator<Item = &'a String> {
    manifest.get(name).and_then(|d| d.as_table()).into_iter().flat_map(|table| table.keys())
}

#[test]
fn core_has_no_io_dependencies() {
    let manifest: toml::Table = include_str!("../Cargo.toml").parse().expect("Cargo.toml parses");
    for section_name in ["dependencies", "build-dependencies"] {
        for name in section(&manifest, section_name) {
            assert!(
                !FORBIDDEN_IN_CORE.contains(&name.as_str()),
                "ct-core must not depend on `{name}` ({section_name})"
            );
        }
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let manifests = manifests();
    assert!(manifests.len() >= LAYERS.len(), "members not found: {:?}", manifests.keys());
    let mut violations = Vec::new();
    for (name, manifest) in &manifests {
        let Some(own) = layer(name) else {
            violations.push(format!("{name} has no layer in tidy.rs LAYERS"));
            continue;
        };
        for (section_name, same_layer_allowed) in
            [("dependencies", false), ("build-dependencies", false), ("dev-dependencies", true)]
        {
            for dependency in section(manifest, section_name) {
                let Some(theirs) = layer(dependency) else { continue };
                let allowed = theirs < own || (same_layer_allowed && theirs == own && dependency != name);
                if !allowed {
                    violations
                        .push(format!("{name} (layer {own}) -> {dependency} (layer {theirs}) in [{section_name}]"));
                }
            }
        }
    }
    assert!(violations.is_empty(), "dependencies that do not point down:\n{}", violations.join("\n"));
}
