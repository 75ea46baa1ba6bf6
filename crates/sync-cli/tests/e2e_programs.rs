//! End to end with the real programs: `sync-server` on SQLite and `folder-sync`
//! processes on temporary folders, over HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{sync_once, write, Server, FOLDER_SYNC};

#[test]
fn server_and_two_folder_sync_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("server.db"), &[]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write(&a.join("site/index.html"), b"<h1>hi</h1>");
    write(&a.join("site/img/logo.bin"), &[0u8, 159, 146, 150, 255]);
    write(&a.join("readme.txt"), b"hello");

    let (code, report) = sync_once(&a, &server.url, "alice-token-0123456789");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["uploaded"], 3, "{report}"); // 3 files
    assert_eq!(report["folders"], 2, "{report}"); // site, site/img
    for field in [
        "uploaded",
        "downloaded",
        "folders",
        "conflicts",
        "unchanged",
        "skipped",
        "errors",
    ] {
        assert!(report.get(field).is_some(), "missing {field}: {report}");
    }
    let (code, report) = sync_once(&b, &server.url, "alice-token-0123456789");
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (&report["downloaded"], &report["folders"]),
        (&3.into(), &2.into()),
        "{report}"
    );
    assert_eq!(
        std::fs::read(b.join("site/img/logo.bin")).unwrap(),
        [0u8, 159, 146, 150, 255]
    );
    assert_eq!(std::fs::read(b.join("readme.txt")).unwrap(), b"hello");

    // Quiet: nothing moves.
    let (_, report) = sync_once(&a, &server.url, "alice-token-0123456789");
    assert_eq!(
        (report["uploaded"].as_u64(), report["downloaded"].as_u64()),
        (Some(0), Some(0))
    );

    // Another tenant sees nothing of alice's.
    let c = tmp.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    let (code, report) = sync_once(&c, &server.url, "bob-token-0123456789");
    assert_eq!(
        (code, report["downloaded"].as_u64()),
        (0, Some(0)),
        "{report}"
    );

    // A bad token: exit 1 and an auth error in the report.
    let d = tmp.path().join("d");
    std::fs::create_dir_all(&d).unwrap();
    let (code, report) = sync_once(&d, &server.url, "wrong");
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["errors"][0]["class"], "auth", "{report}");

    // The server stops cleanly on SIGTERM.
    let status = server.stop();
    assert!(status.success(), "{status:?}");

    // With the server gone: exit 1, offline.
    let (code, report) = sync_once(&a, "http://127.0.0.1:9", "alice-token-0123456789");
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["errors"][0]["class"], "offline", "{report}");
}

/// A running `folder-sync` in watch mode, killed when dropped.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watch(dir: &Path, url: &str) -> Watcher {
    Watcher(
        Command::new(FOLDER_SYNC)
            .arg("--dir")
            .arg(dir)
            .args(["--server", url, "--token", "alice-token-0123456789"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(deadline: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ok() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn an_edit_reaches_another_running_device_within_two_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("server.db"), &[]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let _wa = watch(&a, &server.url);
    let _wb = watch(&b, &server.url);
    // Let both finish their first sync and start watching.
    write(&a.join("warmup.txt"), b"w");
    assert!(wait_for(Duration::from_secs(10), || b.join("warmup.txt").exists()).is_some());
    let mut times = Vec::new();
    for i in 0..5 {
        let content = format!("edit {i}");
        write(&a.join("notes/live.txt"), content.as_bytes());
        let took = wait_for(Duration::from_secs(5), || {
            std::fs::read(b.join("notes/live.txt")).ok().as_deref() == Some(content.as_bytes())
        })
        .unwrap_or_else(|| panic!("edit {i} did not arrive within 5 s"));
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!("propagation times: {times:?}");
    assert!(
        median < Duration::from_secs(2),
        "median {median:?} (all {times:?})"
    );
}

#[test]
fn sync_server_stops_on_sigterm_within_its_grace_period_with_a_long_poll_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::SYNC_SERVER)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(tmp.path().join("server.db"))
        .args(["--token", "alice:alice-token-0123456789"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    // A long-poll of 30 s, open when the signal comes.
    let poll = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sync_core::Transport;
            let t = transport_http::HttpTransport::new(&url, "alice-token-0123456789".to_owned())
                .unwrap()
                .with_retry(transport_http::RetryPolicy::none());
            let cursor = t.changes(None, 10).await.unwrap().cursor;
            t.wait(Some(&cursor), Duration::from_secs(30)).await
        })
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(!poll.is_finished(), "the long-poll ended before the signal");
    let signalled = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?} {stderr}");
    // The grace period is 3 s.
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert!(stderr.contains("(long-polls) were cut"), "{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    assert!(poll.join().unwrap().is_err(), "the long-poll was answered");
}
