//! A hostile server against the real client and engine (the client side of hostile input).
//!
//! Each scenario starts a fake sync server on 127.0.0.1:0 written here (a small axum app; for
//! the truncated body, a raw socket that promises more bytes than it sends and hangs up) that
//! answers garbage, truncated bodies, content that does not match its hash, or change feeds
//! whose keys try to leave the sync folder. It serves item content on every `GET` path but
//! `/changes`, so a key the client wrongly accepted would reach the folder replica even when
//! its URL is normalised to another route. The real `sync_engine::folder::open` +
//! `HttpTransport` syncs a temporary folder against it once.
//!
//! Two more fake servers answer change feeds that never end (every page says more follow)
//! or whose cursor goes back: the sync stops with an `Offline` error after its bound, instead
//! of pulling for ever.
//!
//! In every case: `sync_once` returns an error or a report with errors, never panics or hangs;
//! nothing is written outside the sync folder (the listing of everything else under the
//! temporary root is the same before and after, and no file named `escape.txt`, `abs.txt` or
//! `x` appears anywhere but where the scenario allows it); no `.sync-tmp-*` file is left
//! behind; and the error has a sensible docs/SPEC.md §5 class (`Offline` for garbage and truncation,
//! `Item` for a bad hash).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use sync_core::{ContentHash, EngineConfig, ErrorClass};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transport_http::{HttpTransport, RetryPolicy};

const CURSOR: &str = "c1.00000000000000aa.5";
const STAMP: &str = "1700000000000.0.00000000000000ab";
/// What the fake server serves as an item's content unless the scenario says otherwise.
const PWNED: &[u8] = b"pwned";
/// File names that must never appear where a scenario does not allow them.
const WATCHED: &[&str] = &["escape.txt", "abs.txt", "x"];

/// What `GET /changes` answers: status, content type, body.
type Answer = (StatusCode, &'static str, String);

/// What `GET /items/...` answers, whatever the key: the bytes and the `X-Sync-Hash` value.
#[derive(Clone)]
struct Content {
    body: &'static [u8],
    hash: String,
}

fn honest(body: &'static [u8]) -> Content {
    Content {
        body,
        hash: ContentHash::of(body).to_hex(),
    }
}

/// A change page holding `items`, as the protocol's JSON.
fn page(items: Vec<Value>) -> Answer {
    let body = json!({"changes": items, "cursor": CURSOR, "more": false}).to_string();
    (StatusCode::OK, "application/json", body)
}

fn file(key: &str, content: &[u8], rev: u64) -> Value {
    json!({"key": key, "kind": "file", "rev": rev, "hash": ContentHash::of(content).to_hex(),
           "size": content.len(), "stamp": STAMP, "deleted": false})
}

fn folder(key: &str, rev: u64) -> Value {
    json!({"key": key, "kind": "folder", "rev": rev, "hash": null, "size": 0, "stamp": STAMP,
           "deleted": false})
}

/// The fake server as an axum app; returns its base URL.
///
/// `GET /sync/v1/changes` answers `changes`; the batch routes answer 404 (as a server without
/// them); every other `GET`, whatever its path, answers `content` as an item's content. Not only `/sync/v1/items/...`: a client that sent a key
/// with a `..` segment would have its URL normalised (`/sync/v1/items/../escape.txt` becomes
/// `/sync/v1/escape.txt`), and a server that refused that path would stop the sync before the
/// key ever reached the folder replica, hiding whether the client writes outside the folder.
async fn serve(changes: Answer, content: Content) -> String {
    let changes = Arc::new(changes);
    let content = Arc::new(content);
    let app = Router::new()
        .route(
            "/sync/v1/changes",
            get(move || async move {
                let (status, ct, body) = (*changes).clone();
                (status, [(header::CONTENT_TYPE, ct)], body).into_response()
            }),
        )
        .fallback(move |method: Method, uri: axum::http::Uri| async move {
            // No batch routes (as an older server): every item is fetched on its own, through
            // the single-item paths these scenarios attack.
            if uri.path().starts_with("/sync/v1/batch/") {
                return (StatusCode::NOT_FOUND, "no batches").into_response();
            }
            if method != Method::GET {
                // The engine has nothing to upload in these scenarios: a server error.
                return (StatusCode::SERVICE_UNAVAILABLE, "no").into_response();
            }
            let c = (*content).clone();
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::ETAG, "\"1\"".to_owned()),
                    (HeaderName::from_static("x-sync-hash"), c.hash),
                    (HeaderName::from_static("x-sync-stamp"), STAMP.to_owned()),
                    (HeaderName::from_static("x-sync-kind"), "file".to_owned()),
                ],
                c.body,
            )
                .into_response()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A raw server: `/changes` answers `feed`; `/items/...` declares `Content-Length: declared`,
/// sends `sent` and hangs up. One request per connection.
async fn serve_truncating(feed: String, declared: usize, sent: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let feed = feed.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&buf).into_owned();
                let out = if request.starts_with("GET /sync/v1/changes") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{feed}",
                        feed.len()
                    )
                    .into_bytes()
                } else if request.starts_with("GET /sync/v1/items/") {
                    let mut out = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                         content-length: {declared}\r\netag: \"1\"\r\nx-sync-hash: {}\r\n\
                         x-sync-stamp: {STAMP}\r\nx-sync-kind: file\r\nconnection: close\r\n\r\n",
                        ContentHash::of(PWNED).to_hex()
                    )
                    .into_bytes();
                    out.extend_from_slice(sent);
                    out
                } else {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = conn.write_all(&out).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Every path under `root` (relative), not following symlinks.
fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// What a sync ended with.
struct Outcome {
    /// The error that stopped it, or the report's errors: (class, message).
    errors: Vec<(ErrorClass, String)>,
    stopped: bool,
}

/// One hostile scenario.
struct Scenario {
    name: &'static str,
    url: String,
    /// The classes an error of this scenario may have (at least one error must be reported).
    classes: &'static [ErrorClass],
    /// Paths (relative to the sync folder) that may hold a watched name afterwards.
    allowed: &'static [&'static str],
    /// Prepares the temporary root (`root`, sync folder `root/sync`) before the sync.
    setup: fn(&Path),
}

