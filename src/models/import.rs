//! Importing a user's own model: a Piper voice (`X.onnx` + `X.onnx.json`) or a Stable
//! Diffusion ONNX layout directory (`model_index.json`, `unet/model.onnx`, ...). Import
//! computes sizes and sha256s and writes a manifest, so imported models verify like pulled ones.

use std::path::{Path, PathBuf};

use super::ModelError;
use super::fetch::hash_file;
use super::layout;
use super::manifest::{self, Manifest, ManifestFile, ModelKind};

/// What an import will copy and the manifest it will write.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub manifest: Manifest,
    /// (path inside the model dir, source file).
    pub copies: Vec<(String, PathBuf)>,
}

/// Works out an import of `path` (a Piper `.onnx`, or a directory).
pub fn plan(path: &Path, name: Option<&str>, kind: Option<ModelKind>) -> Result<ImportPlan, ModelError> {
    let fail = |reason: String| ModelError::Import { path: path.to_path_buf(), reason };
    if !path.exists() {
        return Err(fail("no such file or directory".into()));
    }
    let (default_name, detected, copies) = if path.is_file() {
        piper_pair(path)
            .ok_or_else(|| fail("a file import must be a Piper voice X.onnx with X.onnx.json beside it".into()))?
    } else if layout::is_diffusion(path) {
        (dir_name(path), Some(ModelKind::Diffusion), walk(path).map_err(|e| fail(e.to_string()))?)
    } else {
        std::fs::read_dir(path).map_err(|e| fail(e.to_string()))?;
        let pairs: Vec<_> = layout::onnx_files(path).iter().filter_map(|p| piper_pair(p)).collect();
        match (pairs.len(), kind) {
            (1, None | Some(ModelKind::Tts)) => pairs.into_iter().next().ok_or_else(|| fail("no voice".into()))?,
            (n, None) if n > 1 => {
                return Err(fail("more than one Piper voice here; import the .onnx file itself".into()));
            }
            (_, Some(k)) => {
                let files = walk(path).map_err(|e| fail(e.to_string()))?;
                // A folder is copied as its ONNX model: one without any would install as
                // a model that fails at its first job.
                if !files.iter().any(|(rel, _)| rel.ends_with(".onnx")) {
                    return Err(fail(format!(
                        "no .onnx file in this folder, so it is no {} model to copy; checkpoints \
                         (.safetensors, .ckpt, .pth) are imported as the file itself",
                        k.as_str()
                    )));
                }
                (dir_name(path), Some(k), files)
            }
            _ => {
                return Err(fail(
                    "no model reelbox knows in this folder: not a Piper voice (X.onnx + X.onnx.json), nor a \
                     Stable Diffusion folder (model_index.json); checkpoints (.safetensors, .ckpt, .pth) are \
                     imported as the file itself; name the kind (--kind) to import another ONNX folder"
                        .into(),
                ));
            }
        }
    };
    let kind = kind.or(detected).ok_or_else(|| fail("cannot tell the model's kind; name it".into()))?;
    let name = name.map(str::to_owned).unwrap_or(default_name);
    if !manifest::valid_name(&name) {
        return Err(fail(format!("name {name:?} may only use letters, digits, '-', '_' and '.'")));
    }
    let manifest = manifest_of(path, name, kind, format!("imported from {}", path.display()), &copies)?;
    Ok(ImportPlan { manifest, copies })
}

/// The manifest of a converted model in `dir` (every file in it, hashed).
pub fn plan_converted(dir: &Path, name: &str, kind: ModelKind, summary: String) -> Result<Manifest, ModelError> {
    let copies = walk(dir).map_err(|e| ModelError::Import { path: dir.to_path_buf(), reason: e.to_string() })?;
    manifest_of(dir, name.to_string(), kind, summary, &copies)
}

/// True when `path` is a checkpoint to convert rather than ONNX files to copy: a file
/// that is not `.onnx` (`.pth`, `.pt`, `.ckpt`, `.safetensors`, `.bin`, or anything else,
/// which the converter then names as unknown), or a diffusers folder.
pub fn needs_conversion(path: &Path) -> bool {
    (path.is_file() && path.extension().is_none_or(|x| x != "onnx")) || is_diffusers_folder(path)
}

/// True for ONNX models, copied as they are: an `.onnx` file, or a folder with an ONNX
/// Stable Diffusion layout or `.onnx` files (and no PyTorch UNet to convert).
pub fn is_onnx(path: &Path) -> bool {
    if path.is_file() {
        return path.extension().is_some_and(|x| x == "onnx");
    }
    path.is_dir() && !is_diffusers_folder(path) && (layout::is_diffusion(path) || !layout::onnx_files(path).is_empty())
}

/// File endings of the checkpoints the converter reads (PyTorch pickles and safetensors).
pub const CHECKPOINT_EXTENSIONS: [&str; 5] = ["pth", "pt", "ckpt", "safetensors", "bin"];

