//! Host and Origin checks: what keeps web pages out of the box's API. Any page the owner
//! opens can send requests to `127.0.0.1:8470`, and a keyless daemon treats loopback callers
//! as its admin, so two holes must stay shut:
//! - **DNS rebinding**: a hostile name that resolves to 127.0.0.1 makes the page
//!   same-origin with the daemon. Such a request names the hostile domain in `Host`, so
//!   only IP literals, `localhost`, this box's hostname, LAN suffixes (`.local`, `.lan`,
//!   `.internal`, `.home.arpa`) and `server.allowed_hosts` are served.
//! - **Cross-site requests** (CSRF, including "simple" POSTs that need no CORS preflight
//!   and WebSocket upgrades, which CORS never covers): browsers send `Origin` on them, so a
//!   request with an `Origin` is served only when it is the daemon's own origin or listed
//!   in `server.allowed_origins`. Clients without `Origin` (curl, SDKs, ComfyUI scripts)
//!   are not affected.
//!
//! It runs before authentication on every route, probes included. The pages of
//! `server.allowed_origins` also get CORS ([`cors`]), without which a browser lets them send
//! nothing but "simple" requests and read no answer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::{Config, ServerConfig};

/// Name suffixes of private networks (mDNS, home routers, RFC 8375) accepted as hosts.
const LAN_SUFFIXES: &[&str] = &[".local", ".lan", ".internal", ".home.arpa", ".localhost"];

/// What a request may name and where it may come from, fixed at start.
#[derive(Debug, Clone)]
pub struct Guard {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// This box's hostname, lowercase (`/proc/sys/kernel/hostname`).
    hostname: Option<String>,
    /// The scheme the daemon serves (`https` with TLS configured).
    scheme: &'static str,
}

impl Guard {
    /// The guard for a daemon with `server` settings, this hostname, serving `scheme`.
    pub fn new(server: &ServerConfig, hostname: Option<String>, scheme: &'static str) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase()).collect();
        Self {
            allowed_hosts: lower(&server.allowed_hosts),
            allowed_origins: lower(&server.allowed_origins),
            hostname: hostname.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
            scheme,
        }
    }

    /// The guard of the running machine.
    pub fn for_config(config: &Config) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        Self::new(&config.server, hostname, config.tls.scheme())
    }

    /// Whether `host` (a `Host` header value, port optional) names this box acceptably.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        if name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        if self.hostname.as_deref() == Some(name) || LAN_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            return true;
        }
        self.allowed_hosts.iter().any(|a| match a.strip_prefix("*.") {
            _ if a == "*" => true,
            Some(domain) => name.ends_with(&format!(".{domain}")),
            None => a == name,
        })
    }

    /// Whether a request with this `Origin` sent to `host` comes from the daemon's own page
    /// or an allowed one.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        self.is_listed(origin) || self.is_same_origin(origin, host)
    }

    /// Whether `origin` is one of `server.allowed_origins` (or they are `*`).
    pub fn is_listed(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.allowed_origins.iter().any(|a| a == "*" || *a == origin)
    }

    /// Whether `origin` is the daemon's own page under the name the request uses (what the
    /// web studio's session cookie needs; `allowed_origins` does not count).
    pub fn is_same_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let Some(host) = host else { return false };
        let Some((scheme, authority)) = origin.split_once("://") else { return false };
        scheme == self.scheme
            && with_default_port(authority, scheme) == with_default_port(&host.to_ascii_lowercase(), scheme)
    }
}

/// CORS for the pages of `server.allowed_origins`: their preflights are answered (a key in
/// `Authorization`, JSON bodies, `Idempotency-Key`, `Last-Event-ID`) and every answer to
/// them, refusals included, says they may read it. No cookies: a listed page calls with a
/// key, never the web studio's session. Other origins get no CORS headers (the guard has
/// refused them before this layer); the daemon's own page needs none.
pub fn cors(guard: Arc<Guard>) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let listed = move |o: &HeaderValue, _: &axum::http::request::Parts| o.to_str().is_ok_and(|o| guard.is_listed(o));
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(listed))
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER, header::ETAG, header::CONTENT_DISPOSITION])
        .max_age(std::time::Duration::from_secs(600))
}

/// The host part of a `Host` value: `[::1]:8470` → `::1`, `box.lan:8470` → `box.lan`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `authority` with the scheme's port written out, so `box` and `box:80` compare equal.
fn with_default_port(authority: &str, scheme: &str) -> String {
    let has_port = match authority.rsplit_once(':') {
        Some((name, port)) => !name.ends_with('[') && !port.ends_with(']') && port.chars().all(|c| c.is_ascii_digit()),
        None => false,
    };
    if has_port { authority.to_string() } else { format!("{authority}:{}", if scheme == "https" { 443 } else { 80 }) }
}

/// The request's host: HTTP/2's `:authority` (in the URI) or the `Host` header.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority().map(|a| a.as_str()).or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
}

