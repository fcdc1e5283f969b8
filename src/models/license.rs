//! Licence acceptance: a model whose licence forbids commercial use (`noncommercial` in its
//! manifest) is pulled only once the user has accepted that licence with
//! `--accept-license`, like a gated hub repository. Acceptance is remembered per model in
//! `<data>/accepted-licenses/NAME` (holding the licence's name: a manifest that changes
//! its licence asks again).

use std::path::PathBuf;

use super::manifest::{Manifest, valid_name};
use super::{ModelError, ModelStore, io_err, write_atomic};

impl ModelStore {
    fn acceptance_path(&self, name: &str) -> Option<PathBuf> {
        valid_name(name).then(|| self.licenses_dir.join(name))
    }

    /// True when `m` needs no acceptance or its licence was accepted.
    pub fn license_accepted(&self, m: &Manifest) -> bool {
        let (true, Some(license)) = (m.noncommercial, m.license.as_deref()) else { return true };
        self.acceptance_path(&m.name)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .is_some_and(|text| text.trim() == license.trim())
    }

    /// Records that the user accepted the licence of model `name` (its pullable manifest's).
    pub fn accept_license(&self, name: &str) -> Result<(), ModelError> {
        let m = self.manifest(name)?;
        let (Some(license), Some(path)) = (m.license.as_deref(), self.acceptance_path(name)) else { return Ok(()) };
        std::fs::create_dir_all(&self.licenses_dir).map_err(io_err(&self.licenses_dir))?;
        write_atomic(&path, format!("{license}\n").as_bytes())
    }

    /// The refusal for a model whose licence is not accepted yet.
    pub fn check_license(&self, m: &Manifest) -> Result<(), ModelError> {
        if self.license_accepted(m) {
            return Ok(());
        }
        Err(ModelError::LicenseNotAccepted { name: m.name.clone(), license: m.license.clone().unwrap_or_default() })
    }
}
