//! Authentication (docs/PROTOCOL.md "Basics"): the [`Authenticator`] trait an app implements to
//! map a bearer token to a tenant, the ready-made [`StaticTokens`], and the middleware that turns
//! `Authorization: Bearer <token>` into the request's [`TenantId`] (then applies the per-token
//! rate limit).
//!
//! Every route but `/health` goes through [`require_tenant`]; handlers read the tenant from the
//! request extensions and must never look at the `Authorization` header themselves. Tokens are
//! never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use sync_core::TenantId;

use super::errors::ApiError;
use super::limits::{FailedSignIns, RateLimit};

/// Maps a bearer token to the tenant it speaks for.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The tenant of `token`, or `None` when the token is unknown, expired or revoked.
    async fn tenant(&self, token: &str) -> Option<TenantId>;
}

/// A fixed list of `(tenant, token)` pairs, compared in constant time.
#[derive(Clone)]
pub struct StaticTokens {
    pairs: Vec<(TenantId, String)>,
}

impl StaticTokens {
    /// From `(tenant, token)` pairs. Several tokens may share a tenant.
    pub fn new<T, K>(pairs: impl IntoIterator<Item = (T, K)>) -> StaticTokens
    where
        T: Into<String>,
        K: Into<String>,
    {
        StaticTokens {
            pairs: pairs
                .into_iter()
                .map(|(t, k)| (TenantId::new(t), k.into()))
                .collect(),
        }
    }
}

impl StaticTokens {
    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens")
            .field(
                "tenants",
                &self.pairs.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Authenticator for StaticTokens {
    async fn tenant(&self, token: &str) -> Option<TenantId> {
        // Look at every pair, whatever matches, so the time taken does not say which token
        // (or how much of it) was right.
        let mut found: Option<&TenantId> = None;
        for (tenant, known) in &self.pairs {
            let eq: bool = known.as_bytes().ct_eq(token.as_bytes()).into();
            if eq && found.is_none() {
                found = Some(tenant);
            }
        }
        found.cloned()
    }
}

/// What the auth middleware needs.
#[derive(Clone)]
pub(crate) struct AuthState {
    pub auth: Arc<dyn Authenticator>,
    pub limit: Arc<RateLimit>,
    /// Failed sign-ins per peer address; `None`: not limited.
    pub failed: Option<Arc<FailedSignIns>>,
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &Request) -> Result<&str, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing Authorization header: send `Authorization: Bearer <token>`")
    })?;
    let malformed =
        || ApiError::unauthorized("malformed Authorization header: expected `Bearer <token>`");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed());
    }
    Ok(token)
}

/// Middleware: refuses a peer address past its failed sign-ins, authenticates the request
/// (counting a failure against its address), applies the per-token rate limit, and stores the
/// tenant in the request extensions; 401 `unauthorized` or 429 `rate_limited` otherwise.
pub(crate) async fn require_tenant(
    State(state): State<AuthState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let failures = state.failed.as_deref().zip(peer);
    if let Some((failed, ip)) = failures {
        if let Some(retry_after) = failed.blocked(ip) {
            tracing::debug!(%ip, retry_after, "too many failed sign-ins");
            return ApiError::busy(
                retry_after,
                "too many failed sign-ins from this address; retry after the time in Retry-After \
                 with a valid token",
            )
            .into_response();
        }
    }
    let token = match bearer(&req) {
        Ok(t) => t.to_owned(),
        Err(e) => return e.into_response(),
    };
    let Some(tenant) = state.auth.tenant(&token).await else {
        if let Some((failed, ip)) = failures {
            failed.failed(ip);
        }
        return ApiError::unauthorized("unknown or expired token; sign in again").into_response();
    };
    if let Err(retry_after) = state.limit.check(&token) {
        tracing::debug!(%tenant, retry_after, "rate limited");
        return ApiError::rate_limited(retry_after).into_response();
    }
    req.extensions_mut().insert(tenant);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn static_tokens_map_tokens_to_tenants() {
        let t = StaticTokens::new([("alice", "tok-a"), ("bob", "tok-b"), ("alice", "tok-a2")]);
        assert_eq!(t.tenant("tok-a").await, Some(TenantId::new("alice")));
        assert_eq!(t.tenant("tok-a2").await, Some(TenantId::new("alice")));
        assert_eq!(t.tenant("tok-b").await, Some(TenantId::new("bob")));
        assert_eq!(t.tenant("tok-").await, None);
        assert_eq!(t.tenant("tok-ab").await, None);
        assert_eq!(t.tenant("").await, None);
        assert!(
            !format!("{t:?}").contains("tok-a"),
            "tokens must not be printed"
        );
    }
}
