//! The HTTP client's behaviour on the wire: error classes, retries (which, how many, how long),
//! `Retry-After`, unreadable answers, hash checks on downloads, recognising a retried write that
//! had committed, and token refresh. Servers are real sockets on 127.0.0.1: the real router over
//! a `MemoryServerStore`, or small axum apps that misbehave on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use sync_core::memory::MemoryServerStore;
use sync_core::{
    ContentHash, Error, ErrorClass, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision,
    ServerConfig, Stamp, Transport,
};
use transport_http::{
    router, HttpTransport, RetryPolicy, ServerOptions, StaticTokens, TokenProvider,
};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn real_app() -> Router {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a")]));
    router(store, tokens, ServerOptions::default())
}

/// Fast retries for tests.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        jitter: true,
    }
}

fn client(base: &str, attempts: u32) -> HttpTransport {
    HttpTransport::new(base, "token-a".to_owned())
        .unwrap()
        .with_retry(quick(attempts))
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn push_req(k: &str, content: &'static [u8]) -> PushRequest {
    PushRequest {
        key: key(k),
        precondition: Precondition::Create,
        content: Bytes::from_static(content),
        hash: ContentHash::of(content),
        stamp: Stamp::at(1_000_000, NodeId(7)),
        seen: Revision::ZERO,
    }
}

const PAGE: &str = r#"{"changes":[],"cursor":"c1.0000000000000001.0","more":false}"#;

/// An app whose `/sync/v1/changes` answers with `answer(n)` for the n-th call (from 0).
fn scripted(
    calls: Arc<AtomicUsize>,
    answer: impl Fn(usize) -> Response + Clone + Send + Sync + 'static,
) -> Router {
    Router::new().route(
        "/sync/v1/changes",
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let r = answer(n);
            async move { r }
        }),
    )
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

#[tokio::test]
async fn unknown_token_is_auth() {
    let base = serve(real_app()).await;
    let t = HttpTransport::new(&base, "wrong".to_owned()).unwrap();
    let err = t.changes(None, 10).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Auth);
    let err = t.fetch(&key("a"), None).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |n| {
        if n < 2 {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":{"code":"unavailable","message":"busy"}}"#,
            )
        } else {
            json(StatusCode::OK, PAGE)
        }
    });
    let t = client(&serve(app).await, 5);
    let page = t.changes(None, 10).await.unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two 503s, then the 200");
}

#[tokio::test]
async fn server_errors_give_offline_after_bounded_attempts() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |_| {
        json(StatusCode::BAD_GATEWAY, "<html>proxy</html>")
    });
    let t = client(&serve(app).await, 3);
    let err = t.changes(None, 10).await.unwrap_err();
    assert!(matches!(err, Error::Offline { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |_| {
        json(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"invalid_request","message":"no"}}"#,
        )
    });
    let t = client(&serve(app).await, 5);
    assert!(t.changes(None, 10).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a 400 must not be retried");

    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |_| {
        json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":"unauthorized","message":"no"}}"#,
        )
    });
    let t = client(&serve(app).await, 5);
    assert!(matches!(t.changes(None, 10).await, Err(Error::Auth { .. })));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a 401 must not be retried");
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |n| {
        if n == 0 {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1"), ("content-type", "application/json")],
                r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
            )
                .into_response()
        } else {
            json(StatusCode::OK, PAGE)
        }
    });
    let t = client(&serve(app).await, 5);
    let start = Instant::now();
    t.changes(None, 10).await.unwrap();
    let took = start.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        took >= Duration::from_millis(950),
        "retried before Retry-After: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "waited too long: {took:?}");
}

#[tokio::test]
async fn too_many_requests_beyond_the_policy_is_throttled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |_| {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "120")],
            r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
        )
            .into_response()
    });
    let t = client(&serve(app).await, 5);
    match t.changes(None, 10).await {
        Err(Error::Throttled { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(120)))
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a wait over max_delay is handed to the caller"
    );
}

#[tokio::test]
async fn an_offline_message_is_short_and_keeps_the_detail_as_its_source() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let t = client(&format!("http://{addr}"), 1);
    let err = t.changes(None, 10).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("could not connect to {addr}")),
        "{shown}"
    );
    for internal in [
        "/sync/v1",
        "limit=",
        "error sending request",
        "client error",
    ] {
        assert!(
            !shown.contains(internal),
            "{internal:?} in the short message: {shown}"
        );
    }
    assert!(shown.len() < 160, "{} bytes: {shown}", shown.len());
    let detail = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        detail.contains("/sync/v1/changes"),
        "the detail keeps the URL: {detail}"
    );
    println!("{shown}\n  caused by: {detail}");
}

