//! Errors of the folder replica: [`ReplicaError`] for opening a replica or its watcher, and the one place where
//! `std::io::Error`s become [`sync_core::Error`]s at the trait boundary.
//!
//! Every I/O failure about one item goes through `io_to_sync`, so the mapping of docs/SPEC.md §5 is
//! decided here only: a missing file is `NotFound`, a full disk or a read-only file system is
//! `Storage` (sync stops), permission problems and everything else are `Item` (sync goes on).
//! This module does no I/O itself.

use std::io;
use std::path::PathBuf;

use sync_core::{Error, Key};

/// Why a [`crate::FolderReplica`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The root folder does not exist or cannot be read.
    #[error(
        "sync folder {path:?} cannot be opened: {source}. Create it, or check its permissions"
    )]
    Root {
        /// The root given.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The root exists but is not a folder.
    #[error("sync folder {path:?} is not a folder; give the path of a folder to sync")]
    NotADirectory {
        /// The root given.
        path: PathBuf,
    },
    /// The folder cannot be watched for changes ([`crate::watch::FolderWatcher`]).
    #[error(
        "cannot watch the sync folder {path:?} for changes: {source}. Check that it exists; on Linux a large tree may need a higher fs.inotify.max_user_watches"
    )]
    Watch {
        /// The root given.
        path: PathBuf,
        /// What the watch back end said.
        #[source]
        source: notify::Error,
    },
}

impl From<ReplicaError> for Error {
    fn from(e: ReplicaError) -> Error {
        Error::storage(e.to_string())
    }
}

/// `ENOSPC`: no space left on device.
const ENOSPC: i32 = 28;
/// `EROFS`: read-only file system.
const EROFS: i32 = 30;
/// `EDQUOT`: disk quota exceeded.
#[cfg(target_os = "linux")]
const EDQUOT: i32 = 122;
/// `EDQUOT`: disk quota exceeded.
#[cfg(not(target_os = "linux"))]
const EDQUOT: i32 = 69;

/// True when `e` means the sync folder's disk cannot take more data (full, quota, read-only):
/// a `Storage` failure that stops the sync rather than a problem of one item.
pub(crate) fn is_storage_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ENOSPC | EROFS | EDQUOT))
}

/// Maps an I/O failure while working on `key` into the error of docs/SPEC.md §5.
///
/// `action` says what was being done ("read", "write", ...), for the message.
pub(crate) fn io_to_sync(key: &Key, action: &str, e: &io::Error) -> Error {
    if is_storage_full(e) {
        return Error::storage(format!(
            "cannot {action} {key}: {e}. Free some space on the sync folder's disk (or make it writable)"
        ));
    }
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound { key: key.clone() },
        io::ErrorKind::PermissionDenied => Error::item(
            key,
            format!("cannot {action}: permission denied; check the file's permissions"),
        ),
        _ => Error::item(key, format!("cannot {action}: {e}")),
    }
}

/// The error for a blocking task that did not finish (panicked or was cancelled).
pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::storage(format!(
        "a background file task of the folder replica failed: {e}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ErrorClass;

    #[test]
    fn io_errors_map_to_the_classes_of_spec_5() {
        let k = Key::new("a.txt").unwrap();
        let nf = io_to_sync(&k, "read", &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(nf, Error::NotFound { key: k.clone() });
        let perm = io_to_sync(
            &k,
            "read",
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(perm.class(), ErrorClass::Item);
        assert!(perm.to_string().contains("permission denied"), "{perm}");
        let full = io_to_sync(&k, "write", &io::Error::from_raw_os_error(ENOSPC));
        assert_eq!(full.class(), ErrorClass::Storage);
        let other = io_to_sync(&k, "read", &io::Error::other("boom"));
        assert_eq!(other.class(), ErrorClass::Item);
        assert!(other.to_string().contains("boom"), "{other}");
    }

    #[test]
    fn open_errors_are_storage() {
        let e: Error = ReplicaError::NotADirectory {
            path: PathBuf::from("/x"),
        }
        .into();
        assert_eq!(e.class(), ErrorClass::Storage);
    }
}
