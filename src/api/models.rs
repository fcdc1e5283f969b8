//! `/api/v1/models`: installed and available models, and pulls as queued jobs. The same
//! list backs `reelbox models list`. What is listed is [`crate::models::Catalog`], the one
//! the job kinds look models up in; this module only shapes it for clients. Models whose
//! files sit under a source tree's `tests/fixtures/models/` are the tiny random-weight test
//! models and are marked `test`.

use std::path::{Component, Path};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::{accepted, idempotency_key, submit_job};
use super::json::ApiJson;
use super::views::time;
use super::{ApiError, AppState};
use crate::config::Config;
use crate::kinds::box_models::{self, LiveModel};
use crate::models::convert::fused::{Checkpoint, Checkpoints, FusedLora};
use crate::models::{Catalog, CatalogModel, InstallState, ModelKind};

/// A model as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    /// `tts`, `diffusion`, `lipsync`, `upscale`, `face` or `embedding` (a textual-inversion
    /// embedding prompts name).
    pub kind: String,
    /// A small model trained by reelbox's own scripts and shipped with it.
    pub demo: bool,
    /// A tiny random-weight model from the test fixtures (not for real use).
    pub test: bool,
    pub summary: String,
    /// Total bytes of the model's files.
    pub size: u64,
    /// `installed`, `not_installed` or `damaged`.
    pub state: String,
    /// What is wrong with a damaged model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// When the files last matched their sha256s (RFC 3339): a pull's or an import's install
    /// (a conversion's once its self-check passed), or `reelbox models verify`.
    pub verified_at: Option<String>,
    /// The model directory when installed.
    pub path: Option<String>,
    /// Where a pull fetches it from, in order.
    pub sources: Vec<String>,
    /// `manifest` (pullable, checked by sha256), `directory` (found on disk) or `box` (only
    /// live worker boxes have it: known from their heartbeats).
    pub origin: String,
    /// The licence its manifest names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The licence forbids commercial use (a pull needs `--accept-license` once).
    #[serde(default)]
    pub noncommercial: bool,
    /// Runs on the CPU (false: CUDA only).
    #[serde(default = "yes")]
    pub cpu: bool,
    /// The model requests of its kind use when they name none.
    #[serde(default)]
    pub default: bool,
    /// A converted model's base and the LoRAs fused into it, `base + LoRA×scale + …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused: Option<String>,
    /// The live worker boxes that have it installed (a head's; `state` and `path` say this
    /// box's own), sorted. Jobs naming it are made there.
    #[serde(default)]
    pub boxes: Vec<String>,
    /// An installed diffusion model's native picture width, the side it was trained at
    /// (1024 for SDXL, 512 for SD 1.5): what a request naming no size draws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_width: Option<u32>,
    /// An installed diffusion model's native picture height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_height: Option<u32>,
    /// The steps an installed diffusion model draws with when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_steps: Option<u32>,
    /// The guidance an installed diffusion model draws with when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_guidance: Option<f32>,
    /// The sampler (a request's `scheduler`) an installed diffusion model draws with when a
    /// request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_scheduler: Option<String>,
    /// The clip skip (a request's `clip_skip`) an installed diffusion model reads prompts at
    /// when a request names none: 1, the text encoder's last layer; 2 for SDXL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_clip_skip: Option<u32>,
    /// The deepest clip skip it takes: its default where its text encoder gives that layer
    /// only (a model from the hub; one imported with `reelbox models import` gives every
    /// layer); absent where not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clip_skip: Option<u32>,
    /// Whether its prompts may name textual-inversion embeddings: true for a model imported
    /// with `reelbox models import` (its text encoders take their vectors), false for one from
    /// the hub; absent for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takes_embeddings: Option<bool>,
    /// Where a model imported on this box came from: the file or folder `models import` was
    /// given (absent for the catalog's models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// The sha256 of the checkpoint file an imported diffusion model was converted from
    /// (A1111's `sha256`), as its import kept it or the daemon worked it out later from the
    /// file (absent for a folder's conversion, a pulled model, a source moved since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A1111's shorthash of it, its first 10 digits: its pictures' `Model hash`, its
    /// `/sdapi/v1/sd-models` title's `[…]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shorthash: Option<String>,
    /// The LoRAs fused into it, each with A1111's hash of its file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraView>,
}

/// A LoRA fused into a model, as A1111 knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoraView {
    /// A1111's name of it (`Lora hashes`): its file's stem.
    pub name: String,
    /// The file as the import was given it.
    pub file: String,
    pub scale: f32,
    /// A1111's hash of the file: its trainer's `sshs_model_hash`, else kohya's addnet hash.
    pub hash: Option<String>,
    /// Its first 12 digits, as `Lora hashes` writes it.
    pub shorthash: Option<String>,
}

impl LoraView {
    fn of(l: &FusedLora) -> Self {
        Self {
            name: l.a1111_name(),
            file: l.file.clone(),
            scale: l.scale,
            hash: l.hash.clone(),
            shorthash: l.shorthash().map(str::to_string),
        }
    }
}

