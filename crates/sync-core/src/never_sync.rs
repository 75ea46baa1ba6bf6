//! What never leaves this device (docs/SPEC.md §3 "Never-sync filter"): [`NeverSync`], the
//! filter (whole keys by prefix, and JSON fields of values), and [`NeverSyncReplica`], a
//! [`Replica`] wrapper that applies it so no engine, transport or server ever sees them.
//!
//! The wrapper shows the engine a *synced view* of each value: never-sync keys are left out of
//! scans (and [`Replica::ignores`] them, so the engine neither downloads nor deletes them), and
//! values under a field rule are read with those fields removed and hashed that way. A value
//! written by a sync gets this device's private fields put back before it is stored. Because
//! the scan reports the hash of the synced view, an app editing only a private field changes
//! nothing that syncs, and a stripped upload never looks like a local change on the next scan.
//!
//! Architecture invariant: stripping and restoring are pure functions of their inputs
//! ([`NeverSync::strip`], [`NeverSync::restore`]); the wrapper only calls them around the inner
//! replica. A value that cannot be stripped (not JSON) is never uploaded: the scan reports it as
//! an item problem instead.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{
    Backup, ChangedItems, Content, ContentHash, Error, ErrorClass, Expected, Key, KnownItem,
    LocalItem, LocalWrite, Replica, Result, Scan, Skipped, Stamp,
};

/// Why a value under a field rule could not be stripped or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NeverSyncError {
    /// The value is not JSON, so its private fields cannot be found.
    #[error(
        "{key} is not JSON, so its never-sync fields cannot be removed; it is not uploaded \
         until it is valid JSON ({detail})"
    )]
    NotJson {
        /// The key.
        key: Key,
        /// The parser's message.
        detail: String,
    },
    /// The synced value has something other than an object where a private field's parent
    /// must be, so this device's private field has nowhere to go.
    #[error(
        "the synced value of {key} has something other than an object at `{path}`, so this \
         device's private field cannot be kept; the local value was left as it is (make `{path}` \
         an object or remove it on any device, or remove the private field here)"
    )]
    NoPlaceForField {
        /// The key.
        key: Key,
        /// The dotted path of the parent that is not an object.
        path: String,
    },
}

impl From<NeverSyncError> for Error {
    fn from(e: NeverSyncError) -> Error {
        let key = match &e {
            NeverSyncError::NotJson { key, .. } | NeverSyncError::NoPlaceForField { key, .. } => {
                key.clone()
            }
        };
        Error::item(&key, e.to_string())
    }
}

/// Keys and JSON fields that never leave this device.
///
/// Prefixes are matched as text against the key (end one with `/` to mean a folder); a field
/// is a dotted path of object members (`"identity.private_key"`), applied to every value whose
/// key starts with its prefix. A field inside an array cannot be named: keep such elements
/// under keys of their own (`ssh/<id>`).
///
/// ```
/// use sync_core::{Key, NeverSync};
/// let filter = NeverSync::new()
///     .key_prefix("local/")
///     .field("ssh/", "private_key");
/// let key = Key::new("ssh/home").unwrap();
/// let stored = br#"{"host":"example.org","private_key":"-----BEGIN..."}"#;
/// let synced = filter.strip(&key, stored).unwrap();
/// assert_eq!(&*synced, br#"{"host":"example.org"}"#);
/// // What comes back from the server gets this device's private field again.
/// let back = filter.restore(&key, br#"{"host":"example.com"}"#, Some(stored)).unwrap();
/// assert_eq!(&*back, br#"{"host":"example.com","private_key":"-----BEGIN..."}"#);
/// assert!(filter.excludes(&Key::new("local/cache").unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeverSync {
    keys: Vec<String>,
    fields: Vec<(String, Vec<String>)>,
}

impl NeverSync {
    /// A filter that lets everything sync.
    pub fn new() -> NeverSync {
        NeverSync::default()
    }

