//! The one typed client of a daemon's HTTP API, shared by the CLI and `reelbox top`: it
//! builds requests (base URL, bearer key, `--cacert` through [`http_client`]), turns error
//! answers into [`ClientError::Status`] with the daemon's message, and follows
//! Server-Sent Event streams. Each front end words the errors for its own screen.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::http_client::{HttpClientError, check_daemon_url, http_client};
use crate::api::sse::{SseMessage, SseParser};

pub mod upload;

/// What one path segment must encode: the URL standard's path set, plus `/` and `%` (and
/// `\`, which URL parsing reads as `/` in an `http` path), so the segment stays one segment
/// and the daemon decodes it back to what was written.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%')
    .add(b'\\');

/// The API path of one profile by its id or name: a name may hold `/ ? # %` or spaces
/// (`mum/dad`, `50% off`), which must reach the profile's route as one path segment.
pub fn profile_path(id_or_name: &str) -> String {
    format!("/api/v1/profiles/{}", utf8_percent_encode(id_or_name, SEGMENT))
}

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the connection (no daemon there, the box is off, or a wrong `--url`).
    #[error("{}", unreachable_text(base))]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The request failed after connecting, or timed out.
    #[error("request to {base} failed: {source}")]
    Request {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The daemon answered with an error status; `message` is its `error.message`.
    #[error("daemon answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    /// A success answer whose body is not the expected JSON.
    #[error("unreadable answer from {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// The body broke off while it was being read.
    #[error("the answer from {base} broke off: {source}")]
    Body {
        base: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Whether `base` is this machine's loopback (where a command may run in-process instead).
pub fn is_this_machine(base: &str) -> bool {
    let host =
        reqwest::Url::parse(base).ok().and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()));
    host.is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// What a failed connection to `base` means: on this machine's loopback no daemon runs
/// (start one here); elsewhere it is someone's box, which only its owner can start.
pub fn unreachable_text(base: &str) -> String {
    if is_this_machine(base) {
        format!("no reelbox daemon answers at {base} (start one with `reelbox serve`, or pass --url)")
    } else {
        format!("the box at {base} does not answer: is it on, and is the address right?")
    }
}

/// A client of one daemon: its URL and an optional API key.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl ApiClient {
    /// A client for `url` with an optional API key, trusting `cacert` besides the system
    /// roots and giving up on connecting after `connect_timeout` when one is given.
    pub fn new(
        url: &str,
        key: Option<String>,
        cacert: Option<&Path>,
        connect_timeout: Option<Duration>,
    ) -> Result<Self, HttpClientError> {
        check_daemon_url(url)?;
        let http = http_client(cacert, connect_timeout)?;
        Ok(Self { http, base: url.trim_end_matches('/').to_string(), key })
    }

    /// The daemon URL this client talks to (no trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`), carrying the key when there is one.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Sends a request; an error status becomes [`ClientError::Status`].
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req.send().await.map_err(|source| {
            let base = self.base.clone();
            if source.is_connect() {
                ClientError::Unreachable { base, source }
            } else {
                ClientError::Request { base, source }
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no details").to_string();
        Err(ClientError::Status { status, message })
    }

    /// GET `path` as JSON, giving up after `timeout` when one is given.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, timeout: Option<Duration>) -> Result<T, ClientError> {
        let mut req = self.request(Method::GET, path);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = self.send(req).await?;
        resp.json().await.map_err(|source| ClientError::Unreadable { path: path.to_string(), source })
    }

    /// The whole body of `path` (an artifact), giving up after `timeout`.
    pub async fn bytes(&self, path: &str, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(self.request(Method::GET, path).timeout(timeout)).await?;
        resp.bytes().await.map(|b| b.to_vec()).map_err(|source| self.broke_off(source))
    }

    /// True when a reelbox daemon answers `/healthz` within `wait`.
    pub async fn answers(&self, wait: Duration) -> bool {
        let req = self.request(Method::GET, "/healthz").timeout(wait);
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    /// Follows the event stream at `path` (resuming after `last_id`), handing each message
    /// to `on` until it returns false or the stream ends.
    pub async fn follow(
        &self,
        path: &str,
        last_id: Option<&str>,
        mut on: impl FnMut(SseMessage) -> bool,
    ) -> Result<(), ClientError> {
        let mut req = self.request(Method::GET, path).header("accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = self.send(req).await?;
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| self.broke_off(source))?;
            for msg in parser.push(&chunk) {
                if !on(msg) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn broke_off(&self, source: reqwest::Error) -> ClientError {
        ClientError::Body { base: self.base.clone(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_url_is_told_to_start_a_daemon() {
        for local in ["http://127.0.0.1:8470", "http://localhost:8470", "https://[::1]:8470"] {
            assert!(unreachable_text(local).contains("reelbox serve"), "{local}");
        }
        let remote = unreachable_text("http://192.0.2.2:18471");
        assert_eq!(remote, "the box at http://192.0.2.2:18471 does not answer: is it on, and is the address right?");
    }
}
