//! A local server that behaves like the Hugging Face hub, for the pull tests: resolve URLs
//! answered with `X-Repo-Commit` and `ETag`s (a small file's git blob SHA-1), LFS files
//! redirected (302) to a second "CDN" server with `X-Linked-Etag`/`X-Linked-Size`, ranges,
//! gated repositories that need the token, and the tree API listing folders in pages.
//! Tests fill `Hub::repos` and read back what both servers saw.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The commit every revision resolves to.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The token a gated repository wants.
pub const TOKEN: &str = "hf_test_secret";
/// Above the pull's part size (8 MiB), so the file comes in several ranged parts.
pub const BIG: usize = 20 << 20;

/// One file of a served repository.
pub struct HubFile {
    pub data: Vec<u8>,
    /// Served through the CDN redirect with `X-Linked-Etag` (its sha256).
    pub lfs: bool,
    /// The ETag a small file is served with when a test lies; else its git blob SHA-1 of
    /// the bytes served (so a test that changes the bytes changes the hash with them).
    pub etag: Option<String>,
}

/// The hub's repositories and what both servers saw.
#[derive(Default)]
pub struct Hub {
    /// `owner/repo` → path → file.
    pub repos: BTreeMap<String, BTreeMap<String, HubFile>>,
    pub gated: Vec<String>,
    /// Revisions (tags, branches) served besides `COMMIT` and `main`.
    pub revisions: Vec<String>,
    cdn_base: String,
    /// `Authorization` of every request, by server ("hub" or "cdn"), "" when absent.
    pub auth: Vec<(&'static str, String)>,
    /// `Range` of every CDN request.
    pub ranges: Vec<String>,
    /// Cut the next CDN body after this many bytes.
    pub cut_once: Option<usize>,
    /// Paths of every tree API request.
    pub trees: Vec<String>,
}

impl Hub {
    fn serves(&self, revision: &str) -> bool {
        revision == COMMIT || revision == "main" || self.revisions.iter().any(|r| r == revision)
    }
}

/// Tree API entries per page (small, so listings come in several pages).
const TREE_PAGE: usize = 3;

/// The hub as both servers and the test share it.
pub type Shared = Arc<Mutex<Hub>>;

/// Lowercase hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The git blob SHA-1 of `data` (what the hub serves as a small file's ETag).
pub fn blob_sha1(data: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

fn auth_of(headers: &HeaderMap) -> String {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// `bytes=A-B` (or `bytes=A-`) of a file of `len` bytes, as `[start, end)`.
fn range_of(headers: &HeaderMap, len: usize) -> Option<(usize, usize)> {
    let r = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?.to_string();
    let (a, b) = r.split_once('-')?;
    let start: usize = a.parse().ok()?;
    let end = if b.is_empty() { len } else { b.parse::<usize>().ok()? + 1 };
    Some((start, end.min(len)))
}

fn ranged(data: &[u8], headers: &HeaderMap) -> Response {
    let (start, end) = range_of(headers, data.len()).unwrap_or((0, data.len()));
    let status = if headers.contains_key(header::RANGE) { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    Response::builder()
        .status(status)
        .header(header::CONTENT_RANGE, format!("bytes {start}-{}/{}", end.saturating_sub(1), data.len()))
        .header(header::CONTENT_LENGTH, end - start)
        .body(Body::from(data[start..end].to_vec()))
        .expect("response")
}

async fn resolve(
    State(hub): State<Shared>,
    UrlPath((owner, repo, revision, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut hub = hub.lock().expect("lock");
    hub.auth.push(("hub", auth_of(&headers)));
    let repo = format!("{owner}/{repo}");
    let status = |s: StatusCode| Response::builder().status(s).body(Body::empty()).expect("response");
    if hub.gated.contains(&repo) && auth_of(&headers) != format!("Bearer {TOKEN}") {
        return status(StatusCode::UNAUTHORIZED);
    }
    if !hub.serves(&revision) {
        return status(StatusCode::NOT_FOUND);
    }
    let cdn = hub.cdn_base.clone();
    let Some(file) = hub.repos.get(&repo).and_then(|r| r.get(&path)) else { return status(StatusCode::NOT_FOUND) };
    if file.lfs {
        let sha = sha256_hex(&file.data);
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("{cdn}/cdn/{sha}?signed=1"))
            .header("x-repo-commit", COMMIT)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", file.data.len())
            .header(header::ETAG, "\"pointer-blob-id\"")
            .body(Body::empty())
            .expect("response");
    }
    let mut resp = ranged(&file.data, &headers);
    resp.headers_mut().insert("x-repo-commit", COMMIT.parse().expect("header"));
    let etag = file.etag.clone().unwrap_or_else(|| blob_sha1(&file.data));
    resp.headers_mut().insert(header::ETAG, format!("\"{etag}\"").parse().expect("header"));
    resp
}

async fn cdn(State(hub): State<Shared>, UrlPath(sha): UrlPath<String>, headers: HeaderMap) -> Response {
    let mut hub = hub.lock().expect("lock");
    hub.auth.push(("cdn", auth_of(&headers)));
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    hub.ranges.push(range);
    let found = hub.repos.values().flat_map(|r| r.values()).find(|f| f.lfs && sha256_hex(&f.data) == sha);
    let Some(data) = found.map(|f| f.data.clone()) else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty()).expect("response");
    };
    let (start, end) = range_of(&headers, data.len()).unwrap_or((0, data.len()));
    if let Some(cut) = hub.cut_once.take() {
        // Promise the range, send part of it, then fail the stream: a dropped connection.
        let part = data[start..(start + cut).min(end)].to_vec();
        let stream = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(axum::body::Bytes::from(part)),
            Err(std::io::Error::other("connection dropped by the test CDN")),
        ]);
        return Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, end - start)
            .body(Body::from_stream(stream))
            .expect("response");
    }
    ranged(&data, &headers)
}

