//! The API's error shape: `{"error":{"code","message","field"?}}` with a fitting status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::kinds::ParamError;
use crate::models::ModelProblem;
use crate::scheduler::ControlError;
use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// The model a refused request named that cannot run, as data.
    pub model: Option<Box<ModelProblem>>,
}

/// The JSON body of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong and, for bad input, which field.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a model that is not installed, unknown, or missing a default: which, and what
    /// installs it (`pull`) or is close (`close`); the message says the same in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Box<ModelProblem>>,
}

impl ApiError {
    /// An error with a status, machine code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None, model: None }
    }

    /// 400 naming the offending field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_param",
            message: format!("{field}: {message}"),
            field: Some(field),
            retry_after: None,
            model: None,
        }
    }

    /// 404 for a thing by id.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} {id} not found"))
    }

    /// 500 for failures that are ours, not the client's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let error =
            ErrorDetail { code: self.code.to_string(), message: self.message, field: self.field, model: self.model };
        refusal(self.status, ErrorBody { error }, self.retry_after)
    }
}

/// A refusal in any family's shape: `body` as JSON with `status`, and `Retry-After` when the
/// refusal clears by itself (a full queue, a rate).
pub fn refusal(status: StatusCode, body: impl serde::Serialize, retry_after: Option<u64>) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError { model: e.model, ..ApiError::field(e.field, e.message) }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => ApiError::not_found(what, &id),
            StoreError::QueueFull { .. } => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
            },
            StoreError::OwnerQueueFull { .. } => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    format!("{e}; it frees up as queued jobs start"),
                )
            },
            StoreError::StorageQuotaExceeded { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "quota_exceeded",
                // Uploads have no delete route: deleting jobs and profiles is what frees room.
                format!("{e}; delete finished jobs or profiles to free space, or ask whoever runs the box for more"),
            ),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::ProfileNameTaken { .. } => {
                ApiError { status: StatusCode::CONFLICT, code: "name_taken", ..ApiError::field("name", e.to_string()) }
            }
            StoreError::NotFinished { .. } => ApiError::new(StatusCode::CONFLICT, "wrong_state", e.to_string()),
            StoreError::KeyRevoked(k) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_key", super::keys::revoked_message(&k))
            }
            StoreError::IdempotencyKeyReused { .. } => ApiError {
                field: Some("Idempotency-Key".into()),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", e.to_string())
            },
            StoreError::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::disk::DiskLow> for ApiError {
    fn from(e: crate::disk::DiskLow) -> Self {
        // 507: the server cannot store what the request needs; retrying helps once space is freed.
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_low", e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Store(s) => s.into(),
            ControlError::WrongState(..) => ApiError::new(StatusCode::CONFLICT, "wrong_state", e.to_string()),
        }
    }
}