#[tokio::test]
async fn connection_refused_is_offline_after_bounded_retries() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let t = client(&format!("http://{addr}"), 3);
    let start = Instant::now();
    let err = t.changes(None, 10).await.unwrap_err();
    assert!(matches!(err, Error::Offline { .. }), "{err:?}");
    assert!(err.to_string().contains("connect"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn garbage_json_is_offline() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = scripted(calls.clone(), |_| {
        json(StatusCode::OK, r#"{"changes": [{"key": 5}"#)
    });
    let t = client(&serve(app).await, 2);
    let err = t.changes(None, 10).await.unwrap_err();
    assert!(matches!(err, Error::Offline { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a 200 is not retried");
}

/// An app serving `/sync/v1/items/a.txt` with `body` and the hash of `announced`.
fn item_app(body: &'static [u8], announced: &'static [u8]) -> Router {
    Router::new().route(
        "/sync/v1/items/a.txt",
        get(move || async move {
            let mut h = HeaderMap::new();
            h.insert("etag", "\"3\"".parse().unwrap());
            h.insert(
                "x-sync-hash",
                ContentHash::of(announced).to_hex().parse().unwrap(),
            );
            h.insert("x-sync-stamp", "5.0.0000000000000001".parse().unwrap());
            h.insert("x-sync-kind", "file".parse().unwrap());
            (h, body)
        }),
    )
}

#[tokio::test]
async fn downloads_are_checked_against_their_hash() {
    let t = client(&serve(item_app(b"corrupted", b"original")).await, 1);
    match t.fetch(&key("a.txt"), None).await {
        Err(Error::HashMismatch {
            key: k,
            expected,
            actual,
        }) => {
            assert_eq!(k, key("a.txt"));
            assert_eq!(expected, ContentHash::of(b"original"));
            assert_eq!(actual, ContentHash::of(b"corrupted"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    let t = client(&serve(item_app(b"original", b"original")).await, 1);
    let f = t.fetch(&key("a.txt"), None).await.unwrap();
    assert_eq!(f.content, Bytes::from_static(b"original"));
    assert_eq!(f.version.rev, Revision(3));
    assert_eq!(f.version.stamp, Stamp::at(5, NodeId(1)));
}

#[tokio::test]
async fn downloads_over_the_limit_are_too_large() {
    static BIG: [u8; 200_000] = [7; 200_000];
    let t = client(&serve(item_app(&BIG, &BIG)).await, 1).with_max_item_bytes(1000);
    match t.fetch(&key("a.txt"), None).await {
        Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, 1000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_retried_write_that_had_committed_is_accepted() {
    // The first PUT reaches the store, but its answer is replaced by a 503 (a proxy timing
    // out, say): the client retries, gets 412 with the content it sent, and takes it as done.
    let puts = Arc::new(AtomicUsize::new(0));
    let counter = puts.clone();
    let app = real_app().layer(middleware::from_fn(move |req: Request, next: Next| {
        let counter = counter.clone();
        async move {
            let is_put = req.method() == axum::http::Method::PUT;
            let resp = next.run(req).await;
            if is_put && counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            resp
        }
    }));
    let t = client(&serve(app).await, 3);
    let outcome = t.push(push_req("doc.txt", b"mine")).await.unwrap();
    match outcome {
        PushOutcome::Accepted(m) => {
            assert_eq!(m.hash, Some(ContentHash::of(b"mine")));
            assert_eq!(m.key, key("doc.txt"));
        }
        other => panic!("expected Accepted, got {other:?}"),
    }
    assert_eq!(puts.load(Ordering::SeqCst), 2);
    // A first-time conflict with other content is still a conflict.
    let outcome = t.push(push_req("doc.txt", b"other")).await.unwrap();
    assert!(
        matches!(outcome, PushOutcome::Conflict { current: Some(_) }),
        "{outcome:?}"
    );
}

/// A token provider whose token can be changed (an app refreshing its token).
struct Refreshing(Mutex<String>);

#[async_trait]
impl TokenProvider for Refreshing {
    async fn token(&self) -> sync_core::Result<String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn the_token_provider_is_asked_for_every_request() {
    let base = serve(real_app()).await;
    let provider = Arc::new(Refreshing(Mutex::new("expired".to_owned())));
    let t = HttpTransport::new(&base, provider.clone()).unwrap();
    assert!(matches!(t.changes(None, 1).await, Err(Error::Auth { .. })));
    *provider.0.lock().unwrap() = "token-a".to_owned();
    t.changes(None, 1).await.unwrap();
}

#[tokio::test]
async fn client_and_server_errors_map_to_their_classes() {
    let base = serve(real_app()).await;
    let t = client(&base, 1);
    // 413 from the server's own limit is TooLarge, naming the server's limit.
    let big = vec![0u8; (sync_core::DEFAULT_MAX_ITEM_BYTES + 1) as usize];
    let req = PushRequest {
        hash: ContentHash::of(&big),
        content: Bytes::from(big),
        ..push_req("big.bin", b"")
    };
    match t.push(req).await {
        Err(Error::TooLarge { limit, size, .. }) => {
            assert_eq!(limit, sync_core::DEFAULT_MAX_ITEM_BYTES);
            assert_eq!(size, sync_core::DEFAULT_MAX_ITEM_BYTES + 1);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // 404 on fetch; a folder below a file is an Item error (409).
    assert!(matches!(
        t.fetch(&key("nope"), None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        t.push(push_req("f", b"f")).await,
        Ok(PushOutcome::Accepted(_))
    ));
    let err = t
        .ensure_folder(sync_core::FolderRequest {
            key: key("f/sub"),
            stamp: Stamp::at(1, NodeId(1)),
            seen: Revision::ZERO,
        })
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Item, "{err:?}");
    // A cursor of another epoch.
    let other = sync_core::Cursor::new(sync_core::Epoch(3), Revision(0));
    assert!(matches!(
        t.changes(Some(&other), 10).await,
        Err(Error::CursorExpired)
    ));
}

#[tokio::test]
async fn wait_in_whole_seconds_is_held_by_the_server() {
    let base = serve(real_app()).await;
    let t = client(&base, 1);
    let head = t.changes(None, 10).await.unwrap().cursor;
    let start = Instant::now();
    assert!(!t.wait(Some(&head), Duration::from_secs(1)).await.unwrap());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// A base URL with a wrong path reaches no sync routes: the feed's 404 is `NoServer`, of class
/// `Auth` (retrying will not help), asked once, and says to check the URL.
#[tokio::test]
async fn a_url_without_sync_routes_is_no_server_and_not_retried() {
    let base = serve(real_app()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // The real server behind a prefix the client does not know about.
    let app = Router::new()
        .nest_service("/real", real_app())
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { next.run(req).await }
        }));
    let prefixed = serve(app).await;
    for url in [format!("{base}/wrong-path"), prefixed] {
        calls.store(0, Ordering::SeqCst);
        let err = client(&url, 5).changes(None, 10).await.unwrap_err();
        assert!(matches!(err, Error::NoServer { .. }), "{url}: {err:?}");
        assert_eq!(err.class(), ErrorClass::Auth, "{url}");
        let text = err.to_string();
        assert!(
            text.contains("no sync server at this URL") && text.contains("check the server URL"),
            "{text}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "asked once, not retried");
}

/// `history` follows the server's pages (1000 versions each) and answers every version,
/// oldest first, once.
#[tokio::test]
async fn history_follows_every_page() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tenant = sync_core::TenantId::new("a");
    let k = key("long.txt");
    let mut revs = Vec::new();
    for i in 0..2_345u32 {
        let content = Bytes::from(i.to_string());
        let mut req = push_req("long.txt", b"");
        req.precondition = match revs.last() {
            None => Precondition::Create,
            Some(&rev) => Precondition::Match(rev),
        };
        req.hash = ContentHash::of(&content);
        req.content = content;
        match sync_core::ServerStore::push(&*store, &tenant, req)
            .await
            .unwrap()
        {
            PushOutcome::Accepted(m) => revs.push(m.rev),
            other => panic!("push {i}: {other:?}"),
        }
    }
    let tokens = Arc::new(StaticTokens::new([("a", "token-a")]));
    let base = serve(router(store, tokens, ServerOptions::default())).await;
    let got: Vec<Revision> = client(&base, 1)
        .history(&k)
        .await
        .unwrap()
        .iter()
        .map(|v| v.rev)
        .collect();
    assert_eq!(got, revs);
}

/// A server whose `next_before` does not move back is refused (no endless loop).
#[tokio::test]
async fn history_pages_that_do_not_move_back_are_refused() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/sync/v1/history/{*key}",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                json(
                    StatusCode::OK,
                    r#"{"versions":[{"rev":7,"hash":null,"size":0,"stamp":"1000000.0.0000000000000007","deleted":true}],"next_before":7}"#,
                )
            }
        }),
    );
    let base = serve(app).await;
    let err = client(&base, 1).history(&key("a.txt")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Offline, "{err}");
    assert!(err.to_string().contains("history"), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "stops at the page that repeats"
    );
}
