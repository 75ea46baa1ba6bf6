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

/// One step of the schema: it takes a file from `user_version = to - 1` to `to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The version the step brings the file to.
    pub(crate) to: i64,
    /// The step: SQL and data changes, run inside the opening transaction.
    pub(crate) apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// Every schema step, oldest first; a new file runs them all. Steps are only ever appended,
/// never edited once released, so every older file can be brought forward: a future version 2
/// is `Migration { to: 2, apply: v2 }` after this one. [`open_blocking`] runs the missing
/// steps in order in one transaction with the version bump, so a file is at one version or
/// the next, never in between.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        apply: |conn| conn.execute_batch(SCHEMA_V1),
    },
    Migration {
        to: 2,
        apply: |conn| conn.execute_batch(SCHEMA_V2),
    },
];

/// Version 1. `records` holds records (`folder = 0`) and folders (`folder = 1`); `seq` is the
/// value of the store-wide change counter (`meta.seq`) at the row's last write, `hash` is the
/// content's hash computed when it was written, so a scan reads neither content nor hashes
/// anything. `backups` holds copies of content the engine replaced in a conflict.
const SCHEMA_V1: &str = "
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

/// Version 2: what changed after a given counter value, without reading every row. `removed`
/// holds one row per key whose row was deleted (the counter value of its last delete; a later
/// write of the key drops it), and an index on `records.seq` finds the rows written since.
/// Deletes made before this step are not in `removed`; no engine can hold a change token
/// from before the file was opened by this version, so none asks about them.
const SCHEMA_V2: &str = "
CREATE INDEX records_seq ON records (seq);
CREATE TABLE removed (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX removed_seq ON removed (seq);
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

/// What a failure while opening `shown` means: not a database at all, or a plain failure.
fn open_error(shown: &Path, source: rusqlite::Error) -> RecordsError {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        RecordsError::NotADatabase {
            path: shown.to_path_buf(),
            detail: source.to_string(),
        }
    } else {
        RecordsError::Open {
            path: shown.to_path_buf(),
            source,
        }
    }
}

fn open_blocking(path: Option<&Path>) -> Result<Connection, RecordsError> {
    let shown = path.map_or_else(|| PathBuf::from(":memory:"), Path::to_path_buf);
    let open_err = |source| open_error(&shown, source);
    if let Some(p) = path {
        // Owner-only (0600 on Unix) before SQLite creates it with the umask's mode: records are
        // a tenant's content. SQLite gives the -wal and -shm files the same mode; an existing
        // file keeps its own. A failure here makes SQLite's open below fail and say why.
        let _ = store_sqlite::owner_only::create_file(p);
    }
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
        // Up to 32 MiB of page cache (default 2 MiB), held only once used.
        conn.pragma_update(None, "cache_size", -32 * 1024)
            .map_err(open_err)?;
        store_sqlite::set_wal_checkpoints(&conn).map_err(open_err)?;
    }
    migrate(&mut conn, &shown, MIGRATIONS)?;
    Ok(conn)
}

/// Checks that `conn` is a record store (or empty) no newer than `migrations` know, and runs
/// the steps it lacks, in order, in one immediate transaction together with the version
/// bump: a failed step leaves the file as it was. Another process opening the same file
/// waits for the transaction (busy timeout) and then sees the new version.
pub(crate) fn migrate(
    conn: &mut Connection,
    shown: &Path,
    migrations: &[Migration],
) -> Result<(), RecordsError> {
    let open_err = |source| open_error(shown, source);
    let newest = migrations.last().map_or(0, |m| m.to);
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
    if (app_id != 0 && app_id != APPLICATION_ID) || (version == 0 && tables > 0) || version < 0 {
        return Err(RecordsError::WrongKind {
            path: shown.to_path_buf(),
        });
    }
    if version > newest {
        return Err(RecordsError::NewerSchema {
            path: shown.to_path_buf(),
            found: version,
            supported: newest,
        });
    }
    for step in migrations.iter().filter(|m| m.to > version) {
        (step.apply)(&tx)
            .and_then(|()| tx.pragma_update(None, "user_version", step.to))
            .map_err(|source| RecordsError::Migration {
                path: shown.to_path_buf(),
                to: step.to,
                source,
            })?;
    }
    if version == 0 {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(open_err)?;
    }
    tx.commit().map_err(open_err)?;
    Ok(())
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a row says about an item, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM records WHERE key = ?1"))?
        .query_row([key.as_str()], row_from)
        .optional()
}

