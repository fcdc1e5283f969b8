//! Whether a model a client names can be used now, can be had with a pull, or is unknown:
//! what a profile's `voice`/`image_model` may be (a client creates a profile before pulling
//! its voice) and why a request naming a model that is not installed is refused at
//! submission, with the pull to make or the close names of a typo.

use std::path::Path;

use serde::Serialize;

use super::catalog::Catalog;
use super::manifest::{self, ModelKind};
use super::{ModelStore, convert, import, piper};
use crate::config::Config;

/// A model a request cannot run, as data beside the refusal's sentence (the API error's
/// `model`), so a client acts on it without reading the words: which model, why, and
/// what installs it or what is close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ModelProblem {
    /// tts, diffusion, lipsync, upscale, face or embedding.
    pub kind: String,
    /// The model named; absent when the request named none and the kind has no default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `not_installed` (the catalog knows it: pull it), `unknown` (neither installed nor in
    /// the catalog), `gone` (imported here, its files since removed: import it again),
    /// `none_installed` (no model of the kind at all), `no_default` (several installed, none
    /// chosen), `other_kind` (a model of another kind: `installed` lists those of this one).
    pub state: String,
    /// What `reelbox pull` (or `POST /api/v1/models/pull`'s `name`) takes to install it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<String>,
    /// Known names like the one asked for (a typo's fix).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub close: Vec<String>,
    /// Installed models of the kind, where the refusal lists them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<String>,
}

impl ModelProblem {
    /// A kind's missing default ([`Catalog::no_default_problem`]) in words, for the error a
    /// request naming no model gets: pull one when none is installed, else choose one.
    pub fn no_default_text(&self) -> String {
        self.no_default_text_where("")
    }

    /// [`ModelProblem::no_default_text`] saying where none was found after "installed"
    /// (`" here nor on any worker box"` on a head).
    pub fn no_default_text_where(&self, looked: &str) -> String {
        let k = &self.kind;
        if self.installed.is_empty() {
            format!(
                "no {k} model is installed{looked} (installed: none); `reelbox pull {}` installs one \
                 (`reelbox models list --available` lists them)",
                self.pull.as_deref().unwrap_or("NAME")
            )
        } else {
            format!(
                "no {k} model is the default (installed: {}): name one, or choose one with \
                 `reelbox models default {k} NAME`",
                self.installed.join(", ")
            )
        }
    }
}

/// How a named model of a kind stands on this box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Installed: a request can run it now.
    Installed,
    /// Not installed, but the catalog (a shipped manifest, or the cached Piper voice index)
    /// knows it: `reelbox pull PULL` installs it.
    Pullable { pull: String },
    /// Neither: a typo or a model of another kind. `close` are the known names like it,
    /// `installed` the installed models of the kind; `no_voice_index` when a voice was asked
    /// for and the Piper voice index was never fetched here (any Piper voice is "unknown").
    Unknown { close: Vec<String>, installed: Vec<String>, no_voice_index: bool },
    /// Imported on this box (its manifest is here, naming no sources) and its files are
    /// gone: nothing pulls it, it is imported again, as `again` says.
    Gone { again: String },
}

impl Availability {
    /// How model `name` of `kind` stands. An installed model is checked by its own directory
    /// (every render's voice is, at submission); only one that is not reads the whole
    /// catalog and the cached voice index.
    pub fn of(config: &Config, kind: ModelKind, name: &str) -> Self {
        if Catalog::installed_dir_of(config, kind, name).is_some() {
            return Self::Installed;
        }
        let store = ModelStore::new(config);
        let catalog = Catalog::of(&store);
        let mut known: Vec<String> =
            catalog.models().iter().filter(|m| m.kind() == kind).map(|m| m.name().into()).collect();
        if known.iter().any(|k| k == name) {
            return if store.can_pull(name) {
                Self::Pullable { pull: name.to_string() }
            } else {
                Self::Gone { again: import_again(&store, name) }
            };
        }
        let mut no_voice_index = false;
        if kind == ModelKind::Tts {
            let voices = store.cached_piper_voices();
            if voices.iter().any(|v| v == name) {
                return Self::Pullable { pull: format!("{}{name}", piper::PREFIX) };
            }
            no_voice_index = voices.is_empty();
            known.extend(voices);
        }
        Self::Unknown { close: close_names(name, &known), installed: catalog.installed_names(kind), no_voice_index }
    }

    /// [`Availability::refusal`] as data (`None` when installed).
    pub fn problem(&self, kind: ModelKind, name: &str) -> Option<ModelProblem> {
        let problem = |state: &str| ModelProblem {
            kind: kind.as_str().to_string(),
            name: Some(name.to_string()),
            state: state.to_string(),
            pull: None,
            close: Vec::new(),
            installed: Vec::new(),
        };
        match self {
            Self::Installed => None,
            Self::Pullable { pull } => Some(ModelProblem { pull: Some(pull.clone()), ..problem("not_installed") }),
            Self::Unknown { close, installed, .. } => {
                Some(ModelProblem { close: close.clone(), installed: installed.clone(), ..problem("unknown") })
            }
            Self::Gone { .. } => Some(problem("gone")),
        }
    }

