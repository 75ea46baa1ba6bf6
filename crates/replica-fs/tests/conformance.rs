//! The sync-core `Replica` conformance suite against the folder replica, each check on a fresh
//! empty temporary folder: once without a watcher, once with one feeding its journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use replica_fs::FolderReplica;
use sync_core::Replica;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_replica_passes_the_replica_suite() {
    // The folders live until the end of the test.
    let dirs: Arc<Mutex<Vec<tempfile::TempDir>>> = Arc::default();
    sync_core::testkit::replica_suite(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let replica = FolderReplica::new(dir.path()).unwrap();
            dirs.lock().unwrap().push(dir);
            replica
        }
        .boxed()
    })
    .await;
}

/// The same suite with a watcher feeding the replica's journal: the change token and
/// `scan_since` are then checked too (each replica scanned once, as the engine's first sync
/// does, so `scan_since` can answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_replica_passes_the_replica_suite() {
    type Kept = (tempfile::TempDir, replica_fs::FolderWatcher);
    let kept: Arc<Mutex<Vec<Kept>>> = Arc::default();
    sync_core::testkit::replica_suite(|| {
        let kept = Arc::clone(&kept);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let replica = FolderReplica::new(dir.path()).unwrap();
            let (watcher, _signals) =
                replica_fs::FolderWatcher::start_for(&replica, Duration::from_millis(20)).unwrap();
            let scan = replica
                .scan(&Default::default(), sync_core::DEFAULT_MAX_ITEM_BYTES)
                .await;
            scan.unwrap();
            assert!(replica.change_token().await.unwrap().is_some());
            kept.lock().unwrap().push((dir, watcher));
            replica
        }
        .boxed()
    })
    .await;
}
