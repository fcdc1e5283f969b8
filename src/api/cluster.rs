//! `GET /api/v1/cluster`: the worker boxes as the head sees them (devices, free GPU
//! memory, running stages, last heartbeat), so `reelbox cluster status` needs only the
//! API's URL and key, not NATS credentials.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;

/// The head's worker boxes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    /// Seconds a heartbeat lives; a box silent this long is gone.
    pub heartbeat_ttl_s: u64,
    /// The head's clock when it answered, ms since the epoch (heartbeat ages are against it).
    pub now_ms: i64,
    /// Live boxes by name, as their last heartbeats describe them (host, version,
    /// devices with slots and free memory, GPU readings, models, each model's details in
    /// `model_details` (kind, weights' bytes, a diffusion model's sizes and defaults), running
    /// stages, `at_ms`).
    #[schema(value_type = Vec<Object>)]
    pub boxes: Vec<serde_json::Value>,
    /// Each box's artifact bucket on the NATS server (`host`, `objects`, `bytes`), boxes
    /// gone included: what is in transit or left over, counted when asked (a count is
    /// served again for 5 s).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub buckets: Vec<serde_json::Value>,
}

/// Worker boxes of this head.
#[utoipa::path(get, path = "/api/v1/cluster", responses(
    (status = 200, body = ClusterView),
    (status = 404, description = "this daemon is not a cluster head", body = super::error::ErrorBody),
    (status = 503, description = "this head cannot reach its NATS server now", body = super::error::ErrorBody),
))]
pub async fn status(State(state): State<AppState>, _caller: Caller) -> Result<Json<ClusterView>, ApiError> {
    // Before the boxes: while NATS does not answer, the last heartbeats read are no news.
    if let Some(nats) = state.scheduler.unreached_nats() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unreachable",
            format!("this head cannot reach its NATS server at {nats} now; it keeps trying (see its log)"),
        ));
    }
    let Some(remote) = state.scheduler.remote() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_cluster",
            "this daemon has no worker boxes: its config has no [cluster] section (see README, More than one box)",
        ));
    };
    Ok(Json(ClusterView {
        heartbeat_ttl_s: remote.heartbeat_ttl_s(),
        now_ms: crate::time::now_ms(),
        boxes: remote.adverts(),
        buckets: remote.buckets().await,
    }))
}
