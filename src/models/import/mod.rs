//! Importing a user's own model: ready ONNX files copied as they are (`plan.rs`: a Piper
//! voice, a Stable Diffusion ONNX folder, a single-file model's `.onnx`), checked by the
//! caller before they are installed; checkpoints looked at before they go to the
//! converter (`checkpoint.rs`); the staging folder, its mark, and one import per name.
//! Import computes sizes and sha256s and writes a manifest, so imported models verify like
//! pulled ones.

use std::path::{Path, PathBuf};

use super::manifest::{self, ModelKind};
use super::{ModelError, VERIFIED_MARKER, io_err, layout};
use crate::time::now_ms;

mod checkpoint;
mod plan;

pub use checkpoint::{CheckpointError, check_checkpoint};
pub use plan::{ImportPlan, default_file_name, plan, plan_converted, source_of};

/// Where an import was asked for, so that what it says to change names what the asker sets:
/// a flag of `reelbox models import`, or a field of `POST /api/v1/models/import` (the
/// `model_import` job's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `reelbox models import` on this machine.
    Cli,
    /// A `model_import` job (the API, the web studio).
    Api,
}

impl Via {
    /// Option `field` (as the API spells it: `kind`, `fp16`) as the asker names it: `--kind`,
    /// or the field "kind".
    pub fn name(self, field: &str) -> String {
        match self {
            Via::Cli => format!("--{field}"),
            Via::Api => format!("the field \"{field}\""),
        }
    }

    /// Option `field` given `value` (a JSON literal for the API: `"upscale"`, `false`) as
    /// the asker writes it: `--kind upscale`, or `"kind": "upscale"`.
    pub fn set(self, field: &str, value: &str) -> String {
        match self {
            Via::Cli => format!("--{field} {}", value.trim_matches('"')),
            Via::Api => format!("\"{field}\": {value}"),
        }
    }
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

    /// Imports a user's ready model ([`plan`]) and writes its manifest. `check` looks at
    /// the files where they lie (the caller loads them in the pipeline that runs the kind)
    /// once the name is claimed and before anything is copied: a refused model installs
    /// nothing. `via` is where it was asked for, which its refusals name options for.
    pub fn import<E: From<ModelError>>(
        &self,
        path: &Path,
        name: Option<&str>,
        kind: Option<ModelKind>,
        via: Via,
        check: impl FnOnce(&ImportPlan) -> Result<(), E>,
    ) -> Result<ImportPlan, E> {
        let plan = plan(path, name, kind, via)?;
        // Any installed model of that name, with a manifest or found as a directory: the
        // install below would otherwise move a manifest-less model directory aside.
        let _claim = self.claim_name(&plan.manifest.name, path)?;
        check(&plan)?;
        let staging = self.import_staging(&plan.manifest.name)?;
        let installed = self.install_copies(&staging, &plan);
        if installed.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        installed?;
        Ok(plan)
    }

    /// Copies `plan`'s files into `staging` and installs them as its model.
    fn install_copies(&self, staging: &Path, plan: &ImportPlan) -> Result<(), ModelError> {
        for (rel, src) in &plan.copies {
            let dest = staging.join(rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            std::fs::copy(src, &dest).map_err(io_err(src))?;
        }
        std::fs::write(staging.join(VERIFIED_MARKER), now_ms().to_string()).map_err(io_err(staging))?;
        self.unmark_import_staging(staging)?;
        self.install_dir(staging, &plan.manifest)
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

#[cfg(test)]
mod tests {
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
}
