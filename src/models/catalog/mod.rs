//! The one model catalog: every model reelbox knows, installed or available, each listed
//! once under its name. Three things make it:
//!
//! - installed manifests (`<models>/NAME.toml` beside `<models>/NAME/`): pulled or imported;
//! - model directories without one whose files show their kind ([`super::layout`]: a
//!   diffusion layout or a Piper voice), e.g. a linked test model or a hand-copied voice;
//! - shipped manifests not installed: what `reelbox pull` can install. Bundled copies of
//!   demo models are sources of those manifests, never a second installed model.
//!
//! Job kinds, the native and compatibility APIs and the CLI all ask this catalog, so what
//! `reelbox models list` shows is what a job can use. Reading one (`read.rs`) parses every
//! manifest and walks the model folders, so [`Catalog::load`], asked per request, per
//! placement pass and per heartbeat, answers the last reading while the models dir looks
//! the same (`kept.rs`).

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::availability::ModelProblem;
use super::manifest::{Manifest, ModelKind};
use super::{ModelEntry, ModelError, ModelStore};
use crate::config::Config;

mod kept;
mod read;

pub(in crate::models) use read::dir_size;

/// Where a catalog entry's facts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A manifest: pullable, its files checked by sha256.
    Manifest,
    /// A model directory found in the models dir without an installed manifest.
    Directory,
}

impl Origin {
    /// The origin as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Manifest => "manifest",
            Origin::Directory => "directory",
        }
    }
}

/// One model of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogModel {
    /// Name, kind, state, size and the installed directory.
    pub entry: ModelEntry,
    pub origin: Origin,
    /// The manifest the model was installed from, else the shipped one that can install it.
    pub manifest: Option<Manifest>,
    /// Modification time of the installed directory, Unix seconds (0 when not installed).
    pub created: i64,
}

impl CatalogModel {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// What the model is for.
    pub fn kind(&self) -> ModelKind {
        self.entry.kind
    }

    /// The installed directory, when installed (damaged ones included: their state says so).
    pub fn dir(&self) -> Option<&Path> {
        self.entry.path.as_deref()
    }

    /// The sampling settings its installed manifest gives (`[tuning]`), as
    /// [`Catalog::tuning_of`] reads them: a shipped manifest's count only once installed.
    pub fn tuning(&self) -> Option<super::Tuning> {
        let installed = self.origin == Origin::Manifest && self.dir().is_some();
        self.manifest.as_ref().filter(|_| installed).and_then(|m| m.tuning)
    }
}

/// Installed and available models of one models dir, sorted by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    models_dir: PathBuf,
    /// Shared with the kept reading: a clone is a pointer's copy.
    models: Arc<[CatalogModel]>,
    /// Which reading this is (see [`Catalog::reading`]).
    reading: u64,
    /// What callers worked out from this reading, one value per type
    /// ([`Catalog::worked_out`]); shared by its clones, so kept as long as the reading is.
    worked_out: Arc<Mutex<Vec<Arc<dyn Any + Send + Sync>>>>,
}

impl Catalog {
    /// The catalog of `config`'s models dir and the shipped manifests, as they are now: the
    /// last reading while no entry of those dirs changed since and it is under 30 s old,
    /// else read again (`kept.rs` says what is looked at and why).
    pub fn load(config: &Config) -> Self {
        kept::catalog(&ModelStore::new(config))
    }

    /// The catalog of a model store (its models dir and manifest dirs), read from disk now.
    pub fn of(store: &ModelStore) -> Self {
        read::read(store)
    }

