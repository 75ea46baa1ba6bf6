//! # sync-engine
//!
//! The umbrella package of the workspace: it re-exports the crates an app links to and hosts
//! the example programs (`examples/`) and benchmarks (`benches/`). The code lives in the member
//! crates; see `ARCHITECTURE.md`.

pub use sync_core as core;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
