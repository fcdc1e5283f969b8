//! `/api/v1/models`: installed and available models, and pulls as queued jobs. The same
//! catalogue backs `reelbox models list`.
//!
//! Two sources make the catalogue: manifests (shipped ones say what can be pulled,
//! installed ones what was) and model directories found where the job kinds look for them
//! (a diffusion model is any directory with a `model_index.json`; bundled demo models live
//! in a `demo/` folder). Models whose files sit under a source tree's
//! `tests/fixtures/models/` are the tiny random-weight test models and are marked `test`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

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
use crate::models::search_dirs;
use crate::models::{InstallState, ModelEntry, ModelStore};

/// A model as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    /// `tts`, `diffusion`, `lipsync`, `upscale` or `face`.
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
    /// When the files last matched their sha256s (RFC 3339).
    pub verified_at: Option<String>,
    /// The model directory when installed.
    pub path: Option<String>,
    /// Where a pull fetches it from, in order.
    pub sources: Vec<String>,
    /// `manifest` (pullable, checked by sha256) or `directory` (found on disk).
    pub origin: String,
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
    /// Higher runs first (default 0).
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
}

impl From<&ModelEntry> for ModelView {
    fn from(e: &ModelEntry) -> Self {
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
            origin: "manifest".into(),
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

/// The catalogue for `config`: manifests first, then model directories without one.
pub fn catalog(config: &Config) -> ModelList {
    let store = ModelStore::new(config);
    let mut by_name: BTreeMap<String, ModelView> =
        store.list().iter().map(|e| (e.name.clone(), ModelView::from(e))).collect();
    for dir in search_dirs(config) {
        let demo_dir = dir.file_name().is_some_and(|n| n == "demo");
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut found: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.join("model_index.json").is_file()).collect();
        found.sort();
        for path in found {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // The first search dir that has a name is the one jobs load; a manifest's
            // entry for the same name stays.
            if name.is_empty() || by_name.contains_key(&name) {
                continue;
            }
            by_name.insert(
                name.clone(),
                ModelView {
                    name,
                    kind: "diffusion".into(),
                    demo: demo_dir,
                    test: is_test_fixture(&path),
                    summary: String::new(),
                    size: dir_size(&path),
                    state: "installed".into(),
                    problems: Vec::new(),
                    verified_at: None,
                    path: Some(path.display().to_string()),
                    sources: Vec::new(),
                    origin: "directory".into(),
                },
            );
        }
    }
    ModelList { models_dir: store.models_dir().display().to_string(), models: by_name.into_values().collect() }
}

/// Bytes of the files under `dir` (links followed; model folders are small trees).
fn dir_size(dir: &Path) -> u64 {
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

/// Installed and available models.
#[utoipa::path(get, path = "/api/v1/models", responses((status = 200, body = ModelList)))]
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
    responses((status = 202, body = super::views::JobView), (status = 400, body = super::error::ErrorBody)))]
pub async fn pull(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PullRequest>,
) -> Result<Response, ApiError> {
    super::jobs::require_admin(&caller)?;
    let key = idempotency_key(&headers)?;
    let params = json!({"name": req.name, "force": req.force});
    let (job, existing) = submit_job(&state, &caller, "model_pull", params, req.priority, key).await?;
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
