//! # store-sqlite
//!
//! SQLite storage for the sync engine (docs/SPEC.md §4), on rusqlite with the bundled SQLite:
//!
//! - [`SqliteStateStore`]: a client's [`sync_core::StateStore`] (node id, change cursor,
//!   remote tree, base entries with fingerprints and detached flags). Each
//!   [`sync_core::StateBatch`] commits in one transaction.
//! - [`SqliteServerStore`]: a server's [`sync_core::ServerStore`] (tenants with their
//!   Lamport revision counters, current items and the change feed, the version history (all
//!   of it, or what [`sync_core::ServerConfig::retention`] keeps), content blobs deduplicated
//!   by hash, the store's epoch).
//!
//! ```
//! use sync_core::{ContentHash, Key, Precondition, PushOutcome, PushRequest, Revision,
//!     ServerConfig, ServerStore, Stamp, StateStore, TenantId};
//! use store_sqlite::{SqliteServerStore, SqliteStateStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let server = SqliteServerStore::open(dir.path().join("server.db"), ServerConfig::default())
//!     .await
//!     .unwrap();
//! let tenant = TenantId::new("alice");
//! let content = bytes::Bytes::from_static(b"buy milk");
//! let outcome = server
//!     .push(&tenant, PushRequest {
//!         key: Key::new("notes/today.txt").unwrap(),
//!         precondition: Precondition::Create,
//!         hash: ContentHash::of(&content),
//!         content,
//!         stamp: Stamp::ZERO,
//!         seen: Revision::ZERO,
//!     })
//!     .await
//!     .unwrap();
//! // The folder `notes` took revision 1, the file revision 2.
//! assert!(matches!(outcome, PushOutcome::Accepted(item) if item.rev == Revision(2)));
//!
//! let state = SqliteStateStore::open(dir.path().join("state.db")).await.unwrap();
//! assert!(state.load().await.unwrap().base.is_empty());
//! # });
//! ```
//!
//! ## Threading
//! Each store owns one [`rusqlite::Connection`] behind a mutex, and every statement runs on
//! tokio's blocking pool (`spawn_blocking`), never on an async worker thread. Calls on one
//! store are serialised; that is what makes revisions gap-free and the feed ordered.
//!
//! ## Files and durability
//! Databases use WAL mode with `synchronous=NORMAL` (a power cut may lose the last commits,
//! never consistency), a busy timeout and foreign keys. WAL keeps its index in shared memory
//! (the `-shm` file, mapped by every process that opens the database), and shared memory does
//! not work across the machines of a network file system (NFS, SMB): there, WAL can corrupt the
//! database. So a server database that lives on a network share is opened with
//! [`SqliteServerStore::open_with`] and [`StoreOptions`] `{ journal: `[`Journal::Rollback`]` }`:
//! the rollback journal (`journal_mode=DELETE`) needs only file locks, and `synchronous=FULL`
//! makes each commit durable before it returns. It is slower (two fsyncs per commit, readers
//! and the writer exclude each other) and it still relies on the share's byte-range locks, so
//! writers should also be serialised by a lock of their own (`transport-fs` takes one). The
//! client state store always uses WAL: keep a synced folder (and its `.sync/`) on a local disk.
//! The schema is versioned with
//! `PRAGMA user_version` and migrated forward in code; a database written by a newer version,
//! a file that is not SQLite, a corrupt file, or the other store's database is refused with a
//! [`StoreError`] (a `Storage` error for the engine) that says what to do.
//!
//! ## Where content lives (server)
//! Content is stored once per hash. Up to 64 KiB ([`INLINE_MAX`]) it lives in the
//! database; larger content lives as a file `<database file name>.blobs/ab/<hex hash>` beside
//! the database, so the database stays small and large reads do not hold its lock. Such a file
//! is written to a temporary file in its final folder, fsynced and renamed into place before
//! the transaction that records it commits: a committed row never points at a missing or
//! partial file, and a crash leaves at most an unreferenced file that the next upload of the
//! same content reuses. Back up the database and its `.blobs` folder together.
//!
//! On Unix, a database file and the folders and files of its `.blobs` that a store creates
//! are owner-only (0600 files, 0700 folders; see [`owner_only`]): other local users cannot
//! read a tenant's content. SQLite gives the `-wal`, `-shm` and `-journal` files the mode of
//! the database file. A file that exists already keeps its mode. An in-memory
//! server store ([`SqliteServerStore::open_in_memory`]) keeps all content in the database.
//!
//! ## Change notifications
//! [`sync_core::ServerStore::wait`] listens on an in-process channel per tenant that every
//! committed write notifies. Open one [`SqliteServerStore`] per database file per process
//! (clone it to share it): writes through another process or another store on the same file
//! do not wake it.

mod blobs;
pub mod blocking;
mod conn;
mod error;
pub mod owner_only;
mod schema;
mod server;
mod state;
mod tokens;

pub use blobs::INLINE_MAX;
pub use conn::{set_wal_checkpoints, Journal, StoreOptions};
pub use error::StoreError;
pub use server::SqliteServerStore;
pub use state::SqliteStateStore;
