//! The handlers of every route of docs/PROTOCOL.md. Each one parses what it needs (key,
//! headers, query, body), calls the store once or twice, and answers; errors go through
//! [`super::errors`].
//!
//! Handlers never read the `Authorization` header (the middleware put the [`TenantId`] in the
//! request extensions) and never hold anything across a store call but their own data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use sync_core::server::check_content_file;
use sync_core::{
    ArchiveRequest, ContentFile, ContentHash, Cursor, DeleteRequest, Error, FolderRequest,
    HistoryRange, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision, ServerStore,
    Stamp, TenantId, MAX_HISTORY_PAGE,
};

use super::errors::{from_core, ApiError};
use super::keys::decode_key;
use super::limits::{answer_body, declared_length, read_budgeted, read_spooled, BodyPermit};
use super::spool::SPOOL_OVER;
use super::AppState;
use crate::wire::{
    etag, parse_etag, parse_rev, WireHistory, WireItem, WirePage, WireVersion, DEFAULT_LIMIT,
    MAX_LIMIT, MAX_WAIT_SECS, PREFIX, X_SYNC_HASH, X_SYNC_KIND, X_SYNC_SEEN, X_SYNC_STAMP,
};

type ApiResult<T> = Result<T, ApiError>;

/// `GET /health`: 200 when the store answers, 503 `unavailable` when it does not.
pub(crate) async fn health<S: ServerStore>(State(state): State<AppState<S>>) -> Response {
    match state.store.check().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not answer");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the store does not answer: {e}"),
            )
            .into_response()
        }
    }
}

/// `GET /info`: what a client should know before it writes.
pub(crate) async fn info<S: ServerStore>(State(state): State<AppState<S>>) -> Response {
    Json(serde_json::json!({
        "protocol": 1,
        "max_item_bytes": item_limit(&state),
        "rate_limit_per_second": state.options.rate_limit_per_second,
        "rate_limit_burst": state.options.rate_limit_burst,
        "batch_max_items": crate::wire::BATCH_MAX_ITEMS,
        "batch_max_bytes": crate::wire::BATCH_MAX_BYTES,
        "time_millis": server_now().millis,
    }))
    .into_response()
}

/// Any path that is not a route.
pub(crate) async fn no_such_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such route: {}", uri.path()))
}

/// A route that exists with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// `/items/`, `/history/`, `/folders/` with no key.
pub(crate) async fn empty_key() -> ApiError {
    ApiError::invalid_key("invalid key \"\": a key must not be empty")
}

/// The key of a `<PREFIX>/<group>/<key>` path, from the raw (still percent-encoded) path.
fn path_key(uri: &Uri, group: &str) -> ApiResult<Key> {
    let path = uri.path();
    let marker = format!("{PREFIX}/{group}/");
    let raw = path
        .find(&marker)
        .map(|at| &path[at + marker.len()..])
        .ok_or_else(|| ApiError::invalid_key(format!("no key in path {path}")))?;
    decode_key(raw)
}

/// A header as text; non-ASCII is a malformed header.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("malformed {name} header")))
        })
        .transpose()
}

fn required_hash(headers: &HeaderMap) -> ApiResult<ContentHash> {
    let s = header_str(headers, X_SYNC_HASH)?.ok_or_else(|| {
        ApiError::bad_request("missing X-Sync-Hash header (the content's blake3 hash)")
    })?;
    s.trim()
        .parse()
        .map_err(|e| ApiError::bad_request(format!("malformed X-Sync-Hash header: {e}")))
}

fn stamp(headers: &HeaderMap, required: bool) -> ApiResult<Stamp> {
    match header_str(headers, X_SYNC_STAMP)? {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|e| ApiError::bad_request(format!("malformed X-Sync-Stamp header: {e}"))),
        None if required => Err(ApiError::bad_request(
            "missing X-Sync-Stamp header (<millis>.<counter>.<node hex>)",
        )),
        None => Ok(server_now()),
    }
}

/// The server's time as a stamp, for writes that carry none (the store clamps it anyway).
pub(crate) fn server_now() -> Stamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Stamp::at(millis, NodeId(0))
}

fn seen(headers: &HeaderMap) -> ApiResult<Revision> {
    match header_str(headers, X_SYNC_SEEN)? {
        None => Ok(Revision::ZERO),
        Some(s) => parse_rev(s)
            .ok_or_else(|| {
                ApiError::bad_request("malformed X-Sync-Seen header: expected a revision number")
            })
            .and_then(bounded_seen),
    }
}

