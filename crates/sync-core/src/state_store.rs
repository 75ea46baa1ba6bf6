//! The client's memory between syncs (docs/SPEC.md §4): the [`StateStore`] trait.
//!
//! It keeps the device's node id, the change-feed cursor, the remote tree (the latest state of
//! every remote item the feed delivered) and the base (per key: what both sides agreed at the
//! last sync, with the local fingerprint and the detached flag), and the conflicts the engine
//! resolved most recently (at most [`RECENT_CONFLICTS`]). All changes go through one
//! atomic [`StateStore::commit`] of a [`StateBatch`], so a store can write many items in one
//! transaction and a crash leaves either all or none of a batch.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::{BaseEntry, ConflictRecord, Cursor, ItemMeta, Key, NodeId, Result};

/// How many conflict records a state store keeps (the oldest are dropped first).
pub const RECENT_CONFLICTS: usize = 256;

/// Everything a state store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientState {
    /// This device's node id, once one was made.
    pub node: Option<NodeId>,
    /// Where the change feed continues; `None` before the first sync.
    pub cursor: Option<Cursor>,
    /// The latest known state of every remote item (tombstones included).
    pub remote: BTreeMap<Key, ItemMeta>,
    /// The last synced state of every key.
    pub base: BTreeMap<Key, BaseEntry>,
    /// The conflicts resolved most recently, oldest first, at most [`RECENT_CONFLICTS`].
    pub conflicts: Vec<ConflictRecord>,
}

/// One atomic change to a state store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateBatch {
    /// Set the node id.
    pub node: Option<NodeId>,
    /// Forget the cursor and the whole remote tree first (after `CursorExpired`).
    pub reset_remote: bool,
    /// Set the cursor.
    pub cursor: Option<Cursor>,
    /// Insert or replace remote-tree entries.
    pub remote: Vec<ItemMeta>,
    /// Insert or replace (`Some`) or remove (`None`) base entries.
    pub base: Vec<(Key, Option<BaseEntry>)>,
    /// Conflict records to add after the ones kept, in order; past [`RECENT_CONFLICTS`] the
    /// oldest go.
    pub conflicts: Vec<ConflictRecord>,
}

impl StateBatch {
    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.node.is_none()
            && !self.reset_remote
            && self.cursor.is_none()
            && self.remote.is_empty()
            && self.base.is_empty()
            && self.conflicts.is_empty()
    }

    /// Applies the batch to an in-memory [`ClientState`], the way every store must.
    pub fn apply_to(&self, state: &mut ClientState) {
        if let Some(node) = self.node {
            state.node = Some(node);
        }
        if self.reset_remote {
            state.cursor = None;
            state.remote.clear();
        }
        if let Some(c) = self.cursor {
            state.cursor = Some(c);
        }
        for item in &self.remote {
            state.remote.insert(item.key.clone(), item.clone());
        }
        for (key, entry) in &self.base {
            match entry {
                Some(e) => {
                    state.base.insert(key.clone(), e.clone());
                }
                None => {
                    state.base.remove(key);
                }
            }
        }
        state.conflicts.extend(self.conflicts.iter().cloned());
        let over = state.conflicts.len().saturating_sub(RECENT_CONFLICTS);
        state.conflicts.drain(..over);
    }
}

/// Durable client sync state. Implementations: [`crate::memory::MemoryStateStore`],
/// `store-sqlite`; every one must pass [`crate::testkit::state_store_suite`].
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Everything stored (empty on first use).
    async fn load(&self) -> Result<ClientState>;

    /// Applies `batch` atomically: after a crash, either all of it or none of it is there.
    async fn commit(&self, batch: StateBatch) -> Result<()>;
}
