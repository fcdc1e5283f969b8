//! Request extractors (JSON body, query string) whose rejections use the API's error shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// For `#[serde(skip_serializing_if = "super::json::never")]`: a request field (`priority`)
/// that never goes into the job's params. Plain `skip_serializing` would also drop it from
/// the OpenAPI document, which then hid `priority` from every generation route.
pub fn never<T>(_: &T) -> bool {
    true
}

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

/// [`ApiJson`] for bodies whose every field is optional (`POST /api/v1/gc`): no body, an
/// empty one or one without a Content-Type is the defaults, as `curl -X POST URL` sends it
/// (it was a 415); a body that is there is read as JSON with `ApiJson`'s errors.
pub struct ApiJsonOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(r.status(), "body_too_large", "request body is larger than limits.max_body_bytes")
            }
            status => ApiError::new(status, "unreadable_body", r.body_text()),
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let mut json = Request::new(axum::body::Body::from(bytes));
        *json.headers_mut() = headers;
        // A body sent without saying its type is taken as the JSON this route reads.
        json.headers_mut()
            .entry(axum::http::header::CONTENT_TYPE)
            .or_insert(axum::http::HeaderValue::from_static("application/json"));
        let ApiJson(value) = ApiJson::<T>::from_request(json, state).await?;
        Ok(Self(value))
    }
}

/// Like `axum::extract::Query`, but a mistyped or missing parameter becomes an `ApiError`
/// naming it (`limit=abc` → 400 `invalid_query`, field `limit`), not a plain-text 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(r: &QueryRejection) -> ApiError {
    let text = r.body_text();
    let field = field_of(&text);
    let detail = text.split_once("query string: ").map_or(text.as_str(), |(_, d)| d);
    let message = match &field {
        Some(f) if !detail.starts_with(f.as_str()) => format!("{f}: {detail}"),
        _ => detail.to_string(),
    };
    ApiError { field, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message) }
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
            // serde reads a struct from an array too, and then names an element (`[0]`).
            JsonRejection::JsonDataError(_) if text.contains("target type: [") => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the body must be a JSON object ({\"field\": value, ...}), not an array",
            ),
            JsonRejection::JsonDataError(_) => {
                let field = field_of(&text);
                ApiError { field, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", text) }
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", text),
        },
    }
}

/// The field a JSON data error is about. A wrongly typed value is reported with its path
/// first (`width: invalid value: integer `-5`, expected u32`); a missing or unknown field
/// only in backticks (`missing field `kind``).
fn field_of(text: &str) -> Option<String> {
    let detail =
        text.split_once("target type: ").or_else(|| text.split_once("query string: ")).map_or(text, |(_, d)| d);
    if let Some((path, _)) = detail.split_once(": ")
        && !path.is_empty()
        && !path.contains([' ', '`'])
    {
        return Some(path.to_string());
    }
    detail.split('`').nth(1).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn data_errors_name_the_field_not_the_value() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        let typed = format!("{prefix}width: invalid value: integer `-5`, expected u32 at line 1 column 24");
        assert_eq!(field_of(&typed).as_deref(), Some("width"));
        let missing = format!("{prefix}missing field `kind` at line 1 column 2");
        assert_eq!(field_of(&missing).as_deref(), Some("kind"));
        let unknown = format!("{prefix}unknown field `pitch`, expected one of `text`, `voice` at line 1 column 9");
        assert_eq!(field_of(&unknown).as_deref(), Some("pitch"));
        let query = "Failed to deserialize query string: limit: invalid digit found in string";
        assert_eq!(field_of(query).as_deref(), Some("limit"));
    }
}
