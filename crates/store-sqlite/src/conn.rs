//! The blocking-thread wrapper around one SQLite [`Connection`]: opening a database file,
//! its pragmas (journal mode per [`StoreOptions`]: WAL with `synchronous=NORMAL` by default, or
//! the rollback journal with `synchronous=FULL`; `busy_timeout`, foreign keys), the schema check and
//! forward migrations, and [`Db::call`], which runs a closure on the connection inside
//! [`tokio::task::spawn_blocking`].
//!
//! Rule: SQLite never runs on an async worker thread. Everything that touches the connection
//! goes through [`Db::open`], [`Db::open_in_memory`] or [`Db::call`]. This module knows nothing
//! about the tables of either store; their SQL lives in [`crate::schema`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::blocking::SharedConnection;
use crate::error::{is_corruption, StoreError};
use crate::schema::Schema;

/// How long a statement waits for a lock held by another connection before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a database file keeps its journal (see the [crate docs](crate#files-and-durability)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Journal {
    /// Write-ahead log (`journal_mode=WAL`, `synchronous=NORMAL`), the default: readers never
    /// block the writer and commits are cheap, but every process that opens the file must share
    /// memory (the `-shm` file) with the others, so the file must be on a local disk.
    #[default]
    Wal,
    /// The rollback journal (`journal_mode=DELETE`, `synchronous=FULL`): a commit fsyncs the
    /// journal and the database, and readers and the writer exclude each other with file locks
    /// only. Slower, but it needs no shared memory, so it is the mode SQLite supports on a
    /// network file system (whose byte-range locks must work; keep writers serialised by a lock
    /// of your own as well, as `transport-fs` does).
    Rollback,
}

/// Options for opening a database file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// The journal mode; [`Journal::Wal`] unless the file lives on a network file system.
    pub journal: Journal,
}

/// One SQLite connection, shared, used only from blocking threads.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    conn: SharedConnection,
}

impl Db {
    /// Opens (or creates) the database at `path`, sets its pragmas and brings its schema to the
    /// newest version of `schema`.
    pub(crate) async fn open(
        path: PathBuf,
        schema: &'static Schema,
        options: StoreOptions,
    ) -> Result<Db, StoreError> {
        let conn = run_blocking(move || open_blocking(Some(&path), schema, options)).await??;
        Ok(Db {
            conn: SharedConnection::new(conn),
        })
    }

    /// A private in-memory database with the newest schema (for tests).
    pub(crate) async fn open_in_memory(schema: &'static Schema) -> Result<Db, StoreError> {
        let conn =
            run_blocking(move || open_blocking(None, schema, StoreOptions::default())).await??;
        Ok(Db {
            conn: SharedConnection::new(conn),
        })
    }

    /// Runs `f` with the connection on a blocking thread and returns its result.
    ///
    /// Calls are serialised by the connection's mutex. If an earlier call panicked, the
    /// connection is recovered: any transaction the panic left open is rolled back first.
    pub(crate) async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.conn
            .call(move |conn| Ok::<_, StoreError>(f(conn)))
            .await
            .map_err(E::from)?
    }
}

/// Runs `f` on tokio's blocking pool; a panic or cancellation becomes [`StoreError::Task`].
pub(crate) async fn run_blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Ok(crate::blocking::run_blocking(f).await?)
}

/// What to call the database in messages.
fn shown(path: Option<&Path>) -> PathBuf {
    path.map_or_else(|| PathBuf::from(":memory:"), Path::to_path_buf)
}

/// Maps an error met while first reading a file: corruption means "not a database".
fn open_error(path: Option<&Path>, e: rusqlite::Error) -> StoreError {
    if is_corruption(&e) {
        StoreError::NotADatabase {
            path: shown(path),
            detail: e.to_string(),
        }
    } else {
        StoreError::Open {
            path: shown(path),
            source: e,
        }
    }
}

/// `PRAGMA cache_size` of every connection: negative means KiB.
pub(crate) const PAGE_CACHE_KIB: i64 = -32 * 1024;

/// `PRAGMA wal_autocheckpoint`: pages in the WAL before a commit copies them into the database.
pub(crate) const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// `PRAGMA journal_size_limit`: the size the WAL file is cut back to after a checkpoint.
pub(crate) const WAL_KEPT_BYTES: i64 = 4 * 1024 * 1024;

/// Sets how often a WAL database copies its log into the main file: every 32 MiB of WAL instead
/// of SQLite's 4 MiB, the file cut back to 4 MiB after each checkpoint. A large sync rewrites
/// the same index pages in many transactions, and a checkpoint copies a page once however often
/// it changed since the last (a first upload of 100,000 records took about 11% less time).
/// Every WAL store of the project sets it; call it on a connection opened in WAL mode.
pub fn set_wal_checkpoints(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)
}

