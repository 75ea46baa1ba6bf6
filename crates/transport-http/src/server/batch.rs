//! `POST /sync/v1/batch/push` and `POST /sync/v1/batch/fetch` (docs/PROTOCOL.md "Batches"):
//! many small pushes or fetches in one request, each item with its own precondition and its
//! own result, the same as its single route would answer.
//!
//! A push batch goes to the store in one [`ServerStore::push_many`] (one transaction in
//! SQLite); the store checks each item's size and hash. A bad item gets its own error result
//! and never fails the others; only a malformed request as a whole is a 4xx. Nothing here
//! decides a write.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::{Bytes, BytesMut};
use sync_core::{Error, Key, Precondition, PushOutcome, PushRequest, Revision, ServerStore};
use sync_core::{Stamp, TenantId};

use super::errors::{from_core, ApiError};
use super::limits::{read_body, read_budgeted};
use super::AppState;
use crate::wire::{
    split_batch, WireBatchFetchRequest, WireBatchPushManifest, WireBatchResult, WireBatchResults,
    WireErrorDetail, WireItem, WireVersion, BATCH_CONTENT_TYPE, BATCH_MAX_BYTES, BATCH_MAX_ITEMS,
    BATCH_MAX_MANIFEST,
};

type ApiResult<T> = Result<T, ApiError>;

fn error_result(e: ApiError) -> WireBatchResult {
    WireBatchResult {
        status: e.status.as_u16(),
        item: None,
        current: e.current.map(|c| *c),
        error: Some(WireErrorDetail {
            code: e.code.to_owned(),
            message: e.message,
            limit: e.limit,
        }),
        version: None,
    }
}

fn too_many(n: usize) -> ApiError {
    ApiError::bad_request(format!(
        "a batch holds at most {BATCH_MAX_ITEMS} items; this one has {n}: send it in parts"
    ))
}

/// `POST /batch/push`.
pub(crate) async fn push<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let limit = BATCH_MAX_BYTES + BATCH_MAX_MANIFEST;
    let (body, _held) = read_budgeted(
        &state.bodies,
        &tenant,
        &headers,
        body,
        limit,
        state.options.request_timeout,
    )
    .await?;
    let (manifest, mut contents) = split_batch(&body).ok_or_else(|| {
        ApiError::bad_request("a batch body is one line of JSON, a newline, then the contents")
    })?;
    let manifest: WireBatchPushManifest = serde_json::from_slice(&manifest)
        .map_err(|e| ApiError::bad_request(format!("the batch manifest is not valid: {e}")))?;
    if manifest.items.len() > BATCH_MAX_ITEMS {
        return Err(too_many(manifest.items.len()));
    }
    let total = manifest
        .items
        .iter()
        .try_fold(0u64, |sum, i| sum.checked_add(i.size));
    if total != Some(contents.len() as u64) {
        let total = total.map_or_else(|| "more than 2^64".to_owned(), |t| t.to_string());
        return Err(ApiError::bad_request(format!(
            "the manifest lists {total} content bytes but {} follow it",
            contents.len()
        )));
    }
    let seen = super::routes::bounded_seen(Revision(manifest.seen))?;
    let mut results: Vec<Option<WireBatchResult>> = vec![None; manifest.items.len()];
    let mut requests = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in manifest.items.into_iter().enumerate() {
        let content = contents.split_to(item.size as usize);
        let key = match Key::new(&item.key) {
            Ok(k) => k,
            Err(e) => {
                results[i] = Some(error_result(from_core(Error::InvalidKey(e), false)));
                continue;
            }
        };
        let stamp = match item.stamp.as_deref().map(str::parse::<Stamp>) {
            None => super::routes::server_now(),
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let e = ApiError::bad_request(format!("malformed stamp of {key}: {e}"));
                results[i] = Some(error_result(e));
                continue;
            }
        };
        let precondition = match item.if_match {
            Some(rev) => Precondition::Match(Revision(rev)),
            None => Precondition::Create,
        };
        requests.push(PushRequest {
            key,
            precondition,
            content,
            hash: item.hash,
            stamp,
            seen,
        });
        slots.push(i);
    }
    let preconditions: Vec<Precondition> = requests.iter().map(|r| r.precondition).collect();
    if !requests.is_empty() {
        let outcomes = state
            .store
            .push_many(&tenant, requests)
            .await
            .map_err(|e| from_core(e, false))?;
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PushOutcome::Accepted(_))))
            .count();
        super::observe::writes("push", accepted as u64);
        for ((slot, outcome), precondition) in slots.into_iter().zip(outcomes).zip(preconditions) {
            results[slot] = Some(match outcome {
                Ok(PushOutcome::Accepted(meta)) => WireBatchResult {
                    status: match precondition {
                        Precondition::Create => 201,
                        Precondition::Match(_) => 200,
                    },
                    item: Some(WireItem::from(&meta)),
                    error: None,
                    current: None,
                    version: None,
                },
                Ok(PushOutcome::Conflict { current }) => {
                    error_result(ApiError::conflict(current.as_ref()))
                }
                Err(e) => error_result(from_core(e, false)),
            });
        }
    }
    let results = results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| error_result(ApiError::bad_request("the store gave no result")))
        })
        .collect();
    Ok(Json(WireBatchResults { results }).into_response())
}

