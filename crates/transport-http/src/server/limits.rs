//! Request limits (docs/PROTOCOL.md "Limits"): the per-token rate limit (governor, GCRA), the
//! limit on failed sign-ins per peer address, the budget of request-body bytes held at once
//! (per tenant and in all), and reading a request body under a byte limit and a time limit.
//!
//! A body is never read past its limit: a `Content-Length` over it is refused before reading,
//! and a body without one (chunked) is cut as soon as it passes the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use sync_core::{ContentBody, ContentFile, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::ApiError;
use super::spool;

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

/// Peer addresses tracked at once by [`FailedSignIns`]; when full, the ones whose window is
/// over are dropped, and new addresses are not tracked until there is room.
const MAX_TRACKED_PEERS: usize = 65_536;

/// Failed sign-ins per peer address in fixed windows: after `max` in one window, the address
/// is refused until the window ends.
pub(crate) struct FailedSignIns {
    max: u32,
    window: Duration,
    peers: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedSignIns {
    /// At most `max` failures per `window` and address; `None` when `max` is 0 (no limit).
    pub(crate) fn new(max: u32, window: Duration) -> Option<FailedSignIns> {
        (max > 0).then(|| FailedSignIns {
            max,
            window,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// The seconds `peer` must wait (at least 1) when it used up its failures, else `None`.
    pub(crate) fn blocked(&self, peer: IpAddr) -> Option<u64> {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = peers.get(&peer)?;
        let left = self.window.checked_sub(start.elapsed())?;
        (*count >= self.max).then(|| (left.as_secs_f64().ceil() as u64).max(1))
    }

    /// Counts one failed sign-in of `peer`.
    pub(crate) fn failed(&self, peer: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            let window = self.window;
            peers.retain(|_, (start, _)| now.duration_since(*start) < window);
            if peers.len() >= MAX_TRACKED_PEERS {
                return;
            }
        }
        let entry = peers.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Request-body bytes the server holds at once: at most `per_tenant` for one tenant and
/// `total` for all. A body reserves its declared length (or the route's limit when it
/// declares none) before it is read, until its request is answered. A tenant over its share
/// gets 429 at once (its device retries); a server over its total lets a request wait up to
/// `wait`, then answers 429.
pub(crate) struct BodyBudget {
    total: Arc<Semaphore>,
    total_kib: u32,
    per_tenant: u64,
    wait: Duration,
    held: Mutex<HashMap<TenantId, u64>>,
}

/// A body's place in the [`BodyBudget`], given back when dropped.
pub(crate) struct BodyPermit {
    _total: Option<OwnedSemaphorePermit>,
    held: Option<(Arc<BodyBudget>, TenantId, u64)>,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if let Some((budget, tenant, bytes)) = self.held.take() {
            let mut held = budget.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(now) = held.get_mut(&tenant) {
                *now = now.saturating_sub(bytes);
                if *now == 0 {
                    held.remove(&tenant);
                }
            }
        }
    }
}

impl BodyBudget {
    /// A budget of `total` bytes, `per_tenant` of them for one tenant at most.
    pub(crate) fn new(total: u64, per_tenant: u64, wait: Duration) -> Arc<BodyBudget> {
        let total_kib = u32::try_from(total.div_ceil(1024))
            .unwrap_or(u32::MAX >> 3)
            .max(1);
        Arc::new(BodyBudget {
            total: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            per_tenant,
            wait,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Reserves `bytes` for a body of `tenant`. A tenant holding nothing may always reserve
    /// one body, however large (it is bounded by the route's limit).
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        tenant: &TenantId,
        bytes: u64,
    ) -> Result<BodyPermit, ApiError> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let now = held.get(tenant).copied().unwrap_or(0);
            if now > 0 && now.saturating_add(bytes) > self.per_tenant {
                tracing::debug!(%tenant, now, bytes, "request bodies over the tenant's share");
                return Err(ApiError::busy(
                    1,
                    "this account has too many uploads and downloads in progress; retry after the time in \
                     Retry-After",
                ));
            }
            *held.entry(tenant.clone()).or_insert(0) += bytes;
        }
        let held = Some((self.clone(), tenant.clone(), bytes));
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        let wait = tokio::time::timeout(self.wait, self.total.clone().acquire_many_owned(kib));
        match wait.await {
            Ok(Ok(permit)) => Ok(BodyPermit {
                _total: Some(permit),
                held,
            }),
            // Dropping the half-made permit gives the tenant's share back.
            _ => {
                drop(BodyPermit { _total: None, held });
                Err(ApiError::busy(
                    1,
                    "the server has too many uploads and downloads in progress; retry after the time in \
                     Retry-After",
                ))
            }
        }
    }
}

/// What a streamed answer ([`ContentBody::Chunks`]) reserves in the [`BodyBudget`]: about
/// what it holds in memory at most (a chunk being read, one waiting to be written, hyper's
/// write buffer).
const STREAM_HELD: u64 = 1024 * 1024;

/// The slices in which a whole answer is handed to hyper: its reservation is given back after
/// the last one, not as soon as the answer starts.
const SLICE: usize = 64 * 1024;

/// The body of an answer that sends `content` of `tenant`, with its bytes reserved in `budget`
/// until the body is sent or dropped (the connection closed): a whole content reserves its
/// length, a streamed one [`STREAM_HELD`]. A download that is never read thus counts against
/// the tenant's share and the total like an upload, until the connection's idle timeout
/// closes it.
pub(crate) async fn answer_body(
    budget: &Arc<BodyBudget>,
    tenant: &TenantId,
    content: ContentBody,
) -> Result<Body, ApiError> {
    let (reserve, chunks) = match content {
        ContentBody::Whole(bytes) => {
            let len = bytes.len();
            let slices = (0..len.div_ceil(SLICE)).map(move |i| {
                Ok::<_, std::io::Error>(bytes.slice(i * SLICE..((i + 1) * SLICE).min(len)))
            });
            (len as u64, futures::stream::iter(slices).boxed())
        }
        ContentBody::Chunks { len, chunks } => (len.min(STREAM_HELD), chunks),
    };
    let permit = budget.reserve(tenant, reserve).await?;
    Ok(Body::from_stream(chunks.map(move |chunk| {
        // The permit lives as long as the body's stream.
        let _held = &permit;
        chunk
    })))
}

/// [`read_body`] after reserving the body's bytes in `budget` for `tenant` (its declared
/// length, or `limit` when it declares none); the permit is held until the caller drops it.
/// A malformed or over-limit length is refused before anything is reserved.
pub(crate) async fn read_budgeted(
    budget: &Arc<BodyBudget>,
    tenant: &TenantId,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    timeout: Duration,
) -> Result<(Bytes, BodyPermit), ApiError> {
    let declared = declared_length(headers, limit)?;
    let permit = budget.reserve(tenant, declared.unwrap_or(limit)).await?;
    let bytes = collect_body(body, limit, timeout).await?;
    Ok((bytes, permit))
}

/// [`spool::spool_body`] under the [`BodyBudget`]: while the body arrives it reserves what a
/// spooling body holds ([`spool::BUFFER`] twice), then its length, held until the caller
/// drops the permit (a store may read the content into memory to store it). Gives the body
/// as a file with its hash.
pub(crate) async fn read_spooled(
    budget: &Arc<BodyBudget>,
    tenant: &TenantId,
    dir: &std::path::Path,
    body: Body,
    limit: u64,
    timeout: Duration,
) -> Result<(ContentFile, BodyPermit), ApiError> {
    let arriving = budget.reserve(tenant, 2 * spool::BUFFER as u64).await?;
    let spooled = spool::spool_body(dir, body, limit, timeout).await?;
    drop(arriving);
    let permit = budget.reserve(tenant, spooled.len()).await?;
    Ok((spooled.into_content(), permit))
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
    declared_length(headers, limit)?;
    collect_body(body, limit, timeout).await
}

/// 413 `too_large` for content of `size` bytes (as words) over `limit`.
pub(crate) fn too_large(size: &str, limit: u64) -> ApiError {
    ApiError::too_large(
        format!("the content is {size} bytes, over the server's limit of {limit} bytes"),
        limit,
    )
}

/// The body's `Content-Length`, if it declares one: 400 when malformed, 413 when over `limit`.
pub(crate) fn declared_length(headers: &HeaderMap, limit: u64) -> Result<Option<u64>, ApiError> {
    let Some(len) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let len: u64 = len
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::bad_request("malformed Content-Length"))?;
    if len > limit {
        return Err(too_large(&len.to_string(), limit));
    }
    Ok(Some(len))
}

/// The body, cut as soon as it passes `limit` bytes (413) or `timeout` (408).
async fn collect_body(body: Body, limit: u64, timeout: Duration) -> Result<Bytes, ApiError> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let collect = Limited::new(body, cap).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(body_timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(&format!("more than {limit}"), limit))
        }
        Ok(Err(e)) => Err(unreadable_body(e)),
    }
}

