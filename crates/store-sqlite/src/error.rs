//! [`StoreError`]: everything that can go wrong inside this crate, and its conversion into
//! [`sync_core::Error`] (always the `Storage` class: the store itself is unusable or damaged).
//!
//! Every message says what happened and what the person running the program can do about it.
//! This module only describes errors; it must not open files or touch a database.

use std::path::{Path, PathBuf};

/// A failure of a SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the database {path}: {source}. Check that its folder exists, is writable and has free space")]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a SQLite database, or it is damaged.
    #[error("{path} is not a SQLite database or is corrupt ({detail}). Restore it from a backup, or move it away to start with a new one")]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The database was written by a newer version of this crate.
    #[error("{path} uses schema version {found}, but this program only knows versions up to {supported}: it was written by a newer version. Upgrade the program to open it (the file was not changed)")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The `user_version` found in the file.
        found: i64,
        /// The newest schema this code knows.
        supported: i64,
    },
    /// The database belongs to the other kind of store (a server database opened as a client
    /// state database or the reverse), or to another program.
    #[error("{path} is not a {expected} database (its application id is {found:#x}). Pass the path of the right file")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What kind of database was expected.
        expected: &'static str,
        /// The `application_id` found in the file.
        found: i64,
    },
    /// A schema migration failed; the database was left at its previous version.
    #[error("upgrading the schema of {path} to version {version} failed: {source}. The file was left as it was; check free disk space and permissions, then try again")]
    Migration {
        /// The file.
        path: PathBuf,
        /// The schema version being applied.
        version: i64,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite reported that the database is damaged while it was in use.
    #[error("the database is corrupt ({detail}). Restore it from a backup, or move it away to start with a new one")]
    Corrupt {
        /// What SQLite said.
        detail: String,
    },
    /// A SQLite statement failed.
    #[error("database error: {0}. If this repeats, check free disk space and that no other program holds the database")]
    Sqlite(#[source] rusqlite::Error),
    /// A row holds a value this code cannot read (a damaged or hand-edited database).
    #[error("the database holds an invalid {what}: {detail}. The file may be damaged: restore it from a backup")]
    BadValue {
        /// Which value (a column, a meta entry).
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
    /// A file beside the database (a large blob) could not be read or written.
    #[error("{path}: {source}. Check that the folder is writable and has free space")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A blob the database refers to is missing or does not match its hash.
    #[error("the content {hash} is missing or damaged ({detail}). Restore the database and its `.blobs` folder from a backup")]
    BlobDamaged {
        /// The content hash (hex).
        hash: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A database task panicked or was cancelled, or an earlier panic left the connection
    /// unusable.
    #[error("a database task failed: {0}. Reopen the store; if this repeats, report it as a bug")]
    Task(String),
}

impl StoreError {
    /// An I/O error about `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A value read from the database that is not valid.
    pub(crate) fn bad(what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::BadValue {
            what,
            detail: detail.to_string(),
        }
    }
}

/// True when SQLite says the file is damaged or not a database at all.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        if is_corruption(&e) {
            StoreError::Corrupt {
                detail: e.to_string(),
            }
        } else {
            StoreError::Sqlite(e)
        }
    }
}

impl From<crate::blocking::TaskFailed> for StoreError {
    fn from(e: crate::blocking::TaskFailed) -> StoreError {
        StoreError::Task(e.0)
    }
}

impl From<StoreError> for sync_core::Error {
    fn from(e: StoreError) -> sync_core::Error {
        sync_core::Error::storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_storage_class() {
        let e = StoreError::NewerSchema {
            path: PathBuf::from("x.db"),
            found: 9,
            supported: 1,
        };
        let core: sync_core::Error = e.into();
        assert_eq!(core.class(), sync_core::ErrorClass::Storage);
        assert!(core.to_string().contains("Upgrade"), "{core}");
    }
}