    /// Keys starting with `prefix` never sync: they are not uploaded, not downloaded, and their
    /// absence on either side is not a delete. A prefix ending in `/` also keeps the folder
    /// itself (`local/` keeps the folder `local`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> NeverSync {
        self.keys.push(prefix.into());
        self
    }

    /// In values whose key starts with `prefix`, the JSON field at the dotted `path` never
    /// syncs. Such values must be JSON: one that is not is reported and not uploaded.
    #[must_use]
    pub fn field(mut self, prefix: impl Into<String>, path: &str) -> NeverSync {
        let path = path.split('.').map(str::to_owned).collect();
        self.fields.push((prefix.into(), path));
        self
    }

    /// True when `key` never syncs.
    pub fn excludes(&self, key: &Key) -> bool {
        let key = key.as_str();
        self.keys
            .iter()
            .any(|p| key.starts_with(p.as_str()) || p.strip_suffix('/') == Some(key))
    }

    /// True when values of `key` have fields that never sync.
    pub fn has_fields(&self, key: &Key) -> bool {
        self.paths(key).next().is_some()
    }

    fn paths<'a>(&'a self, key: &'a Key) -> impl Iterator<Item = &'a [String]> + 'a {
        self.fields
            .iter()
            .filter(move |(p, _)| key.as_str().starts_with(p.as_str()))
            .map(|(_, path)| path.as_slice())
    }

    /// The synced view of `content`: the value without its private fields (and without the
    /// objects that held only them). Returns `content`
    /// itself, byte for byte, when it has none of them (or `key` has no field rule), so the
    /// same value always gives the same bytes. A value with a field rule that is not JSON is an
    /// error.
    pub fn strip<'a>(
        &self,
        key: &Key,
        content: &'a [u8],
    ) -> std::result::Result<Cow<'a, [u8]>, NeverSyncError> {
        if !self.has_fields(key) {
            return Ok(Cow::Borrowed(content));
        }
        let mut value = parse(key, content)?;
        let mut removed = false;
        for path in self.paths(key) {
            removed |= take(&mut value, path).is_some();
        }
        Ok(if removed {
            Cow::Owned(to_bytes(&value))
        } else {
            Cow::Borrowed(content)
        })
    }

    /// `incoming` (a synced value, from the server or a merge) with this device's private
    /// fields taken from `local` (the value stored here now) put back. Returns `incoming`
    /// unchanged when there is nothing to put back. A private field in `incoming` itself (sent
    /// by a device without this rule) is replaced by this device's one, or kept when this
    /// device has none.
    ///
    /// [`strip`](Self::strip) of the result gives back `incoming`, with one exception: an
    /// object that `incoming` has empty where this device keeps a private field (say
    /// `{"identity":{}}` beside a private `identity.passphrase`) is dropped by the strip, as
    /// any object a strip leaves empty is. Such a value syncs once more without the empty
    /// object, and then stays.
    pub fn restore<'a>(
        &self,
        key: &Key,
        incoming: &'a [u8],
        local: Option<&[u8]>,
    ) -> std::result::Result<Cow<'a, [u8]>, NeverSyncError> {
        let Some(local) = local else {
            return Ok(Cow::Borrowed(incoming));
        };
        if !self.has_fields(key) {
            return Ok(Cow::Borrowed(incoming));
        }
        // A local value that is not JSON has no private fields to keep.
        let Ok(local) = serde_json::from_slice::<Value>(local) else {
            return Ok(Cow::Borrowed(incoming));
        };
        let private: Vec<(&[String], &Value)> = self
            .paths(key)
            .filter_map(|path| get(&local, path).map(|v| (path, v)))
            .collect();
        if private.is_empty() {
            return Ok(Cow::Borrowed(incoming));
        }
        let mut value = parse(key, incoming)?;
        for (path, field) in private {
            put(key, &mut value, path, field.clone())?;
        }
        Ok(Cow::Owned(to_bytes(&value)))
    }
}

fn parse(key: &Key, content: &[u8]) -> std::result::Result<Value, NeverSyncError> {
    serde_json::from_slice(content).map_err(|e| NeverSyncError::NotJson {
        key: key.clone(),
        detail: e.to_string(),
    })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its map keys are strings.
    serde_json::to_vec(value).unwrap_or_default()
}

fn get<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, name| v.as_object()?.get(name))
}

