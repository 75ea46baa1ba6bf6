//! `sync-server --metrics-listen`, as real processes: a `folder-sync` run against the server
//! shows up in the Prometheus text at `/metrics` (requests by route template and status,
//! writes), and keys never appear in it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::{write, FOLDER_SYNC, SYNC_SERVER};

/// The body of `GET /metrics` at `addr` (HTTP/1.0, read to the end).
fn scrape(addr: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    text
}

#[test]
fn a_sync_shows_in_the_servers_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(SYNC_SERVER)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(tmp.path().join("server.db"))
        .args(["--token", "alice:metrics-test-token-0123456789"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let metrics = line
        .trim()
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    line.clear();
    out.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let dir = tmp.path().join("device");
    write(&dir.join("notes/private-name.txt"), b"hello");
    let status = Command::new(FOLDER_SYNC)
        .arg("--dir")
        .arg(&dir)
        .args(["--server", &url, "--once"])
        .env("SYNC_TOKEN", "metrics-test-token-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let text = scrape(&metrics);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains(
            r#"sync_http_requests_total{method="GET",route="/sync/v1/changes",status="200"}"#
        ),
        "{text}"
    );
    let pushed = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"sync_writes_total{kind="push"} "#))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(pushed.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        text.contains(
            r#"sync_http_request_duration_seconds_bucket{route="/sync/v1/changes",le="0.1"}"#
        ),
        "latency is a histogram: {text}"
    );
    assert!(
        !text.contains("private-name"),
        "keys never reach the metrics: {text}"
    );
}