/// Runs one scenario on a fresh temporary root and checks every promise.
async fn check(s: Scenario) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dir = root.join("sync");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/keep.txt"), b"untouched").unwrap();
    (s.setup)(&root);
    let outside_before: BTreeSet<PathBuf> = listing(&root)
        .into_iter()
        .filter(|p| !p.starts_with("sync"))
        .collect();
    let system: Vec<(PathBuf, bool)> =
        ["/abs.txt", "/x", "/escape.txt", "/tmp/escape.txt", "/tmp/x"]
            .iter()
            .map(|p| (PathBuf::from(p), Path::new(p).exists()))
            .collect();

    let transport = HttpTransport::new(&s.url, "token".to_owned())
        .unwrap()
        .with_retry(RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            jitter: false,
        })
        .with_request_timeout(Duration::from_secs(5));
    let mut engine = sync_engine::folder::open(&dir, transport, EngineConfig::default())
        .await
        .unwrap();
    let run = tokio::spawn(async move {
        let r = engine.sync_once().await;
        drop(engine);
        r
    });
    let joined = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("{}: sync_once hung", s.name));
    let result = match joined {
        Ok(r) => r,
        Err(e) => panic!("{}: sync_once panicked: {e}", s.name),
    };
    let outcome = match result {
        Err(failed) => Outcome {
            errors: vec![(failed.error.class(), failed.error.to_string())],
            stopped: true,
        },
        Ok(report) => Outcome {
            errors: report
                .errors
                .iter()
                .map(|e| (e.class, e.message.clone()))
                .collect(),
            stopped: false,
        },
    };

    eprintln!(
        "{}: stopped={} {:?}",
        s.name, outcome.stopped, outcome.errors
    );
    // Nothing outside the sync folder changed (checked first: it is the promise that matters).
    let outside_after: BTreeSet<PathBuf> = listing(&root)
        .into_iter()
        .filter(|p| !p.starts_with("sync"))
        .collect();
    assert_eq!(
        outside_after, outside_before,
        "{}: something was written outside the sync folder",
        s.name
    );
    assert_eq!(
        std::fs::read(root.join("outside/keep.txt")).unwrap(),
        b"untouched",
        "{}",
        s.name
    );
    for (p, existed) in system {
        if p.exists() && !existed {
            // Written by this run: removed, so that the next run checks this path again.
            let _ = std::fs::remove_file(&p);
            panic!("{}: {} appeared", s.name, p.display());
        }
    }
    // Watched names only where allowed; no temporary file left.
    for p in listing(&root) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".sync-tmp-"),
            "{}: temporary file left: {}",
            s.name,
            p.display()
        );
        if WATCHED.contains(&name.as_str()) {
            let inside = p.strip_prefix("sync").ok();
            assert!(
                inside.is_some_and(|i| s.allowed.iter().any(|a| Path::new(a) == i)),
                "{}: {} was written",
                s.name,
                p.display()
            );
        }
    }
    // An error, of a sensible class.
    assert!(
        !outcome.errors.is_empty(),
        "{}: the sync reported no error",
        s.name
    );
    for (class, message) in &outcome.errors {
        assert!(
            s.classes.contains(class),
            "{}: error of class {class:?} (expected one of {:?}): {message}",
            s.name,
            s.classes
        );
    }
    outcome
}

