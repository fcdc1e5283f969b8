//! Request extractors (JSON body, query string, raw body) whose refusals use the API's error
//! shape and a person's words: which field, what it takes (from the same schema the OpenAPI
//! document shows: "a whole number from 8 to 2048"), and what came instead — never a Rust
//! type name (`expected u32`). The OpenAI and ComfyUI routes read their bodies through the
//! same functions and only put the answer in their own shapes.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::{IntoParams, PartialSchema};

use super::AppState;
use super::error::ApiError;
use crate::config::LimitsConfig;
use crate::disk::human_bytes;

mod words;

use words::{in_words, not_an_object, property_at, query_value, value_at};

/// For `#[serde(skip_serializing_if = "super::json::never")]`: a request field (`priority`)
/// that never goes into the job's params. Plain `skip_serializing` would also drop it from
/// the OpenAPI document, which then hid `priority` from every generation route.
pub fn never<T>(_: &T) -> bool {
    true
}

/// The request body's bytes, or 413 `body_too_large` saying how large it was and the limit.
pub struct ApiBytes(pub Bytes);

impl FromRequest<AppState> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let sent = content_length(req.headers());
        let files = req.extensions().get::<FormFiles>().map_or(0, |f| f.0);
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(r) => Err(body_rejection(&r, sent, &state.config.limits, files)),
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// How many files a route's form may carry, as a request extension on the routes whose body
/// limit makes room for them ([`super::upload_form::body_limit`]): a body refused there is
/// quoted that limit, not `limits.max_body_bytes` alone.
#[derive(Debug, Clone, Copy)]
pub struct FormFiles(pub usize);

/// A body that could not be read: past the limit, [`body_too_large`]; otherwise 400.
fn body_rejection(r: &BytesRejection, sent: Option<u64>, limits: &LimitsConfig, files: usize) -> ApiError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(sent, limits, files),
        status => ApiError::new(status, "unreadable_body", format!("the body could not be read: {}", r.body_text())),
    }
}

/// 413 `body_too_large`: the body's size (when it said it) against the limit the route
/// enforces: `limits.max_body_bytes`, plus `limits.max_upload_bytes` per file on a route
/// whose form carries `files` files.
pub fn body_too_large(sent: Option<u64>, limits: &LimitsConfig, files: usize) -> ApiError {
    let limit = super::upload_form::body_limit(limits, files) as u64;
    let size = match sent {
        Some(n) => format!("the body is {n} bytes ({})", human_bytes(n)),
        None => format!("the body is more than {limit} bytes"),
    };
    let body = limits.max_body_bytes as u64;
    let allowed = if files == 0 {
        format!(
            "limits.max_body_bytes is {limit} ({}): send less, or ask whoever runs the box to raise it",
            human_bytes(limit)
        )
    } else {
        let upload = limits.max_upload_bytes as u64;
        format!(
            "this route takes {limit} bytes ({}): limits.max_body_bytes {body} ({}) plus limits.max_upload_bytes \
             {upload} ({}) for each of its {files} files; send less, or ask whoever runs the box to raise them",
            human_bytes(limit),
            human_bytes(body),
            human_bytes(upload)
        )
    };
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("{size}; {allowed}"))
}

/// Like `axum::Json`, but malformed, oversized or mistyped bodies become `ApiError`s in
/// words, naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + PartialSchema> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        Ok(Self(read_json(&bytes)?))
    }
}

/// Whether a request says its body is JSON (`application/json`, or a `+json` type).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// [`ApiJson`] for bodies whose every field is optional (`POST /api/v1/gc`): no body (an
/// empty one, whatever its Content-Type) is the defaults, as `curl -X POST URL` sends it (it
/// was a 415); a body that is there is read as JSON with `ApiJson`'s errors.
pub struct ApiJsonOrDefault<T>(pub T);

impl<T: DeserializeOwned + PartialSchema + Default> FromRequest<AppState> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // A body sent without saying its type is taken as the JSON this route reads.
        let typed = req.headers().contains_key(header::CONTENT_TYPE);
        let json = is_json(req.headers());
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        if typed && !json && !bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json, or no body",
            ));
        }
        Ok(Self(read_json_or_default(&bytes)?))
    }
}

