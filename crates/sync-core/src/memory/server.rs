//! [`MemoryServerStore`]: a [`ServerStore`] that keeps every tenant's items, version history,
//! deduplicated blobs and Lamport revision counter in memory.
//!
//! It is used by unit tests, simulations and the in-process [`super::LocalTransport`]. Every
//! decision about a write is [`crate::server`]'s; this file only keeps the maps, reads them
//! for the rules and stores what they return. It must not do I/O of any kind, must not hold
//! its lock across an `.await`, and must not poll: [`ServerStore::wait`] sleeps on
//! [`Watchers`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::server::tokens::LAST_USED_EVERY_MILLIS;
use crate::server::{
    change_page, check_content, feed_after, keys_to_read, new_token, rows_to_read, token_hash,
    Decision, NewToken, Retention, TokenInfo, TokenStore, Watchers, Write, WriteRules,
    PRUNE_PER_WRITE,
};
use crate::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, Fetched,
    FolderRequest, HistoryPage, HistoryRange, ItemMeta, Key, PushOutcome, PushRequest, Result,
    Revision, ServerConfig, ServerStore, TenantId, VersionMeta,
};

/// One key's server state: its current version (`None` when only archived versions exist)
/// and every version ever accepted or archived, oldest first.
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone, Default)]
struct Tenant {
    /// The last revision issued (the head of the feed).
    counter: Revision,
    items: BTreeMap<Key, Entry>,
    /// Current revision of every key that has a current version → that key: the change feed.
    feed: BTreeMap<Revision, Key>,
}

impl Tenant {
    /// True when the feed holds a change after `after`.
    fn has_changes_after(&self, after: Revision) -> bool {
        self.feed
            .range((Bound::Excluded(after), Bound::Unbounded))
            .next()
            .is_some()
    }

    /// The current version of `key`, tombstones included.
    fn current(&self, key: &Key) -> Option<ItemMeta> {
        self.items.get(key).and_then(|e| e.current.clone())
    }

    /// What the write rules need to decide a write to `key`.
    fn read_path(&self, key: &Key) -> Vec<Option<ItemMeta>> {
        keys_to_read(key).iter().map(|k| self.current(k)).collect()
    }

    /// Stores the rows of an accepted write and its counter.
    fn store<T>(&mut self, write: &Write<T>) {
        for row in &write.rows {
            let meta = row.item.clone();
            let entry = self.items.entry(meta.key.clone()).or_default();
            if row.current {
                if let Some(old) = &entry.current {
                    self.feed.remove(&old.rev);
                }
                self.feed.insert(meta.rev, meta.key.clone());
                entry.history.push(meta.clone());
                entry.current = Some(meta);
            } else {
                entry.history.push(meta);
            }
        }
        self.counter = write.counter;
    }
}

#[derive(Debug, Default, Clone)]
struct Inner {
    tenants: HashMap<TenantId, Tenant>,
    /// Every content ever stored, deduplicated by hash.
    blobs: HashMap<ContentHash, Bytes>,
    /// Device tokens by their hash, in the order made; revoked ones removed.
    tokens: Vec<(ContentHash, TokenInfo)>,
}

impl Inner {
    fn tenant_mut(&mut self, tenant: &TenantId) -> &mut Tenant {
        self.tenants.entry(tenant.clone()).or_default()
    }