fn nothing(_: &Path) {}

const OFFLINE: &[ErrorClass] = &[ErrorClass::Offline];
const ITEM: &[ErrorClass] = &[ErrorClass::Item];

#[tokio::test]
async fn a_server_answering_garbage_is_offline() {
    let feed_ok = page(vec![file("x", PWNED, 1)]);
    let answers: Vec<(&'static str, Answer)> = vec![
        (
            "not JSON",
            (StatusCode::OK, "text/plain", "hello, I am not JSON".into()),
        ),
        (
            "an HTML page",
            (
                StatusCode::OK,
                "text/html",
                "<html><body>Sign in to the Wi-Fi</body></html>".into(),
            ),
        ),
        ("empty", (StatusCode::OK, "application/json", String::new())),
        (
            "truncated JSON",
            (
                StatusCode::OK,
                "application/json",
                feed_ok.2[..feed_ok.2.len() / 2].to_owned(),
            ),
        ),
        (
            "wrong shape: changes is a string",
            (
                StatusCode::OK,
                "application/json",
                json!({"changes": "x", "cursor": CURSOR, "more": false}).to_string(),
            ),
        ),
        (
            "wrong shape: an array",
            (StatusCode::OK, "application/json", "[1,2,3]".into()),
        ),
        (
            "wrong shape: no cursor",
            (
                StatusCode::OK,
                "application/json",
                json!({"changes": [], "more": false}).to_string(),
            ),
        ),
        (
            "a cursor that is not one",
            (
                StatusCode::OK,
                "application/json",
                json!({"changes": [], "cursor": "../../etc", "more": false}).to_string(),
            ),
        ),
        (
            "an item without a hash field's type",
            (
                StatusCode::OK,
                "application/json",
                json!({"changes": [{"key": "x", "kind": "file", "rev": "one", "hash": 5,
                        "size": -1, "stamp": "now", "deleted": "no"}],
                       "cursor": CURSOR, "more": false})
                .to_string(),
            ),
        ),
        (
            "an unknown kind",
            (
                StatusCode::OK,
                "application/json",
                json!({"changes": [{"key": "x", "kind": "symlink", "rev": 1, "hash": null,
                        "size": 0, "stamp": STAMP, "deleted": false}],
                       "cursor": CURSOR, "more": false})
                .to_string(),
            ),
        ),
        (
            "a 500 with garbage",
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "\u{0}\u{1}".into(),
            ),
        ),
        (
            "a 200 that is a JSON error",
            (
                StatusCode::OK,
                "application/json",
                json!({"error": {"code": "internal", "message": "x"}}).to_string(),
            ),
        ),
    ];
    for (name, answer) in answers {
        let url = serve(answer, honest(PWNED)).await;
        let out = check(Scenario {
            name,
            url,
            classes: OFFLINE,
            allowed: &[],
            setup: nothing,
        })
        .await;
        assert!(out.stopped, "{name}: an Offline error stops the sync");
    }
}

#[tokio::test]
async fn a_truncated_item_body_is_offline_and_writes_nothing() {
    for (name, declared, sent) in [
        ("half the content, then a hang-up", 5, &b"pw"[..]),
        ("nothing of it, then a hang-up", 5, &b""[..]),
        ("a far bigger promise", 1 << 20, &b"pwned"[..]),
    ] {
        let feed = page(vec![file("x", PWNED, 1)]).2;
        let url = serve_truncating(feed, declared, sent).await;
        let out = check(Scenario {
            name,
            url,
            classes: OFFLINE,
            allowed: &[],
            setup: nothing,
        })
        .await;
        assert!(out.stopped, "{name}");
    }
}

