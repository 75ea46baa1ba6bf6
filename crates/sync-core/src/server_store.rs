//! The server's side of the protocol (docs/SPEC.md §4): the [`ServerStore`] trait.
//!
//! A server store holds every tenant's items, their version history, content blobs and the
//! per-tenant revision counter. The HTTP server and the folder transport are thin layers over
//! it. Implementations: [`crate::memory::MemoryServerStore`], `store-sqlite`; every one must
//! pass [`crate::testkit::server_store_suite`] (feature `testkit`).
//!
//! Contract (checked by the suite): revisions follow the Lamport rule and never repeat; every
//! overwritten or deleted version stays readable by revision (with
//! [`ServerConfig::retention`] set: until the retention rule drops it, and the current version
//! always; a dropped version's content goes when no version refers to it); history is read
//! in pages; pushed content is verified against
//! its hash and the size limit; writing `a/b/c` creates the folders `a` and `a/b` if missing;
//! tenants never see each other's items.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, Fetched,
    FolderRequest, HistoryPage, HistoryRange, ItemMeta, Key, PushOutcome, PushRequest, Result,
    Revision, TenantId, VersionMeta, MAX_HISTORY_PAGE,
};

/// The content of a version as [`ServerStore::fetch_body`] gives it.
pub enum ContentBody {
    /// All of it, in memory.
    Whole(Bytes),
    /// Read while it is sent: `len` bytes in chunks. The stream ends with an error, before its
    /// last chunk, when what it reads is not the stored content (another length or hash), so
    /// an answer never ends as if complete with damaged bytes.
    Chunks {
        /// The content's length in bytes.
        len: u64,
        /// Its chunks, in order.
        chunks: BoxStream<'static, std::io::Result<Bytes>>,
    },
}

impl ContentBody {
    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            ContentBody::Whole(bytes) => bytes.len() as u64,
            ContentBody::Chunks { len, .. } => *len,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for ContentBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentBody::Whole(bytes) => f.debug_tuple("Whole").field(&bytes.len()).finish(),
            ContentBody::Chunks { len, .. } => f.debug_struct("Chunks").field("len", len).finish(),
        }
    }
}

/// Content waiting in a file, as [`ServerStore::push_file`] takes it: an upload the server
/// wrote to disk as it arrived, so that storing it needs no copy of it in memory.
///
/// Its hash is the one its maker computed from the bytes as it wrote them, never one a client
/// announced: a store relies on it instead of reading the file to hash it again. The file is
/// read from its start; it is closed (and, when it is an unnamed temporary file, gone) when
/// this value is dropped.
pub struct ContentFile {
    file: std::fs::File,
    len: u64,
    hash: ContentHash,
}

impl ContentFile {
    /// `file` holds `len` bytes from its start, whose blake3 hash `hash` the caller computed
    /// from those bytes.
    pub fn new(file: std::fs::File, len: u64, hash: ContentHash) -> ContentFile {
        ContentFile { file, len, hash }
    }

    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The blake3 hash of the content.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// The file holding the content (its first [`len`](ContentFile::len) bytes; the file may be
    /// longer). For a store that can keep the file itself instead of copying it (a hard link on
    /// the same file system); read through [`reader`](ContentFile::reader) otherwise.
    pub fn as_file(&self) -> &std::fs::File {
        &self.file
    }

    /// The content as a reader of exactly its bytes, from the file's start (blocking I/O).
    /// `std::io::copy` from it into another file copies inside the kernel where it can.
    pub fn reader(self) -> std::io::Result<std::io::Take<std::fs::File>> {
        use std::io::{Read, Seek};
        let mut file = self.file;
        file.seek(std::io::SeekFrom::Start(0))?;
        Ok(file.take(self.len))
    }

