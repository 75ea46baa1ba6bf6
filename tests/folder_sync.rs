//! User stories of folder sync on disk: two devices, each a real folder with its state
//! in SQLite under `.sync/`, syncing through a remote that is a plain shared folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use sync_core::{
    Backup, ContentHash, DeletePolicy, DeleteRequest, EngineConfig, Error, ErrorClass, Expected,
    Identity, Key, KnownItem, LocalItem, PushOutcome, Replica, Scan, Stamp, SyncPolicy, SyncReport,
    TenantId, Transport,
};
use sync_engine::folder::{self, FolderEngine};
use tempfile::TempDir;
use transport_fs::FsTransport;

/// One remote folder and the temp dirs of the devices using it.
struct World {
    _root: TempDir,
    remote: PathBuf,
    base: PathBuf,
}

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        let remote = root.path().join("remote");
        std::fs::create_dir(&remote).unwrap();
        let base = root.path().to_path_buf();
        World {
            _root: root,
            remote,
            base,
        }
    }

    async fn device(&self, name: &str, policy: SyncPolicy) -> Device {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let transport = FsTransport::open(&self.remote, TenantId::new("me"))
            .await
            .unwrap();
        let engine = folder::open(
            &dir,
            transport,
            EngineConfig {
                policy,
                ..EngineConfig::default()
            },
        )
        .await
        .unwrap();
        Device { dir, engine }
    }

    async fn transport(&self) -> FsTransport {
        FsTransport::open(&self.remote, TenantId::new("me"))
            .await
            .unwrap()
    }
}

struct Device {
    dir: PathBuf,
    engine: FolderEngine<FsTransport>,
}

/// Distinct, increasing modification times, so "newer" is never decided by chance.
static CLOCK: AtomicI64 = AtomicI64::new(0);

fn next_mtime() -> SystemTime {
    let t = CLOCK.fetch_add(10, Ordering::SeqCst);
    SystemTime::now() - Duration::from_secs(3_600) + Duration::from_secs(t as u64)
}

impl Device {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(next_mtime()).unwrap();
    }

    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(rel)).ok()
    }

    async fn sync(&mut self) -> SyncReport {
        match self.engine.sync_once().await {
            Ok(r) => r,
            Err(e) => panic!("sync of {} failed: {e}", self.dir.display()),
        }
    }

    /// Every file under the folder (outside `.sync/`), by relative path.
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        walk(&self.dir)
            .into_iter()
            .filter(|(rel, _)| !rel.starts_with(".sync/"))
            .collect()
    }

    fn backups(&self) -> BTreeMap<String, Vec<u8>> {
        walk(&self.dir.join(".sync/backups"))
    }
}

