//! Runs `examples/kv-sync.rs` as a test: each device step is a process (this test binary
//! again, running `kv_device_step`), so the record stores must keep their data across
//! restarts, and the todo deleted on one device must stay deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/kv-sync.rs"]
#[allow(dead_code)]
mod kv_sync;

/// A device step when run with `KV_DEVICE` set (by the test below); nothing otherwise.
#[tokio::test]
async fn kv_device_step() {
    if std::env::var_os("KV_DEVICE").is_some() {
        kv_sync::device_step().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_sync_example_keeps_deleted_todos_deleted_across_processes() {
    let exe = std::env::current_exe().unwrap();
    kv_sync::run(&exe, &["kv_device_step", "--exact", "--quiet"])
        .await
        .unwrap();
}
