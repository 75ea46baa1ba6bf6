//! The device routes and stored tokens, in-process (`oneshot`): an app lists and revokes its
//! own tenant's device tokens, never another tenant's, and a revoked token stops at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sync_core::memory::MemoryServerStore;
use sync_core::server::TokenStore;
use sync_core::{ServerConfig, TenantId};
use tower::ServiceExt;
use transport_http::server::{AnyOf, StoredTokens};
use transport_http::{router, ServerOptions, StaticTokens};

async fn call(app: &Router, method: &str, path: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn a_tenant_lists_and_revokes_its_own_devices_only() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let alice = TenantId::new("alice");
    let laptop = store.add_token(&alice, "laptop").await.unwrap();
    let phone = store.add_token(&alice, "phone").await.unwrap();
    let bob = store
        .add_token(&TenantId::new("bob"), "desk")
        .await
        .unwrap();
    let auth = AnyOf::new()
        .with(Arc::new(StaticTokens::new([(
            "alice",
            "static-alice-token",
        )])))
        .with(Arc::new(StoredTokens::new(store.clone())));
    let options = ServerOptions {
        token_store: Some(store.clone()),
        ..ServerOptions::default()
    };
    let app = router(store.clone(), Arc::new(auth), options);

    let (status, body) = call(&app, "GET", "/sync/v1/devices", &laptop.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["laptop", "phone"]);
    assert!(
        !body.to_string().contains(&laptop.token),
        "a token was returned"
    );
    // A static token of the same tenant sees the same list.
    let (_, same) = call(&app, "GET", "/sync/v1/devices", "static-alice-token").await;
    assert_eq!(same, body);

    // Bob's device is not alice's to remove.
    let path = format!("/sync/v1/devices/{}", bob.info.id);
    let (status, body) = call(&app, "DELETE", &path, &laptop.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        call(&app, "GET", "/sync/v1/changes", &bob.token).await.0,
        StatusCode::OK
    );

    // The laptop removes the phone: the phone's next request is refused.
    assert_eq!(
        call(&app, "GET", "/sync/v1/changes", &phone.token).await.0,
        StatusCode::OK
    );
    let path = format!("/sync/v1/devices/{}", phone.info.id);
    assert_eq!(
        call(&app, "DELETE", &path, &laptop.token).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = call(&app, "GET", "/sync/v1/changes", &phone.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        call(&app, "DELETE", &path, &laptop.token).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn without_a_token_store_the_device_routes_say_so() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let auth = Arc::new(StaticTokens::new([("alice", "static-alice-token")]));
    let app = router(store, auth, ServerOptions::default());
    let (status, body) = call(&app, "GET", "/sync/v1/devices", "static-alice-token").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no device tokens"),
        "{body}"
    );
    let (status, _) = call(&app, "GET", "/sync/v1/devices", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
