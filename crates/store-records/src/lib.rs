//! `store-records`: an app's local storage for records (bytes under [`sync_core::Key`]s) in
//! one SQLite file, which the sync engine syncs as a [`sync_core::Replica`].
//!
//! - [`RecordStore`]: open a file (or memory), `put`/`get`/`delete`/`list`, JSON helpers,
//!   atomic [`RecordStore::transaction`]s, and [`RecordStore::subscribe`] to hear about the
//!   records a sync changed.
//! - Its `Replica` implementation: records are files, the folders above them are folder rows.
//!   Every write bumps a store-wide change counter kept per row; an item's fingerprint is
//!   (size, that counter as the "mtime", the row id as the "inode"), and each row's content
//!   hash is stored when it is written, so a scan is one query that reads no content. The
//!   counter is also the replica's change token: while it has not moved since a sync settled
//!   every item, the engine does not scan at all, and once it has, the engine reads only the
//!   rows written after it and the keys removed after it ([`sync_core::Replica::scan_since`]).
//! - Conflict losers the engine backs up go to a `backups` table of the same file
//!   ([`sync_core::Replica::backups`], [`sync_core::Replica::read_backup`]).
//!
//! Every SQLite call runs on tokio's blocking pool, so the store needs a tokio runtime. This
//! crate does not sync by itself: hand a `RecordStore` to a `sync_core::Engine`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use store_records::RecordStore;
//! use sync_core::Key;
//! let store = RecordStore::open_in_memory().await.unwrap();
//! let key = Key::new("notes/today").unwrap();
//! store.put(&key, "buy milk").await.unwrap();
//! assert_eq!(store.get(&key).await.unwrap().unwrap(), "buy milk");
//! # });
//! ```

mod db;
mod error;
mod replica;
mod store;

pub use error::RecordsError;
pub use store::{RecordStore, RecordTx};