/// True for a file whose ending says it is no model at all (`.png`, `.txt`, `.zip`): it is
/// refused at once instead of first creating the conversion environment (PyTorch, ~5.8 GB)
/// only for the converter to call it unknown. Files without an ending still go to it.
pub fn is_foreign_file(path: &Path) -> bool {
    path.is_file()
        && path.extension().and_then(|x| x.to_str()).is_some_and(|x| {
            let x = x.to_ascii_lowercase();
            x != "onnx" && !CHECKPOINT_EXTENSIONS.contains(&x.as_str())
        })
}

/// A diffusers (PyTorch) pipeline folder: `model_index.json` and a UNet with weights but
/// no ONNX export, which the converter turns into the ONNX layout.
pub fn is_diffusers_folder(path: &Path) -> bool {
    path.join("model_index.json").is_file()
        && path.join("unet/config.json").is_file()
        && !path.join("unet/model.onnx").exists()
}

/// The file that marks a staging directory as an import's (copy or conversion), written
/// when the import makes it and removed before it installs. A pull's staging directory
/// never has one: its partial downloads are kept on purpose, for the next pull to resume.
const IMPORT_MARKER: &str = ".reelbox-import";

/// A staging directory an import left when its process died (a crash, `kill -9`, a
/// power cut), removed by [`ModelStore::remove_stale_imports`]. Displayed, it is the line
/// the CLI and the `model_import` job's log say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleStaging {
    /// The model name the import was for.
    pub name: String,
    /// The folder that was removed.
    pub dir: PathBuf,
    /// The bytes it held.
    pub bytes: u64,
}

impl std::fmt::Display for StaleStaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} left by an import of {} that did not finish ({})",
            self.dir.display(),
            self.name,
            crate::disk::human_bytes(self.bytes)
        )
    }
}

/// A model name held by one import from its check until its install: the lock a pull of
/// the name takes too, so two imports of one name (CLI or daemon, at once) never fill one
/// staging directory or install over each other. Let go when dropped.
#[derive(Debug)]
pub struct NameClaim {
    _lock: std::fs::File,
}

impl super::ModelStore {
    /// Whether a model named `name` is installed, with a manifest or found as a
    /// directory: installing over it would move a manifest-less model directory aside.
    pub fn name_taken(&self, name: &str) -> bool {
        self.installed_manifest_path(name).exists()
            || super::Catalog::of(self).get(name).is_some_and(|c| c.dir().is_some())
    }

    /// A fresh, empty staging directory for importing `name` (whatever an earlier try left
    /// there is removed), marked as an import's. The caller holds the name's claim.
    pub fn import_staging(&self, name: &str) -> Result<PathBuf, ModelError> {
        let staging = self.staging_dir(name);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(super::io_err(&staging))?;
        let marker = staging.join(IMPORT_MARKER);
        std::fs::write(&marker, format!("pid {}\n", std::process::id())).map_err(super::io_err(&marker))?;
        Ok(staging)
    }

    /// Takes the import mark off a staging directory about to be installed, so the model
    /// folder holds only its own files.
    pub fn unmark_import_staging(&self, staging: &Path) -> Result<(), ModelError> {
        let marker = staging.join(IMPORT_MARKER);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(super::io_err(&marker)(e)),
            _ => Ok(()),
        }
    }

    /// Removes the staging directories of imports whose process died before it finished
    /// or cleaned up (a CLI import has no daemon to resume it, so nothing else would):
    /// those with the import mark whose name no import or pull holds now. A pull's
    /// resumable partial download (no mark) and a running import's folder (its name is
    /// locked) stay, in this process too: the daemon's own running imports hold their
    /// names' locks, and a second lock of one file conflicts with the first whoever takes
    /// it. Returns what went, by name.
    pub fn remove_stale_imports(&self) -> Vec<StaleStaging> {
        let root = self.staging_dir("");
        let Ok(entries) = std::fs::read_dir(&root) else { return Vec::new() };
        let mut gone = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            if !manifest::valid_name(&name) || !dir.join(IMPORT_MARKER).is_file() {
                continue;
            }
            // Held while removing, so no import or pull of the name starts meanwhile.
            let Ok(Some(_lock)) = self.try_lock_name(&name) else { continue };
            let bytes = super::catalog::dir_size(&dir);
            if std::fs::remove_dir_all(&dir).is_ok() {
                gone.push(StaleStaging { name, dir, bytes });
            }
        }
        gone.sort_by(|a, b| a.name.cmp(&b.name));
        gone
    }

    /// Claims `name` for importing `path`: refused while another import or pull of the
    /// name runs, or when a model of that name is installed (the old one is kept).
    pub fn claim_name(&self, name: &str, path: &Path) -> Result<NameClaim, ModelError> {
        let fail = |reason: String| ModelError::Import { path: path.to_path_buf(), reason };
        let Some(lock) = self.try_lock_name(name)? else {
            return Err(fail(format!(
                "another import or pull of {name} is running; wait for it to finish, or pick another name"
            )));
        };
        if self.name_taken(name) {
            return Err(fail(taken(name)));
        }
        Ok(NameClaim { _lock: lock })
    }
}

