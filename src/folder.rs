//! Sync a folder on disk: the engine over a [`FolderReplica`], with its state in SQLite under
//! `DIR/.sync/state.db`, and any [`Transport`] as the remote. [`open`] builds the engine,
//! [`watch`] keeps the folder in step until told to stop, and [`exit_code`] and
//! [`status_line`] are what a program like `folder-sync` reports (docs/SPEC.md §7).
//!
//! This module only wires parts together; the parts live in their crates. It must not grow sync
//! logic of its own: scheduling is [`Engine::run`]'s, watching is [`FolderWatcher`]'s.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use replica_fs::watch::FolderWatcher;
use replica_fs::{FolderReplica, ReplicaError, STATE_DIR};
use store_sqlite::{SqliteStateStore, StoreError};
use sync_core::{
    Engine, EngineConfig, ErrorClass, RunOptions, SyncFailed, SyncReport, SyncStatus, Transport,
};

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
    /// Called outside a tokio runtime: the folder replica and the state store run their file
    /// and SQLite work on tokio's blocking pool.
    #[error(
        "sync_engine::folder::open needs a tokio runtime (its file and SQLite work runs on \
         tokio's blocking pool): call it from inside #[tokio::main] or Runtime::block_on"
    )]
    NoRuntime,
}

/// Opens `dir` for sync with `transport` as its remote: creates `dir/.sync/` if needed and opens
/// (or creates) the state database there.
///
/// It must run inside a tokio runtime (as must the engine it returns); outside one it fails
/// with [`OpenError::NoRuntime`] instead of panicking.
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
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(OpenError::NoRuntime);
    }
    let replica = FolderReplica::new(dir.as_ref())?;
    let state_dir = dir.as_ref().join(STATE_DIR);
    let mkdir = state_dir.clone();
    // Owner-only (0700 on Unix): the state and the backups are the tenant's, not other
    // local users'. An existing `.sync/` keeps its mode.
    tokio::task::spawn_blocking(move || store_sqlite::owner_only::create_dir_all(&mkdir))
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

/// How [`watch`] paces itself.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The quiet period that ends a burst of local changes: changes closer together than
    /// this are one signal to sync (an editor's save is several writes within milliseconds).
    /// Default 30 ms: a wake-up lists only what the watcher saw change, so a short one is
    /// cheap, and it is most of the time from a save to the sync.
    pub debounce: Duration,
    /// The engine loop's long-poll, rescan and backoff settings. Default
    /// [`RunOptions::default`].
    pub run: RunOptions,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(30),
            run: RunOptions::default(),
        }
    }
}

/// Keeps the engine's folder in step with its remote until `shutdown` completes: watches the
/// folder ([`FolderWatcher`], debounced by `options.debounce`) and runs [`Engine::run`], which
/// syncs at start, on every local change, on every change on the server (long-poll) and on its
/// rescan timer, and retries failures with backoff.
///
/// `on_status` is called with the engine's status at start and then each time its
/// [`status_line`] changes (so a sync's progress ticks do not call it, and a repeated status is
/// not reported twice). When `shutdown` completes, the loop stops after the sync in progress,
/// if any, and `watch` returns `Ok(())`. Sync failures do not end it: they go on the engine's
/// error stack and into the status (`error: ...`), and the loop retries.
///
/// Fails only when the folder cannot be watched ([`ReplicaError::Watch`]: missing, or the
/// system's limit of watches is reached), before any sync.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use sync_core::{EngineConfig, TenantId};
/// use sync_engine::folder::{self, WatchOptions};
/// use transport_fs::FsTransport;
///
/// let remote = FsTransport::open("/mnt/shared/notes-remote", TenantId::new("me")).await?;
/// let mut notes = folder::open("/home/me/Notes", remote, EngineConfig::default()).await?;
/// // Until Ctrl-C; prints `syncing`, `idle`, `off` or `error: ...` on every change.
/// let stop = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// folder::watch(&mut notes, WatchOptions::default(), stop, |status| {
///     println!("{}", folder::status_line(status))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn watch<T: Transport>(
    engine: &mut FolderEngine<T>,
    options: WatchOptions,
    shutdown: impl Future<Output = ()>,
    mut on_status: impl FnMut(&SyncStatus),
) -> Result<(), ReplicaError> {
    // Kept until the loop ends: dropping it stops the watch. Started for the replica, it feeds
    // the replica's change journal, so a wake-up lists only what the watcher saw change.
    let (_watcher, local_changes) = FolderWatcher::start_for(engine.replica(), options.debounce)?;
    let mut status = engine.status();
    let handle = engine.handle();
    let mut last = {
        let now = status.borrow_and_update();
        on_status(&now);
        status_line(&now)
    };
    let mut run = pin!(engine.run(local_changes, options.run));
    let mut shutdown = pin!(shutdown);
    let (mut stopping, mut status_open) = (false, true);
    loop {
        tokio::select! {
            () = &mut run => return Ok(()),
            () = &mut shutdown, if !stopping => {
                stopping = true;
                handle.stop();
            }
            changed = status.changed(), if status_open => {
                if changed.is_err() {
                    // The engine dropped its status channel; the loop itself still runs.
                    status_open = false;
                    continue;
                }
                let now = status.borrow_and_update().clone();
                let line = status_line(&now);
                if line != last {
                    on_status(&now);
                    last = line;
                }
            }
        }
    }
}

/// The one-line status for a person, as `folder-sync` prints it: `syncing`, `idle`, `off`, or
/// `error: <top entry>` (a sync's progress is left out, so the line changes only when the
/// state does).
pub fn status_line(status: &SyncStatus) -> String {
    match status {
        SyncStatus::Syncing { .. } => "syncing".to_owned(),
        other => other.to_string(),
    }
}

/// The exit code of a program that ran one sync ([`Engine::sync_once`]), by docs/SPEC.md §7:
/// 0 on success, 1 when the sync stopped on an error of class [`ErrorClass::Auth`],
/// [`ErrorClass::Storage`] or [`ErrorClass::Offline`] (the user must act, or the remote cannot
/// be reached). A sync stopped by [`ErrorClass::Throttled`] (the server asked to wait; the next
/// run continues) also gives 0. Per-item problems never change the code: they are in the report.
pub fn exit_code(outcome: &Result<SyncReport, SyncFailed>) -> u8 {
    match outcome {
        Ok(_) => 0,
        Err(failed) => u8::from(matches!(
            failed.error.class(),
            ErrorClass::Auth | ErrorClass::Storage | ErrorClass::Offline
        )),
    }
}
