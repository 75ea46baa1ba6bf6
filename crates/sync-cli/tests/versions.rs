//! `folder-sync history` and `folder-sync restore`, run as real processes over a shared remote
//! folder: listing versions, bringing one back as a normal edit, and the errors a person sees;
//! and `sync-server --keep-versions/--keep-versions-for` (retention) with its flag errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use common::{write, FOLDER_SYNC};

fn run(dir: &Path, remote: &Path, args: &[&str]) -> Output {
    Command::new(FOLDER_SYNC)
        .arg("--dir")
        .arg(dir)
        .arg("--remote-dir")
        .arg(remote)
        .args(args)
        .output()
        .unwrap()
}

fn json_line(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn history_lists_versions_and_restore_brings_one_back_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, remote) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("remote"),
    );
    for d in [&a, &b, &remote] {
        std::fs::create_dir_all(d).unwrap();
    }
    let file = a.join("notes/plan.txt");
    write(&file, b"first draft");
    assert!(run(&a, &remote, &["--once"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&file, b"second draft");
    assert!(run(&a, &remote, &["--once"]).status.success());

    let out = run(&a, &remote, &["history", "notes/plan.txt", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let versions = json_line(&out);
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let first = versions[0]["rev"].as_u64().unwrap();
    // The same through an absolute path, as text.
    let text = run(&a, &remote, &["history", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with(&format!("rev {first} ")), "{text}");

    let out = run(
        &a,
        &remote,
        &[
            "restore",
            "notes/plan.txt",
            "--rev",
            &first.to_string(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let restored = json_line(&out);
    assert_eq!(restored["rev"].as_u64(), Some(first));
    assert_eq!(
        restored["report"]["uploaded"].as_u64(),
        Some(1),
        "{restored}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"first draft");
    // What the file held is in the local backups.
    let backups = common::files(&a.join(".sync/backups"));
    assert!(
        backups.values().any(|c| c == b"second draft"),
        "{backups:?}"
    );

    // Another device gets the restored version; the history now has three versions.
    assert!(run(&b, &remote, &["--once"]).status.success());
    assert_eq!(
        std::fs::read(b.join("notes/plan.txt")).unwrap(),
        b"first draft"
    );
    let versions = json_line(&run(&b, &remote, &["history", "notes/plan.txt", "--json"]));
    assert_eq!(versions.as_array().unwrap().len(), 3);
}

#[test]
fn bad_paths_and_revisions_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, remote) = (tmp.path().join("a"), tmp.path().join("remote"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&remote).unwrap();
    write(&a.join("x.txt"), b"x");
    assert!(run(&a, &remote, &["--once"]).status.success());

    let outside = tmp.path().join("elsewhere.txt");
    let out = run(&a, &remote, &["history", outside.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not inside"), "{err}");

    let out = run(&a, &remote, &["restore", "x.txt", "--rev", "999"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot restore revision 999 of x.txt"),
        "{err}"
    );
    assert_eq!(std::fs::read(a.join("x.txt")).unwrap(), b"x");
}

/// `sync-server --keep-versions 2 --keep-versions-for 0s` keeps the newest two versions of a
/// key written through it; a bad retention flag is a usage error (exit 2) that says why.
#[tokio::test]
async fn sync_server_keeps_the_versions_its_retention_flags_say() {
    use sync_core::{ContentHash, Key, NodeId, Precondition, PushOutcome, PushRequest};
    use sync_core::{Revision, Stamp, Transport};

    let tmp = tempfile::tempdir().unwrap();
    let server = common::Server::start(
        &tmp.path().join("server.db"),
        &["--keep-versions", "2", "--keep-versions-for", "0s"],
    );
    let http = transport_http::client::HttpTransport::new(
        &server.url,
        "alice-token-0123456789".to_owned(),
    )
    .unwrap();
    let k = Key::new("notes/plan.txt").unwrap();
    let mut revs = Vec::new();
    for i in 0..5 {
        let content = bytes::Bytes::from(format!("version {i}"));
        let req = PushRequest {
            key: k.clone(),
            precondition: revs
                .last()
                .map_or(Precondition::Create, |&r| Precondition::Match(r)),
            hash: ContentHash::of(&content),
            content,
            stamp: Stamp::at(1_000_000 + i, NodeId(9)),
            seen: Revision::ZERO,
        };
        match http.push(req).await.unwrap() {
            PushOutcome::Accepted(m) => revs.push(m.rev),
            other => panic!("push {i}: {other:?}"),
        }
    }
    let kept: Vec<Revision> = http
        .history(&k)
        .await
        .unwrap()
        .iter()
        .map(|v| v.rev)
        .collect();
    assert_eq!(kept, revs[3..].to_vec(), "the newest two versions");
    assert_eq!(server.stop().code(), Some(0));

    for (flags, says) in [
        (
            ["--keep-versions-for", "30 days"],
            "a whole number and a unit",
        ),
        (["--keep-versions", "0"], "0"),
    ] {
        let out = Command::new(common::SYNC_SERVER)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(tmp.path().join("other.db"))
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}
