//! HTTPS end to end with the real programs: a CA and a server certificate made here (rcgen),
//! `sync-server --tls-cert --tls-key` on loopback, and `folder-sync --once --ca-cert` syncing
//! two folders through it. A client without the CA stops at once with a certificate error of
//! class auth (exit 1, not retried); bad TLS flags and files are named on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{files, write, Server, FOLDER_SYNC, SYNC_SERVER};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;

/// PEM files of a CA, and of a certificate for 127.0.0.1 and localhost signed by it.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certificates(dir: &Path) -> Certs {
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
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&certs.ca, ca.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `folder-sync --dir DIR --server URL --token alice-token --once --json EXTRA...`: the exit
/// code, the report and stderr.
fn sync_once(dir: &Path, url: &str, extra: &[&str]) -> (i32, Value, String) {
    let out = Command::new(FOLDER_SYNC)
        .args([
            "--dir",
            s(dir),
            "--server",
            url,
            "--token",
            "alice-token-0123456789",
        ])
        .args(["--once", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {stdout:?} stderr {stderr:?}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

#[test]
fn folder_sync_with_the_ca_syncs_two_folders_through_an_https_server() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = certificates(tmp.path());
    let server = Server::start(
        &tmp.path().join("server.db"),
        &["--tls-cert", s(&certs.cert), "--tls-key", s(&certs.key)],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&a.join("docs/plan.txt"), b"over https");
    write(&a.join("photo.bin"), &[0u8, 1, 2, 255]);
    std::fs::create_dir_all(&b).unwrap();

    let ca = ["--ca-cert", s(&certs.ca)];
    let (code, report, stderr) = sync_once(&a, &server.url, &ca);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(
        (&report["uploaded"], &report["folders"]),
        (&2.into(), &1.into()),
        "{report}"
    );
    let (code, report, stderr) = sync_once(&b, &server.url, &ca);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(
        (&report["downloaded"], &report["folders"]),
        (&2.into(), &1.into()),
        "{report}"
    );
    assert_eq!(files(&a), files(&b));

    // The name in the certificate works too.
    let by_name = server.url.replace("127.0.0.1", "localhost");
    let (code, report, stderr) = sync_once(&b, &by_name, &ca);
    assert_eq!(code, 0, "{report} {stderr}");

    let status = server.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn folder_sync_without_the_ca_stops_at_once_with_a_certificate_error() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = certificates(tmp.path());
    let server = Server::start(
        &tmp.path().join("server.db"),
        &["--tls-cert", s(&certs.cert), "--tls-key", s(&certs.key)],
    );
    let a = tmp.path().join("a");
    write(&a.join("x.txt"), b"x");
    let started = Instant::now();
    let (code, report, stderr) = sync_once(&a, &server.url, &[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{report} {stderr}");
    let error = &report["errors"][0];
    assert_eq!(error["class"], "auth", "{report}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("certificate is not trusted"), "{message}");
    assert!(message.contains("--ca-cert"), "{message}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert_eq!(report["uploaded"], 0, "{report}");
    // Not retried like an unreachable server (five attempts, about 4 s of backoff).
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

fn server_fails(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out: Output = Command::new(SYNC_SERVER)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--db",
            s(&tmp.path().join("s.db")),
        ])
        .args(["--token", "a:0123456789abcdef"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} started: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
    stderr
}

#[test]
fn sync_server_names_a_missing_or_bad_tls_file() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = certificates(tmp.path());
    let stderr = server_fails(&["--tls-cert", s(&certs.cert)]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let stderr = server_fails(&["--tls-key", s(&certs.key)]);
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    let missing = tmp.path().join("missing.pem");
    let stderr = server_fails(&["--tls-cert", s(&missing), "--tls-key", s(&certs.key)]);
    assert!(stderr.contains("missing.pem"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");

    // The certificate given as the key.
    let stderr = server_fails(&["--tls-cert", s(&certs.cert), "--tls-key", s(&certs.cert)]);
    assert!(
        stderr.contains("cert.pem") && stderr.contains("no private key"),
        "{stderr}"
    );
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
}
