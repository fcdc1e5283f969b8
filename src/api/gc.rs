//! `POST /api/v1/gc`: the retention sweep on demand (what `reelbox gc` calls), admin only,
//! since it removes every owner's expired jobs.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::require_admin;
use super::json::ApiJsonOrDefault;
use super::{ApiError, AppState};
use crate::store::Removal;

/// Body of `POST /api/v1/gc`; every field is optional, so no body at all is the defaults.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Only count what would be removed.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a sweep removed, under which settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GcReport {
    /// True when nothing was removed, only counted.
    pub dry_run: bool,
    /// `retention.finished_job_days` (0: finished jobs are kept forever).
    pub finished_job_days: f64,
    /// `retention.unused_upload_days` (0: unused uploads are kept forever).
    pub unused_upload_days: f64,
    /// What was (or would be) removed.
    pub removed: Removal,
}

/// Run the retention sweep now: finished jobs and unused uploads older than `[retention]`
/// allows, and artifact files no record names. Nothing a profile or a queued or running
/// job uses is removed.
#[utoipa::path(post, path = "/api/v1/gc", request_body(content = Option<GcRequest>, description = "optional: no body is {\"dry_run\": false}"),
    responses((status = 200, body = GcReport), (status = 403, body = super::error::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiJsonOrDefault(req): ApiJsonOrDefault<GcRequest>,
) -> Result<Json<GcReport>, ApiError> {
    require_admin(&caller)?;
    let retention = &state.config.retention;
    let removed = crate::sweeper::sweep(&state.store, retention, req.dry_run).await?;
    Ok(Json(GcReport {
        dry_run: req.dry_run,
        finished_job_days: retention.finished_job_days,
        unused_upload_days: retention.unused_upload_days,
        removed,
    }))
}
