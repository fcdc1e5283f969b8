//! `GET /api/v1/presets`: the generation presets a request may name (`<data_dir>/presets.toml`
//! when the box has one, else the built-in ones), so clients such as the studio page offer
//! what this box really has instead of a fixed list.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::pipelines::diffusion::preset::Presets;

/// One preset. A model with its own sampling settings (a Turbo model's `[tuning]`) keeps
/// the preset's share of steps within its own range, its guidance and its scheduler.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PresetView {
    pub name: String,
    pub description: String,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: String,
    /// GPU memory an SD 1.x model needs at this preset, MiB.
    pub min_vram_mib: u64,
}

/// The presets, fewest steps first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PresetList {
    pub presets: Vec<PresetView>,
    /// `built-in`, or the path of the box's `presets.toml`.
    pub source: String,
}

/// The generation presets of this box.
#[utoipa::path(get, path = "/api/v1/presets", operation_id = "list_presets",
    responses((status = 200, body = PresetList),
        (status = 500, description = "the box's presets.toml cannot be read", body = crate::api::error::ErrorBody)))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<PresetList>, ApiError> {
    let file = state.config.data_dir.join("presets.toml");
    let presets = Presets::load(&state.config.data_dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut views: Vec<PresetView> = presets
        .iter()
        .map(|(name, p)| PresetView {
            name: name.to_string(),
            description: p.description.clone(),
            width: p.width,
            height: p.height,
            steps: p.steps,
            guidance: p.guidance,
            scheduler: p.scheduler.clone(),
            min_vram_mib: p.min_vram_mib,
        })
        .collect();
    views.sort_by(|a, b| a.steps.cmp(&b.steps).then_with(|| a.name.cmp(&b.name)));
    let source = if file.is_file() { file.display().to_string() } else { "built-in".into() };
    Ok(Json(PresetList { presets: views, source }))
}