/// Removes the field at `path`, and the objects above it that hold nothing else any more (so
/// stripping a value whose parents [`NeverSync::restore`] made gives back what came in).
fn take(value: &mut Value, path: &[String]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let map = value.as_object_mut()?;
    if rest.is_empty() {
        return map.remove(first);
    }
    let child = map.get_mut(first)?;
    let taken = take(child, rest)?;
    if child.as_object().is_some_and(Map::is_empty) {
        map.remove(first);
    }
    Some(taken)
}

/// Sets the field at `path`, making the parent objects that are absent. A parent that is there
/// but is not an object (`null` included: the synced value chose it) is an error, so the synced
/// view of the result is exactly `value` as it came.
fn put(
    key: &Key,
    value: &mut Value,
    path: &[String],
    field: Value,
) -> std::result::Result<(), NeverSyncError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let no_place = |path: String| NeverSyncError::NoPlaceForField {
        key: key.clone(),
        path,
    };
    let mut target: &mut Map<String, Value> = match value {
        Value::Object(map) => map,
        _ => return Err(no_place("(the top level)".to_owned())),
    };
    for (i, name) in parents.iter().enumerate() {
        let slot = target
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        target = match slot {
            Value::Object(map) => map,
            _ => return Err(no_place(parents[..=i].join("."))),
        };
    }
    target.insert(last.clone(), field);
    Ok(())
}

/// A [`Replica`] that keeps what [`NeverSync`] names on this device: the engine syncs the
/// wrapped replica's items minus never-sync keys, and its values minus private fields.
///
/// ```
/// use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
/// use sync_core::{Engine, EngineConfig, Key, NeverSync, NeverSyncReplica, ServerConfig, TenantId};
/// use std::sync::Arc;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
/// let filter = NeverSync::new().field("ssh/", "private_key");
/// let replica = NeverSyncReplica::new(MemoryReplica::default(), filter);
/// let key = Key::new("ssh/home").unwrap();
/// replica.inner().put(&key, br#"{"host":"h","private_key":"secret"}"#);
/// let transport = LocalTransport::new(server.clone(), TenantId::new("alice"));
/// let mut engine = Engine::new(transport, MemoryStateStore::default(), replica, EngineConfig::default());
/// engine.sync_once().await.unwrap();
/// use sync_core::Transport;
/// let stored = engine.transport().fetch(&key, None).await.unwrap().content;
/// assert_eq!(stored, br#"{"host":"h"}"#.as_slice());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct NeverSyncReplica<R> {
    inner: R,
    filter: NeverSync,
}

impl<R> NeverSyncReplica<R> {
    /// `inner`, synced without what `filter` names.
    pub fn new(inner: R, filter: NeverSync) -> NeverSyncReplica<R> {
        NeverSyncReplica { inner, filter }
    }

    /// The wrapped replica, with every private key and field: what the app reads and edits.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The filter.
    pub fn filter(&self) -> &NeverSync {
        &self.filter
    }

