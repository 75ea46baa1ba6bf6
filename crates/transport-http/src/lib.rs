//! # transport-http
//!
//! The HTTP transport of the sync engine: docs/SPEC.md §6 as decided in detail by `docs/PROTOCOL.md`.
//!
//! - [`server::router`] builds an axum [`Router`](axum::Router) over any
//!   [`ServerStore`](sync_core::ServerStore) and an [`Authenticator`] (bearer token → tenant).
//!   It serves every route under `/sync/v1` and can be mounted by an app with
//!   [`Router::nest`](axum::Router::nest).
//! - [`server::serve`] serves a router on a TCP listener with `TCP_NODELAY` until a shutdown
//!   signal, lets requests in flight finish and cuts open long-polls after a grace period; it
//!   closes connections that stall before a complete request head or sit idle, and caps open
//!   connections. [`server::serve_with`] takes other limits, and with the feature `tls` serves
//!   HTTPS (`server::TlsConfig`, rustls).
//! - [`client::HttpTransport`] is a [`Transport`](sync_core::Transport) over reqwest (rustls,
//!   gzip, keep-alive) with retries (exponential backoff with jitter) for `Offline` and
//!   `Throttled` failures, and every failure mapped to its docs/SPEC.md §5 class. It trusts the
//!   webpki (Mozilla) roots, plus any CA given to `HttpTransport::with_ca_cert`.
//!
//! This crate holds no sync logic: it moves the [`sync_core`] operations over HTTP and back.
//!
//! Serving (here over the in-memory store; a real server uses `store-sqlite`):
//!
//! ```no_run
//! use std::sync::Arc;
//! use sync_core::memory::MemoryServerStore;
//! use sync_core::ServerConfig;
//! use transport_http::{nodelay, router, ServerOptions, StaticTokens};
//!
//! # async fn serve() -> std::io::Result<()> {
//! let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
//! let tokens = Arc::new(StaticTokens::new([("alice", "secret-token")]));
//! let sync = router(store, tokens, ServerOptions::default());
//! // Mounted under the app's own prefix: clients use "http://host:8080/myapp".
//! let app = axum::Router::new().nest("/myapp", sync);
//! // `nodelay`: TCP_NODELAY on every connection (else ~40 ms delayed-ACK stalls per request).
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(nodelay(listener), app).await
//! # }
//! ```
//!
//! A client:
//!
//! ```no_run
//! use sync_core::Transport;
//! use transport_http::HttpTransport;
//!
//! # async fn client() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = HttpTransport::new("http://127.0.0.1:8080/myapp", "secret-token".to_owned())?;
//! let page = transport.changes(None, 100).await?;
//! println!("{} changes", page.changes.len());
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
#[cfg(any(feature = "client", feature = "server"))]
mod wire;

#[cfg(feature = "client")]
pub use client::{ClientError, HttpTransport, RetryPolicy, StaticToken, TokenProvider};
#[cfg(feature = "server")]
pub use server::{
    nodelay, router, serve, serve_with, ApiError, Authenticator, ServeOptions, ServerOptions,
    StaticTokens, Stopped,
};