/// The next value of the store-wide change counter.
fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("UPDATE meta SET seq = seq + 1 WHERE id = 1 RETURNING seq")?
        .query_row([], |r| r.get(0))
}

/// The store-wide change counter now: it moves with every write and every delete, by any
/// connection, so an unchanged value means no row changed.
pub(crate) fn change_counter(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT seq FROM meta WHERE id = 1")?
        .query_row([], |r| r.get(0))
}

/// Deletes the row at `key` (only a record, not a folder, when `records_only`), moving the
/// change counter when a row went. True if one did.
pub(crate) fn delete_row(
    conn: &Connection,
    key: &Key,
    records_only: bool,
) -> rusqlite::Result<bool> {
    let sql = if records_only {
        "DELETE FROM records WHERE key = ?1 AND folder = 0"
    } else {
        "DELETE FROM records WHERE key = ?1"
    };
    let gone = conn.prepare_cached(sql)?.execute([key.as_str()])? > 0;
    if gone {
        let seq = next_seq(conn)?;
        conn.prepare_cached("INSERT OR REPLACE INTO removed (key, seq) VALUES (?1, ?2)")?
            .execute(params![key.as_str(), seq])?;
    }
    Ok(gone)
}

/// True when some row lies under `key` (its key starts with `key/`).
pub(crate) fn has_children(conn: &Connection, key: &Key) -> rusqlite::Result<bool> {
    // Keys under `a` sort in ["a/", "a0"): '0' is the character after '/'.
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM records WHERE key >= ?1 || '/' AND key < ?1 || '0')",
    )?
    .query_row([key.as_str()], |r| r.get(0))
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
        conn.prepare_cached(
            "INSERT INTO records (key, folder, content, size, hash, seq, modified_millis)
             VALUES (?1, 1, NULL, 0, NULL, ?2, ?3)",
        )?
        .execute(params![key.as_str(), seq, now as i64])?;
        forget_removal(conn, key)?;
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
    let id = conn
        .prepare_cached(
            "INSERT INTO records (key, folder, content, size, hash, seq, modified_millis)
             VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (key) DO UPDATE SET folder = 0, content = excluded.content,
                 size = excluded.size, hash = excluded.hash, seq = excluded.seq,
                 modified_millis = excluded.modified_millis
             RETURNING id",
        )?
        .query_row(
            params![
                key.as_str(),
                content,
                content.len() as i64,
                hash.as_bytes().as_slice(),
                seq,
                now as i64
            ],
            |r| r.get(0),
        )?;
    forget_removal(conn, key)?;
    Ok(Row {
        key: key.as_str().to_owned(),
        id,
        folder: false,
        size: content.len() as u64,
        hash: Some(hash),
        seq,
        modified_millis: now,
    })
}

/// Drops the removal of `key` from `removed` once a row is there again, so that table holds
/// only keys that are gone.
fn forget_removal(conn: &Connection, key: &Key) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM removed WHERE key = ?1")?
        .execute([key.as_str()])?;
    Ok(())
}

/// The rows written after the counter value `since`, and the keys removed after it that are
/// still gone, by two index range reads.
pub(crate) fn changed_since(
    conn: &Connection,
    since: i64,
) -> rusqlite::Result<(Vec<Row>, Vec<String>)> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM records WHERE seq > ?1 ORDER BY seq"
        ))?
        .query_map([since], row_from)?
        .collect::<rusqlite::Result<Vec<Row>>>()?;
    let removed = conn
        .prepare_cached("SELECT key FROM removed WHERE seq > ?1")?
        .query_map([since], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok((rows, removed))
}