/// 408 `timeout` for a body that did not arrive within `timeout`.
pub(crate) fn body_timeout(timeout: Duration) -> ApiError {
    ApiError::timeout(format!(
        "the request body did not arrive within {} s",
        timeout.as_secs()
    ))
}

/// 400 for a body that broke off or was malformed on the wire.
pub(crate) fn unreadable_body(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("could not read the request body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_over_its_share_of_body_bytes_is_refused_and_others_go_on() {
        let budget = BodyBudget::new(4096, 2048, Duration::from_millis(50));
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        let first = budget.reserve(&a, 2048).await.unwrap();
        let refused = budget.reserve(&a, 1).await.err().unwrap();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        let other = budget.reserve(&b, 2048).await.unwrap();
        // The total is used up: a third tenant waits, then is refused.
        let c = TenantId::new("c");
        assert!(budget.reserve(&c, 1024).await.is_err(), "over the total");
        drop(first);
        let again = budget.reserve(&a, 2048).await.unwrap();
        drop((other, again));
        // One body larger than the tenant's share is taken when the tenant holds nothing.
        let large = budget.reserve(&a, 3000).await.unwrap();
        drop(large);
        assert!(
            budget.held.lock().unwrap().is_empty(),
            "every share given back"
        );
    }

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let limit = FailedSignIns::new(3, Duration::from_millis(200)).unwrap();
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        for _ in 0..2 {
            limit.failed(a);
        }
        assert_eq!(limit.blocked(a), None, "two failures of three");
        limit.failed(a);
        assert_eq!(limit.blocked(a), Some(1));
        assert_eq!(limit.blocked(b), None, "another address is not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limit.blocked(a), None, "the window is over");
        limit.failed(a);
        assert_eq!(limit.blocked(a), None, "a new window counts from zero");
        assert!(FailedSignIns::new(0, Duration::from_secs(60)).is_none());
    }
}