    /// Drops the versions of `keys` that `retention` lets go (at most
    /// [`PRUNE_PER_WRITE`] in all), then every blob no version of any tenant refers to any
    /// more (blobs are shared across tenants).
    fn prune(&mut self, tenant: &TenantId, keys: &[&Key], retention: &Retention, now: u64) {
        let Some(t) = self.tenants.get_mut(tenant) else {
            return;
        };
        let mut budget = PRUNE_PER_WRITE;
        let mut dropped: Vec<ContentHash> = Vec::new();
        for key in keys {
            let Some(entry) = t.items.get_mut(*key) else {
                continue;
            };
            let versions: Vec<VersionMeta> = entry.history.iter().map(ItemMeta::version).collect();
            let current = entry.current.as_ref().map(|m| m.rev);
            let gone = retention.to_prune(&versions, current, now, budget);
            budget -= gone.len();
            entry.history.retain(|m| {
                let go = gone.contains(&m.rev);
                if go {
                    dropped.extend(m.hash);
                }
                !go
            });
            if budget == 0 {
                break;
            }
        }
        dropped.sort();
        dropped.dedup();
        dropped.retain(|h| {
            !self.tenants.values().any(|t| {
                t.items
                    .values()
                    .any(|e| e.history.iter().any(|m| m.hash.as_ref() == Some(h)))
            })
        });
        for h in dropped {
            self.blobs.remove(&h);
        }
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
    rules: WriteRules,
    watchers: Watchers,
    inner: Mutex<Inner>,
}

impl MemoryServerStore {
    /// An empty store with a new random epoch.
    pub fn new(config: ServerConfig) -> MemoryServerStore {
        MemoryServerStore {
            epoch: Epoch::random(),
            rules: WriteRules::new(config),
            watchers: Watchers::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A deep copy of everything with a new epoch: what a restore from backup looks like to
    /// clients (their cursors expire; revisions continue from the copy's counters).
    pub fn restore_copy(&self) -> MemoryServerStore {
        MemoryServerStore {
            epoch: Epoch::random(),
            rules: self.rules.clone(),
            watchers: Watchers::new(),
            inner: Mutex::new(self.lock().clone()),
        }
    }

    /// The settings this store was made with.
    pub fn config(&self) -> &ServerConfig {
        self.rules.config()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Size limit then hash, before anything is touched (in place: contents here are small).
    fn verify(&self, key: &Key, content: &Bytes, hash: &ContentHash) -> Result<()> {
        check_content(key, content, hash, self.config().max_item_bytes)
    }

    /// Stores an accepted write (and its content, if any) and wakes the tenant's waiters.
    fn store<T>(
        &self,
        inner: &mut Inner,
        tenant: &TenantId,
        write: &Write<T>,
        blob: Option<(ContentHash, Bytes)>,
    ) {
        inner.tenant_mut(tenant).store(write);
        if let Some((hash, content)) = blob {
            inner.blobs.entry(hash).or_insert(content);
        }
        if let Some(retention) = self.config().retention {
            let now = self.config().time.now_millis();
            let mut keys: Vec<&Key> = write.rows.iter().map(|r| &r.item.key).collect();
            keys.sort();
            keys.dedup();
            inner.prune(tenant, &keys, &retention, now);
        }
        if write.feed_head().is_some() {
            self.watchers.notify(tenant.as_str());
        }
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
        let after = feed_after(since, self.epoch)?;
        let inner = self.lock();
        let Some(t) = inner.tenants.get(tenant) else {
            return Ok(change_page(self.epoch, Revision::ZERO, Vec::new(), limit));
        };
        let rows = t
            .feed
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(rows_to_read(limit))
            .filter_map(|(_, key)| t.current(key))
            .collect();
        Ok(change_page(self.epoch, t.counter, rows, limit))
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
        self.verify(&req.key, &req.content, &req.hash)?;
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let decision = self.rules.push(&req, &t.read_path(&req.key), t.counter)?;
        if let Decision::Accept(write) = &decision {
            self.store(&mut inner, tenant, write, Some((req.hash, req.content)));
        }
        Ok(decision.into_outcome())
    }

    async fn delete(&self, tenant: &TenantId, req: DeleteRequest) -> Result<PushOutcome> {
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let decision = self
            .rules
            .delete(&req, t.current(&req.key).as_ref(), t.counter)?;
        if let Decision::Accept(write) = &decision {
            self.store(&mut inner, tenant, write, None);
        }
        Ok(decision.into_outcome())
    }

    async fn ensure_folder(&self, tenant: &TenantId, req: FolderRequest) -> Result<ItemMeta> {
        let mut inner = self.lock();
        let t = inner.tenant_mut(tenant);
        let write = self.rules.folder(&req, &t.read_path(&req.key), t.counter)?;
        self.store(&mut inner, tenant, &write, None);
        Ok(write.value)
    }

    async fn history(
        &self,
        tenant: &TenantId,
        key: &Key,
        range: HistoryRange,
    ) -> Result<HistoryPage> {
        let inner = self.lock();
        let entry = inner
            .tenants
            .get(tenant)
            .and_then(|t| t.items.get(key))
            .filter(|e| !e.history.is_empty())
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
        // The history is in revision order: a binary search finds the end of the page.
        let end = match range.before {
            None => entry.history.len(),
            Some(before) => entry.history.partition_point(|m| m.rev < before),
        };
        let rows = entry.history[..end]
            .iter()
            .rev()
            .take(range.page_size() + 1)
            .map(ItemMeta::version)
            .collect();
        Ok(HistoryPage::from_rows(rows, range))
    }

    async fn archive(&self, tenant: &TenantId, req: ArchiveRequest) -> Result<VersionMeta> {
        self.verify(&req.key, &req.content, &req.hash)?;
        let mut inner = self.lock();
        let write = self.rules.archive(&req, inner.tenant_mut(tenant).counter)?;
        self.store(&mut inner, tenant, &write, Some((req.hash, req.content)));
        Ok(write.value)
    }

    async fn wait(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        timeout: Duration,
    ) -> Result<bool> {
        let after = feed_after(since, self.epoch)?;
        self.watchers
            .wait_until(tenant.as_str(), timeout, || {
                let pending = self
                    .lock()
                    .tenants
                    .get(tenant)
                    .is_some_and(|t| t.has_changes_after(after));
                std::future::ready(Ok(pending))
            })
            .await
    }

    fn max_item_bytes(&self) -> u64 {
        self.config().max_item_bytes
    }
}

#[async_trait]
impl TokenStore for MemoryServerStore {
    async fn add_token(&self, tenant: &TenantId, device: &str) -> Result<NewToken> {
        let (id, token) = new_token();
        let info = TokenInfo {
            id,
            tenant: tenant.clone(),
            device: device.to_owned(),
            created_millis: self.config().time.now_millis(),
            last_used_millis: None,
        };
        self.lock().tokens.push((token_hash(&token), info.clone()));
        Ok(NewToken { info, token })
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>> {
        Ok(self
            .lock()
            .tokens
            .iter()
            .filter(|(_, t)| tenant.is_none_or(|want| &t.tenant == want))
            .map(|(_, t)| t.clone())
            .collect())
    }

    async fn revoke_token(&self, id: &str, tenant: Option<&TenantId>) -> Result<bool> {
        let mut inner = self.lock();
        let before = inner.tokens.len();
        inner
            .tokens
            .retain(|(_, t)| !(t.id == id && tenant.is_none_or(|want| &t.tenant == want)));
        Ok(inner.tokens.len() != before)
    }

    async fn token_tenant(&self, token: &str) -> Result<Option<TokenInfo>> {
        let hash = token_hash(token);
        let now = self.config().time.now_millis();
        let mut inner = self.lock();
        Ok(inner
            .tokens
            .iter_mut()
            .find(|(h, _)| *h == hash)
            .map(|(_, info)| {
                if info
                    .last_used_millis
                    .is_none_or(|used| now.saturating_sub(used) >= LAST_USED_EVERY_MILLIS)
                {
                    info.last_used_millis = Some(now);
                }
                info.clone()
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ItemKind, NodeId, Precondition, Stamp};

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
    async fn pruned_content_goes_unless_another_version_refers_to_it() {
        let store = MemoryServerStore::new(ServerConfig {
            retention: Some(Retention::new(1, Duration::ZERO)),
            ..ServerConfig::default()
        });
        let (t, other) = (TenantId::new("t"), TenantId::new("u"));
        let first = accepted(
            store
                .push(&t, push("k", b"one", Precondition::Create))
                .await
                .unwrap(),
        );
        accepted(
            store
                .push(&other, push("k", b"one", Precondition::Create))
                .await
                .unwrap(),
        );
        let second = accepted(
            store
                .push(&t, push("k", b"two", Precondition::Match(first.rev)))
                .await
                .unwrap(),
        );
        assert!(
            store.lock().blobs.contains_key(&ContentHash::of(b"one")),
            "u still refers to it"
        );
        accepted(
            store
                .push(&t, push("k", b"three", Precondition::Match(second.rev)))
                .await
                .unwrap(),
        );
        let blobs = store.lock().blobs.clone();
        assert!(
            !blobs.contains_key(&ContentHash::of(b"two")),
            "nothing refers to it"
        );
        assert!(blobs.contains_key(&ContentHash::of(b"three")));
        assert!(blobs.contains_key(&ContentHash::of(b"one")));
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
            crate::full_history(&store, &t, &key("lost.txt"))
                .await
                .unwrap(),
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
