//! Test-side fault injection for `tests/simulation.rs`: a seeded PRNG, an event log, a
//! [`faults::SimTransport`] that drops, duplicates or loses the answers of requests to a
//! swappable server, and crash wrappers around the in-memory replica and state store.
//!
//! Nothing here changes sync-core: every fault is injected through the public traits.

pub mod faults;
pub mod rng;

use std::sync::{Arc, Mutex};

/// The shared, append-only log of everything the harness and the faults did, in order.
#[derive(Debug, Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<String>>>);

impl EventLog {
    /// Appends one line.
    pub fn push(&self, line: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.into());
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
