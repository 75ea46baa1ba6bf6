//! [`MemoryServerStore`]: a [`ServerStore`] that keeps every tenant's items, version history,
//! deduplicated blobs and Lamport revision counter in memory.
//!
//! It implements the server side of SPEC §2–§4 exactly (it is the reference the conformance
//! suite is written against) and is used by unit tests, simulations and the in-process
//! [`super::LocalTransport`]. It must not do I/O of any kind, must not hold its lock across an
//! `.await`, and must not poll: [`ServerStore::wait`] sleeps on a per-tenant watch channel.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, Fetched,
    FolderRequest, ItemKind, ItemMeta, Key, Precondition, PushOutcome, PushRequest, Result,
    Revision, ServerConfig, ServerStore, Stamp, TenantId, VersionMeta,
};

/// One key's server state: its current version (`None` when only archived versions exist)
/// and every version ever accepted or archived, oldest first.
#[derive(Debug, Clone)]
struct Entry {
    current: Option<ItemMeta>,
    history: Vec<ItemMeta>,
}

impl Entry {
    /// The current version when it is live (not a tombstone).
    fn live(&self) -> Option<&ItemMeta> {
        self.current.as_ref().filter(|m| m.is_live())
    }
}

/// One tenant's namespace.
#[derive(Debug)]
struct Tenant {
    /// The last revision issued (the head of the feed).
    counter: Revision,
    items: BTreeMap<Key, Entry>,
    /// Current revision of every key that has a current version → that key: the change feed.
    feed: BTreeMap<Revision, Key>,
    /// Bumped on every change that enters the feed; `wait` sleeps on it.
    changed: watch::Sender<u64>,
}

impl Tenant {
    fn new() -> Tenant {
        Tenant {
            counter: Revision::ZERO,
            items: BTreeMap::new(),
            feed: BTreeMap::new(),
            changed: watch::Sender::new(0),
        }
    }

    /// A deep copy with its own (new) watch channel.
    fn deep_copy(&self) -> Tenant {
        Tenant {
            counter: self.counter,
            items: self.items.clone(),
            feed: self.feed.clone(),
            changed: watch::Sender::new(0),
        }
    }

    /// The next revision by the Lamport rule.
    fn next_rev(&mut self, seen: Revision) -> Revision {
        self.counter = self.counter.lamport_next(seen);
        self.counter
    }

    /// True when the feed holds a change after `after`.
    fn has_changes_after(&self, after: Revision) -> bool {
        self.feed
            .range((Bound::Excluded(after), Bound::Unbounded))
            .next()
            .is_some()
    }

    /// The live item at `key`, if any.
    fn live(&self, key: &Key) -> Option<&ItemMeta> {
        self.items.get(key).and_then(Entry::live)
    }

