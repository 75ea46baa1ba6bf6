//! CORS (`ServerOptions::cors_origins`, `sync-server --cors-origin`): a preflight from an
//! allowed origin is answered before authentication with the methods and headers the
//! protocol needs; answers to it expose `ETag`, `X-Sync-*` and `Retry-After`; other origins,
//! and a server without origins, get no `Access-Control-*` header at all. In-process, with
//! `oneshot` on the router.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use sync_core::memory::MemoryServerStore;
use sync_core::ServerConfig;
use tower::ServiceExt;
use transport_http::server::parse_cors_origin;
use transport_http::{router, ServerOptions, StaticTokens};

const APP: &str = "http://localhost:5173";
const OTHER: &str = "https://evil.example";

fn app(origins: &[&str]) -> Router {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let options = ServerOptions {
        cors_origins: origins
            .iter()
            .map(|o| parse_cors_origin(o).unwrap())
            .collect(),
        ..ServerOptions::default()
    };
    router(store, Arc::new(StaticTokens::new([("t", "tok")])), options)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap) {
    let resp = app.clone().oneshot(req).await.unwrap();
    (resp.status(), resp.headers().clone())
}

fn preflight(origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/sync/v1/items/notes/a")
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

fn cors_headers(h: &HeaderMap) -> Vec<String> {
    h.keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn list(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_token() {
    let app = app(&["https://app.example.com", APP]);
    let (status, h) = send(
        &app,
        preflight(
            APP,
            "PUT",
            "authorization,content-type,if-match,x-sync-hash,x-sync-stamp,x-sync-seen",
        ),
    )
    .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(h["access-control-allow-origin"], APP);
    let methods = list(&h, "access-control-allow-methods");
    for m in ["get", "put", "post", "delete"] {
        assert!(methods.contains(&m.to_owned()), "{methods:?}");
    }
    let allowed = list(&h, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "if-match",
        "if-none-match",
        "x-sync-hash",
        "x-sync-stamp",
        "x-sync-seen",
    ] {
        assert!(
            allowed.contains(&name.to_owned()),
            "{name} not in {allowed:?}"
        );
    }
    assert!(h.contains_key("access-control-max-age"));
}

#[tokio::test]
async fn answers_to_an_allowed_origin_expose_the_protocols_headers() {
    let app = app(&[APP]);
    let put = Request::builder()
        .method(Method::PUT)
        .uri("/sync/v1/items/notes/a")
        .header("origin", APP)
        .header("authorization", "Bearer tok")
        .header("if-none-match", "*")
        .header("x-sync-hash", sync_core::ContentHash::of(b"hi").to_hex())
        .body(Body::from("hi"))
        .unwrap();
    let (status, h) = send(&app, put).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h["access-control-allow-origin"], APP);
    let exposed = list(&h, "access-control-expose-headers");
    for name in [
        "etag",
        "x-sync-hash",
        "x-sync-stamp",
        "x-sync-kind",
        "retry-after",
    ] {
        assert!(
            exposed.contains(&name.to_owned()),
            "{name} not in {exposed:?}"
        );
    }
    // An error answer (401, 429) carries them too, so a page can read Retry-After.
    let bad = Request::builder()
        .uri("/sync/v1/changes")
        .header("origin", APP)
        .body(Body::empty())
        .unwrap();
    let (status, h) = send(&app, bad).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h["access-control-allow-origin"], APP);
}

#[tokio::test]
async fn other_origins_and_servers_without_origins_get_no_cors_headers() {
    let app = app(&[APP]);
    let (_, h) = send(&app, preflight(OTHER, "PUT", "authorization")).await;
    assert_eq!(cors_headers(&h), Vec::<String>::new());
    let get = |origin: &str| {
        Request::builder()
            .uri("/sync/v1/health")
            .header("origin", origin)
            .body(Body::empty())
            .unwrap()
    };
    let (status, h) = send(&app, get(OTHER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cors_headers(&h), Vec::<String>::new());
    // No Origin at all (curl, the Rust client): as before.
    let plain = Request::builder()
        .uri("/sync/v1/health")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        cors_headers(&send(&app, plain).await.1),
        Vec::<String>::new()
    );
    let none = self::app(&[]);
    let (_, h) = send(&none, preflight(APP, "PUT", "authorization")).await;
    assert_eq!(cors_headers(&h), Vec::<String>::new());
    let (_, h) = send(&none, get(APP)).await;
    assert_eq!(cors_headers(&h), Vec::<String>::new());
}

#[test]
fn origins_are_checked() {
    for good in [
        "https://app.example.com",
        "http://localhost:5173",
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
    ] {
        assert!(parse_cors_origin(good).is_ok(), "{good}");
    }
    for bad in [
        "*",
        "app.example.com",
        "https://",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://a.example:port",
        "ftp://a.example",
    ] {
        let err = parse_cors_origin(bad).unwrap_err();
        assert!(err.to_string().contains("e.g. https://"), "{err}");
    }
}
