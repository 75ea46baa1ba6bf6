//! # transport-fs
//!
//! A [`sync_core::Transport`] whose remote is a plain folder that several clients can share
//! (docs/SPEC.md §4): [`FsTransport`].
//!
//! The remote's metadata (revisions, history, epoch) and content live in a
//! [`store_sqlite::SqliteServerStore`] at `REMOTE/.sync-remote/server.db` (large blobs beside
//! it in `server.db.blobs/`), with the rollback journal (see "Network drives" below). Every write (push, delete, folder, archive) runs under an
//! exclusive inter-process lock on `REMOTE/.sync-remote/lock` (`flock`, taken on a blocking
//! thread), so two processes never interleave their writes; SQLite's own `IMMEDIATE`
//! transactions would serialise them too, the lock also covers opening (creating or migrating)
//! the database and keeps writers queued rather than failing on a busy database. Reads (change
//! feed, fetch, history) take no lock: SQLite gives each a consistent snapshot, and a blob file
//! is in place before the row that names it commits.
//!
//! ## Waiting for changes
//! [`Transport::wait`] returns at once when the feed already has changes after the cursor.
//! Otherwise it polls the database at a bounded interval (100 ms, doubling to 1 s) until the
//! timeout: another process may write the database, and the store's in-process notification
//! only hears writes made through the same store object. Writes through this same transport
//! still wake it at once.
//!
//! ## Network drives
//! The remote folder is meant to be shareable, including on a network file system (NFS, SMB)
//! mounted by several machines. SQLite's WAL mode keeps its index in shared memory (the `-shm`
//! file mapped by every process that opens the database), which does not work across
//! machines and can corrupt the database there. So the database is opened with the rollback
//! journal ([`store_sqlite::Journal::Rollback`]: `journal_mode=DELETE`, `synchronous=FULL`),
//! which needs only file locks. What that costs, two fsyncs per commit and readers waiting
//! while a write commits, is small next to a network round trip, and the writes here are
//! already serialised by the lock above, so the rollback journal's one-writer-at-a-time
//! locking never makes a writer fail. A remote made by an earlier version in WAL mode is
//! switched on the first open at which no other process has it open.
//!
//! Remaining limits: the share's byte-range locks (used by SQLite) and `flock` (used for the
//! write lock) must work across its clients, as they do on NFSv4 and SMB with default mount
//! options; a share that fakes locks (some `nolock` NFS mounts, some sync-service folders that
//! copy files around) can still interleave writers of different machines.
//!
//! ```no_run
//! use sync_core::{TenantId, Transport};
//! use transport_fs::FsTransport;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let remote = FsTransport::open("/mnt/shared/notes-remote", TenantId::new("me")).await?;
//! let page = remote.changes(None, 100).await?;
//! println!("{} changes", page.changes.len());
//! # Ok(()) }
//! ```

mod error;
mod lock;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use store_sqlite::{Journal, SqliteServerStore, StoreOptions};
use sync_core::{
    ArchiveRequest, ChangePage, Cursor, DeleteRequest, Fetched, FolderRequest, ItemMeta, Key,
    PushOutcome, PushRequest, Result, Revision, ServerConfig, ServerStore, TenantId, Transport,
    VersionMeta,
};

pub use error::FsTransportError;
pub use lock::LOCK_TIMEOUT;

/// The folder inside the remote folder that holds the database and the lock file.
pub const REMOTE_DIR: &str = ".sync-remote";

/// The database file inside [`REMOTE_DIR`] (opened with the rollback journal).
pub const DB_FILE: &str = "server.db";

/// The first interval between two looks at the database while waiting.
pub const MIN_POLL: Duration = Duration::from_millis(100);

/// The longest interval between two looks at the database while waiting.
pub const MAX_POLL: Duration = Duration::from_secs(1);

/// A shared folder as a sync remote, speaking for one tenant. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FsTransport {
    store: SqliteServerStore,
    tenant: TenantId,
    lock_path: PathBuf,
}

