//! Refusals in ComfyUI's JSON shape, `{"error": {type, message, details, extra_info},
//! "node_errors": {}}` (what its `/prompt` answers; its other routes answer a bare status),
//! for every ComfyUI route: a client reads one shape, not reelbox's native one or plain text,
//! the refusals given before the route's handler included (`api::family`).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::validate::{PromptError, error_obj};
use crate::api::ApiError;
use crate::api::json::{ApiBytes, ApiQuery, read_json_or_default};

/// What went wrong, as ComfyUI says it: `type` a machine code, `details` the field or node
/// input at fault (empty when none). Every refusal's `error` is one (`validate::error_obj`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComfyErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub details: String,
    pub extra_info: Map<String, Value>,
}

/// A ComfyUI refusal's body, `{error, node_errors}`, as the OpenAPI document shows it:
/// `node_errors` holds a refused graph's per-node errors by node id, else nothing.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the shape is written by `PromptError::body`; this type only describes it
pub struct ComfyErrorBody {
    pub error: ComfyErrorDetail,
    pub node_errors: Map<String, Value>,
}

/// A refusal in ComfyUI's shape.
pub struct ComfyError {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds for the `Retry-After` header (a 429's), as the native refusal sends it.
    pub retry_after: Option<u64>,
}

impl IntoResponse for ComfyError {
    fn into_response(self) -> Response {
        crate::api::error::refusal(self.status, self.body, self.retry_after)
    }
}

impl From<PromptError> for ComfyError {
    fn from(e: PromptError) -> Self {
        Self { status: StatusCode::BAD_REQUEST, body: e.body(), retry_after: None }
    }
}

/// The native error's code as `type`, its field as `details`.
impl From<ApiError> for ComfyError {
    fn from(e: ApiError) -> Self {
        let body = json!({"error": error_obj(e.code, &e.message, e.field.as_deref().unwrap_or(""), json!({})), "node_errors": {}});
        Self { status: e.status, body, retry_after: e.retry_after }
    }
}

impl From<crate::store::StoreError> for ComfyError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// [`ApiQuery`] for the ComfyUI routes: a mistyped parameter refused in ComfyUI's shape.
pub struct ComfyQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for ComfyQuery<T> {
    type Rejection = ComfyError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiQuery(q) = ApiQuery::from_request_parts(parts, state).await?;
        Ok(Self(q))
    }
}

/// A body whose every field is optional (`/queue`, `/history`, `/interrupt`, `/free`): none
/// is the defaults; one that is there is read as JSON whatever its content type, as ComfyUI
/// reads it.
pub fn parse_or_default<T: Default + DeserializeOwned + utoipa::PartialSchema>(
    body: Result<ApiBytes, ApiError>,
) -> Result<T, ComfyError> {
    let ApiBytes(body) = body?;
    Ok(read_json_or_default(&body).map_err(ApiError::from)?)
}
