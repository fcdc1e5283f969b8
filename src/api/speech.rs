//! `POST /api/v1/speech`: text to a WAV file with a Piper voice, as a `speech` job.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::{kind_request, submit_params};
use super::json::ApiJson;
use super::{ApiError, AppState};
use crate::kinds::speech;

/// Body of `POST /api/v1/speech`; unset fields take the voice's defaults.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeechRequest {
    /// What to say (sentences are synthesised one by one).
    #[schema(min_length = 1, max_length = 8000)]
    pub text: String,
    /// Installed voice name (default: the voice `reelbox models list` tags as default).
    pub voice: Option<String>,
    /// Voice variation, 0–2.
    #[schema(minimum = 0, maximum = 2)]
    pub noise_scale: Option<f64>,
    /// Speaking speed, 0.1–5; above 1 is slower.
    #[schema(minimum = 0.1, maximum = 5)]
    pub length_scale: Option<f64>,
    /// Phoneme length variation, 0–2.
    #[schema(minimum = 0, maximum = 2)]
    pub noise_w: Option<f64>,
    /// Speaker of a multi-speaker voice: a name or a number.
    #[schema(value_type = Option<String>)]
    pub speaker: Option<serde_json::Value>,
    /// Seconds of silence between sentences, 0–10.
    #[schema(minimum = 0, maximum = 10)]
    pub sentence_silence: Option<f64>,
    /// Output format; only `wav`.
    #[schema(pattern = "^wav$")]
    pub format: Option<String>,
    /// Higher runs first (default 0).
    #[serde(skip_serializing_if = "super::json::never")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
}

impl SpeechRequest {
    /// The `speech` kind's request this body makes, read as the kind reads any request JSON
    /// so every field error is the kind's own.
    pub fn to_params(&self) -> Result<speech::SpeechRequest, ApiError> {
        kind_request(self, speech::SpeechRequest::from_json)
    }
}

/// Synthesise speech; the job's artifacts are `speech.wav` and `speech.json` (sentence times).
#[utoipa::path(post, path = "/api/v1/speech", operation_id = "create_speech", request_body = SpeechRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SpeechRequest>,
) -> Result<Response, ApiError> {
    submit_params(&state, &caller, &headers, "speech", &req.to_params()?, req.priority).await
}
