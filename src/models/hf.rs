//! The `hf:` source: files of a Hugging Face hub repository, fetched the way
//! `huggingface_hub` does. A `HEAD` on `{endpoint}/{repo}/resolve/{revision}/{path}` (not
//! following redirects, `Accept-Encoding: identity` so sizes are the file's) tells the
//! commit (`X-Repo-Commit`), the hash (`X-Linked-Etag` for LFS files: their sha256;
//! `ETag` for small files: their git blob SHA-1), the size and, for LFS files, the CDN
//! URL the bytes come from. The token goes to the hub only, never to the CDN host.
//!
//! Files download in ranged parts, several at once, into `<dest>.partial`; what each part
//! has is kept in `<dest>.partial.parts`, so an interrupted pull resumes where it stopped,
//! and a dropped or stalled part is retried from its own offset.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::fetch::{Delivered, FetchError};
use super::manifest::ManifestFile;
use crate::error_text::chain_text;

mod parts;
mod source;
mod tree;

use parts::{Parts, parts_path};
pub use source::HfSource;
pub use tree::TreeEntry;

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Parts downloading at once.
const PARALLEL_PARTS: usize = 4;
/// Tries per part before the file is given up.
const PART_ATTEMPTS: usize = 5;
/// A part that receives nothing for this long is dropped and retried.
const STALL: Duration = Duration::from_secs(30);

/// A hub to fetch from: its endpoint and the token sent to it.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    /// Redirects are not followed: the CDN URL is taken from `Location` so the token,
    /// which reqwest would carry along on a same-host hop, is never sent there.
    client: reqwest::Client,
}

/// What a `HEAD` on a file's resolve URL said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileInfo {
    commit: Option<String>,
    etag: Option<String>,
    size: Option<u64>,
    /// Where the bytes are: the CDN for LFS files, else the resolve URL itself.
    download_url: String,
}

/// Why a file could not be had from the hub or its CDN (reported as
/// [`FetchError::Unavailable`], or [`FetchError::Unreachable`] for a host that cannot be
/// reached, so the next source is tried).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("HTTP {status}: a gated or private repository; {hint} (and accept its terms on the hub)")]
    Gated { status: reqwest::StatusCode, hint: &'static str },
    #[error("HTTP {status} from {url}")]
    Status { status: reqwest::StatusCode, url: String },
    #[error("HTTP {status} without a file's headers from {url}")]
    NoFileHeaders { status: reqwest::StatusCode, url: String },
    #[error("too many redirects from {url}")]
    Redirects { url: String },
    #[error(
        "cannot reach {host} ({cause}): is this box online? Behind a proxy, set HTTPS_PROXY; a mirror of the hub \
         is HF_ENDPOINT; with no network here, pull on a box that has one and bring the model's folder over with \
         `reelbox models import`"
    )]
    Unreachable { host: String, cause: String },
    #[error("request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("HTTP {status} for bytes {from}-{last}")]
    Range { status: reqwest::StatusCode, from: u64, last: u64 },
    #[error("stalled for {secs}s")]
    Stalled { secs: u64 },
    #[error("transfer ended at byte {at} of {end}")]
    Ended { at: u64, end: u64 },
    #[error("{}", .path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gave up on bytes {start}-{end} after {attempts} attempts")]
    GaveUp {
        start: u64,
        end: u64,
        attempts: usize,
        #[source]
        last: Box<HubError>,
    },
}

impl HubError {
    /// A failed request (to the hub, or to any `https:` source, `fetch.rs`). One that never reached the server (no network, no DNS, a refused
    /// or timed-out connection) says so once, with what to do, rather than the URL twice
    /// around reqwest's and hyper's layers.
    pub(super) fn request(url: &str, source: reqwest::Error) -> Self {
        if source.is_connect() {
            let host = source.url().and_then(|u| u.host_str()).unwrap_or(url).to_string();
            let mut cause: &dyn std::error::Error = &source;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            return HubError::Unreachable { host, cause: cause.to_string() };
        }
        HubError::Request { url: url.to_string(), source }
    }

