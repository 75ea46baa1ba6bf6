//! Runs the sync-core conformance suites (feature `testkit`) against both SQLite stores, on
//! files in a temporary folder and in memory, and the transport suite through a
//! `LocalTransport` over the SQLite server store.
//!
//! Test code: it may panic and unwrap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use store_sqlite::{Journal, SqliteServerStore, SqliteStateStore, StoreOptions};
use sync_core::memory::LocalTransport;
use sync_core::testkit::{
    server_store_suite, state_store_suite, token_store_suite, transport_suite,
};
use sync_core::{ServerConfig, TenantId};

/// A fresh database path under `root` for each call.
fn fresh_paths(root: PathBuf, name: &'static str) -> impl Fn() -> PathBuf {
    let n = Arc::new(AtomicUsize::new(0));
    move || root.join(format!("{name}-{}.db", n.fetch_add(1, Ordering::SeqCst)))
}

#[tokio::test]
async fn sqlite_server_store_on_disk_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = fresh_paths(dir.path().to_path_buf(), "server");
    server_store_suite(|config: ServerConfig| {
        let path = next();
        async move { SqliteServerStore::open(path, config).await.unwrap() }.boxed()
    })
    .await;
}

#[tokio::test]
async fn sqlite_token_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = fresh_paths(dir.path().to_path_buf(), "tokens");
    token_store_suite(|| {
        let path = next();
        async move {
            SqliteServerStore::open(path, ServerConfig::default())
                .await
                .unwrap()
        }
        .boxed()
    })
    .await;
}

#[tokio::test]
async fn sqlite_server_store_with_the_rollback_journal_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = fresh_paths(dir.path().to_path_buf(), "server-rollback");
    let options = StoreOptions {
        journal: Journal::Rollback,
    };
    server_store_suite(|config: ServerConfig| {
        let path = next();
        async move {
            SqliteServerStore::open_with(path, config, options)
                .await
                .unwrap()
        }
        .boxed()
    })
    .await;
}

#[tokio::test]
async fn sqlite_server_store_in_memory_conforms() {
    server_store_suite(|config: ServerConfig| {
        async move { SqliteServerStore::open_in_memory(config).await.unwrap() }.boxed()
    })
    .await;
}

#[tokio::test]
async fn sqlite_state_store_on_disk_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = fresh_paths(dir.path().to_path_buf(), "state");
    state_store_suite(|| {
        let path = next();
        async move { SqliteStateStore::open(path).await.unwrap() }.boxed()
    })
    .await;
}

#[tokio::test]
async fn sqlite_state_store_in_memory_conforms() {
    state_store_suite(|| async { SqliteStateStore::open_in_memory().await.unwrap() }.boxed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transport_over_sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let next = fresh_paths(dir.path().to_path_buf(), "transport");
    transport_suite(|| {
        let path = next();
        async move {
            let store = Arc::new(
                SqliteServerStore::open(path, ServerConfig::default())
                    .await
                    .unwrap(),
            );
            (
                LocalTransport::new(store.clone(), TenantId::new("alice")),
                LocalTransport::new(store, TenantId::new("bob")),
            )
        }
        .boxed()
    })
    .await;
}
