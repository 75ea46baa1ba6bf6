//! End to end with the real programs (issue 5): `sync-server` on SQLite and `folder-sync`
//! processes on temporary folders, over HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The example binaries cargo built next to this test (`target/<profile>/examples/`).
fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        // `cargo test --test e2e_programs` alone does not build examples: build them once.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--examples"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "cargo build --examples failed");
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running `sync-server`, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(db: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(program("sync-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(["--token", "alice:alice-token", "--token", "bob:bob-token"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, url }
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `folder-sync --once --json` and returns (exit code, report).
fn sync_once(dir: &Path, url: &str, token: &str) -> (i32, Value) {
    let out = Command::new(program("folder-sync"))
        .arg("--dir")
        .arg(dir)
        .args(["--server", url, "--token", token, "--once", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let report: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "not one JSON line ({e}): {stdout:?} stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

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
