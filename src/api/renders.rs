//! `POST /api/v1/renders`: a render job, with a profile's presenter, voice and style
//! folded into its parameters (so a later profile edit cannot change a queued film).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::Caller;
use super::jobs::{accepted, idempotency_key, submit_job};
use super::json::ApiJson;
use super::{ApiError, AppState};

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
    state.jobs.expand_render_profile(&(&caller).into(), &mut params)?;
    let key = idempotency_key(&headers)?;
    let (job, existing) = submit_job(&state, &caller, "render", params, priority, key).await?;
    Ok(accepted(&state, &job, existing))
}
