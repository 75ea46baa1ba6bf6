//! The JSON bodies and headers of docs/PROTOCOL.md, shared by the server and the client so the
//! two cannot drift apart: items, versions, change pages, the error body, header names, and the
//! string forms of stamps and ETags.
//!
//! Plain data and pure conversions only: nothing here does I/O or knows about axum or reqwest.

use serde::{Deserialize, Serialize};
use sync_core::{
    ChangePage, ContentHash, Cursor, ItemKind, ItemMeta, Key, Revision, Stamp, VersionMeta,
};

/// Base path of every route.
pub(crate) const PREFIX: &str = "/sync/v1";
/// Header carrying an item's blake3 hash.
pub(crate) const X_SYNC_HASH: &str = "x-sync-hash";
/// Header carrying an edit's stamp.
pub(crate) const X_SYNC_STAMP: &str = "x-sync-stamp";
/// Header carrying the highest revision the client has seen (Lamport rule).
pub(crate) const X_SYNC_SEEN: &str = "x-sync-seen";
/// Header carrying an item's kind on `GET /items`.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) const X_SYNC_KIND: &str = "x-sync-kind";

/// `limit` of `GET /changes` when absent.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` of `GET /changes`.
pub(crate) const MAX_LIMIT: usize = 10_000;
/// The largest `wait` of `GET /changes`, in seconds.
pub(crate) const MAX_WAIT_SECS: u64 = 60;

/// Serde for [`Stamp`] as its wire string `<millis>.<counter>.<node hex>`.
pub(crate) mod stamp_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use sync_core::Stamp;

    pub(crate) fn serialize<S: Serializer>(stamp: &Stamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(stamp)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Stamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An item in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireItem {
    pub key: Key,
    pub kind: ItemKind,
    pub rev: u64,
    pub hash: Option<ContentHash>,
    pub size: u64,
    #[serde(with = "stamp_str")]
    pub stamp: Stamp,
    pub deleted: bool,
}

impl From<&ItemMeta> for WireItem {
    fn from(m: &ItemMeta) -> WireItem {
        WireItem {
            key: m.key.clone(),
            kind: m.kind,
            rev: m.rev.0,
            hash: m.hash,
            size: m.size,
            stamp: m.stamp,
            deleted: m.deleted,
        }
    }
}

impl From<WireItem> for ItemMeta {
    fn from(w: WireItem) -> ItemMeta {
        ItemMeta {
            key: w.key,
            kind: w.kind,
            rev: Revision(w.rev),
            hash: w.hash,
            size: w.size,
            stamp: w.stamp,
            deleted: w.deleted,
        }
    }
}

/// A version in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireVersion {
    pub rev: u64,
    pub hash: Option<ContentHash>,
    pub size: u64,
    #[serde(with = "stamp_str")]
    pub stamp: Stamp,
    pub deleted: bool,
}

impl From<&VersionMeta> for WireVersion {
    fn from(v: &VersionMeta) -> WireVersion {
        WireVersion {
            rev: v.rev.0,
            hash: v.hash,
            size: v.size,
            stamp: v.stamp,
            deleted: v.deleted,
        }
    }
}

impl From<WireVersion> for VersionMeta {
    fn from(w: WireVersion) -> VersionMeta {
        VersionMeta {
            rev: Revision(w.rev),
            hash: w.hash,
            size: w.size,
            stamp: w.stamp,
            deleted: w.deleted,
        }
    }
}

/// `GET /changes` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WirePage {
    pub changes: Vec<WireItem>,
    pub cursor: Cursor,
    pub more: bool,
}

impl From<&ChangePage> for WirePage {
    fn from(p: &ChangePage) -> WirePage {
        WirePage {
            changes: p.changes.iter().map(WireItem::from).collect(),
            cursor: p.cursor,
            more: p.more,
        }
    }
}

impl From<WirePage> for ChangePage {
    fn from(w: WirePage) -> ChangePage {
        ChangePage {
            changes: w.changes.into_iter().map(ItemMeta::from).collect(),
            cursor: w.cursor,
            more: w.more,
        }
    }
}

/// `GET /history` response: one page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireHistory {
    pub versions: Vec<WireVersion>,
    /// When older versions follow: the `before` of the next page (the oldest revision of this
    /// one); `null` on the last page. An older server, which sent the whole history oldest
    /// first, sends no such field (read as `null`: one page).
    #[serde(default)]
    pub next_before: Option<u64>,
}

