//! Conformance suites (docs/SPEC.md §4): one suite per trait, which every implementation must pass.
//!
//! - [`server_store_suite`] for [`crate::ServerStore`] (in-memory, SQLite, …);
//! - [`state_store_suite`] for [`crate::StateStore`];
//! - [`replica_suite`] for [`crate::Replica`] (in-memory, folder on disk, records);
//! - [`token_store_suite`] for [`crate::server::TokenStore`] (the server stores' device tokens);
//! - [`transport_suite`] for [`crate::Transport`] (in-process, shared folder, HTTP).
//!
//! Each suite takes a factory and calls it for a fresh, empty instance per check. It runs many
//! small named checks; the first failure panics with
//! `conformance <suite>/<check>: <what was expected, what came>`. Call a suite from an async
//! test of the implementing crate:
//!
//! ```
//! use futures::FutureExt;
//! use sync_core::memory::MemoryStateStore;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! sync_core::testkit::state_store_suite(|| async { MemoryStateStore::default() }.boxed()).await;
//! # });
//! ```
//!
//! This module is compiled only with the `testkit` feature. It is test code: it panics on
//! failure and must not be used by the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod history;
mod replica;
mod server_store;
mod state_store;
mod token_store;
mod transport;

pub use history::retention_contents;
pub use replica::replica_suite;
pub use server_store::server_store_suite;
pub use state_store::state_store_suite;
pub use token_store::token_store_suite;
pub use transport::transport_suite;

use std::fmt::Debug;

use bytes::Bytes;

use crate::{ContentHash, Key, NodeId, Precondition, PushRequest, Revision, Stamp};

/// One named check of one suite: every failure message names both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check {
    suite: &'static str,
    name: &'static str,
}

impl Check {
    pub(crate) fn new(suite: &'static str, name: &'static str) -> Check {
        Check { suite, name }
    }

    /// Fails the check.
    #[track_caller]
    pub(crate) fn fail(&self, message: impl AsRef<str>) -> ! {
        panic!(
            "conformance {}/{}: {}",
            self.suite,
            self.name,
            message.as_ref()
        )
    }

    /// Fails unless `cond`.
    #[track_caller]
    pub(crate) fn ensure(&self, cond: bool, message: impl FnOnce() -> String) {
        if !cond {
            self.fail(message());
        }
    }

    /// The value of an `Ok`, or fails naming `what`.
    #[track_caller]
    pub(crate) fn ok<T, E: Debug>(&self, result: Result<T, E>, what: &str) -> T {
        match result {
            Ok(v) => v,
            Err(e) => self.fail(format!("{what}: expected Ok, got Err({e:?})")),
        }
    }

    /// Fails unless `got == expected`, naming `what`.
    #[track_caller]
    pub(crate) fn eq<T: PartialEq + Debug>(&self, got: T, expected: T, what: &str) {
        if got != expected {
            self.fail(format!("{what}: expected {expected:?}, got {got:?}"));
        }
    }
}

/// A key from a literal.
pub(crate) fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// The node id the suites stamp their edits with.
pub(crate) const NODE: NodeId = NodeId(7);

/// A stamp far in the past, so no server clamps it.
pub(crate) fn old_stamp() -> Stamp {
    Stamp::at(1_000_000, NODE)
}

/// A push of `content` to `key` with a correct hash.
pub(crate) fn push_req(key: &Key, precondition: Precondition, content: &[u8]) -> PushRequest {
    PushRequest {
        key: key.clone(),
        precondition,
        content: Bytes::copy_from_slice(content),
        hash: ContentHash::of(content),
        stamp: old_stamp(),
        seen: Revision::ZERO,
    }
}

/// A tiny deterministic random generator (xorshift64*), so random checks are reproducible
/// without depending on a particular `rand` API.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `1 / n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}
