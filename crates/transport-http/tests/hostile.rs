//! Hostile requests against the HTTP server: table-driven, each row a request
//! an attacker or a broken client could send, the docs/SPEC.md §6 / docs/PROTOCOL.md status and error
//! code it must get, and a check that it changed nothing (both tenants' whole change feeds with
//! their head cursors, which carry the revision counters, and the version history of every key
//! of both tenants and of a few keys a wrong decoding could have produced).
//!
//! `server_codes.rs` checks each error code once; this file goes wide where an attacker would:
//! every encoding of a path escape on every keyed route, every bad token on every route, a
//! token of another tenant on every operation, bodies over the limit in every framing, forged
//! and malformed hashes, forged and broken cursors, out-of-range `limit`/`wait`, slow bodies,
//! wrong methods, NFC duplicates of a key, and (over a real socket on 127.0.0.1) what an
//! in-process call cannot send: raw backslashes, unnormalised `..`, absolute-form targets,
//! chunked framing and a client that stalls mid-body.
//!
//! Malformed JSON: no route of the protocol reads a JSON request body (item contents and
//! archives are opaque bytes, `/folders` and `DELETE` take no body, everything else is a GET),
//! so there is no JSON parser to attack; the JSON-shaped hostile input is the client's side
//! (garbage change feeds, tested in the root package's `tests/hostile_server.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use sync_core::memory::MemoryServerStore;
use sync_core::{
    ChangePage, ContentHash, Cursor, Epoch, Key, NodeId, Precondition, PushOutcome, PushRequest,
    Revision, ServerConfig, ServerStore, Stamp, TenantId, VersionMeta,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use transport_http::{router, ServerOptions, StaticTokens};

const A: &str = "Bearer token-a";
const B: &str = "Bearer token-b";
const STAMP: &str = "1000000.0.0000000000000007";

/// Keys whose history is part of the snapshot although they are in no feed: what a wrong
/// decoding of the hostile paths below could have written to (an archive never enters the feed).
const PROBES: &[&str] = &[
    "etc/passwd",
    "etc",
    "passwd",
    "docs",
    "docs/a.txt",
    "a",
    "b",
    "a/b",
    "x",
    "escape.txt",
    "mine.txt",
    "%2e%2e",
    "caf\u{e9}",
];

struct Server {
    app: Router,
    store: Arc<MemoryServerStore>,
}

fn push_req(key: &str, content: &'static [u8]) -> PushRequest {
    PushRequest {
        key: Key::new(key).unwrap(),
        precondition: Precondition::Create,
        content: Bytes::from_static(content),
        hash: ContentHash::of(content),
        stamp: Stamp::at(1_000_000, NodeId(7)),
        seen: Revision::ZERO,
    }
}

/// Tenant `a` holds `docs` (rev 1) and `docs/a.txt` = "hello" (rev 2); tenant `b` holds
/// `mine.txt` = "b's" (rev 1).
async fn server(options: ServerOptions) -> Server {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let (a, b) = (TenantId::new("a"), TenantId::new("b"));
    assert!(matches!(
        store.push(&a, push_req("docs/a.txt", b"hello")).await.unwrap(),
        PushOutcome::Accepted(m) if m.rev == Revision(2)
    ));
    assert!(matches!(
        store.push(&b, push_req("mine.txt", b"b's")).await.unwrap(),
        PushOutcome::Accepted(_)
    ));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
    Server {
        app: router(store.clone(), tokens, options),
        store,
    }
}

/// Everything a request could have changed, for one tenant.
#[derive(Debug, PartialEq)]
struct TenantState {
    feed: ChangePage,
    history: Vec<(String, Option<Vec<VersionMeta>>)>,
}

async fn tenant_state(store: &MemoryServerStore, tenant: &str) -> TenantState {
    let t = TenantId::new(tenant);
    let feed = store.changes(&t, None, 10_000).await.unwrap();
    let mut keys: Vec<String> = feed
        .changes
        .iter()
        .map(|m| m.key.as_str().to_owned())
        .collect();
    keys.extend(PROBES.iter().map(|k| (*k).to_owned()));
    keys.sort();
    keys.dedup();
    let mut history = Vec::new();
    for k in keys {
        let h = sync_core::full_history(store, &t, &Key::new(&k).unwrap())
            .await
            .ok();
        history.push((k, h));
    }
    TenantState { feed, history }
}

async fn snapshot(store: &MemoryServerStore) -> Vec<TenantState> {
    vec![
        tenant_state(store, "a").await,
        tenant_state(store, "b").await,
    ]
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
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
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the answer's body did not end within 5 s")
        .unwrap()
        .to_bytes();
    Answer {
        status,
        content_type,
        body,
    }
}

/// One table row.
struct Case {
    name: String,
    request: Request<Body>,
    status: StatusCode,
    code: &'static str,
}

/// Runs each case on a fresh server (made with `options`): the status, the JSON error body
/// with that code and a message, and no change to the store.
async fn run(cases: Vec<Case>, options: ServerOptions) {
    assert!(!cases.is_empty());
    for c in cases {
        let s = server(options.clone()).await;
        let before = snapshot(&s.store).await;
        let a = call(&s.app, c.request).await;
        assert_eq!(a.status, c.status, "{}: status (body {:?})", c.name, a.body);
        assert_eq!(
            a.content_type.as_deref(),
            Some("application/json"),
            "{}: content type (body {:?})",
            c.name,
            a.body
        );
        assert_eq!(a.code(), c.code, "{}: error code", c.name);
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: error message",
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

/// A request; `auth` is the whole Authorization header value, if any.
fn request(
    method: &str,
    path: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: Body,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        b = b.header(header::AUTHORIZATION, auth);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

/// The keyed operations, each otherwise well-formed, on the raw (encoded) key `key`.
fn keyed_requests(key: &str, auth: Option<&str>) -> Vec<(&'static str, Request<Body>)> {
    let x = ContentHash::of(b"x").to_hex();
    let write = [
        ("if-none-match", "*"),
        ("x-sync-hash", x.as_str()),
        ("x-sync-stamp", STAMP),
    ];
    let archive = [("x-sync-hash", x.as_str()), ("x-sync-stamp", STAMP)];
    vec![
        (
            "GET item",
            request("GET", &format!("/sync/v1/items/{key}"), auth, &[], empty()),
        ),
        (
            "GET item rev",
            request(
                "GET",
                &format!("/sync/v1/items/{key}?rev=2"),
                auth,
                &[],
                empty(),
            ),
        ),
        (
            "PUT item",
            request(
                "PUT",
                &format!("/sync/v1/items/{key}"),
                auth,
                &write,
                Body::from("x"),
            ),
        ),
        (
            "DELETE item",
            request(
                "DELETE",
                &format!("/sync/v1/items/{key}"),
                auth,
                &[("if-match", "\"2\"")],
                empty(),
            ),
        ),
        (
            "GET history",
            request(
                "GET",
                &format!("/sync/v1/history/{key}"),
                auth,
                &[],
                empty(),
            ),
        ),
        (
            "POST history",
            request(
                "POST",
                &format!("/sync/v1/history/{key}"),
                auth,
                &archive,
                Body::from("x"),
            ),
        ),
        (
            "PUT folder",
            request(
                "PUT",
                &format!("/sync/v1/folders/{key}"),
                auth,
                &[],
                empty(),
            ),
        ),
    ]
}

fn empty() -> Body {
    Body::empty()
}

/// Every way to spell a key that escapes, or is not a key (docs/SPEC.md §1): raw path text after
/// `/items/`, `/history/` or `/folders/`.
fn hostile_keys() -> Vec<(String, String)> {
    let keys: Vec<(&str, String)> = vec![
        ("dot-dot", "..".into()),
        ("dot-dot below", "docs/..".into()),
        ("dot-dot then a key", "../docs/a.txt".into()),
        ("dot-dot twice", "docs/../../etc/passwd".into()),
        ("%2e%2e", "%2e%2e".into()),
        ("%2E%2E", "%2E%2E/etc/passwd".into()),
        (".%2e", ".%2e".into()),
        ("%2e.", "docs/%2e.".into()),
        ("%2E%2e mixed case", "docs/%2E%2e/x".into()),
        ("dot", ".".into()),
        ("%2e", "%2e/x".into()),
        ("%2f inside a segment", "a%2fb".into()),
        ("%2F inside a segment", "a%2Fb".into()),
        ("..%2f..%2f", "..%2f..%2fetc%2fpasswd".into()),
        ("%2e%2e%2f", "%2e%2e%2f%2e%2e%2fetc%2fpasswd".into()),
        ("%2F leading", "%2Fetc%2Fpasswd".into()),
        ("%5c backslash", "a%5cb".into()),
        ("raw backslash", "a\\b".into()),
        ("raw ..\\..\\", "..\\..\\etc\\passwd".into()),
        ("..%5c", "..%5c..%5cetc".into()),
        ("%5C windows path", "C:%5CWindows%5Cwin.ini".into()),
        ("absolute //etc/passwd", "/etc/passwd".into()),
        ("absolute ///", "//x".into()),
        ("trailing slash", "docs/".into()),
        ("%00", "%00".into()),
        ("%00 suffix", "docs/a.txt%00.png".into()),
        ("%0a", "a%0ab".into()),
        ("%0d", "a%0db".into()),
        ("%09 tab", "a%09b".into()),
        ("%7f DEL", "a%7fb".into()),
        ("%c2%85 NEL (C1 control)", "a%c2%85b".into()),
        ("%ff", "a%ffb".into()),
        ("%c3 truncated UTF-8", "a%c3".into()),
        ("%c0%ae%c0%ae overlong UTF-8 dots", "%c0%ae%c0%ae".into()),
        ("%e0%80%ae overlong UTF-8 dot", "%e0%80%ae%e0%80%ae".into()),
        ("%ed%a0%80 UTF-16 surrogate", "a%ed%a0%80".into()),
        ("segment of 256 bytes", "s".repeat(256)),
        ("segment of 256 bytes in é", "%C3%A9".repeat(128)),
        (
            "key of 1025 bytes",
            format!("{}/{}", vec!["k".repeat(200); 4].join("/"), "k".repeat(221)),
        ),
        // (`http::Uri` refuses much longer paths itself.)
        ("key of 30 KB", vec!["k".repeat(200); 150].join("/")),
    ];
    keys.into_iter().map(|(n, k)| (n.to_owned(), k)).collect()
}

#[tokio::test]
async fn path_escapes_in_every_encoding_on_every_keyed_route() {
    // The long key is over the 1024-byte limit, each of its segments within the 255 limit.
    let long = hostile_keys()
        .into_iter()
        .find(|(n, _)| n == "key of 1025 bytes")
        .unwrap()
        .1;
    assert!(long.len() == 1025 && long.split('/').all(|s| s.len() <= 255));
    let mut cases = Vec::new();
    for (name, key) in hostile_keys() {
        for (route, r) in keyed_requests(&key, Some(A)) {
            cases.push(Case {
                name: format!("{route} {name}"),
                request: r,
                status: StatusCode::BAD_REQUEST,
                code: "invalid_key",
            });
        }
    }
    run(cases, ServerOptions::default()).await;
}

#[tokio::test]
async fn the_limits_of_a_key_are_exact() {
    // The rows above are one byte over; one byte under is a key (so they fail for the right
    // reason): a 255-byte segment and a 1024-byte key are accepted.
    let s = server(ServerOptions::default()).await;
    let seg255 = "s".repeat(255);
    let key1024 = format!("{}/{}", vec!["k".repeat(200); 4].join("/"), "k".repeat(220));
    assert_eq!(key1024.len(), 1024);
    for key in [seg255, key1024] {
        let a = call(
            &s.app,
            request(
                "PUT",
                &format!("/sync/v1/items/{key}"),
                Some(A),
                &[
                    ("if-none-match", "*"),
                    ("x-sync-hash", &ContentHash::of(b"x").to_hex()),
                    ("x-sync-stamp", STAMP),
                ],
                Body::from("x"),
            ),
        )
        .await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "{} bytes: {:?}",
            key.len(),
            a.body
        );
    }
}

#[tokio::test]
async fn an_encoding_trick_that_is_a_plain_name_stays_a_plain_name() {
    // `%252e%252e` decodes once, to the literal name `%2e%2e`: a harmless file name, never `..`.
    let s = server(ServerOptions::default()).await;
    let a = call(
        &s.app,
        request(
            "PUT",
            "/sync/v1/items/%252e%252e",
            Some(A),
            &[
                ("if-none-match", "*"),
                ("x-sync-hash", &ContentHash::of(b"x").to_hex()),
                ("x-sync-stamp", STAMP),
            ],
            Body::from("x"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.json()["key"], "%2e%2e");
}

#[tokio::test]
async fn non_nfc_spellings_address_the_same_key() {
    let s = server(ServerOptions::default()).await;
    let put = |path: &str, pre: (&'static str, String), content: &'static str| {
        request(
            "PUT",
            &format!("/sync/v1/items/{path}"),
            Some(A),
            &[
                (pre.0, pre.1.as_str()),
                ("x-sync-hash", &ContentHash::of(content.as_bytes()).to_hex()),
                ("x-sync-stamp", STAMP),
            ],
            Body::from(content),
        )
    };
    let create = || ("if-none-match", "*".to_owned());
    // NFC é (U+00E9).
    let a = call(&s.app, put("caf%C3%A9", create(), "v1")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.json()["key"], "caf\u{e9}");
    let rev = a.json()["rev"].as_u64().unwrap();
    let before = snapshot(&s.store).await;
    // Decomposed (e + U+0301), lower-case hex, and the decomposed form of a folder segment:
    // every create of the same name is a conflict with the one item, never a second item.
    for spelling in ["cafe%CC%81", "caf%c3%a9", "cafe%cc%81"] {
        let a = call(&s.app, put(spelling, create(), "v2")).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (StatusCode::PRECONDITION_FAILED, "conflict"),
            "{spelling}: {:?}",
            a.body
        );
        assert_eq!(a.json()["current"]["key"], "caf\u{e9}", "{spelling}");
        assert_eq!(a.json()["current"]["rev"], rev, "{spelling}");
    }
    assert_eq!(
        snapshot(&s.store).await,
        before,
        "a create made a second item"
    );
    // Reading through the decomposed spelling reads the same item.
    let a = call(
        &s.app,
        request("GET", "/sync/v1/items/cafe%CC%81", Some(A), &[], empty()),
    )
    .await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"v1"[..]));
    // Overwriting through it overwrites that item (its history grows; no new key).
    let a = call(
        &s.app,
        put("cafe%CC%81", ("if-match", format!("\"{rev}\"")), "v2"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["key"], "caf\u{e9}");
    let feed = s
        .store
        .changes(&TenantId::new("a"), None, 100)
        .await
        .unwrap();
    let keys: Vec<&str> = feed.changes.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["docs", "docs/a.txt", "caf\u{e9}"]);
    let history = sync_core::full_history(
        &*s.store,
        &TenantId::new("a"),
        &Key::new("caf\u{e9}").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(history.len(), 2);
    // A folder made with one spelling is the parent of an item pushed with the other.
    let a = call(
        &s.app,
        request(
            "PUT",
            "/sync/v1/folders/%C3%A9t%C3%A9",
            Some(A),
            &[],
            empty(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = call(&s.app, put("e%CC%81te%CC%81/x.txt", create(), "x")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.json()["key"], "\u{e9}t\u{e9}/x.txt");
    let feed = s
        .store
        .changes(&TenantId::new("a"), None, 100)
        .await
        .unwrap();
    let folders = feed
        .changes
        .iter()
        .filter(|m| {
            m.key.as_str().starts_with("\u{e9}t\u{e9}") || m.key.as_str().starts_with("e\u{301}")
        })
        .count();
    assert_eq!(folders, 2, "one folder and one file: {feed:?}");
}

#[tokio::test]
async fn bad_tokens_on_every_route_change_nothing() {
    let bad: &[(&str, Option<&str>)] = &[
        ("no header", None),
        ("Basic", Some("Basic dG9rZW4tYTo=")),
        ("Bearer alone", Some("Bearer")),
        ("Bearer empty", Some("Bearer ")),
        ("Bearer spaces", Some("Bearer    ")),
        ("wrong token", Some("Bearer token-c")),
        ("token with a suffix", Some("Bearer token-ab")),
        ("token of another scheme", Some("Token token-a")),
        ("token with a tab inside", Some("Bearer token\t-a")),
        ("two tokens", Some("Bearer token-a token-b")),
    ];
    let mut cases = Vec::new();
    for (what, auth) in bad {
        let mut reqs = keyed_requests("docs/a.txt", *auth);
        // A bad token with a bad key: 401 first, nothing about the key is revealed.
        reqs.extend(
            keyed_requests("..%2f..%2fetc%2fpasswd", *auth)
                .into_iter()
                .filter(|(n, _)| *n == "PUT item")
                .map(|(_, r)| ("PUT escape", r)),
        );
        reqs.push((
            "GET changes",
            request("GET", "/sync/v1/changes", *auth, &[], empty()),
        ));
        reqs.push((
            "GET changes waiting",
            request("GET", "/sync/v1/changes?wait=60", *auth, &[], empty()),
        ));
        for (route, r) in reqs {
            cases.push(Case {
                name: format!("{route}, {what}"),
                request: r,
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
            });
        }
    }
    run(cases, ServerOptions::default()).await;
    // A header value that is not text at all.
    let mut r = request("GET", "/sync/v1/changes", None, &[], empty());
    r.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    );
    run(
        vec![Case {
            name: "Authorization not UTF-8".into(),
            request: r,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        }],
        ServerOptions::default(),
    )
    .await;
}

#[tokio::test]
async fn a_token_of_another_tenant_never_reaches_its_items() {
    // Read-only and conditional operations of B on A's keys: 404 or a conflict that says
    // nothing of A's item, and nothing changes anywhere.
    let x = ContentHash::of(b"x").to_hex();
    let s = server(ServerOptions::default()).await;
    let head = s
        .store
        .changes(&TenantId::new("a"), None, 10)
        .await
        .unwrap()
        .cursor
        .to_string();
    let cases = vec![
        Case {
            name: "B fetches A's folder".into(),
            request: request("GET", "/sync/v1/items/docs", Some(B), &[], empty()),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
        Case {
            name: "B overwrites A's key with A's revision".into(),
            request: request(
                "PUT",
                "/sync/v1/items/docs/a.txt",
                Some(B),
                &[
                    ("if-match", "\"2\""),
                    ("x-sync-hash", &x),
                    ("x-sync-stamp", STAMP),
                ],
                Body::from("x"),
            ),
            status: StatusCode::PRECONDITION_FAILED,
            code: "conflict",
        },
        Case {
            name: "B deletes A's folder".into(),
            request: request(
                "DELETE",
                "/sync/v1/items/docs",
                Some(B),
                &[("if-match", "\"1\"")],
                empty(),
            ),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
        Case {
            name: "A fetches B's key".into(),
            request: request("GET", "/sync/v1/items/mine.txt", Some(A), &[], empty()),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
        Case {
            name: "A reads B's history".into(),
            request: request("GET", "/sync/v1/history/mine.txt", Some(A), &[], empty()),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
        Case {
            name: "A fetches B's revision".into(),
            request: request(
                "GET",
                "/sync/v1/items/mine.txt?rev=1",
                Some(A),
                &[],
                empty(),
            ),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
    ];
    run(cases, ServerOptions::default()).await;

    // The conflict B gets names nothing of A's item.
    let a = call(
        &s.app,
        request(
            "PUT",
            "/sync/v1/items/docs/a.txt",
            Some(B),
            &[
                ("if-match", "\"2\""),
                ("x-sync-hash", &x),
                ("x-sync-stamp", STAMP),
            ],
            Body::from("x"),
        ),
    )
    .await;
    assert_eq!(a.json()["current"], Value::Null, "{:?}", a.body);
    // B's feed read with A's cursor lists none of A's keys.
    let a = call(
        &s.app,
        request(
            "GET",
            &format!("/sync/v1/changes?since={}", c1_rev0(&head)),
            Some(B),
            &[],
            empty(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let keys: Vec<String> = a.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["mine.txt"]);
    // B's writes under A's key names land in B's tenant: A's feed and histories are untouched.
    let before = tenant_state(&s.store, "a").await;
    for r in [
        request(
            "PUT",
            "/sync/v1/items/docs/a.txt",
            Some(B),
            &[
                ("if-none-match", "*"),
                ("x-sync-hash", &x),
                ("x-sync-stamp", STAMP),
            ],
            Body::from("x"),
        ),
        request(
            "POST",
            "/sync/v1/history/docs/a.txt",
            Some(B),
            &[("x-sync-hash", &x), ("x-sync-stamp", STAMP)],
            Body::from("x"),
        ),
        request("PUT", "/sync/v1/folders/docs/sub", Some(B), &[], empty()),
    ] {
        let a = call(&s.app, r).await;
        assert!(a.status.is_success(), "{:?} {:?}", a.status, a.body);
    }
    assert_eq!(tenant_state(&s.store, "a").await, before, "B changed A");
    let b_feed = s
        .store
        .changes(&TenantId::new("b"), None, 100)
        .await
        .unwrap();
    assert_eq!(b_feed.changes.len(), 4, "{b_feed:?}"); // mine.txt, docs, docs/a.txt, docs/sub
}

/// The same cursor moved back to revision 0 (a cursor of A's store, valid for B's too).
fn c1_rev0(head: &str) -> String {
    let (prefix, _) = head.rsplit_once('.').unwrap();
    format!("{prefix}.0")
}

fn small() -> ServerOptions {
    ServerOptions {
        max_item_bytes: 16,
        ..ServerOptions::default()
    }
}

/// A body of `chunks` chunks of `size` bytes each, then (with `stall`) never ending.
fn chunks(chunks: usize, size: usize, stall: bool) -> Body {
    let s =
        stream::iter((0..chunks).map(move |_| Ok::<_, Infallible>(Bytes::from(vec![b'x'; size]))));
    if stall {
        Body::from_stream(s.chain(stream::pending()))
    } else {
        Body::from_stream(s)
    }
}

#[tokio::test]
async fn bodies_over_the_limit_in_every_framing() {
    let hash = ContentHash::of(&[b'x'; 17]).to_hex();
    let write = |method: &str, cl: Option<&str>, body: Body| {
        let (path, pre): (&str, &[(&str, &str)]) = if method == "PUT" {
            ("/sync/v1/items/big.bin", &[("if-none-match", "*")])
        } else {
            ("/sync/v1/history/big.bin", &[])
        };
        let mut h: Vec<(&str, &str)> = pre.to_vec();
        h.push(("x-sync-hash", &hash));
        h.push(("x-sync-stamp", STAMP));
        if let Some(cl) = cl {
            h.push(("content-length", cl));
        }
        request(method, path, Some(A), &h, body)
    };
    let mut cases = Vec::new();
    for m in ["PUT", "POST"] {
        let mut row = |name: &str, req: Request<Body>, status: StatusCode, code: &'static str| {
            cases.push(Case {
                name: format!("{m} {name}"),
                request: req,
                status,
                code,
            })
        };
        let tl = StatusCode::PAYLOAD_TOO_LARGE;
        let br = StatusCode::BAD_REQUEST;
        // Declared: refused before a byte is read (the body never ends).
        row(
            "Content-Length u64::MAX",
            write(m, Some("18446744073709551615"), chunks(0, 0, true)),
            tl,
            "too_large",
        );
        row(
            "Content-Length 17",
            write(m, Some("17"), chunks(0, 0, true)),
            tl,
            "too_large",
        );
        // Undeclared (chunked): cut as soon as it passes the limit, then it never ends.
        row(
            "chunked, 1-byte chunks",
            write(m, None, chunks(17, 1, true)),
            tl,
            "too_large",
        );
        row(
            "chunked, one big chunk",
            write(m, None, chunks(1, 1 << 20, true)),
            tl,
            "too_large",
        );
        row(
            "chunked, exact end",
            write(m, None, chunks(17, 1, false)),
            tl,
            "too_large",
        );
        // A Content-Length that lies low: the limit counts what arrives, not what was said.
        row(
            "Content-Length lies low",
            write(m, Some("4"), chunks(17, 1, false)),
            tl,
            "too_large",
        );
        // A Content-Length that is not a length.
        row(
            "Content-Length overflows u64",
            write(m, Some("99999999999999999999999"), chunks(0, 0, true)),
            br,
            "invalid_request",
        );
        row(
            "Content-Length negative",
            write(m, Some("-1"), Body::from("x")),
            br,
            "invalid_request",
        );
        row(
            "Content-Length not a number",
            write(m, Some("ten"), Body::from("x")),
            br,
            "invalid_request",
        );
    }
    run(cases, small()).await;
}

#[tokio::test]
async fn forged_and_malformed_hashes_store_nothing() {
    let hello = ContentHash::of(b"hello").to_hex();
    let x = ContentHash::of(b"x").to_hex();
    let empty_hash = ContentHash::of(b"").to_hex();
    let upper = x.to_uppercase();
    let short = x[..63].to_owned();
    let long = format!("{x}0");
    let not_hex = format!("{}g", &x[..63]);
    let prefixed = format!("blake3:{x}");
    let br = StatusCode::BAD_REQUEST;
    let mut cases = Vec::new();
    for (m, path, pre) in [
        (
            "PUT",
            "/sync/v1/items/new.txt",
            Some(("if-none-match", "*")),
        ),
        (
            "PUT",
            "/sync/v1/items/docs/a.txt",
            Some(("if-match", "\"2\"")),
        ),
        ("POST", "/sync/v1/history/docs/a.txt", None),
    ] {
        let mut row = |name: &str, hash: &str, body: Body, code: &'static str| {
            let mut h: Vec<(&str, &str)> = pre.into_iter().collect();
            h.push(("x-sync-hash", hash));
            h.push(("x-sync-stamp", STAMP));
            cases.push(Case {
                name: format!("{m} {path}: {name}"),
                request: request(m, path, Some(A), &h, body),
                status: br,
                code,
            });
        };
        // The hash of content the server already holds, with other bytes: a blob store that
        // trusted the header would now serve "evil" as "hello" everywhere.
        row(
            "hash of a stored blob, other bytes",
            &hello,
            Body::from("evil"),
            "hash_mismatch",
        );
        row("hash of x, empty body", &x, empty(), "hash_mismatch");
        row(
            "hash of nothing, a body",
            &empty_hash,
            Body::from("x"),
            "hash_mismatch",
        );
        row(
            "hash mismatch, chunked",
            &hello,
            chunks(3, 1, false),
            "hash_mismatch",
        );
        // Malformed X-Sync-Hash: 400 before the body counts.
        row("upper-case hex", &upper, Body::from("x"), "invalid_request");
        row("63 hex digits", &short, Body::from("x"), "invalid_request");
        row("65 hex digits", &long, Body::from("x"), "invalid_request");
        row("not hex", &not_hex, Body::from("x"), "invalid_request");
        row("prefixed", &prefixed, Body::from("x"), "invalid_request");
        row("empty", "", Body::from("x"), "invalid_request");
    }
    run(cases, ServerOptions::default()).await;
    // And the stored blob is still what it was.
    let s = server(ServerOptions::default()).await;
    let a = call(
        &s.app,
        request(
            "PUT",
            "/sync/v1/items/other.txt",
            Some(A),
            &[
                ("if-none-match", "*"),
                ("x-sync-hash", &hello),
                ("x-sync-stamp", STAMP),
            ],
            Body::from("evil"),
        ),
    )
    .await;
    assert_eq!(a.code(), "hash_mismatch");
    let a = call(
        &s.app,
        request("GET", "/sync/v1/items/docs/a.txt", Some(A), &[], empty()),
    )
    .await;
    assert_eq!(&a.body[..], b"hello");
}

#[tokio::test]
async fn forged_and_broken_cursors() {
    let s = server(ServerOptions::default()).await;
    let head = s
        .store
        .changes(&TenantId::new("a"), None, 10)
        .await
        .unwrap()
        .cursor
        .to_string();
    let epoch_hex = &head[3..19];
    let other = |e: u64| Cursor::new(Epoch(e), Revision(2)).to_string();
    let invalid: Vec<(&str, String)> = vec![
        ("truncated to half", head[..head.len() / 2].to_owned()),
        ("truncated before the revision", head[..19].to_owned()),
        ("no revision", format!("c1.{epoch_hex}.")),
        ("epoch of 15 digits", format!("c1.{}.2", &epoch_hex[1..])),
        (
            "revision of 17 digits",
            format!("c1.{epoch_hex}.{}", "1".repeat(17)),
        ),
        ("another version", format!("c2.{epoch_hex}.2")),
        ("no prefix", format!("{epoch_hex}.2")),
        ("non-hex revision", format!("c1.{epoch_hex}.zz")),
        ("negative revision", format!("c1.{epoch_hex}.-1")),
        ("a space", format!("c1.{epoch_hex}.%202")),
        ("NUL", format!("c1.{epoch_hex}.2%00")),
        ("not UTF-8", "c1.%ff".to_owned()),
        ("10 KB", "c".repeat(10_000)),
        ("garbage with a long-poll", "garbage&wait=60".to_owned()),
    ];
    let mut cases: Vec<Case> = invalid
        .into_iter()
        .map(|(n, c)| Case {
            name: format!("cursor {n}"),
            request: request(
                "GET",
                &format!("/sync/v1/changes?since={c}"),
                Some(A),
                &[],
                empty(),
            ),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_cursor",
        })
        .collect();
    for (n, c) in [
        ("epoch 0", other(0)),
        ("epoch ffffffffffffffff", other(u64::MAX)),
        ("another epoch, long-poll", format!("{}&wait=60", other(1))),
    ] {
        cases.push(Case {
            name: format!("cursor {n}"),
            request: request(
                "GET",
                &format!("/sync/v1/changes?since={c}"),
                Some(A),
                &[],
                empty(),
            ),
            status: StatusCode::GONE,
            code: "cursor_expired",
        });
    }
    run(cases, ServerOptions::default()).await;
}

#[tokio::test]
async fn huge_negative_and_non_numeric_limit_and_wait() {
    let start = Instant::now();
    let cases: Vec<Case> = [
        "limit=999999999999",
        "limit=99999999999999999999999",
        "limit=-5",
        "limit=1e3",
        "limit=0x10",
        "limit=",
        "limit=%2010",
        "limit=10.5",
        "wait=100000",
        "wait=99999999999999999999999",
        "wait=-60",
        "wait=abc",
        "wait=1.5",
        "wait=",
        "wait=NaN",
        "limit=10&wait=100000",
    ]
    .into_iter()
    .map(|q| Case {
        name: q.to_owned(),
        request: request(
            "GET",
            &format!("/sync/v1/changes?{q}"),
            Some(A),
            &[],
            empty(),
        ),
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
    })
    .collect();
    run(cases, ServerOptions::default()).await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a refused wait was held: {:?}",
        start.elapsed()
    );
}

/// A body that sends one byte every `every`, forever.
fn trickle(every: Duration) -> Body {
    let s = stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), ()))
    });
    Body::from_stream(s)
}

#[tokio::test]
async fn slow_loris_bodies_are_cut_with_408_in_bounded_time() {
    let options = ServerOptions {
        request_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let x = ContentHash::of(b"xxxxxxxx").to_hex();
    let put = |cl: Option<&'static str>, body: Body| {
        let mut h = vec![
            ("if-none-match", "*"),
            ("x-sync-hash", x.as_str()),
            ("x-sync-stamp", STAMP),
        ];
        if let Some(cl) = cl {
            h.push(("content-length", cl));
        }
        request("PUT", "/sync/v1/items/slow.txt", Some(A), &h, body)
    };
    let archive = |body: Body| {
        request(
            "POST",
            "/sync/v1/history/slow.txt",
            Some(A),
            &[("x-sync-hash", x.as_str()), ("x-sync-stamp", STAMP)],
            body,
        )
    };
    let rows = vec![
        (
            "one byte then a stall, declared 8",
            put(Some("8"), chunks(1, 1, true)),
        ),
        (
            "one byte then a stall, chunked",
            put(None, chunks(1, 1, true)),
        ),
        (
            "nothing at all, declared 8",
            put(Some("8"), chunks(0, 0, true)),
        ),
        (
            "a byte every 50 ms, forever",
            put(None, trickle(Duration::from_millis(50))),
        ),
        (
            "archive: one byte then a stall",
            archive(chunks(1, 1, true)),
        ),
        (
            "archive: a byte every 50 ms",
            archive(trickle(Duration::from_millis(50))),
        ),
    ];
    for (name, r) in rows {
        let start = Instant::now();
        run(
            vec![Case {
                name: name.into(),
                request: r,
                status: StatusCode::REQUEST_TIMEOUT,
                code: "timeout",
            }],
            options.clone(),
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name}: answered after {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn wrong_methods_and_escapes_outside_the_key_routes() {
    let mut cases = Vec::new();
    for (m, p) in [
        ("POST", "/sync/v1/items/docs/a.txt"),
        ("OPTIONS", "/sync/v1/items/docs/a.txt"),
        ("TRACE", "/sync/v1/items/docs/a.txt"),
        ("PUT", "/sync/v1/history/docs/a.txt"),
        ("DELETE", "/sync/v1/history/docs/a.txt"),
        ("GET", "/sync/v1/folders/docs"),
        ("POST", "/sync/v1/folders/docs"),
        ("DELETE", "/sync/v1/folders/docs"),
    ] {
        cases.push(Case {
            name: format!("{m} {p}"),
            request: request(m, p, Some(A), &[], Body::from("{\"broken")),
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
        });
    }
    // Outside the key routes nothing is decoded into a path: an escape is just no route.
    for p in [
        "/sync/v1/../../etc/passwd",
        "/sync/v1/%2e%2e/%2e%2e/etc/passwd",
        "/sync/v1/items%2f..%2f..%2fetc%2fpasswd",
        "/sync/v2/changes",
        "//sync/v1/changes",
    ] {
        cases.push(Case {
            name: format!("GET {p}"),
            request: request("GET", p, Some(A), &[], empty()),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        });
    }
    run(cases, ServerOptions::default()).await;
}

/// Known deviations from docs/PROTOCOL.md ("wrong method: 405 `method_not_allowed`", every
/// error a JSON body): the routes registered with a single method and no method fallback
/// (`/changes`, `/health`) answer axum's bare 405 with an empty body. Run with `--ignored`;
/// the fix is a `.fallback(routes::method_not_allowed)` on those two routes in
/// `crates/transport-http/src/server/mod.rs`.
#[tokio::test]
async fn wrong_methods_on_single_method_routes() {
    let mut cases = Vec::new();
    for (m, p) in [
        ("POST", "/sync/v1/changes"),
        ("PUT", "/sync/v1/changes"),
        ("DELETE", "/sync/v1/changes"),
        ("POST", "/sync/v1/health"),
        ("DELETE", "/sync/v1/health"),
    ] {
        cases.push(Case {
            name: format!("{m} {p}"),
            request: request(m, p, Some(A), &[], Body::from("{\"broken")),
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
        });
    }
    run(cases, ServerOptions::default()).await;
}

// ---- over a real socket: what an in-process request cannot carry ----

/// Serves a fresh server on 127.0.0.1:0.
async fn listen(options: ServerOptions) -> (SocketAddr, Arc<MemoryServerStore>) {
    let s = server(options).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, s.app).await });
    (addr, s.store)
}

/// Sends raw bytes (and then, with `stall`, keeps the connection open without sending more)
/// and reads the answer: its status and body. Panics when no whole answer comes within 3 s.
async fn raw(addr: SocketAddr, bytes: &[u8], stall: bool) -> (u16, Bytes) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    if !stall {
        conn.shutdown().await.unwrap();
    }
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    return (status, Bytes::copy_from_slice(&buf[end + 4..end + 4 + len]));
                }
            }
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed before a whole answer: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .expect("no answer within 3 s")
}

/// A raw request head with the auth and write headers.
fn head(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {A}\r\n\
         x-sync-stamp: {STAMP}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn over_a_socket_raw_paths_framing_and_stalls() {
    let options = ServerOptions {
        max_item_bytes: 16,
        request_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let x = ContentHash::of(b"x").to_hex();
    let big = ContentHash::of(&[b'x'; 17]).to_hex();
    let create = |h: &str| format!("if-none-match: *\r\nx-sync-hash: {h}\r\n");
    // (name, bytes, stall, status, code)
    let rows: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        (
            "unnormalised ../.. in the path",
            head("GET", "/sync/v1/items/../../etc/passwd", "").into_bytes(),
            false,
            400,
            "invalid_key",
        ),
        (
            "PUT to ../escape.txt",
            format!(
                "{}x",
                head(
                    "PUT",
                    "/sync/v1/items/../escape.txt",
                    &format!("{}content-length: 1\r\n", create(&x))
                )
            )
            .into_bytes(),
            false,
            400,
            "invalid_key",
        ),
        (
            "absolute-form target with %2e%2e",
            head(
                "GET",
                "http://127.0.0.1/sync/v1/items/%2e%2e/etc/passwd",
                "",
            )
            .into_bytes(),
            false,
            400,
            "invalid_key",
        ),
        (
            "raw backslash in the path",
            head("GET", "/sync/v1/items/..\\..\\etc\\passwd", "").into_bytes(),
            false,
            400,
            "invalid_key",
        ),
        (
            "Content-Length over the limit, no body sent",
            head(
                "PUT",
                "/sync/v1/items/big.bin",
                &format!("{}content-length: 17\r\n", create(&big)),
            )
            .into_bytes(),
            true,
            413,
            "too_large",
        ),
        (
            "chunked over the limit, then a stall",
            format!(
                "{}8\r\nxxxxxxxx\r\n8\r\nxxxxxxxx\r\n8\r\nxxxxxxxx\r\n",
                head(
                    "PUT",
                    "/sync/v1/items/big.bin",
                    &format!("{}transfer-encoding: chunked\r\n", create(&big))
                )
            )
            .into_bytes(),
            true,
            413,
            "too_large",
        ),
        (
            "slow loris: one byte of 8, then a stall",
            format!(
                "{}x",
                head(
                    "PUT",
                    "/sync/v1/items/slow.bin",
                    &format!("{}content-length: 8\r\n", create(&big))
                )
            )
            .into_bytes(),
            true,
            408,
            "timeout",
        ),
        (
            "slow loris: a chunk, then a stall",
            format!(
                "{}1\r\nx\r\n",
                head(
                    "PUT",
                    "/sync/v1/items/slow.bin",
                    &format!("{}transfer-encoding: chunked\r\n", create(&big))
                )
            )
            .into_bytes(),
            true,
            408,
            "timeout",
        ),
    ];
    for (name, bytes, stall, status, code) in rows {
        let (addr, store) = listen(options.clone()).await;
        let before = snapshot(&store).await;
        let start = Instant::now();
        let (got, body) = raw(addr, &bytes, stall).await;
        assert_eq!(got, status, "{name}: status (body {body:?})");
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body:?}"));
        assert_eq!(v["error"]["code"], code, "{name}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name}: took {:?}",
            start.elapsed()
        );
        assert_eq!(snapshot(&store).await, before, "{name}: the store changed");
    }
}

/// `X-Sync-Seen` (and a batch's `seen`) near the revision ceiling is refused with 400, and the
/// tenant's next ordinary write still succeeds: one header cannot break a tenant for good.
#[tokio::test]
async fn a_seen_near_the_revision_ceiling_is_refused_and_the_tenant_keeps_working() {
    let store = Arc::new(MemoryServerStore::new(sync_core::ServerConfig::default()));
    let app = router(
        store,
        Arc::new(StaticTokens::new([("alice", "tok")])),
        ServerOptions::default(),
    );
    let put = |key: &str, seen: Option<&str>| {
        let mut req = Request::put(format!("/sync/v1/items/{key}"))
            .header(header::AUTHORIZATION, "Bearer tok")
            .header("x-sync-hash", sync_core::ContentHash::of(b"x").to_string())
            .header(header::IF_NONE_MATCH, "*")
            .body(Body::from("x"))
            .unwrap();
        if let Some(seen) = seen {
            req.headers_mut()
                .insert("x-sync-seen", HeaderValue::from_str(seen).unwrap());
        }
        req
    };
    let resp = app
        .clone()
        .oneshot(put("a.txt", Some("9223372036854775806")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("out of range"),
        "{body:?}"
    );

    let mut batch = br#"{"seen":9223372036854775806,"items":[]}"#.to_vec();
    batch.push(b'\n');
    let req = Request::post("/sync/v1/batch/push")
        .header(header::AUTHORIZATION, "Bearer tok")
        .body(Body::from(batch))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    for key in ["b.txt", "c.txt"] {
        let resp = app.clone().oneshot(put(key, None)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{key}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let item: Value = serde_json::from_slice(&body).unwrap();
        let rev = item["rev"].as_u64().unwrap();
        assert!(rev < 10, "{key} got revision {rev}: the counter jumped");
    }
}

/// Uploads that stall hold the server's memory: a tenant may hold only its share of body bytes
/// at once (its next upload gets 429 with Retry-After), and other tenants are not affected.
#[tokio::test]
async fn a_tenant_with_stalled_uploads_gets_429_and_others_upload_as_usual() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
    let options = ServerOptions {
        max_body_bytes_per_tenant: 1024 * 1024,
        ..ServerOptions::default()
    };
    let app = router(store, tokens, options);
    let put = |auth: &str, key: &str, len: usize, body: Body| {
        Request::put(format!("/sync/v1/items/{key}"))
            .header(header::AUTHORIZATION, auth)
            .header(
                "x-sync-hash",
                sync_core::ContentHash::of(&vec![b'x'; len]).to_string(),
            )
            .header(header::IF_NONE_MATCH, "*")
            .header(header::CONTENT_LENGTH, len.to_string())
            .body(body)
            .unwrap()
    };
    // Tenant a: one 1 MiB upload that sends half and stalls, held by a task.
    let len = 1024 * 1024;
    let stalled = app
        .clone()
        .oneshot(put(A, "stalled.bin", len, chunks(8, 64 * 1024, true)));
    let held = tokio::spawn(stalled);

    // Once the stalled upload holds its reservation (its task may take a moment to run on a
    // loaded machine), the tenant's next upload is refused.
    let started = Instant::now();
    let second = loop {
        let key = format!("second-{}.bin", started.elapsed().as_micros());
        let answer = app
            .clone()
            .oneshot(put(A, &key, 16, chunks(1, 16, false)))
            .await
            .unwrap();
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the tenant's uploads were never refused while one stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(second.headers().contains_key(header::RETRY_AFTER));

    let other = app
        .clone()
        .oneshot(put(B, "other.bin", 16, chunks(1, 16, false)))
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::CREATED,
        "another tenant uploads as usual"
    );

    // Once the stalled upload is gone, tenant a uploads again.
    held.abort();
    let _ = held.await;
    let again = app
        .oneshot(put(A, "again.bin", 16, chunks(1, 16, false)))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
}

/// Downloads that are not read hold the server's memory too: a tenant's unread answers count
/// against its share of body bytes (its next download gets 429 with Retry-After), other
/// tenants are not affected, and the share comes back when the answer is dropped.
#[tokio::test]
async fn a_tenant_with_unread_downloads_gets_429_and_others_download_as_usual() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a"), ("b", "token-b")]));
    let options = ServerOptions {
        max_body_bytes_per_tenant: 1024 * 1024,
        ..ServerOptions::default()
    };
    let app = router(store, tokens, options);
    let put = |auth: &str, key: &str, content: Vec<u8>| {
        Request::put(format!("/sync/v1/items/{key}"))
            .header(header::AUTHORIZATION, auth)
            .header(
                "x-sync-hash",
                sync_core::ContentHash::of(&content).to_string(),
            )
            .header(header::IF_NONE_MATCH, "*")
            .body(Body::from(content))
            .unwrap()
    };
    let get = |auth: &str, key: &str| {
        Request::get(format!("/sync/v1/items/{key}"))
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    for (auth, key, len) in [
        (A, "big.bin", 1024 * 1024),
        (A, "small.bin", 16),
        (B, "small.bin", 16),
    ] {
        let resp = app
            .clone()
            .oneshot(put(auth, key, vec![b'x'; len]))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{key}");
    }

    // Tenant a starts a 1 MiB download and does not read it.
    let unread = app.clone().oneshot(get(A, "big.bin")).await.unwrap();
    assert_eq!(unread.status(), StatusCode::OK);
    let refused = app.clone().oneshot(get(A, "small.bin")).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "an unread download must count against the tenant's share"
    );
    assert!(refused.headers().contains_key(header::RETRY_AFTER));

    let other = app.clone().oneshot(get(B, "small.bin")).await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another tenant downloads as usual"
    );

    // Read to the end, the download gives its share back.
    let body = unread.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 1024 * 1024);
    let again = app.clone().oneshot(get(A, "small.bin")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let body = again.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &[b'x'; 16]);
}
