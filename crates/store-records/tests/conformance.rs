//! The sync-core `Replica` conformance suite against [`RecordStore`], each check on a fresh
//! store: in memory, and in a temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use store_records::RecordStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_record_store_passes_the_replica_suite() {
    sync_core::testkit::replica_suite(|| {
        async { RecordStore::open_in_memory().await.unwrap() }.boxed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_record_store_passes_the_replica_suite() {
    // The folders live until the end of the test.
    let dirs: Arc<Mutex<Vec<tempfile::TempDir>>> = Arc::default();
    sync_core::testkit::replica_suite(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store = RecordStore::open(dir.path().join("records.db"))
                .await
                .unwrap();
            dirs.lock().unwrap().push(dir);
            store
        }
        .boxed()
    })
    .await;
}