fn yes() -> bool {
    true
}

/// Installed and available models, sorted by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// The directory models are installed into.
    pub models_dir: String,
    pub models: Vec<ModelView>,
}

/// Body of `POST /api/v1/models/pull`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// A model named by a shipped or installed manifest.
    pub name: String,
    /// Fetch again even when installed.
    #[serde(default)]
    pub force: bool,
    /// Accept the model's non-commercial licence (remembered; needed once for such models).
    #[serde(default)]
    pub accept_license: bool,
    /// Higher runs first (default 0).
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
}

impl From<&CatalogModel> for ModelView {
    fn from(m: &CatalogModel) -> Self {
        let e = &m.entry;
        let (state, problems) = match &e.state {
            InstallState::Installed => ("installed", Vec::new()),
            InstallState::NotInstalled => ("not_installed", Vec::new()),
            InstallState::Damaged { problems } => ("damaged", problems.clone()),
        };
        Self {
            name: e.name.clone(),
            kind: e.kind.as_str().to_string(),
            demo: e.demo,
            test: e.path.as_deref().is_some_and(is_test_fixture),
            summary: e.summary.clone(),
            size: e.size,
            state: state.to_string(),
            problems,
            verified_at: e.verified_at.map(time),
            path: e.path.as_ref().map(|p| p.display().to_string()),
            sources: e.sources.clone(),
            origin: m.origin.as_str().to_string(),
            license: m.manifest.as_ref().and_then(|mf| mf.license.clone()),
            noncommercial: m.manifest.as_ref().is_some_and(|mf| mf.noncommercial),
            cpu: m.manifest.as_ref().is_none_or(|mf| mf.runs_on_cpu()),
            default: false,
            fused: e.path.as_deref().and_then(crate::models::convert::fused_of),
            imported_from: m.manifest.as_ref().and_then(crate::models::import::source_of).map(str::to_owned),
            boxes: Vec::new(),
            native_width: None,
            native_height: None,
            default_steps: None,
            default_guidance: None,
            default_scheduler: None,
            default_clip_skip: None,
            max_clip_skip: None,
            takes_embeddings: None,
            sha256: None,
            shorthash: None,
            loras: Vec::new(),
        }
    }
}

impl From<&LiveModel> for ModelView {
    /// A model only live worker boxes have: not installed here, and nothing here pulls it.
    fn from(m: &LiveModel) -> Self {
        Self {
            name: m.name.clone(),
            kind: m.kind.as_str().to_string(),
            demo: false,
            test: false,
            summary: String::new(),
            size: m.weights_bytes,
            state: "not_installed".into(),
            problems: Vec::new(),
            verified_at: None,
            path: None,
            sources: Vec::new(),
            origin: "box".into(),
            license: None,
            noncommercial: false,
            cpu: true,
            default: false,
            // What its import recorded, as the box read it.
            fused: m.checkpoint.as_ref().and_then(Checkpoint::fused_text),
            boxes: m.boxes.clone(),
            native_width: None,
            native_height: None,
            default_steps: None,
            default_guidance: None,
            default_scheduler: None,
            default_clip_skip: None,
            max_clip_skip: None,
            takes_embeddings: None,
            imported_from: m.checkpoint.as_ref().and_then(|c| c.source.clone()),
            sha256: None,
            shorthash: None,
            loras: Vec::new(),
        }
        .hashed(m.checkpoint.as_ref())
    }
}

impl ModelView {
    /// With the A1111 hashes an import recorded: its checkpoint file's and each fused LoRA's.
    fn hashed(self, record: Option<&Checkpoint>) -> Self {
        let Some(c) = record else { return self };
        Self {
            sha256: c.sha256.clone(),
            shorthash: c.shorthash().map(str::to_string),
            loras: c.loras.iter().map(LoraView::of).collect(),
            ..self
        }
    }
}

/// True when `dir` (after following links) lies under a `tests/fixtures/models` folder.
pub fn is_test_fixture(dir: &Path) -> bool {
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let parts: Vec<Component> = real.components().collect();
    parts
        .windows(3)
        .any(|w| w[0].as_os_str() == "tests" && w[1].as_os_str() == "fixtures" && w[2].as_os_str() == "models")
}

