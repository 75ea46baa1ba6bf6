//! `JwtAuthenticator`: good tokens give their tenant; expired, not yet valid, wrongly signed,
//! `alg: none`, algorithm-confused, wrong-audience, wrong-issuer and tenant-less tokens are
//! refused. HS256 with a secret, ES256 with a public key PEM, and a JWKS; then over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sync_core::memory::MemoryServerStore;
use sync_core::{ErrorClass, ServerConfig, Transport};
use transport_http::server::{Authenticator, JwtAuthenticator};
use transport_http::{router, HttpTransport, ServerOptions};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const PRIVATE: &str = include_str!("keys/es256-test-private.pem");
const PUBLIC: &str = include_str!("keys/es256-test-public.pem");
const OTHER_PUBLIC: &str = include_str!("keys/es256-other-public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn es(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_ec_pem(PRIVATE.as_bytes()).unwrap();
    encode(&header, claims, &key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // Unpadded base64url, enough for a hand-made `alg: none` token.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

async fn tenant(auth: &JwtAuthenticator, token: &str) -> Option<String> {
    auth.tenant(token).await.map(|t| t.as_str().to_owned())
}

#[tokio::test]
async fn hs256_tokens_are_checked_in_full() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let t = now();
    let good = json!({"sub": "alice", "exp": t + 600});
    assert_eq!(
        tenant(&auth, &hs(&good, SECRET)).await.as_deref(),
        Some("alice")
    );
    // Expired, beyond and within the leeway.
    assert_eq!(
        tenant(&auth, &hs(&json!({"sub": "a", "exp": t - 120}), SECRET)).await,
        None
    );
    assert!(
        tenant(&auth, &hs(&json!({"sub": "a", "exp": t - 5}), SECRET))
            .await
            .is_some()
    );
    // No exp at all.
    assert_eq!(tenant(&auth, &hs(&json!({"sub": "a"}), SECRET)).await, None);
    // Not yet valid.
    let early = json!({"sub": "a", "exp": t + 600, "nbf": t + 300});
    assert_eq!(tenant(&auth, &hs(&early, SECRET)).await, None);
    // Signed with another secret.
    let other = hs(&good, b"another-secret-another-secret-another!");
    assert_eq!(tenant(&auth, &other).await, None);
    // alg: none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    assert_eq!(tenant(&auth, &none).await, None);
    // No tenant claim; an empty one; a number.
    for claims in [
        json!({"exp": t + 600}),
        json!({"sub": "", "exp": t + 600}),
        json!({"sub": 7, "exp": t + 600}),
    ] {
        assert_eq!(tenant(&auth, &hs(&claims, SECRET)).await, None, "{claims}");
    }
    // Not a JWT at all: left to the other token sources.
    assert_eq!(tenant(&auth, "st_plain-device-token").await, None);
    // A short secret is refused up front.
    let err = JwtAuthenticator::hs256(b"short").unwrap_err();
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
}

#[tokio::test]
async fn issuer_audience_and_tenant_claim() {
    let auth = JwtAuthenticator::hs256(SECRET)
        .unwrap()
        .tenant_claim("org")
        .issuer("https://login.example.org")
        .audience("sync");
    let t = now() + 600;
    let good = json!({"org": "acme", "iss": "https://login.example.org", "aud": "sync", "exp": t});
    assert_eq!(
        tenant(&auth, &hs(&good, SECRET)).await.as_deref(),
        Some("acme")
    );
    let wrong_aud =
        json!({"org": "acme", "iss": "https://login.example.org", "aud": "mail", "exp": t});
    assert_eq!(tenant(&auth, &hs(&wrong_aud, SECRET)).await, None);
    let no_aud = json!({"org": "acme", "iss": "https://login.example.org", "exp": t});
    assert_eq!(tenant(&auth, &hs(&no_aud, SECRET)).await, None);
    let wrong_iss = json!({"org": "acme", "iss": "https://evil.example", "aud": "sync", "exp": t});
    assert_eq!(tenant(&auth, &hs(&wrong_iss, SECRET)).await, None);
    let no_iss = json!({"org": "acme", "aud": "sync", "exp": t});
    assert_eq!(tenant(&auth, &hs(&no_iss, SECRET)).await, None);
    let sub_only =
        json!({"sub": "acme", "iss": "https://login.example.org", "aud": "sync", "exp": t});
    assert_eq!(tenant(&auth, &hs(&sub_only, SECRET)).await, None);
}

#[tokio::test]
async fn es256_public_keys_and_jwks() {
    let claims = json!({"sub": "bob", "exp": now() + 600});
    let auth = JwtAuthenticator::public_key_pem(PUBLIC.as_bytes()).unwrap();
    assert_eq!(
        tenant(&auth, &es(&claims, None)).await.as_deref(),
        Some("bob")
    );
    // The same token against another key.
    let other = JwtAuthenticator::public_key_pem(OTHER_PUBLIC.as_bytes()).unwrap();
    assert_eq!(tenant(&other, &es(&claims, None)).await, None);
    // Algorithm confusion: an HS256 token "signed" with the public key's bytes.
    assert_eq!(tenant(&auth, &hs(&claims, PUBLIC.as_bytes())).await, None);
    assert!(JwtAuthenticator::public_key_pem(b"not a key").is_err());

    // A JWKS with the key under kid "k1".
    let key = EncodingKey::from_ec_pem(PRIVATE.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap();
    let auth = JwtAuthenticator::jwks(&set).unwrap();
    assert_eq!(
        tenant(&auth, &es(&claims, Some("k1"))).await.as_deref(),
        Some("bob")
    );
    assert_eq!(tenant(&auth, &es(&claims, Some("k2"))).await, None);
    assert_eq!(tenant(&auth, &es(&claims, None)).await, None);
    assert!(JwtAuthenticator::jwks(br#"{"keys":[]}"#).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_syncs_over_http_and_an_expired_one_is_an_auth_error() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let auth = Arc::new(JwtAuthenticator::hs256(SECRET).unwrap());
    let app = router(store.clone(), auth, ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let good = hs(&json!({"sub": "alice", "exp": now() + 600}), SECRET);
    let client = HttpTransport::new(&url, good).unwrap();
    client.changes(None, 10).await.unwrap();
    let expired = hs(&json!({"sub": "alice", "exp": now() - 600}), SECRET);
    let client = HttpTransport::new(&url, expired).unwrap();
    let err = client.changes(None, 10).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
}

/// A sign-in service's token source: the first token it hands out has expired; asked to
/// refresh, it signs a new one.
struct Refreshing {
    asked: std::sync::atomic::AtomicUsize,
    refreshed: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl transport_http::TokenProvider for Refreshing {
    async fn token(&self) -> sync_core::Result<String> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let fresh = self.refreshed.load(std::sync::atomic::Ordering::SeqCst) > 0;
        let exp = if fresh { now() + 600 } else { now() - 600 };
        Ok(hs(&json!({"sub": "alice", "exp": exp}), SECRET))
    }

    async fn refresh(&self, _rejected: &str) -> sync_core::Result<Option<String>> {
        self.refreshed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.token().await.map(Some)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_the_request_succeeds() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let auth = Arc::new(JwtAuthenticator::hs256(SECRET).unwrap());
    let app = router(store, auth, ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let provider = Arc::new(Refreshing {
        asked: Default::default(),
        refreshed: Default::default(),
    });
    let client = HttpTransport::new(&url, provider.clone()).unwrap();
    client.changes(None, 10).await.unwrap();
    assert_eq!(
        provider.refreshed.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // From then on the fresh token is used without refreshing again.
    client.changes(None, 10).await.unwrap();
    assert_eq!(
        provider.refreshed.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