    /// This failure as source `source_name`'s [`FetchError`] for `file`, its text after
    /// `doing` (what was asked, or empty): [`FetchError::Unreachable`] when the host never
    /// answered, so the pull neither asks it for the source's other files nor tries again.
    pub(super) fn for_source(&self, source_name: &str, file: &str, doing: &str) -> FetchError {
        let (source_name, file, reason) =
            (source_name.to_string(), file.to_string(), format!("{doing}{}", chain_text(self)));
        match self {
            HubError::Unreachable { .. } => FetchError::Unreachable { source_name, file, reason },
            _ => FetchError::Unavailable { source_name, file, reason },
        }
    }
}

/// The hash a downloaded file is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Sha256(String),
    GitBlobSha1(String),
}

impl Hub {
    /// The hub of `HF_ENDPOINT` (else huggingface.co) with `HF_TOKEN` when set.
    pub fn from_env() -> Self {
        let endpoint = crate::config::env::hf_endpoint().unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(&endpoint, crate::config::env::hf_token())
    }

    /// A hub at `endpoint`, sending `token` to it.
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("reelbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), token, client }
    }

    fn resolve_url(&self, repo: &str, revision: &str, path: &str) -> String {
        format!("{}/{repo}/resolve/{revision}/{path}", self.endpoint)
    }

    /// True when `url` is on the hub's host (scheme, host and port), where the token may go.
    fn is_hub(&self, url: &str) -> bool {
        match (reqwest::Url::parse(url), reqwest::Url::parse(&self.endpoint)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url).header(reqwest::header::ACCEPT_ENCODING, "identity");
        match &self.token {
            Some(token) if self.is_hub(url) => req.bearer_auth(token),
            _ => req,
        }
    }

    /// Fetches manifest file `file` from `source` into `dest`, checked (see the module
    /// docs); `report(done, total)` gets byte progress.
    pub async fn fetch_file(
        &self,
        source: &HfSource,
        file: &ManifestFile,
        dest: &Path,
        report: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Delivered, FetchError> {
        let source_name = source.describe();
        let unavailable = |reason: String| FetchError::Unavailable {
            source_name: source_name.clone(),
            file: file.path.clone(),
            reason,
        };
        let url = self.resolve_url(&source.repo, &source.revision, &source.remote_path(&file.path));
        let info = self.head(&url).await.map_err(|e| e.for_source(&source_name, &file.path, ""))?;
        if let Some(commit) = &info.commit
            && source.is_commit()
            && !commit.eq_ignore_ascii_case(&source.revision)
        {
            return Err(unavailable(format!("the hub answered commit {commit} for pinned {}", source.revision)));
        }
        let commit = info.commit.clone().or_else(|| source.is_commit().then(|| source.revision.clone()));
        let expected = match (file.pinned_sha256(), info.etag.as_deref()) {
            (Some(sha), _) => Expected::Sha256(sha.to_ascii_lowercase()),
            (None, Some(etag)) if is_hex(etag, 64) => Expected::Sha256(etag.to_ascii_lowercase()),
            (None, Some(etag)) if is_hex(etag, 40) => Expected::GitBlobSha1(etag.to_ascii_lowercase()),
            (None, etag) => {
                return Err(unavailable(format!("no sha256 pinned and the hub's ETag {etag:?} is not a hash")));
            }
        };
        let size = info.size.ok_or_else(|| unavailable("the hub did not say the file's size".into()))?;
        let partial = crate::durable::temp_of(dest);
        self.download(&info.download_url, &partial, size, report).await.map_err(|e| unavailable(chain_text(&e)))?;
        let mismatch = |expected: String, actual: String, got: u64| {
            discard(&partial);
            FetchError::Mismatch {
                source_name: source_name.clone(),
                file: file.path.clone(),
                expected,
                actual,
                size: got,
            }
        };
        let hashes = hash_partial(&partial, matches!(expected, Expected::GitBlobSha1(_)))
            .map_err(|e| unavailable(format!("cannot read {}: {e}", partial.display())))?;
        if file.pinned_size().is_some_and(|s| s != hashes.size) {
            let want = file.pinned_sha256().unwrap_or("the manifest's size").to_string();
            return Err(mismatch(want, hashes.sha256, hashes.size));
        }
        match &expected {
            Expected::Sha256(want) if *want != hashes.sha256 => {
                return Err(mismatch(want.clone(), hashes.sha256, hashes.size));
            }
            Expected::GitBlobSha1(want) if Some(want) != hashes.blob_sha1.as_ref() => {
                discard(&partial);
                return Err(FetchError::BlobMismatch {
                    source_name,
                    file: file.path.clone(),
                    expected: want.clone(),
                    actual: hashes.blob_sha1.unwrap_or_default(),
                });
            }
            _ => {}
        }
        let _ = std::fs::remove_file(parts_path(&partial));
        std::fs::rename(&partial, dest).map_err(|e| unavailable(format!("cannot move into place: {e}")))?;
        Ok(Delivered { sha256: hashes.sha256, size: hashes.size, commit })
    }

    /// `HEAD` on a resolve URL. Relative redirects (a renamed repository) stay on the hub
    /// and are followed; an absolute one to another host is the CDN and is not.
    async fn head(&self, url: &str) -> Result<FileInfo, HubError> {
        let mut url = url.to_string();
        for _ in 0..4 {
            let resp = self
                .request(reqwest::Method::HEAD, &url)
                .send()
                .await
                .map_err(|source| HubError::request(&url, source))?;
            let status = resp.status();
            let headers = resp.headers();
            let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                let hint = if self.token.is_some() { "HF_TOKEN was refused" } else { "set HF_TOKEN" };
                return Err(HubError::Gated { status, hint });
            }
            if !status.is_success() && !status.is_redirection() {
                return Err(HubError::Status { status, url });
            }
            let location = text("location").map(|l| absolute(&url, &l));
            let linked_etag = text("x-linked-etag");
            if status.is_redirection() && linked_etag.is_none() {
                match location {
                    Some(next) if self.is_hub(&next) => {
                        url = next;
                        continue;
                    }
                    _ => return Err(HubError::NoFileHeaders { status, url }),
                }
            }
            let size = text("x-linked-size").or_else(|| text("content-length")).and_then(|s| s.trim().parse().ok());
            return Ok(FileInfo {
                commit: text("x-repo-commit"),
                etag: linked_etag.or_else(|| text("etag")).map(|e| unquote(&e)),
                size,
                download_url: if status.is_redirection() { location.unwrap_or(url) } else { url },
            });
        }
        Err(HubError::Redirects { url })
    }

