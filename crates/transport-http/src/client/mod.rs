//! The HTTP client: [`HttpTransport`], a [`Transport`] speaking docs/PROTOCOL.md over one shared
//! reqwest client (rustls, gzip, HTTP/1.1 keep-alive), and the [`TokenProvider`] hook through
//! which an app supplies (and refreshes) its bearer token.
//!
//! Every request goes through `retry::send`; every failure becomes a [`sync_core::Error`] of
//! its docs/SPEC.md §5 class through `errors`. Content that comes back is read under a size cap and
//! checked against its `X-Sync-Hash` before anyone sees it. No sync logic lives here.

mod batch;
mod encode;
mod errors;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use sync_core::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Error, Fetched, FolderRequest,
    ItemKind, ItemMeta, Key, Precondition, PushOutcome, PushRequest, Result, Revision, Stamp,
    Transport, VersionMeta, MAX_HISTORY_PAGE,
};

pub use batch::{BATCH_BYTES, BATCH_ITEMS, BATCH_ITEM_BYTES};
pub use errors::ClientError;
pub use retry::RetryPolicy;

use crate::wire::{
    etag, parse_etag, WireError, WireHistory, WireItem, WirePage, WireVersion, MAX_LIMIT,
    MAX_WAIT_SECS, PREFIX, X_SYNC_HASH, X_SYNC_SEEN, X_SYNC_STAMP,
};
use encode::encode_key;
use errors::{error_for_status, ErrorContext};

/// Extra bytes accepted on top of the item limit when reading content.
const CONTENT_SLACK: u64 = 64 * 1024;
/// The most bytes of a JSON answer the client reads.
const JSON_CAP: u64 = 64 * 1024 * 1024;
/// The most bytes of an error answer the client reads.
const ERROR_CAP: u64 = 64 * 1024;
/// Extra time a long-poll request may take over its `wait`.
const WAIT_SLACK: Duration = Duration::from_secs(15);

/// Supplies the bearer token for each request; an app that refreshes tokens implements it.
/// It is asked before every attempt, so a refreshed token is used from the next request on.
/// When the server refuses a token (401), [`TokenProvider::refresh`] is asked once for a new
/// one and the request is sent again with it.
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// The current token. A failure (e.g. the user signed out) is returned as it is,
    /// typically [`Error::Auth`].
    async fn token(&self) -> Result<String>;

    /// The server refused `rejected` (401): a new token to send the request again with, or
    /// `None` to give up (the request then fails with [`Error::Auth`]). The default asks
    /// [`TokenProvider::token`] again and tries once more if it gives another token.
    async fn refresh(&self, rejected: &str) -> Result<Option<String>> {
        let fresh = self.token().await?;
        Ok((fresh != rejected).then_some(fresh))
    }
}

/// A token that never changes.
#[derive(Clone)]
pub struct StaticToken(pub String);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

#[async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self) -> Result<String> {
        Ok(self.0.clone())
    }
}

#[async_trait]
impl TokenProvider for String {
    async fn token(&self) -> Result<String> {
        Ok(self.clone())
    }
}

#[async_trait]
impl<T: TokenProvider + ?Sized> TokenProvider for Arc<T> {
    async fn token(&self) -> Result<String> {
        (**self).token().await
    }

    async fn refresh(&self, rejected: &str) -> Result<Option<String>> {
        (**self).refresh(rejected).await
    }
}