impl FsTransport {
    /// Opens the remote folder `remote_dir` (which must exist) for `tenant`, creating
    /// `.sync-remote/` and its database on first use, with the default [`ServerConfig`].
    pub async fn open(
        remote_dir: impl AsRef<Path>,
        tenant: TenantId,
    ) -> Result<FsTransport, FsTransportError> {
        Self::open_with(remote_dir, tenant, ServerConfig::default()).await
    }

    /// Like [`FsTransport::open`], with a size limit, clock skew and clock of your choice.
    pub async fn open_with(
        remote_dir: impl AsRef<Path>,
        tenant: TenantId,
        config: ServerConfig,
    ) -> Result<FsTransport, FsTransportError> {
        let remote = remote_dir.as_ref().to_path_buf();
        let state = remote.join(REMOTE_DIR);
        let check = remote.clone();
        let prepared = state.clone();
        tokio::task::spawn_blocking(move || prepare(&check, &prepared))
            .await
            .map_err(|e| FsTransportError::Task(e.to_string()))??;
        let lock_path = state.join("lock");
        // Creating or migrating the database happens under the lock, so two clients opening
        // a new remote at once agree on one epoch and one schema.
        // The rollback journal, not WAL: see "Network drives" in the crate docs.
        let guard = lock::acquire_async(lock_path.clone(), LOCK_TIMEOUT).await?;
        let options = StoreOptions {
            journal: Journal::Rollback,
        };
        let store = SqliteServerStore::open_with(state.join(DB_FILE), config, options).await;
        drop(guard);
        Ok(FsTransport {
            store: store?,
            tenant,
            lock_path,
        })
    }

    /// The tenant this transport speaks for.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Runs one write under the remote folder's lock.
    async fn locked<T, F>(&self, write: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let guard = lock::acquire_async(self.lock_path.clone(), LOCK_TIMEOUT).await?;
        let out = write.await;
        drop(guard);
        out
    }
}

/// Checks the remote folder and creates `.sync-remote/` in it. Blocking.
fn prepare(remote: &Path, state: &Path) -> Result<(), FsTransportError> {
    let meta = std::fs::metadata(remote).map_err(|source| FsTransportError::Unreachable {
        path: remote.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(FsTransportError::NotADirectory {
            path: remote.to_path_buf(),
        });
    }
    std::fs::create_dir_all(state).map_err(|source| FsTransportError::Unreachable {
        path: state.to_path_buf(),
        source,
    })?;
    // Everything this device writes stays inside the remote folder: its state folder, the
    // database and the blob folder must not be symlinks another writer put there.
    for path in [
        state.to_path_buf(),
        state.join(DB_FILE),
        state.join(format!("{DB_FILE}.blobs")),
    ] {
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_symlink() {
                return Err(FsTransportError::Symlink { path });
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Transport for FsTransport {
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> Result<ChangePage> {
        self.store.changes(&self.tenant, since, limit).await
    }

    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        self.store.fetch(&self.tenant, key, rev).await
    }

    async fn push(&self, req: PushRequest) -> Result<PushOutcome> {
        self.locked(self.store.push(&self.tenant, req)).await
    }

    async fn push_many(&self, reqs: Vec<PushRequest>) -> Result<Vec<Result<PushOutcome>>> {
        // One lock and (in the store) one transaction for the whole batch.
        self.locked(self.store.push_many(&self.tenant, reqs)).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<PushOutcome> {
        self.locked(self.store.delete(&self.tenant, req)).await
    }

    async fn ensure_folder(&self, req: FolderRequest) -> Result<ItemMeta> {
        self.locked(self.store.ensure_folder(&self.tenant, req))
            .await
    }

    async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>> {
        sync_core::full_history(&self.store, &self.tenant, key).await
    }

    async fn archive(&self, req: ArchiveRequest) -> Result<VersionMeta> {
        self.locked(self.store.archive(&self.tenant, req)).await
    }

    async fn max_item_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.store.max_item_bytes()))
    }

    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = MIN_POLL;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            // The store looks at the database first (seeing every process's writes), then
            // sleeps up to `interval`, woken early by writes through this same store.
            if self
                .store
                .wait(&self.tenant, since, interval.min(remaining))
                .await?
            {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            interval = (interval * 2).min(MAX_POLL);
        }
    }
}