/// `seen` when it is at most [`sync_core::server::MAX_SEEN`], else 400: no server issues such
/// a revision, and accepting it would push the tenant's counter toward its ceiling.
pub(crate) fn bounded_seen(seen: Revision) -> ApiResult<Revision> {
    if seen > sync_core::server::MAX_SEEN {
        return Err(ApiError::bad_request(format!(
            "seen = {seen} is out of range (at most {}): no server issues such revisions; the \
             client's sync state is damaged",
            sync_core::server::MAX_SEEN
        )));
    }
    Ok(seen)
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<Revision>> {
    header_str(headers, header::IF_MATCH.as_str())?
        .map(|s| {
            parse_etag(s).ok_or_else(|| {
                ApiError::bad_request("malformed If-Match header: expected \"<revision>\"")
            })
        })
        .transpose()
}

/// Exactly one of `If-Match: "<rev>"` and `If-None-Match: *`.
fn precondition(headers: &HeaderMap) -> ApiResult<Precondition> {
    let matched = if_match(headers)?;
    let none_match = header_str(headers, header::IF_NONE_MATCH.as_str())?;
    match (matched, none_match) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "send exactly one of If-Match and If-None-Match",
        )),
        (Some(rev), None) => Ok(Precondition::Match(rev)),
        (None, Some(s)) if s.trim() == "*" => Ok(Precondition::Create),
        (None, Some(_)) => Err(ApiError::bad_request(
            "malformed If-None-Match header: only `*` is supported",
        )),
        (None, None) => Err(ApiError::precondition_required(
            "a write needs `If-Match: \"<revision>\"` (overwrite) or `If-None-Match: *` (create)",
        )),
    }
}

/// The smaller of the server's and the store's item limit.
fn item_limit<S: ServerStore>(state: &AppState<S>) -> u64 {
    state
        .options
        .max_item_bytes
        .min(state.store.max_item_bytes())
}

/// A write's body once it has all arrived.
enum Upload {
    /// In memory; the store checks it against its announced hash.
    Memory(Bytes),
    /// Kept on disk as it arrived (a large body, with a spool folder), hashed on the way.
    File(ContentFile),
}

/// Reads the body under the item limit: into memory, or, when it is large and the server has
/// a spool folder, to disk, where it is checked against `expected` at once (a body in memory
/// is checked by the store, which must check every push).
async fn read_upload<S: ServerStore>(
    state: &AppState<S>,
    tenant: &TenantId,
    key: &Key,
    headers: &HeaderMap,
    body: Body,
    expected: ContentHash,
) -> ApiResult<(Upload, BodyPermit)> {
    let limit = item_limit(state);
    let timeout = state.options.request_timeout;
    let spool_dir = state.options.spool_dir.as_deref();
    let declared = declared_length(headers, limit)?;
    match spool_dir {
        Some(dir) if declared.is_none_or(|len| len > SPOOL_OVER) => {
            let (content, permit) =
                read_spooled(&state.bodies, tenant, dir, body, limit, timeout).await?;
            check_content_file(key, &content, &expected, limit).map_err(core)?;
            Ok((Upload::File(content), permit))
        }
        _ => {
            let (content, permit) =
                read_budgeted(&state.bodies, tenant, headers, body, limit, timeout).await?;
            Ok((Upload::Memory(content), permit))
        }
    }
}

fn core(err: Error) -> ApiError {
    from_core(err, false)
}

/// Query of `GET /changes`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChangesQuery {
    since: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
}

/// `GET /changes?since=&limit=&wait=`.
pub(crate) async fn changes<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> ApiResult<Json<WirePage>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = q
        .since
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(|e| core(Error::InvalidCursor(e)))?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be a number from 1 to {MAX_LIMIT}"))
            })?,
    };
    let wait = match q.wait.as_deref() {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::bad_request(format!("wait must be a number from 0 to {MAX_WAIT_SECS}"))
            })?,
    };
    if wait > 0 {
        let wait = Duration::from_secs(wait).min(state.options.max_wait);
        let _open = super::observe::LongPoll::start();
        state
            .store
            .wait(&tenant, since.as_ref(), wait)
            .await
            .map_err(core)?;
    }
    let page = state
        .store
        .changes(&tenant, since.as_ref(), limit)
        .await
        .map_err(core)?;
    Ok(Json(WirePage::from(&page)))
}

/// Query of `GET /items/<key>`.
#[derive(Debug, Deserialize)]
pub(crate) struct RevQuery {
    rev: Option<String>,
}

/// `GET /items/<key>[?rev=<n>]`.
pub(crate) async fn get_item<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    uri: Uri,
    query: Result<Query<RevQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let key = path_key(&uri, "items")?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let rev = q
        .rev
        .as_deref()
        .map(|s| parse_rev(s).ok_or_else(|| ApiError::bad_request("rev must be a revision number")))
        .transpose()?;
    let fetched = state
        .store
        .fetch_body(&tenant, &key, rev)
        .await
        .map_err(core)?;
    let v = &fetched.version;
    let Some(hash) = v.hash.filter(|_| !v.deleted) else {
        // A folder (or a tombstone): there is no content to fetch.
        return Err(core(Error::NotFound { key }));
    };
    let len = fetched.body.len();
    let body = answer_body(&state.bodies, &tenant, fetched.body).await?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let text =
        |s: String| HeaderValue::try_from(s).map_err(|e| core(Error::storage(e.to_string())));
    h.insert(header::ETAG, text(etag(v.rev))?);
    h.insert(X_SYNC_HASH, text(hash.to_hex())?);
    h.insert(X_SYNC_STAMP, text(v.stamp.to_string())?);
    h.insert(X_SYNC_KIND, HeaderValue::from_static("file"));
    Ok(resp)
}