/// A [`Transport`] to a sync server over HTTP (docs/PROTOCOL.md).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    /// The CAs trusted besides the built-in roots ([`HttpTransport::with_ca_cert`]).
    roots: Vec<reqwest::Certificate>,
    /// `<base URL>/sync/v1`, no trailing slash.
    api: String,
    token: Arc<dyn TokenProvider>,
    retry: RetryPolicy,
    max_item_bytes: u64,
    request_timeout: Duration,
    /// Set once the server answered 404 to a batch route: speak one item at a time.
    no_batches: Arc<std::sync::atomic::AtomicBool>,
    /// The server's item limit from `GET /info`, once read (`None` inside: it has no `/info`).
    server_limit: Arc<std::sync::OnceLock<Option<u64>>>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("api", &self.api)
            .field("retry", &self.retry)
            .field("max_item_bytes", &self.max_item_bytes)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to the server at `base_url` (up to, not including, `/sync/v1`; e.g.
    /// `https://sync.example.com` or `http://127.0.0.1:8080/myapp`), speaking with the token
    /// `token` gives.
    pub fn new(
        base_url: &str,
        token: impl TokenProvider + 'static,
    ) -> std::result::Result<HttpTransport, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidBaseUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("the URL must not have a query or a fragment"));
        }
        Ok(HttpTransport {
            http: http_client(&[])?,
            roots: Vec::new(),
            api: format!("{}{PREFIX}", url.as_str().trim_end_matches('/')),
            token: Arc::new(token),
            retry: RetryPolicy::default(),
            max_item_bytes: sync_core::DEFAULT_MAX_ITEM_BYTES,
            request_timeout: Duration::from_secs(120),
            no_batches: Arc::default(),
            server_limit: Arc::default(),
        })
    }

    /// The same transport, trusting also the CA certificate(s) in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) to verify the server: for a server whose certificate is signed by
    /// your own CA (or is self-signed). The built-in roots (the webpki/Mozilla set bundled
    /// with reqwest's `rustls-tls`; not the system's store) stay trusted. Without it, such a
    /// server's certificate is refused with [`Error::Untrusted`].
    ///
    /// Call it before the transport is first used: it starts a new connection pool.
    pub fn with_ca_cert(mut self, pem: &[u8]) -> std::result::Result<HttpTransport, ClientError> {
        let invalid = |reason: String| ClientError::InvalidCaCert { reason };
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| invalid(error_chain(&e)))?;
        if certs.is_empty() {
            return Err(invalid(
                "it holds no certificate (no -----BEGIN CERTIFICATE----- block)".to_owned(),
            ));
        }
        let mut roots = self.roots.clone();
        roots.extend(certs);
        self.http = http_client(&roots).map_err(|e| invalid(error_chain(&e)))?;
        self.roots = roots;
        Ok(self)
    }

    /// The same transport with another retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> HttpTransport {
        self.retry = policy;
        self
    }

    /// The same transport with another item size limit (content larger than this plus a little
    /// slack is not downloaded). Default [`sync_core::DEFAULT_MAX_ITEM_BYTES`].
    pub fn with_max_item_bytes(mut self, limit: u64) -> HttpTransport {
        self.max_item_bytes = limit;
        self
    }

    /// The same transport with another per-request timeout (long-polls get their wait on top).
    /// Default 120 s.
    pub fn with_request_timeout(mut self, timeout: Duration) -> HttpTransport {
        self.request_timeout = timeout;
        self
    }

    fn url(&self, route: &str) -> String {
        format!("{}{route}", self.api)
    }

    fn item_url(&self, group: &str, key: &Key) -> String {
        format!("{}/{group}/{}", self.api, encode_key(key))
    }

    /// Sends a request built by `build`, with the bearer token, retried per the policy; on a
    /// 401, once more with the token [`TokenProvider::refresh`] gives, if it gives one.
    async fn send(
        &self,
        what: &str,
        timeout: Duration,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<retry::Sent> {
        let used = std::sync::Mutex::new(String::new());
        let sent = self.send_with(what, timeout, &build, None, &used).await?;
        if sent.response.status() != StatusCode::UNAUTHORIZED {
            return Ok(sent);
        }
        let rejected = used.lock().map(|t| t.clone()).unwrap_or_default();
        match self.token.refresh(&rejected).await? {
            Some(fresh) => {
                tracing::debug!(what, "token refused; sending again with a refreshed one");
                self.send_with(what, timeout, &build, Some(fresh), &used)
                    .await
            }
            None => Ok(sent),
        }
    }

    /// [`HttpTransport::send`] without the refresh: with `token`, or the provider's.
    async fn send_with(
        &self,
        what: &str,
        timeout: Duration,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        token: Option<String>,
        used: &std::sync::Mutex<String>,
    ) -> Result<retry::Sent> {
        retry::send(&self.retry, what, || async {
            let token = match &token {
                Some(t) => t.clone(),
                None => self.token.token().await?,
            };
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::Auth {
                    message: "the token is empty or has characters a header cannot carry"
                        .to_owned(),
                });
            }
            if let Ok(mut u) = used.lock() {
                u.clone_from(&token);
            }
            build(&self.http)
                .bearer_auth(token)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| errors::no_answer(&e, what))
        })
        .await
    }

    fn ctx<'a>(&self) -> ErrorContext<'a> {
        ErrorContext {
            limit: self.max_item_bytes,
            ..ErrorContext::default()
        }
    }

    /// The error an unexpected answer stands for.
    async fn failure(&self, resp: Response, ctx: &ErrorContext<'_>) -> Error {
        let status = resp.status();
        let after = errors::retry_after(resp.headers());
        let body = match read_capped(resp, ERROR_CAP).await {
            Ok(Capped::Whole(b)) => b,
            _ => Bytes::new(),
        };
        error_for_status(status, &body, after, ctx)
    }

    /// The body of a success as JSON; an unreadable one is `Offline`.
    async fn json<T: DeserializeOwned>(&self, resp: Response, what: &str) -> Result<T> {
        let body = match read_capped(resp, JSON_CAP).await {
            Ok(Capped::Whole(b)) => b,
            Ok(Capped::Over) => {
                return Err(Error::offline(format!(
                    "{what}: the server's answer is over {JSON_CAP} bytes"
                )))
            }
            Err(e) => return Err(errors::no_answer(&e, what)),
        };
        serde_json::from_slice(&body).map_err(|e| {
            Error::offline(format!(
                "{what}: the server's answer is not the expected JSON: {e}"
            ))
        })
    }

    /// A 412 answer's current item.
    async fn conflict_current(&self, resp: Response, what: &str) -> Result<Option<ItemMeta>> {
        let body: WireError = self.json(resp, what).await?;
        Ok(body.current.flatten().map(ItemMeta::from))
    }
}