    /// Reads the whole content into memory on a blocking thread; a file shorter than its
    /// length is a storage error.
    pub async fn read(self) -> Result<Bytes> {
        let len = self.len;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
            use std::io::Read;
            let mut content = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            self.reader()?.read_to_end(&mut content)?;
            if content.len() as u64 != len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file holds {} of its {len} bytes", content.len()),
                ));
            }
            Ok(Bytes::from(content))
        })
        .await;
        match read {
            Ok(Ok(content)) => Ok(content),
            Ok(Err(e)) => Err(Error::storage(format!(
                "cannot read an upload kept on the server's disk ({e}); send it again"
            ))),
            Err(e) => Err(Error::storage(format!(
                "reading an upload on a blocking thread failed ({e}); the server may be \
                 shutting down, try again"
            ))),
        }
    }
}

impl std::fmt::Debug for ContentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentFile")
            .field("len", &self.len)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A version and its content, as [`ServerStore::fetch_body`] gives them.
#[derive(Debug)]
pub struct FetchedBody {
    /// The version.
    pub version: VersionMeta,
    /// Its content.
    pub body: ContentBody,
}

/// Server-side storage of every tenant's items.
#[async_trait]
pub trait ServerStore: Send + Sync {
    /// The store's epoch: made when the store was created, new after a restore.
    async fn epoch(&self) -> Result<Epoch>;

    /// One page of `tenant`'s change feed after `since`; see [`crate::Transport::changes`].
    async fn changes(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        limit: usize,
    ) -> Result<ChangePage>;

    /// The content of `key`, current or at revision `rev`.
    async fn fetch(&self, tenant: &TenantId, key: &Key, rev: Option<Revision>) -> Result<Fetched>;

    /// Like [`ServerStore::fetch`], for an answer that sends the content as it is read: a store
    /// that keeps large content outside memory (in files) returns it as a stream of chunks, so
    /// a download that is read slowly, or not at all, holds a chunk in memory and not the
    /// whole content. The default fetches the content whole.
    async fn fetch_body(
        &self,
        tenant: &TenantId,
        key: &Key,
        rev: Option<Revision>,
    ) -> Result<FetchedBody> {
        let fetched = self.fetch(tenant, key, rev).await?;
        Ok(FetchedBody {
            version: fetched.version,
            body: ContentBody::Whole(fetched.content),
        })
    }

