//! [`MemoryReplica`]: a [`Replica`] whose items (folders and files) live in memory.
//!
//! Two faces: the [`Replica`] trait, which the engine uses to sync, and a user-side API
//! ([`MemoryReplica::put`], [`MemoryReplica::delete`], [`MemoryReplica::rename`], …) through which
//! tests and apps play "the user editing". The user-side API bypasses the expected-state checks
//! and the fault injection on purpose; the trait methods must honour both. Both faces move one
//! change counter (the change token) and log the keys they change, so the engine's partial
//! passes ([`Replica::scan_since`]) run in every test over this replica. Nothing here touches
//! the disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Backup, ChangedItems, Content, ContentHash, Error, ErrorClass, Expected, Fingerprint, Key,
    KnownItem, LocalItem, Replica, Result, Scan, Skipped, Stamp, SystemTimeSource, TimeSource,
};

/// What sits at a key.
#[derive(Debug, Clone)]
enum Node {
    Folder,
    File(Bytes),
}

#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    modified_millis: u64,
    inode: u64,
}

impl Entry {
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            size: self.size(),
            mtime_ns: i128::from(self.modified_millis) * 1_000_000,
            inode: self.inode,
        }
    }

    fn size(&self) -> u64 {
        match &self.node {
            Node::Folder => 0,
            Node::File(b) => b.len() as u64,
        }
    }

    fn is_folder(&self) -> bool {
        matches!(self.node, Node::Folder)
    }

    fn local_item(&self, key: &Key, content: Content) -> LocalItem {
        LocalItem {
            key: key.clone(),
            content,
            size: self.size(),
            fingerprint: self.fingerprint(),
            modified_millis: self.modified_millis,
        }
    }

    /// The item as a scan reports it, hashing a file's content.
    fn hashed_item(&self, key: &Key) -> LocalItem {
        let content = match &self.node {
            Node::Folder => Content::Folder,
            Node::File(b) => Content::File(ContentHash::of(b)),
        };
        self.local_item(key, content)
    }
}

#[derive(Debug, Default)]
struct Inner {
    items: BTreeMap<Key, Entry>,
    /// Backups in the order they were made, with their content.
    backups: Vec<(Backup, Bytes)>,
    /// The last inode handed out.
    last_inode: u64,
    /// How many more mutating trait calls may succeed; `None`: no limit.
    fail_after: Option<u64>,
    /// The change counter: moved by every change to `items`, whoever made it.
    seq: u64,
    /// The counter's value at each key's last change (a write or a removal).
    changed_at: HashMap<Key, u64>,
    /// The same, by counter value: what changed after a given value, in order.
    changed: BTreeMap<u64, Key>,
}

impl Inner {
    fn next_inode(&mut self) -> u64 {
        self.last_inode += 1;
        self.last_inode
    }

    /// Moves the change counter and records that `key` changed at its new value.
    fn touch(&mut self, key: &Key) {
        self.seq += 1;
        if let Some(old) = self.changed_at.insert(key.clone(), self.seq) {
            self.changed.remove(&old);
        }
        self.changed.insert(self.seq, key.clone());
    }

    /// Removes the item at `key` (not what is under it).
    fn remove_one(&mut self, key: &Key) {
        if self.items.remove(key).is_some() {
            self.touch(key);
        }
    }

    /// Stores `node` at `key` with a new inode, stamped `now`.
    fn store(&mut self, key: &Key, node: Node, now: u64) -> &Entry {
        self.touch(key);
        let inode = self.next_inode();
        self.items.insert(
            key.clone(),
            Entry {
                node,
                modified_millis: now,
                inode,
            },
        );
        &self.items[key]
    }

    /// Removes `key` and everything under it.
    fn remove_tree(&mut self, key: &Key) {
        let gone: Vec<Key> = self
            .items
            .keys()
            .filter(|k| k.starts_with(key))
            .cloned()
            .collect();
        for k in gone {
            self.remove_one(&k);
        }
    }

    fn has_children(&self, key: &Key) -> bool {
        self.items.keys().any(|k| k != key && k.starts_with(key))
    }

    /// User side: makes every folder above `key` exist, replacing files in the way.
    fn force_parents(&mut self, key: &Key, now: u64) {
        for folder in key.ancestors() {
            match self.items.get(&folder) {
                Some(e) if e.is_folder() => {}
                _ => {
                    self.remove_one(&folder);
                    self.store(&folder, Node::Folder, now);
                }
            }
        }
    }