/// The one reqwest client of a transport: rustls with the webpki roots plus `roots`.
fn http_client(roots: &[reqwest::Certificate]) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .gzip(true)
        .user_agent(concat!(
            "sync-engine-transport-http/",
            env!("CARGO_PKG_VERSION")
        ));
    for root in roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder.build()
}

/// An error and its causes on one line (reqwest's own message leaves the causes out).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// A body read under a cap.
enum Capped {
    Whole(Bytes),
    Over,
}

/// Reads a whole body, stopping as soon as it passes `cap` bytes.
async fn read_capped(mut resp: Response, cap: u64) -> reqwest::Result<Capped> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Ok(Capped::Over);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if (buf.len() + chunk.len()) as u64 > cap {
            return Ok(Capped::Over);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(buf.freeze()))
}

/// A header of a success answer as text; missing or malformed is an unreadable answer.
fn header<'a, T>(
    resp: &'a Response,
    name: &str,
    parse: impl FnOnce(&'a str) -> Option<T>,
) -> Result<T> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
        .ok_or_else(|| Error::offline(format!("the server's answer has no valid {name} header")))
}

/// Hashes content, on a blocking thread when it is large (in place if that thread cannot run).
async fn hash_of(content: &Bytes) -> ContentHash {
    match sync_core::server::hash_off_thread(content).await {
        Ok(hash) => hash,
        Err(_) => ContentHash::of(content),
    }
}

fn write_headers(b: RequestBuilder, stamp: Stamp, seen: Revision) -> RequestBuilder {
    b.header(X_SYNC_STAMP, stamp.to_string())
        .header(X_SYNC_SEEN, seen.0.to_string())
}

/// Pushes in flight at once in [`HttpTransport`]'s `push_many`.
pub const PUSH_CONCURRENCY: usize = 16;