/// [`read_json`] for a body whose every field is optional: none, as `curl -X POST URL` sends
/// it, is the defaults. Only whitespace is a body that is not JSON, refused as any other.
pub fn read_json_or_default<T: DeserializeOwned + PartialSchema + Default>(body: &[u8]) -> Result<T, Unreadable> {
    if body.is_empty() { Ok(T::default()) } else { read_json(body) }
}

/// Like `axum::extract::Query`, but a mistyped or missing parameter becomes an `ApiError`
/// naming it and what it takes (`limit=abc` → 400 `invalid_query`, field `limit`: "must be
/// a whole number from 1 to 500; got abc"), not a plain-text 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection::<T>(&rejection, parts.uri.query().unwrap_or_default())),
        }
    }
}

/// A request value that could not be read, in words: `field` (none for the body as a
/// whole) and the message, which starts with the field.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub field: Option<String>,
    pub message: String,
    /// Not JSON at all (a syntax error), rather than JSON of the wrong shape.
    pub malformed: bool,
}

impl From<Unreadable> for ApiError {
    fn from(u: Unreadable) -> Self {
        let code = if u.malformed { "malformed_json" } else { "invalid_body" };
        ApiError { field: u.field, ..ApiError::new(StatusCode::BAD_REQUEST, code, u.message) }
    }
}

/// Reads a JSON body (whatever its content type) as `T`, refusing it in words taken from
/// `T`'s schema.
pub fn read_json<T: DeserializeOwned + PartialSchema>(body: &[u8]) -> Result<T, Unreadable> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| (e.path().to_string(), e.into_inner()));
    // Like `serde_json::from_slice`: nothing but whitespace may follow the value.
    let parsed = parsed.and_then(|v| de.end().map(|()| v).map_err(|e| (".".to_string(), e)));
    // serde reads a struct from a list too, its fields in order (`[true]` is `{"dry_run": true}`
    // to gc); a body that is not the object the schema asks for is the wrong shape as a whole.
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let schema = || serde_json::to_value(T::schema()).unwrap_or_default();
    let not_object = |schema: &Value| schema["type"] == "object" && first != Some(b'{');
    if parsed.is_ok() && first != Some(b'{') && not_object(&schema()) {
        return Err(Unreadable { field: None, message: not_an_object(&schema(), first), malformed: false });
    }
    parsed.map_err(|(path, e)| {
        if e.is_syntax() || e.is_eof() {
            return Unreadable { field: None, message: format!("the body is not valid JSON: {e}"), malformed: true };
        }
        let schema = schema();
        let text = e.to_string();
        if not_object(&schema) {
            return Unreadable { field: None, message: not_an_object(&schema, first), malformed: false };
        }
        let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(t, _)| t);
        let field = (path != ".").then_some(path);
        let property = field.as_deref().map_or(Value::Null, |f| property_at(&schema, f));
        // What came, where serde's text leaves it out: a value none of a choice's forms reads.
        let sent =
            text.starts_with("data did not match any variant").then(|| serde_json::from_slice::<Value>(body).ok());
        let raw = field.as_deref().zip(sent.flatten()).and_then(|(f, v)| value_at(&v, f).map(Value::to_string));
        let (field, message) = in_words(field, text, &property, raw.as_deref(), &schema);
        Unreadable { field, message, malformed: false }
    })
}

fn query_rejection<T: IntoParams>(r: &QueryRejection, query: &str) -> ApiError {
    let text = r.body_text();
    let detail = text.split_once("query string: ").map_or(text.as_str(), |(_, d)| d);
    // A wrongly typed value comes with its parameter first (`limit: invalid digit …`).
    let (field, detail) = match detail.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains([' ', '`']) => (Some(path.to_string()), rest),
        _ => (None, detail),
    };
    let params = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query));
    let schema_of = |name: &str| {
        let p = params.iter().find(|p| p.name == name);
        p.and_then(|p| serde_json::to_value(&p.schema).ok()).unwrap_or_default()
    };
    let property = field.as_deref().map(schema_of).unwrap_or_default();
    let raw = field.as_deref().and_then(|f| query_value(query, f)).map(|v| format!("{v:?}"));
    let (field, message) = in_words(field, detail, &property, raw.as_deref(), &Value::Null);
    ApiError { field, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message) }
}

