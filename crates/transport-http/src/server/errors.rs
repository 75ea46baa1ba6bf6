//! The server's error answers: [`ApiError`] (status + `{"error":{"code","message"}}`) and the one
//! place where a [`sync_core::Error`] becomes a status code and an error code (docs/PROTOCOL.md).
//!
//! Handlers return `Result<_, ApiError>`; they must not build error responses by hand. Nothing
//! here talks to a store.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sync_core::{Error, ItemMeta};

use crate::wire::{WireError, WireErrorDetail, WireItem};

/// One error answer of the HTTP API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The snake_case error code of docs/PROTOCOL.md.
    pub code: &'static str,
    /// A message for a person.
    pub message: String,
    /// On a 412: the current item (`None` inside when the key is absent).
    pub(crate) current: Option<Box<Option<WireItem>>>,
    /// On a 429: seconds to wait.
    pub(crate) retry_after: Option<u64>,
    /// On a 413: the limit in bytes.
    pub(crate) limit: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            current: None,
            retry_after: None,
            limit: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 `invalid_key`.
    pub fn invalid_key(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", message)
    }

    /// 408 `timeout`.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", message)
    }

    /// 413 `too_large`, naming the limit.
    pub fn too_large(message: impl Into<String>, limit: u64) -> ApiError {
        ApiError {
            limit: Some(limit),
            ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
        }
    }

    /// 428 `precondition_required`.
    pub fn precondition_required(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            message,
        )
    }

    /// 412 `conflict` carrying the current item.
    pub fn conflict(current: Option<&ItemMeta>) -> ApiError {
        let current = current.map(WireItem::from);
        let message = match &current {
            Some(c) if c.deleted => format!(
                "{}: the precondition failed; the item is deleted (revision {})",
                c.key, c.rev
            ),
            Some(c) => format!(
                "{}: the precondition failed; the current revision is {}",
                c.key, c.rev
            ),
            None => "the precondition failed; the item does not exist".to_owned(),
        };
        ApiError {
            current: Some(Box::new(current)),
            ..ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", message)
        }
    }

    /// 429 `rate_limited` with `Retry-After` and a message saying what is busy.
    pub fn busy(retry_after_secs: u64, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 429 `rate_limited` with `Retry-After: <seconds>`.
    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this token; retry after the time in Retry-After",
            )
        }
    }
}

/// Every [`sync_core::Error`] a store can return, as a status and an error code. `folder_route`
/// says whether the request was `PUT /folders` (a file in the way is `not_a_folder` there).
pub(crate) fn from_core(err: Error, folder_route: bool) -> ApiError {
    match &err {
        Error::Auth { .. } => ApiError::unauthorized(err.to_string()),
        Error::NotFound { .. } => ApiError::not_found(err.to_string()),
        Error::InvalidKey(_) => ApiError::invalid_key(err.to_string()),
        Error::InvalidCursor(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", err.to_string())
        }
        Error::CursorExpired => ApiError::new(StatusCode::GONE, "cursor_expired", err.to_string()),
        Error::HashMismatch { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "hash_mismatch", err.to_string())
        }
        Error::TooLarge { limit, .. } => ApiError::too_large(err.to_string(), *limit),
        Error::Throttled { retry_after, .. } => ApiError {
            message: err.to_string(),
            ..ApiError::rate_limited(retry_after.map_or(1, |d| d.as_secs_f64().ceil() as u64))
        },
        Error::Item { .. } | Error::Changed { .. } => {
            let code = if folder_route {
                "not_a_folder"
            } else {
                "item_rejected"
            };
            ApiError::new(StatusCode::CONFLICT, code, err.to_string())
        }
        Error::Offline { .. } => {
            tracing::warn!(error = %err, "store unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                err.to_string(),
            )
        }
        // A store has no business with the client's certificates: a failure of the server.
        Error::Storage { .. } | Error::Untrusted { .. } | Error::NoServer { .. } => {
            tracing::error!(error = %err, "store failed");
            metrics::counter!(super::observe::STORE_ERRORS).increment(1);
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                err.to_string(),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = WireError {
            error: WireErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                limit: self.limit,
            },
            current: self.current.map(|c| *c),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
