//! A hostile server cannot drive the user's terminal: text it sends (here an error message
//! with a window-title and a clear-screen escape sequence) reaches folder-sync's human output
//! only as visible escapes, while `--json` keeps serde_json's escaping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::FOLDER_SYNC;

/// What the fake server says in every error: set the window title, then clear the screen.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";

/// A fake server on loopback that answers every request with `401` and an error body of the
/// protocol's shape whose message is [`HOSTILE`]. It serves at most 50 connections or 30 s,
/// then stops by itself. Returns its base URL.
fn hostile_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < 50 && Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    std::thread::spawn(move || answer(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    url
}

/// Reads requests on one connection and answers each with the hostile 401.
fn answer(mut stream: TcpStream) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = serde_json::json!({
        "error": { "code": "unauthorized", "message": HOSTILE }
    })
    .to_string();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..20 {
        // One request: headers up to the blank line (the client sends no body on a GET).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        let reply = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn folder_sync_once(url: &str, json: bool) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let mut cmd = Command::new(FOLDER_SYNC);
    cmd.arg("--dir")
        .arg(dir.path())
        .args(["--server", url, "--token", "t", "--once"]);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[test]
fn a_servers_escape_sequences_are_printed_as_visible_escapes() {
    let url = hostile_server();
    let out = folder_sync_once(&url, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout:?} {stderr:?}");
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.contains(&0x1b) && !bytes.contains(&0x07),
            "{name} holds a raw control byte: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let visible = r"\x1b]0;pwned\x07\x1b[2J";
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains(visible)),
        "{stderr:?}"
    );
    assert!(stdout.contains(visible), "the report line: {stdout:?}");
}

#[test]
fn json_output_keeps_serde_jsons_escaping() {
    let url = hostile_server();
    let out = folder_sync_once(&url, true);
    assert!(!out.stdout.contains(&0x1b), "{:?}", out.stdout);
    let line = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let messages: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains(HOSTILE)),
        "the JSON keeps the exact text for programs: {messages:?}"
    );
    assert!(!out.stderr.contains(&0x1b), "{:?}", out.stderr);
}