    /// What `work_out` makes of this reading, made once per reading and kept with it (the
    /// value of the first call with its type): what is worked out from the models' files
    /// (a box's model details, a listing's drawing defaults) is read again exactly when the
    /// catalog is. `work_out` must not ask this reading for another value.
    pub fn worked_out<T: Any + Send + Sync>(&self, work_out: impl FnOnce(&Catalog) -> T) -> Arc<T> {
        let mut kept = self.worked_out.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = kept.iter().find_map(|v| v.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(work_out(self));
        kept.push(made.clone());
        made
    }

    /// Drops the kept reading of `models_dir`: this process changed it (installed, removed
    /// or verified a model), so the next [`Catalog::load`] reads it again.
    pub fn forget(models_dir: &Path) {
        kept::forget(models_dir)
    }

    /// Which reading of the disk this catalog is: two catalogs with the same number are
    /// the same reading, so what is worked out from one stays good for the other.
    pub fn reading(&self) -> u64 {
        self.reading
    }

    /// The installed directory of the model of `kind` named exactly `name`, reading only
    /// that model's files: what `Catalog::load(config).installed_dir(kind, name)` answers,
    /// without listing every model (for the paths that run a job or check a named model).
    pub fn installed_dir_of(config: &Config, kind: ModelKind, name: &str) -> Option<PathBuf> {
        Self::installed_dir_in(&ModelStore::new(config), kind, name)
    }

    /// [`Catalog::installed_dir_of`] for a model store.
    pub fn installed_dir_in(store: &ModelStore, kind: ModelKind, name: &str) -> Option<PathBuf> {
        // Only names the listing could hold: one directory inside the models dir.
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
            return None;
        }
        let dir = store.model_dir(name);
        if !dir.is_dir() {
            return None;
        }
        let shown = match store.installed_manifest(name) {
            Some(m) => Some(m.kind),
            None => read::dir_kind(&dir, name),
        };
        (shown == Some(kind)).then_some(dir)
    }

    /// The first of `names` installed from a manifest marked `cuda_only` (reads only
    /// those models' manifests: called for every submission and placement).
    pub fn cuda_only_of(config: &Config, names: &[String]) -> Option<String> {
        let store = ModelStore::with_dirs(config.models_dir(), Vec::new(), Vec::new());
        names
            .iter()
            .filter(|n| super::manifest::valid_name(n))
            .find(|n| store.installed_manifest(n).is_some_and(|m| m.cuda_only))
            .cloned()
    }

    /// The sampling settings installed model `name`'s manifest gives (`[tuning]`); a
    /// listed model's are [`CatalogModel::tuning`].
    pub fn tuning_of(config: &Config, name: &str) -> Option<super::Tuning> {
        if !super::manifest::valid_name(name) {
            return None;
        }
        ModelStore::with_dirs(config.models_dir(), Vec::new(), Vec::new()).installed_manifest(name)?.tuning
    }

    /// The directory models are installed into.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// Every model, installed or available, sorted by name.
    pub fn models(&self) -> &[CatalogModel] {
        &self.models
    }

