//! The HTTP server of docs/PROTOCOL.md: [`router`] builds an axum [`Router`] over any
//! [`ServerStore`] and [`Authenticator`], serving every route under `/sync/v1`; [`serve`] runs
//! it on a TCP listener until a shutdown signal and stops in bounded time, and [`serve_with`]
//! does so with other limits ([`ServeOptions`]: header and idle timeouts, a connection cap)
//! or over HTTPS (feature `tls`: `TlsConfig`).
//!
//! The router is a thin layer: it authenticates, rate-limits, decodes and validates keys and
//! headers, limits and verifies bodies, calls the store, and maps results to statuses in one
//! place ([`errors`]). It keeps no state of its own besides the rate limiter and must not
//! sleep-poll: long-polls wait on [`ServerStore::wait`].

mod auth;
mod batch;
mod cors;
mod devices;
pub mod errors;
mod jwt;
pub(crate) mod keys;
mod limits;
pub mod observe;
mod routes;
mod serve;
mod spool;
#[cfg(feature = "tls")]
mod tls;
mod token_sources;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::Router;
use sync_core::ServerStore;
use tower_http::compression::predicate::{NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, DefaultPredicate};

pub use auth::{Authenticator, StaticTokens};
pub use cors::{parse_cors_origin, CorsOriginError};
pub use errors::ApiError;
pub use jwt::{JwtAuthenticator, JwtError, JWT_LEEWAY_SECS};
pub use serve::{serve, serve_with, ServeOptions, Stopped};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{TlsConfig, TlsError};
pub use token_sources::{
    check_token_strength, AnyOf, StoredTokens, TokenFile, TokenFileError, MIN_TOKEN_CHARS,
};

use crate::wire::PREFIX;

/// Settings of the HTTP server.
#[derive(Clone)]
pub struct ServerOptions {
    /// The largest item content a request may carry, in bytes (the store's own limit applies
    /// too; the smaller wins). Default [`sync_core::DEFAULT_MAX_ITEM_BYTES`] (20 MiB).
    pub max_item_bytes: u64,
    /// Requests per second allowed to one token on average. Default 5,000: a device's first
    /// sync sends one request per file as fast as the server answers (a 2-core server answers
    /// about 3,000 a second), so a lower default would make the limiter the bottleneck of every
    /// first sync; lower it to bound what one token can take from the others. There is no
    /// "off": 0 is taken as 1 request per second. Counted in this router's memory: routers
    /// (servers) sharing one database each allow a token this much.
    pub rate_limit_per_second: u32,
    /// Requests one token may send at once before the rate applies. Default 10,000.
    pub rate_limit_burst: u32,
    /// How long a request body may take to arrive, and how long a request may take besides
    /// its long-poll wait; over it: 408 `timeout`. Default 60 s.
    pub request_timeout: Duration,
    /// The longest long-poll `wait` the server honours (a longer one is shortened). Default 60 s.
    pub max_wait: Duration,
    /// The device tokens behind `GET /sync/v1/devices` and `DELETE /sync/v1/devices/<id>`;
    /// `None` (default): those routes answer 404. Authentication is the `Authenticator`'s job:
    /// add a [`StoredTokens`] over the same store to accept these tokens.
    pub token_store: Option<Arc<dyn sync_core::server::TokenStore>>,
    /// Failed sign-ins (an unknown token) one peer address may make per minute; past it,
    /// every request from that address is answered 429 before its token is looked at, until
    /// the minute is over, so tokens cannot be guessed at speed. 0 turns the limit off (for a
    /// server behind a proxy, where every request comes from the proxy's address). Requests
    /// without a known peer (served other than by [`serve`]) are not counted. Default 30.
    pub max_failed_sign_ins_per_minute: u32,
    /// Body bytes held in memory at once for all tenants: an upload reserves its length
    /// before it is read, until it is answered; a download reserves its length when the store
    /// gives the content whole, or 1 MiB when it streams it from a file (the SQLite store's
    /// content over 64 KiB), until the answer is sent or its connection closed. Past it,
    /// requests wait up to 10 s, then get 429. Default 512 MiB.
    pub max_body_bytes_in_flight: u64,
    /// Body bytes held at once for one tenant, counted as for `max_body_bytes_in_flight` (one
    /// transfer of any allowed size is always let in); past it, 429 with `Retry-After`.
    /// Default 64 MiB.
    pub max_body_bytes_per_tenant: u64,
    /// Web origins (`https://app.example.com`, scheme, host and port only) whose pages may call
    /// the API from a browser (CORS): preflights are answered, `Authorization` and the
    /// protocol's request headers are allowed, and `ETag`, `X-Sync-*`, `Retry-After` and
    /// `X-Request-Id` are exposed to them. Other origins get no CORS headers. Default: none
    /// (only same-origin pages and non-browser clients). Parse with [`parse_cors_origin`].
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// A folder where upload bodies over 1 MiB (or of no declared length) are written as they
    /// arrive, in unnamed owner-only temporary files: a slow or stalled upload then holds
    /// 256 KiB of memory, not its content, and reserves only that in the body budget until it
    /// has arrived. Put it on the store's disk, not on a RAM-backed `/tmp`. Default `None`:
    /// bodies are read into memory as they arrive.
    pub spool_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_item_bytes", &self.max_item_bytes)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("request_timeout", &self.request_timeout)
            .field("max_wait", &self.max_wait)
            .field("token_store", &self.token_store.is_some())
            .field(
                "max_failed_sign_ins_per_minute",
                &self.max_failed_sign_ins_per_minute,
            )
            .field("max_body_bytes_in_flight", &self.max_body_bytes_in_flight)
            .field("max_body_bytes_per_tenant", &self.max_body_bytes_per_tenant)
            .field("cors_origins", &self.cors_origins)
            .field("spool_dir", &self.spool_dir)
            .finish()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_item_bytes: sync_core::DEFAULT_MAX_ITEM_BYTES,
            rate_limit_per_second: 5_000,
            rate_limit_burst: 10_000,
            request_timeout: Duration::from_secs(60),
            max_wait: Duration::from_secs(60),
            token_store: None,
            max_failed_sign_ins_per_minute: 30,
            max_body_bytes_in_flight: 512 * 1024 * 1024,
            max_body_bytes_per_tenant: 64 * 1024 * 1024,
            cors_origins: Vec::new(),
            spool_dir: None,
        }
    }
}

