//! Serving a [`Router`] on a TCP listener until a shutdown signal, then stopping in bounded
//! time: [`serve`] and how it ended, [`Stopped`].
//!
//! This is the accept loop of `axum::serve` (one task per connection, HTTP/1.1 through
//! hyper-util) plus what a server process needs on top: `TCP_NODELAY` on every connection, and a
//! grace period after which requests still open (long-polls wait up to 60 s) are cut. It holds
//! no protocol logic: every request goes to the router unchanged.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight at shutdown finished within the grace period.
    Drained,
    /// The grace period ran out: the connections still serving a request (typically
    /// long-polls) were closed without an answer.
    Cut {
        /// How many connections were closed.
        connections: usize,
    },
}

/// Serves `app` on `listener` until `shutdown` completes, then stops within `grace`.
///
/// - Every accepted connection gets `TCP_NODELAY` (see [`nodelay`](super::nodelay)).
/// - When `shutdown` completes, the listener is closed (new connections are refused), idle
///   keep-alive connections are closed, and requests in flight may finish: each connection
///   closes after its current answer.
/// - Requests still open after `grace` (a long-poll may wait up to 60 s) are cut: their
///   connections are closed without an answer, and `serve` returns [`Stopped::Cut`]. The
///   client sees a dropped connection, an `Offline` failure it retries. With a store whose
///   every write is one transaction (SQLite, PostgreSQL), a cut request never leaves it
///   half-written.
///
/// `serve` returns only after every connection task has ended, so the router (and the store
/// it holds) is no longer in use by it. Dropping the future returned by `serve` closes every
/// connection at once. A failed `accept` (for example too many open files) is logged and
/// retried after a second, as `axum::serve` does; `serve` itself never fails.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sync_core::memory::MemoryServerStore;
/// use sync_core::ServerConfig;
/// use transport_http::server::{router, serve, ServerOptions, StaticTokens, Stopped};
///
/// # async fn run() -> std::io::Result<()> {
/// let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
/// let tokens = Arc::new(StaticTokens::new([("alice", "secret-token")]));
/// let app = router(store, tokens, ServerOptions::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// // Stop when `stop.send(())` is called (a program would wait for SIGTERM or Ctrl-C here);
/// // open long-polls then get 3 s before they are cut.
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// let shutdown = async {
///     let _ = stopped.await;
/// };
/// match serve(listener, app, shutdown, Duration::from_secs(3)).await {
///     Stopped::Drained => println!("stopped, every request answered"),
///     Stopped::Cut { connections } => println!("stopped, {connections} long-polls cut"),
/// }
/// # Ok(()) }
/// ```
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Stopped {
    // `true` once shutdown began; every connection task watches it.
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tracing::trace!(%peer, "connection accepted");
                    super::set_nodelay(&tcp);
                    connections.spawn(connection(tcp, app.clone(), closing_rx.clone()));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "accept error; retrying in 1 s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
            // Reap finished connections so the set does not grow with every one ever served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    closing_tx.send_replace(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if drained {
        Stopped::Drained
    } else {
        let open = connections.len();
        // Aborts every connection task and waits until each has dropped its socket and its
        // handle on the router.
        connections.shutdown().await;
        Stopped::Cut { connections: open }
    }
}

/// Serves one connection until it ends, or until shutdown begins and its current answer (if
/// any) is written.
async fn connection(tcp: TcpStream, app: Router, mut closing: watch::Receiver<bool>) {
    let builder = Builder::new(TokioExecutor::new());
    let mut conn = pin!(builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app)));
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        // Also taken if the sender is gone, which only happens once `serve` is dropped.
        _ = closing.wait_for(|closing| *closing) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::trace!(error = %e, "connection ended with an error during shutdown");
    }
}

/// Errors of one incoming connection, not of the listener: accept the next one at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
