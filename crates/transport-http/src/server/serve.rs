//! Serving a [`Router`] on a TCP listener until a shutdown signal, then stopping in bounded
//! time: [`serve`] and [`serve_with`] (with [`ServeOptions`]: limits and, with the `tls`
//! feature, HTTPS through [`TlsConfig`]), and how it ended, [`Stopped`].
//!
//! This is the accept loop of `axum::serve` (one task per connection, HTTP/1.1 through
//! hyper-util) plus what a server process needs on top: `TCP_NODELAY` on every connection; a cap
//! on open connections; a connection that does not send a complete request head in time, or
//! sits idle between requests too long, is closed; TLS (when asked for) is negotiated inside
//! each connection's task under the same head timeout, so a slow handshake never holds up
//! `accept`; and a grace period after which requests still open at shutdown (long-polls wait up
//! to 60 s) are cut. It holds no protocol logic: every request goes to the router unchanged.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::Request;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

#[cfg(feature = "tls")]
use super::TlsConfig;

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

/// The limits of [`serve_with`], and its TLS. `ServeOptions::default()` is what [`serve`] uses.
///
/// ```
/// use std::time::Duration;
/// use transport_http::server::ServeOptions;
///
/// let options = ServeOptions {
///     max_connections: 256,
///     header_timeout: Duration::from_secs(5),
///     ..ServeOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to send a complete request head (request line and headers):
    /// counted from the accept (after the TLS handshake, which must itself finish within this
    /// time) for a connection's first request, and from its first byte for a later one. A
    /// connection over it is closed without an answer, so clients that open connections and
    /// stall ("slowloris") cannot keep the slots of [`ServeOptions::max_connections`].
    /// Bodies are bounded by the router's `request_timeout`. Default 10 s.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit between two requests, with nothing sent either
    /// way, before it is closed. A connection with a request in flight (a long-poll waiting up
    /// to 60 s) is never idle. Default 60 s (the client keeps idle connections 90 s and opens
    /// a new one when the server has closed its old one).
    pub idle_timeout: Duration,
    /// The most connections open at once. When that many are open, `serve` stops accepting:
    /// new connections wait in the listen backlog (queued by the kernel, which refuses them
    /// once the backlog is full) and are accepted as open ones close, so a request waits rather
    /// than fails while the server is full. Keep it under the process's open-file limit.
    /// Default 1024; 0 is taken as 1.
    pub max_connections: usize,
    /// Serve HTTPS with this certificate (feature `tls`). Default `None`: plain HTTP.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: Option<TlsConfig>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops within `grace`; with
/// the default [`ServeOptions`] (plain HTTP, 10 s header timeout, 60 s idle timeout, at most
/// 1024 connections). [`serve_with`] takes other options.
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
    serve_with(listener, app, ServeOptions::default(), shutdown, grace).await
}

