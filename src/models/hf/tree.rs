//! The hub's tree API: `GET {endpoint}/api/models/{repo}/tree/{revision}/{path}?recursive=true`
//! lists a folder's files as JSON (`type`, `path`, `size`, `oid`, and for LFS files
//! `lfs: {oid, size}` with the file's sha256), paginated with a `Link: <…>; rel="next"`
//! header. A manifest's `folders` are expanded through it into files with sizes and, for
//! LFS files, the sha256 the bytes are then checked against.

use serde::Deserialize;

use super::{Hub, HubError};

/// Pages followed at most (the hub pages at 1000 entries; no model has 50 000 files).
const MAX_PAGES: usize = 50;

/// One entry of a tree listing as the hub sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    /// `file` or `directory`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The path from the repository's root.
    pub path: String,
    #[serde(default)]
    pub size: u64,
    /// The git blob SHA-1 (of the LFS pointer, for LFS files).
    #[serde(default)]
    pub oid: String,
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
}

/// An LFS file's real object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LfsInfo {
    /// The sha256 of the file's bytes.
    pub oid: String,
    pub size: u64,
}

impl TreeEntry {
    /// True for files (directories are listed too when recursive).
    pub fn is_file(&self) -> bool {
        self.kind == "file"
    }

    /// The file's own size (the LFS object's, not its pointer's).
    pub fn file_size(&self) -> u64 {
        self.lfs.as_ref().map_or(self.size, |l| l.size)
    }

    /// The sha256 the hub records for an LFS file.
    pub fn sha256(&self) -> Option<&str> {
        self.lfs.as_ref().map(|l| l.oid.as_str()).filter(|o| super::is_hex(o, 64))
    }
}

impl Hub {
    /// Every entry under `path` of `repo` at `revision`, all pages.
    pub async fn tree(&self, repo: &str, revision: &str, path: &str) -> Result<Vec<TreeEntry>, HubError> {
        let path = path.trim_matches('/');
        let mut url = if path.is_empty() {
            format!("{}/api/models/{repo}/tree/{revision}?recursive=true", self.endpoint)
        } else {
            format!("{}/api/models/{repo}/tree/{revision}/{path}?recursive=true", self.endpoint)
        };
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self
                .request(reqwest::Method::GET, &url)
                .send()
                .await
                .map_err(|source| HubError::Request { url: url.clone(), source })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                let hint = if self.token.is_some() { "HF_TOKEN was refused" } else { "set HF_TOKEN" };
                return Err(HubError::Gated { status, hint });
            }
            if !status.is_success() {
                return Err(HubError::Status { status, url });
            }
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(|l| super::absolute(&url, &l));
            let page: Vec<TreeEntry> =
                resp.json().await.map_err(|source| HubError::Request { url: url.clone(), source })?;
            out.extend(page);
            match next {
                // The cursor link stays on the hub (the token may go there).
                Some(n) if self.is_hub(&n) => url = n,
                _ => return Ok(out),
            }
        }
        Ok(out)
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let h = "<https://hf.co/api/models/o/r/tree/main?cursor=abc>; rel=\"next\", <https://x>; rel=\"prev\"";
        assert_eq!(next_link(h).as_deref(), Some("https://hf.co/api/models/o/r/tree/main?cursor=abc"));
        assert_eq!(next_link("<https://x>; rel=\"prev\""), None);
    }

    #[test]
    fn lfs_entries_carry_their_sha256_and_real_size() {
        let json = r#"[{"type":"file","oid":"aa","size":134,"path":"unet/model.onnx",
            "lfs":{"oid":"0b4333f3f0aff615eb26fe9b117bf5c7921db2207a67d18ca3421cc7b2d2c080","size":1731,"pointerSize":134}},
            {"type":"directory","oid":"bb","size":0,"path":"unet"}]"#;
        let entries: Vec<TreeEntry> = serde_json::from_str(json).expect("parses");
        assert_eq!(entries[0].file_size(), 1731);
        assert!(entries[0].sha256().is_some_and(|s| s.starts_with("0b4333")));
        assert!(!entries[1].is_file());
    }
}
