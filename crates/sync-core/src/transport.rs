//! The client side of the protocol (docs/SPEC.md §4): the [`Transport`] trait.
//!
//! A transport speaks for one tenant (it was built with its credentials). Implementations:
//! [`crate::memory::LocalTransport`] (in-process, over any [`crate::ServerStore`]), the
//! `transport-fs` crate (a shared folder) and `transport-http` (HTTP). Every implementation
//! must pass [`crate::testkit::transport_suite`] (feature `testkit`).

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    ArchiveRequest, ChangePage, Cursor, DeleteRequest, Fetched, FolderRequest, ItemMeta, Key,
    PushOutcome, PushRequest, Result, Revision, VersionMeta,
};

/// Fetches in flight at once in the default [`Transport::fetch_many`].
pub const FETCH_MANY_CONCURRENCY: usize = 8;

/// The client's view of a sync server.
#[async_trait]
pub trait Transport: Send + Sync {
    /// One page of the change feed after `since` (`None`: from the start), at most `limit`
    /// entries. A cursor from another epoch fails with [`crate::Error::CursorExpired`].
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> Result<ChangePage>;

    /// The content of `key` (its current version, or version `rev` from its history).
    /// Absent or deleted: [`crate::Error::NotFound`].
    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> Result<Fetched>;

    /// Writes a file's content under a precondition. Content that does not match
    /// `req.hash` is refused with [`crate::Error::HashMismatch`] and nothing is written: the
    /// engine sends the hash its scan computed and relies on this check to find a file that
    /// changed after the scan (the conformance suite tests it).
    async fn push(&self, req: PushRequest) -> Result<PushOutcome>;

    /// Writes many files. The default pushes one after another; a transport that can batch
    /// (one request, one transaction) overrides it. One result per request, in order; the
    /// outer error is for failures that stop the whole batch (offline, auth).
    async fn push_many(&self, reqs: Vec<PushRequest>) -> Result<Vec<Result<PushOutcome>>> {
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            match self.push(req).await {
                Err(e) if e.class().stops_sync() => return Err(e),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    /// Fetches many items (each its current version, or revision `rev`). The default runs
    /// [`FETCH_MANY_CONCURRENCY`] fetches at a time; a transport that can batch (one request)
    /// overrides it. One result per request, in order; the outer error is for failures that
    /// stop the whole batch (offline, auth). Callers check each content against the hash they
    /// expect, as for `fetch`.
    async fn fetch_many(&self, reqs: Vec<(Key, Option<Revision>)>) -> Result<Vec<Result<Fetched>>> {
        use futures::StreamExt;
        let fetches: Vec<_> = reqs
            .iter()
            .map(|(key, rev)| self.fetch(key, *rev))
            .collect();
        let out: Vec<Result<Fetched>> = futures::stream::iter(fetches)
            .buffered(FETCH_MANY_CONCURRENCY)
            .collect()
            .await;
        if let Some(stop) = out
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.class().stops_sync()))
        {
            return Err(stop.clone());
        }
        Ok(out)
    }

    /// Tombstones an item whose current revision is `req.rev`.
    async fn delete(&self, req: DeleteRequest) -> Result<PushOutcome>;

    /// Creates a folder path and its parents; returns the folder item. Idempotent.
    async fn ensure_folder(&self, req: FolderRequest) -> Result<ItemMeta>;

    /// Every version the server keeps of `key`, oldest first (the current one included).
    async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>>;

    /// Stores content in `key`'s history without making it current.
    async fn archive(&self, req: ArchiveRequest) -> Result<VersionMeta>;

    /// The largest item content the server accepts, in bytes, if it says (an older server
    /// may not: `None`). The engine skips larger local files with a warning instead of
    /// uploading them to be refused. The default says nothing.
    async fn max_item_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Waits until the feed has changes after `since`, or `timeout` passes. Returns `true` when
    /// there are changes (at once if there already are), `false` on timeout.
    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> Result<bool>;
}