#[cfg(test)]
mod tests {
    use super::words::path_parts;
    use super::*;

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Picture {
        #[schema(minimum = 8, maximum = 2048, multiple_of = 8)]
        width: Option<u32>,
        seed: Option<u64>,
        prompt: String,
    }

    fn refusal(body: &str) -> Unreadable {
        read_json::<Picture>(body.as_bytes()).expect_err("refused")
    }

    #[test]
    fn a_mistyped_value_is_said_in_words_with_the_schemas_range() {
        let u = refusal(r#"{"prompt":"x","width":-64}"#);
        assert_eq!(u.field.as_deref(), Some("width"));
        assert_eq!(u.message, "width: must be a whole number from 8 to 2048, a multiple of 8; got -64");
        let u = refusal(r#"{"prompt":"x","seed":"lucky"}"#);
        assert_eq!(u.message, r#"seed: must be a whole number, 0 or more; got "lucky""#);
        assert_eq!(refusal(r#"{"width":64}"#).message, "prompt: is required");
        let u = refusal(r#"{"prompt":"x","pitch":2}"#);
        assert_eq!(
            (u.field.as_deref(), u.message.as_str()),
            (Some("pitch"), "pitch: is not a field of this request; it takes width, seed, prompt")
        );
        let u = refusal("[]");
        assert_eq!(u.field, None);
        assert!(
            u.message.starts_with("the body must be a JSON object of this request's fields (")
                && u.message.ends_with("with prompt; got a list"),
            "{}",
            u.message
        );
        let u = refusal("{nope");
        assert!(u.malformed && u.message.starts_with("the body is not valid JSON: "), "{}", u.message);
        for u in [refusal(r#"{"prompt":"x","width":-64}"#), refusal("[]")] {
            assert!(!u.message.contains("u32") && !u.message.contains("struct"), "{}", u.message);
        }
    }

    #[test]
    fn a_nested_value_is_said_in_the_same_words_from_its_own_schema() {
        #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
        #[allow(dead_code)]
        struct Sitting {
            face_box: Option<[u32; 4]>,
            voice: Option<crate::api::openai::speech::VoiceChoice>,
        }
        let refusal = |body: &str| read_json::<Sitting>(body.as_bytes()).expect_err("refused");
        let u = refusal(r#"{"face_box":[1,2]}"#);
        assert_eq!(
            (u.field.as_deref(), u.message.as_str()),
            (Some("face_box"), "face_box: must be a list of 4 items, each a whole number, 0 or more; got 2")
        );
        let u = refusal(r#"{"face_box":"x"}"#);
        assert_eq!(u.message, r#"face_box: must be a list, each item a whole number, 0 or more; got "x""#);
        assert_eq!(
            refusal(r#"{"face_box":[0,-1,2,2]}"#).message,
            "face_box[1]: must be a whole number, 0 or more; got -1"
        );
        let u = refusal(r#"{"voice":5}"#);
        assert_eq!(
            (u.field.as_deref(), u.message.as_str()),
            (Some("voice"), "voice: must be text or an object with id; got 5")
        );
        assert_eq!(path_parts("presenter.face_box[0]").collect::<Vec<_>>(), [Ok("presenter"), Ok("face_box"), Err(0)]);
    }

    #[test]
    fn a_query_value_is_read_back_as_sent() {
        assert_eq!(query_value("a=1&limit=-1&b", "limit").as_deref(), Some("-1"));
        assert_eq!(query_value("state=x%20y+z", "state").as_deref(), Some("x y z"));
        assert_eq!(query_value("a=1", "limit"), None);
    }
}
