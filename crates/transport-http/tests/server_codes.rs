//! Every status and error code of docs/PROTOCOL.md, checked in-process against the router
//! (`tower::ServiceExt::oneshot`, no socket) over a `MemoryServerStore`. Each case asserts the
//! status, the JSON error code, and that the store did not change (both tenants' feeds and
//! revision counters are compared before and after).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use sync_core::memory::MemoryServerStore;
use sync_core::{
    ChangePage, ContentHash, Cursor, Epoch, Key, NodeId, Precondition, PushOutcome, PushRequest,
    Revision, ServerConfig, ServerStore, Stamp, TenantId,
};
use tower::ServiceExt;
use transport_http::{router, ServerOptions, StaticTokens};

const A: &str = "Bearer token-a";
const B: &str = "Bearer token-b";
const STAMP: &str = "1000000.0.0000000000000007";

struct Server {
    app: Router,
    store: Arc<MemoryServerStore>,
}

/// A server whose tenant `a` holds `docs` (rev 1) and `docs/a.txt` = "hello" (rev 2), and
/// whose tenant `b` holds `mine.txt` (rev 1).
async fn server(options: ServerOptions) -> Server {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let push = |key: &str, content: &'static [u8]| PushRequest {
        key: Key::new(key).unwrap(),
        precondition: Precondition::Create,
        content: Bytes::from_static(content),
        hash: ContentHash::of(content),
        stamp: Stamp::at(1_000_000, NodeId(7)),
        seen: Revision::ZERO,
    };
    let a = TenantId::new("a");
    let b = TenantId::new("b");
    assert!(
        matches!(store.push(&a, push("docs/a.txt", b"hello")).await.unwrap(), PushOutcome::Accepted(m) if m.rev == Revision(2))
    );
    assert!(matches!(
        store.push(&b, push("mine.txt", b"b's")).await.unwrap(),
        PushOutcome::Accepted(_)
    ));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
    Server {
        app: router(store.clone(), tokens, options),
        store,
    }
}

/// Both tenants' whole feeds, with their head cursors (which carry the revision counters).
async fn snapshot(store: &MemoryServerStore) -> Vec<ChangePage> {
    let mut out = Vec::new();
    for t in ["a", "b"] {
        out.push(
            store
                .changes(&TenantId::new(t), None, 10_000)
                .await
                .unwrap(),
        );
    }
    out
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }
}

async fn call(app: &Router, req: Request<Body>) -> Answer {
    let resp = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req))
        .await
        .expect("the server did not answer within 5 s")
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

fn req(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// A PUT of `content` to `path` with a correct hash and a create precondition.
fn put(path: &str, auth: &str, content: &'static [u8]) -> axum::http::request::Builder {
    req("PUT", &format!("/sync/v1/items/{path}"))
        .header(header::AUTHORIZATION, auth)
        .header("if-none-match", "*")
        .header("x-sync-hash", ContentHash::of(content).to_hex())
        .header("x-sync-stamp", STAMP)
}

/// Replaces (or with `None` removes) a header set before.
fn set(
    mut b: axum::http::request::Builder,
    name: &'static str,
    value: Option<&str>,
) -> axum::http::request::Builder {
    let h = b.headers_mut().unwrap();
    match value {
        Some(v) => {
            h.insert(name, v.parse().unwrap());
        }
        None => {
            h.remove(name);
        }
    }
    b
}

/// One table row: a request, the status and error code it must get.
struct Case {
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    code: &'static str,
}

fn case(
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        request,
        status,
        code,
    }
}

/// Runs each case on a fresh server; checks status, code and that nothing changed.
async fn run(cases: Vec<Case>, options: ServerOptions) {
    for c in cases {
        let s = server(options.clone()).await;
        let before = snapshot(&s.store).await;
        let a = call(&s.app, c.request).await;
        assert_eq!(a.status, c.status, "{}: status (body {:?})", c.name, a.body);
        assert_eq!(a.code(), c.code, "{}: error code", c.name);
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: error message",
            c.name
        );
        assert_eq!(
            a.headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{}: content type",
            c.name
        );
        assert_eq!(
            snapshot(&s.store).await,
            before,
            "{}: the store changed",
            c.name
        );
    }
}

