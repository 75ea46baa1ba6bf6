//! The replica's temporary files: which `.sync-tmp-*` files are writes in flight in this
//! process ([`InFlight`]), and the removal of every other one the scan meets (stale leftovers
//! of a process killed in the middle of a write, docs/SPEC.md §3 "leaves no partial file").
//!
//! A temporary file is created and registered under one lock, and the scan checks and removes
//! under the same lock, so a scan can never remove a file a write of this process is still
//! filling: if the walk saw the file, it existed before the scan took the lock, so its write had
//! already registered it. Files of *another* process writing into the same folder at the same
//! moment are not known here; one folder is synced by one process at a time.
//!
//! This module creates and removes only `.sync-tmp-*` files; it never touches a synced item.

use std::collections::HashSet;
use std::fs::{self, Permissions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tempfile::NamedTempFile;

use crate::ignore_rules::TEMP_PREFIX;

/// The temporary files this replica (and its clones) is writing right now, by full path.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Mutex<HashSet<PathBuf>>);

/// Keeps a temporary file registered as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlightGuard<'a> {
    set: &'a InFlight,
    path: PathBuf,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.path);
    }
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        // Single inserts and removals: a panic elsewhere cannot leave the set inconsistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a new `.sync-tmp-*` file in `dir` with `mode` and registers it as in flight until
    /// the returned guard is dropped. Keep the guard until the file is renamed or deleted.
    pub(crate) fn create_in(
        &self,
        dir: &Path,
        mode: Permissions,
    ) -> io::Result<(InFlightGuard<'_>, NamedTempFile)> {
        let mut set = self.lock();
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(mode)
            .tempfile_in(dir)?;
        let path = tmp.path().to_path_buf();
        set.insert(path.clone());
        Ok((InFlightGuard { set: self, path }, tmp))
    }

    /// True when `path` is a temporary file being written right now.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.lock().contains(path)
    }

    /// Registers `path` as in flight without creating it (for tests of the sweep).
    #[cfg(test)]
    pub(crate) fn register(&self, path: &Path) -> InFlightGuard<'_> {
        self.lock().insert(path.to_path_buf());
        InFlightGuard {
            set: self,
            path: path.to_path_buf(),
        }
    }

    /// Removes the temporary file at `path` unless it is a write in flight. Returns whether a
    /// file was removed; a file already gone is not an error.
    pub(crate) fn remove_if_stale(&self, path: &Path) -> io::Result<bool> {
        let set = self.lock();
        if set.contains(path) {
            return Ok(false);
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_registered_file_is_kept_and_a_stale_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let set = InFlight::default();
        let (guard, tmp) = set
            .create_in(dir.path(), Permissions::from_mode(0o600))
            .unwrap();
        let live = tmp.path().to_path_buf();
        assert!(set.contains(&live));
        assert!(!set.remove_if_stale(&live).unwrap());
        assert!(live.exists());

        let stale = dir.path().join(".sync-tmp-stale");
        fs::write(&stale, b"half").unwrap();
        assert!(set.remove_if_stale(&stale).unwrap());
        assert!(!stale.exists());
        assert!(
            !set.remove_if_stale(&stale).unwrap(),
            "already gone is fine"
        );

        drop(guard);
        assert!(!set.contains(&live));
        drop(tmp);
    }
}
