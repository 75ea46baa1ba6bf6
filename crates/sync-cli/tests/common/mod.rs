//! Helpers shared by the test binaries that run the real programs: the binaries cargo built for
//! this package's tests, running `sync-server` and `folder-sync`, reading trees.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The `sync-server` binary cargo built for these tests.
pub const SYNC_SERVER: &str = env!("CARGO_BIN_EXE_sync-server");
/// The `folder-sync` binary cargo built for these tests.
pub const FOLDER_SYNC: &str = env!("CARGO_BIN_EXE_folder-sync");
/// The `sync-load-test` binary cargo built for these tests.
pub const SYNC_LOAD_TEST: &str = env!("CARGO_BIN_EXE_sync-load-test");

/// A running `sync-server`, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(db: &Path, extra: &[&str]) -> Server {
        let mut cmd = Command::new(SYNC_SERVER);
        cmd.args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args([
                "--token",
                "alice:alice-token-0123456789",
                "--token",
                "bob:bob-token-0123456789",
            ])
            .args(extra)
            .stderr(Stdio::null());
        let (child, url) = spawn_listening(cmd);
        Server { child, url }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
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
pub fn sync_once(dir: &Path, url: &str, token: &str) -> (i32, Value) {
    let out = Command::new(FOLDER_SYNC)
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

pub fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Every file under `root` (outside `.sync/`), by relative path.
pub fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".sync" || rel.starts_with(".sync/") {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
                _ => {}
            }
        }
    }
    out
}

/// Every `.sync-tmp-*` file anywhere under `root`.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if e.file_name().to_string_lossy().starts_with(".sync-tmp-") {
                out.push(path);
            }
        }
    }
    out
}

/// Starts `cmd` (a `sync-server`) with its stdout piped, waits for its first line
/// `listening on URL`, and returns the child and the URL.
pub fn spawn_listening(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}
