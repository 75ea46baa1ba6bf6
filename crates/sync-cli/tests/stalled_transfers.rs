//! Transfers that stall, against a real `sync-server` on SQLite: the server streams content
//! kept in files, so thirty unread 19 MiB downloads do not grow its memory by thirty times
//! 19 MiB, and a download that stalls is cut when its connection's idle timeout passes; it
//! writes large upload bodies to disk as they arrive, so twenty uploads that stall near their
//! end do not hold twenty times their content in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use sync_core::ContentHash;

const TOKEN: &str = "alice-token-0123456789";
const LEN: usize = 19 * 1024 * 1024;
const UNREAD: usize = 30;

/// The resident memory of process `pid`, in bytes (`VmRSS` of `/proc/PID/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// `host:port` of a `http://host:port` URL.
fn addr(url: &str) -> &str {
    url.strip_prefix("http://").unwrap().trim_end_matches('/')
}

/// Uploads `content` as `key` with one HTTP/1.1 request as the device of `token`, and checks
/// it was created.
fn put(addr: &str, token: &str, key: &str, content: &[u8]) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /sync/v1/items/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         X-Sync-Hash: {}\r\nIf-None-Match: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ContentHash::of(content),
        content.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(content).unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// Downloads `key` whole as the device of `token`: the answer's head (lower case) and body.
fn get(addr: &str, token: &str, key: &str) -> (String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let head = format!(
        "GET /sync/v1/items/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = answer.split_off(split);
    (String::from_utf8_lossy(&answer).to_ascii_lowercase(), body)
}

/// Sends a download request for `key` and reads only the first bytes of the answer (its
/// status line), leaving the rest unread.
fn start_download(addr: &str, key: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let head = format!(
        "GET /sync/v1/items/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let mut status = [0u8; 12];
    tcp.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200", "the download was not let in");
    tcp
}

#[test]
fn unread_downloads_do_not_hold_their_content_and_stalled_ones_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("server.db"), &["--idle-timeout-secs", "3"]);
    let addr = addr(&server.url).to_owned();
    let content: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    put(&addr, TOKEN, "big.bin", &content);

    let before = rss(server.child.id());
    let unread: Vec<TcpStream> = (0..UNREAD)
        .map(|_| start_download(&addr, "big.bin"))
        .collect();
    // Give the server time to fill every connection's socket buffers.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(server.child.id());
    let grown = after.saturating_sub(before);
    // Whole contents would be 30 x 19 MiB = 570 MiB; streamed, each holds about a chunk.
    assert!(
        grown < 64 * 1024 * 1024,
        "{UNREAD} unread downloads grew the server from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );

    // Past the idle timeout, the server closes every stalled download: reading one now gets
    // what was in the socket buffers, then the end, well short of the content.
    std::thread::sleep(Duration::from_secs(5));
    let started = Instant::now();
    for mut tcp in unread {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading a stalled download: {e} after {got} bytes"),
            }
        }
        assert!(got < LEN, "a stalled download was sent whole ({got} bytes)");
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // And the server serves the content whole to a reader.
    let (head, body) = get(&addr, TOKEN, "big.bin");
    assert!(head.contains(&format!("content-length: {LEN}")), "{head}");
    assert!(body == content, "the content came back changed");
    server.stop();
}

#[test]
fn stalled_uploads_do_not_hold_their_content_in_memory() {
    const STALLED: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    // One tenant per upload, so the per-tenant share of body bytes is not what holds them back.
    let tokens: Vec<String> = (0..STALLED)
        .map(|i| format!("t{i}:tenant-{i:02}-token-0123456789"))
        .collect();
    let mut extra: Vec<&str> = Vec::new();
    for t in &tokens {
        extra.extend(["--token", t.as_str()]);
    }
    let server = Server::start(&tmp.path().join("server.db"), &extra);
    let addr = addr(&server.url).to_owned();
    let content: Vec<u8> = (0..LEN).map(|i| (i * 13 % 251) as u8).collect();
    let hash = ContentHash::of(&content);

    let before = rss(server.child.id());
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| {
            let mut tcp = TcpStream::connect(&addr).unwrap();
            let head = format!(
                "PUT /sync/v1/items/big.bin HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer tenant-{i:02}-token-0123456789\r\nX-Sync-Hash: {hash}\r\n\
                 If-None-Match: *\r\nContent-Length: {LEN}\r\n\r\n"
            );
            tcp.write_all(head.as_bytes()).unwrap();
            // All but the last MiB, then nothing more.
            tcp.write_all(&content[..LEN - (1 << 20)]).unwrap();
            tcp
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(server.child.id());
    let grown = after.saturating_sub(before);
    // Held in memory, the bodies would be 20 x 18 MiB = 360 MiB.
    assert!(
        grown < 64 * 1024 * 1024,
        "{STALLED} stalled uploads grew the server from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );
    // Close the stalled uploads (nothing of them is stored).
    drop(stalled);
    std::thread::sleep(Duration::from_millis(300));

    // A whole upload still goes through the same path and comes back unchanged.
    let token = "tenant-00-token-0123456789";
    put(&addr, token, "whole.bin", &content);
    let (_, body) = get(&addr, token, "whole.bin");
    assert!(body == content, "the content came back changed");
    let stored = std::fs::read_dir(server_blobs(tmp.path())).unwrap().count();
    assert!(stored > 0);
    server.stop();
}

/// The blob folder of `DIR/server.db`.
fn server_blobs(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("server.db.blobs")
}
