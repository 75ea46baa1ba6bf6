//! Watching the synced folder for local edits, for the engine's watch loop: [`FolderWatcher`].
//!
//! A recursive [`notify`] watch on the root feeds raw events to one debounce thread, which
//! turns each burst into a single `()` on a tokio channel: the first relevant event opens a
//! window of `debounce`, every event inside it is absorbed, and one signal is sent when the
//! window closes. The channel holds at most one pending signal, so a slow consumer sees one
//! wake-up, not a backlog.
//!
//! Ignored, so the engine's own bookkeeping never wakes it: anything under the state folder
//! `.sync/`, the replica's `.sync-tmp-*` files, and read-only access (the scan opening files
//! to hash them would otherwise wake the engine after every scan). A file the engine downloads
//! into the tree does signal once (its rename into place); the sync that follows finds
//! nothing to do. A watch error or an overflowed kernel queue signals too (the engine then
//! rescans, which is what it needs).
//!
//! This module only watches; it never reads or writes a file, and it knows nothing about the
//! engine. Dropping the [`FolderWatcher`] stops the watch, and the channel then closes.

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::event::{Event, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::ReplicaError;
use crate::ignore_rules::{STATE_DIR, TEMP_PREFIX};

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
    /// per burst of local changes, at most one per `debounce` window (about 300 ms suits an
    /// editor's save). Needs no async runtime.
    ///
    /// Fails with [`ReplicaError::Watch`] when the folder cannot be watched (missing, or the
    /// system's limit of watches is reached).
    pub fn start(
        root: &Path,
        debounce: Duration,
    ) -> Result<(FolderWatcher, mpsc::Receiver<()>), ReplicaError> {
        let watch_error = |source: notify::Error| ReplicaError::Watch {
            path: root.to_path_buf(),
            source,
        };
        // Events may name paths under the root as given or under its canonical form.
        let roots = {
            let mut roots = vec![root.to_path_buf()];
            if let Ok(canonical) = std::fs::canonicalize(root) {
                if canonical != root {
                    roots.push(canonical);
                }
            }
            roots
        };
        let (raw_tx, raw_rx) = std_mpsc::channel::<notify::Result<Event>>();
        let mut watcher = notify::recommended_watcher(raw_tx).map_err(watch_error)?;
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(watch_error)?;
        let (tx, rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("replica-fs-watch".to_owned())
            .spawn(move || debounce_loop(&roots, &raw_rx, &tx, debounce))
            .map_err(|e| ReplicaError::Watch {
                path: root.to_path_buf(),
                source: notify::Error::io(e),
            })?;
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

/// Turns raw events into debounced signals until the watch or the receiver goes away.
fn debounce_loop(
    roots: &[PathBuf],
    raw: &std_mpsc::Receiver<notify::Result<Event>>,
    tx: &mpsc::Sender<()>,
    debounce: Duration,
) {
    loop {
        // Wait for the first relevant event of a burst.
        loop {
            match raw.recv() {
                Ok(event) if relevant(roots, &event) => break,
                Ok(_) => {}
                Err(std_mpsc::RecvError) => return, // the watcher was dropped
            }
        }
        // Absorb everything else that arrives within the window.
        let deadline = Instant::now() + debounce;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match raw.recv_timeout(left) {
                Ok(_) => {}
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
    if let Some(Component::Normal(first)) = rel.components().next() {
        if first == STATE_DIR {
            return false;
        }
    }
    let temp = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TEMP_PREFIX));
    !temp
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
