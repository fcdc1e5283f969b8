//! Refusals in the shape AUTOMATIC1111's API answers every error in,
//! `{"error": "HTTPException", "detail": "...", "body": "", "errors": "422: ..."}`, with its
//! statuses: 422 for a request that cannot be run as sent (A1111's request validation), 404
//! for a model it does not have. `detail` starts with the request's own field name
//! (`sampler_name: ...`), not the native job's it was mapped onto.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::ApiError;
use crate::api::json::{ApiBytes, read_json};
use crate::api::openai::OpenAiError;

/// An error answered to an A1111 client.
#[derive(Debug, Clone)]
pub struct A1111Error {
    pub status: StatusCode,
    /// What went wrong, starting with the request field at fault when there is one.
    pub detail: String,
    /// Seconds for `Retry-After` (a 429's).
    pub retry_after: Option<u64>,
}

/// The JSON body of an A1111 error (what its `api_middleware` writes for an exception).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct A1111ErrorBody {
    /// The exception's class name: `HTTPException`.
    pub error: String,
    /// What went wrong; the field at fault comes first (`sampler_name: ...`).
    pub detail: String,
    /// Always empty (A1111 puts a validation error's body here).
    pub body: String,
    /// The status and the detail, as A1111's `str(exception)` reads.
    pub errors: String,
}

impl A1111Error {
    /// 422 naming the request field at fault.
    pub fn field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{field}: {message}"))
    }

    /// An error with a status and words.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), retry_after: None }
    }

    /// 500 for failures that are ours.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// The JSON body.
    pub fn body(&self) -> A1111ErrorBody {
        A1111ErrorBody {
            error: "HTTPException".into(),
            detail: self.detail.clone(),
            body: String::new(),
            errors: format!("{}: {}", self.status.as_u16(), self.detail),
        }
    }

    /// A native refusal of the job the request became, its field named as the request names
    /// it (`guidance` → `cfg_scale`; `to_request` maps a native field, `None` keeping it).
    pub fn renamed(status: StatusCode, field: Option<&str>, message: &str, to_request: fn(&str) -> String) -> Self {
        // A value the job refuses is a request A1111 would not run: its validation's 422.
        let status = if status == StatusCode::BAD_REQUEST { StatusCode::UNPROCESSABLE_ENTITY } else { status };
        let detail = match field {
            Some(f) => {
                let words = message.strip_prefix(&format!("{f}: ")).unwrap_or(message);
                format!("{}: {words}", to_request(f))
            }
            None => message.to_string(),
        };
        Self::new(status, detail)
    }
}

/// A refusal of the layers before the handler (guard, authentication, rate) or of the body's
/// reading, in A1111's shape.
impl From<ApiError> for A1111Error {
    fn from(e: ApiError) -> Self {
        let status = match (e.status, e.code) {
            // A body that is not the request's JSON is A1111's (pydantic's) 422.
            (StatusCode::BAD_REQUEST, "invalid_body" | "malformed_json") => StatusCode::UNPROCESSABLE_ENTITY,
            (s, _) => s,
        };
        Self { status, detail: e.message, retry_after: e.retry_after }
    }
}

/// The waiting code's refusals (shared with the OpenAI routes, `openai::run`), their field
/// left as the native job names it: callers that know the request rename it.
impl From<OpenAiError> for A1111Error {
    fn from(e: OpenAiError) -> Self {
        Self { status: e.status, detail: e.message, retry_after: e.retry_after }
    }
}

impl IntoResponse for A1111Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}", self.detail);
        }
        crate::api::error::refusal(self.status, self.body(), self.retry_after)
    }
}

/// A request's body read as `T`, a body it cannot be refused in A1111's shape naming the field.
pub fn read_body<T: serde::de::DeserializeOwned + utoipa::PartialSchema>(body: &ApiBytes) -> Result<T, A1111Error> {
    read_json(&body.0).map_err(|u| A1111Error::from(ApiError::from(u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_field_is_named_as_the_request_names_it() {
        let to_request = |f: &str| if f == "guidance" { "cfg_scale".to_string() } else { f.to_string() };
        let e = A1111Error::renamed(StatusCode::BAD_REQUEST, Some("guidance"), "guidance: must be 0–30", to_request);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.detail, "cfg_scale: must be 0–30");
        let body = e.body();
        assert_eq!((body.error.as_str(), body.errors.as_str()), ("HTTPException", "422: cfg_scale: must be 0–30"));
    }
}
