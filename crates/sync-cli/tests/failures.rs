//! How the programs fail: every one answers `--help`; bad usage exits 2 (clap); a failure
//! exits 1 with `error: ...` lines on stderr and never a stack backtrace, also with
//! `RUST_BACKTRACE=1`. And `sync-load-test` runs a short load against its embedded server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::{FOLDER_SYNC, SYNC_LOAD_TEST, SYNC_SERVER};

/// Runs `program args` with `RUST_BACKTRACE=1`.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

/// Exit code `code`, no backtrace anywhere, and (for failures) an `error: ` line on stderr.
fn assert_fails(out: &Output, code: i32, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: stdout {stdout:?} stderr {stderr:?}"
    );
    for text in [&stdout, &stderr] {
        // A panic prints "stack backtrace:", anyhow's Debug "Stack backtrace:".
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("stack backtrace") && !lower.contains("rust_backtrace"),
            "{what}: {text}"
        );
    }
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "{what}: no error line in {stderr:?}"
    );
    assert!(stderr.lines().count() <= 8, "{what}: {stderr}");
}

#[test]
fn every_program_answers_help() {
    for program in [SYNC_SERVER, FOLDER_SYNC, SYNC_LOAD_TEST] {
        let out = run(program, &["--help"]);
        assert!(out.status.success(), "{program}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));
    }
}

#[test]
fn bad_usage_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let db = tmp.path().join("s.db");
    let db = db.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 8] = [
        (FOLDER_SYNC, vec!["--dir", dir]),
        (
            FOLDER_SYNC,
            vec!["--dir", dir, "--server", "http://127.0.0.1:9"],
        ),
        (SYNC_SERVER, vec!["--db", db, "--token", "no-colon"]),
        // Tokens that are easy to guess: too short, too few different characters.
        (SYNC_SERVER, vec!["--db", db, "--token", "alice:s3cret"]),
        (
            SYNC_SERVER,
            vec!["--db", db, "--token", "alice:aaaaaaaaaaaaaaaaaaaa"],
        ),
        (
            SYNC_SERVER,
            vec![
                "--db",
                db,
                "--token",
                "a:0123456789abcdef",
                "--rate-limit",
                "0",
            ],
        ),
        (SYNC_LOAD_TEST, vec!["--clients", "0"]),
        (
            SYNC_LOAD_TEST,
            vec!["--server", "http://192.0.2.1:8080", "--token", "t"],
        ),
    ];
    for (program, args) in cases {
        assert_fails(&run(program, &args), 2, &format!("{program} {args:?}"));
    }
    let weak = run(SYNC_SERVER, &["--db", db, "--token", "alice:s3cret"]);
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("too easy to guess"), "{stderr}");
}

#[test]
fn folder_sync_failures_exit_1_without_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    let missing = tmp.path().join("missing");
    let missing = missing.to_str().unwrap();

    // The --remote-dir target does not exist.
    for once in [true, false] {
        let mut args = vec!["--dir", dir, "--remote-dir", missing];
        if once {
            args.push("--once");
        }
        let out = run(FOLDER_SYNC, &args);
        assert_fails(&out, 1, &format!("missing remote dir {args:?}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot open the remote folder"), "{stderr}");
    }
    // The folder to sync does not exist.
    let out = run(
        FOLDER_SYNC,
        &["--dir", missing, "--remote-dir", dir, "--once"],
    );
    assert_fails(&out, 1, "missing --dir");
    // Nothing listens at the server's address.
    for json in [false, true] {
        let mut args = vec![
            "--dir",
            dir,
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--once",
        ];
        if json {
            args.push("--json");
        }
        let out = run(FOLDER_SYNC, &args);
        assert_fails(&out, 1, &format!("unreachable server {args:?}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("server unreachable"), "{stderr}");
    }
    // Not a URL.
    let out = run(
        FOLDER_SYNC,
        &[
            "--dir",
            dir,
            "--server",
            "not a url",
            "--token",
            "t",
            "--once",
        ],
    );
    assert_fails(&out, 1, "bad URL");
}

#[test]
fn sync_server_failures_exit_1_without_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    // The database's folder does not exist.
    let db = tmp.path().join("no/such/folder/server.db");
    let out = run(
        SYNC_SERVER,
        &[
            "--db",
            db.to_str().unwrap(),
            "--token",
            "a:0123456789abcdef",
        ],
    );
    assert_fails(&out, 1, "missing database folder");
    // The address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let db = tmp.path().join("server.db");
    let out = run(
        SYNC_SERVER,
        &[
            "--listen",
            &addr,
            "--db",
            db.to_str().unwrap(),
            "--token",
            "a:0123456789abcdef",
        ],
    );
    assert_fails(&out, 1, "address in use");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    // PostgreSQL unreachable.
    let out = run(
        SYNC_SERVER,
        &[
            "--postgres",
            "postgres://u:p@127.0.0.1:9/db",
            "--token",
            "a:0123456789abcdef",
        ],
    );
    assert_fails(&out, 1, "unreachable PostgreSQL");
}

#[test]
fn a_short_load_test_on_the_embedded_server_passes() {
    let out = Command::new(SYNC_LOAD_TEST)
        .args(["--clients", "4", "--seconds", "2", "--keys", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "load-test: 4 clients of one tenant, 3 keys each, 2 s, against the embedded server"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("\nerrors: 0\n"), "{stdout}");
    assert!(stdout.contains(", lost = 0 ("), "{stdout}");
}