/// [`serve`] with `options`: other limits, or HTTPS (feature `tls`).
///
/// Everything [`serve`] promises holds. On top: a connection whose TLS handshake or request
/// head does not arrive within [`ServeOptions::header_timeout`], or that sits idle longer than
/// [`ServeOptions::idle_timeout`], is closed without an answer; at most
/// [`ServeOptions::max_connections`] are open at once, and further ones wait to be accepted.
///
/// ```no_run
/// # #[cfg(feature = "tls")]
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// use std::path::Path;
/// use std::time::Duration;
/// use transport_http::server::{serve_with, ServeOptions, TlsConfig};
///
/// let tls = TlsConfig::from_pem_files(Path::new("cert.pem"), Path::new("key.pem"))?;
/// let options = ServeOptions {
///     tls: Some(tls),
///     ..ServeOptions::default()
/// };
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve_with(listener, app, options, std::future::pending(), Duration::from_secs(3)).await;
/// # Ok(()) }
/// ```
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Stopped {
    let max_connections = options.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        app,
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        #[cfg(feature = "tls")]
        tls: options
            .tls
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.0)),
    });
    // One permit per open connection; a connection task holds its permit until it ends.
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let mut at_cap = false;
    // `true` once shutdown began; every connection task watches it.
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Accept only with a free slot: at the cap, new connections wait in the backlog.
            permit = slots.clone().acquire_owned(), if slot.is_none() => {
                // The semaphore is never closed, so this is always a permit.
                slot = permit.ok();
            }
            accepted = listener.accept(), if slot.is_some() => match accepted {
                Ok((tcp, peer)) => {
                    tracing::trace!(%peer, "connection accepted");
                    super::set_nodelay(&tcp);
                    let permit = slot.take();
                    connections.spawn(connection(tcp, peer, shared.clone(), closing_rx.clone(), permit));
                    let full = slots.available_permits() == 0;
                    if full && !at_cap {
                        tracing::warn!(
                            max_connections,
                            "open connections reached the cap; new ones wait until one closes"
                        );
                    }
                    at_cap = full;
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

/// What every connection task shares.
struct Shared {
    app: Router,
    header_timeout: Duration,
    idle_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// One connection, from its TLS handshake (if any) to its end; holds its `slot` until then.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
    slot: Option<OwnedSemaphorePermit>,
) {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &shared.tls {
        let mut closing = closing;
        let handshake = tokio::time::timeout(shared.header_timeout, acceptor.accept(tcp));
        let tls = tokio::select! {
            done = handshake => match done {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            },
            _ = closing.wait_for(|closing| *closing) => return,
        };
        http(tls, peer, &shared, closing).await;
        drop(slot);
        return;
    }
    http(tcp, peer, &shared, closing).await;
    drop(slot);
}

/// Serves HTTP on one connection until it ends, it times out (head or idle), or shutdown
/// begins and its current answer (if any) is written.
async fn http<S>(io: S, peer: SocketAddr, shared: &Shared, mut closing: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        io,
        activity: activity.clone(),
    });
    let service = TowerToHyperService::new(Counted {
        app: shared.app.clone(),
        activity: activity.clone(),
        peer,
    });
    let builder = Builder::new(TokioExecutor::new());
    let mut conn = pin!(builder.serve_connection(io, service));
    let (header, idle) = (shared.header_timeout, shared.idle_timeout);
    // Checked a few times per timeout: a connection is closed at most an eighth late.
    let tick = (header.min(idle) / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let watchdog = async {
        loop {
            tokio::time::sleep(tick).await;
            if let Some(why) = activity.expired(header, idle) {
                return why;
            }
        }
    };
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        why = watchdog => {
            // Dropping the connection closes it; nothing is in flight on it.
            tracing::debug!(why, "connection closed");
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

/// Where one connection is between requests, for its head and idle timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head: since the accept, or since the first byte after an idle
    /// spell.
    Head(Instant),
    /// This many requests in flight (answer not yet handed to hyper).
    Busy(usize),
    /// Answered; nothing moved since this instant.
    Idle(Instant),
}

/// The [`Phase`] of one connection, moved by its I/O ([`Tracked`]) and its requests
/// ([`Counted`]), read by its watchdog.
struct Activity(Mutex<Phase>);

impl Activity {
    fn new() -> Activity {
        Activity(Mutex::new(Phase::Head(Instant::now())))
    }

    fn update(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *phase = next(*phase);
    }

    /// Bytes arrived: after an idle spell, they start the next request's head.
    fn read(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            phase => phase,
        });
    }

    /// Bytes left (an answer's body still streaming): not idle.
    fn wrote(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Phase::Idle(Instant::now()),
            phase => phase,
        });
    }

    fn request_started(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        });
    }

    fn request_answered(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, header: Duration, idle: Duration) -> Option<&'static str> {
        let phase = *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match phase {
            Phase::Head(since) if since.elapsed() >= header => {
                Some("no complete request head within the header timeout")
            }
            Phase::Idle(since) if since.elapsed() >= idle => Some("idle past the idle timeout"),
            _ => None,
        }
    }
}

/// A connection's stream, telling its [`Activity`] when bytes move.
struct Tracked<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The router, telling a connection's [`Activity`] when a request starts and is answered.
#[derive(Clone)]
struct Counted {
    app: Router,
    activity: Arc<Activity>,
    /// The connection's peer, given to every request as `ConnectInfo` (for the limit on
    /// failed sign-ins per address).
    peer: SocketAddr,
}

/// Marks one request answered when dropped (also when hyper drops an unfinished one).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

impl<B> tower_service::Service<Request<B>> for Counted
where
    Router: tower_service::Service<Request<B>, Response = Response, Error = Infallible>,
    <Router as tower_service::Service<Request<B>>>::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.activity.request_started();
        let in_flight = InFlight(self.activity.clone());
        let answer = self.app.call(request);
        Box::pin(async move {
            let answered = answer.await;
            drop(in_flight);
            answered
        })
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
