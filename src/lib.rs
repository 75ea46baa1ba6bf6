//! # sync-engine
//!
//! Keep files and records in step between devices and a server, and never lose data. This is
//! the one crate an app adds: the engine and its types are here at short paths, and each part
//! that does I/O comes with a feature, so an app compiles only what it uses.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `folder` | yes | [`folder`]: sync a folder on disk (the folder replica, its state in SQLite); turns on `sqlite` |
//! | `http-client` | yes | [`http`]: `HttpTransport`, the client of the HTTP protocol (reqwest, rustls) |
//! | `fs-remote` | yes | [`remote_dir`]: a remote that is a plain, possibly shared, folder |
//! | `sqlite` | via `folder` | [`sqlite`]: client state and server storage on SQLite |
//! | `http-server` | no | [`http`]`::server`: the axum router over any `ServerStore`, and `serve` |
//! | `http-server-tls` | no | HTTPS in `serve_with` (`http::server::TlsConfig`, rustls); turns on `http-server` |
//! | `postgres` | no | `postgres`: a `ServerStore` on PostgreSQL for several servers |
//! | `records` | no | `records`: an app's local record store on SQLite, synced as a replica |
//!
//! A desktop app takes the defaults; a server takes
//! `default-features = false, features = ["sqlite", "http-server"]` and compiles no HTTP
//! client; a client-only app never compiles the server stack.
//!
//! The engine itself ([`Engine`], the reconciler, the error stack, the traits and in-memory
//! parts in [`memory`]) needs no feature: it does no I/O. Everything else of the core is at
//! [`core`]. The contract the crates implement is `docs/SPEC.md` in the repository, and
//! `ARCHITECTURE.md` maps the code.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "folder")]
#[cfg_attr(docsrs, doc(cfg(feature = "folder")))]
pub mod folder;

pub use sync_core as core;
pub use sync_core::memory;
pub use sync_core::{
    merge, ConflictPolicy, ContentHash, DeletePolicy, Engine, EngineConfig, Error, ErrorClass,
    ErrorEntry, ErrorStack, Identity, Key, KeyError, Merge, NeverSync, NeverSyncReplica, Replica,
    Result, Revision, RunOptions, Scope, ScopedTransport, ServerConfig, ServerStore, Stamp,
    StateStore, SyncEvent, SyncFailed, SyncHandle, SyncPolicy, SyncReport, SyncStatus, TenantId,
    Transport,
};

/// The HTTP protocol: the client transport (feature `http-client`) and the server (feature
/// `http-server`); the `transport-http` crate.
#[cfg(any(feature = "http-client", feature = "http-server"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "http-client", feature = "http-server")))
)]
pub use transport_http as http;

/// Client sync state and server storage on SQLite; the `store-sqlite` crate.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store_sqlite as sqlite;

/// A remote that is a plain (possibly shared network) folder; the `transport-fs` crate.
#[cfg(feature = "fs-remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs-remote")))]
pub use transport_fs as remote_dir;

/// A `ServerStore` on PostgreSQL; the `store-postgres` crate.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store_postgres as postgres;

/// An app's local record store on SQLite, synced as a `Replica`; the `store-records` crate.
#[cfg(feature = "records")]
#[cfg_attr(docsrs, doc(cfg(feature = "records")))]
pub use store_records as records;

/// The folder replica (feature `folder`); the `replica-fs` crate.
#[cfg(feature = "folder")]
#[cfg_attr(docsrs, doc(cfg(feature = "folder")))]
pub use replica_fs;
/// Also reachable as [`sqlite`]; kept under the crate's own name.
#[cfg(feature = "sqlite")]
pub use store_sqlite;
/// Also reachable as [`remote_dir`]; kept under the crate's own name.
#[cfg(feature = "fs-remote")]
pub use transport_fs;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
