//! The `hf:OWNER/REPO@REVISION[/PATH]` source of a manifest: which repository, revision
//! and folder (or single file) its files come from.

use crate::models::manifest::{ManifestFile, check_relative, valid_name};

/// An `hf:OWNER/REPO@REVISION[/PATH]` source. PATH is a directory in the repository the
/// manifest's files are under; for a one-file manifest a PATH whose last part has an
/// extension names the file itself (stored under the manifest's name locally). As with HTTP sources, a PATH ending with one of the
/// manifest's files means that file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfSource {
    /// `OWNER/REPO`.
    pub repo: String,
    /// A full commit hash, or a tag or branch.
    pub revision: String,
    /// Directory inside the repository ("" for its root).
    pub dir: String,
    /// The remote file of a one-file manifest, when PATH names it.
    pub file: Option<String>,
}

impl HfSource {
    /// Parses what follows `hf:`.
    pub(in crate::models) fn parse(rest: &str, files: &[ManifestFile]) -> Option<Self> {
        let (repo, after) = rest.split_once('@')?;
        let (owner, name) = repo.split_once('/')?;
        let (revision, path) = after.split_once('/').unwrap_or((after, ""));
        let path = path.trim_matches('/');
        let parts_ok = [owner, name, revision].iter().all(|p| !p.is_empty() && valid_name(p));
        let path_ok = path.is_empty() || check_relative(path).is_ok();
        if !parts_ok || !path_ok {
            return None;
        }
        let mut source =
            HfSource { repo: repo.to_string(), revision: revision.to_string(), dir: path.to_string(), file: None };
        if let Some(dir) = files
            .iter()
            .find_map(|f| if path == f.path { Some("") } else { path.strip_suffix(&format!("/{}", f.path)) })
        {
            source.dir = dir.to_string();
        } else if let [_] = files
            && path.rsplit('/').next().is_some_and(|last| last.contains('.'))
        {
            source.dir = String::new();
            source.file = Some(path.to_string());
        }
        Some(source)
    }

    /// The path inside the repository that manifest file `path` comes from.
    pub fn remote_path(&self, path: &str) -> String {
        match (&self.file, self.dir.as_str()) {
            (Some(file), _) => file.clone(),
            (None, "") => path.to_string(),
            (None, dir) => format!("{dir}/{path}"),
        }
    }

    /// True when the revision is a full commit hash (40 hex digits).
    pub fn is_commit(&self) -> bool {
        self.revision.len() == 40 && self.revision.chars().all(|c| c.is_ascii_hexdigit())
    }

    /// The source with its revision replaced by `commit` (what an installed manifest records).
    pub fn at_commit(&self, commit: &str) -> Self {
        HfSource { revision: commit.to_string(), ..self.clone() }
    }

    /// The source as manifests spell it.
    pub fn describe(&self) -> String {
        let path = self.file.as_deref().unwrap_or(&self.dir);
        if path.is_empty() {
            format!("hf:{}@{}", self.repo, self.revision)
        } else {
            format!("hf:{}@{}/{path}", self.repo, self.revision)
        }
    }
}