#[tokio::test]
async fn content_that_does_not_match_its_hash_is_an_item_error_and_is_not_written() {
    let good: &'static [u8] = b"good content";
    let evil: &'static [u8] = b"evil content";
    let cases: Vec<(&'static str, Content)> = vec![
        // The body matches X-Sync-Hash, but not the feed's hash.
        ("the feed's hash differs", honest(evil)),
        // X-Sync-Hash repeats the feed's hash; the body is other bytes.
        (
            "X-Sync-Hash lies",
            Content {
                body: evil,
                hash: ContentHash::of(good).to_hex(),
            },
        ),
        // The body is right, the header names other content.
        (
            "X-Sync-Hash names other content",
            Content {
                body: good,
                hash: ContentHash::of(evil).to_hex(),
            },
        ),
        ("an empty body", honest(b"")),
    ];
    for (name, content) in cases {
        let url = serve(page(vec![file("x", good, 1)]), content).await;
        let out = check(Scenario {
            name,
            url,
            classes: ITEM,
            allowed: &[],
            setup: nothing,
        })
        .await;
        assert!(
            out.errors.iter().all(|(_, m)| m.contains("hash")),
            "{name}: {:?}",
            out.errors
        );
    }
    // A malformed X-Sync-Hash is an unreadable answer.
    let url = serve(
        page(vec![file("x", good, 1)]),
        Content {
            body: good,
            hash: "not-a-hash".into(),
        },
    )
    .await;
    check(Scenario {
        name: "a malformed X-Sync-Hash",
        url,
        classes: OFFLINE,
        allowed: &[],
        setup: nothing,
    })
    .await;
}

#[tokio::test]
async fn keys_that_escape_the_folder_write_nothing_outside() {
    // Keys that are not keys (docs/SPEC.md §1): the client refuses the page that carries them, so
    // nothing of it is applied; `Offline` (an unreadable answer) or `Item` are both sensible.
    // The fake server answers the content on any `GET` path, so a client that accepted a `..`
    // key would get its content (its fetch URL normalised to `/sync/v1/escape.txt` or the like)
    // and hand the key to the folder replica: these rows fail unless the key is refused.
    let either: &[ErrorClass] = &[ErrorClass::Offline, ErrorClass::Item];
    let bad: Vec<(&'static str, Vec<Value>)> = vec![
        ("../escape.txt", vec![file("../escape.txt", PWNED, 1)]),
        ("../../escape.txt", vec![file("../../escape.txt", PWNED, 1)]),
        ("/abs.txt", vec![file("/abs.txt", PWNED, 1)]),
        (
            "a/../../x",
            vec![folder("a", 1), file("a/../../x", PWNED, 2)],
        ),
        ("..\\x", vec![file("..\\x", PWNED, 1)]),
        (
            "..\\..\\escape.txt",
            vec![file("..\\..\\escape.txt", PWNED, 1)],
        ),
        ("C:\\x", vec![file("C:\\x", PWNED, 1)]),
        ("./x", vec![file("./x", PWNED, 1)]),
        ("a//x", vec![file("a//x", PWNED, 1)]),
        (
            "x with NUL",
            vec![file("x\u{0}/../../escape.txt", PWNED, 1)],
        ),
        ("a folder named ..", vec![folder("..", 1)]),
        (
            "a folder named .. with a file",
            vec![folder("..", 1), file("../x", PWNED, 2)],
        ),
        (
            "a good key, then a bad one",
            vec![file("good.txt", PWNED, 1), file("../escape.txt", PWNED, 2)],
        ),
    ];
    for (name, items) in bad {
        let url = serve(page(items), honest(PWNED)).await;
        check(Scenario {
            name,
            url,
            classes: either,
            allowed: &[],
            setup: nothing,
        })
        .await;
    }
}

