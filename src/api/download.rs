//! An artifact's bytes as HTTP serves a file: its content type, a strong ETag (its
//! sha256), conditional requests (`If-None-Match`, `If-Range`) and single byte ranges
//! (RFC 9110), and a `Content-Disposition` that keeps any name (RFC 6266, RFC 8187).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use std::collections::BTreeMap;

use utoipa::PartialSchema;
use utoipa::openapi::RefOr;

use super::openapi::Bytes;
use super::{ApiError, AppState};
use crate::jobs::short_id;
use crate::store::artifacts::MEDIA_TYPES;
use crate::store::records::{Artifact, Job};

/// Words of a job's text its downloads are named by: enough to tell films apart.
const NAME_WORDS: usize = 5;
/// The most characters those words take in a file name.
const NAME_CHARS: usize = 40;

/// The name a job's artifact downloads under: `<first words of its script, prompt or
/// text>-<short id>.<ext>` (`foggy-harbour-at-dawn-7KQ2M4XZ.mp4`), so three films do not all
/// save as `film.mp4`; other artifacts than the film keep their own name after it
/// (`…-7KQ2M4XZ-keyframe-1.png`). An artifact of no job (an upload) keeps its name.
pub fn download_name(art: &Artifact, job: Option<&Job>) -> String {
    let Some(job) = job else { return art.name.clone() };
    let params: serde_json::Value = serde_json::from_str(&job.params).unwrap_or_default();
    // The text the web studio sums a job up by (its `summary`), else the kind's name.
    let text = ["prompt", "script", "text", "name"]
        .iter()
        .find_map(|k| params[*k].as_str())
        .or_else(|| params["speech"]["text"].as_str())
        .unwrap_or(&job.kind);
    // Composed, so "Müller" from a Mac (a "u" and a combining mark) is one word.
    let text = crate::text::clean(text);
    let mut slug = String::new();
    let words = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(NAME_WORDS);
    for word in words {
        if slug.chars().count() + word.chars().count() > NAME_CHARS {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.extend(word.chars().flat_map(char::to_lowercase));
    }
    if slug.is_empty() {
        slug = job.kind.clone();
    }
    let id = job.id.to_string();
    match art.name.rsplit_once('.') {
        Some(("film", ext)) => format!("{slug}-{}.{ext}", short_id(&id)),
        _ => format!("{slug}-{}-{}", short_id(&id), art.name),
    }
}

/// Serves artifact `art` as a file a client saves under `name`, honouring conditional and
/// range headers.
pub async fn serve_artifact(
    state: &AppState,
    art: &Artifact,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", art.sha256);
    let header_text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if header_text(header::IF_NONE_MATCH).is_some_and(|v| none_match_fails(v, &etag)) {
        return Ok(with_common(StatusCode::NOT_MODIFIED.into_response(), art, name, &etag));
    }
    let path = state.store.artifacts_dir().join(&art.path);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("artifact {} bytes unreadable at {}: {e}", art.id, path.display())))?;
    let size = art.size;
    // A range of another version than the client holds would corrupt what it resumes: a
    // failed `If-Range` sends the whole file.
    let current = header_text(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = header_text(header::RANGE).filter(|_| current).map(|r| parse_range(r, size));
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
    Ok(with_common(resp, art, name, &etag))
}

/// The answers of a route that serves an artifact through [`serve_artifact`], as its
/// document lists them: the file (200) or a range of it (206), in whichever media type
/// artifacts are stored as; not modified (304); a range past its end (416).
pub struct FileAnswers;

impl utoipa::IntoResponses for FileAnswers {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, ResponseBuilder, ResponsesBuilder};
        let bytes = || ContentBuilder::new().schema(Some(Bytes::schema())).build();
        let whole = MEDIA_TYPES.iter().fold(ResponseBuilder::new(), |r, (media_type, _)| {
            // A JSON artifact (a plan, timings, a report) is any JSON; the rest are files.
            let content = if *media_type == "application/json" {
                ContentBuilder::new().schema(Some(utoipa::openapi::schema::Object::new())).build()
            } else {
                bytes()
            };
            r.content(*media_type, content)
        });
        // A range of any file is bytes, a JSON one's too.
        let range =
            MEDIA_TYPES.iter().fold(ResponseBuilder::new(), |r, (media_type, _)| r.content(*media_type, bytes()));
        let text = || utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String);
        ResponsesBuilder::new()
            .response("200", whole.description("the file, in its media type; `ETag` its sha256"))
            .response(
                "206",
                range.description("the byte range `Range` asked for").header(
                    "Content-Range",
                    HeaderBuilder::new().schema(text()).description(Some("`bytes START-END/SIZE`")).build(),
                ),
            )
            .response(
                "304",
                ResponseBuilder::new().description("`If-None-Match` names its ETag: the client's copy is current"),
            )
            .response(
                "416",
                ResponseBuilder::new().description("`Range` starts past its end; `Content-Range` says its size"),
            )
            .build()
            .into()
    }
}

