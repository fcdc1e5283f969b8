//! `POST /api/v1/renders`: a render job, with a profile's presenter, voice and style
//! folded into its parameters (so a later profile edit cannot change a queued film).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::Caller;
use super::jobs::{accepted, idempotency_key, submit_job};
use super::json::ApiJson;
use super::profiles::{set_default, take_profile};
use super::{ApiError, AppState};

/// Turns `profile` into the render's `presenter`, `voice`, `style`, `negative_prompt`
/// and `preset` (fields the request sets itself win).
pub fn expand_profile(state: &AppState, caller: &Caller, params: &mut serde_json::Value) -> Result<(), ApiError> {
    let Some(obj) = params.as_object_mut() else { return Err(ApiError::field("params", "must be a JSON object")) };
    let Some(profile) = take_profile(state, caller, obj)? else { return Ok(()) };
    let mut set = |k: &str, v: serde_json::Value| set_default(obj, k, v);
    if let (Some(portrait), Some(face_box)) = (profile.portrait, profile.face_box) {
        set("presenter", serde_json::json!({"portrait": portrait.to_string(), "face_box": face_box}));
    }
    set("voice", serde_json::json!(profile.voice.model));
    set("length_scale", serde_json::json!(profile.voice.length_scale));
    if !profile.style.prompt_prefix.is_empty() {
        set("style", serde_json::json!(profile.style.prompt_prefix));
    }
    if !profile.style.negative_prompt.is_empty() {
        set("negative_prompt", serde_json::json!(profile.style.negative_prompt));
    }
    set("preset", serde_json::json!(profile.style.preset));
    Ok(())
}

/// Render a script (or one prompt) into a narrated MP4.
#[utoipa::path(post, path = "/api/v1/renders",
    request_body(content = Object, description = "render parameters: script|prompt, profile?, model?, preset?, width?, height?, fps?, layout? (inset|full|none), upscale?, music? (artifact id), burn_subtitles?, seed?, priority?"),
    responses((status = 202, body = super::views::JobView), (status = 400, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(mut params): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let priority = match params.as_object_mut().and_then(|o| o.remove("priority")) {
        None => 0,
        Some(v) => v
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| ApiError::field("priority", "must be an integer"))?,
    };
    expand_profile(&state, &caller, &mut params)?;
    let key = idempotency_key(&headers)?;
    let (job, existing) = submit_job(&state, &caller, "render", params, priority, key).await?;
    Ok(accepted(&state, &job, existing))
}
