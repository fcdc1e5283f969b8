//! `reelbox models verify`: every installed file of a model against its sha256, then the
//! kind's load check; the time of the last full match is kept beside the model.

use std::path::Path;

use serde::Serialize;

use super::{Catalog, Manifest, ModelError, ModelStore, VERIFIED_MARKER, fetch, refetch_advice, write_atomic};
use crate::store::records::now_ms;

/// One file's verification result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCheck {
    pub path: String,
    pub ok: bool,
    pub problem: Option<String>,
}

/// Result of `verify`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub name: String,
    pub ok: bool,
    pub files: Vec<FileCheck>,
    /// Why the model does not load, when its files match their sha256s but it fails the
    /// load check (an import of files that were never a model of its kind).
    pub unusable: Option<String>,
    /// How to get the model whole again when it is not ok ([`refetch_advice`]).
    pub fix: Option<String>,
}

impl ModelStore {
    /// Checks every installed file against its sha256; records the time when all match.
    pub fn verify(&self, name: &str) -> Result<VerifyReport, ModelError> {
        self.verify_with(name, |_, _| None)
    }

    /// [`ModelStore::verify`], and when every file matches, `loads` (given the manifest and
    /// the model's folder) says why the model does not load, if it does not; the time is
    /// recorded when both pass.
    pub fn verify_with(
        &self,
        name: &str,
        loads: impl FnOnce(&Manifest, &Path) -> Option<String>,
    ) -> Result<VerifyReport, ModelError> {
        let m = self.installed_manifest(name).ok_or_else(|| ModelError::NotInstalled { name: name.to_string() })?;
        let dir = self.model_dir(name);
        let files: Vec<FileCheck> = m
            .files
            .iter()
            .map(|f| {
                let problem = match fetch::hash_file(&dir.join(&f.path)) {
                    Err(e) => Some(format!("cannot read: {e}")),
                    Ok((_, size)) if size != f.size => Some(format!("size {size}, expected {}", f.size)),
                    Ok((sha, _)) if !sha.eq_ignore_ascii_case(&f.sha256) => {
                        Some(format!("sha256 {sha}, expected {}", f.sha256))
                    }
                    Ok(_) => None,
                };
                FileCheck { path: f.path.clone(), ok: problem.is_none(), problem }
            })
            .collect();
        let unusable = if files.iter().all(|f| f.ok) { loads(&m, &dir) } else { None };
        let ok = files.iter().all(|f| f.ok) && unusable.is_none();
        let marker = dir.join(VERIFIED_MARKER);
        // Written by a rename, which changes the model folder's own entries: a daemon's
        // kept listing (`catalog/kept.rs`) sees a CLI's verify too.
        let marked = if ok {
            write_atomic(&marker, now_ms().to_string().as_bytes())
        } else {
            let _ = std::fs::remove_file(&marker);
            Ok(())
        };
        Catalog::forget(&self.models_dir);
        marked?;
        let fix = (!ok).then(|| refetch_advice(self, name));
        Ok(VerifyReport { name: name.to_string(), ok, files, unusable, fix })
    }
}
