//! The local side of sync (docs/SPEC.md §4): the [`Replica`] trait.
//!
//! A replica is where the app's items live on this device: a folder on disk, a set of records.
//! It scans (with a fast path that skips reading unchanged items), reads, writes atomically
//! after checking the item is still what the plan saw, backs up, and removes. Implementations:
//! [`crate::memory::MemoryReplica`] and the folder replica; every one must pass
//! [`crate::testkit::replica_suite`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Content, ContentHash, ErrorClass, Fingerprint, Key, LocalItem, Result, Stamp};

/// What the last sync recorded about a local item, so a scan can skip reading it when its
/// fingerprint still matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownItem {
    /// The fingerprint recorded at the last sync.
    pub fingerprint: Fingerprint,
    /// The content it had then.
    pub content: Content,
}

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every item that can sync, by key.
    pub items: BTreeMap<Key, LocalItem>,
    /// Items that cannot sync (invalid names, symlinks, too large, unreadable).
    pub skipped: Vec<Skipped>,
    /// How many items were hashed (not recognised by fingerprint); for tests and benchmarks.
    pub hashed: u64,
}

/// What [`Replica::scan_since`] found: the items changed since a change token, and the keys
/// asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedItems {
    /// The items present now among [`ChangedItems::keys`], listed (and skipped) exactly as
    /// [`Replica::scan`] would list them.
    pub scan: Scan,
    /// Every key the answer speaks for: each key added, rewritten or removed since the token
    /// (by anyone), and each key asked for. A key here that is neither in `scan.items` nor
    /// skipped is absent now.
    pub keys: BTreeSet<Key>,
}

/// An item the scan left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The key, when the path could become one; the engine leaves that key alone this sync
    /// (it is neither uploaded nor treated as deleted).
    pub key: Option<Key>,
    /// The local path as a person would read it.
    pub path: String,
    /// `Item` (a problem to fix) or `Warning` (skipped on purpose).
    pub class: ErrorClass,
    /// What happened and what to do; with a `key`, it starts with the item's name (the
    /// engine puts `path` before a message without one).
    pub message: String,
}

/// What the plan saw of a local item; a write or a removal happens only if it is still so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Nothing was there.
    Absent,
    /// This file or folder was there.
    Present(Fingerprint),
}

/// A copy of a local item's content kept before it was overwritten or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// The key whose content this was.
    pub key: Key,
    /// Where the copy is (a path under `.sync/backups/`, or an id).
    pub location: String,
    /// Its hash.
    pub hash: ContentHash,
    /// Its size.
    pub size: u64,
}

/// Reads or writes in flight at once in the default [`Replica::read_many`] and
/// [`Replica::write_many`].
pub const REPLICA_MANY_CONCURRENCY: usize = 8;

/// One write of [`Replica::write_many`]: what [`Replica::write`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWrite {
    /// The file to write.
    pub key: Key,
    /// Its new content.
    pub content: Bytes,
    /// What the plan saw there; the write happens only if it is still so.
    pub expected: Expected,
}

