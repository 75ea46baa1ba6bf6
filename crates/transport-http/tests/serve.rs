//! `server::serve` in-process on 127.0.0.1:0: an open long-poll is cut after the grace period
//! and `serve` returns in bounded time; a request in flight at shutdown is answered, idle
//! keep-alive connections do not hold the stop, and new connections are refused.
//!
//! `server::serve_with`'s limits: connections that stall in their request head are closed
//! after the header timeout; with the connection cap taken by such clients a valid request
//! waits, then is answered once they time out; idle keep-alive connections are closed after the
//! idle timeout, but a long-poll in flight is not idle; with the default limits, 1,000
//! connections trickling their request heads a byte a second, or 1,000 idle keep-alive
//! connections, leave a normal client answered within a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use sync_core::memory::MemoryServerStore;
use sync_core::{Error, ServerConfig, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use transport_http::server::{
    router, serve, serve_with, ServeOptions, ServerOptions, StaticTokens, Stopped,
};
use transport_http::{HttpTransport, RetryPolicy};

/// The sync router over an empty in-memory store, one tenant `a` with token `token-a`.
fn app() -> Router {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a")]));
    router(store, tokens, ServerOptions::default())
}

/// Starts `serve` on 127.0.0.1:0; returns the base URL, the trigger of its shutdown and its
/// task, which yields how it stopped and when it returned.
async fn start(
    app: Router,
    grace: Duration,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<(Stopped, Instant)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let how = serve(
            listener,
            app,
            async {
                let _ = stopped.await;
            },
            grace,
        )
        .await;
        (how, Instant::now())
    });
    (url, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_long_poll_is_cut_after_the_grace_period() {
    let grace = Duration::from_millis(500);
    let (url, stop, server) = start(app(), grace).await;
    let client = HttpTransport::new(&url, "token-a".to_owned())
        .unwrap()
        .with_retry(RetryPolicy::none());
    let cursor = client.changes(None, 100).await.unwrap().cursor;
    let poll = tokio::spawn(async move {
        let result = client.wait(Some(&cursor), Duration::from_secs(30)).await;
        (result, Instant::now())
    });
    // Let the long-poll reach the server and start waiting there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!poll.is_finished(), "the long-poll ended before shutdown");

    let fired = Instant::now();
    stop.send(()).unwrap();
    let (how, returned) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve did not return within 10 s")
        .unwrap();
    let took = returned - fired;
    assert_eq!(how, Stopped::Cut { connections: 1 });
    assert!(
        took >= grace,
        "returned after {took:?}, before the grace period"
    );
    assert!(
        took < grace + Duration::from_secs(2),
        "returned after {took:?} (grace {grace:?})"
    );

    // The client sees a dropped connection at once, not the end of its 30 s wait.
    let (result, ended) = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the long-poll was not cut")
        .unwrap();
    assert!(
        matches!(result, Err(Error::Offline { .. })),
        "the cut long-poll answered {result:?}"
    );
    assert!(ended - fired < grace + Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_is_answered_and_new_ones_are_refused() {
    // A route that says when it started, then takes 700 ms to answer.
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let slow = Router::new().route(
        "/slow",
        get(move || {
            let started = started_tx.lock().unwrap().take();
            async move {
                if let Some(started) = started {
                    let _ = started.send(());
                }
                tokio::time::sleep(Duration::from_millis(700)).await;
                "done"
            }
        }),
    );
    let grace = Duration::from_secs(10);
    let (url, stop, server) = start(app().merge(slow), grace).await;

    // An idle keep-alive connection: answered once, then left open in this client's pool.
    let idle = reqwest::Client::new();
    let health = idle
        .get(format!("{url}/sync/v1/health"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    health.bytes().await.unwrap();

    let busy = reqwest::Client::new();
    let request = tokio::spawn({
        let url = url.clone();
        async move {
            let resp = busy.get(format!("{url}/slow")).send().await?;
            let status = resp.status();
            resp.text().await.map(|body| (status, body))
        }
    });
    started_rx.await.unwrap();
    let fired = Instant::now();
    stop.send(()).unwrap();

    let (status, body) = request
        .await
        .unwrap()
        .expect("the request in flight failed");
    assert_eq!((status.as_u16(), body.as_str()), (200, "done"));
    let (how, returned) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve did not return within 5 s: did the idle connection hold it?")
        .unwrap();
    assert_eq!(how, Stopped::Drained);
    assert!(
        returned - fired < Duration::from_secs(3),
        "returned {:?} after shutdown",
        returned - fired
    );

    // The listener is closed: a new connection is refused.
    let addr = url.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Starts `serve_with(options)` on 127.0.0.1:0; returns its address. It stops when the test's
/// runtime ends.
async fn start_with(options: ServeOptions) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(
        listener,
        app(),
        options,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    addr
}

/// A connection that sends the start of a request head and then nothing.
async fn stalled(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /sync/v1/batch/push HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tcp
}

/// When the server closed `tcp` (end of stream or reset), or `None` if it did not within
/// `within`. Skips whatever the server sent before closing.
async fn closed(tcp: &mut TcpStream, within: Duration) -> Option<Instant> {
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stalled_in_their_request_head_are_closed_after_the_header_timeout() {
    let header_timeout = Duration::from_millis(500);
    let addr = start_with(ServeOptions {
        header_timeout,
        ..ServeOptions::default()
    })
    .await;
    let opened = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(stalled(addr).await);
    }
    for tcp in &mut conns {
        let at = closed(tcp, Duration::from_secs(5))
            .await
            .expect("a stalled request head was still open after 5 s");
        let after = at - opened;
        assert!(
            after >= header_timeout - Duration::from_millis(50),
            "closed after {after:?}, before the header timeout"
        );
        assert!(
            after < header_timeout + Duration::from_secs(1),
            "closed after {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cap_taken_by_stalled_clients_a_request_waits_then_is_answered() {
    let header_timeout = Duration::from_millis(800);
    let addr = start_with(ServeOptions {
        header_timeout,
        max_connections: 4,
        ..ServeOptions::default()
    })
    .await;
    // The server's clocks start at its accepts, after this.
    let opened = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(stalled(addr).await);
    }
    // Let the server accept all four (the backlog would hand them over first anyway).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = reqwest::Client::new()
        .get(format!("http://{addr}/sync/v1/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the request was not answered once the stalled clients timed out");
    let waited = opened.elapsed();
    assert!(health.status().is_success(), "{}", health.status());
    // It waited for a slot: the cap held until the stalled clients timed out.
    assert!(
        waited >= header_timeout - Duration::from_millis(50),
        "answered {waited:?} after the stalled clients connected: the cap of 4 did not hold"
    );
    assert!(
        waited < header_timeout + Duration::from_secs(2),
        "{waited:?}"
    );
    for tcp in &mut conns {
        assert!(closed(tcp, Duration::from_secs(2)).await.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_but_a_long_poll_is_not_idle() {
    let idle_timeout = Duration::from_millis(400);
    let addr = start_with(ServeOptions {
        idle_timeout,
        ..ServeOptions::default()
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server's idle clock starts after it wrote the answer, after this.
    let sent = Instant::now();
    tcp.write_all(b"GET /sync/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let at = closed(&mut tcp, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection was still open after 5 s");
    let after = at - sent;
    assert!(
        after >= idle_timeout - Duration::from_millis(50),
        "closed {after:?} after the request, before the idle timeout"
    );

    // A long-poll of 1.5 s, well past the idle timeout, is answered, not cut.
    let client = HttpTransport::new(&format!("http://{addr}"), "token-a".to_owned())
        .unwrap()
        .with_retry(RetryPolicy::none());
    let cursor = client.changes(None, 100).await.unwrap().cursor;
    let started = Instant::now();
    let woke = client
        .wait(Some(&cursor), Duration::from_millis(1500))
        .await;
    assert!(woke.is_ok(), "the long-poll failed: {woke:?}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

/// Five requests of a normal client, each answered within a second.
async fn a_normal_client_is_answered_promptly(addr: std::net::SocketAddr, beside: &str) {
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let start = Instant::now();
        let resp = client
            .get(format!("http://{addr}/sync/v1/health"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("beside {beside}, a request failed: {e}"));
        let took = start.elapsed();
        assert!(resp.status().is_success(), "{}", resp.status());
        assert!(
            took < Duration::from_secs(1),
            "beside {beside}, a request took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_trickling_or_idle_connections_leave_a_normal_client_answered() {
    // 1,000 connections on each side of loopback, and some to spare.
    let limit = rlimit::increase_nofile_limit(4096).unwrap();
    assert!(
        limit >= 2_200,
        "this test needs 2,200 open files; the limit is {limit} (raise `ulimit -n`)"
    );
    // The default limits but a shorter header timeout, so the test sees it close the tricklers.
    let header_timeout = Duration::from_secs(3);
    let addr = start_with(ServeOptions {
        header_timeout,
        ..ServeOptions::default()
    })
    .await;

    // 1,000 clients send their request head one byte a second (it would take them 70 s).
    let head = b"POST /sync/v1/batch/push HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tricklers.spawn(async move {
            for byte in head {
                if tcp.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a_normal_client_is_answered_promptly(addr, "1,000 trickling clients").await;
    // The server closes every one at its header timeout: their next writes fail.
    let closed = tokio::time::timeout(header_timeout + Duration::from_secs(5), async {
        while tricklers.join_next().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "{} trickling clients were still connected long after the header timeout",
        tricklers.len()
    );

    // 1,000 clients each make a request and then keep the connection open, idle.
    let mut idle = Vec::new();
    for _ in 0..1_000 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /sync/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        idle.push(tcp);
    }
    a_normal_client_is_answered_promptly(addr, "1,000 idle keep-alive connections").await;
    drop(idle);
}

/// The status code of one `GET /sync/v1/changes` with `token`, sent from `from` (an address
/// of the loopback network) on a fresh connection.
async fn status_from(from: std::net::IpAddr, addr: std::net::SocketAddr, token: &str) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /sync/v1/changes HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_guesses_tokens_is_refused_but_others_are_not() {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a")]));
    let options = ServerOptions {
        max_failed_sign_ins_per_minute: 5,
        ..ServerOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(
        listener,
        router(store, tokens, options),
        ServeOptions::default(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let guesser: std::net::IpAddr = [127, 0, 0, 1].into();
    let neighbour: std::net::IpAddr = [127, 0, 0, 2].into();
    for guess in 0..5 {
        let code = status_from(guesser, addr, &format!("guess-{guess}")).await;
        assert_eq!(code, 401, "guess {guess}");
    }
    // Past its failures, the address is refused before its token is looked at: even the
    // right token gets 429, so guessing stops paying.
    assert_eq!(status_from(guesser, addr, "guess-5").await, 429);
    assert_eq!(status_from(guesser, addr, "token-a").await, 429);
    // Another address signs in as usual.
    assert_eq!(status_from(neighbour, addr, "token-a").await, 200);
    assert_eq!(status_from(neighbour, addr, "wrong").await, 401);
}