/// `PUT /items/<key>`.
pub(crate) async fn put_item<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let key = path_key(&uri, "items")?;
    let precondition = precondition(&headers)?;
    let hash = required_hash(&headers)?;
    let stamp = stamp(&headers, false)?;
    let seen = seen(&headers)?;
    let (upload, _held) = read_upload(&state, &tenant, &key, &headers, body, hash).await?;
    let mut req = PushRequest {
        key,
        precondition,
        content: Bytes::new(),
        hash,
        stamp,
        seen,
    };
    let pushed = match upload {
        Upload::Memory(content) => {
            req.content = content;
            state.store.push(&tenant, req).await
        }
        Upload::File(content) => state.store.push_file(&tenant, req, content).await,
    };
    match pushed.map_err(core)? {
        PushOutcome::Accepted(meta) => {
            super::observe::writes("push", 1);
            let status = match precondition {
                Precondition::Create => StatusCode::CREATED,
                Precondition::Match(_) => StatusCode::OK,
            };
            Ok((status, Json(WireItem::from(&meta))).into_response())
        }
        PushOutcome::Conflict { current } => Err(ApiError::conflict(current.as_ref())),
    }
}

/// `DELETE /items/<key>`.
pub(crate) async fn delete_item<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = path_key(&uri, "items")?;
    let rev = if_match(&headers)?.ok_or_else(|| {
        ApiError::precondition_required("a delete needs `If-Match: \"<revision>\"`")
    })?;
    let req = DeleteRequest {
        key: key.clone(),
        rev,
        stamp: stamp(&headers, false)?,
        seen: seen(&headers)?,
    };
    match state.store.delete(&tenant, req).await.map_err(core)? {
        PushOutcome::Accepted(meta) => {
            super::observe::writes("delete", 1);
            Ok(Json(WireItem::from(&meta)).into_response())
        }
        PushOutcome::Conflict { current: None } => Err(core(Error::NotFound { key })),
        PushOutcome::Conflict { current } => Err(ApiError::conflict(current.as_ref())),
    }
}

/// Query of `GET /history/<key>`.
#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// `GET /history/<key>[?limit=N&before=REV]`: one page of the key's versions, newest first.
pub(crate) async fn get_history<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    uri: Uri,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Json<WireHistory>> {
    let key = path_key(&uri, "history")?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => MAX_HISTORY_PAGE,
        Some(s) => s
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a number from 1 to {MAX_HISTORY_PAGE} (the most versions \
                     one page holds); got {s:?}"
                ))
            })?,
    };
    let before = q
        .before
        .as_deref()
        .map(|s| {
            parse_rev(s).filter(|r| r.0 > 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "before must be a revision number above 0 (the next_before of the page \
                     before); got {s:?}"
                ))
            })
        })
        .transpose()?;
    let range = HistoryRange { before, limit };
    let page = state
        .store
        .history(&tenant, &key, range)
        .await
        .map_err(core)?;
    Ok(Json(WireHistory {
        versions: page.versions.iter().map(WireVersion::from).collect(),
        next_before: page.next_before.map(|r| r.0),
    }))
}

/// `POST /history/<key>`: archive a version without making it current.
pub(crate) async fn post_history<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let key = path_key(&uri, "history")?;
    let hash = required_hash(&headers)?;
    let stamp = stamp(&headers, false)?;
    let seen = seen(&headers)?;
    let (upload, _held) = read_upload(&state, &tenant, &key, &headers, body, hash).await?;
    let content = match upload {
        Upload::Memory(content) => content,
        Upload::File(content) => content.read().await.map_err(core)?,
    };
    let req = ArchiveRequest {
        key,
        content,
        hash,
        stamp,
        seen,
    };
    let version = state.store.archive(&tenant, req).await.map_err(core)?;
    super::observe::writes("history", 1);
    Ok((StatusCode::CREATED, Json(WireVersion::from(&version))).into_response())
}

/// `PUT /folders/<path>`.
pub(crate) async fn put_folder<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<WireItem>> {
    let key = path_key(&uri, "folders")?;
    let req = FolderRequest {
        key,
        stamp: stamp(&headers, false)?,
        seen: seen(&headers)?,
    };
    let meta = state
        .store
        .ensure_folder(&tenant, req)
        .await
        .map_err(|e| from_core(e, true))?;
    super::observe::writes("folder", 1);
    Ok(Json(WireItem::from(&meta)))
}
