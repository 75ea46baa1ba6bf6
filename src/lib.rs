//! # sync-engine
//!
//! The umbrella package of the workspace: it re-exports the crates an app links to and hosts
//! the example programs (`examples/`) and benchmarks (`benches/`). The code lives in the member
//! crates; see `ARCHITECTURE.md`.

pub mod folder;

pub use replica_fs;
pub use store_sqlite;
pub use sync_core as core;
pub use transport_fs;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