    /// The contents of many items (each current, or at its revision), one result per request,
    /// in order, while their sizes add up to at most `budget` bytes: from the first item that
    /// would go over it on, the answer is `None` (not fetched; ask again). The outer error is
    /// for failures of the store itself. The default fetches one after another; a store that
    /// can should read them all in one call.
    async fn fetch_many(
        &self,
        tenant: &TenantId,
        reqs: Vec<(Key, Option<Revision>)>,
        budget: u64,
    ) -> Result<Vec<Option<Result<Fetched>>>> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut used = 0u64;
        let mut full = false;
        for (key, rev) in reqs {
            if full {
                out.push(None);
                continue;
            }
            match self.fetch(tenant, &key, rev).await {
                Ok(f) if used + f.content.len() as u64 > budget => {
                    full = true;
                    out.push(None);
                }
                Ok(f) => {
                    used += f.content.len() as u64;
                    out.push(Some(Ok(f)));
                }
                Err(e) if e.class().stops_sync() => return Err(e),
                Err(e) => out.push(Some(Err(e))),
            }
        }
        Ok(out)
    }

    /// Writes a file under a precondition.
    async fn push(&self, tenant: &TenantId, req: PushRequest) -> Result<PushOutcome>;

    /// Writes a file whose content waits in `content` (an upload kept on disk), exactly as
    /// [`push`](Self::push) writes `req` with `content`'s bytes; `req.content` is not read
    /// (leave it empty). `req.hash` is checked against [`ContentFile::hash`] and the length
    /// against the store's limit, so the errors are those of `push`. The default reads the
    /// content into memory and pushes it; a store that keeps content in files copies the file
    /// instead, so a large upload never has to fit in memory.
    async fn push_file(
        &self,
        tenant: &TenantId,
        req: PushRequest,
        content: ContentFile,
    ) -> Result<PushOutcome> {
        crate::server::check_content_file(&req.key, &content, &req.hash, self.max_item_bytes())?;
        let content = content.read().await?;
        self.push(tenant, PushRequest { content, ..req }).await
    }

    /// Writes many files; a store that can should do it in one transaction. One result per
    /// request, in order.
    async fn push_many(
        &self,
        tenant: &TenantId,
        reqs: Vec<PushRequest>,
    ) -> Result<Vec<Result<PushOutcome>>> {
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            out.push(self.push(tenant, req).await);
        }
        Ok(out)
    }

    /// Tombstones an item.
    async fn delete(&self, tenant: &TenantId, req: DeleteRequest) -> Result<PushOutcome>;

    /// Creates a folder path and its parents.
    async fn ensure_folder(&self, tenant: &TenantId, req: FolderRequest) -> Result<ItemMeta>;

    /// One page of `key`'s history: the versions below `range.before`, newest first, at most
    /// [`HistoryRange::page_size`] of them, and where the next page starts
    /// ([`HistoryPage::from_rows`] makes it from one more row than the page size). A store
    /// reads it with an index on (tenant, key, revision), not by reading the whole history.
    /// A key with no version at all: [`crate::Error::NotFound`]; a page past the oldest
    /// version of a known key is empty.
    async fn history(
        &self,
        tenant: &TenantId,
        key: &Key,
        range: HistoryRange,
    ) -> Result<HistoryPage>;

    /// Keeps content in `key`'s history without making it current.
    async fn archive(&self, tenant: &TenantId, req: ArchiveRequest) -> Result<VersionMeta>;

    /// Waits for a change after `since` in `tenant`'s feed, up to `timeout`, without polling.
    async fn wait(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        timeout: Duration,
    ) -> Result<bool>;

    /// The largest content a push may carry, in bytes.
    fn max_item_bytes(&self) -> u64;

    /// Checks that the storage answers (for a health check): `Offline` or `Storage` when it
    /// does not. The default says it does.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Every version of `key` that `store` keeps, oldest first, read page by page (what
/// [`crate::Transport::history`] answers for an in-process store). Fails with
/// [`Error::Storage`] when a page does not move back (a store that breaks the contract),
/// instead of looping.
pub async fn full_history<S: ServerStore + ?Sized>(
    store: &S,
    tenant: &TenantId,
    key: &Key,
) -> Result<Vec<VersionMeta>> {
    let mut range = HistoryRange::newest(MAX_HISTORY_PAGE);
    let mut out = Vec::new();
    loop {
        let page = store.history(tenant, key, range).await?;
        out.extend(page.versions);
        match page.next_before {
            None => break,
            Some(next) if range.before.is_none_or(|b| next < b) => {
                range = HistoryRange::before(next, MAX_HISTORY_PAGE);
            }
            Some(next) => {
                return Err(Error::storage(format!(
                    "{key}: a history page said to go on before revision {next}, which does                      not move back; the store is inconsistent"
                )))
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// Settings every server store takes.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest content a push may carry (default 20 MiB).
    pub max_item_bytes: u64,
    /// How far ahead of the server's clock a stamp may be before it is clamped (default 60 s).
    pub max_skew: Duration,
    /// The server's clock.
    pub time: std::sync::Arc<dyn crate::TimeSource>,
    /// Which old versions the store drops as it writes (default `None`: every version is kept
    /// forever). See [`crate::server::Retention`].
    pub retention: Option<crate::server::Retention>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_item_bytes: crate::DEFAULT_MAX_ITEM_BYTES,
            max_skew: Duration::from_secs(60),
            time: std::sync::Arc::new(crate::SystemTimeSource),
            retention: None,
        }
    }
}
