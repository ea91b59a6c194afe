//! Generates the event taxonomy's Rust from `schemas-avro/` (see `codegen/taxonomy.rs`): the
//! `EventType` enum, the payload structs and union with their parse calls, the example bodies and
//! the codec's schema list. A schema the generator cannot follow fails the build, naming the file.

#[path = "codegen/taxonomy.rs"]
mod taxonomy;

fn main() {
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas-avro");
    println!("cargo:rerun-if-changed={}", schemas.display());
    println!("cargo:rerun-if-changed=codegen/taxonomy.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let files = taxonomy::generate(&schemas).unwrap_or_else(|problem| panic!("the event taxonomy: {problem}"));
    for (name, text) in files {
        let path = out.join(name);
        // Rewriting an unchanged file would make cargo recompile the crate for nothing.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
