//! Watching the synced folder for local edits, for the engine's watch loop: [`FolderWatcher`].
//!
//! A recursive [`notify`] watch on the root feeds raw events to one debounce thread, which
//! turns each burst into a single `()` on a tokio channel: after the first relevant event it
//! waits for a quiet period of `debounce` with no further relevant event (an editor's save is
//! several events within a few milliseconds: one signal), but never longer than
//! [`MAX_BURST`] from the first event, so a folder that keeps changing still syncs. The
//! channel holds at most one pending signal, so a slow consumer sees one wake-up, not a
//! backlog. A short quiet period (tens of milliseconds) is what keeps edit latency low; it is
//! affordable because a wake-up of a journaled replica costs only the changed paths.
//!
//! Ignored, so the engine's own bookkeeping never wakes it: anything under the state folder
//! `.sync/`, the replica's `.sync-tmp-*` files, and read-only access (the scan opening files
//! to hash them would otherwise wake the engine after every scan). A file the engine downloads
//! into the tree does signal once (its rename into place); the sync that follows finds
//! nothing to do. A watch error or an overflowed kernel queue signals too (the engine then
//! rescans, which is what it needs).
//!
//! Started for a replica ([`FolderWatcher::start_for`]), it also feeds every event to the
//! replica's journal, which is what lets `Replica::change_token` and `Replica::scan_since`
//! answer without a walk (see `journal`); then only an event the journal recorded as a change
//! signals, so the replica's own writes (a download) do not wake the engine again.
//!
//! This module only watches; it never reads or writes a file, and it knows nothing about the
//! engine. Dropping the [`FolderWatcher`] stops the watch, and the channel then closes.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{Event, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::ReplicaError;
use crate::{FolderReplica, Shared};

/// The longest a burst of changes delays its signal: a folder that changes without pause
/// (a long copy) still syncs at least this often.
pub const MAX_BURST: Duration = Duration::from_secs(1);

/// A running watch of a synced folder. Dropping it stops the watch.
#[derive(Debug)]
pub struct FolderWatcher {
    /// Kept alive for the watch's lifetime; dropping it closes the raw event channel, which
    /// ends the debounce thread, which closes the signal channel.
    _watcher: RecommendedWatcher,
    root: PathBuf,
}

impl FolderWatcher {
    /// Watches `root` recursively and returns the watcher with a receiver that gets one `()`
    /// per burst of local changes: sent once `debounce` passed without a further change
    /// (30 ms covers an editor's save, which is a few events within milliseconds), or
    /// [`MAX_BURST`] after the burst's first change. Needs no async runtime.
    ///
    /// Fails with [`ReplicaError::Watch`] when the folder cannot be watched (missing, or the
    /// system's limit of watches is reached).
    pub fn start(
        root: &Path,
        debounce: Duration,
    ) -> Result<(FolderWatcher, mpsc::Receiver<()>), ReplicaError> {
        FolderWatcher::start_with(root, None, debounce)
    }

    /// Watches `replica`'s folder as [`FolderWatcher::start`] does and feeds the replica's
    /// journal while it runs: the replica's change token and `scan_since` work from the
    /// moment this returns until the watcher is dropped (the first sync after it scans in
    /// full). Only changes the journal records signal.
    pub fn start_for(
        replica: &FolderReplica,
        debounce: Duration,
    ) -> Result<(FolderWatcher, mpsc::Receiver<()>), ReplicaError> {
        FolderWatcher::start_with(replica.root(), Some(Arc::clone(&replica.shared)), debounce)
    }

