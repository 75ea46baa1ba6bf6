//! Retries (docs/PROTOCOL.md "Client behaviour"): [`RetryPolicy`] and the loop that sends one
//! request up to `max_attempts` times with exponential backoff and jitter (backon's schedule),
//! for failures that may pass: no connection, timeouts, 5xx, 408, and 429 (waiting at least its
//! `Retry-After`). Any other answer is returned at once.
//!
//! This module decides only whether and when to try again; it does not map answers to errors
//! (the caller does, with [`super::errors`]), so the last attempt's answer reaches the caller.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Response, StatusCode};
use sync_core::Error;

use super::errors::retry_after;

/// How a request that failed in a way that may pass is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry). Default 5.
    pub max_attempts: u32,
    /// The first backoff delay; each next one doubles. Default 250 ms.
    pub min_delay: Duration,
    /// The longest delay between two attempts, and the longest `Retry-After` the client waits
    /// out by itself (a longer one is returned as [`Error::Throttled`]). Default 30 s.
    pub max_delay: Duration,
    /// Adds a random part to each delay so that many clients do not retry in step.
    /// Default true.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff schedule: one delay per retry.
    fn schedule(&self) -> impl Iterator<Item = Duration> {
        let mut b = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        if self.jitter {
            b = b.with_jitter();
        }
        b.build()
    }
}

/// What one attempt gave.
pub(crate) struct Sent {
    /// The answer of the last attempt.
    pub response: Response,
    /// True when an earlier attempt failed after it may have reached the server (so a write
    /// may have been applied already).
    pub retried: bool,
}

/// True for answers worth another attempt.
fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Runs `attempt` until it gives an answer that is not worth retrying, or the policy's attempts
/// are used up (then the last answer or error is returned). `attempt` maps failures without an
/// answer (no connection, timeout) to [`Error::Offline`]; only those are retried among errors.
pub(crate) async fn send<F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> Result<Sent, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, Error>>,
{
    let mut schedule = policy.schedule();
    let mut retried = false;
    loop {
        let result = attempt().await;
        let wait_at_least = match &result {
            Ok(resp) if !retryable_status(resp.status()) => None,
            Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                match retry_after(resp.headers()) {
                    // The server asks for longer than we wait by ourselves: hand it up.
                    Some(d) if d > policy.max_delay => None,
                    Some(d) => Some(d),
                    None => Some(Duration::ZERO),
                }
            }
            Ok(_) => Some(Duration::ZERO),
            Err(Error::Offline { .. }) => Some(Duration::ZERO),
            Err(_) => None,
        };
        let Some(at_least) = wait_at_least else {
            return result.map(|response| Sent { response, retried });
        };
        let Some(delay) = schedule.next() else {
            return result.map(|response| Sent { response, retried });
        };
        let delay = delay.max(at_least);
        match &result {
            Ok(resp) => tracing::debug!(what, status = %resp.status(), ?delay, "retrying"),
            Err(e) => tracing::debug!(what, error = %e, ?delay, "retrying"),
        }
        drop(result);
        retried = true;
        tokio::time::sleep(delay).await;
    }
}
