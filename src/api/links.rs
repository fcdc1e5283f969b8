//! Links to one artifact that work without a key for a while, as OpenAI's image URLs do:
//! `/api/v1/artifacts/ID?expires=UNIX&key=KEY_ID&sig=HEX`, where `sig` is the HMAC-SHA256 of
//! the id, the expiry and the id of the key that asked for the link, under a secret the box
//! makes once and keeps in its data dir ([`KEY_FILE`], readable by the daemon's user only).
//! The OpenAI image routes answer `response_format: "url"` with one, so an `<img src>`,
//! `requests.get(url)` or a chat UI fetches the picture with no key. A link opens that one
//! artifact's bytes and nothing else (no metadata, no listing, no other id), until it
//! expires (`openai.image_url_lifetime_s`) or the key that shared it is revoked; its fetches
//! count against that key's request rate ([`admit`]). A link made without a key (a keyless
//! box's local admin, a proxy user) carries no `key=` and is counted per fetching address.
//! Links of reelbox before keys were signed in open nothing (`bad_link`).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use ring::hmac;
use ulid::Ulid;

use super::artifacts::visible_artifact;
use super::auth::Caller;
use super::limits::Metered;
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

/// A request a valid link lets through: it may read the bytes of artifact `id` only, while
/// `key` (the key that shared it, when one did) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub id: Ulid,
    pub key: Option<Ulid>,
}

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

    /// What is signed for a link to `id` until `expires`, shared by `key`. Worded apart from
    /// the links before keys were signed in, so none of those verifies as a keyless link.
    fn message(id: Ulid, expires: u64, key: Option<Ulid>) -> String {
        let key = key.map(|k| k.to_string()).unwrap_or_default();
        format!("reelbox artifact link, shared by key\n{id}\n{expires}\n{key}")
    }

    /// The path and query of a link to artifact `id` that works for `lifetime_s` from now,
    /// while `key` (the one that asks for it; `None` without one) is not revoked.
    pub fn path_for(&self, id: Ulid, key: Option<Ulid>, lifetime_s: u64) -> String {
        self.path(id, now_s().saturating_add(lifetime_s), key)
    }

    /// The path and query of a link to artifact `id` that works until `expires` (Unix seconds).
    fn path(&self, id: Ulid, expires: u64, key: Option<Ulid>) -> String {
        let sig = hmac::sign(&self.key, Self::message(id, expires, key).as_bytes());
        let key = key.map(|k| format!("&key={k}")).unwrap_or_default();
        format!("{PREFIX}{id}?expires={expires}{key}&sig={}", hex::encode(sig.as_ref()))
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
        Some(self.check(raw_id, expires, param("key"), sig, now_s))
    }

    fn check(
        &self,
        raw_id: &str,
        expires: Option<&str>,
        key: Option<&str>,
        sig: Option<&str>,
        now_s: u64,
    ) -> Result<Granted, ApiError> {
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
        let key = key.map(|k| Ulid::from_string(k).map_err(|_| altered())).transpose()?;
        // Constant time: how long a refusal takes says nothing about how much of a guess matched.
        hmac::verify(&self.key, Self::message(id, expires, key).as_bytes(), &sig).map_err(|_| altered())?;
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
        Ok(Granted { id, key })
    }
}

/// Lets a valid link's fetch through, or says why not: the key that shared it is revoked
/// (403 `link_revoked`), or its fetches came faster than `limits.requests_per_second`
/// (429, as any request). Counted against the sharing key's own bucket, so a link posted
/// anywhere costs the box no more than its key could ask for itself, however many
/// addresses fetch it; a link shared by no key is counted per fetching address.
pub fn admit(state: &AppState, granted: Granted, peer: Option<IpAddr>) -> Result<(), ApiError> {
    let fetch = match granted.key {
        Some(id) => match state.store.key(id)? {
            Some(k) if k.revoked_at.is_none() => LinkFetch {
                owner: id.to_string(),
                label: format!("key {:?} (with the links it shared)", k.name),
                local: false,
            },
            revoked => return Err(revoked_link(granted.id, revoked.as_ref())),
        },
        None => {
            let ip = peer.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
            // The keyless box's local admin, whom the rate never limits, could read the bytes anyway.
            let local = state.gate.keyless() && peer.is_some_and(|p| p.is_loopback());
            LinkFetch { owner: format!("link fetches from {ip}"), label: format!("this address ({ip})"), local }
        }
    };
    state.gate.rate.check(&fetch, &state.config.limits)
}