#[async_trait]
impl Transport for HttpTransport {
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> Result<ChangePage> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let url = self.url("/changes");
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = since {
            query.push(("since", c.to_string()));
        }
        let sent = self
            .send("changes", self.request_timeout, |h| {
                h.get(&url).query(&query)
            })
            .await?;
        if sent.response.status() != StatusCode::OK {
            let ctx = ErrorContext {
                since: since.map(Cursor::to_string),
                ..self.ctx()
            };
            return Err(self.failure(sent.response, &ctx).await);
        }
        let page: WirePage = self.json(sent.response, "changes").await?;
        Ok(page.into())
    }

    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        let url = self.item_url("items", key);
        let query: Vec<(&str, String)> =
            rev.map(|r| ("rev", r.0.to_string())).into_iter().collect();
        let sent = self
            .send("fetch", self.request_timeout, |h| h.get(&url).query(&query))
            .await?;
        let resp = sent.response;
        if resp.status() != StatusCode::OK {
            let ctx = ErrorContext {
                key: Some(key),
                ..self.ctx()
            };
            return Err(self.failure(resp, &ctx).await);
        }
        let rev = header(&resp, ETAG.as_str(), parse_etag)?;
        let expected: ContentHash = header(&resp, X_SYNC_HASH, |s| s.trim().parse().ok())?;
        let stamp: Stamp = header(&resp, X_SYNC_STAMP, |s| s.trim().parse().ok())?;
        let cap = self.max_item_bytes.saturating_add(CONTENT_SLACK);
        let declared = resp.content_length();
        let content = match read_capped(resp, cap).await {
            Ok(Capped::Whole(b)) => b,
            Ok(Capped::Over) => {
                return Err(Error::TooLarge {
                    key: key.clone(),
                    size: declared.unwrap_or(cap.saturating_add(1)),
                    limit: self.max_item_bytes,
                })
            }
            Err(e) => return Err(errors::no_answer(&e, "fetch")),
        };
        let actual = hash_of(&content).await;
        if actual != expected {
            return Err(Error::HashMismatch {
                key: key.clone(),
                expected,
                actual,
            });
        }
        Ok(Fetched {
            version: VersionMeta {
                rev,
                hash: Some(actual),
                size: content.len() as u64,
                stamp,
                deleted: false,
            },
            content,
        })
    }

    async fn push(&self, req: PushRequest) -> Result<PushOutcome> {
        let url = self.item_url("items", &req.key);
        let sent = self
            .send("push", self.request_timeout, |h| {
                let b = match req.precondition {
                    Precondition::Create => h.put(&url).header(IF_NONE_MATCH, "*"),
                    Precondition::Match(rev) => h.put(&url).header(IF_MATCH, etag(rev)),
                };
                write_headers(b, req.stamp, req.seen)
                    .header(X_SYNC_HASH, req.hash.to_hex())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, req.content.len())
                    .body(req.content.clone())
            })
            .await?;
        match sent.response.status() {
            StatusCode::OK | StatusCode::CREATED => {
                let item: WireItem = self.json(sent.response, "push").await?;
                Ok(PushOutcome::Accepted(item.into()))
            }
            StatusCode::PRECONDITION_FAILED => {
                let current = self.conflict_current(sent.response, "push").await?;
                match current {
                    // An earlier attempt of this very push was applied before its answer was
                    // lost: the server holds what we sent.
                    Some(cur)
                        if sent.retried
                            && cur.is_live()
                            && cur.kind == ItemKind::File
                            && cur.hash == Some(req.hash) =>
                    {
                        Ok(PushOutcome::Accepted(cur))
                    }
                    current => Ok(PushOutcome::Conflict { current }),
                }
            }
            _ => {
                let ctx = ErrorContext {
                    key: Some(&req.key),
                    sent: Some((&req.content, req.hash)),
                    ..self.ctx()
                };
                Err(self.failure(sent.response, &ctx).await)
            }
        }
    }

    /// Pushes several files: items up to [`BATCH_ITEM_BYTES`] in batch requests
    /// (`POST /batch/push`, one store transaction each), larger ones (and everything, on a
    /// server without batches) over concurrent single requests (at most [`PUSH_CONCURRENCY`] in
    /// flight). One result per request, in order; a failure that stops sync (auth, offline)
    /// fails the whole call.
    async fn push_many(&self, reqs: Vec<PushRequest>) -> Result<Vec<Result<PushOutcome>>> {
        use futures::StreamExt;
        let mut results: Vec<Option<Result<PushOutcome>>> = vec![None; reqs.len()];
        let small: Vec<usize> = (0..reqs.len())
            .filter(|i| reqs[*i].content.len() as u64 <= BATCH_ITEM_BYTES)
            .collect();
        let sizes: Vec<u64> = small
            .iter()
            .map(|i| reqs[*i].content.len() as u64)
            .collect();
        for run in batch::chunks(&sizes) {
            let idx = &small[run];
            if idx.len() < 2 {
                continue;
            }
            let chunk: Vec<PushRequest> = idx.iter().map(|i| reqs[*i].clone()).collect();
            match self.push_batch(&chunk).await? {
                Some(outcomes) => {
                    for (i, r) in idx.iter().zip(outcomes) {
                        results[*i] = Some(r);
                    }
                }
                None => break,
            }
        }
        let single: Vec<_> = reqs
            .into_iter()
            .zip(&results)
            .filter(|(_, done)| done.is_none())
            .map(|(r, _)| r)
            .collect();
        let pushes: Vec<_> = single.into_iter().map(|r| self.push(r)).collect();
        let mut singles = futures::stream::iter(pushes)
            .buffered(PUSH_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter();
        let results: Vec<Result<PushOutcome>> = results
            .into_iter()
            .map(|r| match r {
                Some(r) => r,
                None => singles
                    .next()
                    .unwrap_or_else(|| Err(Error::offline("a push got no result"))),
            })
            .collect();
        if let Some(stop) = results
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.class().stops_sync()))
        {
            return Err(stop.clone());
        }
        Ok(results)
    }

    /// Fetches several items: in batch requests (`POST /batch/fetch`) where the server has
    /// them, the rest (deferred by a full answer, or everything on an older server) one at a
    /// time. The caller says which items are small enough to batch by calling this only for
    /// them; large ones are better fetched alone.
    async fn fetch_many(&self, reqs: Vec<(Key, Option<Revision>)>) -> Result<Vec<Result<Fetched>>> {
        let mut results: Vec<Option<Result<Fetched>>> = vec![None; reqs.len()];
        let ones = vec![1u64; reqs.len()];
        for run in batch::chunks(&ones) {
            let start = run.start;
            match self.fetch_batch(&reqs[run]).await? {
                Some(fetched) => {
                    for (j, r) in fetched.into_iter().enumerate() {
                        results[start + j] = r;
                    }
                }
                None => break,
            }
        }
        let mut out = Vec::with_capacity(reqs.len());
        for ((key, rev), r) in reqs.iter().zip(results) {
            let r = match r {
                Some(r) => r,
                None => self.fetch(key, *rev).await,
            };
            if let Err(e) = &r {
                if e.class().stops_sync() {
                    return Err(e.clone());
                }
            }
            out.push(r);
        }
        Ok(out)
    }

    /// The server's limit from `GET /sync/v1/info`, read once; `None` from a server without it.
    async fn max_item_bytes(&self) -> Result<Option<u64>> {
        if let Some(known) = self.server_limit.get() {
            return Ok(*known);
        }
        let url = self.url("/info");
        let sent = self
            .send("info", self.request_timeout, |h| h.get(&url))
            .await?;
        let limit = match sent.response.status() {
            // An answer that does not say (not JSON, no limit) is taken as saying nothing.
            StatusCode::OK => self
                .json::<serde_json::Value>(sent.response, "info")
                .await
                .ok()
                .and_then(|info| {
                    info.get("max_item_bytes")
                        .and_then(serde_json::Value::as_u64)
                }),
            StatusCode::NOT_FOUND => None,
            _ => return Err(self.failure(sent.response, &self.ctx()).await),
        };
        Ok(*self.server_limit.get_or_init(|| limit))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<PushOutcome> {
        let url = self.item_url("items", &req.key);
        let sent = self
            .send("delete", self.request_timeout, |h| {
                write_headers(h.delete(&url), req.stamp, req.seen).header(IF_MATCH, etag(req.rev))
            })
            .await?;
        match sent.response.status() {
            StatusCode::OK => {
                let item: WireItem = self.json(sent.response, "delete").await?;
                Ok(PushOutcome::Accepted(item.into()))
            }
            StatusCode::PRECONDITION_FAILED => {
                let current = self.conflict_current(sent.response, "delete").await?;
                match current {
                    // An earlier attempt deleted it before its answer was lost.
                    Some(cur) if sent.retried && cur.deleted => Ok(PushOutcome::Accepted(cur)),
                    current => Ok(PushOutcome::Conflict { current }),
                }
            }
            // Absent: the precondition failed with nothing there (as the store itself says).
            StatusCode::NOT_FOUND => Ok(PushOutcome::Conflict { current: None }),
            _ => {
                let ctx = ErrorContext {
                    key: Some(&req.key),
                    ..self.ctx()
                };
                Err(self.failure(sent.response, &ctx).await)
            }
        }
    }

    async fn ensure_folder(&self, req: FolderRequest) -> Result<ItemMeta> {
        let url = self.item_url("folders", &req.key);
        let sent = self
            .send("ensure_folder", self.request_timeout, |h| {
                write_headers(h.put(&url), req.stamp, req.seen)
            })
            .await?;
        if sent.response.status() != StatusCode::OK {
            let ctx = ErrorContext {
                key: Some(&req.key),
                ..self.ctx()
            };
            return Err(self.failure(sent.response, &ctx).await);
        }
        let item: WireItem = self.json(sent.response, "ensure_folder").await?;
        Ok(item.into())
    }

    /// Follows the pages of `GET /history` (newest first) until the server says there are no
    /// more, then answers oldest first. A page that does not move back (a `next_before` not
    /// below the page's own start) is refused as a bad answer instead of looping; an older
    /// server's one answer with every version works the same.
    async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>> {
        let url = self.item_url("history", key);
        let mut before: Option<u64> = None;
        let mut out: Vec<VersionMeta> = Vec::new();
        loop {
            let mut query = vec![("limit", MAX_HISTORY_PAGE.to_string())];
            if let Some(b) = before {
                query.push(("before", b.to_string()));
            }
            let sent = self
                .send("history", self.request_timeout, |h| {
                    h.get(&url).query(&query)
                })
                .await?;
            if sent.response.status() != StatusCode::OK {
                let ctx = ErrorContext {
                    key: Some(key),
                    ..self.ctx()
                };
                return Err(self.failure(sent.response, &ctx).await);
            }
            let h: WireHistory = self.json(sent.response, "history").await?;
            out.extend(h.versions.into_iter().map(VersionMeta::from));
            match h.next_before {
                None => break,
                Some(next) if before.is_none_or(|b| next < b) => before = Some(next),
                Some(next) => {
                    return Err(Error::offline(format!(
                        "the server's history of {key} said to go on before revision {next}, \
                         which does not move back from {}; the server is misbehaving",
                        before.unwrap_or_default()
                    )))
                }
            }
        }
        // Pages come newest first; an older server sent one page oldest first. Either way,
        // callers get revision order.
        out.sort_by_key(|v| v.rev);
        Ok(out)
    }

    async fn archive(&self, req: ArchiveRequest) -> Result<VersionMeta> {
        let url = self.item_url("history", &req.key);
        let sent = self
            .send("archive", self.request_timeout, |h| {
                write_headers(h.post(&url), req.stamp, req.seen)
                    .header(X_SYNC_HASH, req.hash.to_hex())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, req.content.len())
                    .body(req.content.clone())
            })
            .await?;
        if sent.response.status() != StatusCode::CREATED {
            let ctx = ErrorContext {
                key: Some(&req.key),
                sent: Some((&req.content, req.hash)),
                ..self.ctx()
            };
            return Err(self.failure(sent.response, &ctx).await);
        }
        let v: WireVersion = self.json(sent.response, "archive").await?;
        Ok(v.into())
    }

    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> Result<bool> {
        if timeout.is_zero() {
            return Ok(!self.changes(since, 1).await?.changes.is_empty());
        }
        // The protocol's wait is whole seconds: ask for at least `timeout` and, when that is
        // not a whole number of seconds, stop waiting ourselves at `timeout`.
        let secs = timeout.as_secs_f64().ceil().min(MAX_WAIT_SECS as f64) as u64;
        let whole = timeout == Duration::from_secs(secs);
        let url = self.url("/changes");
        let mut query = vec![("limit", "1".to_owned()), ("wait", secs.to_string())];
        if let Some(c) = since {
            query.push(("since", c.to_string()));
        }
        let poll = async {
            let sent = self
                .send("wait", Duration::from_secs(secs) + WAIT_SLACK, |h| {
                    h.get(&url).query(&query)
                })
                .await?;
            if sent.response.status() != StatusCode::OK {
                let ctx = ErrorContext {
                    since: since.map(Cursor::to_string),
                    ..self.ctx()
                };
                return Err(self.failure(sent.response, &ctx).await);
            }
            let page: WirePage = self.json(sent.response, "wait").await?;
            Ok(!page.changes.is_empty())
        };
        if whole {
            poll.await
        } else {
            tokio::time::timeout(timeout, poll)
                .await
                .unwrap_or(Ok(false))
        }
    }
}
