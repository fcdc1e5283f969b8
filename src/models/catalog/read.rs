//! One reading of the catalog from disk: every installed and shipped manifest, and every
//! model directory of the models dir, as they are now. [`super::kept`] decides when a
//! reading is still good.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Catalog, CatalogModel, Origin, builtin_defaults};
use crate::models::manifest::ModelKind;
use crate::models::{InstallState, ModelEntry, ModelStore, layout};

/// Numbers each reading, so what is worked out from one (a worker's heartbeat details) is
/// kept exactly as long as the reading is.
static READINGS: AtomicU64 = AtomicU64::new(1);

/// Reads the catalog of a model store (its models dir and manifest dirs) now.
pub(super) fn read(store: &ModelStore) -> Catalog {
    let mut by_name: BTreeMap<String, CatalogModel> = store
        .manifests()
        .into_values()
        .map(|m| {
            let entry = store.entry(&m);
            let created = entry.path.as_deref().map_or(0, modified_secs);
            (m.name.clone(), CatalogModel { entry, origin: Origin::Manifest, manifest: Some(m), created })
        })
        .collect();
    for (name, dir) in model_dirs(store.models_dir()) {
        if by_name.get(&name).is_some_and(|m| m.dir().is_some()) {
            continue; // installed from a manifest: listed once, as that
        }
        let Some(kind) = dir_kind(&dir, &name) else { continue };
        let shipped = by_name.remove(&name).and_then(|m| m.manifest);
        let entry = ModelEntry {
            name: name.clone(),
            kind,
            demo: false,
            summary: String::new(),
            size: dir_size(&dir),
            state: InstallState::Installed,
            verified_at: None,
            path: Some(dir.clone()),
            sources: Vec::new(),
        };
        let created = modified_secs(&dir);
        by_name.insert(name, CatalogModel { entry, origin: Origin::Directory, manifest: shipped, created });
    }
    Catalog {
        models_dir: store.models_dir().to_path_buf(),
        models: by_name.into_values().collect(),
        reading: READINGS.fetch_add(1, Ordering::Relaxed),
        worked_out: Default::default(),
    }
}

/// The kind a model directory without an installed manifest shows: its files' layout, else
/// for a bare `model.onnx` (which does not tell lip-sync from upscale or face) the kind
/// whose built-in default has its name (`wav2lip` linked or copied in by hand).
pub(super) fn dir_kind(dir: &Path, name: &str) -> Option<ModelKind> {
    layout::detect(dir, name).or_else(|| {
        let kinds = [ModelKind::Lipsync, ModelKind::Upscale, ModelKind::Face];
        let named = kinds.into_iter().find(|k| builtin_defaults(*k).contains(&name))?;
        dir.join("model.onnx").is_file().then_some(named)
    })
}

/// Model directories in `models_dir` by name; the installer's staging, trash and lock
/// directories start with a dot and are skipped.
fn model_dirs(models_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(models_dir) else { return Vec::new() };
    let mut out: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let path = e.path();
            (!name.starts_with('.') && path.is_dir()).then_some((name, path))
        })
        .collect();
    out.sort();
    out
}

/// Modification time of `path` itself (a link's own, not its target's) in Unix seconds,
/// 0 when unknown: when a linked model was installed, not when its files were made.
fn modified_secs(path: &Path) -> i64 {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Bytes of the files under `dir` (links followed; model folders are small trees).
pub(in crate::models) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match std::fs::metadata(&p) {
                Ok(md) if md.is_dir() => stack.push(p),
                Ok(md) => total += md.len(),
                Err(_) => {}
            }
        }
    }
    total
}