/// The model list for `config`: every model of its [`Catalog`], once, and on a head the
/// models only its live worker boxes have, sorted by name; each row says which live boxes
/// have it. The default of a kind is this box's, else its boxes' (as requests run it).
pub fn catalog(config: &Config) -> ModelList {
    let catalog = Catalog::load(config);
    let checkpoints = Checkpoints::of(&catalog);
    let mut live = box_models::live_models();
    let mut defaults: Vec<(ModelKind, Option<String>)> = Vec::new();
    let mut default_of = |kind: ModelKind| -> Option<String> {
        if let Some((_, d)) = defaults.iter().find(|(k, _)| *k == kind) {
            return d.clone();
        }
        let d = catalog.default_name(kind, config).or_else(|| box_models::default_model(config, kind));
        defaults.push((kind, d.clone()));
        d
    };
    let mut views: Vec<ModelView> = catalog
        .models()
        .iter()
        .map(|m| {
            // The head's own row takes the boxes' copies of the model along.
            let boxes = match live.iter().position(|l| l.name == m.name() && l.kind == m.kind()) {
                Some(i) => live.remove(i).boxes,
                None => Vec::new(),
            };
            let usable = m.dir().is_some() || !boxes.is_empty();
            let default = usable && default_of(m.kind()).is_some_and(|d| d == m.name());
            // How a request naming no size, steps, guidance or sampler draws it, as the image kind says,
            // from its configs as this reading of the catalog read them (none where they do
            // not read: a damaged model, whose request is refused saying why).
            let drawn = m.dir().filter(|_| m.kind() == ModelKind::Diffusion);
            let info = drawn.and_then(|_| box_models::own_model(&catalog, m.name())).and_then(|b| b.diffusion);
            let drawn = info.and_then(|info| crate::kinds::image::drawing_defaults(&info, m.tuning()));
            let hashed = m.dir().filter(|_| m.kind() == ModelKind::Diffusion).and_then(|_| checkpoints.get(m.name()));
            ModelView {
                default,
                boxes,
                native_width: drawn.map(|d| d.side),
                native_height: drawn.map(|d| d.side),
                default_steps: drawn.map(|d| d.steps),
                default_guidance: drawn.map(|d| d.guidance),
                default_scheduler: drawn.map(|d| d.scheduler.to_owned()),
                default_clip_skip: drawn.map(|d| d.clip_skip),
                max_clip_skip: drawn.and_then(|d| d.max_clip_skip),
                takes_embeddings: drawn.map(|d| d.takes_embeddings),
                ..ModelView::from(m)
            }
            .hashed(hashed)
        })
        .collect();
    for l in &live {
        let default = default_of(l.kind).is_some_and(|d| d == l.name);
        views.push(ModelView { default, ..ModelView::from(l) });
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    ModelList { models_dir: catalog.models_dir().display().to_string(), models: views }
}

/// Installed and available models.
#[utoipa::path(get, path = "/api/v1/models", operation_id = "list_models", responses((status = 200, body = ModelList)))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<ModelList>, ApiError> {
    let config = state.config.clone();
    let list = tokio::task::spawn_blocking(move || catalog(&config))
        .await
        .map_err(|e| ApiError::internal(format!("listing models failed: {e}")))?;
    Ok(Json(list))
}

/// Pull a model as a `model_pull` job (progress as job events).
#[utoipa::path(post, path = "/api/v1/models/pull", request_body = PullRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody), (status = 403, description = "`admin_only`", body = super::error::ErrorBody)))]
pub async fn pull(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PullRequest>,
) -> Result<Response, ApiError> {
    super::jobs::require_admin(&caller)?;
    let key = idempotency_key(&headers)?;
    let params = json!({"name": req.name, "force": req.force, "accept_license": req.accept_license});
    let (job, existing) = submit_job(&state, &caller, "model_pull", params, req.priority, key).await?;
    Ok(accepted(&state, &job, existing))
}

/// Body of `POST /api/v1/models/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// A checkpoint, Piper voice or ONNX folder on the daemon's machine.
    pub path: String,
    /// Name to install it under (default: from the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// The model kind, when the files do not tell.
    #[serde(default)]
    pub kind: Option<String>,
    /// LoRAs to fuse, `FILE[:SCALE]`.
    #[serde(default)]
    pub loras: Vec<String>,
    /// Half-precision weights.
    #[serde(default)]
    pub fp16: bool,
    /// A single-file Stable Diffusion's prediction type, `epsilon` or `v` (default: guessed).
    #[serde(default)]
    pub prediction: Option<String>,
    /// Higher runs first (default 0).
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
}

/// Import (and convert, self-checked) a model as a `model_import` job (progress as job events).
#[utoipa::path(post, path = "/api/v1/models/import", request_body = ImportBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody), (status = 403, description = "`admin_only`", body = super::error::ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ImportBody>,
) -> Result<Response, ApiError> {
    super::jobs::require_admin(&caller)?;
    let key = idempotency_key(&headers)?;
    let params = json!({"path": req.path, "name": req.name, "kind": req.kind, "loras": req.loras, "fp16": req.fp16,
                         "prediction": req.prediction});
    let (job, existing) = submit_job(&state, &caller, "model_import", params, req.priority, key).await?;
    Ok(accepted(&state, &job, existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_models_are_recognised_by_their_folder() {
        assert!(is_test_fixture(Path::new("/src/reelbox/tests/fixtures/models/tiny-sd")));
        assert!(!is_test_fixture(Path::new("/var/lib/reelbox/models/tiny-sd")));
        assert!(!is_test_fixture(Path::new("/srv/tests/models/fixtures")));
    }
}
