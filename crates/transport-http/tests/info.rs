//! `GET /sync/v1/info` and `GET /sync/v1/health`: the server's item limit, read once by the
//! client (a server without the route gives `None` and the client still works), and a health
//! check that says whether the store answers.

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

/// A store whose storage stopped answering: everything delegates, `check` fails.
struct Down(MemoryServerStore);

#[async_trait::async_trait]
impl sync_core::ServerStore for Down {
    async fn epoch(&self) -> sync_core::Result<sync_core::Epoch> {
        self.0.epoch().await
    }
    async fn changes(
        &self,
        t: &sync_core::TenantId,
        since: Option<&sync_core::Cursor>,
        limit: usize,
    ) -> sync_core::Result<sync_core::ChangePage> {
        self.0.changes(t, since, limit).await
    }
    async fn fetch(
        &self,
        t: &sync_core::TenantId,
        k: &sync_core::Key,
        rev: Option<sync_core::Revision>,
    ) -> sync_core::Result<sync_core::Fetched> {
        self.0.fetch(t, k, rev).await
    }
    async fn push(
        &self,
        t: &sync_core::TenantId,
        r: sync_core::PushRequest,
    ) -> sync_core::Result<sync_core::PushOutcome> {
        self.0.push(t, r).await
    }
    async fn delete(
        &self,
        t: &sync_core::TenantId,
        r: sync_core::DeleteRequest,
    ) -> sync_core::Result<sync_core::PushOutcome> {
        self.0.delete(t, r).await
    }
    async fn ensure_folder(
        &self,
        t: &sync_core::TenantId,
        r: sync_core::FolderRequest,
    ) -> sync_core::Result<sync_core::ItemMeta> {
        self.0.ensure_folder(t, r).await
    }
    async fn history(
        &self,
        t: &sync_core::TenantId,
        k: &sync_core::Key,
        range: sync_core::HistoryRange,
    ) -> sync_core::Result<sync_core::HistoryPage> {
        self.0.history(t, k, range).await
    }
    async fn archive(
        &self,
        t: &sync_core::TenantId,
        r: sync_core::ArchiveRequest,
    ) -> sync_core::Result<sync_core::VersionMeta> {
        self.0.archive(t, r).await
    }
    async fn wait(
        &self,
        t: &sync_core::TenantId,
        since: Option<&sync_core::Cursor>,
        timeout: std::time::Duration,
    ) -> sync_core::Result<bool> {
        self.0.wait(t, since, timeout).await
    }
    fn max_item_bytes(&self) -> u64 {
        self.0.max_item_bytes()
    }
    async fn check(&self) -> sync_core::Result<()> {
        Err(sync_core::Error::offline("the database is not reachable"))
    }
}

#[tokio::test]
async fn health_says_whether_the_store_answers() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let get = |app: axum::Router| async move {
        let req = axum::http::Request::builder()
            .uri("/sync/v1/health")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let auth = || Arc::new(StaticTokens::new([("t", "tok")]));
    let up = router(
        Arc::new(MemoryServerStore::new(ServerConfig::default())),
        auth(),
        ServerOptions::default(),
    );
    assert_eq!(get(up).await.0, StatusCode::OK);
    let down = router(
        Arc::new(Down(MemoryServerStore::new(ServerConfig::default()))),
        auth(),
        ServerOptions::default(),
    );
    let (status, body) = get(down).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("unavailable") && body.contains("not reachable"),
        "{body}"
    );
}
