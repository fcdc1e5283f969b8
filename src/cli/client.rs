//! A small HTTP client for the daemon's API that turns error bodies into messages.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use super::Global;

/// A client bound to one daemon URL and key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// Builds a client from the global options.
    pub fn new(g: &Global) -> anyhow::Result<Self> {
        let http = reelbox::api::http_client::http_client(g.cacert.as_deref(), None)?;
        Ok(Self { http, base: g.url.trim_end_matches('/').to_string(), key: g.key.clone() })
    }

    /// A request to `path` (starting with `/`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Sends and decodes a JSON answer, turning API errors into readable ones.
    pub async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> anyhow::Result<T> {
        let resp = self.send_raw(req).await?;
        resp.json().await.context("the daemon sent an unreadable answer")
    }

    /// Sends and checks the status, returning the raw response.
    pub async fn send_raw(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!("no reelbox daemon answers at {} (start one with `reelbox serve`, or pass --url)", self.base)
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let msg = body["error"]["message"].as_str().unwrap_or("no details").to_string();
        Err(anyhow!("daemon answered {status}: {msg}"))
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(Method::GET, path)).await
    }

    /// POST a JSON body.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// The daemon URL this client talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// True when a reelbox daemon answers `/healthz` within `wait`.
    pub async fn answers(&self, wait: Duration) -> bool {
        let req = self.request(Method::GET, "/healthz").timeout(wait);
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    /// Streams `path` into `dest` through a temporary file beside it; returns the bytes written.
    pub async fn download(&self, path: &str, dest: &Path) -> anyhow::Result<u64> {
        let resp = self.send_raw(self.request(Method::GET, path)).await?;
        let tmp = dest.with_file_name(format!(
            ".{}.part",
            dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        let mut file =
            tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut stream = resp.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("download of {path} from {} broke off", self.base))?;
            file.write_all(&chunk).await.with_context(|| format!("cannot write {}", tmp.display()))?;
            written += chunk.len() as u64;
        }
        file.flush().await.with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(file);
        tokio::fs::rename(&tmp, dest).await.with_context(|| format!("cannot write {}", dest.display()))?;
        Ok(written)
    }
}
