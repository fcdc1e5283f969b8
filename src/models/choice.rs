//! Defaults the user chose with `reelbox models default KIND NAME`, kept in
//! `<data>/model-defaults.toml` (`diffusion = "sd-turbo"`, one key per kind). A chosen
//! default comes before the config's `[defaults]`: it is the newer, explicit word.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::catalog::Catalog;
use super::manifest::ModelKind;
use super::{ModelError, ModelStore, io_err, write_atomic};

/// The file chosen defaults live in, inside the data dir.
const FILE: &str = "model-defaults.toml";

/// Chosen defaults by kind (empty when none were chosen or the file is unreadable).
pub(super) fn read(state_dir: &Path) -> BTreeMap<ModelKind, String> {
    let path = state_dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else { return BTreeMap::new() };
    match toml::from_str::<BTreeMap<String, String>>(&text) {
        Ok(map) => map.into_iter().filter_map(|(k, v)| Some((ModelKind::parse(&k)?, v))).collect(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable model defaults");
            BTreeMap::new()
        }
    }
}

/// The chosen default of `kind` in `state_dir`.
pub(super) fn chosen(state_dir: &Path, kind: ModelKind) -> Option<String> {
    read(state_dir).remove(&kind).filter(|n| !n.is_empty())
}

impl ModelStore {
    fn defaults_path(&self) -> PathBuf {
        self.state_dir.join(FILE)
    }

    /// Makes installed model `name` the default of its kind (what requests naming no
    /// model use); returns its kind. Refuses a model that is not installed or not of `kind`.
    pub fn set_default(&self, kind: ModelKind, name: &str) -> Result<ModelKind, ModelError> {
        if kind == ModelKind::Embedding {
            return Err(ModelError::NoDefault { kind });
        }
        let catalog = Catalog::of(self);
        let Some(model) = catalog.get(name) else { return Err(self.unknown(name)) };
        catalog.refuse_other_kind(name, kind)?;
        if model.dir().is_none() {
            return Err(ModelError::NotInstalled { name: name.to_string() });
        }
        let mut all = read(&self.state_dir);
        all.insert(kind, name.to_string());
        let map: BTreeMap<&str, &str> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let text = toml::to_string(&map).unwrap_or_default();
        std::fs::create_dir_all(&self.state_dir).map_err(io_err(&self.state_dir))?;
        write_atomic(&self.defaults_path(), text.as_bytes())?;
        Ok(kind)
    }
}
