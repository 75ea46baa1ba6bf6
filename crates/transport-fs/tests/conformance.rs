//! The sync-core `Transport` conformance suite against the folder transport: each check gets a
//! fresh remote folder, reached by tenant A and by another tenant on the same folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use sync_core::TenantId;
use transport_fs::FsTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_transport_passes_the_transport_suite() {
    let dirs: Arc<Mutex<Vec<tempfile::TempDir>>> = Arc::default();
    sync_core::testkit::transport_suite(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let a = FsTransport::open(dir.path(), TenantId::new("a"))
                .await
                .unwrap();
            let b = FsTransport::open(dir.path(), TenantId::new("b"))
                .await
                .unwrap();
            dirs.lock().unwrap().push(dir);
            (a, b)
        }
        .boxed()
    })
    .await;
}
