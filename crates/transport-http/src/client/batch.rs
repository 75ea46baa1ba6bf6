//! Batches on the wire, client side (docs/PROTOCOL.md "Batches"): many small pushes in one
//! `POST /batch/push`, many fetches in one `POST /batch/fetch`, each item with its own result.
//!
//! [`HttpTransport`]'s `push_many` and `fetch_many` send items up to [`BATCH_ITEM_BYTES`] this
//! way, in batches of at most [`BATCH_ITEMS`] items and [`BATCH_BYTES`] bytes, and larger items
//! on their own. A server without the batch routes (404) is remembered and spoken to one item
//! at a time. Each item's answer maps to the same `Result` its single route would give,
//! including the retried-write rule: a 412 whose `current` is what was sent is a success.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use sync_core::{
    ContentHash, Error, Fetched, ItemKind, ItemMeta, Key, Precondition, PushOutcome, PushRequest,
    Result, Revision, VersionMeta,
};

use super::errors::{error_for_status, ErrorContext};
use super::{read_capped, Capped, HttpTransport, JSON_CAP};
use crate::wire::{
    split_batch, WireBatchFetch, WireBatchFetchRequest, WireBatchPush, WireBatchPushManifest,
    WireBatchResult, WireBatchResults, WireError, WireErrorDetail, BATCH_CONTENT_TYPE,
    BATCH_MAX_BYTES,
};

/// Items up to this size travel in batches; larger ones on their own.
pub const BATCH_ITEM_BYTES: u64 = 64 * 1024;
/// Items per batch request.
pub const BATCH_ITEMS: usize = 500;
/// Content bytes per batch push (the server takes up to twice as many).
pub const BATCH_BYTES: u64 = BATCH_MAX_BYTES / 2;

