//! The sync-core `Replica` conformance suite against the folder replica, each check on a fresh
//! empty temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use replica_fs::FolderReplica;

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
