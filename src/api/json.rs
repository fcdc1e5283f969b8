//! A JSON body extractor whose rejections use the API's error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::Json`, but malformed, oversized or mistyped bodies become `ApiError`s.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let text = r.body_text();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "body_too_large", "request body is larger than limits.max_body_bytes")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
        }
        _ => match r {
            JsonRejection::JsonDataError(_) => {
                // serde names the field in its message ("missing field `kind`", "at line 1 column 9").
                let field = text.split('`').nth(1).map(str::to_owned);
                ApiError { field, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", text) }
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", text),
        },
    }
}
