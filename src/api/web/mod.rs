//! The web studio at `/`: static files embedded in the binary (no build step, no Node),
//! served with their content type, a strict Content-Security-Policy and an ETag of their
//! content, one more written from the library's own tables ([`stops`]), and the browser
//! login ([`session`]). The page itself only calls the API's routes, same-origin.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

pub mod session;
pub mod stops;

/// One embedded file: its name under `/web/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!("../../../assets/web/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the page (`index.html` is also served at `/`).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("words.js", JS),
    asset!("choices.js", JS),
    asset!("film.js", JS),
    asset!("sentences.js", JS),
    asset!("picture.js", JS),
    asset!("refiner.js", JS),
    asset!("settings.js", JS),
    asset!("photo.js", JS),
    asset!("pick.js", JS),
    asset!("start.js", JS),
    asset!("paint.js", JS),
    asset!("speech.js", JS),
    asset!("watch.js", JS),
    asset!("library.js", JS),
    asset!("profiles.js", JS),
    asset!("box.js", JS),
    asset!("icon.svg", "image/svg+xml"),
];

/// What the page may load and run: only its own files and the API (no inline script, no
/// other origin, no framing); media and pictures also from `blob:` (local previews).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
     media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// One file as served: an embedded one or one the daemon writes, with its strong ETag.
struct Served {
    name: &'static str,
    content_type: &'static str,
    bytes: Bytes,
    etag: String,
}

/// [`ASSETS`] and the written `stops.js`, with their ETags, made once.
fn served() -> &'static [Served] {
    static FILES: OnceLock<Vec<Served>> = OnceLock::new();
    FILES.get_or_init(|| {
        let written = ("stops.js", JS, Bytes::from(stops::module()));
        ASSETS
            .iter()
            .map(|a| (a.name, a.content_type, Bytes::from_static(a.bytes)))
            .chain([written])
            .map(|(name, content_type, bytes)| {
                let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..20]);
                Served { name, content_type, bytes, etag }
            })
            .collect()
    })
}

/// Total size of the page's files, bytes (the studio keeps it under 200 KB).
pub fn page_bytes() -> usize {
    served().iter().map(|f| f.bytes.len()).sum()
}

/// `GET /`: the studio page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /web/{file}`: the page's scripts, styles and icon.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = served().iter().find(|f| f.name == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no_route", format!("no web file {name:?}")).into_response();
    };
    let etag = &file.etag;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { file.bytes.clone().into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    // Revalidate every time: a new daemon version must never run with an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_stays_small_and_every_file_it_names_is_embedded() {
        assert!(page_bytes() < 200 * 1024, "the studio weighs {} bytes", page_bytes());
        let html = std::str::from_utf8(ASSETS[0].bytes).expect("utf-8");
        for a in &ASSETS[1..] {
            if a.name.ends_with(".js") && a.name != "app.js" {
                continue; // imported by app.js, not named in the page
            }
            assert!(html.contains(&format!("/web/{}", a.name)), "index.html does not load {}", a.name);
        }
        assert!(!html.contains("<script>") && !html.contains(" style="), "inline code breaks the CSP");
    }

    #[test]
    fn a_matching_etag_answers_not_modified() {
        let first = serve("style.css", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("style.css", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
