//! Who is calling. One middleware ([`require_caller`]) covers the whole router except the
//! probes; the [`Caller`] extractor reads what it found (and authenticates by itself on a
//! route mounted outside the layer, so no route can forget).
//!
//! Callers, in order of precedence:
//! - trusted-proxy mode: the user named in `auth.user_header`, only from `trusted_proxies`
//!   (from any other peer the header is a 401: someone is trying to spoof it);
//! - an API key (`Authorization: Bearer`, or the password of `Authorization: Basic`
//!   credentials as A1111's clients send them, or `?token=` on WebSocket/SSE requests,
//!   whose browser clients cannot set headers);
//! - the web studio's session cookie ([`super::web::session`]), from the daemon's own page only;
//! - while no key exists, a loopback peer is the local admin (like Ollama): that is how
//!   the first key gets created. A loopback request carrying proxy headers (`Forwarded`,
//!   `X-Forwarded-For`, `X-Real-IP`) from an untrusted peer is not: a reverse proxy on the
//!   same host would otherwise make everyone it forwards an admin.
//!
//! Records belong to the key's id, not its name: renaming or re-creating a key with the
//! same name never hands one client's jobs to another. Proxy users own `user:NAME`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use ulid::Ulid;

use super::family::Family;
use super::limits::{RateLimiter, StreamSlots};
use super::{ApiError, AppState};
use crate::config::{AuthMode, Config};
use crate::store::keys::hash_secret;
use crate::store::records::{ApiKey, Scope};
use crate::store::{Store, StoreError};

/// The owner of records made while the API is open (no keys, loopback).
pub const LOCAL_OWNER: &str = "local";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Owner name records are filed under: a key id, `user:NAME`, or `local`.
    pub owner: String,
    /// Admins see every owner's records.
    pub admin: bool,
    /// How messages name the caller: `key "laptop"`, `user alice@example.com`, `local`.
    pub label: String,
    /// The key used, when one was.
    pub key_id: Option<Ulid>,
    /// Most queued jobs this caller may have (key quota).
    pub max_queued: Option<u64>,
    /// GPU-seconds this caller may use per UTC day (key quota).
    pub gpu_seconds_per_day: Option<u64>,
    /// Most bytes of artifacts this caller may hold; uploads past it are refused.
    pub max_storage_bytes: Option<u64>,
}

impl Caller {
    /// The owner filter for listings: `None` (everything) for admins.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.admin).then(|| self.owner.clone())
    }

    /// Whether this caller may see a record owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.owner == owner
    }

    /// The local admin of an open (keyless, loopback) daemon.
    pub fn local() -> Self {
        Caller {
            owner: LOCAL_OWNER.into(),
            admin: true,
            label: LOCAL_OWNER.into(),
            key_id: None,
            max_queued: None,
            gpu_seconds_per_day: None,
            max_storage_bytes: None,
        }
    }

    /// True for the keyless local admin.
    pub fn is_local(&self) -> bool {
        self.key_id.is_none() && self.owner == LOCAL_OWNER
    }

    /// The caller an active API key stands for.
    pub fn from_key(key: &ApiKey) -> Self {
        Caller {
            owner: key.id.to_string(),
            admin: key.scope == Scope::Admin,
            label: format!("key {:?}", key.name),
            key_id: Some(key.id),
            max_queued: key.max_queued,
            gpu_seconds_per_day: key.gpu_seconds_per_day,
            max_storage_bytes: key.max_storage_bytes,
        }
    }
}

/// Authentication state shared by all requests.
pub struct Gate {
    /// Active keys, mirrored from the store (only this process writes it) so the keyless
    /// check costs no read transaction.
    active_keys: AtomicU64,
    proxies: Vec<IpNet>,
    /// Per-caller request rate.
    pub rate: RateLimiter,
    /// Open event streams.
    pub streams: Arc<StreamSlots>,
    /// The web studio's logged-in browsers.
    pub sessions: super::web::session::Sessions,
    /// Bumped whenever keys change, so open event streams can end when their key is revoked.
    pub key_changes: tokio::sync::watch::Sender<u64>,
}

