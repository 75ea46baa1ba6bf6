//! Request limits (docs/PROTOCOL.md "Limits"): the per-token rate limit (governor, GCRA) and
//! reading a request body under a byte limit and a time limit.
//!
//! A body is never read past its limit: a `Content-Length` over it is refused before reading,
//! and a body without one (chunked) is cut as soon as it passes the limit.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::errors::ApiError;

/// A per-token request rate limit.
pub(crate) struct RateLimit {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimit {
    /// `per_second` requests a second on average, bursts of up to `burst` (both at least 1).
    pub(crate) fn new(per_second: u32, burst: u32) -> RateLimit {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when a request of `token` may go ahead now; otherwise the seconds to wait
    /// (rounded up, at least 1).
    pub(crate) fn check(&self, token: &str) -> Result<(), u64> {
        match self.limiter.check_key(&token.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err((wait.as_secs_f64().ceil() as u64).max(1))
            }
        }
    }
}

/// Reads a whole request body of at most `limit` bytes within `timeout`:
/// 413 `too_large` when the declared or actual length passes the limit (reading stops there),
/// 408 `timeout` when the body does not finish in time, 400 for a broken body.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = |size: &str| {
        ApiError::too_large(
            format!("the content is {size} bytes, over the server's limit of {limit} bytes"),
            limit,
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("malformed Content-Length"))?;
        if len > limit {
            return Err(too_large(&len.to_string()));
        }
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let collect = Limited::new(body, cap).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError::timeout(format!(
            "the request body did not arrive within {} s",
            timeout.as_secs()
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(&format!("more than {limit}")))
        }
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}
