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
    /// Artifact id of the portrait (an image or a short video).
    pub portrait: String,
    /// Artifact id of the narration (any audio ffmpeg or symphonia reads).
    pub audio: Option<String>,
    /// Narration text to synthesise first (not supported yet; use a speech job's WAV).
    pub text: Option<String>,
    /// `[x, y, w, h]` of the face in the portrait.
    pub face_box: Option<[u32; 4]>,
    /// Installed Wav2Lip model (default `wav2lip`).
    pub model: Option<String>,
    /// Frames per second of the video, 1–60 (default 25).
    pub fps: Option<u32>,
    /// Frames per model run, 1–256 (default 16).
    pub batch_size: Option<u32>,
    /// Higher runs first (default 0).
    #[serde(skip_serializing)]
    pub priority: Option<i32>,
}

/// Body of `POST /api/v1/upscale`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpscaleRequest {
    /// Artifact id of the picture or video.
    pub input: String,
    /// Installed Real-ESRGAN-style model (default `realesrgan-x4`).
    pub model: Option<String>,
    /// Tile side in pixels: 0 for automatic, else at least 32.
    pub tile: Option<u32>,
    /// Overlap around each tile, 0–64 (default 10).
    pub tile_pad: Option<u32>,
    /// Higher runs first (default 0).
    #[serde(skip_serializing)]
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
    submit_params(&state, &caller, &headers, "lipsync", &req, req.priority).await
}

/// Upscale a picture (→ `upscaled.png`) or a video (→ `upscaled.mp4`, sound kept).
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
