//! The SRE CLI's library: commands as functions, so tests drive them without a shell.
//!
//! Architecture note: `rebuild` drives the projector's own pipeline in-process (a dependency on
//! `ct-projector` as a library), so a rebuild applies exactly the code the live projector runs.

pub mod dlq;
pub mod rebuild;
