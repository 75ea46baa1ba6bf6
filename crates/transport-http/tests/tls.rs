//! `server::serve_with` over HTTPS in-process on 127.0.0.1:0, with a CA and a server
//! certificate made here (rcgen): a client given the CA syncs; one without it gets
//! `Error::Untrusted` at once (class Auth, not retried); a stalled handshake neither blocks
//! other connections nor stays open past the header timeout; bad PEM input is named.
//!
//! Run: `cargo test -p transport-http --features tls --test tls`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sync_core::memory::MemoryServerStore;
use sync_core::{
    ContentHash, Error, ErrorClass, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision,
    ServerConfig, Stamp, Transport,
};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use transport_http::server::{
    router, serve_with, ServeOptions, ServerOptions, StaticTokens, Stopped, TlsConfig, TlsError,
};
use transport_http::HttpTransport;

/// A CA, and a certificate for 127.0.0.1 and localhost signed by it: (CA PEM, cert PEM, key PEM).
fn certificates() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sync test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn app() -> Router {
    let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tokens = Arc::new(StaticTokens::new([("a", "token-a")]));
    router(store, tokens, ServerOptions::default())
}

struct Running {
    addr: SocketAddr,
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Stopped>,
}

async fn start(options: ServeOptions) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(
        listener,
        app(),
        options,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Running {
        addr,
        url: format!("https://{addr}"),
        stop,
        task,
    }
}

fn tls_options(cert: &str, key: &str) -> ServeOptions {
    ServeOptions {
        tls: Some(TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()),
        ..ServeOptions::default()
    }
}

fn push(key: &str, content: &'static [u8]) -> PushRequest {
    PushRequest {
        key: Key::new(key).unwrap(),
        precondition: Precondition::Create,
        content: Bytes::from_static(content),
        hash: ContentHash::of(content),
        stamp: Stamp::at(1_000_000, NodeId(7)),
        seen: Revision::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_the_ca_syncs_over_https() {
    let (ca, cert, key) = certificates();
    let server = start(tls_options(&cert, &key)).await;

    // A plain reqwest client with the CA as a root: the health route answers over TLS.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = http
        .get(format!("{}/sync/v1/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The name in the certificate works as well as the address.
    let by_name = format!("https://localhost:{}/sync/v1/health", server.addr.port());
    assert_eq!(http.get(by_name).send().await.unwrap().status(), 200);

    let client = HttpTransport::new(&server.url, "token-a".to_owned())
        .unwrap()
        .with_ca_cert(ca.as_bytes())
        .unwrap();
    let pushed = client.push(push("notes/a.txt", b"over tls")).await.unwrap();
    assert!(matches!(pushed, PushOutcome::Accepted(_)), "{pushed:?}");
    let fetched = client
        .fetch(&Key::new("notes/a.txt").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(&fetched.content[..], b"over tls");

    server.stop.send(()).unwrap();
    assert_eq!(server.task.await.unwrap(), Stopped::Drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_ca_is_refused_at_once_with_a_certificate_error() {
    let (_ca, cert, key) = certificates();
    let server = start(tls_options(&cert, &key)).await;
    // The default retry policy: five attempts for an Offline failure (about 4 s of backoff).
    let client = HttpTransport::new(&server.url, "token-a".to_owned()).unwrap();
    let started = Instant::now();
    let err = client.changes(None, 10).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Untrusted { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Auth);
    let msg = err.to_string();
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("--ca-cert"), "{msg}");
    // Retried as Offline it would take at least 3.75 s (250 ms doubling, four waits).
    assert!(took < Duration::from_secs(2), "retried: took {took:?}");

    // Another CA does not help.
    let (other_ca, _, _) = certificates();
    let client = HttpTransport::new(&server.url, "token-a".to_owned())
        .unwrap()
        .with_ca_cert(other_ca.as_bytes())
        .unwrap();
    let err = client.changes(None, 10).await.unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_does_not_hold_up_others_and_is_closed_after_the_header_timeout() {
    let (ca, cert, key) = certificates();
    let header_timeout = Duration::from_secs(2);
    let server = start(ServeOptions {
        header_timeout,
        ..tls_options(&cert, &key)
    })
    .await;
    // Connects and never sends a ClientHello.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let opened = Instant::now();

    let client = HttpTransport::new(&server.url, "token-a".to_owned())
        .unwrap()
        .with_ca_cert(ca.as_bytes())
        .unwrap();
    client.changes(None, 10).await.unwrap();
    assert!(
        opened.elapsed() < header_timeout,
        "a request waited behind a stalled handshake: {:?}",
        opened.elapsed()
    );

    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("the stalled handshake was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(opened.elapsed() >= header_timeout - Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_https_port_fails_instead_of_hanging() {
    let (_ca, cert, key) = certificates();
    let server = start(tls_options(&cert, &key)).await;
    let client = HttpTransport::new(&format!("http://{}", server.addr), "token-a".to_owned())
        .unwrap()
        .with_retry(transport_http::RetryPolicy::none());
    let err = tokio::time::timeout(Duration::from_secs(15), client.changes(None, 10))
        .await
        .expect("plain HTTP to the TLS port hung")
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Offline, "{err:?}");
}

#[test]
fn bad_pem_input_is_named_with_what_to_give() {
    let (ca, cert, key) = certificates();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cert_file = write("cert.pem", &cert);
    let key_file = write("key.pem", &key);
    assert!(TlsConfig::from_pem_files(&cert_file, &key_file).is_ok());

    let missing = tmp.path().join("missing.pem");
    let err = TlsConfig::from_pem_files(&missing, &key_file).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Read {
                what: "certificate",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    // The key where the certificate should be, and the other way round.
    let err = TlsConfig::from_pem_files(&key_file, &key_file).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    let err = TlsConfig::from_pem_files(&cert_file, &cert_file).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains("cert.pem"), "{err}");

    let broken = write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let err = TlsConfig::from_pem_files(&broken, &key_file).unwrap_err();
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.pem"), "{err}");

    // A key that is not the certificate's.
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let err = TlsConfig::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsError::Rejected { .. }), "{err:?}");

    // The client's CA input.
    let err = HttpTransport::new("https://127.0.0.1:1", "t".to_owned())
        .unwrap()
        .with_ca_cert(b"not a certificate")
        .unwrap_err();
    assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    assert!(HttpTransport::new("https://127.0.0.1:1", "t".to_owned())
        .unwrap()
        .with_ca_cert(ca.as_bytes())
        .is_ok());
}
