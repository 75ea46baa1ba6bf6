//! The folder replica's change journal on a real temporary folder with a running watcher:
//! `scan_since` lists an edit, a new file, a removal, a new folder with files and a rename
//! exactly as a full scan does, a wake-up with no change walks nothing, a folder renamed away
//! falls back to a full scan, and an engine over the replica syncs edits without full scans.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use replica_fs::{FolderReplica, FolderWatcher};
use sync_core::memory::{LocalTransport, MemoryServerStore, MemoryStateStore};
use sync_core::{
    ChangedItems, Engine, EngineConfig, Key, KnownItem, Replica, Scan, ServerConfig, TenantId,
    DEFAULT_MAX_ITEM_BYTES,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const DEBOUNCE: Duration = Duration::from_millis(30);

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn known(scan: &Scan) -> BTreeMap<Key, KnownItem> {
    scan.items
        .iter()
        .map(|(k, i)| {
            let item = KnownItem {
                fingerprint: i.fingerprint,
                content: i.content,
            };
            (k.clone(), item)
        })
        .collect()
}

/// A replica of a new folder holding `files`, watched, after its first full scan.
struct Watched {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    replica: FolderReplica,
    _watcher: FolderWatcher,
    rx: mpsc::Receiver<()>,
    last: Scan,
}

impl Watched {
    async fn new(files: &[(&str, &str)]) -> Watched {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        for (path, content) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            // Out of the racy window, so a scan may trust the fingerprint.
            let old = std::time::SystemTime::now() - Duration::from_secs(60);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let replica = FolderReplica::new(&root).unwrap();
        let (watcher, rx) = FolderWatcher::start_for(&replica, DEBOUNCE).unwrap();
        let last = replica
            .scan(&BTreeMap::new(), DEFAULT_MAX_ITEM_BYTES)
            .await
            .unwrap();
        Watched {
            _dir: dir,
            root,
            replica,
            _watcher: watcher,
            rx,
            last,
        }
    }

    async fn token(&self) -> u64 {
        self.replica.change_token().await.unwrap().expect("a token")
    }

    /// Waits for the watcher's signal of the changes just made.
    async fn signalled(&mut self) {
        timeout(Duration::from_secs(3), self.rx.recv())
            .await
            .expect("a signal within 3 s")
            .expect("the channel is open");
    }

    async fn since(&self, token: u64, also: &[&str]) -> Option<ChangedItems> {
        let also: BTreeSet<Key> = also.iter().map(|s| key(s)).collect();
        self.replica
            .scan_since(token, &also, DEFAULT_MAX_ITEM_BYTES)
            .await
            .unwrap()
    }

    /// A full scan now, with the previous one as what is known.
    async fn full(&mut self) -> Scan {
        let scan = self
            .replica
            .scan(&known(&self.last), DEFAULT_MAX_ITEM_BYTES)
            .await
            .unwrap();
        self.last = scan.clone();
        scan
    }
}

/// `changed` names exactly `keys` and lists each of them as `full` does.
fn same_as_full(changed: &ChangedItems, full: &Scan, keys: &[&str]) {
    let want: BTreeSet<Key> = keys.iter().map(|s| key(s)).collect();
    assert_eq!(changed.keys, want, "the keys named");
    for k in &changed.keys {
        match (changed.scan.items.get(k), full.items.get(k)) {
            (Some(a), Some(b)) => {
                assert_eq!(a.content, b.content, "{k}");
                assert_eq!(a.size, b.size, "{k}");
                assert_eq!(a.fingerprint.settled(), b.fingerprint.settled(), "{k}");
            }
            (None, None) => {}
            (a, b) => panic!("{k}: scan_since {a:?}, full scan {b:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_a_new_file_and_a_removal_are_listed_as_a_full_scan_lists_them() {
    let mut w = Watched::new(&[
        ("notes/a.txt", "a"),
        ("notes/b.txt", "b"),
        ("same.txt", "same"),
        ("big/1.txt", "1"),
        ("big/2.txt", "2"),
    ])
    .await;
    let t0 = w.token().await;
    let before = w.replica.scan_counts();
    fs::write(w.root.join("notes/a.txt"), "a, edited").unwrap();
    fs::write(w.root.join("notes/new.txt"), "new").unwrap();
    fs::remove_file(w.root.join("notes/b.txt")).unwrap();
    w.signalled().await;
    let changed = w.since(t0, &[]).await.expect("the journal can tell");
    let after = w.replica.scan_counts();
    assert_eq!(after.partial, before.partial + 1);
    assert_eq!(after.full, before.full, "no full scan");
    // The two files that are there now; nothing else is walked.
    assert_eq!(after.visited - before.visited, 2, "{after:?}");
    assert_eq!(changed.scan.hashed, 2);
    let full = w.full().await;
    same_as_full(
        &changed,
        &full,
        &["notes/a.txt", "notes/b.txt", "notes/new.txt"],
    );
    assert!(!changed.scan.items.contains_key(&key("notes/b.txt")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_with_no_change_walks_nothing() {
    let w = Watched::new(&[("a.txt", "a"), ("dir/b.txt", "b")]).await;
    let t0 = w.token().await;
    // Reads (as a sync's upload does) and a full scan are no change.
    assert_eq!(w.replica.read(&key("a.txt")).await.unwrap(), "a");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.token().await, t0, "the token stays");
    let before = w.replica.scan_counts();
    let changed = w
        .since(t0, &["dir/b.txt"])
        .await
        .expect("the journal can tell");
    let after = w.replica.scan_counts();
    assert_eq!(changed.scan.hashed, 0, "nothing read");
    assert_eq!(
        after.visited - before.visited,
        1,
        "only the key asked for is looked at"
    );
    assert_eq!(changed.keys, BTreeSet::from([key("dir/b.txt")]));
    assert!(changed.scan.items.contains_key(&key("dir/b.txt")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_folder_with_files_is_walked_whole() {
    let mut w = Watched::new(&[("a.txt", "a")]).await;
    let t0 = w.token().await;
    // Made in one go: the files may be written before the watch of the new folder exists.
    fs::create_dir_all(w.root.join("new/deep/er")).unwrap();
    fs::write(w.root.join("new/one.txt"), "1").unwrap();
    fs::write(w.root.join("new/deep/er/two.txt"), "2").unwrap();
    // And a folder moved in from outside, which brings no event for what it holds.
    let outside = w.root.parent().unwrap().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/three.txt"), "3").unwrap();
    fs::rename(&outside, w.root.join("moved-in")).unwrap();
    w.signalled().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let changed = w.since(t0, &[]).await.expect("the journal can tell");
    let full = w.full().await;
    same_as_full(
        &changed,
        &full,
        &[
            "moved-in",
            "moved-in/sub",
            "moved-in/sub/three.txt",
            "new",
            "new/deep",
            "new/deep/er",
            "new/deep/er/two.txt",
            "new/one.txt",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_file_is_named_at_both_keys() {
    let mut w = Watched::new(&[("old.txt", "content"), ("d/x.txt", "x")]).await;
    let t0 = w.token().await;
    fs::rename(w.root.join("old.txt"), w.root.join("d/new.txt")).unwrap();
    w.signalled().await;
    let changed = w.since(t0, &[]).await.expect("the journal can tell");
    let full = w.full().await;
    same_as_full(&changed, &full, &["d/new.txt", "old.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_renamed_or_removed_means_a_full_scan() {
    let mut w = Watched::new(&[("d/x.txt", "x"), ("e/y.txt", "y")]).await;
    let t0 = w.token().await;
    fs::rename(w.root.join("d"), w.root.join("d2")).unwrap();
    w.signalled().await;
    assert!(
        w.since(t0, &[]).await.is_none(),
        "cannot name what was under d"
    );
    w.full().await;
    let t1 = w.token().await;
    fs::remove_dir_all(w.root.join("e")).unwrap();
    w.signalled().await;
    assert!(w.since(t1, &[]).await.is_none(), "e was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_and_skipped_paths_are_reported_as_the_full_scan_reports_them() {
    let mut w = Watched::new(&[(".syncignore", "build/\n"), ("a.txt", "a")]).await;
    let t0 = w.token().await;
    fs::create_dir_all(w.root.join("build")).unwrap();
    fs::write(w.root.join("build/out.o"), "o").unwrap();
    fs::write(w.root.join("notes.swp"), "swap").unwrap();
    std::os::unix::fs::symlink("a.txt", w.root.join("link")).unwrap();
    w.signalled().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let changed = w.since(t0, &[]).await.expect("the journal can tell");
    let full = w.full().await;
    // The symlink is skipped by both; the ignored files are not named at all.
    same_as_full(&changed, &full, &["link"]);
    let skipped: Vec<&str> = changed
        .scan
        .skipped
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(skipped, ["link"]);
    assert!(full.skipped.iter().any(|s| s.path == "link"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_watcher_or_after_it_stops_there_is_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let replica = FolderReplica::new(dir.path()).unwrap();
    assert_eq!(replica.change_token().await.unwrap(), None);
    let (watcher, _rx) = FolderWatcher::start_for(&replica, DEBOUNCE).unwrap();
    let t = replica.change_token().await.unwrap().expect("a token");
    assert!(
        replica
            .scan_since(t, &BTreeSet::new(), DEFAULT_MAX_ITEM_BYTES)
            .await
            .unwrap()
            .is_none(),
        "no full scan since the watch started"
    );
    drop(watcher);
    for _ in 0..100 {
        if replica.change_token().await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the token stays after the watcher stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_net_asks_for_a_full_scan() {
    let w = Watched::new(&[("a.txt", "a")]).await;
    let replica = w
        .replica
        .clone()
        .with_full_scan_every(Duration::from_millis(50));
    let t0 = w.token().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let also = BTreeSet::new();
    let since = replica.scan_since(t0, &also, DEFAULT_MAX_ITEM_BYTES);
    assert!(since.await.unwrap().is_none());
}

type Device = Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, FolderReplica>;

fn device(server: &Arc<MemoryServerStore>, root: &Path) -> Device {
    Engine::new(
        LocalTransport::new(server.clone(), TenantId::new("t")),
        MemoryStateStore::default(),
        FolderReplica::new(root).unwrap(),
        EngineConfig::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_over_a_watched_folder_scans_in_full_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    fs::create_dir_all(ra.join("docs")).unwrap();
    fs::create_dir_all(&rb).unwrap();
    for i in 0..20 {
        fs::write(ra.join(format!("docs/{i}.txt")), format!("doc {i}")).unwrap();
    }
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let (mut a, mut b) = (device(&server, &ra), device(&server, &rb));
    let (_wa, mut rx_a) = FolderWatcher::start_for(a.replica(), DEBOUNCE).unwrap();
    let (_wb, mut rx_b) = FolderWatcher::start_for(b.replica(), DEBOUNCE).unwrap();
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    assert_eq!(fs::read_to_string(rb.join("docs/7.txt")).unwrap(), "doc 7");
    // B's downloads are its own changes: they do not wake it.
    assert!(
        timeout(Duration::from_millis(300), rx_b.recv())
            .await
            .is_err(),
        "no signal for the engine's own writes"
    );
    // The next sync of each looks again at the keys the last one wrote (B: its downloads; A:
    // its uploads, back in the change feed), stat only, without a full scan.
    let (a_first, b_first) = (a.replica().scan_counts(), b.replica().scan_counts());
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    let (a0, b0) = (a.replica().scan_counts(), b.replica().scan_counts());
    assert_eq!((a0.full, b0.full), (a_first.full, b_first.full));
    assert_eq!(b0.partial, b_first.partial + 1);

    // A wake-up with nothing changed: no walk at all.
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    assert_eq!(a.replica().scan_counts().visited, a0.visited);
    assert_eq!(b.replica().scan_counts().visited, b0.visited);

    // An edit on A reaches B; neither scans in full.
    fs::write(ra.join("docs/3.txt"), "doc 3, edited").unwrap();
    timeout(Duration::from_secs(3), rx_a.recv())
        .await
        .unwrap()
        .unwrap();
    let report = a.sync_once().await.unwrap();
    assert_eq!(report.uploaded, 1, "{report:?}");
    b.sync_once().await.unwrap();
    assert_eq!(
        fs::read_to_string(rb.join("docs/3.txt")).unwrap(),
        "doc 3, edited"
    );
    let (a1, b1) = (a.replica().scan_counts(), b.replica().scan_counts());
    assert_eq!((a1.full, b1.full), (a0.full, b0.full), "{a1:?} {b1:?}");
    assert!(a1.visited - a0.visited <= 2, "{a0:?} {a1:?}");
}