    /// The model named `name`, installed or available.
    pub fn get(&self, name: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.name() == name)
    }

    /// Installed models of `kind`, sorted by name.
    pub fn installed(&self, kind: ModelKind) -> impl Iterator<Item = &CatalogModel> {
        self.models.iter().filter(move |m| m.kind() == kind && m.dir().is_some())
    }

    /// Names of the installed models of `kind`, sorted.
    pub fn installed_names(&self, kind: ModelKind) -> Vec<String> {
        self.installed(kind).map(|m| m.name().to_string()).collect()
    }

    /// Refuses model `name` where a model of `wanted` is asked for and the catalog lists
    /// `name` as another kind, installed or not (`"wav2lip_gan" is a lipsync model, not
    /// upscale`): the one rule `reelbox models default` and every request's model field
    /// apply. A name the catalog does not list passes (a folder whose files tell no kind).
    pub fn refuse_other_kind(&self, name: &str, wanted: ModelKind) -> Result<(), ModelError> {
        match self.get(name).map(CatalogModel::kind) {
            Some(kind) if kind != wanted => Err(ModelError::WrongKind { name: name.to_string(), kind, wanted }),
            _ => Ok(()),
        }
    }

    /// The directory of the installed model of `kind` named exactly `name`.
    pub fn installed_dir(&self, kind: ModelKind, name: &str) -> Option<PathBuf> {
        self.installed(kind).find(|m| m.name() == name).and_then(|m| m.dir()).map(Path::to_path_buf)
    }

    /// The model of `kind` a request naming none runs, and the one `models list` tags as
    /// default: see [`Catalog::default_model`]. Uses this listing instead of reading the
    /// models dir again.
    pub fn default_name(&self, kind: ModelKind, config: &Config) -> Option<String> {
        decide(kind, config, |n| self.installed_dir(kind, n).is_some(), || self.only_installed(kind))
    }

    /// The model of `kind` a request naming none runs (image, speech, lip-sync, upscale,
    /// face detection and every stage of a render ask this, as does `models list` through
    /// [`Catalog::default_name`]). In order, the first that is installed: the one chosen
    /// with `reelbox models default KIND NAME`, the config's `[defaults]`, the kind's
    /// built-in defaults ([`builtin_defaults`]); else the only installed model of the kind;
    /// else none (a request must name one; [`Catalog::no_default`] says how to get one).
    /// Reads only the named models' directories unless it comes to "the only installed
    /// one", so a choice made while the daemon runs counts at the next request.
    pub fn default_model(config: &Config, kind: ModelKind) -> Option<String> {
        decide(
            kind,
            config,
            |n| Self::installed_dir_of(config, kind, n).is_some(),
            || Self::load(config).only_installed(kind),
        )
    }

    /// [`Catalog::default_model`]'s rule over models installed elsewhere (a head's worker
    /// boxes): `installed` says whether one is, `only_installed` names the only one.
    pub fn default_among(
        config: &Config,
        kind: ModelKind,
        installed: impl Fn(&str) -> bool,
        only_installed: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        decide(kind, config, installed, only_installed)
    }

    /// Why `kind` has no default model, and what to do: pull one, or choose among those
    /// installed (the words of [`Catalog::no_default_problem`], for callers with no use for
    /// the data).
    pub fn no_default(config: &Config, kind: ModelKind) -> String {
        Self::no_default_problem(config, kind).no_default_text()
    }

    /// Why `kind` has no default model, as data: none installed (with the pull of a small
    /// one the catalog has), or several installed and none chosen.
    pub fn no_default_problem(config: &Config, kind: ModelKind) -> ModelProblem {
        let store = ModelStore::new(config);
        let installed = Self::of(&store).installed_names(kind);
        // The last built-in default a pull can fetch is the small one (a demo model); an
        // imported model of a built-in default's name (`face-detector`) cannot be pulled.
        let pull = builtin_defaults(kind).iter().rev().find(|n| store.can_pull(n)).map(|n| n.to_string());
        ModelProblem {
            kind: kind.as_str().to_string(),
            name: None,
            state: if installed.is_empty() { "none_installed" } else { "no_default" }.to_string(),
            pull: if installed.is_empty() { pull } else { None },
            close: Vec::new(),
            installed,
        }
    }

    fn only_installed(&self, kind: ModelKind) -> Option<String> {
        match self.installed_names(kind).as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }
}

/// The one rule behind [`Catalog::default_model`], over a way to tell whether a model of
/// `kind` is installed and a way to find the only installed one.
fn decide(
    kind: ModelKind,
    config: &Config,
    installed: impl Fn(&str) -> bool,
    only_installed: impl FnOnce() -> Option<String>,
) -> Option<String> {
    let chosen = super::choice::chosen(&config.data_dir, kind);
    let builtin = builtin_defaults(kind).iter().map(|n| n.to_string());
    chosen
        .into_iter()
        .chain(configured_default(kind, config))
        .chain(builtin)
        .find(|n| installed(n))
        .or_else(only_installed)
}