    /// Why `name` cannot run now (`None` when installed): the pull that installs it, or
    /// that it is unknown with the close names and what is installed.
    pub fn refusal(&self, kind: ModelKind, name: &str) -> Option<String> {
        self.refusal_where(kind, name, "")
    }

    /// [`Availability::refusal`] saying where the model was looked for after "installed"
    /// (`" here nor on any worker box"` on a head).
    pub fn refusal_where(&self, kind: ModelKind, name: &str, looked: &str) -> Option<String> {
        match self {
            Self::Installed => None,
            Self::Pullable { pull } => Some(format!(
                "{kind} model {name:?} is not installed{looked}; `reelbox pull {pull}` installs it",
                kind = kind.as_str()
            )),
            Self::Unknown { close, installed, no_voice_index } => Some(format!(
                "no {kind} model {name:?} is installed{looked} or in the catalog{}; installed: {}{}",
                did_you_mean(close),
                if installed.is_empty() { "none".to_string() } else { installed.join(", ") },
                if *no_voice_index {
                    // Else every real Piper voice is refused here without a way forward.
                    " (this box has not fetched the Piper voice list yet, so it knows no Piper voice it has not \
                     installed: `reelbox voices list --refresh` fetches the list, then any Piper voice may be named)"
                        .to_string()
                } else {
                    String::new()
                },
                kind = kind.as_str(),
            )),
            Self::Gone { again } => Some(format!(
                "{kind} model {name:?} was imported on this box and its files are gone: {again}",
                kind = kind.as_str()
            )),
        }
    }
}

/// The fix an error about model file `file` ends with when the file, in a model's folder
/// under the models dir, is missing or does not load ([`refetch_advice`]). `None` for a
/// file elsewhere (an import's source, a voice given by its path), which no command of
/// reelbox's mends.
pub fn repair_advice(config: &Config, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(config.models_dir()).ok()?;
    let name = rel.components().next()?.as_os_str().to_str()?;
    if !manifest::valid_name(name) || rel == Path::new(name) {
        return None;
    }
    Some(refetch_advice(&ModelStore::new(config), name))
}

/// How to get model `name`'s files back: pull it again when a pull can (its manifest names
/// sources), else remove it and import it again ([`reimport_advice`]).
pub fn refetch_advice(store: &ModelStore, name: &str) -> String {
    if store.can_pull(name) {
        return format!("pull the model again (`reelbox pull --force {name}`)");
    }
    reimport_advice(store, name)
}

/// How to replace the files of model `name` when nothing pulls it (imported on this box):
/// remove it and import it again ([`import_again`]).
pub fn reimport_advice(store: &ModelStore, name: &str) -> String {
    format!("{name} was imported on this box and no pull replaces it: {}", import_again(store, name))
}

/// "`reelbox rm NAME`, then import it again (`COMMAND`)", the command from
/// [`reimport_command`]; when a conversion's record is gone with its folder, it says to add
/// the flags it was first imported with, which only that record kept.
fn import_again(store: &ModelStore, name: &str) -> String {
    let (command, flags_known) = reimport_command(store, name);
    let lost = if flags_known {
        ""
    } else {
        " with the --lora, --fp16 and --prediction flags it was first imported with, if any (its conversion.json is gone)"
    };
    format!("`reelbox rm {name}`, then import it again (`{command}`){lost}")
}

/// The `reelbox models import` command that installs model `name` as it was imported on this
/// box, each word quoted for a POSIX shell where it needs it: the path its manifest says it
/// came from, its kind and name, and for a conversion the LoRAs with their scales, `--fp16`
/// and a given `--prediction` its `conversion.json` recorded (without them a fused model
/// would come back unfused under the fused name, a v-prediction one as epsilon). The one
/// place the command is built. False beside it when the model was converted and that record
/// cannot be read.
fn reimport_command(store: &ModelStore, name: &str) -> (String, bool) {
    let installed = store.installed_manifest(name);
    let from = installed.as_ref().and_then(import::source_of).unwrap_or("PATH");
    let mut words: Vec<String> = ["reelbox", "models", "import", from].map(String::from).into();
    if let Some(m) = &installed {
        words.extend(["--kind".to_string(), m.kind.as_str().to_string()]);
    }
    words.extend(["--name".to_string(), name.to_string()]);
    let converted = installed.as_ref().is_some_and(|m| m.files.iter().any(|f| f.path == convert::CONVERSION_FILE));
    let flags = convert::import_flags_of(&store.model_dir(name));
    let known = flags.is_some() || !converted;
    words.extend(flags.unwrap_or_default());
    let command = shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "));
    (command, known)
}

/// Names of `known` like `name` (typo help in unknown-model errors): those that contain it,
/// or its second `-` part (a Piper voice's speaker: `en_US-joe-medum` → `en_US-joe-medium`),
/// any case; at most five.
pub fn close_names(name: &str, known: &[String]) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let speaker = lower.split('-').nth(1).filter(|s| !s.is_empty());
    known
        .iter()
        .filter(|k| {
            let k = k.to_ascii_lowercase();
            k.contains(&lower) || speaker.is_some_and(|s| k.contains(s))
        })
        .take(5)
        .cloned()
        .collect()
}

