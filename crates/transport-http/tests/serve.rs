//! `server::serve` in-process on 127.0.0.1:0: an open long-poll is cut after the grace period
//! and `serve` returns in bounded time; a request in flight at shutdown is answered, idle
//! keep-alive connections do not hold the stop, and new connections are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use sync_core::memory::MemoryServerStore;
use sync_core::{Error, ServerConfig, Transport};
use tokio::sync::oneshot;
use transport_http::server::{router, serve, ServerOptions, StaticTokens, Stopped};
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
