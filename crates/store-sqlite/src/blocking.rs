//! [`SharedConnection`]: one SQLite connection, shared by clones and used only from tokio's
//! blocking pool, and [`run_blocking`]. Every SQLite store of the workspace (this crate's and
//! `store-records`) runs its statements through these, so that SQLite never blocks an async
//! worker thread and a panicked call never leaves a transaction open for the next one.
//!
//! This module knows no schema and no store: only the connection, its lock and the thread.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// What [`run_blocking`] says when it is called outside a tokio runtime.
pub const NO_RUNTIME: &str = "no tokio runtime is running: the SQLite stores run their work on \
    tokio's blocking pool, so call them from inside a tokio runtime (#[tokio::main], or \
    tokio::runtime::Runtime::block_on)";

/// A blocking task that runs SQLite panicked or was cancelled (the runtime is shutting down),
/// or there was no tokio runtime to run it on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TaskFailed(pub String);

/// Runs `f` on tokio's blocking pool; a panic or cancellation becomes [`TaskFailed`], and so
/// does a call from outside a tokio runtime (instead of tokio's panic).
pub async fn run_blocking<T, F>(f: F) -> Result<T, TaskFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TaskFailed(NO_RUNTIME.to_owned()));
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TaskFailed(e.to_string()))
}

/// One SQLite connection shared by clones; every use runs on a blocking thread, one at a time.
#[derive(Clone)]
pub struct SharedConnection {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConnection").finish_non_exhaustive()
    }
}

impl SharedConnection {
    /// Shares `conn` (opened by the caller, on a blocking thread).
    pub fn new(conn: Connection) -> SharedConnection {
        SharedConnection {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Runs `f` with the connection on a blocking thread and returns its result.
    ///
    /// Calls are serialised by the connection's mutex. If an earlier call panicked, the
    /// connection is recovered: any transaction the panic left open is rolled back first.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<rusqlite::Error> + From<TaskFailed> + Send + 'static,
    {
        let conn = self.conn.clone();
        run_blocking(move || {
            let mut guard = match conn.lock() {
                Ok(g) => g,
                Err(poisoned) => {
                    let g = poisoned.into_inner();
                    if !g.is_autocommit() {
                        g.execute_batch("ROLLBACK")?;
                    }
                    g
                }
            };
            f(&mut guard)
        })
        .await
        .map_err(E::from)?
    }
}
