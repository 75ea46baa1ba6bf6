//! A PostgreSQL [`ServerStore`](sync_core::ServerStore) for the sync engine: several stateless
//! sync servers over one shared database.
//!
//! [`PgServerStore`] keeps every tenant's items, version history, deduplicated content blobs
//! and Lamport revision counter (docs/SPEC.md §2) in PostgreSQL, with the same semantics as the SQLite
//! and in-memory stores (it passes the same `sync_core::testkit::server_store_suite`).
//!
//! - **Scale-out.** Any number of stores, in any number of server processes, may share one
//!   database. A write reads without a lock, lets the rules decide, then applies in one
//!   statement (`sync_apply`) that holds the tenant's row lock only for that statement and
//!   checks that what was read is unchanged; so revisions are distinct and issued in commit
//!   order whichever server takes them, and the lock is held for one statement, not a
//!   transaction of round trips ([`store`] module docs).
//! - **Long-poll across servers.** Each committed write runs `NOTIFY sync_changes, '<tenant>'`;
//!   each store holds one `LISTEN` connection and wakes its waiting
//!   [`wait`](sync_core::ServerStore::wait) calls, so an edit through one server wakes
//!   long-polls on all of them without polling ([`listener`] module docs, including reconnects).
//! - **Migrations.** [`PgServerStore::connect`] creates or upgrades the schema in one
//!   transaction under an advisory lock (two servers starting at once are fine) and makes the
//!   store's epoch once ([`schema`] module docs).
//! - **Errors.** [`PgStoreError`] says what to do; it becomes a `Storage`-class
//!   [`sync_core::Error`]. Messages never include the password.
//! - **TLS** is not built in (connections use `NoTls`): keep the database on loopback or a
//!   private network, or put a TLS tunnel in front of it.
//!
//! ```no_run
//! use store_postgres::PgServerStore;
//! use sync_core::{ServerConfig, ServerStore, TenantId};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgServerStore::connect(
//!     "postgres://sync:secret@127.0.0.1:5432/sync",
//!     ServerConfig::default(),
//! )
//! .await?;
//! let page = store.changes(&TenantId::new("alice"), None, 100).await?;
//! println!("{} changes, next cursor {}", page.changes.len(), page.cursor);
//! # Ok(())
//! # }
//! ```
//!
//! Tests need a real PostgreSQL: `eval "$(bash .ci/postgres.sh)"` starts one on loopback and
//! exports `SYNC_TEST_POSTGRES_URL`; without it the tests print `SKIPPED` (and fail under `CI`).

pub mod error;
pub mod listener;
pub mod schema;
pub mod store;
mod tokens;

pub use error::PgStoreError;
pub use store::{PgOptions, PgServerStore};
