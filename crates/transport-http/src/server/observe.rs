//! Observing requests: a request id on every request, one log line per request, and metrics
//! through the [`metrics`] facade.
//!
//! The `observe` middleware wraps the router. It takes the client's `X-Request-Id` when it
//! is a short visible-ASCII value, else makes one; puts it in a tracing span around the
//! request and in the response's `X-Request-Id`; and when the answer is ready logs one line
//! (`info`, target `transport_http::request`) and records [`REQUESTS`], [`DURATION`],
//! [`BYTES_IN`] and [`BYTES_OUT`] under the route's template (never the raw path, so keys
//! never reach labels). The routes record [`WRITES`], [`LONG_POLLS`] and [`STORE_ERRORS`].
//!
//! Without an installed recorder (the library default) every metric is a no-op; a program
//! installs one (`sync-server --metrics-listen` installs the Prometheus exporter). This module
//! decides no answer and changes no response beyond adding the header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Requests answered, by `method`, `route` and `status` (a counter).
pub const REQUESTS: &str = "sync_http_requests_total";
/// Time from the request's arrival to its answer's headers, by `route` (a histogram, seconds).
pub const DURATION: &str = "sync_http_request_duration_seconds";
/// Request body bytes a request announced in `Content-Length`, by `route` (a counter).
pub const BYTES_IN: &str = "sync_http_request_bytes_total";
/// Response body bytes, by `route`, where the size is known when the answer starts (every
/// answer but streamed downloads) (a counter).
pub const BYTES_OUT: &str = "sync_http_response_bytes_total";
/// Writes the store accepted, by `kind` (`push`, `delete`, `folder`, `history`) (a counter;
/// a batch push counts each item).
pub const WRITES: &str = "sync_writes_total";
/// Long-polls waiting now (a gauge).
pub const LONG_POLLS: &str = "sync_long_polls_open";
/// Requests the store failed (answered 500) (a counter).
pub const STORE_ERRORS: &str = "sync_store_errors_total";

/// The header that carries the request id both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
const MAX_ID_LEN: usize = 64;

/// Middleware: see the module doc.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(req.headers().get(&REQUEST_ID));
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let bytes_in = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut resp = next.run(req).instrument(span).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let bytes_out = resp.body().size_hint().exact();
    tracing::info!(
        target: "transport_http::request",
        request_id = %id,
        %method,
        %route,
        status,
        ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(DURATION, "route" => route.clone()).record(elapsed.as_secs_f64());
    if let Some(n) = bytes_in {
        metrics::counter!(BYTES_IN, "route" => route.clone()).increment(n);
    }
    if let Some(n) = bytes_out {
        metrics::counter!(BYTES_OUT, "route" => route).increment(n);
    }
    resp
}

/// The client's id when it is 1 to [`MAX_ID_LEN`] visible ASCII characters, else a new one.
fn request_id(given: Option<&HeaderValue>) -> String {
    match given.and_then(|v| v.to_str().ok()) {
        Some(s)
            if !s.is_empty()
                && s.len() <= MAX_ID_LEN
                && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            s.to_owned()
        }
        _ => new_id(),
    }
}

/// A new id: this process's start (seconds, base 36 would do; hex here) and a counter, unique
/// within a process and unlikely to repeat across servers started at different seconds.
fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_secs() ^ u64::from(std::process::id()).rotate_left(32)
    });
    format!("{started:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Counts `n` writes of `kind` (see [`WRITES`]).
pub(crate) fn writes(kind: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(WRITES, "kind" => kind).increment(n);
    }
}

/// Holds one open long-poll in [`LONG_POLLS`] until dropped.
pub(crate) struct LongPoll(());

impl LongPoll {
    /// Counts a long-poll that starts waiting now.
    pub(crate) fn start() -> LongPoll {
        metrics::gauge!(LONG_POLLS).increment(1.0);
        LongPoll(())
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        metrics::gauge!(LONG_POLLS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(request_id(Some(&v("abc-123"))), "abc-123");
        for bad in ["", "has space", &"x".repeat(65)] {
            let id = request_id(Some(&v(bad)));
            assert_ne!(id, bad);
            assert!(id.contains('-') && id.len() <= MAX_ID_LEN, "{id}");
        }
        assert_ne!(request_id(None), request_id(None), "ids are unique");
    }
}