/// A kind's built-in defaults, in order: the shipped catalog's model for it, then the demo
/// model `reelbox setup` installs. A built-in default wins over "the only installed one",
/// so installing another model (an import, a second upscaler) never changes what a
/// request that worked runs; pulling the catalog's model makes it the one used.
pub fn builtin_defaults(kind: ModelKind) -> &'static [&'static str] {
    match kind {
        ModelKind::Diffusion => &["sd-turbo", "demo-shapes"],
        ModelKind::Tts => &[crate::config::defaults::DEFAULT_VOICE],
        ModelKind::Lipsync => &["wav2lip", "demo-presenter"],
        ModelKind::Upscale => &["realesrgan-x4", "demo-upscaler"],
        // `face-detector` is the name lip-sync looked for before the catalog shipped one.
        ModelKind::Face => &["ultraface-320", "face-detector"],
        // Prompts name embeddings; none is ever one by default.
        ModelKind::Embedding => &[],
    }
}

/// The default `[defaults]` names for `kind`, when it names one.
fn configured_default(kind: ModelKind, config: &Config) -> Option<String> {
    let configured = match kind {
        ModelKind::Diffusion => config.defaults.image_model.clone(),
        ModelKind::Tts => Some(config.defaults.voice.clone()),
        ModelKind::Lipsync => config.defaults.lipsync_model.clone(),
        ModelKind::Upscale => config.defaults.upscale_model.clone(),
        ModelKind::Face => config.defaults.face_model.clone(),
        ModelKind::Embedding => None,
    };
    configured.filter(|n| !n.is_empty())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const SHA: &str = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06";

    /// A models dir with a diffusion layout, a voice, an installer dir and an empty dir,
    /// and a manifest dir shipping `shipped-voice` and the installed `tiny-sd`.
    pub(in crate::models) fn fake() -> (tempfile::TempDir, ModelStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let models = dir.path().join("models");
        let sd = models.join("tiny-sd");
        std::fs::create_dir_all(&sd).expect("mkdir");
        std::fs::write(sd.join("model_index.json"), "{}").expect("write");
        let voice = models.join("en_US-joe-medium");
        std::fs::create_dir_all(&voice).expect("mkdir");
        std::fs::write(voice.join("en_US-joe-medium.onnx"), "x").expect("write");
        std::fs::write(voice.join("en_US-joe-medium.onnx.json"), "{}").expect("write");
        std::fs::create_dir_all(models.join(".staging/other")).expect("mkdir");
        std::fs::create_dir_all(models.join("empty")).expect("mkdir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        for (name, kind) in [("shipped-voice", "tts"), ("tiny-sd", "diffusion")] {
            let text = format!(
                "name = \"{name}\"\nkind = \"{kind}\"\n[[files]]\npath = \"model_index.json\"\nsize = 2\nsha256 = \"{SHA}\"\n"
            );
            std::fs::write(manifests.join(format!("{name}.toml")), &text).expect("write");
        }
        // tiny-sd is installed from its manifest too: it must still be listed once.
        std::fs::copy(manifests.join("tiny-sd.toml"), models.join("tiny-sd.toml")).expect("copy");
        let store = ModelStore::with_dirs(models, vec![manifests], Vec::new());
        (dir, store)
    }

    #[test]
    fn one_model_lookup_agrees_with_the_whole_listing() {
        let (_dir, store) = fake();
        let catalog = Catalog::of(&store);
        for kind in [ModelKind::Diffusion, ModelKind::Tts, ModelKind::Upscale] {
            for name in ["tiny-sd", "en_US-joe-medium", "shipped-voice", "empty", ".staging", "../models/tiny-sd", ""] {
                assert_eq!(
                    Catalog::installed_dir_in(&store, kind, name),
                    catalog.installed_dir(kind, name),
                    "{kind:?} {name:?}"
                );
            }
        }
        assert!(Catalog::installed_dir_in(&store, ModelKind::Diffusion, "tiny-sd").is_some(), "the check can fail");
    }

    #[test]
    fn every_model_is_listed_once_with_its_kind_and_origin() {
        let (_dir, store) = fake();
        let catalog = Catalog::of(&store);
        let rows: Vec<(&str, ModelKind, Origin, bool)> =
            catalog.models().iter().map(|m| (m.name(), m.kind(), m.origin, m.dir().is_some())).collect();
        assert_eq!(
            rows,
            [
                ("en_US-joe-medium", ModelKind::Tts, Origin::Directory, true),
                ("shipped-voice", ModelKind::Tts, Origin::Manifest, false),
                ("tiny-sd", ModelKind::Diffusion, Origin::Manifest, true),
            ]
        );
        assert_eq!(catalog.installed_names(ModelKind::Tts), ["en_US-joe-medium"]);
        assert!(catalog.get("tiny-sd").and_then(|m| m.manifest.as_ref()).is_some());
    }

    #[test]
    fn import_refuses_the_name_of_a_model_found_as_a_directory() {
        let (dir, store) = fake();
        let drop = dir.path().join("drop");
        std::fs::create_dir_all(&drop).expect("mkdir");
        let voice = drop.join("en_US-joe-medium.onnx");
        std::fs::write(&voice, "y").expect("write");
        std::fs::write(drop.join("en_US-joe-medium.onnx.json"), "{}").expect("write");
        let unchecked = |_: &crate::models::import::ImportPlan| Ok::<_, crate::models::ModelError>(());
        let err = store.import(&voice, None, None, crate::models::import::Via::Cli, unchecked).expect_err("taken");
        assert!(err.to_string().contains("already installed"), "{err}");
        let kept = store.models_dir().join("en_US-joe-medium/en_US-joe-medium.onnx");
        assert_eq!(std::fs::read(kept).expect("kept"), b"x", "the installed voice is left alone");
    }

    #[test]
    fn the_default_is_chosen_configured_built_in_or_only_installed_while_installed() {
        let (dir, store) = fake();
        let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        config.models_dir = Some(store.models_dir().to_path_buf());
        let both = |config: &Config, kind| {
            let listed = Catalog::load(config).default_name(kind, config);
            assert_eq!(listed, Catalog::default_model(config, kind), "{kind:?}: the listing and requests agree");
            listed
        };
        assert_eq!(both(&config, ModelKind::Diffusion).as_deref(), Some("tiny-sd"), "the only installed one");
        assert_eq!(both(&config, ModelKind::Upscale), None, "none installed");
        config.defaults.image_model = Some("other".into());
        assert_eq!(both(&config, ModelKind::Diffusion).as_deref(), Some("tiny-sd"), "a configured one not installed");
        let models = store.models_dir();
        std::fs::create_dir_all(models.join("demo-shapes")).expect("mkdir");
        std::fs::write(models.join("demo-shapes/model_index.json"), "{}").expect("write");
        assert_eq!(both(&config, ModelKind::Diffusion).as_deref(), Some("demo-shapes"), "built-in over another");
        config.defaults.image_model = Some("tiny-sd".into());
        assert_eq!(both(&config, ModelKind::Diffusion).as_deref(), Some("tiny-sd"), "configured over built-in");
        let chooser =
            ModelStore::with_dirs(models.to_path_buf(), Vec::new(), Vec::new()).remembering_in(config.data_dir.clone());
        chooser.set_default(ModelKind::Diffusion, "demo-shapes").expect("choose");
        assert_eq!(both(&config, ModelKind::Diffusion).as_deref(), Some("demo-shapes"), "chosen over configured");
        std::fs::remove_dir_all(models.join("demo-shapes")).expect("rm");
        assert_eq!(both(&config, ModelKind::Diffusion).as_deref(), Some("tiny-sd"), "a removed choice is passed over");
        config.defaults.voice = "nobody".into();
        assert_eq!(both(&config, ModelKind::Tts).as_deref(), Some("en_US-joe-medium"));
        assert!(Catalog::no_default(&config, ModelKind::Upscale).contains("`reelbox pull demo-upscaler`"));
    }
}