/// ` (did you mean a, b?)`, or nothing when no name is close.
pub fn did_you_mean(close: &[String]) -> String {
    if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_catch_a_misspelt_voice_and_a_part_of_a_name() {
        let known: Vec<String> = ["en_US-joe-medium", "de_DE-thorsten-medium", "sd-turbo", "sdxl-turbo"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(close_names("en_US-joe-medum", &known), ["en_US-joe-medium"]);
        assert_eq!(close_names("TURBO", &known), ["sd-turbo", "sdxl-turbo"]);
        assert!(close_names("nothing", &known).is_empty());
        assert_eq!(did_you_mean(&known[..1]), " (did you mean en_US-joe-medium?)");
    }

    #[test]
    fn an_imported_model_whose_files_are_gone_is_imported_again_not_pulled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).expect("mkdir");
        // What `reelbox models import --kind face --name face-detector` leaves once its
        // folder is deleted by hand: the installed manifest, naming no sources.
        let sha = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06";
        let manifest = format!(
            "name = \"face-detector\"\nkind = \"face\"\n[[files]]\npath = \"model.onnx\"\nsize = 2\nsha256 = \"{sha}\"\n"
        );
        std::fs::write(models.join("face-detector.toml"), manifest).expect("manifest");
        let config = Config { models_dir: Some(models), ..Config::default() };
        let gone = Availability::of(&config, ModelKind::Face, "face-detector");
        assert!(matches!(gone, Availability::Gone { .. }), "{gone:?}");
        let why = gone.refusal(ModelKind::Face, "face-detector").unwrap_or_default();
        assert!(why.contains("import it again") && !why.contains("pull"), "{why}");
        assert!(why.ends_with("(`reelbox models import PATH --kind face --name face-detector`)"), "{why}");
        assert_eq!(gone.problem(ModelKind::Face, "face-detector").map(|p| p.state), Some("gone".into()));
        // With no face model installed, the pull offered is the shipped one.
        let none = Catalog::no_default_problem(&config, ModelKind::Face);
        assert_eq!(none.pull.as_deref(), Some("ultraface-320"), "{none:?}");
        // One imported under a shipped model's name is pulled by that name (a pull reads the
        // shipped manifest first).
        let models = config.models_dir();
        let shipped = std::fs::read_to_string(models.join("face-detector.toml")).expect("manifest");
        std::fs::write(models.join("ultraface-320.toml"), shipped.replace("face-detector", "ultraface-320"))
            .expect("manifest");
        let pull = Availability::of(&config, ModelKind::Face, "ultraface-320");
        assert_eq!(pull, Availability::Pullable { pull: "ultraface-320".into() });
    }

    #[test]
    fn a_conversion_is_imported_again_with_its_quoted_path_loras_fp16_and_given_prediction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::with_dirs(dir.path().to_path_buf(), Vec::new(), Vec::new());
        let sha = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06";
        let from = "/m/Realistic Vision V5.1 (fp16).safetensors";
        let manifest = format!(
            "name = \"rv\"\nkind = \"diffusion\"\nsummary = \"Stable Diffusion converted from {from}\"\n\
             [[files]]\npath = \"conversion.json\"\nsize = 2\nsha256 = \"{sha}\"\n"
        );
        std::fs::write(dir.path().join("rv.toml"), manifest).expect("manifest");
        // Its folder is gone with the record: the flags cannot be known, and it says so.
        let again = import_again(&store, "rv");
        assert!(again.contains("(its conversion.json is gone)"), "{again}");
        std::fs::create_dir_all(dir.path().join("rv")).expect("mkdir");
        let record = serde_json::json!({"source": from, "fp16": true,
            "loras": [{"file": "/l/Film Grain (v2).safetensors", "scale": 0.7f32}, {"file": "/l/ink.safetensors", "scale": 1.0}],
            "details": {"prediction_from": "--prediction", "prediction_type": "v_prediction"}});
        std::fs::write(dir.path().join("rv").join(convert::CONVERSION_FILE), record.to_string()).expect("record");
        assert_eq!(
            reimport_command(&store, "rv"),
            (
                "reelbox models import '/m/Realistic Vision V5.1 (fp16).safetensors' --kind diffusion --name rv \
                 --lora '/l/Film Grain (v2).safetensors:0.7' --lora /l/ink.safetensors:1 --fp16 --prediction v"
                    .to_string(),
                true
            )
        );
        // A guessed prediction type is guessed alike again: no flag.
        let guessed = serde_json::json!({"fp16": false, "loras": [],
            "details": {"prediction_from": "the default for SD 1.x", "prediction_type": "epsilon"}});
        std::fs::write(dir.path().join("rv").join(convert::CONVERSION_FILE), guessed.to_string()).expect("record");
        let (command, _) = reimport_command(&store, "rv");
        assert!(command.ends_with("--kind diffusion --name rv"), "{command}");
    }
}
