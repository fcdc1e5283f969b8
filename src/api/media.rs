//! `POST /api/v1/lipsync` and `POST /api/v1/upscale`: jobs over uploaded or generated
//! artifacts (portraits, narration, pictures, videos), given by artifact id.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::submit_params;
use super::json::ApiJson;
use super::{ApiError, AppState};

/// Body of `POST /api/v1/lipsync`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LipsyncRequest {
    /// Profile id or name: its portrait, face box, voice and lip-sync model fill the fields this
    /// request leaves out.
    pub profile: Option<String>,
    /// Artifact id of the portrait (an image or a short video); required without a profile.
    pub portrait: Option<String>,
    /// Artifact id of the narration (any audio ffmpeg or symphonia reads).
    pub audio: Option<String>,
    /// Narration text, spoken first with `voice` (instead of `audio`).
    pub text: Option<String>,
    /// Installed Piper voice for `text` (default: the profile's, else `en_US-joe-medium`).
    pub voice: Option<String>,
    /// Speaking rate for `text`: above 1 is slower.
    pub length_scale: Option<f64>,
    /// `[x, y, w, h]` of the face in the portrait; found by the default face detector
    /// (UltraFace ONNX interface, e.g. `ultraface-320`) when left out.
    #[schema(value_type = Option<[super::views::FaceSide; 4]>, min_items = 4, max_items = 4)]
    pub face_box: Option<[u32; 4]>,
    /// Installed Wav2Lip model (default: the profile's lip-sync model, else the lip-sync
    /// default `reelbox models list` tags).
    pub model: Option<String>,
    /// Frames per second of the video, 1–60 (default 25).
    #[schema(minimum = 1, maximum = 60)]
    pub fps: Option<u32>,
    /// Frames per model run, 1–256 (default 16).
    #[schema(minimum = 1, maximum = 256)]
    pub batch_size: Option<u32>,
    /// Higher runs first (default 0).
    #[serde(skip_serializing_if = "super::json::never")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
}

/// Body of `POST /api/v1/upscale`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpscaleRequest {
    /// Artifact id of the picture or video.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    pub input: String,
    /// Installed Real-ESRGAN-style model (default: the upscale default `reelbox models list`
    /// tags; none when `resize` is given without it: the picture is only resized).
    pub model: Option<String>,
    /// Tile side in pixels: 0 for automatic, else at least 32.
    #[schema(maximum = 4096)]
    pub tile: Option<u32>,
    /// Overlap around each tile, 0–64 (default 10).
    #[schema(maximum = 64)]
    pub tile_pad: Option<u32>,
    /// Resize the picture (not a video) without a model, in a stage of its own
    /// (`resized.png`): alone, or after the model's upscale (before it with `resize_first`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<super::images::Resize>,
    /// Resize the input first and upscale the resized picture (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize_first: Option<bool>,
    /// Higher runs first (default 0).
    #[serde(skip_serializing_if = "super::json::never")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
}

/// Lip-sync a portrait to narration; the job's artifact is `lipsync.mp4`.
#[utoipa::path(post, path = "/api/v1/lipsync", request_body = LipsyncRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn lipsync(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LipsyncRequest>,
) -> Result<Response, ApiError> {
    let mut params =
        serde_json::to_value(&req).map_err(|e| ApiError::internal(format!("cannot encode params: {e}")))?;
    if let Some(obj) = params.as_object_mut() {
        state.jobs.expand_lipsync_profile(&(&caller).into(), obj)?;
    }
    submit_params(&state, &caller, &headers, "lipsync", &params, req.priority).await
}

/// Upscale a picture (→ `upscaled.png`) or a video (→ `upscaled.mp4`, sound kept), or
/// resize a picture without a model (→ `resized.png`).
#[utoipa::path(post, path = "/api/v1/upscale", request_body = UpscaleRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn upscale(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UpscaleRequest>,
) -> Result<Response, ApiError> {
    submit_params(&state, &caller, &headers, "upscale", &req, req.priority).await
}