fn walk(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn temp_files(root: &Path) -> Vec<String> {
    walk(root)
        .into_keys()
        .filter(|p| p.rsplit('/').next().unwrap_or("").starts_with(".sync-tmp-"))
        .collect()
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_tree_travels_byte_for_byte_then_edits_and_a_conflict() {
    let w = World::new();
    let mut a = w.device("a", SyncPolicy::default()).await;
    let mut b = w.device("b", SyncPolicy::default()).await;
    a.write("site/index.html", "<h1>home</h1>");
    a.write("site/blog/2026/post.html", "<p>post</p>");
    a.write(
        "uploads/photo.bin",
        (0..=255u8).cycle().take(300_000).collect::<Vec<_>>(),
    );
    a.write("empty.txt", "");
    std::fs::create_dir_all(a.path("site/empty-folder")).unwrap();
    let r = a.sync().await;
    assert_eq!(r.errors, vec![], "{r:?}");
    b.sync().await;
    assert_eq!(b.files(), a.files());
    assert!(b.path("site/empty-folder").is_dir());

    // B edits, A gets it.
    b.write("site/index.html", "<h1>home, edited on B</h1>");
    b.sync().await;
    assert_eq!(a.sync().await.downloaded, 1);
    assert_eq!(
        a.read("site/index.html").unwrap(),
        b"<h1>home, edited on B</h1>"
    );

    // Both edit the same file; B's edit is newer. A syncs first, B detects the conflict and wins.
    a.write("site/blog/2026/post.html", "A's older edit");
    b.write("site/blog/2026/post.html", "B's newer edit");
    a.sync().await;
    assert_eq!(b.sync().await.conflicts, 1);
    a.sync().await;
    assert_eq!(
        a.read("site/blog/2026/post.html").unwrap(),
        b"B's newer edit"
    );
    assert_eq!(
        b.read("site/blog/2026/post.html").unwrap(),
        b"B's newer edit"
    );
    let history = w
        .transport()
        .await
        .history(&k("site/blog/2026/post.html"))
        .await
        .unwrap();
    assert!(history
        .iter()
        .any(|v| v.hash == Some(ContentHash::of(b"A's older edit"))));

    // Again, but now the losing device detects the conflict: its loser goes to .sync/backups/.
    b.write("site/blog/2026/post.html", "B's older edit");
    a.write("site/blog/2026/post.html", "A's newer edit");
    a.sync().await;
    assert_eq!(b.sync().await.conflicts, 1);
    assert_eq!(
        b.read("site/blog/2026/post.html").unwrap(),
        b"A's newer edit"
    );
    let backups = b.backups();
    let (path, content) = backups.iter().next().expect("a backup on B");
    assert!(path.starts_with("site/blog/2026/post.html/"), "{path}");
    assert!(path.ends_with(".html"), "{path}");
    assert_eq!(content, b"B's older edit");
    let history = w
        .transport()
        .await
        .history(&k("site/blog/2026/post.html"))
        .await
        .unwrap();
    assert!(history
        .iter()
        .any(|v| v.hash == Some(ContentHash::of(b"B's older edit"))));
    // Both quiet now.
    assert_eq!(a.sync().await.transferred(), 0);
    assert_eq!(b.sync().await.transferred(), 0);
    assert!(temp_files(&a.dir).is_empty() && temp_files(&b.dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_stay_local_and_remote_tombstones_keep_local_files() {
    let w = World::new();
    let mut a = w.device("a", SyncPolicy::default()).await;
    let mut b = w.device("b", SyncPolicy::default()).await;
    a.write("notes/x.txt", "v1");
    a.write("notes/y.txt", "y1");
    a.sync().await;
    b.sync().await;

    std::fs::remove_file(a.path("notes/x.txt")).unwrap();
    a.sync().await;
    b.sync().await;
    assert_eq!(
        b.read("notes/x.txt").unwrap(),
        b"v1",
        "the delete must not propagate"
    );
    a.sync().await;
    assert!(a.read("notes/x.txt").is_none(), "A must not get it back");
    let remote = w.transport().await;
    assert!(
        remote.fetch(&k("notes/x.txt"), None).await.is_ok(),
        "still on the remote"
    );

    // B edits it: A gets the new version.
    b.write("notes/x.txt", "v2 from B");
    b.sync().await;
    a.sync().await;
    assert_eq!(a.read("notes/x.txt").unwrap(), b"v2 from B");

    // The remote tombstones y.txt: A keeps it and does not upload it again.
    let page = remote.changes(None, 1000).await.unwrap();
    let y = page
        .changes
        .iter()
        .find(|i| i.key == k("notes/y.txt"))
        .unwrap();
    let gone = remote
        .delete(DeleteRequest {
            key: k("notes/y.txt"),
            rev: y.rev,
            stamp: Stamp::at(1, sync_core::NodeId(99)),
            seen: page.cursor.rev(),
        })
        .await
        .unwrap();
    assert!(matches!(gone, PushOutcome::Accepted(_)));
    let r = a.sync().await;
    assert_eq!(r.transferred(), 0, "{r:?}");
    assert_eq!(a.read("notes/y.txt").unwrap(), b"y1");
    a.sync().await;
    assert!(
        remote.fetch(&k("notes/y.txt"), None).await.is_err(),
        "not re-uploaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_creates_the_new_name_and_keeps_the_old() {
    let w = World::new();
    let mut a = w.device("a", SyncPolicy::default()).await;
    let mut b = w.device("b", SyncPolicy::default()).await;
    a.write("draft.md", "text");
    a.sync().await;
    b.sync().await;
    std::fs::rename(a.path("draft.md"), a.path("final.md")).unwrap();
    a.sync().await;
    b.sync().await;
    assert_eq!(b.read("final.md").unwrap(), b"text");
    assert_eq!(b.read("draft.md").unwrap(), b"text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_name_identity_binds_to_the_remote_twin_elsewhere() {
    let w = World::new();
    let mut publisher = w.device("publisher", SyncPolicy::default()).await;
    publisher.write("other/index2.html", "<p>v1</p>");
    publisher.sync().await;

    let app_name = SyncPolicy {
        identity: Identity::AppName,
        ..SyncPolicy::default()
    };
    let mut a = w.device("a", app_name).await;
    a.write("site/a/index2.html", "<p>v1</p>");
    a.sync().await;
    assert!(
        a.read("other/index2.html").is_none(),
        "bound, not downloaded twice"
    );
    a.write("site/a/index2.html", "<p>v2 from A</p>");
    a.sync().await;
    publisher.sync().await;
    assert_eq!(
        publisher.read("other/index2.html").unwrap(),
        b"<p>v2 from A</p>"
    );
    assert!(publisher.read("site/a/index2.html").is_none());
}

/// A replica that fails every write after the first `n` (a full disk in the middle of a sync).
struct FailingWrites<R> {
    inner: R,
    left: std::sync::Mutex<u32>,
}

#[async_trait]
impl<R: Replica> Replica for FailingWrites<R> {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max: u64) -> sync_core::Result<Scan> {
        self.inner.scan(known, max).await
    }
    async fn read(&self, key: &Key) -> sync_core::Result<Bytes> {
        self.inner.read(key).await
    }
    async fn write(
        &self,
        key: &Key,
        content: Bytes,
        expected: Expected,
    ) -> sync_core::Result<LocalItem> {
        {
            let mut left = self.left.lock().unwrap();
            if *left == 0 {
                return Err(Error::storage("no space left on device (injected)"));
            }
            *left -= 1;
        }
        self.inner.write(key, content, expected).await
    }
    async fn create_folder(&self, key: &Key) -> sync_core::Result<LocalItem> {
        self.inner.create_folder(key).await
    }
    async fn backup(&self, key: &Key, stamp: Stamp) -> sync_core::Result<Option<Backup>> {
        self.inner.backup(key, stamp).await
    }
    async fn remove(&self, key: &Key, expected: Expected) -> sync_core::Result<()> {
        self.inner.remove(key, expected).await
    }
    async fn backups(&self) -> sync_core::Result<Vec<Backup>> {
        self.inner.backups().await
    }
    async fn read_backup(&self, backup: &Backup) -> sync_core::Result<Bytes> {
        self.inner.read_backup(backup).await
    }
    fn ignores(&self, key: &Key) -> bool {
        self.inner.ignores(key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sync_converges_and_leaves_no_partial_file() {
    let w = World::new();
    let mut a = w.device("a", SyncPolicy::default()).await;
    for i in 0..40 {
        a.write(&format!("data/{i:02}.bin"), vec![i as u8; 70_000 + i]);
    }
    a.sync().await;

    let dir = w.base.join("b");
    std::fs::create_dir_all(dir.join(".sync")).unwrap();
    let state = store_sqlite::SqliteStateStore::open(dir.join(".sync/state.db"))
        .await
        .unwrap();
    let replica = replica_fs::FolderReplica::new(&dir).unwrap();
    let mut b = sync_core::Engine::new(
        w.transport().await,
        state.clone(),
        FailingWrites {
            inner: replica.clone(),
            left: std::sync::Mutex::new(15),
        },
        EngineConfig::default(),
    );
    let failed = b
        .sync_once()
        .await
        .expect_err("the injected failure stops the sync");
    assert_eq!(failed.error.class(), ErrorClass::Storage);
    // 15 writes succeeded, but downloads run 8 at a time and are settled in plan order: up to
    // 7 written files may sit behind the failed one and are not counted (the next sync finds
    // them equal to the remote and transfers nothing for them).
    assert!(failed.partial.downloaded >= 15 - 7, "{:?}", failed.partial);
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    // A new engine (as after a restart) on the same state and folder finishes the job.
    let mut b =
        sync_core::Engine::new(w.transport().await, state, replica, EngineConfig::default());
    let r = b.sync_once().await.unwrap();
    assert!(
        r.downloaded <= 40 - 15 + 1,
        "nothing already there is transferred twice: {r:?}"
    );
    let b_files: BTreeMap<String, Vec<u8>> = walk(&dir)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".sync/"))
        .collect();
    assert_eq!(b_files, a.files());
    assert!(temp_files(&dir).is_empty());
    assert_eq!(b.sync_once().await.unwrap().transferred(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_symlinked_and_invalid_items_are_skipped_while_the_rest_syncs() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new();
    let small_limit = SyncPolicy {
        max_item_bytes: 1024,
        ..SyncPolicy::default()
    };
    let mut a = w.device("a", small_limit.clone()).await;
    let mut b = w.device("b", small_limit).await;
    a.write("ok.txt", "fine");
    a.write("big.bin", vec![1u8; 4096]);
    std::os::unix::fs::symlink(a.path("ok.txt"), a.path("link.txt")).unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"bad\xffname.txt");
    std::fs::write(a.dir.join(bad), "x").unwrap();

    let r = a.sync().await;
    assert_eq!(r.skipped, 3, "{r:?}");
    let entries = a.engine.errors().entries();
    let by_class = |c: ErrorClass| entries.iter().filter(|e| e.class == c).count();
    assert_eq!(by_class(ErrorClass::Warning), 2, "{entries:?}"); // too large, symlink
    assert_eq!(by_class(ErrorClass::Item), 1, "{entries:?}"); // invalid name
    assert!(
        entries.iter().any(|e| e.message.contains("1024")),
        "{entries:?}"
    );
    b.sync().await;
    assert_eq!(b.read("ok.txt").unwrap(), b"fine");
    assert!(b.read("big.bin").is_none());
    assert!(b.read("link.txt").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagate_deletes_back_up_on_the_other_side() {
    let w = World::new();
    let propagate = SyncPolicy {
        deletes: DeletePolicy::Propagate,
        ..SyncPolicy::default()
    };
    let mut a = w.device("a", propagate.clone()).await;
    let mut b = w.device("b", propagate).await;
    a.write("records/1.json", "{\"id\":1}");
    a.sync().await;
    b.sync().await;
    std::fs::remove_file(a.path("records/1.json")).unwrap();
    a.sync().await;
    b.sync().await;
    assert!(b.read("records/1.json").is_none());
    assert!(b.backups().values().any(|c| c == b"{\"id\":1}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_ignored_on_one_device_is_neither_downloaded_nor_deleted_there() {
    let w = World::new();
    let propagate = SyncPolicy {
        deletes: DeletePolicy::Propagate,
        ..SyncPolicy::default()
    };
    // A ignores *.log before its engine opens; B has no ignore file.
    let dir_a = w.base.join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::write(dir_a.join(".syncignore"), "*.log\n").unwrap();
    let mut a = w.device("a", propagate.clone()).await;
    let mut b = w.device("b", propagate).await;

    b.write("debug.log", "noisy");
    b.write("ok.txt", "fine");
    let r = b.sync().await;
    assert_eq!(r.errors, vec![], "{r:?}");

    let first = a.sync().await;
    assert_eq!(first.errors, vec![], "{first:?}");
    let second = a.sync().await;
    assert_eq!(second.transferred(), 0, "{second:?}");
    assert_eq!(a.read("ok.txt").unwrap(), b"fine");
    assert!(a.read("debug.log").is_none(), "ignored: not downloaded");
    // A's .syncignore went up too (it is an ordinary file); debug.log stayed live remotely.
    let remote = w.transport().await;
    let fetched = remote.fetch(&k("debug.log"), None).await.unwrap();
    assert_eq!(fetched.content.as_ref(), b"noisy");
    let page = remote.changes(None, 1000).await.unwrap();
    let log = page
        .changes
        .iter()
        .find(|i| i.key == k("debug.log"))
        .unwrap();
    assert!(!log.deleted, "not tombstoned: {log:?}");
    // And B still has it after syncing again.
    b.sync().await;
    assert_eq!(b.read("debug.log").unwrap(), b"noisy");
}

/// A same-size rewrite within the same second as the last sync, with the same
/// inode and (as on a file system with whole-second timestamps) the very same modification time,
/// is detected and synced: by the next sync at once, and also by a sync long after the racy
/// window (the fingerprint recorded for a racily clean file is marked, so it is read again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_size_rewrite_in_the_same_second_is_synced() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    let w = World::new();
    let mut a = w.device("a", SyncPolicy::default()).await;
    let mut b = w.device("b", SyncPolicy::default()).await;
    let p = a.path("today.txt");

    let id = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.len(), m.modified().unwrap(), m.ino())
    };
    // Rewrites the file in place (same inode), same size, and puts back the whole-second mtime.
    let rewrite = |content: &[u8], second: SystemTime| {
        let mut f = std::fs::File::options().write(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(content).unwrap();
        f.set_modified(second).unwrap();
        f.sync_all().unwrap();
    };
    // The same, checking that size, mtime and inode are all as before: only the content differs.
    let rewrite_unseen = |content: &[u8], second: SystemTime| {
        let before = id(&p);
        rewrite(content, second);
        assert_eq!(
            id(&p),
            before,
            "size, mtime and inode must all be unchanged"
        );
    };
    let this_second = || {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };

    // 1. Rewritten right after a sync, synced again at once (inside the racy window).
    std::fs::write(&p, b"version 1: aaaaaaaa").unwrap();
    let second = this_second();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(second)
        .unwrap();
    assert_eq!(a.sync().await.uploaded, 1);
    rewrite_unseen(b"version 2: bbbbbbbb", second);
    let r = a.sync().await;
    assert_eq!(r.uploaded, 1, "the same-size rewrite was missed: {r:?}");
    b.sync().await;
    assert_eq!(b.read("today.txt").unwrap(), b"version 2: bbbbbbbb");

    // 2. Rewritten in the same second as a sync, but the next sync comes after the racy window:
    //    the fingerprint recorded by that sync was marked racily clean, so it is read again.
    let second = this_second();
    rewrite(b"version 3: cccccccc", second);
    assert_eq!(a.sync().await.uploaded, 1);
    rewrite_unseen(b"version 4: dddddddd", second);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let r = a.sync().await;
    assert_eq!(
        r.uploaded, 1,
        "a rewrite found after the racy window was missed: {r:?}"
    );
    b.sync().await;
    assert_eq!(b.read("today.txt").unwrap(), b"version 4: dddddddd");

    // 3. And once settled, an untouched file is trusted again: nothing is read or sent.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let r = a.sync().await;
    assert_eq!(r.uploaded, 0, "{r:?}");
    let r = a.sync().await;
    assert_eq!((r.uploaded, r.downloaded), (0, 0), "{r:?}");
}

/// On Unix the `.sync/` folder and its state database (and `-wal`) that `folder::open`
/// creates are owner-only: they name and describe a tenant's files. The files synced keep
/// the modes they have.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_folder_and_database_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let world = World::new();
    let dir = world.base.join("a");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("note.txt"), b"hello").unwrap();
    std::fs::set_permissions(dir.join("note.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut a = world.device("a", SyncPolicy::default()).await;
    a.engine.sync_once().await.unwrap();
    assert_eq!(mode(&dir.join(".sync")), 0o700, ".sync/");
    assert_eq!(mode(&dir.join(".sync/state.db")), 0o600, "state.db");
    assert_eq!(mode(&dir.join(".sync/state.db-wal")), 0o600, "state.db-wal");
    assert_eq!(
        mode(&dir.join("note.txt")),
        0o644,
        "a synced file keeps its mode"
    );
    assert_eq!(mode(&dir), 0o755, "the folder keeps its mode");
}