impl Gate {
    /// Gate over the store's keys; unparsable proxy entries are skipped here
    /// ([`check_start`] refuses to start with them).
    pub fn new(config: &Config, store: &Store) -> Self {
        let active = store.active_key_count().unwrap_or_else(|e| {
            tracing::error!("cannot count API keys: {e}");
            // Unknown: assume keys exist, so nothing opens up by mistake.
            1
        });
        Self {
            active_keys: AtomicU64::new(active),
            proxies: config.auth.trusted_proxies.iter().filter_map(|p| parse_net(p).ok()).collect(),
            rate: RateLimiter::default(),
            streams: Arc::default(),
            sessions: Default::default(),
            key_changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Re-reads the number of active keys after a create or revoke.
    pub fn refresh(&self, store: &Store) -> Result<u64, StoreError> {
        let n = store.active_key_count()?;
        self.active_keys.store(n, Ordering::SeqCst);
        self.key_changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(n)
    }

    /// Whether no key exists (the API is open to loopback peers).
    pub fn keyless(&self) -> bool {
        self.active_keys.load(Ordering::SeqCst) == 0
    }

    fn is_proxy(&self, peer: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&peer))
    }
}

/// A trusted-proxy entry that is neither an IP address nor a CIDR block.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block")]
pub struct BadNet(pub String);

/// Parses an IP address or CIDR block (`10.0.0.0/8`, `::1`).
pub fn parse_net(s: &str) -> Result<IpNet, BadNet> {
    let s = s.trim();
    s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| BadNet(s.to_string()))
}

/// Why the daemon refuses to start with this configuration; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeStart {
    #[error("auth.trusted_proxies: {0}")]
    TrustedProxy(#[source] BadNet),
    #[error("auth.mode = \"trusted-proxy\" needs auth.trusted_proxies (the proxy's addresses)")]
    ProxyWithoutAddresses,
    #[error("tls.cert and tls.key go together: set both or neither")]
    HalfTls,
    #[error("cannot read API keys: {0}")]
    Keys(#[source] StoreError),
    #[error(
        "refusing to listen on {0} without an API key: create one with `reelbox keys create --offline --name admin --scope admin` (with the daemon stopped; as root on a packaged install), bind to 127.0.0.1, or set auth.mode = \"trusted-proxy\""
    )]
    OpenWithoutKeys(SocketAddr),
}

/// Refuses configurations that would expose the API: a non-loopback bind without keys
/// (unless a proxy authenticates), bad proxy entries, half a TLS setup.
pub fn check_start(config: &Config, store: &Store) -> Result<(), UnsafeStart> {
    for p in &config.auth.trusted_proxies {
        parse_net(p).map_err(UnsafeStart::TrustedProxy)?;
    }
    if config.auth.mode == AuthMode::TrustedProxy && config.auth.trusted_proxies.is_empty() {
        return Err(UnsafeStart::ProxyWithoutAddresses);
    }
    if config.tls.cert.is_some() != config.tls.key.is_some() {
        return Err(UnsafeStart::HalfTls);
    }
    let keys = store.active_key_count().map_err(UnsafeStart::Keys)?;
    if !config.bind.ip().is_loopback() && keys == 0 && config.auth.mode == AuthMode::Keys {
        return Err(UnsafeStart::OpenWithoutKeys(config.bind));
    }
    Ok(())
}

/// The address a request came from (its TCP peer).
fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical())
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The key of a request: the `Authorization` header's bearer token, or the password of its
/// Basic credentials (A1111 clients send `--api-auth user:password` so; any user name), or
/// `?token=` on requests that browsers cannot add headers to (WebSocket upgrades, EventSource).
fn token(parts: &Parts) -> Result<Option<String>, ApiError> {
    // An empty header is none: Open WebUI sends one to an A1111 server that takes no auth.
    if let Some(v) = parts.headers.get(header::AUTHORIZATION).filter(|v| !v.as_bytes().trim_ascii().is_empty()) {
        let v = v.to_str().map_err(|_| unauthorized("bad_authorization", "Authorization must be ASCII"))?;
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") && !rest.is_empty() {
            return basic_password(rest).map(Some);
        }
        if !scheme.eq_ignore_ascii_case("bearer") || rest.is_empty() {
            return Err(unauthorized(
                "bad_authorization",
                "send the key as `Authorization: Bearer KEY` (or as the password of Basic credentials)",
            ));
        }
        return Ok(Some(rest.to_string()));
    }
    let upgrade = parts.headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let sse = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let query_ok = upgrade || sse || parts.uri.path().ends_with("/events") || parts.uri.path().ends_with("/ws");
    if !query_ok {
        return Ok(None);
    }
    let query = parts.uri.query().unwrap_or("");
    Ok(query.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string))
}

