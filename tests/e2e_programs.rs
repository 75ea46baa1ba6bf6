//! End to end with the real programs (issue 5): `sync-server` on SQLite and `folder-sync`
//! processes on temporary folders, over HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{program, sync_once, write, Server};

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

    let (code, report) = sync_once(&a, &server.url, "alice-token");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["uploaded"], 5, "{report}"); // 3 files + site + site/img
    for field in [
        "uploaded",
        "downloaded",
        "conflicts",
        "unchanged",
        "skipped",
        "errors",
    ] {
        assert!(report.get(field).is_some(), "missing {field}: {report}");
    }
    let (code, report) = sync_once(&b, &server.url, "alice-token");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["downloaded"], 5, "{report}");
    assert_eq!(
        std::fs::read(b.join("site/img/logo.bin")).unwrap(),
        [0u8, 159, 146, 150, 255]
    );
    assert_eq!(std::fs::read(b.join("readme.txt")).unwrap(), b"hello");

    // Quiet: nothing moves.
    let (_, report) = sync_once(&a, &server.url, "alice-token");
    assert_eq!(
        (report["uploaded"].as_u64(), report["downloaded"].as_u64()),
        (Some(0), Some(0))
    );

    // Another tenant sees nothing of alice's.
    let c = tmp.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    let (code, report) = sync_once(&c, &server.url, "bob-token");
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
    let (code, report) = sync_once(&a, "http://127.0.0.1:9", "alice-token");
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
        Command::new(program("folder-sync"))
            .arg("--dir")
            .arg(dir)
            .args(["--server", url, "--token", "alice-token"])
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