/// `GET /api/models/{owner}/{repo}/tree/{revision}/{path}?recursive=true[&cursor=N]`: the
/// files under `path` (and their folders) as the hub lists them, `TREE_PAGE` at a time with
/// a `Link: <…>; rel="next"` header.
async fn tree(
    State(hub): State<Shared>,
    UrlPath((owner, repo, revision, path)): UrlPath<(String, String, String, String)>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut hub = hub.lock().expect("lock");
    hub.auth.push(("hub", auth_of(&headers)));
    hub.trees.push(path.clone());
    let repo_name = format!("{owner}/{repo}");
    let status = |s: StatusCode| Response::builder().status(s).body(Body::empty()).expect("response");
    if !hub.serves(&revision) {
        return status(StatusCode::NOT_FOUND);
    }
    let Some(files) = hub.repos.get(&repo_name) else { return status(StatusCode::NOT_FOUND) };
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (p, f) in files.iter().filter(|(p, _)| p.starts_with(&prefix)) {
        if let Some((dir, _)) = p.rsplit_once('/')
            && dirs.insert(dir.to_string())
        {
            entries.push(serde_json::json!({"type": "directory", "oid": "d", "size": 0, "path": dir}));
        }
        let mut e = serde_json::json!({"type": "file", "path": p, "oid": blob_sha1(&f.data), "size": f.data.len()});
        if f.lfs {
            e["size"] = 134.into();
            e["lfs"] = serde_json::json!({"oid": sha256_hex(&f.data), "size": f.data.len(), "pointerSize": 134});
        }
        entries.push(e);
    }
    if entries.is_empty() {
        return status(StatusCode::NOT_FOUND);
    }
    let start: usize = query.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let end = (start + TREE_PAGE).min(entries.len());
    let mut resp = Response::builder().header(header::CONTENT_TYPE, "application/json");
    if end < entries.len() {
        let next =
            format!("</api/models/{repo_name}/tree/{revision}/{path}?recursive=true&cursor={end}>; rel=\"next\"");
        resp = resp.header(header::LINK, next);
    }
    resp.body(Body::from(serde_json::Value::from(entries[start.min(end)..end].to_vec()).to_string())).expect("response")
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Starts the hub and its CDN; returns the hub's endpoint.
pub async fn start(hub: Shared) -> String {
    let cdn_base = serve(Router::new().route("/cdn/{sha}", get(cdn)).with_state(hub.clone())).await;
    hub.lock().expect("lock").cdn_base = cdn_base;
    let router = Router::new()
        .route("/{owner}/{repo}/resolve/{revision}/{*path}", get(resolve))
        .route("/api/models/{owner}/{repo}/tree/{revision}/{*path}", get(tree));
    serve(router.with_state(hub)).await
}

/// A hub endpoint nothing listens on (a loopback port bound and let go): the connection is
/// refused, as on a box without network.
pub fn unreachable() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    format!("http://127.0.0.1:{port}")
}

/// `len` bytes that differ by `seed`.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

/// A file served through the CDN redirect.
pub fn lfs(data: Vec<u8>) -> HubFile {
    HubFile { data, lfs: true, etag: None }
}

/// A file served on the resolve URL.
pub fn small(data: &[u8]) -> HubFile {
    HubFile { data: data.to_vec(), lfs: false, etag: None }
}
