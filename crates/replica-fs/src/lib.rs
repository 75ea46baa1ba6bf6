//! # replica-fs
//!
//! The folder replica: a directory tree on disk as a [`sync_core::Replica`] (docs/SPEC.md §3, §4).
//!
//! - The scan walks the tree without following symlinks, skips the state folder
//!   `.sync/`, the replica's `.sync-tmp-*` files, editor and OS droppings and the patterns of
//!   `.syncignore`, recognises unchanged files by (size, mtime, inode) without reading them, and
//!   hashes the rest with blake3 in parallel, off the async threads. It removes `.sync-tmp-*`
//!   files that are not writes in flight in this process (left by a crash mid-write), and
//!   keeps the ignore rules it loaded for [`sync_core::Replica::ignores`].
//! - Writes are atomic (temporary file in the same folder, fsync, rename) and happen only if
//!   the target is still what the plan saw.
//! - Conflict losers and deleted files are copied to `.sync/backups/<key>/` first.
//!
//! Layout: [`scan`] (walk and hash), [`ignore_rules`] (what is skipped),
//! `apply` (write, create folder, remove, read), `backup` (local backups), `in_flight`
//! (temporary files being written, stale ones removed), [`watch`] (the debounced folder
//! watcher for the engine's watch loop), [`error`]. This file
//! only opens the replica and moves each call onto a blocking thread; it does no I/O on an async
//! thread.
//!
//! ```no_run
//! use replica_fs::FolderReplica;
//! use sync_core::Replica;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let replica = FolderReplica::new("/home/me/Notes")?;
//! let scan = replica.scan(&Default::default(), sync_core::DEFAULT_MAX_ITEM_BYTES).await?;
//! println!("{} items, {} skipped", scan.items.len(), scan.skipped.len());
//! # Ok(()) }
//! ```

mod apply;
mod backup;
pub mod error;
pub mod ignore_rules;
mod in_flight;
mod journal;
pub mod scan;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sync_core::{
    Backup, ChangedItems, Expected, Key, KnownItem, LocalItem, LocalWrite, Replica, Result, Scan,
    Stamp,
};

pub use backup::BACKUPS_DIR;
pub use error::ReplicaError;
pub use ignore_rules::{IgnoreRules, IGNORE_FILE, STATE_DIR, TEMP_PREFIX};
pub use journal::{FULL_SCAN_EVERY, MAX_PATHS as MAX_JOURNAL_PATHS};
pub use watch::FolderWatcher;

/// A folder on disk as a sync replica. Cheap to clone (the clones share the root, the ignore
/// rules of the last scan and the set of writes in flight).
#[derive(Debug, Clone)]
pub struct FolderReplica {
    root: Arc<PathBuf>,
    shared: Arc<Shared>,
}

/// What a replica and its clones share across calls.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Files this replica wrote itself, for the racy-mtime rule.
    pub(crate) own: scan::OwnWrites,
    /// Temporary files being written right now; every other `.sync-tmp-*` file is stale.
    pub(crate) in_flight: in_flight::InFlight,
    /// The ignore rules as loaded by the last scan (or by [`FolderReplica::new`] before the
    /// first one), for [`Replica::ignores`], which must not do I/O.
    pub(crate) rules: RwLock<Arc<IgnoreRules>>,
    /// What changed since a change token, while a [`FolderWatcher`] started with
    /// [`FolderWatcher::start_for`] runs.
    pub(crate) journal: journal::Journal,
    /// How much the scans did, for [`FolderReplica::scan_counts`].
    pub(crate) counts: Counters,
}

/// The counters behind [`ScanCounts`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) full: AtomicU64,
    pub(crate) partial: AtomicU64,
    pub(crate) visited: AtomicU64,
    /// Bytes of content read by `read` and written by `write`.
    pub(crate) moved: AtomicU64,
}

/// How much this replica's scans did since it was opened (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounts {
    /// Full scans (walks of the whole tree).
    pub full: u64,
    /// Answers of [`Replica::scan_since`] that listed the changed paths (not `None`).
    pub partial: u64,
    /// Entries (files, folders, anything else) looked at by either kind, one `lstat` each.
    pub visited: u64,
}

impl Shared {
    /// The shared state of a replica of `root`, with the ignore rules loaded now.
    pub(crate) fn new(root: &Path) -> Shared {
        Shared {
            own: scan::OwnWrites::default(),
            in_flight: in_flight::InFlight::default(),
            rules: RwLock::new(Arc::new(IgnoreRules::load(root))),
            journal: journal::Journal::new(root),
            counts: Counters::default(),
        }
    }

