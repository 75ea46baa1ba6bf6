//! In-memory implementations of every trait of sync-core, so the whole engine runs in a unit
//! test with no disk and no network:
//!
//! - [`MemoryServerStore`]: a [`crate::ServerStore`] with version history, deduplicated blobs and
//!   the per-tenant Lamport counter;
//! - [`LocalTransport`]: an in-process [`crate::Transport`] over any server store;
//! - [`MemoryStateStore`]: a [`crate::StateStore`];
//! - [`MemoryReplica`]: a [`crate::Replica`] with a user-side editing API and fault injection.
//!
//! Each lives in its own file. None of them does I/O; all pass the conformance suites of
//! `testkit` (feature `testkit`; see `tests/conformance.rs`).

mod replica;
mod server;
mod state;
mod transport;

pub use replica::MemoryReplica;
pub use server::MemoryServerStore;
pub use state::MemoryStateStore;
pub use transport::LocalTransport;