    /// The wrapped replica.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Replica> NeverSyncReplica<R> {
    /// The inner replica's `scan` as the synced view shows it: private keys left out, items
    /// with private fields hashed without them (unless `known` recognises their fingerprint).
    async fn synced_scan(&self, mut scan: Scan, known: &BTreeMap<Key, KnownItem>) -> Result<Scan> {
        scan.items.retain(|key, _| !self.filter.excludes(key));
        scan.skipped
            .retain(|s| s.key.as_ref().is_none_or(|k| !self.filter.excludes(k)));
        let fresh: Vec<Key> = scan
            .items
            .iter()
            .filter(|(key, item)| {
                self.filter.has_fields(key)
                    && item.kind() == crate::ItemKind::File
                    // A fingerprint the last sync recorded means the inner scan reported the
                    // recorded (already synced-view) hash without reading.
                    && known.get(*key).map(|k| k.fingerprint) != Some(item.fingerprint)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in fresh {
            let Some(item) = scan.items.remove(&key) else {
                continue;
            };
            match self.synced_item(item).await {
                Ok(item) => {
                    scan.items.insert(key, item);
                }
                Err(e) if e.class() == ErrorClass::Item => scan.skipped.push(Skipped {
                    key: Some(key.clone()),
                    path: key.to_string(),
                    class: ErrorClass::Item,
                    message: e.to_string(),
                }),
                Err(e @ Error::Changed { .. }) | Err(e @ Error::NotFound { .. }) => {
                    // Changed or gone since the inner scan: leave it for the next sync.
                    scan.skipped.push(Skipped {
                        key: Some(key.clone()),
                        path: key.to_string(),
                        class: ErrorClass::Warning,
                        message: e.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(scan)
    }

    /// `content` read from the inner replica, with the private fields stripped.
    fn synced_view(&self, key: &Key, content: Bytes) -> Result<Bytes> {
        Ok(match self.filter.strip(key, &content)? {
            Cow::Borrowed(_) => content,
            Cow::Owned(synced) => Bytes::from(synced),
        })
    }

    /// The synced view of `item` as the inner replica holds it: its content hash and size
    /// after stripping.
    async fn synced_item(&self, mut item: LocalItem) -> Result<LocalItem> {
        if item.kind() != crate::ItemKind::File || !self.filter.has_fields(&item.key) {
            return Ok(item);
        }
        let content = self.inner.read(&item.key).await?;
        let synced = self.filter.strip(&item.key, &content)?;
        item.content = Content::File(ContentHash::of(&synced));
        item.size = synced.len() as u64;
        Ok(item)
    }
}

#[async_trait]
impl<R: Replica> Replica for NeverSyncReplica<R> {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max_item_bytes: u64) -> Result<Scan> {
        let scan = self.inner.scan(known, max_item_bytes).await?;
        self.synced_scan(scan, known).await
    }

    async fn scan_since(
        &self,
        since: u64,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<Option<ChangedItems>> {
        let Some(mut changed) = self.inner.scan_since(since, also, max_item_bytes).await? else {
            return Ok(None);
        };
        changed.keys.retain(|key| !self.filter.excludes(key));
        changed.scan = self.synced_scan(changed.scan, &BTreeMap::new()).await?;
        Ok(Some(changed))
    }

    async fn read(&self, key: &Key) -> Result<Bytes> {
        self.synced_view(key, self.inner.read(key).await?)
    }

    async fn read_many(&self, keys: &[Key]) -> Vec<Result<Bytes>> {
        let read = self.inner.read_many(keys).await;
        read.into_iter()
            .zip(keys)
            .map(|(content, key)| self.synced_view(key, content?))
            .collect()
    }

    /// Writes without field rules go to the inner replica together; the others one by one,
    /// each with this device's private fields put back.
    async fn write_many(&self, writes: Vec<LocalWrite>) -> Vec<Result<LocalItem>> {
        let mut out: Vec<Option<Result<LocalItem>>> = (0..writes.len()).map(|_| None).collect();
        let mut plain = Vec::new();
        let mut plain_at = Vec::new();
        for (i, w) in writes.into_iter().enumerate() {
            if self.filter.has_fields(&w.key) {
                out[i] = Some(self.write(&w.key, w.content, w.expected).await);
            } else {
                plain_at.push(i);
                plain.push(w);
            }
        }
        for (i, r) in plain_at.into_iter().zip(self.inner.write_many(plain).await) {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a write got no result"))))
            .collect()
    }

    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem> {
        if !self.filter.has_fields(key) {
            return self.inner.write(key, content, expected).await;
        }
        let current = match expected {
            Expected::Absent => None,
            Expected::Present(_) => match self.inner.read(key).await {
                Ok(c) => Some(c),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        let stored = match self.filter.restore(key, &content, current.as_deref())? {
            Cow::Borrowed(_) => content,
            Cow::Owned(v) => Bytes::from(v),
        };
        let mut item = self.inner.write(key, stored.clone(), expected).await?;
        // What a later read gives: the synced view of what was stored.
        if item.kind() == crate::ItemKind::File {
            let synced = self.filter.strip(key, &stored)?;
            item.content = Content::File(ContentHash::of(&synced));
            item.size = synced.len() as u64;
        }
        Ok(item)
    }

    async fn create_folder(&self, key: &Key) -> Result<LocalItem> {
        self.inner.create_folder(key).await
    }

    async fn change_token(&self) -> Result<Option<u64>> {
        // The filter never changes, so the synced view changes only when the inner one does.
        self.inner.change_token().await
    }

    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
        self.inner.backup(key, stamp).await
    }

    async fn remove(&self, key: &Key, expected: Expected) -> Result<()> {
        self.inner.remove(key, expected).await
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        self.inner.backups().await
    }

    async fn read_backup(&self, backup: &Backup) -> Result<Bytes> {
        self.inner.read_backup(backup).await
    }

    fn ignores(&self, key: &Key) -> bool {
        self.filter.excludes(key) || self.inner.ignores(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn filter() -> NeverSync {
        NeverSync::new()
            .key_prefix("device/")
            .field("ssh/", "private_key")
            .field("ssh/", "identity.passphrase")
    }

    #[test]
    fn strip_removes_every_private_field_and_nothing_else() {
        let k = key("ssh/home");
        let v = br#"{"host":"h","private_key":"k","identity":{"user":"u","passphrase":"p"}}"#;
        let out = filter().strip(&k, v).unwrap();
        assert_eq!(&*out, br#"{"host":"h","identity":{"user":"u"}}"#);
    }

    #[test]
    fn strip_keeps_the_bytes_when_nothing_is_private() {
        let k = key("ssh/home");
        let v = b"{ \"host\" :  \"h\" }";
        assert!(matches!(filter().strip(&k, v).unwrap(), Cow::Borrowed(b) if b == v));
        // Keys without a field rule are never parsed.
        assert!(matches!(
            filter().strip(&key("notes/a"), b"not json"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn strip_refuses_a_value_that_is_not_json() {
        let err = filter().strip(&key("ssh/home"), b"host h").unwrap_err();
        assert!(matches!(err, NeverSyncError::NotJson { .. }), "{err}");
        assert!(err.to_string().contains("not uploaded"), "{err}");
    }

    #[test]
    fn restore_puts_back_this_devices_fields_and_makes_parents() {
        let k = key("ssh/home");
        let local = br#"{"host":"old","private_key":"k","identity":{"passphrase":"p"}}"#;
        let out = filter()
            .restore(&k, br#"{"host":"new"}"#, Some(local))
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"host":"new","private_key":"k","identity":{"passphrase":"p"}})
        );
        // And stripping what was stored gives back what came in.
        assert_eq!(&*filter().strip(&k, &out).unwrap(), br#"{"host":"new"}"#);
    }

    #[test]
    fn restore_replaces_a_leaked_field_with_this_devices_one() {
        let k = key("ssh/home");
        let out = filter()
            .restore(
                &k,
                br#"{"private_key":"theirs"}"#,
                Some(br#"{"private_key":"mine"}"#),
            )
            .unwrap();
        assert_eq!(&*out, br#"{"private_key":"mine"}"#);
    }

    #[test]
    fn restore_without_local_private_fields_changes_nothing() {
        let k = key("ssh/home");
        let incoming = b"{ \"host\": \"h\" }";
        for local in [None, Some(&b"{}"[..]), Some(&b"garbage"[..])] {
            let out = filter().restore(&k, incoming, local).unwrap();
            assert!(matches!(out, Cow::Borrowed(b) if b == incoming));
        }
    }

    #[test]
    fn restore_refuses_when_the_field_has_nowhere_to_go() {
        let k = key("ssh/home");
        let local = br#"{"identity":{"passphrase":"p"}}"#;
        let err = filter()
            .restore(&k, br#"{"identity":"now a string"}"#, Some(local))
            .unwrap_err();
        assert!(
            matches!(&err, NeverSyncError::NoPlaceForField { path, .. } if path == "identity"),
            "{err}"
        );
        let err = filter().restore(&k, b"[1,2]", Some(local)).unwrap_err();
        assert!(
            matches!(err, NeverSyncError::NoPlaceForField { .. }),
            "{err}"
        );
    }

    #[test]
    fn excludes_matches_key_prefixes_only() {
        assert!(filter().excludes(&key("device/token")));
        assert!(filter().excludes(&key("device")));
        assert!(!filter().excludes(&key("devices/x")));
        assert!(!filter().excludes(&key("ssh/home")));
    }
}
