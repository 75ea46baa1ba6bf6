//! `folder::watch` on real folders through a shared remote folder: a watched device uploads its
//! local edits and downloads remote ones by itself, reports each status once, and stops when
//! told; a folder that cannot be watched is an error. And `folder::exit_code`'s rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sync_core::{EngineConfig, Error, RunOptions, SyncFailed, SyncReport, SyncStatus, TenantId};
use sync_engine::folder::{self, FolderEngine, WatchOptions};
use transport_fs::FsTransport;

async fn device(dir: &Path, remote: &Path) -> FolderEngine<FsTransport> {
    std::fs::create_dir_all(dir).unwrap();
    let transport = FsTransport::open(remote, TenantId::new("me"))
        .await
        .unwrap();
    folder::open(dir, transport, EngineConfig::default())
        .await
        .unwrap()
}

/// Polls `ok` every 20 ms for up to `limit`.
async fn eventually(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_syncs_both_ways_by_itself_and_stops_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut watched = device(&a, &remote).await;
    let mut other = device(&b, &remote).await;

    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = WatchOptions {
        debounce: Duration::from_millis(100),
        run: RunOptions {
            long_poll: Duration::from_secs(2),
            ..RunOptions::default()
        },
    };
    let seen = lines.clone();
    let task = tokio::spawn(async move {
        let result = folder::watch(
            &mut watched,
            options,
            async {
                let _ = stopped.await;
            },
            move |status: &SyncStatus| seen.lock().unwrap().push(folder::status_line(status)),
        )
        .await;
        (result, watched)
    });

    // A local edit on the watched device reaches the other one, with no sync called on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(a.join("from-a.txt"), b"written on a").unwrap();
    let start = Instant::now();
    let mut arrived = false;
    while !arrived && start.elapsed() < Duration::from_secs(15) {
        other.sync_once().await.unwrap();
        arrived = std::fs::read(b.join("from-a.txt")).ok().as_deref() == Some(b"written on a");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        arrived,
        "the watched folder's edit never reached the remote"
    );

    // A change on the remote reaches the watched folder by itself.
    std::fs::write(b.join("from-b.txt"), b"written on b").unwrap();
    other.sync_once().await.unwrap();
    assert!(
        eventually(Duration::from_secs(15), || {
            std::fs::read(a.join("from-b.txt")).ok().as_deref() == Some(b"written on b")
        })
        .await,
        "the remote change never reached the watched folder"
    );

    // Stop: watch returns soon, with Ok.
    let fired = Instant::now();
    stop.send(()).unwrap();
    let (result, _engine) = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watch did not stop within 10 s")
        .unwrap();
    result.unwrap();
    eprintln!("stopped after {:?}", fired.elapsed());

    // Statuses: idle and syncing were reported, never the same line twice in a row.
    let lines = lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l == "syncing"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "idle"), "{lines:?}");
    assert!(lines.windows(2).all(|w| w[0] != w[1]), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_cannot_be_watched_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    let dir = tmp.path().join("gone");
    let mut engine = device(&dir, &remote).await;
    std::fs::remove_dir_all(&dir).unwrap();
    let result = folder::watch(
        &mut engine,
        WatchOptions::default(),
        std::future::pending(),
        |_| {},
    )
    .await;
    assert!(
        matches!(result, Err(replica_fs::ReplicaError::Watch { .. })),
        "{result:?}"
    );
}

#[test]
fn the_exit_code_is_one_only_for_auth_storage_and_offline() {
    let code = |error: Error| {
        folder::exit_code(&Err(SyncFailed {
            error,
            partial: SyncReport::default(),
        }))
    };
    let message = || "m".to_owned();
    assert_eq!(folder::exit_code(&Ok(SyncReport::default())), 0);
    assert_eq!(code(Error::Auth { message: message() }), 1);
    assert_eq!(code(Error::Storage { message: message() }), 1);
    assert_eq!(code(Error::offline(message())), 1);
    let throttled = Error::Throttled {
        retry_after: Some(Duration::from_secs(1)),
        message: message(),
    };
    assert_eq!(code(throttled), 0);
}
