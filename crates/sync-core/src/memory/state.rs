//! [`MemoryStateStore`]: a [`StateStore`] that keeps the client's sync state in memory.
//!
//! Commits apply a [`StateBatch`] with [`StateBatch::apply_to`] under one lock, so they are
//! atomic. It must not persist anything; a failure switch lets tests see how the engine
//! handles an unusable state store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{ClientState, Error, Result, StateBatch, StateStore};

/// An in-memory [`StateStore`]. Clones share the same state (like two handles to one
/// database).
#[derive(Debug, Clone, Default)]
pub struct MemoryStateStore {
    state: Arc<Mutex<ClientState>>,
    fail: Arc<AtomicBool>,
}

impl MemoryStateStore {
    /// A store holding `state` (for tests that start from a given state).
    pub fn with_state(state: ClientState) -> MemoryStateStore {
        MemoryStateStore {
            state: Arc::new(Mutex::new(state)),
            fail: Arc::default(),
        }
    }

    /// While `fail` is true, every commit fails with [`Error::Storage`] and changes nothing.
    pub fn fail_commits(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// A copy of the current state, without going through the async trait.
    pub fn snapshot(&self) -> ClientState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn load(&self) -> Result<ClientState> {
        Ok(self.snapshot())
    }

    async fn commit(&self, batch: StateBatch) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::storage(
                "the in-memory state store was told to fail commits (fail_commits)",
            ));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        batch.apply_to(&mut state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    #[tokio::test]
    async fn fail_commits_fails_and_changes_nothing_until_reset() {
        let store = MemoryStateStore::default();
        let batch = StateBatch {
            node: Some(NodeId(3)),
            ..StateBatch::default()
        };
        store.fail_commits(true);
        let err = store.commit(batch.clone()).await.unwrap_err();
        assert!(matches!(err, Error::Storage { .. }), "{err:?}");
        assert_eq!(store.load().await.unwrap(), ClientState::default());
        store.fail_commits(false);
        store.commit(batch).await.unwrap();
        assert_eq!(store.load().await.unwrap().node, Some(NodeId(3)));
    }

    #[tokio::test]
    async fn clones_share_state() {
        let a = MemoryStateStore::default();
        let b = a.clone();
        a.commit(StateBatch {
            node: Some(NodeId(9)),
            ..StateBatch::default()
        })
        .await
        .unwrap();
        assert_eq!(b.snapshot().node, Some(NodeId(9)));
        let c = MemoryStateStore::with_state(b.snapshot());
        assert_eq!(c.load().await.unwrap().node, Some(NodeId(9)));
    }
}
