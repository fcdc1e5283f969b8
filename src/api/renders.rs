//! `POST /api/v1/renders`: a render job, with a profile's presenter, voice and style
//! folded into its parameters (so a later profile edit cannot change a queued film);
//! `POST /api/v1/renders/plan`: the plan the same body would make, nothing queued.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::{accepted, idempotency_key, submit_job};
use super::json::ApiJson;
use super::{ApiError, AppState};
use crate::jobs::Submission;
use crate::kinds::render::{self, RenderParams};

/// Body of `POST /api/v1/renders` as the OpenAPI document describes it: the `render`
/// kind's fields (`kinds::render::REQUEST_FIELDS`) plus `profile` and `priority`. A
/// `script` or a one-line `prompt` is required; every other field has a default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read as JSON by the kind (`RenderRequest::from_json`); this is its schema
pub struct RenderBody {
    /// The script: paragraphs are scenes (`[direction]` lines are pictures, the rest is spoken).
    #[schema(min_length = 1)]
    pub script: Option<String>,
    /// How `script` is written: `text` (default) or `markdown` (headings are title scenes,
    /// a list is one scene, an image's alt text is a `[direction]`, emphasis and links say
    /// their words; code, HTML and front matter are not narrated).
    #[schema(pattern = "^(text|markdown)$")]
    pub script_format: Option<String>,
    /// A one-scene film from one line instead of a `script`.
    pub prompt: Option<String>,
    /// Profile id or name: its presenter, voice, style, preset and picture, lip-sync and upscale
    /// models fill what is left out.
    pub profile: Option<String>,
    /// Words put before every keyframe's prompt (`oil painting`).
    pub style: Option<String>,
    pub negative_prompt: Option<String>,
    /// Diffusion model for the keyframes (default: the diffusion default `models list` tags).
    pub model: Option<String>,
    #[schema(minimum = 1, maximum = 150)]
    pub steps: Option<u32>,
    #[schema(minimum = 0, maximum = 30)]
    pub guidance: Option<f64>,
    /// e.g. `euler`, `euler-a`, `ddim`, `dpm++2m-karras`, `lcm`.
    pub scheduler: Option<String>,
    /// Preset name from presets.toml (`fast`, `quality`, `max`).
    pub preset: Option<String>,
    /// Same seed and settings, same film (default 0).
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    pub seed: Option<u64>,
    /// Keyframe size when it differs from the film's.
    #[schema(minimum = 8, maximum = 2048)]
    pub keyframe_width: Option<u32>,
    #[schema(minimum = 8, maximum = 2048)]
    pub keyframe_height: Option<u32>,
    /// Film width in pixels, a multiple of 8 (default 512).
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    pub width: Option<u32>,
    /// Film height in pixels, a multiple of 8 (default 512).
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    pub height: Option<u32>,
    /// Frames per second, 1–60 (default 25).
    #[schema(minimum = 1, maximum = 60)]
    pub fps: Option<u32>,
    /// Piper voice of the narration; must be installed (default: the box's default voice).
    pub voice: Option<String>,
    /// Speaking rate: above 1 is slower.
    #[schema(minimum = 0.25, maximum = 4)]
    pub length_scale: Option<f32>,
    /// A presenter lip-synced into the film.
    pub presenter: Option<PresenterBody>,
    /// Where the presenter goes: `inset` (default with a presenter), `full` or `none`.
    #[schema(pattern = "^(inset|full|none)$")]
    pub layout: Option<String>,
    /// Lip-sync model for the presenter (default: the profile's, else the lip-sync default).
    pub lipsync_model: Option<String>,
    /// Upscale the film (default false).
    pub upscale: Option<bool>,
    /// Upscaler when `upscale` (default: the profile's, else the upscale default).
    pub upscale_model: Option<String>,
    /// Artifact id of background music, ducked under the narration.
    pub music: Option<String>,
    /// Burn the subtitles into the picture (default false; they are always a track).
    pub burn_subtitles: Option<bool>,
    /// Higher runs first (default 0; client keys up to `limits.max_client_priority`).
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
}

