//! Sync a folder on disk: the engine over a [`FolderReplica`], with its state in SQLite under
//! `DIR/.sync/state.db`, and any [`Transport`] as the remote.
//!
//! This module only wires parts together; the parts live in their crates. It must not grow sync
//! logic of its own.

use std::path::{Path, PathBuf};

use replica_fs::{FolderReplica, ReplicaError, STATE_DIR};
use store_sqlite::{SqliteStateStore, StoreError};
use sync_core::{Engine, EngineConfig, Transport};

/// The engine for a folder: disk replica, SQLite state, remote `T`.
pub type FolderEngine<T> = Engine<T, SqliteStateStore, FolderReplica>;

/// The name of the state database inside the state folder.
pub const STATE_DB: &str = "state.db";

/// Opening a folder for sync failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The folder cannot be used as a replica.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The state folder cannot be created.
    #[error(
        "cannot create the sync state folder {path}: {source}. Check that the folder is writable"
    )]
    StateDir {
        /// The state folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state database cannot be opened.
    #[error(transparent)]
    State(#[from] StoreError),
}

/// Opens `dir` for sync with `transport` as its remote: creates `dir/.sync/` if needed and opens
/// (or creates) the state database there.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use sync_core::{EngineConfig, TenantId};
/// use transport_fs::FsTransport;
///
/// let remote = FsTransport::open("/mnt/shared/notes-remote", TenantId::new("me")).await?;
/// let mut notes = sync_engine::folder::open("/home/me/Notes", remote, EngineConfig::default()).await?;
/// let report = notes.sync_once().await?;
/// println!("{} up, {} down", report.uploaded, report.downloaded);
/// # Ok(()) }
/// ```
pub async fn open<T: Transport>(
    dir: impl AsRef<Path>,
    transport: T,
    config: EngineConfig,
) -> Result<FolderEngine<T>, OpenError> {
    let replica = FolderReplica::new(dir.as_ref())?;
    let state_dir = dir.as_ref().join(STATE_DIR);
    let mkdir = state_dir.clone();
    tokio::task::spawn_blocking(move || std::fs::create_dir_all(&mkdir))
        .await
        .map_err(|e| OpenError::StateDir {
            path: state_dir.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| OpenError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
    let state = SqliteStateStore::open(state_dir.join(STATE_DB)).await?;
    Ok(Engine::new(transport, state, replica, config))
}
