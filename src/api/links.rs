//! Links to one artifact that work without a key for a while, as OpenAI's image URLs do:
//! `/api/v1/artifacts/ID?expires=UNIX&sig=HEX`, where `sig` is the HMAC-SHA256 of the id
//! and the expiry under a secret the box makes once and keeps in its data dir ([`KEY_FILE`],
//! readable by the daemon's user only). The OpenAI image routes answer
//! `response_format: "url"` with one, so an `<img src>`, `requests.get(url)` or a chat UI
//! fetches the picture with no key. A link opens that one artifact's bytes and nothing
//! else (no metadata, no listing, no other id), until it expires
//! (`openai.image_url_lifetime_s`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use ring::hmac;
use ulid::Ulid;

use super::artifacts::visible_artifact;
use super::auth::Caller;
use super::{ApiError, AppState};
use crate::store::records::Artifact;

/// The link secret's file in the data dir.
pub const KEY_FILE: &str = "link.key";

/// Where artifact bytes are served; a link opens `PREFIX{id}` only.
const PREFIX: &str = "/api/v1/artifacts/";

/// The shortest secret read back as whole: a shorter file is what a crash while it was
/// first written leaves (no link was signed with it yet), and is made again.
const MIN_SECRET_LEN: usize = 32;

/// Signs and checks artifact links with the box's secret.
pub struct Links {
    key: hmac::Key,
}

/// A request a valid link lets through: it may read the bytes of this artifact only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted(pub Ulid);

impl Links {
    /// The data dir's link secret, made on first start. One that cannot be read or written
    /// is replaced by one kept in memory (logged), so links work until the daemon restarts.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(KEY_FILE);
        let secret = load_or_create(&path).unwrap_or_else(|e| {
            tracing::error!(
                "cannot keep the link secret at {}: {e}; OpenAI image links stop working when the daemon restarts",
                path.display()
            );
            hex::encode(rand::random::<[u8; 32]>())
        });
        Self::with_secret(secret.as_bytes())
    }

    /// Links signed with `secret`.
    pub fn with_secret(secret: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// What is signed for a link to `id` until `expires`.
    fn message(id: Ulid, expires: u64) -> String {
        format!("reelbox artifact link\n{id}\n{expires}")
    }

    /// The path and query of a link to artifact `id` that works for `lifetime_s` from now.
    pub fn path_for(&self, id: Ulid, lifetime_s: u64) -> String {
        self.path(id, now_s().saturating_add(lifetime_s))
    }

    /// The path and query of a link to artifact `id` that works until `expires` (Unix seconds).
    fn path(&self, id: Ulid, expires: u64) -> String {
        let sig = hmac::sign(&self.key, Self::message(id, expires).as_bytes());
        format!("{PREFIX}{id}?expires={expires}&sig={}", hex::encode(sig.as_ref()))
    }

    /// What a request says about links: `None` when it carries none (it is authenticated
    /// as any other), else the artifact its link opens or why the link is refused. Only a
    /// `GET`/`HEAD` of an artifact's bytes carrying `sig` or `expires` is a link.
    pub fn granted(&self, method: &Method, uri: &Uri) -> Option<Result<Granted, ApiError>> {
        self.granted_at(method, uri, now_s())
    }

    /// [`Links::granted`] at `now_s`.
    fn granted_at(&self, method: &Method, uri: &Uri, now_s: u64) -> Option<Result<Granted, ApiError>> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let raw_id = uri.path().strip_prefix(PREFIX).filter(|rest| !rest.contains('/'))?;
        let param =
            |name: &str| uri.query()?.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')));
        let (expires, sig) = (param("expires"), param("sig"));
        if expires.is_none() && sig.is_none() {
            return None;
        }
        Some(self.check(raw_id, expires, sig, now_s))
    }

    fn check(&self, raw_id: &str, expires: Option<&str>, sig: Option<&str>, now_s: u64) -> Result<Granted, ApiError> {
        let altered = || {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_link",
                "this link is incomplete or was altered: it opens nothing (ask for the picture again, or send a key)",
            )
        };
        let id = Ulid::from_string(raw_id).map_err(|_| altered())?;
        let expires = expires.and_then(|e| e.parse::<u64>().ok()).ok_or_else(altered)?;
        let sig = sig.and_then(|s| hex::decode(s).ok()).ok_or_else(altered)?;
        // Constant time: how long a refusal takes says nothing about how much of a guess matched.
        hmac::verify(&self.key, Self::message(id, expires).as_bytes(), &sig).map_err(|_| altered())?;
        if now_s > expires {
            let at = super::views::time(i64::try_from(expires).unwrap_or(i64::MAX / 1000).saturating_mul(1000));
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "link_expired",
                format!(
                    "this link to artifact {id} expired at {at} (links last openai.image_url_lifetime_s): ask for the picture again, or send a key"
                ),
            ));
        }
        Ok(Granted(id))
    }
}

