//! The batch routes: a client sends many small items in few requests, a server without batch
//! routes is still spoken to (one item at a time), and malformed batches are 400s that change
//! nothing, never 500s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sync_core::memory::MemoryServerStore;
use sync_core::{
    ContentHash, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision, ServerConfig,
    ServerStore, Stamp, TenantId, Transport,
};
use tower::ServiceExt;
use transport_http::{router, HttpTransport, ServerOptions, StaticTokens};

fn req(key: &str, content: &[u8]) -> PushRequest {
    PushRequest {
        key: Key::new(key).unwrap(),
        precondition: Precondition::Create,
        content: Bytes::copy_from_slice(content),
        hash: ContentHash::of(content),
        stamp: Stamp::at(1_000_000, NodeId(7)),
        seen: Revision::ZERO,
    }
}

/// A server on loopback that counts requests, optionally without the batch routes.
async fn serve(batches: bool) -> (String, Arc<AtomicUsize>, Arc<MemoryServerStore>) {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let auth = Arc::new(StaticTokens::new([("t", "tok")]));
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = router(store.clone(), auth, ServerOptions::default()).layer(middleware::from_fn(
        move |req: Request, next: Next| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if !batches && req.uri().path().starts_with("/sync/v1/batch/") {
                    return StatusCode::NOT_FOUND.into_response();
                }
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_items_travel_in_few_requests_and_old_servers_still_work() {
    for batches in [true, false] {
        let (url, count, store) = serve(batches).await;
        let client = HttpTransport::new(&url, "tok".to_owned()).unwrap();
        let reqs: Vec<_> = (0..600)
            .map(|i| req(&format!("r/{i}"), b"record"))
            .collect();
        let results = client.push_many(reqs).await.unwrap();
        assert!(results
            .iter()
            .all(|r| matches!(r, Ok(PushOutcome::Accepted(_)))));
        let pushed = count.swap(0, Ordering::SeqCst);
        let keys: Vec<_> = (0..600)
            .map(|i| (Key::new(format!("r/{i}")).unwrap(), None))
            .collect();
        let fetched = client.fetch_many(keys).await.unwrap();
        assert!(fetched
            .iter()
            .all(|f| f.as_ref().is_ok_and(|f| &f.content[..] == b"record")));
        let fetches = count.swap(0, Ordering::SeqCst);
        if batches {
            assert!(pushed <= 3, "{pushed} requests for 600 pushes");
            assert!(fetches <= 3, "{fetches} requests for 600 fetches");
        } else {
            // One 404 each, then one request per item.
            assert_eq!(pushed, 601, "pushes without batch routes");
            assert_eq!(
                fetches, 600,
                "fetches after the server said it has no batches"
            );
        }
        let feed = store
            .changes(&TenantId::new("t"), None, 10_000)
            .await
            .unwrap();
        assert_eq!(feed.changes.len(), 601, "600 records and their folder");
    }
}

async fn call(app: &Router, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header(header::AUTHORIZATION, "Bearer tok")
        .body(body.into())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let manifest = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    (
        status,
        serde_json::from_slice(manifest).unwrap_or(Value::Null),
    )
}

fn batch(manifest: Value, contents: &[u8]) -> Vec<u8> {
    let mut body = serde_json::to_vec(&manifest).unwrap();
    body.push(b'\n');
    body.extend_from_slice(contents);
    body
}

#[tokio::test]
async fn malformed_batches_are_refused_whole_and_bad_items_alone() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let app = router(
        store.clone(),
        Arc::new(StaticTokens::new([("t", "tok")])),
        ServerOptions::default(),
    );
    let hash = |c: &[u8]| ContentHash::of(c).to_hex();
    for (body, why) in [
        (b"no newline".to_vec(), "no manifest line"),
        (b"{not json\nxx".to_vec(), "bad manifest"),
        (
            batch(
                json!({"items":[{"key":"a","if_match":null,"hash":hash(b"a"),"size":5}]}),
                b"a",
            ),
            "sizes that do not add up",
        ),
        (
            batch(
                json!({"items":[{"key":"a","if_match":null,"hash":hash(b"a"),"size":u64::MAX},
                                {"key":"b","if_match":null,"hash":hash(b"a"),"size":2}]}),
                b"a",
            ),
            "sizes that overflow",
        ),
        (
            batch(
                json!({"items": (0..1001).map(|i| json!({"key": format!("k{i}"), "if_match": null, "hash": hash(b""), "size": 0})).collect::<Vec<_>>()}),
                b"",
            ),
            "too many items",
        ),
    ] {
        let (status, body) = call(&app, "/sync/v1/batch/push", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{why}");
    }
    let feed = store.changes(&TenantId::new("t"), None, 10).await.unwrap();
    assert!(feed.changes.is_empty(), "a refused batch wrote something");

    // One bad key, one forged hash, one bad stamp, one good item: only the good one lands.
    let manifest = json!({"items":[
        {"key":"../x","if_match":null,"hash":hash(b"x"),"size":1},
        {"key":"b","if_match":null,"hash":hash(b"not b"),"size":1},
        {"key":"c","if_match":null,"hash":hash(b"c"),"stamp":"nope","size":1},
        {"key":"d","if_match":null,"hash":hash(b"d"),"size":1}
    ]});
    let (status, body) = call(&app, "/sync/v1/batch/push", batch(manifest, b"xbcd")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let codes: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["status"], r["error"]["code"]]))
        .collect();
    assert_eq!(
        codes,
        vec![
            json!([400, "invalid_key"]),
            json!([400, "hash_mismatch"]),
            json!([400, "invalid_request"]),
            json!([201, null]),
        ]
    );
    let feed = store.changes(&TenantId::new("t"), None, 10).await.unwrap();
    assert_eq!(feed.changes.len(), 1);

    // Fetch: a bad key and a missing key are per-item answers.
    let (status, body) = call(
        &app,
        "/sync/v1/batch/fetch",
        serde_json::to_vec(&json!({"items":[{"key":"d"},{"key":"../x"},{"key":"zz"}]})).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<&Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!(200), &json!(400), &json!(404)]);
    let (status, _) = call(&app, "/sync/v1/batch/fetch", "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