#[tokio::test]
async fn percent_tricks_are_plain_names_inside_the_folder() {
    // Keys travel percent-encoded only in URLs; in a feed `%2e%2e` is a literal name, so these
    // are ordinary files inside the folder (the client must encode `%` when fetching them).
    let items = vec![
        folder("%2e%2e", 1),
        file("%2e%2e/escape.txt", PWNED, 2),
        file("..%2fx", PWNED, 3),
        file("%2E%2E%2F%2E%2E%2Fabs.txt", PWNED, 4),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sync");
    std::fs::create_dir_all(&dir).unwrap();
    let url = serve(page(items), honest(PWNED)).await;
    let transport = HttpTransport::new(&url, "token".to_owned()).unwrap();
    let mut engine = sync_engine::folder::open(&dir, transport, EngineConfig::default())
        .await
        .unwrap();
    let report = engine.sync_once().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.downloaded, report.folders), (3, 1));
    for p in ["%2e%2e/escape.txt", "..%2fx", "%2E%2E%2F%2E%2E%2Fabs.txt"] {
        assert_eq!(std::fs::read(dir.join(p)).unwrap(), PWNED, "{p}");
    }
    let mut outside = listing(tmp.path());
    outside.retain(|p| !p.starts_with("sync"));
    assert!(outside.is_empty(), "{outside:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_in_the_folder_are_not_written_through() {
    fn link_folder(root: &Path) {
        std::os::unix::fs::symlink(root.join("outside"), root.join("sync/out")).unwrap();
    }
    fn link_file(root: &Path) {
        std::os::unix::fs::symlink(root.join("outside/keep.txt"), root.join("sync/x")).unwrap();
    }
    // A symlinked folder on the way to a key: the file must not land in `outside/`.
    let url = serve(
        page(vec![folder("out", 1), file("out/escape.txt", PWNED, 2)]),
        honest(PWNED),
    )
    .await;
    check(Scenario {
        name: "a symlinked folder",
        url,
        classes: &[ErrorClass::Item, ErrorClass::Warning],
        allowed: &[],
        setup: link_folder,
    })
    .await;
    // A symlinked file where the remote has a file: `outside/keep.txt` must stay untouched
    // (`check` compares it), whatever becomes of the link.
    let url = serve(page(vec![file("x", PWNED, 1)]), honest(PWNED)).await;
    check(Scenario {
        name: "a symlinked file",
        url,
        classes: &[ErrorClass::Item, ErrorClass::Warning],
        allowed: &["x"],
        setup: link_file,
    })
    .await;
}

/// A fake server whose `GET /sync/v1/changes` answers `feed(since)` (the `since` query value),
/// counting the requests; everything else is refused. Returns its base URL and the counter.
async fn serve_feed(
    feed: impl Fn(Option<String>) -> Value + Send + Sync + 'static,
) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let feed = Arc::new(feed);
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = asked.clone();
    let app = Router::new()
        .route(
            "/sync/v1/changes",
            get(
                move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                    let feed = feed.clone();
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move { axum::Json(feed(q.get("since").cloned())) }
                },
            ),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), asked)
}

/// The revision in a cursor `c1.<epoch>.<rev>`.
fn cursor_rev(cursor: &str) -> u64 {
    cursor.rsplit('.').next().unwrap().parse().unwrap()
}

async fn sync_against(url: &str, config: EngineConfig) -> sync_core::SyncFailed {
    let tmp = tempfile::tempdir().unwrap();
    let transport = HttpTransport::new(url, "token".to_owned())
        .unwrap()
        .with_retry(RetryPolicy::none());
    let mut engine = sync_engine::folder::open(tmp.path(), transport, config)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), engine.sync_once())
        .await
        .expect("the sync did not end within 60 s")
        .expect_err("a sync against an endless or looping feed must fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_change_feed_stops_the_sync_after_its_bound() {
    // Every page brings 500 new files and says more follow, for ever.
    let (url, asked) = serve_feed(|since| {
        let from = since.as_deref().map_or(0, cursor_rev);
        let changes: Vec<Value> = (from + 1..=from + 500)
            .map(|rev| file(&format!("spam/{rev}.txt"), PWNED, rev))
            .collect();
        json!({"changes": changes, "cursor": format!("c1.00000000000000aa.{}", from + 500), "more": true})
    })
    .await;
    let failed = sync_against(
        &url,
        EngineConfig {
            page_size: 500,
            max_changes_per_sync: 5_000,
            ..EngineConfig::default()
        },
    )
    .await;
    assert_eq!(
        failed.error.class(),
        ErrorClass::Offline,
        "{}",
        failed.error
    );
    assert!(
        failed.error.to_string().contains("more than 5000 changes"),
        "{}",
        failed.error
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_feed_whose_cursor_goes_back_stops_the_sync() {
    // The cursor alternates between revisions 6 and 5, each page with a change and `more`.
    let (url, asked) = serve_feed(|since| {
        let next = match since.as_deref().map(cursor_rev) {
            Some(6) => 5,
            _ => 6,
        };
        json!({"changes": [file("loop.txt", PWNED, next)],
               "cursor": format!("c1.00000000000000aa.{next}"), "more": true})
    })
    .await;
    let failed = sync_against(&url, EngineConfig::default()).await;
    assert_eq!(
        failed.error.class(),
        ErrorClass::Offline,
        "{}",
        failed.error
    );
    assert!(
        failed.error.to_string().contains("did not move forward"),
        "{}",
        failed.error
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
}