/// One device's copy of the items.
#[async_trait]
pub trait Replica: Send + Sync {
    /// Lists every item. Items whose fingerprint matches `known` are not read; items larger
    /// than `max_item_bytes` are not read and are reported in [`Scan::skipped`].
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max_item_bytes: u64) -> Result<Scan>;

    /// A value that changes whenever any item changes, whoever changed it (the app, another
    /// process, the engine), or `None` when the replica cannot tell. When it equals the value
    /// read before a scan that found nothing to do, and the server sent no changes since, the
    /// engine skips the scan: a sync of an unchanged replica reads nothing. Must be cheap (one
    /// counter read, no walk). The default is `None`: every sync scans.
    async fn change_token(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Lists only what changed since the change token `since` (a value
    /// [`Replica::change_token`] gave): every item added, rewritten or removed since then, by
    /// anyone, plus the current state of each key in `also`. Its cost must follow the number
    /// of changes, not the size of the replica (an index on the change counter, a log of
    /// removals). Returns `None` when the replica cannot tell (the default), or no longer can
    /// for a token that old; the engine then scans in full.
    ///
    /// The engine uses it after a pass that settled every item: the next pass reconciles only
    /// the keys changed on either side since, so a sync of a large store with a few edits
    /// reads a few rows.
    async fn scan_since(
        &self,
        since: u64,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<Option<ChangedItems>> {
        let _ = (since, also, max_item_bytes);
        Ok(None)
    }

    /// Lists what differs from `known` (the fingerprints the last sync recorded): in
    /// [`ChangedItems::keys`] every key whose item is new, or differs from its entry in
    /// fingerprint or content, every key of `known` that is gone, every key the scan skipped,
    /// and every key of `also`; in [`ChangedItems::scan`] the items of those keys, exactly as
    /// [`Replica::scan`] lists them. Items that match their entry are left out, so a replica
    /// that overrides this keeps no list of a large unchanged tree. The default scans in full
    /// and compares ([`changes_of`]).
    ///
    /// The engine uses it after a settled pass when the replica cannot list its changes
    /// ([`Replica::scan_since`]): the pass then plans only these keys.
    async fn scan_changes(
        &self,
        known: Arc<BTreeMap<Key, KnownItem>>,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<ChangedItems> {
        let scan = self.scan(&known, max_item_bytes).await?;
        Ok(changes_of(scan, &known, also))
    }

    /// The content of a file.
    async fn read(&self, key: &Key) -> Result<Bytes>;

    /// Writes a file atomically (temporary file, flush, rename), creating parent folders, if the
    /// item is still as `expected`; otherwise fails with [`crate::Error::Changed`] and writes
    /// nothing. Returns the item as written.
    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem>;

    /// The contents of several files: one result per key, in order, each as [`Replica::read`]
    /// gives it. The default runs [`REPLICA_MANY_CONCURRENCY`] reads at a time; a replica
    /// that can read many in one call (one query) overrides it.
    async fn read_many(&self, keys: &[Key]) -> Vec<Result<Bytes>> {
        use futures::StreamExt;
        let reads: Vec<_> = keys.iter().map(|k| self.read(k)).collect();
        futures::stream::iter(reads)
            .buffered(REPLICA_MANY_CONCURRENCY)
            .collect()
            .await
    }

    /// Writes several files, each exactly as [`Replica::write`] would (its own `expected`
    /// check, its own result): one result per write, in order. The default runs
    /// [`REPLICA_MANY_CONCURRENCY`] writes at a time; a replica that can commit many at once
    /// (one transaction) overrides it, and then a failure of the commit itself fails them all.
    async fn write_many(&self, writes: Vec<LocalWrite>) -> Vec<Result<LocalItem>> {
        use futures::StreamExt;
        let writes: Vec<_> = writes
            .into_iter()
            .map(|w| async move { self.write(&w.key, w.content, w.expected).await })
            .collect();
        futures::stream::iter(writes)
            .buffered(REPLICA_MANY_CONCURRENCY)
            .collect()
            .await
    }

    /// Creates a folder (and its parents); succeeds if it exists.
    async fn create_folder(&self, key: &Key) -> Result<LocalItem>;

    /// Copies the current content of the file `key` into the backups, named by `stamp` and
    /// hash. Returns `None` if there is no file to back up.
    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>>;

    /// Removes the file or (empty) folder `key` if it is still as `expected`; otherwise fails
    /// with [`crate::Error::Changed`]. A folder that still holds items is left in place.
    async fn remove(&self, key: &Key, expected: Expected) -> Result<()>;

    /// Every backup kept.
    async fn backups(&self) -> Result<Vec<Backup>>;

    /// The content of a backup.
    async fn read_backup(&self, backup: &Backup) -> Result<Bytes>;

    /// True when the replica's own rules leave `key` out of its scans (ignore files, editor
    /// droppings, its state folder). The engine neither downloads such a key nor treats its
    /// absence as a delete. Must not do I/O; the default ignores nothing.
    fn ignores(&self, key: &Key) -> bool {
        let _ = key;
        false
    }

    /// A value that differs whenever the rules behind [`Replica::ignores`] differ (as the last
    /// scan loaded them), for example a hash of an ignore file. The engine keeps it with the
    /// settled mark: a pass after the rules changed looks at every key, since keys ignored
    /// before may not be any more. Must not do I/O; the default (no rules) is empty.
    fn rules_tag(&self) -> String {
        String::new()
    }
}

/// What [`Replica::scan_changes`] answers, from a full `scan` made with `known`: both maps
/// are walked once, side by side.
pub fn changes_of(
    scan: Scan,
    known: &BTreeMap<Key, KnownItem>,
    also: &BTreeSet<Key>,
) -> ChangedItems {
    let mut keys = also.clone();
    keys.extend(scan.skipped.iter().filter_map(|s| s.key.clone()));
    let Scan {
        items,
        skipped,
        hashed,
    } = scan;
    let mut kept = BTreeMap::new();
    let mut base = known.iter().peekable();
    for (key, item) in items {
        while let Some((gone, _)) = base.next_if(|(k, _)| **k < key) {
            keys.insert(gone.clone());
        }
        let same = match base.next_if(|(k, _)| **k == key) {
            Some((_, was)) => item.fingerprint == was.fingerprint && item.content == was.content,
            None => false,
        };
        if !same || keys.contains(&key) {
            keys.insert(key.clone());
            kept.insert(key, item);
        }
    }
    keys.extend(base.map(|(k, _)| k.clone()));
    ChangedItems {
        scan: Scan {
            items: kept,
            skipped,
            hashed,
        },
        keys,
    }
}