/// Opens the connection, sets the pragmas, checks the file and migrates it.
fn open_blocking(
    path: Option<&Path>,
    schema: &'static Schema,
    options: StoreOptions,
) -> Result<Connection, StoreError> {
    if let Some(p) = path {
        // Owner-only before SQLite sees it: SQLite would create it with the umask's mode, and
        // gives its -wal, -shm and -journal files the mode of this one. An empty file is an
        // empty database to SQLite; an existing file keeps its mode. If this fails, SQLite's
        // own open below fails too and says why.
        if let Err(e) = crate::owner_only::create_file(p) {
            tracing::debug!(path = %p.display(), error = %e, "cannot create the database file");
        }
    }
    let conn = match path {
        Some(p) => Connection::open(p),
        None => Connection::open_in_memory(),
    }
    .map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, e))?;

    // The first read of the header: a file that is not SQLite fails here.
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    check_kind(path, schema, app_id)?;

    let (wanted, synchronous) = match options.journal {
        Journal::Wal => ("WAL", "NORMAL"),
        Journal::Rollback => ("DELETE", "FULL"),
    };
    // Leaving WAL needs the only connection to the file; if another process holds it open in
    // WAL mode, SQLite keeps WAL (or answers busy). Either way the database stays consistent,
    // so the store opens and says so.
    match conn.pragma_update_and_check(None, "journal_mode", wanted, |r| r.get::<_, String>(0)) {
        Ok(mode) if path.is_some() && !mode.eq_ignore_ascii_case(wanted) => {
            tracing::warn!(
                path = %shown(path).display(),
                wanted,
                mode,
                "SQLite kept another journal mode (is another process using the file?); continuing with it"
            );
        }
        Ok(_) => {}
        Err(e) if is_busy(&e) => {
            tracing::warn!(
                path = %shown(path).display(),
                wanted,
                error = %e,
                "cannot change the journal mode while another process uses the file; continuing with the current one"
            );
        }
        Err(e) => return Err(open_error(path, e)),
    }
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| open_error(path, e))?;
    // A page cache of up to 32 MiB (the default is 2 MiB): a large tenant's indexes stay in
    // memory instead of being read back from the OS on every lookup. Pages are only held
    // once used, so a small database costs no more.
    conn.pragma_update(None, "cache_size", PAGE_CACHE_KIB)
        .map_err(|e| open_error(path, e))?;
    if matches!(options.journal, Journal::Wal) {
        set_wal_checkpoints(&conn).map_err(|e| open_error(path, e))?;
    }

    migrate(conn, path, schema)
}

/// True for "the database is locked by another connection".
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Refuses a database that belongs to another kind of store or program.
fn check_kind(path: Option<&Path>, schema: &Schema, app_id: i64) -> Result<(), StoreError> {
    if app_id != 0 && app_id != schema.application_id {
        return Err(StoreError::WrongKind {
            path: shown(path),
            expected: schema.kind,
            found: app_id,
        });
    }
    Ok(())
}

/// Brings the schema to its newest version in one transaction, or refuses a newer one.
fn migrate(
    mut conn: Connection,
    path: Option<&Path>,
    schema: &'static Schema,
) -> Result<Connection, StoreError> {
    let supported = schema.version();
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| open_error(path, e))?;
        // Read again inside the write lock: another process may have migrated meanwhile.
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| open_error(path, e))?;
        let app_id: i64 = tx
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| open_error(path, e))?;
        check_kind(path, schema, app_id)?;
        if found > supported {
            return Err(StoreError::NewerSchema {
                path: shown(path),
                found,
                supported,
            });
        }
        if found < 0 {
            return Err(StoreError::bad("schema version", found));
        }
        if found == 0 {
            // A database some other program made (tables, but no version of ours).
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(|e| open_error(path, e))?;
            if tables > 0 {
                return Err(StoreError::WrongKind {
                    path: shown(path),
                    expected: schema.kind,
                    found: app_id,
                });
            }
        }
        if found < supported {
            for (i, step) in schema.steps.iter().enumerate().skip(found as usize) {
                let version = i as i64 + 1;
                tx.execute_batch(step)
                    .map_err(|source| StoreError::Migration {
                        path: shown(path),
                        version,
                        source,
                    })?;
            }
            tx.pragma_update(None, "user_version", supported)?;
            tx.pragma_update(None, "application_id", schema.application_id)?;
            tx.commit().map_err(|source| StoreError::Migration {
                path: shown(path),
                version: supported,
                source,
            })?;
            tracing::debug!(path = %shown(path).display(), from = found, to = supported, "migrated schema");
        }
    }
    Ok(conn)
}