    /// Downloads `size` bytes of `url` into `partial` in ranged parts, continuing what an
    /// earlier attempt left (see the module docs).
    async fn download(
        &self,
        url: &str,
        partial: &Path,
        size: u64,
        report: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), HubError> {
        let parts = Parts::open(partial, size)?;
        report(parts.total_done(), size);
        let results: Vec<Result<(), HubError>> = futures::stream::iter(0..parts.count())
            .map(|i| self.download_part(url, partial, &parts, i, report))
            .buffer_unordered(PARALLEL_PARTS)
            .collect()
            .await;
        parts.save();
        results.into_iter().collect()
    }

    async fn download_part(
        &self,
        url: &str,
        partial: &Path,
        parts: &Parts,
        i: usize,
        report: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), HubError> {
        let (start, end) = parts.bounds(i);
        let mut last_error: Option<HubError> = None;
        for attempt in 0..PART_ATTEMPTS {
            let done = parts.done(i);
            if start + done >= end {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
                let error = last_error.as_ref().map(|e| chain_text(e)).unwrap_or_default();
                tracing::info!(url, part = i, done, error, "part dropped; resuming it");
            }
            match self.fetch_range(url, partial, parts, i, start + done, end, report).await {
                Ok(()) => {}
                Err(e) => last_error = Some(e),
            }
        }
        if start + parts.done(i) >= end {
            return Ok(());
        }
        let last = last_error.unwrap_or(HubError::Ended { at: start + parts.done(i), end });
        Err(HubError::GaveUp { start, end, attempts: PART_ATTEMPTS, last: Box::new(last) })
    }