/// Whether an `If-None-Match` list names `etag` (or is `*`): then the client's copy is
/// current. The comparison is weak (RFC 9110 13.1.2), so a proxy's `W/"…"` matches too.
fn none_match_fails(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn with_common(mut r: Response, art: &Artifact, name: &str, etag: &str) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&art.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// RFC 8187's `attr-char`s are sent as they are; every other byte is percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `inline` with the name to save as: a plain-ASCII `filename` every client reads (other
/// characters as `_`) and, for a name that needs more, its UTF-8 `filename*` (`Café.png`).
fn content_disposition(name: &str) -> String {
    let plain = |c: char| (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\';
    let ascii: String = name.chars().map(|c| if plain(c) { c } else { '_' }).collect();
    if name.chars().all(plain) {
        return format!("inline; filename=\"{ascii}\"");
    }
    let utf8 = utf8_percent_encode(name, ATTR_CHAR_ESCAPES);
    format!("inline; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
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

    #[test]
    fn if_none_match_compares_weakly() {
        let etag = "\"ab12\"";
        for current in ["\"ab12\"", "W/\"ab12\"", "\"x\", W/\"ab12\"", "*"] {
            assert!(none_match_fails(current, etag), "{current}");
        }
        assert!(!none_match_fails("\"ab1\", W/\"x\"", etag));
    }

    #[test]
    fn a_jobs_downloads_are_named_by_its_words_and_short_id() {
        let id = ulid::Ulid::from_string("01M95CZR7KQ2M4XZ8E3VQWJ6TB").expect("ulid");
        let job = |params: serde_json::Value| Job {
            id,
            owner: "local".into(),
            kind: "render".into(),
            params: params.to_string(),
            priority: 0,
            state: crate::store::records::JobState::Canceled { canceled_at: 1, reason: None },
            attempts: 0,
            first_started_at: None,
            stages: Vec::new(),
            idempotency_key: None,
            created_at: 1,
        };
        let art = |name: &str| Artifact {
            id: ulid::Ulid::new(),
            owner: "local".into(),
            job: Some(id),
            stage: None,
            name: name.into(),
            media_type: "video/mp4".into(),
            size: 0,
            sha256: String::new(),
            path: String::new(),
            created_at: 1,
        };
        let foggy = job(serde_json::json!({"script": "Foggy harbour, at dawn: Åsa waits for the boats to come in."}));
        assert_eq!(download_name(&art("film.mp4"), Some(&foggy)), "foggy-harbour-at-dawn-åsa-3VQWJ6TB.mp4");
        assert_eq!(download_name(&art("film.srt"), Some(&foggy)), "foggy-harbour-at-dawn-åsa-3VQWJ6TB.srt");
        assert_eq!(
            download_name(&art("keyframe-1.png"), Some(&foggy)),
            "foggy-harbour-at-dawn-åsa-3VQWJ6TB-keyframe-1.png"
        );
        assert_eq!(
            download_name(&art("film.mp4"), Some(&job(serde_json::json!({"script": "🎬"})))),
            "render-3VQWJ6TB.mp4"
        );
        assert_eq!(download_name(&art("photo.png"), None), "photo.png");
    }

    #[test]
    fn names_keep_their_letters_in_filename_star() {
        assert_eq!(content_disposition("frame 1.png"), "inline; filename=\"frame 1.png\"");
        assert_eq!(
            content_disposition("Café \"é\".png"),
            "inline; filename=\"Caf_ ___.png\"; filename*=UTF-8''Caf%C3%A9%20%22%C3%A9%22.png"
        );
    }
}