/// `POST /batch/fetch`.
pub(crate) async fn fetch<S: ServerStore>(
    State(state): State<AppState<S>>,
    Extension(tenant): Extension<TenantId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let body = read_body(
        &headers,
        body,
        BATCH_MAX_MANIFEST,
        state.options.request_timeout,
    )
    .await?;
    let request: WireBatchFetchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the batch request is not valid: {e}")))?;
    if request.items.len() > BATCH_MAX_ITEMS {
        return Err(too_many(request.items.len()));
    }
    // Valid keys go to the store in one call; an invalid one gets its error in its place.
    let mut results: Vec<Option<WireBatchResult>> = Vec::with_capacity(request.items.len());
    let mut reqs = Vec::new();
    for item in request.items {
        match Key::new(&item.key) {
            Ok(key) => {
                reqs.push((key, item.rev.map(Revision)));
                results.push(None);
            }
            Err(e) => results.push(Some(error_result(from_core(Error::InvalidKey(e), false)))),
        }
    }
    let fetched = state
        .store
        .fetch_many(&tenant, reqs, BATCH_MAX_BYTES)
        .await
        .map_err(|e| from_core(e, false))?;
    let mut contents = BytesMut::new();
    let mut fetched = fetched.into_iter();
    let results: Vec<WireBatchResult> = results
        .into_iter()
        .map(|slot| {
            if let Some(invalid) = slot {
                return invalid;
            }
            match fetched.next().flatten() {
                None => deferred(),
                Some(Ok(f)) => {
                    contents.extend_from_slice(&f.content);
                    WireBatchResult {
                        status: 200,
                        item: None,
                        error: None,
                        current: None,
                        version: Some(WireVersion::from(&f.version)),
                    }
                }
                Some(Err(e)) => error_result(from_core(e, false)),
            }
        })
        .collect();
    let manifest = serde_json::to_vec(&WireBatchResults { results })
        .map_err(|e| ApiError::bad_request(format!("cannot write the answer: {e}")))?;
    let mut out = BytesMut::with_capacity(manifest.len() + 1 + contents.len());
    out.extend_from_slice(&manifest);
    out.extend_from_slice(b"\n");
    out.extend_from_slice(&contents);
    let mut resp = (StatusCode::OK, Body::from(Bytes::from(out))).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(BATCH_CONTENT_TYPE),
    );
    Ok(resp)
}

/// An item left out because the answer is full: fetch it again (alone or in the next batch).
fn deferred() -> WireBatchResult {
    error_result(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "deferred",
        format!("the answer reached {BATCH_MAX_BYTES} bytes; fetch this item again"),
    ))
}
