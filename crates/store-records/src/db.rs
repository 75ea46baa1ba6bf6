//! The SQLite side: the schema, opening a file (pragmas, kind and version checks, creating the
//! tables), [`Db::call`] which runs a closure on the connection on a blocking thread (through
//! `store_sqlite::blocking`, the wrapper every SQLite store shares), and the row-level SQL both
//! faces of the store share.
//!
//! Rule: SQLite never runs on an async worker thread; everything goes through [`Db::open`] or
//! [`Db::call`]. This module knows nothing about the engine's plan or notifications.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use store_sqlite::blocking::{run_blocking, SharedConnection};
use sync_core::{ContentHash, Fingerprint, Key};

use crate::RecordsError;

/// `PRAGMA application_id` of a record store ("RECS").
const APPLICATION_ID: i64 = 0x5245_4353;

/// The newest schema version.
const SCHEMA_VERSION: i64 = 1;

/// Version 1. `records` holds records (`folder = 0`) and folders (`folder = 1`); `seq` is the
/// value of the store-wide change counter (`meta.seq`) at the row's last write, `hash` is the
/// content's hash computed when it was written, so a scan reads neither content nor hashes
/// anything. `backups` holds copies of content the engine replaced in a conflict.
const SCHEMA: &str = "
CREATE TABLE records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    folder INTEGER NOT NULL,
    content BLOB,
    size INTEGER NOT NULL,
    hash BLOB,
    seq INTEGER NOT NULL,
    modified_millis INTEGER NOT NULL
);
CREATE TABLE backups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    location TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL,
    size INTEGER NOT NULL,
    content BLOB NOT NULL,
    made_millis INTEGER NOT NULL
);
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO meta (id, seq) VALUES (1, 0);
";

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One SQLite connection, shared by clones, used only from blocking threads.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    conn: SharedConnection,
}

impl Db {
    /// Opens (or creates) the store at `path`; `None` opens a private in-memory database.
    pub(crate) async fn open(path: Option<PathBuf>) -> Result<Db, RecordsError> {
        let conn = run_blocking(move || open_blocking(path.as_deref())).await??;
        Ok(Db {
            conn: SharedConnection::new(conn),
        })
    }

    /// Runs `f` with the connection on a blocking thread. Calls are serialised by the mutex; a
    /// transaction left open by a panicked call is rolled back before the next one.
    pub(crate) async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<RecordsError> + Send + 'static,
    {
        self.conn
            .call(move |conn| Ok::<_, RecordsError>(f(conn)))
            .await
            .map_err(E::from)?
    }
}

fn open_blocking(path: Option<&Path>) -> Result<Connection, RecordsError> {
    let shown = path.map_or_else(|| PathBuf::from(":memory:"), Path::to_path_buf);
    let open_err = |source: rusqlite::Error| {
        if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            RecordsError::NotADatabase {
                path: shown.clone(),
                detail: source.to_string(),
            }
        } else {
            RecordsError::Open {
                path: shown.clone(),
                source,
            }
        }
    };
    let mut conn = match path {
        Some(p) => Connection::open(p),
        None => Connection::open_in_memory(),
    }
    .map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    if path.is_some() {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let app_id: i64 = tx
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(open_err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(open_err)?;
    let tables: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(open_err)?;
    if (app_id != 0 && app_id != APPLICATION_ID) || (version == 0 && tables > 0) {
        return Err(RecordsError::WrongKind { path: shown });
    }
    if version > SCHEMA_VERSION {
        return Err(RecordsError::NewerSchema {
            path: shown,
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        tx.execute_batch(SCHEMA).map_err(open_err)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(open_err)?;
    }
    tx.commit().map_err(open_err)?;
    Ok(conn)
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a row says about an item, without its content.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) id: i64,
    pub(crate) folder: bool,
    pub(crate) size: u64,
    pub(crate) hash: Option<ContentHash>,
    pub(crate) seq: i64,
    pub(crate) modified_millis: u64,
}

impl Row {
    /// The fingerprint: size, the change counter as the "mtime", the row id as the "inode".
    /// A write bumps `seq`; a delete and re-create gets a new row id (ids are never reused).
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            size: self.size,
            mtime_ns: i128::from(self.seq),
            inode: u64::try_from(self.id).unwrap_or(0),
        }
    }
}

