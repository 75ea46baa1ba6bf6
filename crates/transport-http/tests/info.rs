//! `GET /sync/v1/info` and the client's use of it: the server's item limit, read once; a
//! server without the route gives `None` and the client still works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use sync_core::memory::MemoryServerStore;
use sync_core::{ServerConfig, Transport};
use transport_http::{router, HttpTransport, ServerOptions, StaticTokens};

async fn serve(with_info: bool) -> String {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let options = ServerOptions {
        max_item_bytes: 1_000,
        ..ServerOptions::default()
    };
    let app = router(store, Arc::new(StaticTokens::new([("t", "tok")])), options).layer(
        middleware::from_fn(move |req: Request, next: Next| async move {
            if !with_info && req.uri().path() == "/sync/v1/info" {
                return StatusCode::NOT_FOUND.into_response();
            }
            next.run(req).await
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_learns_the_servers_limit() {
    let client = HttpTransport::new(&serve(true).await, "tok".to_owned()).unwrap();
    assert_eq!(client.max_item_bytes().await.unwrap(), Some(1_000));
    let old = HttpTransport::new(&serve(false).await, "tok".to_owned()).unwrap();
    assert_eq!(old.max_item_bytes().await.unwrap(), None);
    old.changes(None, 10).await.unwrap();
    let wrong = HttpTransport::new(&serve(true).await, "nope".to_owned()).unwrap();
    let err = wrong.max_item_bytes().await.unwrap_err();
    assert_eq!(err.class(), sync_core::ErrorClass::Auth);
}
