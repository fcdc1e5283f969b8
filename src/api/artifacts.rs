//! Artifact download with the right content type, ETag and byte ranges.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::auth::Caller;
use super::jobs::{parse_id, visible_job};
use super::views::ArtifactView;
use super::{ApiError, AppState};
use crate::store::records::Artifact;

/// Loads artifact metadata the caller may see (404 otherwise).
pub fn visible_artifact(state: &AppState, caller: &Caller, raw: &str) -> Result<Artifact, ApiError> {
    let id = parse_id("artifact", raw)?;
    match state.store.artifact(id)? {
        Some(a) if caller.may_see(&a.owner) => Ok(a),
        _ => Err(ApiError::not_found("artifact", raw)),
    }
}

/// Artifacts of a job, in stage order.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/artifacts", params(("id" = String, Path)), responses((status = 200, body = Vec<ArtifactView>)))]
pub async fn of_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ArtifactView>>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    let mut out = Vec::new();
    for stage in &job.stages {
        for a in &stage.artifacts {
            if let Some(art) = state.store.artifact(*a)? {
                out.push(ArtifactView::from(&art));
            }
        }
    }
    Ok(Json(out))
}

/// Artifact metadata.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/meta", params(("id" = String, Path)), responses((status = 200, body = ArtifactView)))]
pub async fn meta(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ArtifactView>, ApiError> {
    Ok(Json(ArtifactView::from(&visible_artifact(&state, &caller, &id)?)))
}

/// Download an artifact's bytes (supports `Range` and `If-None-Match`).
#[utoipa::path(get, path = "/api/v1/artifacts/{id}", params(("id" = String, Path)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "a byte range"), (status = 304), (status = 404, body = super::error::ErrorBody), (status = 416)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let art = visible_artifact(&state, &caller, &id)?;
    serve_artifact(&state, &art, &headers).await
}

/// Serves an artifact file honouring conditional and range headers.
pub async fn serve_artifact(state: &AppState, art: &Artifact, headers: &HeaderMap) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", art.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok(with_common(StatusCode::NOT_MODIFIED.into_response(), art, &etag));
    }
    let path = state.store.artifacts_dir().join(&art.path);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("artifact {} bytes unreadable at {}: {e}", art.id, path.display())))?;
    let size = art.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, size));
    let resp = match range {
        None | Some(RangeSpec::Ignore) => {
            let mut r = Response::new(Body::from_stream(ReaderStream::new(file)));
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            r
        }
        Some(RangeSpec::Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Some(RangeSpec::Bytes(start, end)) => {
            file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| ApiError::internal(e.to_string()))?;
            let len = end - start + 1;
            let mut r = Response::new(Body::from_stream(ReaderStream::new(file.take(len))));
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    Ok(with_common(resp, art, &etag))
}

fn with_common(mut r: Response, art: &Artifact, etag: &str) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&art.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    let safe: String = art.name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A parsed `Range` header.
#[derive(Debug, PartialEq)]
pub enum RangeSpec {
    /// Inclusive byte range.
    Bytes(u64, u64),
    Unsatisfiable,
    /// Not a single bytes range we serve partially: send the whole file.
    Ignore,
}

/// Parses a single `bytes=` range against a file of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> RangeSpec {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return RangeSpec::Ignore };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeSpec::Ignore };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
        (Some(s), None) if b.is_empty() => (s, size.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() && n > 0 => (size.saturating_sub(n), size.saturating_sub(1)),
        _ => return RangeSpec::Ignore,
    };
    if size == 0 || range.0 >= size { RangeSpec::Unsatisfiable } else { RangeSpec::Bytes(range.0, range.1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeSpec::Bytes(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), RangeSpec::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-10", 1000), RangeSpec::Bytes(990, 999));
        assert_eq!(parse_range("bytes=990-5000", 1000), RangeSpec::Bytes(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range("items=0-1", 1000), RangeSpec::Ignore);
    }
}
