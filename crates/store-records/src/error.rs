//! [`RecordsError`]: everything the record store's own API can fail with, each variant saying
//! what happened and what to do. The `Replica` side reports through `sync_core::Error`
//! instead; this module must not depend on the engine.

use std::path::PathBuf;

use sync_core::Key;

/// What went wrong in a [`crate::RecordStore`] call.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The database file could not be opened or set up.
    #[error("cannot open the record store at {path}: {source}; check that the folder exists and is writable")]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database at all (or its header is damaged).
    #[error(
        "{path} is not a database file ({detail}); open another file, or restore it from a backup"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file is an SQLite database of another program (or another store).
    #[error("{path} is not a record store (it holds another program's tables); open another file")]
    WrongKind {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer version of this crate.
    #[error("{path} has record-store schema version {found}, newer than the {supported} this version knows; upgrade the app")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this crate knows.
        supported: i64,
    },
    /// A schema migration step failed; the file was left at its old version.
    #[error("cannot bring the record store {path} to schema version {to}: {source}; the file is unchanged, so free disk space or check its permissions and open it again")]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version the failed step was to bring the file to.
        to: i64,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A statement failed (disk full, I/O error, locked for too long).
    #[error("the record store's database failed: {0}; retry, and if it keeps failing check the disk or restore the file")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task that runs SQLite panicked or was cancelled.
    #[error("a background task of the record store failed: {0}; retry the call")]
    Task(String),
    /// A record and a folder would overlap: a record sits where a folder is needed, or a folder
    /// with records in it sits where a record is put.
    #[error("{key}: {message}")]
    InTheWay {
        /// The key that was written.
        key: Key,
        /// What is in the way and what to do.
        message: String,
    },
    /// A value could not be turned into JSON, or the stored bytes are not JSON of that type.
    #[error("{key}: not JSON of the type asked for: {source}; read it with `get` or store it with the type you read it with")]
    Json {
        /// The record.
        key: Key,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// A stored row breaks the store's own rules (a bad key or hash): the file was edited by
    /// hand or is damaged.
    #[error("the record store holds a damaged row ({0}); restore the file from a backup")]
    Corrupt(String),
}

impl From<store_sqlite::blocking::TaskFailed> for RecordsError {
    fn from(e: store_sqlite::blocking::TaskFailed) -> RecordsError {
        RecordsError::Task(e.0)
    }
}

impl From<RecordsError> for sync_core::Error {
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::InTheWay { key, message } => sync_core::Error::Item { key, message },
            other => sync_core::Error::storage(other.to_string()),
        }
    }
}
