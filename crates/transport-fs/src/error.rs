//! Errors of the folder transport: [`FsTransportError`] for opening a remote folder, and how
//! they become [`sync_core::Error`]s at the trait boundary.
//!
//! A remote folder that is missing or cannot be reached (an unmounted network drive) and a lock
//! held too long by another process are `Offline`: the engine retries with backoff. A damaged
//! or newer database is `Storage`: someone has to act. This module does no I/O.

use std::path::PathBuf;

use store_sqlite::StoreError;

/// Why a remote folder could not be opened or locked.
#[derive(Debug, thiserror::Error)]
pub enum FsTransportError {
    /// The remote folder does not exist or cannot be reached.
    #[error(
        "remote folder {path:?} cannot be reached: {source}. Check that it exists and is mounted"
    )]
    Unreachable {
        /// The folder.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The remote path is not a folder.
    #[error("remote folder {path:?} is not a folder; give the path of a shared folder")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A part of the remote's own folder is a symbolic link, which would make this device
    /// write outside the remote folder.
    #[error("{path:?} is a symbolic link; the remote's own files are not written through links (remove it, and restore the remote from a backup if its files are elsewhere)")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the remote folder through {path:?}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the lock for longer than the lock timeout.
    #[error("the remote folder stayed locked by another client for {seconds} s ({path:?}); retried later")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        seconds: u64,
    },
    /// The remote's database could not be opened (damaged, newer version, ...).
    #[error("the remote folder's database cannot be used: {0}")]
    Store(#[from] StoreError),
    /// A blocking task did not finish.
    #[error("a background task of the folder transport failed: {0}")]
    Task(String),
}

impl From<FsTransportError> for sync_core::Error {
    fn from(e: FsTransportError) -> sync_core::Error {
        match e {
            FsTransportError::Unreachable { .. }
            | FsTransportError::Lock { .. }
            | FsTransportError::LockTimeout { .. } => sync_core::Error::offline(e.to_string()),
            FsTransportError::NotADirectory { .. }
            | FsTransportError::Symlink { .. }
            | FsTransportError::Store(_)
            | FsTransportError::Task(_) => sync_core::Error::storage(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ErrorClass;

    #[test]
    fn classes() {
        let e: sync_core::Error = FsTransportError::LockTimeout {
            path: PathBuf::from("l"),
            seconds: 3,
        }
        .into();
        assert_eq!(e.class(), ErrorClass::Offline);
        let e: sync_core::Error = FsTransportError::NotADirectory {
            path: PathBuf::from("x"),
        }
        .into();
        assert_eq!(e.class(), ErrorClass::Storage);
    }
}
