//! # sync-core
//!
//! The transport- and storage-agnostic core of the sync engine: validated [`Key`]s, blake3
//! [`ContentHash`]es, server-issued [`Revision`]s and opaque [`Cursor`]s, hybrid-logical-clock
//! [`Stamp`]s, the three-way [`reconcile`](reconcile::reconcile)r (non-destructive
//! last-writer-wins), the error-priority [`ErrorStack`], the traits [`Transport`],
//! [`ServerStore`], [`StateStore`] and [`Replica`], in-memory implementations of all four
//! ([`memory`]), and the [`Engine`] that runs one sync.
//!
//! Architecture invariant: this crate does no file or network I/O of its own. Time comes from a
//! [`TimeSource`], randomness only for new ids; everything that touches the world is behind a
//! trait, so the whole engine runs in a unit test.
//!
//! ```
//! use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
//! use sync_core::{Engine, EngineConfig, Key, ServerConfig, TenantId};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
//! let tenant = TenantId::new("alice");
//! let device = || {
//!     Engine::new(
//!         LocalTransport::new(server.clone(), tenant.clone()),
//!         MemoryStateStore::default(),
//!         MemoryReplica::default(),
//!         EngineConfig::default(),
//!     )
//! };
//! let mut laptop = device();
//! let mut phone = device();
//! let notes = Key::new("notes/today.txt").unwrap();
//! laptop.replica().put(&notes, b"buy milk");
//! let report = laptop.sync_once().await.unwrap();
//! assert_eq!((report.uploaded, report.folders), (1, 1)); // the file, and the folder "notes"
//! phone.sync_once().await.unwrap();
//! assert_eq!(phone.replica().get(&notes).unwrap(), b"buy milk".as_slice());
//! # });
//! ```

mod cursor;
mod error;
mod hash;
mod identity;
mod item;
mod key;
mod never_sync;
mod policy;
mod protocol;
mod replica;
mod revision;
mod scope;
mod server_store;
mod stamp;
mod state_store;
mod status;
mod transport;

pub mod engine;
pub mod memory;
pub mod merge;
pub mod reconcile;
pub mod server;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use cursor::{Cursor, CursorParseError, Epoch};
pub use engine::{
    ConflictRecord, ConflictVersion, ConflictWinner, Engine, EngineConfig, RunOptions, SyncEvent,
    SyncFailed, SyncHandle, SyncReport, EVENTS_KEPT,
};
pub use error::{Detail, Error, Result};
pub use hash::{ContentHash, HashParseError};
pub use identity::{bind, Binding};
pub use item::{
    BaseEntry, Content, Fingerprint, ItemKind, ItemMeta, LocalItem, TenantId, VersionMeta,
};
pub use key::{Key, KeyError, KeyRule, MAX_KEY_BYTES, MAX_KEY_DEPTH, MAX_SEGMENT_BYTES};
pub use never_sync::{NeverSync, NeverSyncError, NeverSyncReplica};
pub use policy::{
    ConflictPolicy, DeletePolicy, Identity, Merge, MergeInput, SyncPolicy, DEFAULT_MAX_ITEM_BYTES,
};
pub use protocol::{
    ArchiveRequest, ChangePage, DeleteRequest, Fetched, FolderRequest, HistoryPage, HistoryRange,
    Precondition, PushOutcome, PushRequest, MAX_HISTORY_PAGE,
};
pub use replica::{
    changes_of, Backup, ChangedItems, Expected, KnownItem, LocalWrite, Replica, Scan, Skipped,
    REPLICA_MANY_CONCURRENCY,
};
pub use revision::Revision;
pub use scope::ScopedTransport;
pub use server_store::{
    full_history, ContentBody, ContentFile, FetchedBody, ServerConfig, ServerStore,
};
pub use stamp::{Clock, ManualTime, NodeId, Stamp, StampParseError, SystemTimeSource, TimeSource};
pub use state_store::{
    known_items, ClientState, KeyEntries, StateBatch, StateStore, StateSummary, RECENT_CONFLICTS,
};
pub use status::{ErrorClass, ErrorEntry, ErrorStack, Scope, SyncStatus};
pub use transport::{Transport, FETCH_MANY_CONCURRENCY};
