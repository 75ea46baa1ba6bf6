//! `GET /sync/v1/devices` and `DELETE /sync/v1/devices/<id>`: an app lists and removes its own
//! tenant's device tokens (docs/PROTOCOL.md "Devices"), through the server's
//! [`TokenStore`](sync_core::server::TokenStore) when it has one.
//!
//! A tenant only ever sees and revokes its own tokens; another tenant's id is 404, like an
//! unknown one. Tokens themselves are never returned (only made by `sync-server tokens add`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use sync_core::server::TokenStore;
use sync_core::TenantId;

use super::errors::{from_core, ApiError};

/// The token store the device routes use, if the server has one.
pub(crate) type Devices = Option<Arc<dyn TokenStore>>;

#[derive(Serialize)]
struct WireDevice {
    id: String,
    device: String,
    created_millis: u64,
    last_used_millis: Option<u64>,
}

fn store(devices: &Devices) -> Result<&Arc<dyn TokenStore>, ApiError> {
    devices.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "this server keeps no device tokens (it was started without a token store)",
        )
    })
}

/// `GET /devices`: `{"devices":[{"id","device","created_millis","last_used_millis"}...]}`.
pub(crate) async fn list(
    State(devices): State<Devices>,
    Extension(tenant): Extension<TenantId>,
) -> Result<Response, ApiError> {
    let tokens = store(&devices)?
        .tokens(Some(&tenant))
        .await
        .map_err(|e| from_core(e, false))?;
    let devices: Vec<WireDevice> = tokens
        .into_iter()
        .map(|t| WireDevice {
            id: t.id,
            device: t.device,
            created_millis: t.created_millis,
            last_used_millis: t.last_used_millis,
        })
        .collect();
    Ok(Json(serde_json::json!({ "devices": devices })).into_response())
}

/// `DELETE /devices/<id>`: 204, or 404 for an id this tenant has no token under.
pub(crate) async fn revoke(
    State(devices): State<Devices>,
    Extension(tenant): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let gone = store(&devices)?
        .revoke_token(&id, Some(&tenant))
        .await
        .map_err(|e| from_core(e, false))?;
    if gone {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no device token {id:?}")))
    }
}