/// The absolute base URL the client reached us at (`Host`, or a proxy's `X-Forwarded-Host`
/// and `X-Forwarded-Proto`; the bind address when no usable host was sent).
pub fn base_url(headers: &HeaderMap, config: &Config) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    // Behind a proxy its scheme; else the daemon's own (HTTPS when it holds a certificate).
    let scheme = header("x-forwarded-proto").filter(|s| *s == "https" || *s == "http").unwrap_or(config.tls.scheme());
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| config.bind.to_string());
    format!("{scheme}://{host}")
}

/// A 403 in the error shape of the family `req`'s route is in (`api::family`).
fn forbidden(req: &Request, code: &'static str, message: String) -> Response {
    super::family::Family::of_path(req.uri().path()).refuse(ApiError::new(StatusCode::FORBIDDEN, code, message))
}

/// Whether a request is a browser opening a page (a typed-in address or a link), which
/// should read an explanation, not JSON.
fn wants_page(req: &Request) -> bool {
    req.method() == axum::http::Method::GET
        && req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// The refusal of an unknown host as a small page (no script, nothing loaded): what a
/// person who opened the studio by a router's name for the box sees.
fn unknown_host_page(host: &str) -> Response {
    let name = host_name(host)
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect::<String>();
    let body = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>reelbox: unknown name</title>\
         <h1>This box does not answer to the name \u{201c}{name}\u{201d}</h1>\
         <p>Open it by its address (like <code>http://192.168.1.20:8470/</code>) or by a name ending in \
         <code>.local</code> or <code>.lan</code>.</p><p>Its owner can allow this name: add it to \
         <code>server.allowed_hosts</code> in the box's configuration. (This check keeps other web sites \
         from reaching the box through a borrowed name.)</p></html>"
    );
    let mut resp = (StatusCode::FORBIDDEN, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, axum::http::HeaderValue::from_static("default-src 'none'"));
    resp
}

/// Middleware: refuses requests for an unknown host or from a foreign web page.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let guard = &state.guard;
    let host = request_host(req.uri(), req.headers());
    if let Some(h) = host
        && !guard.host_allowed(h)
    {
        if wants_page(&req) {
            return unknown_host_page(h);
        }
        return forbidden(
            &req,
            "forbidden_host",
            format!("this daemon does not answer to the name {h:?}; add it to server.allowed_hosts"),
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !guard.origin_allowed(origin, host) {
            return forbidden(
                &req,
                "forbidden_origin",
                format!("requests from web pages of {origin:?} are refused; add the origin to server.allowed_origins"),
            );
        }
    }
    // HTTP/2 names the host in `:authority`, with no Host header: set one here, once, so
    // every URL built from the request's host (`base_url`) has the name the client used.
    if !req.headers().contains_key(header::HOST)
        && let Some(host) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, host);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str], origins: &[&str]) -> Guard {
        let server = ServerConfig {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
        };
        Guard::new(&server, Some("studio-box\n".into()), "http")
    }

    #[test]
    fn lan_names_and_addresses_pass_and_foreign_domains_do_not() {
        let g = guard(&["films.example.com", "*.tailnet.example"], &[]);
        for ok in [
            "127.0.0.1:8470",
            "[::1]:8470",
            "192.168.1.20",
            "localhost:8470",
            "studio-box:8470",
            "Studio-Box.local",
            "box.lan",
            "box.home.arpa.",
            "films.example.com",
            "gpu.tailnet.example:8470",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in
            ["evil.example", "evil.example:8470", "127.0.0.1.evil.example", "tailnet.example", "localhost.evil.com"]
        {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        assert!(guard(&["*"], &[]).host_allowed("anything.example"));
    }

    #[test]
    fn only_the_daemons_own_origin_or_a_listed_one_passes() {
        let g = guard(&[], &["https://studio.example.com"]);
        assert!(g.origin_allowed("http://127.0.0.1:8470", Some("127.0.0.1:8470")));
        assert!(g.origin_allowed("http://box.lan", Some("box.lan:80")), "default port");
        assert!(g.origin_allowed("https://studio.example.com/", Some("127.0.0.1:8470")));
        assert!(!g.origin_allowed("http://evil.example", Some("127.0.0.1:8470")));
        assert!(!g.origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:8470")), "another port is another origin");
        assert!(!g.origin_allowed("https://127.0.0.1:8470", Some("127.0.0.1:8470")), "the daemon serves http");
        assert!(!g.origin_allowed("null", Some("127.0.0.1:8470")), "sandboxed pages and files");
        assert!(!g.origin_allowed("http://127.0.0.1:8470", None));
        assert!(guard(&[], &["*"]).origin_allowed("http://evil.example", None));
    }

    #[test]
    fn base_url_follows_the_host_header() {
        let mut h = HeaderMap::new();
        h.insert("host", "box.lan:8470".parse().expect("hv"));
        assert_eq!(base_url(&h, &Config::default()), "http://box.lan:8470");
        h.insert("x-forwarded-proto", "https".parse().expect("hv"));
        assert_eq!(base_url(&h, &Config::default()), "https://box.lan:8470");
        assert_eq!(base_url(&HeaderMap::new(), &Config::default()), "http://127.0.0.1:8470");
    }
}