/// The password of Basic credentials (`base64(user:password)`): the key.
fn basic_password(credentials: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let bad =
        || unauthorized("bad_authorization", "Basic credentials must be base64 of `user:KEY`, the key as the password");
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    match text.split_once(':') {
        Some((_, key)) if !key.is_empty() => Ok(key.to_string()),
        _ => Err(bad()),
    }
}

/// Works out who sent a request (see the module docs for the order).
pub fn authenticate(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
    let auth = &state.config.auth;
    let peer = peer(&parts.extensions);
    if auth.mode == AuthMode::TrustedProxy
        && let Some(user) = parts.headers.get(auth.user_header.as_str())
    {
        if !peer.is_some_and(|p| state.gate.is_proxy(p)) {
            return Err(unauthorized(
                "untrusted_proxy",
                format!("the {} header is only accepted from auth.trusted_proxies", auth.user_header),
            ));
        }
        let user = user.to_str().map_err(|_| unauthorized("bad_user_header", "the user header must be ASCII"))?;
        let user = user.trim();
        if user.is_empty() {
            return Err(unauthorized("bad_user_header", format!("the {} header is empty", auth.user_header)));
        }
        return Ok(Caller {
            owner: format!("user:{user}"),
            admin: auth.admin_users.iter().any(|a| a == user),
            label: format!("user {user}"),
            key_id: None,
            max_queued: auth.proxy_user_max_queued,
            gpu_seconds_per_day: auth.proxy_user_gpu_seconds_per_day,
            max_storage_bytes: auth.proxy_user_max_storage_bytes,
        });
    }
    // A reverse proxy on this host connects from loopback too: a request carrying proxy
    // headers is someone else's, so it is not the local admin unless the proxy is trusted.
    let loopback = peer.is_some_and(|p| p.is_loopback()) && !forwarded(&parts.headers);
    let via_proxy = peer.is_some_and(|p| state.gate.is_proxy(p));
    // Open like Ollama while no key exists: clients that always send some key (the OpenAI
    // SDKs insist on one) must not be refused for it.
    if state.gate.keyless() && loopback && !via_proxy {
        return Ok(Caller::local());
    }
    if let Some(secret) = token(parts)? {
        let hash = hash_secret(&secret);
        return match state.store.key_by_hash(&hash)? {
            Some(key) => Ok(Caller::from_key(&key)),
            None => {
                let fallback = "the API key is not valid (mistyped or revoked)";
                Err(unauthorized("invalid_key", super::keys::refused_key_message(&state.store, &hash, fallback)))
            }
        };
    }
    if let Some(caller) = session_caller(state, parts)? {
        return Ok(caller);
    }
    if state.gate.keyless() && peer.is_some_and(|p| p.is_loopback()) {
        // Say why a caller on this box is not its local admin, or the 401 looks like a bug.
        let why = if via_proxy {
            "comes from a peer in auth.trusted_proxies"
        } else {
            "carries a proxy header (Forwarded, X-Forwarded-For or X-Real-IP)"
        };
        return Err(unauthorized(
            "missing_key",
            format!(
                "this request {why}, so it is not the box's local admin: send `Authorization: Bearer KEY` (see `reelbox keys create`)"
            ),
        ));
    }
    Err(unauthorized(
        "missing_key",
        "this API needs a key: send `Authorization: Bearer KEY` (see `reelbox keys create`)",
    ))
}

