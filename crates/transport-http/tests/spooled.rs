//! Large uploads kept on disk as they arrive (`ServerOptions::spool_dir`) and stored from
//! there, checked in-process against the router (`tower::ServiceExt::oneshot`) over a
//! `SqliteServerStore` on disk, the pair `sync-server` runs: the content lands whole, a body
//! whose hash is not the announced one is refused without a trace, and neither the spool
//! folder nor the blob folder keeps a temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use store_sqlite::SqliteServerStore;
use sync_core::{ContentHash, ServerConfig};
use tower::ServiceExt;
use transport_http::{router, ServerOptions, StaticTokens};

const AUTH: &str = "Bearer token-a";
const STAMP: &str = "1000000.0.0000000000000007";

/// 3 MiB that do not repeat, well over the size from which bodies are spooled.
fn big(seed: u8) -> Vec<u8> {
    (0..3 * 1024 * 1024)
        .map(|i: usize| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8 ^ seed)
        .collect()
}

fn put(path: &str, announced: ContentHash, content: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method("PUT")
        .uri(format!("/sync/v1/items/{path}"))
        .header(header::AUTHORIZATION, AUTH)
        .header(header::CONTENT_LENGTH, content.len())
        .header("if-none-match", "*")
        .header("x-sync-hash", announced.to_hex())
        .header("x-sync-stamp", STAMP)
        .body(Body::from(content))
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let answer = app.clone().oneshot(req).await.unwrap();
    let status = answer.status();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// Every file under `dir` whose name starts with `.tmp`.
fn temporary_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(".tmp") {
                found.push(entry.path());
            }
        }
    }
    found
}

#[tokio::test]
async fn a_spooled_upload_is_stored_from_its_file_and_a_wrong_one_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let store = SqliteServerStore::open(dir.path().join("server.db"), ServerConfig::default())
        .await
        .unwrap();
    let blobs = store.blob_dir().unwrap().to_path_buf();
    let tokens = Arc::new(StaticTokens::new([("a", "token-a")]));
    let app = router(
        Arc::new(store),
        tokens,
        ServerOptions {
            spool_dir: Some(spool.clone()),
            ..ServerOptions::default()
        },
    );

    let content = big(1);
    let hash = ContentHash::of(&content);
    let (status, body) = send(&app, put("big/a.bin", hash, content.clone())).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let item: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(item["size"], content.len() as u64, "{item}");

    let get = Request::builder()
        .uri("/sync/v1/items/big/a.bin")
        .header(header::AUTHORIZATION, AUTH)
        .body(Body::empty())
        .unwrap();
    let (status, got) = send(&app, get).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got == content, "the stored content is not the uploaded one");

    let other = big(2);
    let (status, body) = send(&app, put("big/b.bin", hash, other)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "hash_mismatch", "{error}");

    let feed = Request::builder()
        .uri("/sync/v1/changes")
        .header(header::AUTHORIZATION, AUTH)
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(&app, feed).await;
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let keys: Vec<&str> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["big", "big/a.bin"],
        "the refused upload left no item"
    );

    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "spool left files"
    );
    assert_eq!(temporary_files(&blobs), Vec::<std::path::PathBuf>::new());
}
