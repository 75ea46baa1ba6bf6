//! CORS for browser clients (docs/PROTOCOL.md "Browsers (CORS)"): tower-http's `CorsLayer` for
//! the origins of `ServerOptions::cors_origins`, and [`parse_cors_origin`], the one check of an
//! origin given on the command line. Preflights are answered before authentication (a
//! browser sends them without the token); answers to origins not in the list carry no
//! `Access-Control-*` header at all.
//!
//! Only headers here: no route, no auth decision, no state.

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{
    AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH, ORIGIN, RETRY_AFTER,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::wire::{X_SYNC_HASH, X_SYNC_KIND, X_SYNC_SEEN, X_SYNC_STAMP};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);
const X_REQUEST_ID: &str = "x-request-id";

/// Why a string is not a web origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CORS origin {origin:?}: {reason}; give scheme, host and port only, e.g. https://app.example.com or http://localhost:5173")]
pub struct CorsOriginError {
    /// The string given.
    pub origin: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a web origin (`http://` or `https://`, a host, an optional port, no path, no
/// trailing slash) and returns it as the header value browsers send in `Origin`.
///
/// ```
/// use transport_http::server::parse_cors_origin;
/// assert!(parse_cors_origin("https://app.example.com").is_ok());
/// assert!(parse_cors_origin("http://localhost:5173").is_ok());
/// assert!(parse_cors_origin("https://app.example.com/").is_err());
/// assert!(parse_cors_origin("*").is_err());
/// ```
pub fn parse_cors_origin(origin: &str) -> Result<HeaderValue, CorsOriginError> {
    let fail = |reason| CorsOriginError {
        origin: origin.to_owned(),
        reason,
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| fail("it must start with http:// or https://"))?;
    if rest.is_empty() {
        return Err(fail("it has no host"));
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(fail("it must not have a path, query, user or spaces"));
    }
    if let Some((_, port)) = rest.rsplit_once(':').filter(|_| !rest.ends_with(']')) {
        if port.parse::<u16>().is_err() {
            return Err(fail("its port is not a number from 0 to 65535"));
        }
    }
    HeaderValue::from_str(origin).map_err(|_| fail("it has characters a header cannot carry"))
}

/// `app` with CORS for `origins` (unchanged when there are none).
pub(crate) fn layer(app: Router, origins: Vec<HeaderValue>) -> Router {
    if origins.is_empty() {
        return app;
    }
    let name = HeaderName::from_static;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.clone()))
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            IF_MATCH,
            IF_NONE_MATCH,
            name(X_SYNC_HASH),
            name(X_SYNC_STAMP),
            name(X_SYNC_SEEN),
            name(X_REQUEST_ID),
        ])
        .expose_headers([
            ETAG,
            RETRY_AFTER,
            name(X_SYNC_HASH),
            name(X_SYNC_STAMP),
            name(X_SYNC_KIND),
            name(X_REQUEST_ID),
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    app.layer(cors).layer(middleware::from_fn(move |req, next| {
        let allowed = origins.clone();
        strip_for_others(allowed, req, next)
    }))
}

/// Removes every `Access-Control-*` header from answers to origins not in `allowed`, so they
/// get no CORS header at all (tower-http still adds the method and header lists).
async fn strip_for_others(allowed: Vec<HeaderValue>, req: Request, next: Next) -> Response {
    let ours = req
        .headers()
        .get(ORIGIN)
        .is_some_and(|o| allowed.contains(o));
    let mut resp = next.run(req).await;
    if !ours {
        let names: Vec<HeaderName> = resp
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for k in names {
            resp.headers_mut().remove(k);
        }
    }
    resp
}
