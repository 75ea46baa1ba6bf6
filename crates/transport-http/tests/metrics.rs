//! Observability of the router, in-process (`oneshot`) with a Prometheus recorder installed
//! for this test binary: request ids, requests by route template and status, writes, open
//! long-polls and byte counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sync_core::memory::MemoryServerStore;
use sync_core::{ContentHash, ServerConfig};
use tower::ServiceExt;
use transport_http::server::{router, ServerOptions, StaticTokens};

fn app() -> Router {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    router(
        store,
        Arc::new(StaticTokens::new([("alice", "tok")])),
        ServerOptions::default(),
    )
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, "Bearer tok")
        .body(Body::empty())
        .unwrap()
}

/// The value of the series `name{labels}` in `text`, if there is one.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_writes_and_long_polls_are_counted_with_request_ids() {
    let metrics: PrometheusHandle = PrometheusBuilder::new().install_recorder().unwrap();
    let app = app();

    // A request id is made when the client sends none, and kept when it sends a sane one.
    let resp = app.clone().oneshot(get("/sync/v1/info")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!made.is_empty());
    let mut req = get("/sync/v1/info");
    req.headers_mut()
        .insert("x-request-id", "client-chosen-1".parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-1");

    // A write, then a 404 under a key (the key must not become a label).
    let content = b"hello metrics";
    let put = Request::put("/sync/v1/items/notes/secret-name.txt")
        .header(header::AUTHORIZATION, "Bearer tok")
        .header("x-sync-hash", ContentHash::of(content).to_string())
        .header(header::IF_NONE_MATCH, "*")
        .header(header::CONTENT_LENGTH, content.len())
        .body(Body::from(&content[..]))
        .unwrap();
    let resp = app.clone().oneshot(put).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = app
        .clone()
        .oneshot(get("/sync/v1/items/notes/missing.txt"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A long-poll is open while it waits (from the latest cursor, so it does wait).
    let resp = app.clone().oneshot(get("/sync/v1/changes")).await.unwrap();
    let page: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let poll = tokio::spawn(
        app.clone()
            .oneshot(get(&format!("/sync/v1/changes?since={cursor}&wait=2"))),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = metrics.render();
    assert_eq!(value(&text, "sync_long_polls_open"), Some(1.0), "{text}");
    let resp = poll.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();

    let text = metrics.render();
    let series = |s: &str| value(&text, s);
    assert_eq!(
        series(r#"sync_http_requests_total{method="GET",route="/sync/v1/info",status="200"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        series(
            r#"sync_http_requests_total{method="PUT",route="/sync/v1/items/{*key}",status="201"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(
            r#"sync_http_requests_total{method="GET",route="/sync/v1/items/{*key}",status="404"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(r#"sync_writes_total{kind="push"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(series("sync_long_polls_open"), Some(0.0), "{text}");
    assert_eq!(
        series(r#"sync_http_request_bytes_total{route="/sync/v1/items/{*key}"}"#),
        Some(content.len() as f64),
        "{text}"
    );
    assert!(
        text.contains("sync_http_request_duration_seconds"),
        "a latency histogram (or summary): {text}"
    );
    assert!(
        !text.contains("secret-name"),
        "keys never reach labels: {text}"
    );
}