fn empty() -> Body {
    Body::empty()
}

#[tokio::test]
async fn every_error_code_of_the_protocol() {
    let other_epoch = Cursor::new(Epoch(1), Revision(0)).to_string();
    let get = |uri: &str, auth: &str| {
        req("GET", uri)
            .header(header::AUTHORIZATION, auth)
            .body(empty())
            .unwrap()
    };
    use StatusCode as S;
    let cases = vec![
        // 401
        case(
            "no token",
            req("GET", "/sync/v1/changes").body(empty()).unwrap(),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "not bearer",
            get("/sync/v1/changes", "Basic dG9rZW4tYQ=="),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "bearer without token",
            get("/sync/v1/changes", "Bearer "),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "bearer with two words",
            get("/sync/v1/changes", "Bearer token-a x"),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "unknown token",
            get("/sync/v1/changes", "Bearer token-c"),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "a prefix of a token",
            get("/sync/v1/changes", "Bearer token-"),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "write without token",
            put("new.txt", "", b"x")
                .header(header::AUTHORIZATION, "Bearer")
                .body(Body::from("x"))
                .unwrap(),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "fetch without token",
            req("GET", "/sync/v1/items/docs/a.txt")
                .body(empty())
                .unwrap(),
            S::UNAUTHORIZED,
            "unauthorized",
        ),
        // 404: tenants are isolated
        case(
            "B fetches A's key",
            get("/sync/v1/items/docs/a.txt", B),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "B fetches A's revision",
            get("/sync/v1/items/docs/a.txt?rev=2", B),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "B reads A's history",
            get("/sync/v1/history/docs/a.txt", B),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "B deletes A's key",
            req("DELETE", "/sync/v1/items/docs/a.txt")
                .header(header::AUTHORIZATION, B)
                .header("if-match", "\"2\"")
                .body(empty())
                .unwrap(),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "absent key",
            get("/sync/v1/items/nope.txt", A),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "a folder has no content",
            get("/sync/v1/items/docs", A),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "no such revision",
            get("/sync/v1/items/docs/a.txt?rev=99", A),
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "no such route",
            get("/sync/v1/nothing", A),
            S::NOT_FOUND,
            "not_found",
        ),
        // 400 invalid_key
        case(
            "dot-dot",
            put("..", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "dot-dot inside",
            put("docs/../a.txt", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "encoded dot-dot",
            put("docs/%2e%2e/x", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "encoded slash in a segment",
            put("docs%2Fb.txt", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "encoded backslash",
            put("a%5Cb", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "NUL",
            put("a%00b", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "control character",
            put("a%0Ab", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "empty segment",
            put("a//b", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "not UTF-8",
            put("a%FFb", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "empty key",
            put("", A, b"x").body(Body::from("x")).unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "dot-dot on GET",
            get("/sync/v1/items/%2E%2E/docs/a.txt", A),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "dot-dot folder",
            req("PUT", "/sync/v1/folders/x/..")
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        case(
            "dot-dot history",
            get("/sync/v1/history/..", A),
            S::BAD_REQUEST,
            "invalid_key",
        ),
        // 400 hash_mismatch
        case(
            "hash mismatch",
            put("new/b.txt", A, b"announced")
                .body(Body::from("sent"))
                .unwrap(),
            S::BAD_REQUEST,
            "hash_mismatch",
        ),
        case(
            "hash mismatch on overwrite",
            set(
                set(put("docs/a.txt", A, b"announced"), "if-none-match", None),
                "if-match",
                Some("\"2\""),
            )
            .body(Body::from("sent"))
            .unwrap(),
            S::BAD_REQUEST,
            "hash_mismatch",
        ),
        case(
            "hash mismatch on archive",
            req("POST", "/sync/v1/history/docs/a.txt")
                .header(header::AUTHORIZATION, A)
                .header("x-sync-hash", ContentHash::of(b"y").to_hex())
                .header("x-sync-stamp", STAMP)
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "hash_mismatch",
        ),
        // 410 / 400 cursors
        case(
            "cursor of another epoch",
            get(&format!("/sync/v1/changes?since={other_epoch}"), A),
            S::GONE,
            "cursor_expired",
        ),
        case(
            "cursor of another epoch, waiting",
            get(&format!("/sync/v1/changes?since={other_epoch}&wait=5"), A),
            S::GONE,
            "cursor_expired",
        ),
        case(
            "garbage cursor",
            get("/sync/v1/changes?since=garbage", A),
            S::BAD_REQUEST,
            "invalid_cursor",
        ),
        case(
            "empty cursor",
            get("/sync/v1/changes?since=", A),
            S::BAD_REQUEST,
            "invalid_cursor",
        ),
        // 400 invalid_request
        case(
            "limit 0",
            get("/sync/v1/changes?limit=0", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "limit too big",
            get("/sync/v1/changes?limit=10001", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "limit not a number",
            get("/sync/v1/changes?limit=ten", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "history limit 0",
            get("/sync/v1/history/docs/a.txt?limit=0", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "history limit over a page",
            get("/sync/v1/history/docs/a.txt?limit=1001", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "history limit not a number",
            get("/sync/v1/history/docs/a.txt?limit=-1", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "history before not a revision",
            get("/sync/v1/history/docs/a.txt?before=latest", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "history before 0",
            get("/sync/v1/history/docs/a.txt?before=0", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "wait too long",
            get("/sync/v1/changes?wait=61", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "wait negative",
            get("/sync/v1/changes?wait=-1", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "rev not a number",
            get("/sync/v1/items/docs/a.txt?rev=x", A),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "If-Match unquoted",
            set(
                set(put("docs/a.txt", A, b"x"), "if-none-match", None),
                "if-match",
                Some("2"),
            )
            .body(Body::from("x"))
            .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "both preconditions",
            put("docs/a.txt", A, b"x")
                .header("if-match", "\"2\"")
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "If-None-Match not *",
            req("PUT", "/sync/v1/items/n.txt")
                .header(header::AUTHORIZATION, A)
                .header("if-none-match", "\"2\"")
                .header("x-sync-hash", ContentHash::of(b"x").to_hex())
                .header("x-sync-stamp", STAMP)
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "no hash",
            req("PUT", "/sync/v1/items/n.txt")
                .header(header::AUTHORIZATION, A)
                .header("if-none-match", "*")
                .header("x-sync-stamp", STAMP)
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "bad hash",
            set(put("n.txt", A, b"x"), "x-sync-hash", Some("abc"))
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "bad stamp",
            set(put("n.txt", A, b"x"), "x-sync-stamp", Some("yesterday"))
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "bad seen",
            put("n.txt", A, b"x")
                .header("x-sync-seen", "many")
                .body(Body::from("x"))
                .unwrap(),
            S::BAD_REQUEST,
            "invalid_request",
        ),
        // 412 (bodies checked in their own test)
        case(
            "create over a live item",
            put("docs/a.txt", A, b"x").body(Body::from("x")).unwrap(),
            S::PRECONDITION_FAILED,
            "conflict",
        ),
        // 428
        case(
            "PUT without precondition",
            req("PUT", "/sync/v1/items/n.txt")
                .header(header::AUTHORIZATION, A)
                .header("x-sync-hash", ContentHash::of(b"x").to_hex())
                .header("x-sync-stamp", STAMP)
                .body(Body::from("x"))
                .unwrap(),
            S::PRECONDITION_REQUIRED,
            "precondition_required",
        ),
        case(
            "DELETE without If-Match",
            req("DELETE", "/sync/v1/items/docs/a.txt")
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap(),
            S::PRECONDITION_REQUIRED,
            "precondition_required",
        ),
        // 409
        case(
            "folder below a file",
            req("PUT", "/sync/v1/folders/docs/a.txt/sub")
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap(),
            S::CONFLICT,
            "not_a_folder",
        ),
        // 405
        case(
            "wrong method",
            req("PATCH", "/sync/v1/items/docs/a.txt")
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap(),
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    run(cases, ServerOptions::default()).await;
}

#[tokio::test]
async fn a_put_without_a_stamp_takes_the_servers_clock() {
    let s = server(ServerOptions::default()).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let r = req("PUT", "/sync/v1/items/n.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-none-match", "*")
        .header("x-sync-hash", ContentHash::of(b"x").to_hex())
        .body(Body::from("x"))
        .unwrap();
    let a = call(&s.app, r).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let item: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let stamp: Stamp = item["stamp"].as_str().unwrap().parse().unwrap();
    assert!(stamp.millis >= before, "{stamp:?}");
}

#[tokio::test]
async fn hash_mismatch_is_checked_before_the_precondition() {
    let s = server(ServerOptions::default()).await;
    let before = snapshot(&s.store).await;
    let r = req("PUT", "/sync/v1/items/docs/a.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-match", "\"1\"") // stale, but the body is refused first
        .header("x-sync-hash", ContentHash::of(b"announced").to_hex())
        .header("x-sync-stamp", STAMP)
        .body(Body::from("sent"))
        .unwrap();
    let a = call(&s.app, r).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::BAD_REQUEST, "hash_mismatch")
    );
    assert_eq!(snapshot(&s.store).await, before);
}

#[tokio::test]
async fn conflicts_carry_the_current_item() {
    let s = server(ServerOptions::default()).await;
    let before = snapshot(&s.store).await;
    // Create over a live item.
    let a = call(
        &s.app,
        put("docs/a.txt", A, b"x").body(Body::from("x")).unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::PRECONDITION_FAILED, "conflict")
    );
    let cur = &a.json()["current"];
    assert_eq!(cur["key"], "docs/a.txt");
    assert_eq!(cur["kind"], "file");
    assert_eq!(cur["rev"], 2);
    assert_eq!(cur["hash"], ContentHash::of(b"hello").to_hex());
    assert_eq!(cur["size"], 5);
    assert_eq!(cur["stamp"], "1000000.0.0000000000000007");
    assert_eq!(cur["deleted"], false);
    // A stale If-Match.
    let stale = req("PUT", "/sync/v1/items/docs/a.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-match", "\"1\"")
        .header("x-sync-hash", ContentHash::of(b"x").to_hex())
        .header("x-sync-stamp", STAMP)
        .body(Body::from("x"))
        .unwrap();
    let a = call(&s.app, stale).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::PRECONDITION_FAILED, "conflict")
    );
    assert_eq!(a.json()["current"]["rev"], 2);
    // If-Match on an absent key: current is null (present, not missing).
    let absent = req("PUT", "/sync/v1/items/absent.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-match", "\"2\"")
        .header("x-sync-hash", ContentHash::of(b"x").to_hex())
        .header("x-sync-stamp", STAMP)
        .body(Body::from("x"))
        .unwrap();
    let a = call(&s.app, absent).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::PRECONDITION_FAILED, "conflict")
    );
    assert!(a.json().as_object().unwrap().contains_key("current"));
    assert_eq!(a.json()["current"], Value::Null);
    // A stale delete.
    let del = req("DELETE", "/sync/v1/items/docs/a.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-match", "\"1\"")
        .body(empty())
        .unwrap();
    let a = call(&s.app, del).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::PRECONDITION_FAILED, "conflict")
    );
    assert_eq!(a.json()["current"]["rev"], 2);
    assert_eq!(snapshot(&s.store).await, before);
}

fn small() -> ServerOptions {
    ServerOptions {
        max_item_bytes: 16,
        ..ServerOptions::default()
    }
}

/// A body that yields `chunks` of 8 bytes and then never ends: a server that reads past what
/// it needs hangs on it.
fn endless_after(chunks: usize) -> Body {
    let s = stream::iter((0..chunks).map(|_| Ok::<_, Infallible>(Bytes::from_static(b"12345678"))))
        .chain(stream::pending());
    Body::from_stream(s)
}

#[tokio::test]
async fn too_large_before_reading_past_the_limit() {
    let hash = ContentHash::of(&[b'x'; 17]).to_hex();
    let put_big = || {
        req("PUT", "/sync/v1/items/big.bin")
            .header(header::AUTHORIZATION, A)
            .header("if-none-match", "*")
            .header("x-sync-hash", hash.as_str())
            .header("x-sync-stamp", STAMP)
    };
    let cases = vec![
        // Content-Length over the limit: answered without reading a byte (the body never ends).
        case(
            "declared too large",
            put_big()
                .header(header::CONTENT_LENGTH, "17")
                .body(endless_after(0))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        case(
            "declared too large, archive",
            req("POST", "/sync/v1/history/big.bin")
                .header(header::AUTHORIZATION, A)
                .header("x-sync-hash", hash.as_str())
                .header("x-sync-stamp", STAMP)
                .header(header::CONTENT_LENGTH, "1000000")
                .body(endless_after(0))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        // Chunked, no Content-Length: cut once past the limit (3 × 8 > 16; then it never ends).
        case(
            "chunked too large",
            put_big().body(endless_after(3)).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        case(
            "whole body too large",
            put_big().body(Body::from(vec![b'x'; 17])).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    run(cases, small()).await;
    // At the limit it is accepted.
    let s = server(small()).await;
    let content = [b'y'; 16];
    let r = req("PUT", "/sync/v1/items/ok.bin")
        .header(header::AUTHORIZATION, A)
        .header("if-none-match", "*")
        .header("x-sync-hash", ContentHash::of(&content).to_hex())
        .header("x-sync-stamp", STAMP)
        .body(Body::from(content.to_vec()))
        .unwrap();
    let a = call(&s.app, r).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    // The limit is named in the error body.
    let s = server(small()).await;
    let a = call(&s.app, put_big().body(Body::from(vec![b'x'; 17])).unwrap()).await;
    assert_eq!(a.json()["error"]["limit"], 16);
}

#[tokio::test]
async fn slow_body_is_cut_with_408() {
    let options = ServerOptions {
        request_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let r = put("slow.txt", A, b"12345678")
        .body(endless_after(1))
        .unwrap();
    run(
        vec![case(
            "body never finishes",
            r,
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
        )],
        options,
    )
    .await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let s = server(ServerOptions {
        rate_limit_per_second: 1,
        rate_limit_burst: 1,
        ..ServerOptions::default()
    })
    .await;
    let get = || {
        req("GET", "/sync/v1/changes")
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap()
    };
    assert_eq!(call(&s.app, get()).await.status, StatusCode::OK);
    let before = snapshot(&s.store).await;
    let a = call(&s.app, put("n.txt", A, b"x").body(Body::from("x")).unwrap()).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let secs: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&secs), "Retry-After: {secs}");
    assert_eq!(
        snapshot(&s.store).await,
        before,
        "a throttled write must not be applied"
    );
    // The limit is per token: tenant B is not throttled by A's requests.
    let b = req("GET", "/sync/v1/changes")
        .header(header::AUTHORIZATION, B)
        .body(empty())
        .unwrap();
    assert_eq!(call(&s.app, b).await.status, StatusCode::OK);
    // Bad tokens are refused as 401, not counted against anyone.
    let bad = req("GET", "/sync/v1/changes")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(empty())
        .unwrap();
    assert_eq!(call(&s.app, bad).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_needs_no_auth() {
    let s = server(ServerOptions::default()).await;
    let a = call(&s.app, req("GET", "/sync/v1/health").body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn gzip_when_asked_and_only_then() {
    let s = server(ServerOptions::default()).await;
    let r = |gzip: bool| {
        let b = req("GET", "/sync/v1/changes").header(header::AUTHORIZATION, A);
        let b = if gzip {
            b.header(header::ACCEPT_ENCODING, "gzip")
        } else {
            b
        };
        b.body(empty()).unwrap()
    };
    let plain = call(&s.app, r(false)).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.headers.get(header::CONTENT_ENCODING).is_none());
    let zipped = call(&s.app, r(true)).await;
    assert_eq!(zipped.status, StatusCode::OK);
    assert_eq!(zipped.headers[header::CONTENT_ENCODING], "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.body.to_vec());
    let page: Value = serde_json::from_slice(&unzipped).unwrap();
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    // Item contents are sent as they are, even when gzip is accepted (deflating large or
    // already-compressed files costs more than it saves).
    let item = call(
        &s.app,
        req("GET", "/sync/v1/items/docs/a.txt")
            .header(header::AUTHORIZATION, A)
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(item.status, StatusCode::OK);
    assert!(item.headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(&item.body[..], b"hello");
}

#[tokio::test]
async fn successful_answers_follow_the_protocol() {
    let s = server(ServerOptions::default()).await;
    // GET an item: headers.
    let a = call(
        &s.app,
        req("GET", "/sync/v1/items/docs/a.txt")
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"hello");
    assert_eq!(a.headers[header::ETAG], "\"2\"");
    assert_eq!(
        a.headers["x-sync-hash"],
        ContentHash::of(b"hello").to_hex().as_str()
    );
    assert_eq!(a.headers["x-sync-stamp"], STAMP);
    assert_eq!(a.headers["x-sync-kind"], "file");
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/octet-stream");
    // Create (201) a key with a space, percent-encoded; overwrite (200).
    let a = call(
        &s.app,
        put("docs/b%20c.txt", A, b"x")
            .body(Body::from("x"))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["key"], "docs/b c.txt");
    let rev = a.json()["rev"].as_u64().unwrap();
    let over = req("PUT", "/sync/v1/items/docs/b%20c.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-match", format!("\"{rev}\""))
        .header("x-sync-hash", ContentHash::of(b"y").to_hex())
        .header("x-sync-stamp", STAMP)
        .header("x-sync-seen", "100")
        .body(Body::from("y"))
        .unwrap();
    let a = call(&s.app, over).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json()["rev"],
        101,
        "the Lamport rule applies to X-Sync-Seen"
    );
    // History lists both versions, oldest first.
    let a = call(
        &s.app,
        req("GET", "/sync/v1/history/docs/b%20c.txt")
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap(),
    )
    .await;
    let revs: Vec<u64> = a.json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rev"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, vec![101, rev], "newest first");
    // Folders: 200, idempotent.
    for _ in 0..2 {
        let a = call(
            &s.app,
            req("PUT", "/sync/v1/folders/x/y")
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["kind"], "folder");
        assert_eq!(a.json()["hash"], Value::Null);
    }
    // Archive: 201, not current.
    let arch = req("POST", "/sync/v1/history/docs/a.txt")
        .header(header::AUTHORIZATION, A)
        .header("x-sync-hash", ContentHash::of(b"loser").to_hex())
        .header("x-sync-stamp", STAMP)
        .body(Body::from("loser"))
        .unwrap();
    let a = call(&s.app, arch).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["hash"], ContentHash::of(b"loser").to_hex());
    // Delete: 200 with the tombstone; then the item is 404.
    let del = req("DELETE", "/sync/v1/items/docs/a.txt")
        .header(header::AUTHORIZATION, A)
        .header("if-match", "\"2\"")
        .body(empty())
        .unwrap();
    let a = call(&s.app, del).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["deleted"], true);
    let a = call(
        &s.app,
        req("GET", "/sync/v1/items/docs/a.txt")
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn long_poll_is_woken_by_a_write() {
    let s = server(ServerOptions::default()).await;
    let head = snapshot(&s.store).await[0].cursor;
    let app = s.app.clone();
    let start = std::time::Instant::now();
    let poll = tokio::spawn(async move {
        call(
            &app,
            req("GET", &format!("/sync/v1/changes?since={head}&wait=30"))
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !poll.is_finished(),
        "the long-poll must hold while nothing changes"
    );
    let a = call(
        &s.app,
        put("woke.txt", A, b"w").body(Body::from("w")).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = poll.await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "woken late: {:?}",
        start.elapsed()
    );
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["changes"][0]["key"], "woke.txt");
    // With nothing to wait for it times out empty (1 s).
    let end = a.json()["cursor"].as_str().unwrap().to_owned();
    let a = call(
        &s.app,
        req("GET", &format!("/sync/v1/changes?since={end}&wait=1"))
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["changes"], serde_json::json!([]));
    assert_eq!(a.json()["more"], false);
}

#[tokio::test]
async fn mounted_under_an_app_prefix() {
    let s = server(ServerOptions::default()).await;
    let app = Router::new().nest("/myapp", s.app.clone());
    let a = call(
        &app,
        req("GET", "/myapp/sync/v1/items/docs/a.txt")
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"hello");
    let a = call(
        &app,
        req("GET", "/myapp/sync/v1/items/a/%2E%2E/docs/a.txt")
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_key")
    );
}

/// Overwrites `docs/a.txt` of tenant `a` (revision 2 in [`server`]) `n` times with small
/// distinct contents, straight in the store.
async fn overwrite_a_txt(s: &Server, n: u32) {
    let (t, k) = (TenantId::new("a"), Key::new("docs/a.txt").unwrap());
    let mut rev = Revision(2);
    for i in 0..n {
        let content = Bytes::from(format!("version {i}"));
        let req = PushRequest {
            key: k.clone(),
            precondition: Precondition::Match(rev),
            hash: ContentHash::of(&content),
            content,
            stamp: Stamp::at(1_000_000, NodeId(7)),
            seen: Revision::ZERO,
        };
        match s.store.push(&t, req).await.unwrap() {
            PushOutcome::Accepted(m) => rev = m.rev,
            other => panic!("push {i}: {other:?}"),
        }
    }
}

/// `GET /history` pages: `limit` versions newest first, `next_before` where the next page
/// starts (`null` on the last), `before` continues there; no `limit` is a page of 1000.
#[tokio::test]
async fn history_is_answered_in_pages() {
    let s = server(ServerOptions::default()).await;
    overwrite_a_txt(&s, 4).await;
    let revs = |v: &Value| -> Vec<u64> {
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["rev"].as_u64().unwrap())
            .collect()
    };
    let page = |uri: String| {
        let app = s.app.clone();
        async move {
            let request = req("GET", &uri)
                .header(header::AUTHORIZATION, A)
                .body(empty())
                .unwrap();
            let a = call(&app, request).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {:?}", a.body);
            a.json()
        }
    };
    let all = page("/sync/v1/history/docs/a.txt".into()).await;
    assert_eq!(revs(&all), [6, 5, 4, 3, 2], "one page, newest first");
    assert!(all["next_before"].is_null(), "{all}");
    let first = page("/sync/v1/history/docs/a.txt?limit=2".into()).await;
    assert_eq!(revs(&first), [6, 5]);
    assert_eq!(first["next_before"], 5);
    let second = page("/sync/v1/history/docs/a.txt?limit=2&before=5".into()).await;
    assert_eq!(revs(&second), [4, 3]);
    assert_eq!(second["next_before"], 3);
    let last = page("/sync/v1/history/docs/a.txt?limit=2&before=3".into()).await;
    assert_eq!(revs(&last), [2]);
    assert!(last["next_before"].is_null(), "{last}");
    let past = page("/sync/v1/history/docs/a.txt?before=2".into()).await;
    assert_eq!(
        revs(&past),
        Vec::<u64>::new(),
        "a page past the oldest is empty"
    );
}

/// One answer of `GET /history` is bounded however long the history: 30,000 versions come as
/// 30 pages of 1,000, each a bounded body. Prints the sizes (`-- --nocapture`).
#[tokio::test]
async fn a_long_history_is_answered_in_bounded_pages() {
    let s = server(ServerOptions::default()).await;
    overwrite_a_txt(&s, 30_000).await;
    let (mut uri, mut pages, mut versions, mut bytes, mut largest) =
        ("/sync/v1/history/docs/a.txt".to_owned(), 0, 0, 0, 0);
    loop {
        let request = req("GET", &uri)
            .header(header::AUTHORIZATION, A)
            .body(empty())
            .unwrap();
        let a = call(&s.app, request).await;
        assert_eq!(a.status, StatusCode::OK);
        let page = a.json();
        pages += 1;
        versions += page["versions"].as_array().unwrap().len();
        bytes += a.body.len();
        largest = largest.max(a.body.len());
        match page["next_before"].as_u64() {
            Some(next) => uri = format!("/sync/v1/history/docs/a.txt?before={next}"),
            None => break,
        }
    }
    println!("{versions} versions: {pages} pages, largest {largest} bytes, {bytes} bytes in all");
    assert_eq!((versions, pages), (30_001, 31));
    assert!(
        largest < 200_000,
        "a page of 1,000 versions is {largest} bytes"
    );
}