/// The content of the record `key`, if a record (not a folder) is there.
pub(crate) fn content(conn: &Connection, key: &Key) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT content FROM records WHERE key = ?1 AND folder = 0")?
        .query_row([key.as_str()], |r| r.get::<_, Option<Vec<u8>>>(0))
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A future step: a new column filled from the old ones. Running it twice fails (the column
    /// exists), so a test that passes proves it ran once.
    const FUTURE: Migration = Migration {
        to: 3,
        apply: |conn| {
            conn.execute_batch(
                "ALTER TABLE records ADD COLUMN note TEXT;
                 UPDATE records SET note = 'was ' || size;",
            )
        },
    };

    /// Every released step, then [`FUTURE`].
    fn with_future() -> Vec<Migration> {
        let mut steps = MIGRATIONS.to_vec();
        steps.push(FUTURE);
        steps
    }

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn put(conn: &Connection, key: &str, value: &[u8]) {
        let key = Key::new(key).unwrap();
        make_parents(conn, &key, 1).unwrap();
        upsert_record(conn, &key, value, 1).unwrap();
    }

    #[test]
    fn an_older_file_runs_only_the_missing_steps_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        // A file as the first release wrote it.
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &MIGRATIONS[..1]).unwrap();
        assert_eq!(version(&conn), 1);
        conn.execute_batch(
            "INSERT INTO records (key, folder, content, size, hash, seq, modified_millis)
             VALUES ('a', 1, NULL, 0, NULL, 1, 1), ('a/b', 0, x'66697665', 4, x'00', 2, 1);
             UPDATE meta SET seq = 2;",
        )
        .unwrap();
        drop(conn);

        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &with_future()).unwrap();
        assert_eq!(version(&conn), 3);
        let note: String = conn
            .query_row("SELECT note FROM records WHERE key = 'a/b'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            note, "was 4",
            "later steps ran over v1's rows, which were kept"
        );
        // Version 2's log of removals works on the upgraded file.
        let key = Key::new("a/b").unwrap();
        assert!(delete_row(&conn, &key, true).unwrap());
        let (rows, removed) = changed_since(&conn, 2).unwrap();
        assert_eq!((rows.len(), removed), (0, vec!["a/b".to_owned()]));
        // Opening again at the newest version runs nothing (FUTURE twice would fail).
        migrate(&mut conn, &path, &with_future()).unwrap();
        assert_eq!(version(&conn), 3);
    }

    #[test]
    fn a_new_file_runs_every_step() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:"), &with_future()).unwrap();
        assert_eq!(version(&conn), 3);
        put(&conn, "x", b"1");
        let app_id: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(app_id, APPLICATION_ID);
    }

    #[test]
    fn changes_since_a_counter_value_are_the_rows_written_and_the_keys_still_gone() {
        let conn = open_blocking(None).unwrap();
        put(&conn, "keep", b"1");
        put(&conn, "gone", b"2");
        put(&conn, "back", b"3");
        let since = change_counter(&conn).unwrap();
        assert_eq!(changed_since(&conn, since).unwrap(), (vec![], vec![]));
        put(&conn, "keep", b"rewritten");
        delete_row(&conn, &Key::new("gone").unwrap(), true).unwrap();
        delete_row(&conn, &Key::new("back").unwrap(), true).unwrap();
        put(&conn, "back", b"again");
        let (rows, removed) = changed_since(&conn, since).unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["keep", "back"]);
        assert_eq!(
            removed,
            ["gone"],
            "a key written again is no longer removed"
        );
    }

    #[test]
    fn a_failed_step_leaves_the_file_at_its_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let conn = open_blocking(Some(&path)).unwrap();
        put(&conn, "kept", b"current data");
        drop(conn);

        let broken = Migration {
            to: 4,
            apply: |conn| conn.execute_batch("INSERT INTO no_such_table VALUES (1)"),
        };
        let mut steps = with_future();
        steps.push(broken);
        let mut conn = Connection::open(&path).unwrap();
        let err = migrate(&mut conn, &path, &steps).unwrap_err();
        assert!(
            matches!(&err, RecordsError::Migration { to: 4, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("schema version 4"), "{err}");
        // Step 3 ran in the same transaction as the failed step 4: both are gone.
        assert_eq!(version(&conn), 2);
        let columns: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('records') WHERE name = 'note'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(columns, 0, "step 3 was rolled back");
        drop(conn);
        // The file still opens as the store it was.
        let conn = open_blocking(Some(&path)).unwrap();
        assert_eq!(
            content(&conn, &Key::new("kept").unwrap()).unwrap().unwrap(),
            b"current data"
        );
    }

    #[test]
    fn a_file_of_a_newer_version_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut conn = open_blocking(Some(&path)).unwrap();
        migrate(&mut conn, &path, &with_future()).unwrap();
        drop(conn);
        let err = open_blocking(Some(&path)).unwrap_err();
        assert!(
            matches!(
                err,
                RecordsError::NewerSchema {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let conn = Connection::open(&path).unwrap();
        assert_eq!(version(&conn), 3);
    }
}