    /// Trait side: fails with `Error::Item` when a file sits where a folder above `key` must be.
    fn check_parents(&self, key: &Key) -> Result<()> {
        for folder in key.ancestors() {
            if let Some(e) = self.items.get(&folder) {
                if !e.is_folder() {
                    return Err(Error::item(
                        key,
                        format!("a file is in the way at {folder}, where a folder is needed"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Trait side: creates the missing folders above `key` (after `check_parents`).
    fn make_parents(&mut self, key: &Key, now: u64) {
        for folder in key.ancestors() {
            if !self.items.contains_key(&folder) {
                self.store(&folder, Node::Folder, now);
            }
        }
    }

    /// Fault injection: fails when no more mutating calls may succeed.
    fn gate(&self) -> Result<()> {
        if self.fail_after == Some(0) {
            return Err(Error::storage(
                "the in-memory replica was told to fail (fail_after)",
            ));
        }
        Ok(())
    }

    /// Fault injection: one more mutating call succeeded.
    fn succeeded(&mut self) {
        if let Some(n) = &mut self.fail_after {
            *n = n.saturating_sub(1);
        }
    }

    /// `Error::Changed` unless the item at `key` is as `expected`.
    fn check_expected(&self, key: &Key, expected: Expected) -> Result<()> {
        let ok = match (expected, self.items.get(key)) {
            (Expected::Absent, None) => true,
            (Expected::Present(fp), Some(e)) => e.fingerprint() == fp,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Changed { key: key.clone() })
        }
    }
}

/// An in-memory [`Replica`]: folders and files by key, each with a fingerprint (size, mtime from
/// the time source, and an inode that changes on every write), plus backups and fault
/// injection. Clones share the same items.
///
/// ```
/// use sync_core::memory::MemoryReplica;
/// use sync_core::Key;
/// let replica = MemoryReplica::default();
/// let key = Key::new("notes/a.txt").unwrap();
/// replica.put(&key, "hello");
/// assert_eq!(replica.get(&key).unwrap(), b"hello");
/// assert_eq!(replica.folders(), vec![Key::new("notes").unwrap()]);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryReplica {
    time: Arc<dyn TimeSource>,
    inner: Arc<Mutex<Inner>>,
}

impl Default for MemoryReplica {
    fn default() -> Self {
        MemoryReplica::new(Arc::new(SystemTimeSource))
    }
}

impl MemoryReplica {
    /// An empty replica whose modification times come from `time`.
    pub fn new(time: Arc<dyn TimeSource>) -> MemoryReplica {
        MemoryReplica {
            time,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        self.time.now_millis()
    }

    /// The user writes a file: creates missing parent folders (a file in the way of a parent is
    /// replaced by a folder) and replaces whatever was at `key` (a folder with its contents).
    pub fn put(&self, key: &Key, content: impl AsRef<[u8]>) {
        let now = self.now();
        let mut inner = self.lock();
        if inner.items.get(key).is_some_and(Entry::is_folder) {
            inner.remove_tree(key);
        }
        inner.force_parents(key, now);
        inner.store(
            key,
            Node::File(Bytes::copy_from_slice(content.as_ref())),
            now,
        );
    }

    /// The user makes a folder and its parents; a file at `key` is replaced by the folder. An
    /// existing folder is left as it is.
    pub fn mkdir(&self, key: &Key) {
        let now = self.now();
        let mut inner = self.lock();
        if inner.items.get(key).is_some_and(Entry::is_folder) {
            return;
        }
        inner.remove_one(key);
        inner.force_parents(key, now);
        inner.store(key, Node::Folder, now);
    }

    /// The content of the file at `key`, if there is a file.
    pub fn get(&self, key: &Key) -> Option<Vec<u8>> {
        match &self.lock().items.get(key)?.node {
            Node::File(b) => Some(b.to_vec()),
            Node::Folder => None,
        }
    }

    /// The user deletes `key` and everything under it.
    pub fn delete(&self, key: &Key) {
        self.lock().remove_tree(key);
    }

    /// The user renames `from` (and everything under it) to `to`, replacing whatever was at
    /// `to`; items keep their inode and modification time, as a rename on disk does. Missing
    /// parents of `to` are created. Does nothing if `from` does not exist or `to` lies inside
    /// `from`.
    pub fn rename(&self, from: &Key, to: &Key) {
        let now = self.now();
        let mut inner = self.lock();
        if !inner.items.contains_key(from) || to.starts_with(from) {
            return;
        }
        let moved: Vec<(Key, Entry)> = inner
            .items
            .iter()
            .filter(|(k, _)| k.starts_with(from))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        inner.remove_tree(from);
        inner.remove_tree(to);
        inner.force_parents(to, now);
        for (old, entry) in moved {
            let rest = &old.as_str()[from.as_str().len()..];
            if let Ok(new) = Key::new(format!("{to}{rest}")) {
                inner.touch(&new);
                inner.items.insert(new, entry);
            }
        }
    }

    /// Every file with its content.
    pub fn files(&self) -> BTreeMap<Key, Vec<u8>> {
        self.lock()
            .items
            .iter()
            .filter_map(|(k, e)| match &e.node {
                Node::File(b) => Some((k.clone(), b.to_vec())),
                Node::Folder => None,
            })
            .collect()
    }

    /// Every folder, sorted.
    pub fn folders(&self) -> Vec<Key> {
        self.lock()
            .items
            .iter()
            .filter(|(_, e)| e.is_folder())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The content of every backup, in the order they were made.
    pub fn backup_contents(&self) -> Vec<Vec<u8>> {
        self.lock()
            .backups
            .iter()
            .map(|(_, b)| b.to_vec())
            .collect()
    }

    /// Fault injection: after `n` more successful mutating trait calls (`write`,
    /// `create_folder`, `remove`, `backup`), every further one fails with [`Error::Storage`]
    /// until this is called with `None`.
    pub fn fail_after(&self, n: Option<u64>) {
        self.lock().fail_after = n;
    }
}

#[async_trait]
impl Replica for MemoryReplica {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max_item_bytes: u64) -> Result<Scan> {
        let inner = self.lock();
        let mut scan = Scan::default();
        for (key, entry) in &inner.items {
            list(&mut scan, key, entry, known.get(key), max_item_bytes);
        }
        Ok(scan)
    }

    async fn change_token(&self) -> Result<Option<u64>> {
        Ok(Some(self.lock().seq))
    }

    async fn scan_since(
        &self,
        since: u64,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<Option<ChangedItems>> {
        let inner = self.lock();
        let mut keys: BTreeSet<Key> = also.clone();
        keys.extend(inner.changed.range(since + 1..).map(|(_, k)| k.clone()));
        let mut scan = Scan::default();
        for key in &keys {
            if let Some(entry) = inner.items.get(key) {
                list(&mut scan, key, entry, None, max_item_bytes);
            }
        }
        Ok(Some(ChangedItems { scan, keys }))
    }

    async fn read(&self, key: &Key) -> Result<Bytes> {
        match self.lock().items.get(key).map(|e| &e.node) {
            Some(Node::File(b)) => Ok(b.clone()),
            _ => Err(Error::NotFound { key: key.clone() }),
        }
    }

    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem> {
        let now = self.now();
        let mut inner = self.lock();
        inner.gate()?;
        inner.check_expected(key, expected)?;
        inner.check_parents(key)?;
        if inner.has_children(key) {
            return Err(Error::item(
                key,
                "a folder with items in it is in the way; move its items first",
            ));
        }
        inner.make_parents(key, now);
        let hash = ContentHash::of(&content);
        let item = inner
            .store(key, Node::File(content), now)
            .local_item(key, Content::File(hash));
        inner.succeeded();
        Ok(item)
    }

    async fn create_folder(&self, key: &Key) -> Result<LocalItem> {
        let now = self.now();
        let mut inner = self.lock();
        inner.gate()?;
        let item = match inner.items.get(key) {
            Some(e) if e.is_folder() => e.local_item(key, Content::Folder),
            Some(_) => {
                return Err(Error::item(
                    key,
                    "a file is in the way where a folder is needed; rename or remove it",
                ))
            }
            None => {
                inner.check_parents(key)?;
                inner.make_parents(key, now);
                inner
                    .store(key, Node::Folder, now)
                    .local_item(key, Content::Folder)
            }
        };
        inner.succeeded();
        Ok(item)
    }

    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
        let mut inner = self.lock();
        inner.gate()?;
        let content = match inner.items.get(key).map(|e| &e.node) {
            Some(Node::File(b)) => b.clone(),
            _ => {
                inner.succeeded();
                return Ok(None);
            }
        };
        let hash = ContentHash::of(&content);
        let base = format!("backups/{key}/{}-{}", stamp.millis, hash.short());
        let ext = key.extension();
        let mut location = format!("{base}{ext}");
        let mut n = 1u64;
        while inner.backups.iter().any(|(b, _)| b.location == location) {
            location = format!("{base}-{n}{ext}");
            n += 1;
        }
        let backup = Backup {
            key: key.clone(),
            location,
            hash,
            size: content.len() as u64,
        };
        inner.backups.push((backup.clone(), content));
        inner.succeeded();
        Ok(Some(backup))
    }

    async fn remove(&self, key: &Key, expected: Expected) -> Result<()> {
        let mut inner = self.lock();
        inner.gate()?;
        inner.check_expected(key, expected)?;
        if !inner.has_children(key) {
            inner.remove_one(key);
        }
        inner.succeeded();
        Ok(())
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        Ok(self.lock().backups.iter().map(|(b, _)| b.clone()).collect())
    }

    async fn read_backup(&self, backup: &Backup) -> Result<Bytes> {
        self.lock()
            .backups
            .iter()
            .find(|(b, _)| b.location == backup.location)
            .map(|(_, content)| content.clone())
            .ok_or_else(|| Error::NotFound {
                key: backup.key.clone(),
            })
    }
}

/// Adds `entry` to `scan` as a scan lists it: skipped when over `max_item_bytes`, its content
/// taken from `known` when the fingerprint still matches, hashed otherwise.
fn list(scan: &mut Scan, key: &Key, entry: &Entry, known: Option<&KnownItem>, max_item_bytes: u64) {
    let size = entry.size();
    if !entry.is_folder() && size > max_item_bytes {
        scan.skipped.push(Skipped {
            key: Some(key.clone()),
            path: key.to_string(),
            class: ErrorClass::Warning,
            message: format!(
                "{key}: {size} bytes is over the limit of {max_item_bytes} bytes; it is not \
                 synced (make it smaller, or raise max_item_bytes to sync it)"
            ),
        });
        return;
    }
    let reuse = known
        .filter(|k| k.fingerprint == entry.fingerprint() && k.content.kind() == entry_kind(entry));
    let item = match reuse {
        Some(k) => entry.local_item(key, k.content),
        None => {
            if !entry.is_folder() {
                scan.hashed += 1;
            }
            entry.hashed_item(key)
        }
    };
    scan.items.insert(key.clone(), item);
}

fn entry_kind(entry: &Entry) -> crate::ItemKind {
    match entry.node {
        Node::Folder => crate::ItemKind::Folder,
        Node::File(_) => crate::ItemKind::File,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualTime, NodeId};

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn replica() -> MemoryReplica {
        MemoryReplica::new(ManualTime::new(5_000))
    }

    #[test]
    fn put_creates_parents_and_replaces() {
        let r = replica();
        r.put(&key("a/b/c.txt"), "one");
        assert_eq!(r.folders(), vec![key("a"), key("a/b")]);
        r.put(&key("a/b/c.txt"), "two");
        assert_eq!(r.get(&key("a/b/c.txt")).unwrap(), b"two");
        // A file in the way of a parent becomes a folder; a folder at the key becomes a file.
        r.put(&key("a/b/c.txt/d"), "deep");
        assert_eq!(r.folders(), vec![key("a"), key("a/b"), key("a/b/c.txt")]);
        r.put(&key("a/b"), "flat");
        assert_eq!(r.folders(), vec![key("a")]);
        assert_eq!(
            r.files().into_iter().collect::<Vec<_>>(),
            vec![(key("a/b"), b"flat".to_vec())]
        );
        assert_eq!(r.get(&key("a")), None, "a folder has no content");
    }

    #[test]
    fn delete_removes_the_subtree_only() {
        let r = replica();
        r.put(&key("a/x"), "x");
        r.put(&key("a/sub/y"), "y");
        r.put(&key("a-b"), "sibling");
        r.put(&key("ab/z"), "z");
        r.delete(&key("a"));
        assert_eq!(
            r.files().keys().cloned().collect::<Vec<_>>(),
            vec![key("a-b"), key("ab/z")]
        );
        assert_eq!(r.folders(), vec![key("ab")]);
        r.delete(&key("missing"));
        assert_eq!(r.files().len(), 2);
    }

    #[tokio::test]
    async fn rename_moves_the_subtree_and_keeps_fingerprints() {
        let r = replica();
        r.put(&key("old/one.txt"), "1");
        r.put(&key("old/sub/two.txt"), "2");
        r.put(&key("new/existing.txt"), "replaced");
        let before = r.scan(&BTreeMap::new(), u64::MAX).await.unwrap();
        r.rename(&key("old"), &key("new"));
        assert_eq!(
            r.files(),
            BTreeMap::from([
                (key("new/one.txt"), b"1".to_vec()),
                (key("new/sub/two.txt"), b"2".to_vec()),
            ])
        );
        let after = r.scan(&BTreeMap::new(), u64::MAX).await.unwrap();
        assert_eq!(
            after.items[&key("new/one.txt")].fingerprint,
            before.items[&key("old/one.txt")].fingerprint
        );
        // A file renamed into a folder that does not exist yet.
        r.rename(&key("new/one.txt"), &key("deep/er/one.txt"));
        assert_eq!(r.get(&key("deep/er/one.txt")).unwrap(), b"1");
        assert!(r.folders().contains(&key("deep/er")));
        // No-ops: a missing source, a rename into itself.
        r.rename(&key("nope"), &key("x"));
        r.rename(&key("new"), &key("new/inside"));
        assert_eq!(r.get(&key("new/sub/two.txt")).unwrap(), b"2");
    }

    #[tokio::test]
    async fn fail_after_counts_successful_mutations_until_reset() {
        let r = replica();
        r.fail_after(Some(2));
        r.write(&key("a"), Bytes::from_static(b"a"), Expected::Absent)
            .await
            .unwrap();
        // A refused write does not count.
        assert!(matches!(
            r.write(&key("a"), Bytes::from_static(b"x"), Expected::Absent)
                .await,
            Err(Error::Changed { .. })
        ));
        r.create_folder(&key("d")).await.unwrap();
        let err = r
            .write(&key("b"), Bytes::from_static(b"b"), Expected::Absent)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Storage { .. }), "{err:?}");
        assert!(r.create_folder(&key("e")).await.is_err());
        assert!(r.backup(&key("a"), Stamp::at(1, NodeId(1))).await.is_err());
        assert!(r.remove(&key("d"), Expected::Absent).await.is_err());
        // Reads and the user-side API still work.
        assert_eq!(r.read(&key("a")).await.unwrap(), Bytes::from_static(b"a"));
        r.put(&key("user.txt"), "u");
        assert_eq!(r.get(&key("b")), None);
        r.fail_after(None);
        r.write(&key("b"), Bytes::from_static(b"b"), Expected::Absent)
            .await
            .unwrap();
        assert!(r
            .backup(&key("a"), Stamp::at(1, NodeId(1)))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn inode_changes_on_every_write_and_mtime_follows_the_clock() {
        let time = ManualTime::new(1_000);
        let r = MemoryReplica::new(time.clone());
        let a = r
            .write(&key("f"), Bytes::from_static(b"1"), Expected::Absent)
            .await
            .unwrap();
        time.set(2_000);
        let b = r
            .write(
                &key("f"),
                Bytes::from_static(b"2"),
                Expected::Present(a.fingerprint),
            )
            .await
            .unwrap();
        assert!(b.fingerprint.inode > a.fingerprint.inode);
        assert_eq!(a.fingerprint.mtime_ns, 1_000_000_000);
        assert_eq!(b.fingerprint.mtime_ns, 2_000_000_000);
        assert_eq!(b.modified_millis, 2_000);
    }

    #[tokio::test]
    async fn backups_get_distinct_locations_and_keep_the_extension() {
        let r = replica();
        r.put(&key("docs/page.html"), "x");
        let stamp = Stamp::at(42, NodeId(1));
        let a = r
            .backup(&key("docs/page.html"), stamp)
            .await
            .unwrap()
            .unwrap();
        let b = r
            .backup(&key("docs/page.html"), stamp)
            .await
            .unwrap()
            .unwrap();
        let short = ContentHash::of(b"x").short();
        assert_eq!(
            a.location,
            format!("backups/docs/page.html/42-{short}.html")
        );
        assert_eq!(
            b.location,
            format!("backups/docs/page.html/42-{short}-1.html")
        );
        assert_eq!(r.backup_contents(), vec![b"x".to_vec(), b"x".to_vec()]);
        assert!(r.backup(&key("docs"), stamp).await.unwrap().is_none());
    }
}
