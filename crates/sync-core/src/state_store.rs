//! The client's memory between syncs (docs/SPEC.md §4): the [`StateStore`] trait.
//!
//! It keeps the device's node id, the change-feed cursor, the remote tree (the latest state of
//! every remote item the feed delivered) and the base (per key: what both sides agreed at the
//! last sync, with the local fingerprint and the detached flag), and the conflicts the engine
//! resolved most recently (at most [`RECENT_CONFLICTS`]). All changes go through one
//! atomic [`StateStore::commit`] of a [`StateBatch`], so a store can write many items in one
//! transaction and a crash leaves either all or none of a batch.
//!
//! It also keeps the *settled mark* ([`ClientState::settled`]): set by the engine after a pass
//! that left nothing to do, cleared by the store itself with any change to the base or the
//! remote tree. A sync that finds the mark can load a [`StateSummary`] (the base's
//! fingerprints, no remote tree) and then only the entries of the keys that changed
//! ([`StateStore::load_keys`]), which is what makes a no-change sync of a large tree cost a
//! walk and not a load of every row.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::{
    BaseEntry, ConflictRecord, Cursor, ItemMeta, Key, KnownItem, NodeId, Result, Revision, Stamp,
};

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
    /// The settled mark: `Some(policy tag)` when the base and the remote tree are as a pass that
    /// left nothing to do under that policy left them, so a local side whose items all match
    /// the base's fingerprints needs no step. Cleared by every batch that changes the base or
    /// the remote tree without setting it again ([`StateBatch::apply_to`]).
    pub settled: Option<String>,
}

/// What a sync needs from the state store before it knows which keys changed: everything but
/// the base and remote entries themselves, whose fingerprints come as the scan's index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSummary {
    /// As [`ClientState::node`].
    pub node: Option<NodeId>,
    /// As [`ClientState::cursor`].
    pub cursor: Option<Cursor>,
    /// As [`ClientState::conflicts`].
    pub conflicts: Vec<ConflictRecord>,
    /// As [`ClientState::settled`].
    pub settled: Option<String>,
    /// The fingerprint and content of every base entry that has a fingerprint, by the key it
    /// has on this replica (its `local_key`, else its key): what [`crate::Replica::scan`] takes.
    pub known: BTreeMap<Key, KnownItem>,
    /// How many base entries there are.
    pub base_len: usize,
    /// True when some base entry has a `local_key` (an identity other than the path).
    pub any_local_key: bool,
    /// The highest revision in the remote tree and the base ([`Revision::ZERO`] when empty).
    pub max_rev: Revision,
    /// The highest stamp in the remote tree and the base.
    pub max_stamp: Option<Stamp>,
}

impl StateSummary {
    /// The summary of a whole state, as every store's [`StateStore::load_summary`] must give it.
    pub fn of(state: &ClientState) -> StateSummary {
        let revs = state.remote.values().map(|r| r.rev);
        StateSummary {
            node: state.node,
            cursor: state.cursor,
            conflicts: state.conflicts.clone(),
            settled: state.settled.clone(),
            known: known_items(&state.base),
            base_len: state.base.len(),
            any_local_key: state.base.values().any(|b| b.local_key.is_some()),
            max_rev: revs
                .chain(state.base.values().map(|b| b.rev))
                .max()
                .unwrap_or(Revision::ZERO),
            max_stamp: state.max_stamp(),
        }
    }
}

impl ClientState {
    /// The highest stamp in the remote tree and the base (what a clock must start after).
    pub fn max_stamp(&self) -> Option<Stamp> {
        let remote = self.remote.values().map(|r| r.stamp);
        remote.chain(self.base.values().map(|b| b.stamp)).max()
    }
}

/// The fingerprints recorded in `base`, by local key, for the scan's fast path.
pub fn known_items(base: &BTreeMap<Key, BaseEntry>) -> BTreeMap<Key, KnownItem> {
    base.iter()
        .filter_map(|(key, b)| {
            let local_key = b.local_key.clone().unwrap_or_else(|| key.clone());
            Some((local_key, known_item(b)?))
        })
        .collect()
}

/// What a scan needs of one base entry: its fingerprint and content (`None` when the item is
/// not on this replica).
pub(crate) fn known_item(b: &BaseEntry) -> Option<KnownItem> {
    Some(KnownItem {
        fingerprint: b.fingerprint?,
        content: b.content(),
    })
}

/// The base and remote entries of some keys ([`StateStore::load_keys`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEntries {
    /// The base entries among the keys asked for.
    pub base: BTreeMap<Key, BaseEntry>,
    /// The remote-tree entries among the keys asked for.
    pub remote: BTreeMap<Key, ItemMeta>,
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
    /// Set the settled mark to this policy tag (after everything else in the batch). Without
    /// it, a batch that changes the base or the remote tree clears the mark.
    pub settled: Option<String>,
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
            && self.settled.is_none()
    }

    /// True when the batch changes the base or the remote tree (so it clears the settled mark
    /// unless it sets it).
    pub fn changes_entries(&self) -> bool {
        self.reset_remote || !self.remote.is_empty() || !self.base.is_empty()
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
        if self.settled.is_some() {
            state.settled.clone_from(&self.settled);
        } else if self.changes_entries() {
            state.settled = None;
        }
    }
}

/// Durable client sync state. Implementations: [`crate::memory::MemoryStateStore`],
/// `store-sqlite`; every one must pass `testkit::state_store_suite` (feature `testkit`).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Everything stored (empty on first use).
    async fn load(&self) -> Result<ClientState>;

    /// Applies `batch` atomically: after a crash, either all of it or none of it is there.
    async fn commit(&self, batch: StateBatch) -> Result<()>;

    /// Everything but the base and remote entries: [`StateSummary::of`] the stored state. The
    /// default loads everything; a store with many rows reads only what the summary needs
    /// (the base's fingerprints, the highest revision and stamp).
    async fn load_summary(&self) -> Result<StateSummary> {
        Ok(StateSummary::of(&self.load().await?))
    }

    /// The base and remote entries of `keys` (keys without entries are left out). The default
    /// loads everything; a store with many rows looks the keys up.
    async fn load_keys(&self, keys: &BTreeSet<Key>) -> Result<KeyEntries> {
        let state = self.load().await?;
        let pick = |k: &Key| keys.contains(k);
        Ok(KeyEntries {
            base: state.base.into_iter().filter(|(k, _)| pick(k)).collect(),
            remote: state.remote.into_iter().filter(|(k, _)| pick(k)).collect(),
        })
    }
}
