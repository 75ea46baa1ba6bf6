//! # replica-fs
//!
//! The folder replica: a directory tree on disk as a [`sync_core::Replica`] (SPEC §3, §4).
//!
//! - The scan walks the tree without following symlinks, skips the state folder
//!   `.sync/`, the replica's `.sync-tmp-*` files, editor and OS droppings and the patterns of
//!   `.syncignore`, recognises unchanged files by (size, mtime, inode) without reading them, and
//!   hashes the rest with blake3 in parallel, off the async threads.
//! - Writes are atomic (temporary file in the same folder, fsync, rename) and happen only if
//!   the target is still what the plan saw.
//! - Conflict losers and deleted files are copied to `.sync/backups/<key>/` first.
//!
//! Layout: [`scan`] (walk and hash), [`ignore_rules`] (what is skipped),
//! `apply` (write, create folder, remove, read), `backup` (local backups), [`error`]. This file
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
pub mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sync_core::{Backup, Expected, Key, KnownItem, LocalItem, Replica, Result, Scan, Stamp};

pub use backup::BACKUPS_DIR;
pub use error::ReplicaError;
pub use ignore_rules::{IGNORE_FILE, STATE_DIR, TEMP_PREFIX};

/// A folder on disk as a sync replica. Cheap to clone (the clones share the root).
#[derive(Debug, Clone)]
pub struct FolderReplica {
    root: Arc<PathBuf>,
    own: Arc<scan::OwnWrites>,
}

impl FolderReplica {
    /// Opens the folder `root`, which must exist and be a folder. The state folder is
    /// `root/.sync/` (created by whoever stores state or backups there, not here).
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
            root: Arc::new(root),
            own: Arc::default(),
        })
    }

    /// The synced folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state folder, `root/.sync/`; the scan never reports anything inside it.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
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
        let own = Arc::clone(&self.own);
        self.blocking(move |root| scan::scan(root, &known, max_item_bytes, &own))
            .await
    }

    async fn read(&self, key: &Key) -> Result<Bytes> {
        let key = key.clone();
        self.blocking(move |root| apply::read(root, &key)).await
    }

    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem> {
        let key = key.clone();
        let own = Arc::clone(&self.own);
        self.blocking(move |root| apply::write(root, &own, &key, &content, expected))
            .await
    }

    async fn create_folder(&self, key: &Key) -> Result<LocalItem> {
        let key = key.clone();
        self.blocking(move |root| apply::create_folder(root, &key))
            .await
    }

    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
        let key = key.clone();
        self.blocking(move |root| backup::backup(root, &key, stamp))
            .await
    }

    async fn remove(&self, key: &Key, expected: Expected) -> Result<()> {
        let key = key.clone();
        self.blocking(move |root| apply::remove(root, &key, expected))
            .await
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        self.blocking(backup::list).await
    }

    async fn read_backup(&self, backup: &Backup) -> Result<Bytes> {
        let backup = backup.clone();
        self.blocking(move |root| backup::read(root, &backup)).await
    }
}