    fn start_with(
        root: &Path,
        shared: Option<Arc<Shared>>,
        debounce: Duration,
    ) -> Result<(FolderWatcher, mpsc::Receiver<()>), ReplicaError> {
        let watch_error = |source: notify::Error| ReplicaError::Watch {
            path: root.to_path_buf(),
            source,
        };
        // Events may name paths under the root as given or under its canonical form.
        let roots = crate::journal::roots_of(root);
        let (raw_tx, raw_rx) = std_mpsc::channel::<notify::Result<Event>>();
        // Symlinks are not followed, as the scan does not follow them.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = RecommendedWatcher::new(raw_tx, config).map_err(watch_error)?;
        // Attached before the watch starts, so no event is missed; detached when the thread
        // ends (the watcher was dropped) or if it cannot start.
        let attached = shared.inspect(|s| s.journal.attach());
        let detach = |shared: &Option<Arc<Shared>>| {
            if let Some(s) = shared {
                s.journal.detach();
            }
        };
        if let Err(e) = watcher.watch(root, RecursiveMode::Recursive) {
            detach(&attached);
            return Err(watch_error(e));
        }
        let (tx, rx) = mpsc::channel(1);
        let thread_shared = attached.clone();
        let spawned = std::thread::Builder::new()
            .name("replica-fs-watch".to_owned())
            .spawn(move || {
                let journal = thread_shared.as_ref().map(|s| &s.journal);
                debounce_loop(&roots, journal, &raw_rx, &tx, debounce);
                detach(&thread_shared);
            });
        if let Err(e) = spawned {
            detach(&attached);
            return Err(ReplicaError::Watch {
                path: root.to_path_buf(),
                source: notify::Error::io(e),
            });
        }
        Ok((
            FolderWatcher {
                _watcher: watcher,
                root: root.to_path_buf(),
            },
            rx,
        ))
    }

    /// The watched folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Turns raw events into debounced signals until the watch or the receiver goes away. With a
/// journal, every event goes to it, and the journal says which ones are changes.
fn debounce_loop(
    roots: &[PathBuf],
    journal: Option<&crate::journal::Journal>,
    raw: &std_mpsc::Receiver<notify::Result<Event>>,
    tx: &mpsc::Sender<()>,
    debounce: Duration,
) {
    let counts = |event: &notify::Result<Event>| match journal {
        Some(j) => j.note(event),
        None => relevant(roots, event),
    };
    loop {
        // Wait for the first relevant event of a burst.
        loop {
            match raw.recv() {
                Ok(event) if counts(&event) => break,
                Ok(_) => {}
                Err(std_mpsc::RecvError) => return, // the watcher was dropped
            }
        }
        // Absorb what follows until a quiet period, or the burst's limit.
        let limit = Instant::now() + MAX_BURST;
        let mut quiet_until = Instant::now() + debounce;
        loop {
            let left = quiet_until
                .min(limit)
                .saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match raw.recv_timeout(left) {
                Ok(event) => {
                    if counts(&event) {
                        quiet_until = Instant::now() + debounce;
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        match tx.try_send(()) {
            // A full channel already holds a signal the engine has not taken: same meaning.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
    }
}

/// True when `event` may mean a local change the engine should sync.
fn relevant(roots: &[PathBuf], event: &notify::Result<Event>) -> bool {
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "folder watch error; asking for a rescan");
            return true;
        }
    };
    if event.need_rescan() {
        return true;
    }
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    // No path (some back ends): cannot tell, so it counts.
    event.paths.is_empty() || event.paths.iter().any(|p| relevant_path(roots, p))
}

/// False for paths inside the state folder and for the replica's temporary files.
fn relevant_path(roots: &[PathBuf], path: &Path) -> bool {
    let rel = roots
        .iter()
        .find_map(|root| path.strip_prefix(root).ok())
        .unwrap_or(path);
    crate::journal::relevant(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_folder_and_temp_files_are_not_relevant() {
        let roots = [PathBuf::from("/r")];
        let p = |s: &str| PathBuf::from(s);
        assert!(relevant_path(&roots, &p("/r/a.txt")));
        assert!(
            relevant_path(&roots, &p("/r/sub/.sync/x")),
            "only the top-level .sync"
        );
        assert!(relevant_path(&roots, &p("/r/.syncignore")));
        assert!(!relevant_path(&roots, &p("/r/.sync")));
        assert!(!relevant_path(&roots, &p("/r/.sync/state.db-wal")));
        assert!(!relevant_path(&roots, &p("/r/a/.sync-tmp-abc")));
        let access = Ok(
            Event::new(EventKind::Access(notify::event::AccessKind::Any)).add_path(p("/r/a.txt")),
        );
        assert!(!relevant(&roots, &access));
        let modify = Ok(
            Event::new(EventKind::Modify(notify::event::ModifyKind::Any)).add_path(p("/r/a.txt")),
        );
        assert!(relevant(&roots, &modify));
        // A rename of a temporary file over a synced file counts.
        let rename = Ok(
            Event::new(EventKind::Modify(notify::event::ModifyKind::Any))
                .add_path(p("/r/.sync-tmp-1"))
                .add_path(p("/r/a.txt")),
        );
        assert!(relevant(&roots, &rename));
        assert!(relevant(&roots, &Err(notify::Error::generic("overflow"))));
    }
}
