//! Runs every conformance suite of `sync_core::testkit` against the in-memory implementations.

use std::sync::Arc;

use futures::FutureExt;
use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use sync_core::testkit::{
    replica_suite, server_store_suite, state_store_suite, token_store_suite, transport_suite,
};
use sync_core::{
    FolderRequest, Key, ManualTime, Revision, ScopedTransport, ServerConfig, Stamp, TenantId,
    Transport,
};

#[tokio::test]
async fn memory_server_store_conforms() {
    server_store_suite(|config| async move { MemoryServerStore::new(config) }.boxed()).await;
}

#[tokio::test]
async fn memory_token_store_conforms() {
    token_store_suite(|| async { MemoryServerStore::new(ServerConfig::default()) }.boxed()).await;
}

#[tokio::test]
async fn memory_state_store_conforms() {
    state_store_suite(|| async { MemoryStateStore::default() }.boxed()).await;
}

#[tokio::test]
async fn memory_replica_conforms() {
    replica_suite(|| async { MemoryReplica::default() }.boxed()).await;
}

#[tokio::test]
async fn memory_replica_with_a_stopped_clock_conforms() {
    // Every write at the same millisecond: only the inode tells versions apart.
    replica_suite(|| async { MemoryReplica::new(ManualTime::new(1_000)) }.boxed()).await;
}

#[tokio::test]
async fn local_transport_conforms() {
    transport_suite(|| {
        async {
            let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
            (
                LocalTransport::new(store.clone(), TenantId::new("alice")),
                LocalTransport::new(store, TenantId::new("bob")),
            )
        }
        .boxed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transport_conforms_on_a_multi_thread_runtime() {
    transport_suite(|| {
        async {
            let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
            (
                LocalTransport::new(store.clone(), TenantId::new("alice")),
                LocalTransport::new(store, TenantId::new("bob")),
            )
        }
        .boxed()
    })
    .await;
}

#[tokio::test]
async fn a_scoped_transport_conforms() {
    // Each tenant's transport narrowed to a prefix; the suite's keys all land under it. The
    // scope's folders exist already (as after a first write), so the revisions the suite
    // expects are the ones its own writes take.
    transport_suite(|| {
        async {
            let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
            let scope = Key::new("apps/notes").unwrap();
            let scoped = |tenant: &str| {
                let t = LocalTransport::new(store.clone(), TenantId::new(tenant));
                let scope = scope.clone();
                async move {
                    t.ensure_folder(FolderRequest {
                        key: scope.clone(),
                        stamp: Stamp::default(),
                        seen: Revision(0),
                    })
                    .await
                    .unwrap();
                    ScopedTransport::new(t, scope)
                }
            };
            (scoped("alice").await, scoped("bob").await)
        }
        .boxed()
    })
    .await;
}
