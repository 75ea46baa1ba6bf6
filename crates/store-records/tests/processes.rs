//! The record store as several processes see it: a process killed (SIGKILL) in the middle of
//! large transactions leaves a file that passes `integrity_check` with each transaction wholly
//! there or wholly absent, and two processes writing at once both succeed (one waits for the
//! other's lock) without losing a write.
//!
//! The child processes are this test binary again, running `child_role` with `RECORDS_CHILD`
//! set; without it, `child_role` does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use store_records::RecordStore;
use sync_core::Key;

const PUTS_PER_TX: usize = 20_000;

fn child(role: &str, path: &Path, prefix: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_role", "--exact", "--nocapture", "--test-threads=1"])
        .env("RECORDS_CHILD", role)
        .env("RECORDS_PATH", path)
        .env("RECORDS_PREFIX", prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// What a child process does, chosen by `RECORDS_CHILD`.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("RECORDS_CHILD") else {
        return;
    };
    let path = std::env::var("RECORDS_PATH").unwrap();
    let prefix = std::env::var("RECORDS_PREFIX").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = RecordStore::open(&path).await.unwrap();
        match role.as_str() {
            // Transactions of PUTS_PER_TX puts, each writing its number into every key and
            // into `marker`, until killed.
            "big-transactions" => {
                for n in 1u64.. {
                    store
                        .transaction(move |tx| {
                            let value = n.to_string();
                            for i in 0..PUTS_PER_TX {
                                tx.put(&Key::new(format!("big/{i:05}")).unwrap(), &value)?;
                            }
                            tx.put(&Key::new("marker").unwrap(), &value)?;
                            Ok(())
                        })
                        .await
                        .unwrap();
                }
            }
            // 200 small transactions under its own prefix.
            "small-transactions" => {
                for n in 0..200 {
                    let prefix = prefix.clone();
                    store
                        .transaction(move |tx| {
                            for i in 0..10 {
                                let key = Key::new(format!("{prefix}/{n:03}-{i}")).unwrap();
                                tx.put(&key, b"v")?;
                            }
                            Ok(())
                        })
                        .await
                        .unwrap();
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn integrity_ok(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_large_transactions_leaves_whole_transactions_only() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("records.db");
    // Different moments: early (the first transaction may not have committed), and later.
    for (round, after_ms) in [150u64, 700, 1_300, 2_100].into_iter().enumerate() {
        let mut proc = child("big-transactions", &path, "");
        std::thread::sleep(Duration::from_millis(after_ms));
        proc.kill().unwrap(); // SIGKILL on Unix
        proc.wait().unwrap();
        integrity_ok(&path);
        let store = RecordStore::open(&path).await.unwrap();
        let all = store.list("big/").await.unwrap();
        let marker = store.get(&Key::new("marker").unwrap()).await.unwrap();
        match marker {
            None => assert!(
                all.is_empty(),
                "round {round}: records without their marker"
            ),
            Some(m) => {
                assert_eq!(
                    all.len(),
                    PUTS_PER_TX,
                    "round {round}: a partial transaction"
                );
                assert!(
                    all.iter().all(|(_, v)| *v == m),
                    "round {round}: records from two transactions"
                );
            }
        }
        // And the store still works after the kill.
        store
            .put(&Key::new("after-kill").unwrap(), "ok")
            .await
            .unwrap();
        drop(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_write_at_once_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("records.db");
    // Create the file first, so both children open an existing store.
    drop(RecordStore::open(&path).await.unwrap());
    let started = Instant::now();
    let mut a = child("small-transactions", &path, "a");
    let mut b = child("small-transactions", &path, "b");
    assert!(a.wait().unwrap().success(), "process a failed");
    assert!(b.wait().unwrap().success(), "process b failed");
    integrity_ok(&path);
    let store = RecordStore::open(&path).await.unwrap();
    assert_eq!(store.list("a/").await.unwrap().len(), 2_000);
    assert_eq!(store.list("b/").await.unwrap().len(), 2_000);
    eprintln!("two writers: {:?}", started.elapsed());
}