/// The inner object of every error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireErrorDetail {
    pub code: String,
    pub message: String,
    /// For `too_large`: the server's limit in bytes (an optional extra field; clients that do
    /// not know it ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Every error body: `{"error":{...}}`, plus `current` on a 412 `conflict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub error: WireErrorDetail,
    /// On 412 only: the item as it now is (`null` when absent). Absent on other errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Option<WireItem>>,
}

/// `"<rev>"`, the ETag / If-Match form of a revision.
pub(crate) fn etag(rev: Revision) -> String {
    format!("\"{}\"", rev.0)
}

/// Parses `"<rev>"` (a quoted decimal); `None` for anything else.
pub(crate) fn parse_etag(s: &str) -> Option<Revision> {
    let inner = s.trim().strip_prefix('"')?.strip_suffix('"')?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok().map(Revision)
}

/// Parses a revision number as sent in `X-Sync-Seen` or `?rev=`.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn parse_rev(s: &str) -> Option<Revision> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().map(Revision)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sync_core::NodeId;

    #[test]
    fn item_json_matches_the_protocol_doc() {
        let item = WireItem {
            key: Key::new("docs/a.txt").unwrap(),
            kind: ItemKind::File,
            rev: 12,
            hash: None,
            size: 5,
            stamp: Stamp {
                millis: 1_700_000_000_000,
                counter: 0,
                node: NodeId(0xab),
            },
            deleted: false,
        };
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"key":"docs/a.txt","kind":"file","rev":12,"hash":null,"size":5,"stamp":"1700000000000.0.00000000000000ab","deleted":false}"#
        );
        assert_eq!(serde_json::from_str::<WireItem>(&json).unwrap(), item);
    }

    #[test]
    fn etags_round_trip_and_reject_garbage() {
        assert_eq!(parse_etag(&etag(Revision(42))), Some(Revision(42)));
        for bad in [
            "42",
            "\"\"",
            "\"4 2\"",
            "W/\"4\"",
            "\"-1\"",
            "\"99999999999999999999999\"",
        ] {
            assert_eq!(parse_etag(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_body_has_current_only_when_set() {
        let e = WireError {
            error: WireErrorDetail {
                code: "conflict".into(),
                message: "m".into(),
                limit: None,
            },
            current: Some(None),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":{"code":"conflict","message":"m"},"current":null}"#
        );
        let e = WireError { current: None, ..e };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":{"code":"conflict","message":"m"}}"#
        );
    }
}

/// The content type of a batch body: one line of JSON (the manifest), `\n`, then the contents of
/// the items the manifest lists, back to back, each `size` bytes (docs/PROTOCOL.md "Batches").
pub(crate) const BATCH_CONTENT_TYPE: &str = "application/x-sync-batch";
/// The most items one batch request may carry or ask for.
#[cfg(feature = "server")]
pub(crate) const BATCH_MAX_ITEMS: usize = 1000;
/// The most content bytes one batch push may carry, and one batch fetch answer returns.
pub(crate) const BATCH_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// The most bytes a batch manifest may take.
#[cfg(feature = "server")]
pub(crate) const BATCH_MAX_MANIFEST: u64 = 1024 * 1024;

/// One push of a batch: as `PUT /items/<key>` with its headers, the content in the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireBatchPush {
    pub key: String,
    /// The revision to overwrite; `null` to create (a tombstone counts as absent).
    pub if_match: Option<u64>,
    pub hash: ContentHash,
    /// The edit's stamp; the server's clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    pub size: u64,
}

/// The manifest of `POST /batch/push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireBatchPushManifest {
    #[serde(default)]
    pub seen: u64,
    pub items: Vec<WireBatchPush>,
}

/// One result of a batch: `status` is what the single route would have answered, with its
/// item, or its error (and `current` on 412).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireBatchResult {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<WireItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Option<WireItem>>,
    /// On a fetch's 200: the version sent (its content follows the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<WireVersion>,
}

/// The answer of a batch: one result per item, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireBatchResults {
    pub results: Vec<WireBatchResult>,
}

/// One fetch of a batch: the current version of `key`, or revision `rev`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireBatchFetch {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
}

/// The body of `POST /batch/fetch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireBatchFetchRequest {
    pub items: Vec<WireBatchFetch>,
}

/// Splits a batch body into its manifest and the contents after it.
pub(crate) fn split_batch(body: &bytes::Bytes) -> Option<(bytes::Bytes, bytes::Bytes)> {
    let nl = body.iter().position(|b| *b == b'\n')?;
    Some((body.slice(..nl), body.slice(nl + 1..)))
}
