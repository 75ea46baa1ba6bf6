//! The sync-core `Transport` conformance suite over real HTTP: each check gets a fresh
//! `MemoryServerStore` behind the router, served by `axum::serve` on 127.0.0.1, and two
//! `HttpTransport`s speaking for two tenants of it; once more over `store-sqlite`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::FutureExt;
use sync_core::memory::MemoryServerStore;
use sync_core::ServerConfig;
use transport_http::{router, HttpTransport, RetryPolicy, ServerOptions, StaticTokens};

/// Serves a fresh store; returns the base URL.
async fn serve_fresh() -> String {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
    let app = router(store, tokens, ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transport_passes_the_transport_suite() {
    sync_core::testkit::transport_suite(|| {
        async {
            let base = serve_fresh().await;
            let client = |token: &str| {
                HttpTransport::new(&base, token.to_owned())
                    .unwrap()
                    .with_retry(RetryPolicy::none())
            };
            (client("token-a"), client("token-b"))
        }
        .boxed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transport_passes_the_suite_when_mounted_under_a_prefix() {
    sync_core::testkit::transport_suite(|| {
        async {
            let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
            let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
            let app =
                axum::Router::new().nest("/myapp", router(store, tokens, ServerOptions::default()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let base = format!("http://{addr}/myapp/");
            let client = |token: &str| HttpTransport::new(&base, token.to_owned()).unwrap();
            (client("token-a"), client("token-b"))
        }
        .boxed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transport_passes_the_suite_over_sqlite() {
    sync_core::testkit::transport_suite(|| {
        async {
            let store = store_sqlite::SqliteServerStore::open_in_memory(ServerConfig::default())
                .await
                .unwrap();
            let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
            let app = router(Arc::new(store), tokens, ServerOptions::default());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let base = format!("http://{addr}");
            let client = |token: &str| HttpTransport::new(&base, token.to_owned()).unwrap();
            (client("token-a"), client("token-b"))
        }
        .boxed()
    })
    .await;
}