/// Unix seconds now.
fn now_s() -> u64 {
    u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0)
}

/// Who reads an artifact's bytes: a caller, or a link to that one artifact.
pub enum Reader {
    Caller(Caller),
    Link(Granted),
}

impl Reader {
    /// The artifact `raw` names, when this reader may read it (404 otherwise, as for a
    /// caller; a link opens only the id it was made for).
    pub fn artifact(&self, state: &AppState, raw: &str) -> Result<Artifact, ApiError> {
        match self {
            Reader::Caller(caller) => visible_artifact(state, caller, raw),
            Reader::Link(Granted(id)) => match state.store.artifact(*id)? {
                Some(a) if a.id.to_string() == raw => Ok(a),
                _ => Err(ApiError::not_found("artifact", raw)),
            },
        }
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(granted) = parts.extensions.get::<Granted>() {
            return Ok(Reader::Link(*granted));
        }
        Ok(Reader::Caller(Caller::from_request_parts(parts, state).await?))
    }
}

/// The secret at `path`, or a new one written there (owner-only, synced) when there is none.
fn load_or_create(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_LEN => return Ok(s.trim().to_string()),
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The API keys' kind of secret: 32 bytes from the OS.
    let secret = crate::store::keys::new_secret().map_err(std::io::Error::other)?;
    // Made owner-only from the start, never readable by others while it is written.
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        crate::durable::sync_dir(dir);
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn a_link_opens_its_artifact_until_it_expires_and_nothing_else() {
        let links = Links::with_secret(b"0123456789abcdef0123456789abcdef");
        let id = Ulid::from_string("01J9ZQ3V6T8X4M2N5P7R9S1T3V").expect("ulid");
        let path = links.path(id, 1_000);
        assert_eq!(links.granted_at(&Method::GET, &uri(&path), 999).map(|r| r.ok()), Some(Some(Granted(id))));
        assert_eq!(links.granted_at(&Method::HEAD, &uri(&path), 1_000).map(|r| r.ok()), Some(Some(Granted(id))));
        let code = |p: &str, now| links.granted_at(&Method::GET, &uri(p), now).map(|r| r.err().map(|e| e.code));
        assert_eq!(code(&path, 1_001), Some(Some("link_expired")));
        assert_eq!(code(&path.replace("expires=1000", "expires=9000"), 999), Some(Some("bad_link")));
        let other = Ulid::from_string("01J9ZQ3V6T8X4M2N5P7R9S1T3W").expect("ulid");
        assert_eq!(code(&path.replace(&id.to_string(), &other.to_string()), 999), Some(Some("bad_link")));
        assert_eq!(code(&format!("{PREFIX}{id}?expires=1000"), 999), Some(Some("bad_link")));
        // Not links: other routes and methods, and requests without its parameters.
        assert_eq!(code(&format!("{PREFIX}{id}"), 999), None);
        assert_eq!(code(&path.replace(&id.to_string(), &format!("{id}/meta")), 999), None);
        assert!(links.granted_at(&Method::DELETE, &uri(&path), 999).is_none());
        let another_box = Links::with_secret(b"another box's secret, 32 bytes.");
        assert_eq!(
            another_box.granted_at(&Method::GET, &uri(&path), 999).map(|r| r.err().map(|e| e.code)),
            Some(Some("bad_link"))
        );
    }

    #[test]
    fn the_secret_is_made_once_and_kept_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        let first = load_or_create(&path).expect("made");
        assert_eq!(load_or_create(&path).expect("read back"), first);
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "short").expect("a torn first write");
        assert_ne!(load_or_create(&path).expect("made again"), first);
    }
}
