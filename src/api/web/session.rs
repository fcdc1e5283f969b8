//! Browser sessions: `POST /api/v1/session` trades an API key for a random session token in
//! an `HttpOnly`, `SameSite=Strict` cookie, so the page never holds the key (nothing in
//! `localStorage` for a script to steal). Sessions live in memory: a daemon restart logs
//! browsers out, which costs one login and keeps the store free of short-lived secrets.
//!
//! The cookie is a credential a browser attaches by itself, so [`super::super::auth`]
//! accepts it only on same-origin requests (see [`cookie_allowed`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::api::auth::Caller;
use crate::api::json::ApiJson;
use crate::api::{ApiError, AppState};
use crate::store::keys::{hash_secret, new_secret};

/// Name of the session cookie.
pub const COOKIE: &str = "reelbox_session";

/// How long a session lasts after login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Most sessions kept at once; past it the oldest is dropped (bounded, like every table).
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Session {
    key: Ulid,
    expires: Instant,
}

/// Open sessions by the sha256 of their token (a memory dump shows no usable token).
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding it cannot leave the map half-written: every change is one call.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `key` and returns its token (shown once, in the cookie).
    pub fn open(&self, key: Ulid) -> Result<String, crate::store::StoreError> {
        let token = new_secret()?;
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        open.insert(hash_secret(&token), Session { key, expires: now + LIFETIME });
        Ok(token)
    }

    /// The key a live session token stands for.
    pub fn key_of(&self, token: &str) -> Option<Ulid> {
        let hash = hash_secret(token);
        let mut open = self.lock();
        match open.get(&hash) {
            Some(s) if s.expires > Instant::now() => Some(s.key),
            Some(_) => {
                open.remove(&hash);
                None
            }
            None => None,
        }
    }

    /// Ends a session; true when it was open.
    pub fn close(&self, token: &str) -> bool {
        self.lock().remove(&hash_secret(token)).is_some()
    }

    /// Ends every session of a key (the key was revoked).
    pub fn close_key(&self, key: Ulid) {
        self.lock().retain(|_, s| s.key != key);
    }
}

/// The session token a request's `Cookie` header carries, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
        .filter(|t| !t.is_empty())
}

/// Whether a cookie may authenticate this request: it must come from the daemon's own page.
/// A state-changing request must name that page in `Origin` (browsers always send it on
/// them); a read that says where it came from (`Sec-Fetch-Site`) must be same-origin or a
/// typed-in navigation. `SameSite=Strict` already keeps other sites' requests cookieless;
/// this also refuses origins `server.allowed_origins` lets through to key-carrying clients.
pub fn cookie_allowed(state: &AppState, parts: &Parts) -> bool {
    let host = crate::api::origin::request_host(&parts.uri, &parts.headers);
    let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let safe = matches!(parts.method, Method::GET | Method::HEAD);
    match origin {
        Some(o) => state.guard.is_same_origin(o, host),
        None if !safe => false,
        None => parts
            .headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|s| matches!(s, "same-origin" | "none")),
    }
}

/// Body of `POST /api/v1/session`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// An API key (`rb_…`); it is checked and never stored by the browser.
    #[schema(pattern = "\\S")]
    pub key: String,
}

/// Who the page is signed in as.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BrowserSession {
    /// Owner name the caller's records are filed under.
    pub owner: String,
    /// How the page names the caller: `key "laptop"`, `local`, `user alice`.
    pub label: String,
    /// Admins see everyone's work and may pull models.
    pub admin: bool,
    /// Whether the daemon needs keys (false: open to this machine, no login).
    pub keys_required: bool,
    /// `limits.max_prompt_chars`: the most characters a prompt, script or spoken text may
    /// have (the page counts them as they are typed).
    pub max_prompt_chars: usize,
    /// `limits.max_upload_bytes`: the largest file the box takes (the page refuses a larger
    /// one before sending it).
    #[serde(default)]
    pub max_upload_bytes: usize,
}

impl BrowserSession {
    fn of(state: &AppState, c: &Caller) -> Self {
        Self {
            owner: c.owner.clone(),
            label: c.label.clone(),
            admin: c.admin,
            keys_required: !state.gate.keyless(),
            max_prompt_chars: state.config.limits.max_prompt_chars,
            max_upload_bytes: state.config.limits.max_upload_bytes,
        }
    }
}

/// The `Set-Cookie` value for `token` (`None`: expire the cookie now).
fn set_cookie(state: &AppState, token: Option<&str>) -> Result<HeaderValue, ApiError> {
    let secure = if state.config.tls.scheme() == "https" { "; Secure" } else { "" };
    let (value, age) = match token {
        Some(t) => (t, LIFETIME.as_secs()),
        None => ("", 0),
    };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}"))
        .map_err(|e| ApiError::internal(format!("cannot write the session cookie: {e}")))
}

/// Log in with an API key: sets the session cookie.
#[utoipa::path(post, path = "/api/v1/session", security(()), request_body = LoginRequest,
    responses((status = 200, description = "signed in; `Set-Cookie` carries the session", body = BrowserSession),
        (status = 401, description = "the key is not valid (field `key`)", body = crate::api::error::ErrorBody)))]
pub async fn login(State(state): State<AppState>, ApiJson(req): ApiJson<LoginRequest>) -> Result<Response, ApiError> {
    let key = req.key.trim();
    if key.is_empty() {
        return Err(ApiError::field("key", "is required"));
    }
    let hash = hash_secret(key);
    let Some(record) = state.store.key_by_hash(&hash)? else {
        let message =
            crate::api::keys::refused_key_message(&state.store, &hash, "this key is not valid (mistyped or revoked)");
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_key",
            ..ApiError::field("key", message)
        });
    };
    let token = state.gate.sessions.open(record.id)?;
    let caller = Caller::from_key(&record);
    let mut resp = Json(BrowserSession::of(&state, &caller)).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, Some(&token))?);
    Ok(resp)
}

/// Who is signed in (401 when nobody: the page then shows its login form).
#[utoipa::path(get, path = "/api/v1/session", operation_id = "show_session",
    responses((status = 200, body = BrowserSession), (status = 401, body = crate::api::error::ErrorBody)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> Json<BrowserSession> {
    Json(BrowserSession::of(&state, &caller))
}

/// Log out: the session ends on the daemon and the cookie is cleared.
#[utoipa::path(delete, path = "/api/v1/session", security(()), responses((status = 204, description = "signed out")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = cookie_token(&headers) {
        state.gate.sessions.close(&token);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, None)?);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_stands_for_its_key_until_closed() {
        let s = Sessions::default();
        let key = Ulid::new();
        let token = s.open(key).expect("open");
        assert_eq!(s.key_of(&token), Some(key));
        assert_eq!(s.key_of("rb_guess"), None);
        assert!(s.close(&token));
        assert_eq!(s.key_of(&token), None, "closed sessions are gone");
        let again = s.open(key).expect("open");
        s.close_key(key);
        assert_eq!(s.key_of(&again), None, "revoking the key ends its sessions");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; reelbox_session=rb_x; b=2"));
        assert_eq!(cookie_token(&h).as_deref(), Some("rb_x"));
        h.insert(header::COOKIE, HeaderValue::from_static("reelbox_sessionx=1; reelbox_session="));
        assert_eq!(cookie_token(&h), None);
    }
}