/// The columns [`row_from`] reads, in order.
pub(crate) const ROW_COLUMNS: &str = "key, id, folder, size, hash, seq, modified_millis";

/// Reads a [`Row`] from a statement that selected [`ROW_COLUMNS`].
pub(crate) fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let hash: Option<Vec<u8>> = r.get(4)?;
    let hash = match hash {
        None => None,
        Some(bytes) => Some(ContentHash::from_bytes(
            <[u8; 32]>::try_from(bytes).map_err(|_| {
                rusqlite::Error::InvalidColumnType(4, "hash".into(), rusqlite::types::Type::Blob)
            })?,
        )),
    };
    Ok(Row {
        key: r.get(0)?,
        id: r.get(1)?,
        folder: r.get::<_, i64>(2)? != 0,
        size: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        hash,
        seq: r.get(5)?,
        modified_millis: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
    })
}

/// The row at `key`, if any.
pub(crate) fn row(conn: &Connection, key: &Key) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        &format!("SELECT {ROW_COLUMNS} FROM records WHERE key = ?1"),
        [key.as_str()],
        row_from,
    )
    .optional()
}

/// The next value of the store-wide change counter.
fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE meta SET seq = seq + 1 WHERE id = 1 RETURNING seq",
        [],
        |r| r.get(0),
    )
}

/// True when some row lies under `key` (its key starts with `key/`).
pub(crate) fn has_children(conn: &Connection, key: &Key) -> rusqlite::Result<bool> {
    // Keys under `a` sort in ["a/", "a0"): '0' is the character after '/'.
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM records WHERE key >= ?1 || '/' AND key < ?1 || '0')",
        [key.as_str()],
        |r| r.get(0),
    )
}

/// Fails with [`RecordsError::InTheWay`] when a record sits where a folder above `key` must be.
pub(crate) fn check_parents(conn: &Connection, key: &Key) -> Result<(), RecordsError> {
    for folder in key.ancestors() {
        if row(conn, &folder)?.is_some_and(|r| !r.folder) {
            return Err(RecordsError::InTheWay {
                key: key.clone(),
                message: format!(
                    "the record {folder} is in the way, where a folder is needed; delete or move it first"
                ),
            });
        }
    }
    Ok(())
}

/// Creates the missing folder rows above `key` (after [`check_parents`]).
pub(crate) fn make_parents(conn: &Connection, key: &Key, now: u64) -> rusqlite::Result<()> {
    for folder in key.ancestors() {
        insert_folder(conn, &folder, now)?;
    }
    Ok(())
}

/// Inserts a folder row at `key` unless a row is there.
pub(crate) fn insert_folder(conn: &Connection, key: &Key, now: u64) -> rusqlite::Result<()> {
    if row(conn, key)?.is_none() {
        let seq = next_seq(conn)?;
        conn.execute(
            "INSERT INTO records (key, folder, content, size, hash, seq, modified_millis)
             VALUES (?1, 1, NULL, 0, NULL, ?2, ?3)",
            params![key.as_str(), seq, now as i64],
        )?;
    }
    Ok(())
}

/// Stores `content` as the record `key` (replacing a row there, keeping its id) and returns
/// the row. The caller has checked parents and children.
pub(crate) fn upsert_record(
    conn: &Connection,
    key: &Key,
    content: &[u8],
    now: u64,
) -> Result<Row, RecordsError> {
    let seq = next_seq(conn)?;
    let hash = ContentHash::of(content);
    conn.execute(
        "INSERT INTO records (key, folder, content, size, hash, seq, modified_millis)
         VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (key) DO UPDATE SET folder = 0, content = excluded.content,
             size = excluded.size, hash = excluded.hash, seq = excluded.seq,
             modified_millis = excluded.modified_millis",
        params![
            key.as_str(),
            content,
            content.len() as i64,
            hash.as_bytes().as_slice(),
            seq,
            now as i64
        ],
    )?;
    row(conn, key)?.ok_or_else(|| RecordsError::Corrupt(format!("{key} vanished after a write")))
}

/// The content of the record `key`, if a record (not a folder) is there.
pub(crate) fn content(conn: &Connection, key: &Key) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT content FROM records WHERE key = ?1 AND folder = 0",
            [key.as_str()],
            |r| r.get::<_, Option<Vec<u8>>>(0),
        )
        .optional()?
        .flatten())
}
