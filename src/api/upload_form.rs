//! Files sent in multipart forms, read the same way on every route that takes one
//! (`/api/v1/artifacts`, `/api/v1/profiles`, ComfyUI's `/upload/image`, OpenAI's image
//! edits): each file is held to `limits.max_upload_bytes` as it arrives, and one past it
//! gets the one refusal, 413 `upload_too_large`, naming the field, the limit in bytes a
//! person reads and the config key.

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::ApiError;
use crate::config::LimitsConfig;
use crate::disk::human_bytes;

/// The body limit of a route whose form carries up to `files` files: each up to
/// `limits.max_upload_bytes`, and `limits.max_body_bytes` more for the form's text fields
/// and framing, so that a file at the limit is taken (the limit is a file's, as the config
/// documents it, not the form's).
pub fn body_limit(limits: &LimitsConfig, files: usize) -> usize {
    limits.max_upload_bytes.saturating_mul(files).saturating_add(limits.max_body_bytes)
}

/// Marks a refusal past a body limit (413) `Connection: close`. Its request's body was left
/// unread, so the connection cannot carry another request: said, a client opens a new one
/// for its next request instead of sending it down a connection the server is closing.
pub async fn close_after_too_large(mut resp: Response) -> Response {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// 413 `upload_too_large`: the file sent as `field` is past `limits.max_upload_bytes`.
pub fn too_large(field: &str, limits: &LimitsConfig) -> ApiError {
    let limit = human_bytes(limits.max_upload_bytes as u64);
    ApiError {
        field: Some(field.to_string()),
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "{field}: the file is larger than the {limit} this box takes (limits.max_upload_bytes); send a \
                 smaller file, or ask whoever runs the box to raise limits.max_upload_bytes"
            ),
        )
    }
}

/// A form that broke off while `field` was being read: past the body limit, [`too_large`];
/// otherwise 400 `bad_upload` in the form reader's own words.
pub fn form_error(field: &str, limits: &LimitsConfig, e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(field, limits);
    }
    ApiError {
        field: Some(field.to_string()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "bad_upload", format!("{field}: {}", e.body_text()))
    }
}

/// 400 `not_multipart`: the body is not a multipart form (a raw file, JSON, a form with no
/// boundary), said with what to send instead, `field` being the file's form field.
pub fn not_a_form(field: &str, r: &MultipartRejection) -> ApiError {
    ApiError {
        field: Some(field.to_string()),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_multipart",
            format!(
                "{field}: send the file as multipart/form-data field `{field}` (curl -F {field}=@FILE); this body \
                 could not be read as one: {}",
                r.body_text()
            ),
        )
    }
}

/// The bytes of the file in a form's `field` (named `name` in refusals), refused with
/// [`too_large`] as soon as they pass `limits.max_upload_bytes`.
pub async fn file_bytes(mut field: Field<'_>, name: &str, limits: &LimitsConfig) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| form_error(name, limits, e))? {
        if bytes.len() + chunk.len() > limits.max_upload_bytes {
            return Err(too_large(name, limits));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_field_the_limit_and_the_key() {
        let limits = LimitsConfig { max_upload_bytes: 32 << 20, ..LimitsConfig::default() };
        let e = too_large("portrait", &limits);
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", Some("portrait"))
        );
        assert!(e.message.starts_with("portrait: the file is larger than the 33.6 MB this box takes"), "{}", e.message);
        assert!(e.message.contains("limits.max_upload_bytes"), "{}", e.message);
        assert_eq!(body_limit(&limits, 2), (64 << 20) + limits.max_body_bytes);
    }
}