    /// The ignore rules of the last scan.
    pub(crate) fn rules(&self) -> Arc<IgnoreRules> {
        Arc::clone(&self.rules.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Keeps `rules` as the rules of the last scan.
    pub(crate) fn set_rules(&self, rules: Arc<IgnoreRules>) {
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = rules;
    }
}

impl FolderReplica {
    /// Opens the folder `root`, which must exist and be a folder. The state folder is
    /// `root/.sync/` (created by whoever stores state or backups there, not here).
    ///
    /// Reads `root/.syncignore` once (blocking, a small file), so [`Replica::ignores`] knows the
    /// rules before the first scan; every scan reads them again.
    pub fn new(root: impl Into<PathBuf>) -> Result<FolderReplica, ReplicaError> {
        let root = root.into();
        let meta = std::fs::metadata(&root).map_err(|source| ReplicaError::Root {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ReplicaError::NotADirectory { path: root });
        }
        Ok(FolderReplica {
            shared: Arc::new(Shared::new(&root)),
            root: Arc::new(root),
        })
    }

    /// Sets the safety net of [`Replica::scan_since`] (default [`FULL_SCAN_EVERY`]): when the
    /// last full scan is older than `every`, it answers `None` and the engine scans in full.
    pub fn with_full_scan_every(self, every: Duration) -> FolderReplica {
        self.shared.journal.set_full_scan_every(every);
        self
    }

    /// Bytes of content this replica (and its clones) read for the engine (uploads) and wrote
    /// for it (downloads) so far; a scan's hashing is not counted. For progress displays.
    pub fn bytes_moved(&self) -> u64 {
        self.shared.counts.moved.load(Ordering::Relaxed)
    }

    /// How much the scans of this replica (and its clones) did so far.
    pub fn scan_counts(&self) -> ScanCounts {
        let c = &self.shared.counts;
        ScanCounts {
            full: c.full.load(Ordering::Relaxed),
            partial: c.partial.load(Ordering::Relaxed),
            visited: c.visited.load(Ordering::Relaxed),
        }
    }

    /// The synced folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state folder, `root/.sync/`; the scan never reports anything inside it.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    fn count_moved(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.shared.counts.moved.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Runs `f` with the root on a blocking thread.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(error::join_error)?
    }
}

#[async_trait]
impl Replica for FolderReplica {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max_item_bytes: u64) -> Result<Scan> {
        // The known map is copied once so the walk can run on a blocking thread.
        let known = known.clone();
        let shared = Arc::clone(&self.shared);
        self.blocking(move |root| scan::scan(root, &known, max_item_bytes, &shared))
            .await
    }

    async fn scan_changes(
        &self,
        known: Arc<BTreeMap<Key, KnownItem>>,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<ChangedItems> {
        let also = also.clone();
        let shared = Arc::clone(&self.shared);
        self.blocking(move |root| scan::scan_changes(root, &known, &also, max_item_bytes, &shared))
            .await
    }

    /// The journal's counter while a [`FolderWatcher`] started with
    /// [`FolderWatcher::start_for`] runs: it moves on every change the watcher reports and on
    /// every change this replica makes. `None` without a watcher.
    async fn change_token(&self) -> Result<Option<u64>> {
        Ok(self.shared.journal.token())
    }

    /// Lists only the paths the watcher reported since `since` (a folder with its subtree)
    /// and the keys `also`, each as [`Replica::scan`] lists it. `None` (the engine then scans
    /// in full) without a watcher, after an overflow or a watch error, when a folder was
    /// removed or renamed away, past [`MAX_JOURNAL_PATHS`] changed paths, or when the last full
    /// scan is older than the safety net ([`FolderReplica::with_full_scan_every`]).
    async fn scan_since(
        &self,
        since: u64,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<Option<ChangedItems>> {
        let also = also.clone();
        let shared = Arc::clone(&self.shared);
        self.blocking(move |root| scan::scan_since(root, since, &also, max_item_bytes, &shared))
            .await
    }

    async fn read(&self, key: &Key) -> Result<Bytes> {
        let key = key.clone();
        let read = self.blocking(move |root| apply::read(root, &key)).await?;
        self.count_moved(read.len());
        Ok(read)
    }

    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem> {
        let key = key.clone();
        let shared = Arc::clone(&self.shared);
        let len = content.len();
        let written = self
            .blocking(move |root| apply::write(root, &shared, &key, &content, expected))
            .await?;
        self.count_moved(len);
        Ok(written)
    }

    async fn write_many(&self, writes: Vec<LocalWrite>) -> Vec<Result<LocalItem>> {
        let n = writes.len();
        let shared = Arc::clone(&self.shared);
        match self
            .blocking(move |root| Ok(apply::write_many(root, &shared, writes)))
            .await
        {
            Ok(results) => results,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    async fn create_folder(&self, key: &Key) -> Result<LocalItem> {
        let key = key.clone();
        let shared = Arc::clone(&self.shared);
        self.blocking(move |root| apply::create_folder(root, &shared, &key))
            .await
    }

    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
        let key = key.clone();
        self.blocking(move |root| backup::backup(root, &key, stamp))
            .await
    }

    async fn remove(&self, key: &Key, expected: Expected) -> Result<()> {
        let key = key.clone();
        let shared = Arc::clone(&self.shared);
        self.blocking(move |root| apply::remove(root, &shared, &key, expected))
            .await
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        self.blocking(backup::list).await
    }

    async fn read_backup(&self, backup: &Backup) -> Result<Bytes> {
        let backup = backup.clone();
        self.blocking(move |root| backup::read(root, &backup)).await
    }

    /// The rules of the last scan (reloaded by every scan), applied to `key` by
    /// [`IgnoreRules::ignores_key`]: built-in droppings, `.syncignore` patterns, the state folder
    /// and temporary-file names. No I/O.
    fn ignores(&self, key: &Key) -> bool {
        self.shared.rules().ignores_key(key)
    }

    fn rules_tag(&self) -> String {
        self.shared.rules().tag.clone()
    }
}