/// What every handler shares.
pub(crate) struct AppState<S> {
    pub store: Arc<S>,
    pub options: Arc<ServerOptions>,
    /// Request-body bytes held at once.
    pub bodies: Arc<limits::BodyBudget>,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            options: self.options.clone(),
            bodies: self.bodies.clone(),
        }
    }
}

/// `listener` with `TCP_NODELAY` set on every connection it accepts; serve the router on it
/// (`axum::serve(transport_http::server::nodelay(listener), app)`). Without it a response written
/// in two segments (headers, then body) waits for the client's delayed ACK, about 40 ms per
/// request; `axum::serve` does not set it. A connection whose option cannot be set is served
/// anyway, with a warning in the log.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    fn set(tcp: &mut tokio::net::TcpStream) {
        set_nodelay(tcp);
    }
    axum::serve::ListenerExt::tap_io(listener, set as fn(&mut tokio::net::TcpStream))
}

/// Sets `TCP_NODELAY` on one accepted connection, with a warning in the log when it cannot.
fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
}

/// The router serving every route of docs/PROTOCOL.md under `/sync/v1`, with gzip responses,
/// request tracing, per-token rate limiting and the request timeout. An app can serve it
/// alone or mount it in its own router with [`Router::nest`].
pub fn router<S: ServerStore + 'static>(
    store: Arc<S>,
    auth: Arc<dyn Authenticator>,
    options: ServerOptions,
) -> Router {
    let overall = options.request_timeout + options.max_wait.min(Duration::from_secs(60));
    let auth_state = auth::AuthState {
        auth,
        limit: Arc::new(limits::RateLimit::new(
            options.rate_limit_per_second,
            options.rate_limit_burst,
        )),
        failed: limits::FailedSignIns::new(
            options.max_failed_sign_ins_per_minute,
            Duration::from_secs(60),
        )
        .map(Arc::new),
    };
    let devices: devices::Devices = options.token_store.clone();
    let cors_origins = options.cors_origins.clone();
    let bodies = limits::BodyBudget::new(
        options.max_body_bytes_in_flight,
        options.max_body_bytes_per_tenant,
        Duration::from_secs(10),
    );
    let state = AppState {
        store,
        options: Arc::new(options),
        bodies,
    };
    let p = |route: &str| format!("{PREFIX}{route}");
    let protected = Router::new()
        .route(
            &p("/changes"),
            get(routes::changes::<S>).fallback(routes::method_not_allowed),
        )
        .route(
            &p("/items/{*key}"),
            get(routes::get_item::<S>)
                .put(routes::put_item::<S>)
                .delete(routes::delete_item::<S>)
                .fallback(routes::method_not_allowed),
        )
        .route(
            &p("/history/{*key}"),
            get(routes::get_history::<S>)
                .post(routes::post_history::<S>)
                .fallback(routes::method_not_allowed),
        )
        .route(
            &p("/folders/{*key}"),
            put(routes::put_folder::<S>).fallback(routes::method_not_allowed),
        )
        .merge(
            Router::new()
                .route(
                    &p("/devices"),
                    get(devices::list).fallback(routes::method_not_allowed),
                )
                .route(
                    &p("/devices/{id}"),
                    delete(devices::revoke).fallback(routes::method_not_allowed),
                )
                .with_state(devices),
        )
        .route(
            &p("/info"),
            get(routes::info::<S>).fallback(routes::method_not_allowed),
        )
        .route(
            &p("/batch/push"),
            post(batch::push::<S>).fallback(routes::method_not_allowed),
        )
        .route(
            &p("/batch/fetch"),
            post(batch::fetch::<S>).fallback(routes::method_not_allowed),
        )
        .route(&p("/items/"), any(routes::empty_key))
        .route(&p("/history/"), any(routes::empty_key))
        .route(&p("/folders/"), any(routes::empty_key))
        .route_layer(middleware::from_fn_with_state(
            auth_state,
            auth::require_tenant,
        ))
        .with_state(state.clone());
    let app = Router::new()
        .route(
            &p("/health"),
            get(routes::health::<S>).fallback(routes::method_not_allowed),
        )
        .with_state(state)
        .merge(protected)
        .fallback(routes::no_such_route)
        .layer(middleware::from_fn_with_state(overall, request_timeout))
        .layer(middleware::from_fn(observe::observe))
        // gzip for JSON (change pages, histories, errors) but not item contents: they are
        // often already compressed or random, and deflating a 5 MiB body costs more than
        // sending it on a fast link (it made downloads of large files about 10x slower). The
        // fastest level: JSON and batches of records still shrink several times, for a
        // fraction of the default level's CPU (it was 6% of a first sync of 100,000 records).
        .layer(
            CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(
                    DefaultPredicate::new()
                        .and(NotForContentType::const_new("application/octet-stream")),
                ),
        );
    cors::layer(app, cors_origins)
}

/// Middleware: a request that takes longer than `limit` in all is answered 408 `timeout`.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::timeout(format!(
            "the request took longer than {} s",
            limit.as_secs()
        ))
        .into_response(),
    }
}