/// The caller of a web studio session cookie: only on same-origin requests, only while the
/// session and its key live.
fn session_caller(state: &AppState, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    use super::web::session::{cookie_allowed, cookie_token};
    let Some(token) = cookie_token(&parts.headers) else { return Ok(None) };
    if !cookie_allowed(state, parts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin_session",
            "the session cookie is accepted only from the studio's own page (same Origin); scripts send `Authorization: Bearer KEY`",
        ));
    }
    let expired = || unauthorized("session_expired", "the session has ended; log in again with your key");
    let Some(key_id) = state.gate.sessions.key_of(&token) else { return Err(expired()) };
    match state.store.key(key_id)? {
        Some(key) if key.revoked_at.is_none() => Ok(Some(Caller::from_key(&key))),
        revoked => {
            state.gate.sessions.close_key(key_id);
            let why = revoked.map(|k| super::keys::revoked_message(&k));
            Err(why
                .map_or_else(expired, |why| unauthorized("session_expired", format!("the session has ended: {why}"))))
        }
    }
}

/// Whether a request says it was forwarded for someone else.
fn forwarded(headers: &axum::http::HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h))
}

/// Requests that answer without a key: the probes, the studio's files (its login form must
/// load), logging in and out.
fn is_public(state: &AppState, method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    matches!(path, "/healthz" | "/readyz" | "/")
        || path.starts_with("/web/")
        || (path == "/api/v1/session" && (method == Method::POST || method == Method::DELETE))
        || (path == "/metrics" && state.config.auth.public_metrics)
}

/// Middleware over the whole router: authenticates, rate-limits and hands the caller on.
pub async fn require_caller(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_public(&state, req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    // A signed link stands for no caller: it opens one artifact's bytes, which the download
    // route reads from the grant (`links::Reader`), while the key that shared it stands and
    // within its rate; every other route still authenticates.
    if let Some(link) = state.links.granted(req.method(), req.uri()) {
        let link = link.and_then(|granted| {
            super::links::admit(&state, granted, peer(req.extensions()))?;
            Ok(granted)
        });
        return match link {
            Ok(granted) => {
                let mut req = req;
                req.extensions_mut().insert(granted);
                next.run(req).await
            }
            Err(e) => e.into_response(),
        };
    }
    // OpenAI's SDKs and ComfyUI's clients read refusals in their own shape: their routes'
    // refusals from here on are in it.
    let family = Family::of_path(req.uri().path());
    let (mut parts, body) = req.into_parts();
    let caller = match authenticate(&state, &parts) {
        Ok(c) => c,
        Err(e) => return with_challenge(family, family.refuse(e)),
    };
    if let Err(e) = state.gate.rate.check(&caller, &state.config.limits) {
        return family.refuse(e);
    }
    let key = caller.key_id;
    parts.extensions.insert(caller);
    let resp = next.run(Request::from_parts(parts, body)).await;
    // A stream outlives the request's check: it ends when its key is revoked.
    match key {
        Some(key) => super::keys::end_stream_on_revoke(&state, key, resp),
        None => resp,
    }
}

/// Adds the `WWW-Authenticate` challenge to a 401: A1111's clients are asked for Basic
/// credentials, as A1111 asks them, the others for a bearer key.
fn with_challenge(family: Family, mut resp: Response) -> Response {
    if resp.status() == StatusCode::UNAUTHORIZED {
        let challenge = match family {
            Family::A1111 => "Basic realm=\"reelbox\"",
            _ => "Bearer realm=\"reelbox\"",
        };
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    resp
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let family = Family::of_path(parts.uri.path());
        authenticate(state, parts).map_err(|e| with_challenge(family, family.refuse(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_entries_parse_as_addresses_or_blocks() {
        let net = parse_net("10.1.0.0/16").expect("cidr");
        assert!(net.contains(&"10.1.2.3".parse::<IpAddr>().expect("ip")));
        assert!(!net.contains(&"10.2.0.1".parse::<IpAddr>().expect("ip")));
        assert!(parse_net("127.0.0.1").expect("ip").contains(&"127.0.0.1".parse::<IpAddr>().expect("ip")));
        assert!(parse_net("nginx").is_err());
    }
}