/// The refusal of a link to `id` whose sharing key `k` is revoked (or gone).
fn revoked_link(id: Ulid, k: Option<&crate::store::records::ApiKey>) -> ApiError {
    let who = match k {
        Some(k) => {
            let when = k.revoked_at.map(super::views::time).unwrap_or_default();
            format!("({:?}) was revoked at {when}{}", k.name, super::keys::by_whom(k.revoked_by.as_deref()))
        }
        None => "no longer exists".to_string(),
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "link_revoked",
        format!(
            "the key that shared this link {who}, so it no longer opens artifact {id}: ask for the picture again with a key that works"
        ),
    )
}

/// Whom a link's fetch is counted against.
struct LinkFetch {
    owner: String,
    label: String,
    local: bool,
}

impl Metered for LinkFetch {
    fn owner(&self) -> &str {
        &self.owner
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn is_local(&self) -> bool {
        self.local
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
            Reader::Link(Granted { id, .. }) => match state.store.artifact(*id)? {
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
        let key = Ulid::from_string("01J9ZQ3V6T8X4M2N5P7R9S1T3K").expect("ulid");
        let path = links.path(id, 1_000, Some(key));
        let granted = Granted { id, key: Some(key) };
        assert_eq!(links.granted_at(&Method::GET, &uri(&path), 999).map(|r| r.ok()), Some(Some(granted)));
        assert_eq!(links.granted_at(&Method::HEAD, &uri(&path), 1_000).map(|r| r.ok()), Some(Some(granted)));
        let code = |p: &str, now| links.granted_at(&Method::GET, &uri(p), now).map(|r| r.err().map(|e| e.code));
        assert_eq!(code(&path, 1_001), Some(Some("link_expired")));
        assert_eq!(code(&path.replace("expires=1000", "expires=9000"), 999), Some(Some("bad_link")));
        let other = Ulid::from_string("01J9ZQ3V6T8X4M2N5P7R9S1T3W").expect("ulid");
        assert_eq!(code(&path.replace(&id.to_string(), &other.to_string()), 999), Some(Some("bad_link")));
        assert_eq!(code(&format!("{PREFIX}{id}?expires=1000"), 999), Some(Some("bad_link")));
        // The key that shared it is signed in: another key's, or none, opens nothing.
        assert_eq!(code(&path.replace(&key.to_string(), &other.to_string()), 999), Some(Some("bad_link")));
        assert_eq!(code(&path.replace(&format!("&key={key}"), ""), 999), Some(Some("bad_link")));
        assert_eq!(code(&path.replace(&key.to_string(), "nope"), 999), Some(Some("bad_link")));
        // As links were signed before keys were: opens nothing.
        let before = hmac::sign(&links.key, format!("reelbox artifact link\n{id}\n1000").as_bytes());
        let before = format!("{PREFIX}{id}?expires=1000&sig={}", hex::encode(before.as_ref()));
        assert_eq!(code(&before, 999), Some(Some("bad_link")));
        // A link shared by no key (a keyless box) carries none.
        let keyless = links.path(id, 1_000, None);
        assert!(!keyless.contains("key="), "{keyless}");
        assert_eq!(
            links.granted_at(&Method::GET, &uri(&keyless), 999).map(|r| r.ok()),
            Some(Some(Granted { id, key: None }))
        );
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