    /// Makes `meta` the current version of its key: history, feed, wake-up.
    fn set_current(&mut self, meta: ItemMeta) {
        let entry = self.items.entry(meta.key.clone()).or_insert(Entry {
            current: None,
            history: Vec::new(),
        });
        if let Some(old) = &entry.current {
            self.feed.remove(&old.rev);
        }
        self.feed.insert(meta.rev, meta.key.clone());
        entry.history.push(meta.clone());
        entry.current = Some(meta);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Fails with `Error::Item` when a live file sits at one of `folders` (nothing is changed).
    fn check_no_file_in_way(&self, folders: &[Key], for_key: &Key) -> Result<()> {
        for folder in folders {
            if let Some(m) = self.live(folder) {
                if m.kind == ItemKind::File {
                    return Err(Error::item(
                        for_key,
                        format!(
                            "the server holds a file at {folder}, where a folder is needed; \
                             rename or remove that file"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Creates every folder of `folders` (outermost first) that is not a live folder yet, each
    /// with its own revision. The caller checked that no file is in the way.
    fn create_folders(&mut self, folders: &[Key], stamp: Stamp, seen: Revision) {
        for folder in folders {
            if self.live(folder).is_some() {
                continue;
            }
            let rev = self.next_rev(seen);
            self.set_current(ItemMeta {
                key: folder.clone(),
                kind: ItemKind::Folder,
                rev,
                hash: None,
                size: 0,
                stamp,
                deleted: false,
            });
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    tenants: HashMap<TenantId, Tenant>,
    /// Every content ever stored, deduplicated by hash.
    blobs: HashMap<ContentHash, Bytes>,
}

impl Inner {
    fn tenant_mut(&mut self, tenant: &TenantId) -> &mut Tenant {
        self.tenants
            .entry(tenant.clone())
            .or_insert_with(Tenant::new)
    }
}

/// An in-memory [`ServerStore`] with version history, deduplicated blobs, a per-tenant Lamport
/// revision counter and a wake-up channel per tenant for long-polls.
///
/// ```
/// use sync_core::memory::MemoryServerStore;
/// use sync_core::{ServerConfig, ServerStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryServerStore::new(ServerConfig::default());
/// let restored = store.restore_copy();
/// assert_ne!(store.epoch().await.unwrap(), restored.epoch().await.unwrap());
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryServerStore {
    epoch: Epoch,
    config: ServerConfig,
    inner: Mutex<Inner>,
}

impl MemoryServerStore {
    /// An empty store with a new random epoch.
    pub fn new(config: ServerConfig) -> MemoryServerStore {
        MemoryServerStore {
            epoch: Epoch::random(),
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A deep copy of everything with a new epoch: what a restore from backup looks like to
    /// clients (their cursors expire; revisions continue from the copy's counters).
    pub fn restore_copy(&self) -> MemoryServerStore {
        let inner = self.lock();
        let copy = Inner {
            tenants: inner
                .tenants
                .iter()
                .map(|(id, t)| (id.clone(), t.deep_copy()))
                .collect(),
            blobs: inner.blobs.clone(),
        };
        MemoryServerStore {
            epoch: Epoch::random(),
            config: self.config.clone(),
            inner: Mutex::new(copy),
        }
    }

    /// The settings this store was made with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clamp(&self, stamp: Stamp) -> Stamp {
        stamp.clamped(self.config.time.now_millis(), self.config.max_skew)
    }

    /// The revision a cursor continues after; another epoch is `CursorExpired`.
    fn after(&self, since: Option<&Cursor>) -> Result<Revision> {
        match since {
            None => Ok(Revision::ZERO),
            Some(c) if c.epoch() == self.epoch => Ok(c.rev()),
            Some(_) => Err(Error::CursorExpired),
        }
    }

    /// Size limit then hash, before anything is touched.
    fn verify(&self, key: &Key, content: &Bytes, hash: ContentHash) -> Result<()> {
        let size = content.len() as u64;
        if size > self.config.max_item_bytes {
            return Err(Error::TooLarge {
                key: key.clone(),
                size,
                limit: self.config.max_item_bytes,
            });
        }
        let actual = ContentHash::of(content);
        if actual != hash {
            return Err(Error::HashMismatch {
                key: key.clone(),
                expected: hash,
                actual,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ServerStore for MemoryServerStore {
    async fn epoch(&self) -> Result<Epoch> {
        Ok(self.epoch)
    }

    async fn changes(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        limit: usize,
    ) -> Result<ChangePage> {
        let after = self.after(since)?;
        let limit = limit.max(1);
        let inner = self.lock();
        let Some(t) = inner.tenants.get(tenant) else {
            return Ok(ChangePage {
                changes: Vec::new(),
                cursor: Cursor::new(self.epoch, Revision::ZERO),
                more: false,
            });
        };
        let mut changes = Vec::new();
        let mut more = false;
        for (_, key) in t.feed.range((Bound::Excluded(after), Bound::Unbounded)) {
            if changes.len() == limit {
                more = true;
                break;
            }
            if let Some(meta) = t.items.get(key).and_then(|e| e.current.as_ref()) {
                changes.push(meta.clone());
            }
        }
        let rev = match changes.last() {
            Some(last) if more => last.rev,
            // The head, not the last entry: archives take revisions that never enter the feed.
            _ => t.counter,
        };
        Ok(ChangePage {
            changes,
            cursor: Cursor::new(self.epoch, rev),
            more,
        })
    }

    async fn fetch(&self, tenant: &TenantId, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        let not_found = || Error::NotFound { key: key.clone() };
        let inner = self.lock();
        let entry = inner
            .tenants
            .get(tenant)
            .and_then(|t| t.items.get(key))
            .ok_or_else(not_found)?;
        let meta = match rev {
            None => entry.live(),
            Some(rev) => entry.history.iter().find(|m| m.rev == rev && m.is_live()),
        }
        .ok_or_else(not_found)?;
        let content = match meta.hash {
            None => Bytes::new(),
            Some(hash) => inner.blobs.get(&hash).cloned().ok_or_else(|| {
                Error::storage(format!(
                    "{key}: the content of revision {} is missing from the store",
                    meta.rev
                ))
            })?,
        };
        Ok(Fetched {
            version: meta.version(),
            content,
        })
    }

    async fn push(&self, tenant: &TenantId, req: PushRequest) -> Result<PushOutcome> {
        self.verify(&req.key, &req.content, req.hash)?;
        let stamp = self.clamp(req.stamp);
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let current = t.items.get(&req.key).and_then(|e| e.current.clone());
        let allowed = match (req.precondition, &current) {
            (Precondition::Create, None) => true,
            (Precondition::Create, Some(cur)) => cur.deleted,
            (Precondition::Match(rev), Some(cur)) => cur.rev == rev,
            (Precondition::Match(_), None) => false,
        };
        if !allowed {
            return Ok(PushOutcome::Conflict { current });
        }
        if let Some(cur) = current.as_ref().filter(|c| c.is_live()) {
            if cur.kind == ItemKind::Folder {
                return Err(Error::item(
                    &req.key,
                    "the server holds a folder at this key; a file cannot replace it",
                ));
            }
        }
        let parents = req.key.ancestors();
        t.check_no_file_in_way(&parents, &req.key)?;
        t.create_folders(&parents, stamp, req.seen);
        let rev = t.next_rev(req.seen);
        let meta = ItemMeta {
            key: req.key.clone(),
            kind: ItemKind::File,
            rev,
            hash: Some(req.hash),
            size: req.content.len() as u64,
            stamp,
            deleted: false,
        };
        t.set_current(meta.clone());
        inner.blobs.entry(req.hash).or_insert(req.content);
        Ok(PushOutcome::Accepted(meta))
    }

    async fn delete(&self, tenant: &TenantId, req: DeleteRequest) -> Result<PushOutcome> {
        let stamp = self.clamp(req.stamp);
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let current = t.items.get(&req.key).and_then(|e| e.current.clone());
        let live = match &current {
            Some(cur) if cur.is_live() && cur.rev == req.rev => cur.clone(),
            _ => return Ok(PushOutcome::Conflict { current }),
        };
        let rev = t.next_rev(req.seen);
        let tombstone = ItemMeta {
            key: req.key.clone(),
            kind: live.kind,
            rev,
            hash: None,
            size: 0,
            stamp,
            deleted: true,
        };
        t.set_current(tombstone.clone());
        Ok(PushOutcome::Accepted(tombstone))
    }

    async fn ensure_folder(&self, tenant: &TenantId, req: FolderRequest) -> Result<ItemMeta> {
        let stamp = self.clamp(req.stamp);
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let mut path = req.key.ancestors();
        path.push(req.key.clone());
        t.check_no_file_in_way(&path, &req.key)?;
        t.create_folders(&path, stamp, req.seen);
        t.live(&req.key)
            .cloned()
            .ok_or_else(|| Error::storage(format!("{}: the folder was not created", req.key)))
    }

    async fn history(&self, tenant: &TenantId, key: &Key) -> Result<Vec<VersionMeta>> {
        let inner = self.lock();
        let entry = inner
            .tenants
            .get(tenant)
            .and_then(|t| t.items.get(key))
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
        Ok(entry.history.iter().map(ItemMeta::version).collect())
    }

    async fn archive(&self, tenant: &TenantId, req: ArchiveRequest) -> Result<VersionMeta> {
        self.verify(&req.key, &req.content, req.hash)?;
        let stamp = self.clamp(req.stamp);
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let rev = t.next_rev(req.seen);
        let meta = ItemMeta {
            key: req.key.clone(),
            kind: ItemKind::File,
            rev,
            hash: Some(req.hash),
            size: req.content.len() as u64,
            stamp,
            deleted: false,
        };
        let version = meta.version();
        t.items
            .entry(req.key.clone())
            .or_insert(Entry {
                current: None,
                history: Vec::new(),
            })
            .history
            .push(meta);
        inner.blobs.entry(req.hash).or_insert(req.content);
        Ok(version)
    }

    async fn wait(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        timeout: Duration,
    ) -> Result<bool> {
        let after = self.after(since)?;
        let mut rx = {
            let mut inner = self.lock();
            let t = inner.tenant_mut(tenant);
            if t.has_changes_after(after) {
                return Ok(true);
            }
            // Subscribed under the lock: no change between the check and now is missed.
            t.changed.subscribe()
        };
        let woken = tokio::time::timeout(timeout, async {
            loop {
                if rx.changed().await.is_err() {
                    return false;
                }
                let inner = self.lock();
                if inner
                    .tenants
                    .get(tenant)
                    .is_some_and(|t| t.has_changes_after(after))
                {
                    return true;
                }
            }
        })
        .await;
        Ok(woken.unwrap_or(false))
    }

    fn max_item_bytes(&self) -> u64 {
        self.config.max_item_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Precondition};

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn push(k: &str, content: &'static [u8], precondition: Precondition) -> PushRequest {
        PushRequest {
            key: key(k),
            precondition,
            content: Bytes::from_static(content),
            hash: ContentHash::of(content),
            stamp: Stamp::at(1, NodeId(1)),
            seen: Revision::ZERO,
        }
    }

    fn accepted(outcome: PushOutcome) -> ItemMeta {
        match outcome {
            PushOutcome::Accepted(m) => m,
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn restore_copy_has_a_new_epoch_and_the_same_items() {
        let store = MemoryServerStore::new(ServerConfig::default());
        let alice = TenantId::new("alice");
        let m = accepted(
            store
                .push(&alice, push("a/b.txt", b"b", Precondition::Create))
                .await
                .unwrap(),
        );
        let page = store.changes(&alice, None, 100).await.unwrap();

        let restored = store.restore_copy();
        assert_ne!(
            restored.epoch().await.unwrap(),
            store.epoch().await.unwrap()
        );
        assert_eq!(
            restored.changes(&alice, Some(&page.cursor), 10).await,
            Err(Error::CursorExpired)
        );
        let fresh = restored.changes(&alice, None, 100).await.unwrap();
        assert_eq!(fresh.changes, page.changes);
        assert_eq!(
            restored
                .fetch(&alice, &key("a/b.txt"), None)
                .await
                .unwrap()
                .content,
            Bytes::from_static(b"b")
        );
        // The copy is independent and keeps counting from where the original was.
        let next = accepted(
            restored
                .push(&alice, push("a/b.txt", b"c", Precondition::Match(m.rev)))
                .await
                .unwrap(),
        );
        assert_eq!(next.rev, Revision(m.rev.0 + 1));
        assert_eq!(
            store
                .fetch(&alice, &key("a/b.txt"), None)
                .await
                .unwrap()
                .content,
            Bytes::from_static(b"b")
        );
        assert_eq!(
            restored.config().max_item_bytes,
            store.config().max_item_bytes
        );
    }

    #[tokio::test]
    async fn restore_copy_wakes_its_own_waiters() {
        let store =
            std::sync::Arc::new(MemoryServerStore::new(ServerConfig::default()).restore_copy());
        let alice = TenantId::new("alice");
        let pusher = store.clone();
        let who = alice.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pusher
                .push(&who, push("x", b"x", Precondition::Create))
                .await
        });
        assert!(store
            .wait(&alice, None, Duration::from_secs(5))
            .await
            .unwrap());
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn blobs_are_deduplicated_by_hash() {
        let store = MemoryServerStore::new(ServerConfig::default());
        let t = TenantId::new("t");
        for k in ["one", "two", "three"] {
            store
                .push(&t, push(k, b"same bytes", Precondition::Create))
                .await
                .unwrap();
        }
        assert_eq!(store.lock().blobs.len(), 1);
    }

    #[tokio::test]
    async fn archive_of_a_key_never_pushed_is_history_only() {
        let store = MemoryServerStore::new(ServerConfig::default());
        let t = TenantId::new("t");
        let v = store
            .archive(
                &t,
                ArchiveRequest {
                    key: key("lost.txt"),
                    content: Bytes::from_static(b"loser"),
                    hash: ContentHash::of(b"loser"),
                    stamp: Stamp::at(1, NodeId(1)),
                    seen: Revision(9),
                },
            )
            .await
            .unwrap();
        assert_eq!(v.rev, Revision(10));
        assert_eq!(
            store.history(&t, &key("lost.txt")).await.unwrap(),
            vec![v.clone()]
        );
        assert!(matches!(
            store.fetch(&t, &key("lost.txt"), None).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(
            store
                .fetch(&t, &key("lost.txt"), Some(v.rev))
                .await
                .unwrap()
                .content,
            Bytes::from_static(b"loser")
        );
        // The head cursor moves past the archive although the feed is empty.
        let page = store.changes(&t, None, 10).await.unwrap();
        assert!(page.changes.is_empty());
        assert_eq!(page.cursor.rev(), Revision(10));
        // A create is allowed: the key has no current version.
        let m = accepted(
            store
                .push(&t, push("lost.txt", b"new", Precondition::Create))
                .await
                .unwrap(),
        );
        assert_eq!(m.rev, Revision(11));
    }

    #[tokio::test]
    async fn a_file_cannot_replace_a_folder_and_a_parent_cannot_be_a_file() {
        let store = MemoryServerStore::new(ServerConfig::default());
        let t = TenantId::new("t");
        let f = accepted(
            store
                .push(&t, push("a/b", b"file", Precondition::Create))
                .await
                .unwrap(),
        );
        let folder = store.changes(&t, None, 10).await.unwrap().changes[0].clone();
        assert_eq!(folder.kind, ItemKind::Folder);
        let err = store
            .push(&t, push("a", b"x", Precondition::Match(folder.rev)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Item { .. }), "{err:?}");
        let err = store
            .push(&t, push("a/b/c", b"x", Precondition::Create))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Item { .. }), "{err:?}");
        // Nothing changed.
        let page = store.changes(&t, None, 10).await.unwrap();
        assert_eq!(page.changes.len(), 2);
        assert_eq!(page.changes[1], f);
    }

    #[tokio::test]
    async fn delete_of_a_folder_makes_a_folder_tombstone() {
        let store = MemoryServerStore::new(ServerConfig::default());
        let t = TenantId::new("t");
        let folder = store
            .ensure_folder(
                &t,
                FolderRequest {
                    key: key("d"),
                    stamp: Stamp::at(1, NodeId(1)),
                    seen: Revision::ZERO,
                },
            )
            .await
            .unwrap();
        let tomb = accepted(
            store
                .delete(
                    &t,
                    DeleteRequest {
                        key: key("d"),
                        rev: folder.rev,
                        stamp: Stamp::at(2, NodeId(1)),
                        seen: folder.rev,
                    },
                )
                .await
                .unwrap(),
        );
        assert_eq!((tomb.kind, tomb.deleted), (ItemKind::Folder, true));
        // ensure_folder brings it back with a new revision.
        let again = store
            .ensure_folder(
                &t,
                FolderRequest {
                    key: key("d"),
                    stamp: Stamp::at(3, NodeId(1)),
                    seen: Revision::ZERO,
                },
            )
            .await
            .unwrap();
        assert!(again.rev > tomb.rev && again.is_live());
    }
}