/// A render's presenter: an uploaded portrait and the face in it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the schema of `RenderBody::presenter`
pub struct PresenterBody {
    /// Artifact id of the portrait (image or short video).
    pub portrait: String,
    /// `[x, y, w, h]` of the face in the portrait's pixels; found by the box's face detector
    /// when left out (a 400 naming `presenter.face_box` when none is installed).
    #[schema(value_type = Option<[super::views::FaceSide; 4]>, min_items = 4, max_items = 4)]
    pub face_box: Option<[u32; 4]>,
}

/// Render a script (or one prompt) into a narrated MP4.
#[utoipa::path(post, path = "/api/v1/renders", operation_id = "create_render", request_body = RenderBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(mut params): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let priority = take_priority(&mut params)?;
    state.jobs.expand_render_profile(&(&caller).into(), &mut params)?;
    let key = idempotency_key(&headers)?;
    let (job, existing) = submit_job(&state, &caller, "render", params, priority, key).await?;
    Ok(accepted(&state, &job, existing))
}

/// What a render of a body would make, as its plan stage makes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenderPlanView {
    /// The film's title (its first sentence, as the mux writes it).
    pub title: Option<String>,
    /// About how long the narration is, seconds (the words at 3 a second, the pauses between
    /// scenes, the speaking rate).
    pub estimated_seconds: f64,
    /// The scenes in order: what is said, sentence by sentence as the subtitles cut it (in
    /// the voice's language), and the keyframe's prompt.
    pub scenes: Vec<ScenePlanView>,
}

/// One scene of [`RenderPlanView`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ScenePlanView {
    pub index: usize,
    pub sentences: Vec<String>,
    pub prompt: String,
}

/// Checks a render body as `POST /api/v1/renders` does (profile, models, voice, limits) and
/// answers its plan, queueing nothing: a script's preview (the web studio's New film) and a
/// client's dry run. A Markdown script is read as the render reads it.
#[utoipa::path(post, path = "/api/v1/renders/plan", operation_id = "plan_render", request_body = RenderBody,
    responses((status = 200, body = RenderPlanView), (status = 400, body = super::error::ErrorBody)))]
pub async fn plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(mut params): ApiJson<serde_json::Value>,
) -> Result<Json<RenderPlanView>, ApiError> {
    // Ordered by nothing here; checked with the submission's own rules all the same.
    let priority = take_priority(&mut params)?;
    let who = (&caller).into();
    state.jobs.expand_render_profile(&who, &mut params)?;
    let submission = Submission { kind: "render".into(), params, priority, idempotency_key: None };
    let job = state.jobs.prepare(&who, submission)?;
    let checked: RenderParams = serde_json::from_str(&job.params)
        .map_err(|e| ApiError::internal(format!("a checked render's parameters do not read back: {e}")))?;
    let planned = render::plan_of(&state.config, &checked);
    Ok(Json(RenderPlanView {
        title: planned.title(),
        estimated_seconds: checked.estimated_seconds(&planned),
        scenes: planned
            .scenes
            .into_iter()
            .map(|s| ScenePlanView { index: s.index, sentences: s.sentences, prompt: s.prompt })
            .collect(),
    }))
}

/// The body's `priority`, taken out (the kind does not read it).
fn take_priority(params: &mut serde_json::Value) -> Result<i32, ApiError> {
    match params.as_object_mut().and_then(|o| o.remove("priority")) {
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| ApiError::field("priority", "must be an integer")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_body_has_exactly_the_fields_a_render_reads() {
        let doc = serde_json::to_value(super::super::openapi::full()).expect("json");
        let props = doc["components"]["schemas"]["RenderBody"]["properties"].as_object().cloned().unwrap_or_default();
        let mut documented: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut read: Vec<&str> = crate::kinds::render::REQUEST_FIELDS.to_vec();
        read.push("priority");
        documented.sort_unstable();
        read.sort_unstable();
        assert_eq!(documented, read);
    }
}
