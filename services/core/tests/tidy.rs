//! Architecture invariant: ct-core is pure. It must not depend on any crate that does network
//! I/O or brings a runtime, so the domain stays testable without infrastructure.

const FORBIDDEN: &[&str] =
    &["tokio", "rdkafka", "sqlx", "redis", "axum", "reqwest", "hyper", "tonic", "ct-platform", "opentelemetry-otlp"];

#[test]
fn core_has_no_io_dependencies() {
    let manifest: toml::Table = include_str!("../Cargo.toml").parse().expect("Cargo.toml parses");
    for section in ["dependencies", "build-dependencies"] {
        let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else { continue };
        for name in deps.keys() {
            assert!(!FORBIDDEN.contains(&name.as_str()), "ct-core must not depend on `{name}` ({section})");
        }
    }
}
