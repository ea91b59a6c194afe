//! The SRE CLI's library: commands as functions, so tests drive them without a shell
//! (`dlq`, `rebuild`, `digest`, and `send`, which sends events to the edge through `ct-client`).
//!
//! Architecture note: `rebuild` drives each read model's own pipeline in-process (dependencies on
//! the service crates as libraries), so a rebuild applies exactly the code the live service runs.
//! The CLI is a tool at the top: it may depend on services; nothing depends on it.

pub mod backup;
pub mod digest;
pub mod dlq;
pub mod erase;
pub mod rebuild;
pub mod send;