/// Why a name that is installed cannot be imported again.
fn taken(name: &str) -> String {
    format!("a model named {name} is already installed (kept as it is); `reelbox rm {name}` first or pick another name")
}

/// A manifest listing `copies` (hashed) under `name`; `path` is what errors name.
fn manifest_of(
    path: &Path,
    name: String,
    kind: ModelKind,
    summary: String,
    copies: &[(String, PathBuf)],
) -> Result<Manifest, ModelError> {
    let fail = |reason: String| ModelError::Import { path: path.to_path_buf(), reason };
    if copies.is_empty() {
        return Err(fail("nothing to import".into()));
    }
    let mut files = Vec::with_capacity(copies.len());
    for (rel, src) in copies {
        let (sha256, size) = hash_file(src).map_err(|e| fail(format!("{}: {e}", src.display())))?;
        files.push(ManifestFile { path: rel.clone(), size, sha256 });
    }
    let manifest = Manifest { summary, ..Manifest::new(name, kind, files) };
    manifest.validate().map_err(|e| fail(e.to_string()))?;
    Ok(manifest)
}

fn dir_name(path: &Path) -> String {
    path.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "imported".into())
}

type Found = (String, Option<ModelKind>, Vec<(String, PathBuf)>);

/// `X.onnx` with `X.onnx.json` (or `X.json`) → name X and the two files.
fn piper_pair(onnx: &Path) -> Option<Found> {
    let json = layout::piper_config(onnx)?;
    let file = onnx.file_name()?.to_string_lossy().into_owned();
    let stem = onnx.file_stem()?.to_string_lossy().into_owned();
    // Installed voices keep Piper's naming, which Voice::load looks for.
    Some((stem, Some(ModelKind::Tts), vec![(file.clone(), onnx.to_path_buf()), (format!("{file}.json"), json)]))
}

/// Every regular file under `root` (dotfiles skipped), as (relative path, file).
fn walk(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file()
                && let Ok(rel) = p.strip_prefix(root)
            {
                out.push((rel.to_string_lossy().replace('\\', "/"), p.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piper_pair_is_found_from_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("v.onnx"), b"onnx").expect("write");
        std::fs::write(dir.path().join("v.onnx.json"), b"{}").expect("write");
        let plan = plan(dir.path(), None, None).expect("plan");
        assert_eq!(plan.manifest.name, "v");
        assert_eq!(plan.manifest.kind, ModelKind::Tts);
        let paths: Vec<_> = plan.manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["v.onnx", "v.onnx.json"]);
        // `printf onnx | sha256sum`
        assert_eq!(plan.manifest.files[0].sha256, "87e93f89f2be0db364e8be052f79f389e6c2da239831922e24513288af522a43");
        assert_eq!(plan.manifest.files[0].size, 4);
    }

    #[test]
    fn diffusion_layout_is_recognised_and_walked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("my-sd");
        std::fs::create_dir_all(root.join("unet")).expect("mkdir");
        std::fs::write(root.join("model_index.json"), b"{}").expect("write");
        std::fs::write(root.join("unet/model.onnx"), b"x").expect("write");
        std::fs::write(root.join(".DS_Store"), b"x").expect("write");
        let plan = plan(&root, None, None).expect("plan");
        assert_eq!(plan.manifest.name, "my-sd");
        assert_eq!(plan.manifest.kind, ModelKind::Diffusion);
        let paths: Vec<_> = plan.manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["model_index.json", "unet/model.onnx"]);
    }

    /// The daemon runs imports on its own threads: a sweep there must pass over the folder
    /// of an import this very process is running, not only other processes' ones.
    #[test]
    fn a_sweep_keeps_the_folder_of_an_import_this_process_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::models::ModelStore::with_dirs(dir.path().join("models"), Vec::new(), Vec::new());
        let running = store.claim_name("running", dir.path()).expect("claim");
        let busy = store.import_staging("running").expect("staging");
        let left = {
            let _claim = store.claim_name("crashed", dir.path()).expect("claim");
            let left = store.import_staging("crashed").expect("staging");
            std::fs::write(left.join("model.onnx"), vec![0u8; 2000]).expect("write");
            left
        };
        let gone = store.remove_stale_imports();
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!((gone[0].name.as_str(), &gone[0].dir), ("crashed", &left));
        assert!(gone[0].to_string().contains("an import of crashed that did not finish (2.0 kB)"), "{}", gone[0]);
        assert!(!left.exists() && busy.exists());
        drop(running);
    }

    #[test]
    fn unknown_layout_asks_for_a_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.onnx"), b"x").expect("write");
        let err = plan(dir.path(), None, None).expect_err("needs kind").to_string();
        assert!(err.contains("name the kind"), "{err}");
        assert!(plan(dir.path(), Some("up"), Some(ModelKind::Upscale)).is_ok());
    }
}
