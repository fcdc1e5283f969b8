//! Errors in OpenAI's shape: `{"error":{"message","type","param","code"}}`, so OpenAI SDKs
//! raise their usual exceptions (`BadRequestError`, `NotFoundError`, ...).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::ApiError;

/// An error answered to an OpenAI client.
#[derive(Debug, Clone)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    pub retry_after: Option<u64>,
    /// `x-should-retry`, which the OpenAI SDKs obey over their own retry rules.
    pub should_retry: Option<bool>,
}

/// The JSON body of an OpenAI error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

/// OpenAI's error object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl OpenAiError {
    /// 400 naming the request field at fault.
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_string()),
            code: Some("invalid_value".into()),
            retry_after: None,
            should_retry: None,
        }
    }

    /// An error with a status and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: Some(code.to_string()),
            retry_after: None,
            should_retry: None,
        }
    }

    /// The same error, telling the SDKs not to send the request again: it reports how a
    /// job ended, and a retried request would only make (and wait for) another job.
    pub fn final_answer(self) -> Self {
        Self { should_retry: Some(false), ..self }
    }

    /// 500 for failures that are ours.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body (also what a stream sends as its `error` event).
    pub fn body(self) -> OpenAiErrorBody {
        let kind = self.kind().to_string();
        OpenAiErrorBody { error: OpenAiErrorDetail { message: self.message, kind, param: self.param, code: self.code } }
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            message: e.message,
            param: e.field,
            code: Some(e.code.to_string()),
            retry_after: e.retry_after,
            // A full disk (507) stays full through the SDKs' automatic retries of a 5xx.
            should_retry: (e.status == StatusCode::INSUFFICIENT_STORAGE).then_some(false),
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = ?self.code, "{}", self.message);
        }
        let (status, should_retry, retry_after) = (self.status, self.should_retry, self.retry_after);
        let mut resp = crate::api::error::refusal(status, self.body(), retry_after);
        if let Some(retry) = should_retry {
            resp.headers_mut().insert("x-should-retry", HeaderValue::from_static(if retry { "true" } else { "false" }));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_errors_keep_their_field_as_param() {
        let e = OpenAiError::from(ApiError::field("size", "must be WIDTHxHEIGHT"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("size"));
        assert_eq!(e.kind(), "invalid_request_error");
        assert_eq!(OpenAiError::internal("x").kind(), "server_error");
    }
}