/// Splits `items` (with their sizes) into runs that fit one batch.
pub(crate) fn chunks(sizes: &[u64]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && (i - start == BATCH_ITEMS || bytes + size > BATCH_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The `Error` an item's error result stands for, as its single route's answer would be.
fn item_error(
    result: &WireBatchResult,
    key: &Key,
    sent: Option<(&[u8], ContentHash)>,
    limit: u64,
) -> Error {
    let body = serde_json::to_vec(&WireError {
        error: result.error.clone().unwrap_or(WireErrorDetail {
            code: String::new(),
            message: String::new(),
            limit: None,
        }),
        current: None,
    })
    .unwrap_or_default();
    let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let ctx = ErrorContext {
        key: Some(key),
        sent,
        since: None,
        limit,
    };
    error_for_status(status, &body, None, &ctx)
}

fn unreadable(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::offline(format!(
        "{what}: the server's batch answer is not valid: {detail}"
    ))
}

impl HttpTransport {
    /// Pushes `reqs` in one batch request; `None` when the server has no batch route.
    pub(crate) async fn push_batch(
        &self,
        reqs: &[PushRequest],
    ) -> Result<Option<Vec<Result<PushOutcome>>>> {
        if self.no_batches.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let manifest = WireBatchPushManifest {
            seen: reqs.iter().map(|r| r.seen.0).max().unwrap_or(0),
            items: reqs
                .iter()
                .map(|r| WireBatchPush {
                    key: r.key.as_str().to_owned(),
                    if_match: match r.precondition {
                        Precondition::Create => None,
                        Precondition::Match(rev) => Some(rev.0),
                    },
                    hash: r.hash,
                    stamp: Some(r.stamp.to_string()),
                    size: r.content.len() as u64,
                })
                .collect(),
        };
        let manifest = serde_json::to_vec(&manifest).map_err(|e| unreadable("batch push", e))?;
        let total: usize = reqs.iter().map(|r| r.content.len()).sum();
        let mut body = BytesMut::with_capacity(manifest.len() + 1 + total);
        body.extend_from_slice(&manifest);
        body.extend_from_slice(b"\n");
        for r in reqs {
            body.extend_from_slice(&r.content);
        }
        let body: Bytes = body.freeze();
        let url = self.url("/batch/push");
        let sent = self
            .send("batch push", self.request_timeout, |h| {
                h.post(&url)
                    .header(CONTENT_TYPE, BATCH_CONTENT_TYPE)
                    .body(body.clone())
            })
            .await?;
        match sent.response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                self.no_batches.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            _ => return Err(self.failure(sent.response, &self.ctx()).await),
        }
        let answer: WireBatchResults = self.json(sent.response, "batch push").await?;
        if answer.results.len() != reqs.len() {
            return Err(unreadable("batch push", "not one result per item"));
        }
        let out = answer
            .results
            .into_iter()
            .zip(reqs)
            .map(|(mut res, req)| match (res.status, res.item.take()) {
                (200 | 201, Some(item)) => Ok(PushOutcome::Accepted(item.into())),
                (412, _) => {
                    let current: Option<ItemMeta> = res.current.take().flatten().map(Into::into);
                    Ok(match current {
                        // An earlier attempt of this batch was applied before its answer was
                        // lost: the server holds what we sent.
                        Some(cur)
                            if sent.retried
                                && cur.is_live()
                                && cur.kind == ItemKind::File
                                && cur.hash == Some(req.hash) =>
                        {
                            PushOutcome::Accepted(cur)
                        }
                        current => PushOutcome::Conflict { current },
                    })
                }
                _ => Err(item_error(
                    &res,
                    &req.key,
                    Some((&req.content, req.hash)),
                    self.max_item_bytes,
                )),
            })
            .collect();
        Ok(Some(out))
    }

    /// Fetches `reqs` in one batch request; `None` when the server has no batch route. An item
    /// the server deferred (its answer was full) comes back as `None` inside, to fetch again.
    pub(crate) async fn fetch_batch(
        &self,
        reqs: &[(Key, Option<Revision>)],
    ) -> Result<Option<Vec<Option<Result<Fetched>>>>> {
        if self.no_batches.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let request = WireBatchFetchRequest {
            items: reqs
                .iter()
                .map(|(key, rev)| WireBatchFetch {
                    key: key.as_str().to_owned(),
                    rev: rev.map(|r| r.0),
                })
                .collect(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| unreadable("batch fetch", e))?;
        let url = self.url("/batch/fetch");
        let sent = self
            .send("batch fetch", self.request_timeout, |h| {
                h.post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        match sent.response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                self.no_batches.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            _ => return Err(self.failure(sent.response, &self.ctx()).await),
        }
        let cap = BATCH_MAX_BYTES.saturating_add(JSON_CAP);
        let body = match read_capped(sent.response, cap).await {
            Ok(Capped::Whole(b)) => b,
            Ok(Capped::Over) => return Err(unreadable("batch fetch", "over its size limit")),
            Err(e) => return Err(super::errors::no_answer(&e, "batch fetch")),
        };
        let (manifest, mut contents) =
            split_batch(&body).ok_or_else(|| unreadable("batch fetch", "no manifest line"))?;
        let answer: WireBatchResults =
            serde_json::from_slice(&manifest).map_err(|e| unreadable("batch fetch", e))?;
        if answer.results.len() != reqs.len() {
            return Err(unreadable("batch fetch", "not one result per item"));
        }
        let mut out = Vec::with_capacity(reqs.len());
        for (mut res, (key, _)) in answer.results.into_iter().zip(reqs) {
            let deferred = res.error.as_ref().is_some_and(|e| e.code == "deferred");
            match (res.status, res.version.take()) {
                (200, Some(version)) => {
                    let version: VersionMeta = version.into();
                    let size = usize::try_from(version.size).unwrap_or(usize::MAX);
                    if size > contents.len() {
                        return Err(unreadable("batch fetch", "content shorter than listed"));
                    }
                    let content = contents.split_to(size);
                    let actual = ContentHash::of(&content);
                    let expected = version.hash.unwrap_or_else(|| ContentHash::of(b""));
                    out.push(Some(if actual == expected {
                        Ok(Fetched { version, content })
                    } else {
                        Err(Error::HashMismatch {
                            key: key.clone(),
                            expected,
                            actual,
                        })
                    }));
                }
                _ if deferred => out.push(None),
                _ => out.push(Some(Err(item_error(&res, key, None, self.max_item_bytes)))),
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_counts_and_bytes() {
        assert_eq!(chunks(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(chunks(&[1, 2, 3]), vec![0..3]);
        let many = vec![10u64; BATCH_ITEMS * 2 + 1];
        assert_eq!(
            chunks(&many),
            vec![
                0..BATCH_ITEMS,
                BATCH_ITEMS..2 * BATCH_ITEMS,
                2 * BATCH_ITEMS..2 * BATCH_ITEMS + 1
            ]
        );
        let big = vec![BATCH_BYTES / 2 + 1; 3];
        assert_eq!(chunks(&big), vec![0..1, 1..2, 2..3]);
    }
}