    /// One ranged `GET` of `[from, end)` written at its offset; returns when the range is
    /// done or the transfer drops or stalls (progress so far is kept either way).
    #[allow(clippy::too_many_arguments)] // one part's coordinates; a struct would only rename them
    async fn fetch_range(
        &self,
        url: &str,
        partial: &Path,
        parts: &Parts,
        i: usize,
        from: u64,
        end: u64,
        report: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), HubError> {
        let resp = self
            .request(reqwest::Method::GET, url)
            .header(reqwest::header::RANGE, format!("bytes={from}-{}", end - 1))
            .send()
            .await
            .map_err(|source| HubError::request(url, source))?;
        let status = resp.status();
        let whole = from == 0 && end == parts.size;
        if !(status == reqwest::StatusCode::PARTIAL_CONTENT || (status == reqwest::StatusCode::OK && whole)) {
            return Err(HubError::Range { status, from, last: end - 1 });
        }
        let file_err = |source| HubError::File { path: partial.to_path_buf(), source };
        let mut out = tokio::fs::OpenOptions::new().write(true).open(partial).await.map_err(file_err)?;
        out.seek(std::io::SeekFrom::Start(from)).await.map_err(file_err)?;
        let mut stream = resp.bytes_stream();
        let mut at = from;
        while at < end {
            let chunk = match tokio::time::timeout(STALL, stream.next()).await {
                Err(_) => return Err(HubError::Stalled { secs: STALL.as_secs() }),
                Ok(None) => return Err(HubError::Ended { at, end }),
                Ok(Some(Err(source))) => return Err(HubError::Request { url: url.to_string(), source }),
                Ok(Some(Ok(chunk))) => chunk,
            };
            // A server sending past the range would overwrite the next part.
            let take = chunk.len().min(usize::try_from(end - at).unwrap_or(usize::MAX));
            out.write_all(&chunk[..take]).await.map_err(file_err)?;
            at += take as u64;
            // Counted only once written: what the parts file says is on disk.
            out.flush().await.map_err(file_err)?;
            let total = parts.advance(i, take as u64);
            report(total, parts.size);
        }
        Ok(())
    }
}

/// What a downloaded file hashes to.
struct Hashes {
    sha256: String,
    /// `sha1("blob {len}\0" + bytes)`: git's id of the file, when asked for.
    blob_sha1: Option<String>,
    size: u64,
}

fn hash_partial(path: &Path, with_blob_sha1: bool) -> std::io::Result<Hashes> {
    use std::io::Read;
    let size = std::fs::metadata(path)?.len();
    let mut f = std::fs::File::open(path)?;
    let mut sha256 = Sha256::new();
    let mut sha1 = with_blob_sha1.then(|| {
        let mut h = Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        h
    });
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        if let Some(h) = sha1.as_mut() {
            h.update(&buf[..n]);
        }
    }
    Ok(Hashes { sha256: hex::encode(sha256.finalize()), blob_sha1: sha1.map(|h| hex::encode(h.finalize())), size })
}

/// Deletes a rejected download and its parts file, so the next attempt starts clean.
fn discard(partial: &Path) {
    let _ = std::fs::remove_file(partial);
    let _ = std::fs::remove_file(parts_path(partial));
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// An ETag without its weak marker and quotes.
fn unquote(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// `location` made absolute against `base` (the hub sends relative ones for renames).
fn absolute(base: &str, location: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| location.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_is_gits_object_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").expect("write");
        let h = hash_partial(&path, true).expect("hash");
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(h.blob_sha1.as_deref(), Some("ce013625030ba8dba906f756967f9e9ca394464a"));
        assert_eq!(h.size, 6);
    }

    #[test]
    fn etags_lose_quotes_and_weak_markers() {
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("\"abc\""), "abc");
    }

    #[test]
    fn the_token_goes_to_the_hub_origin_only() {
        let hub = Hub::new("http://127.0.0.1:9", Some("t".into()));
        assert!(hub.is_hub("http://127.0.0.1:9/r/resolve/main/f"));
        assert!(!hub.is_hub("http://127.0.0.1:10/cdn/f"));
        assert!(!hub.is_hub("https://127.0.0.1:9/cdn/f"));
    }
}
