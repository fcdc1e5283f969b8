//! Job routes: submit, list, show, cancel, retry, reprioritise, delete, pause/resume the queue.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::json::ApiJson;
use super::views::JobView;
use super::{ApiError, AppState};
use crate::kinds::ValidateCtx;
use crate::store::records::{Job, JobState, Stage, StageState, now_ms};
use crate::store::{JobFilter, Removal, StoreError};

/// Body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Job kind, e.g. `testcard`, `speech`, `image`, `render`.
    #[schema(pattern = "^(testcard|speech|lipsync|upscale|image|render|model_pull)$")]
    pub kind: String,
    /// Kind-specific parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Higher runs first (default 0).
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
}

/// Body of `PATCH /api/v1/jobs/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
}

/// Query of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    pub next_cursor: Option<String>,
}

/// Parses a job id from the path.
pub fn parse_id(what: &str, raw: &str) -> Result<Ulid, ApiError> {
    Ulid::from_string(raw).map_err(|_| ApiError::field("id", format!("{raw:?} is not a valid {what} id")))
}

/// Validates and durably queues a job; shared by every route that creates jobs.
pub async fn submit_job(
    state: &AppState,
    caller: &Caller,
    kind_name: &str,
    params: serde_json::Value,
    priority: i32,
    idempotency_key: Option<String>,
) -> Result<(Job, bool), ApiError> {
    let job = new_job(state, caller, kind_name, params, priority, idempotency_key)?;
    enqueue(state, caller, job).await
}

/// A validated job with its id, not yet queued (for routes that record more about it first).
pub fn new_job(
    state: &AppState,
    caller: &Caller,
    kind_name: &str,
    params: serde_json::Value,
    priority: i32,
    idempotency_key: Option<String>,
) -> Result<Job, ApiError> {
    let kind = state.scheduler.kind(kind_name).ok_or_else(|| ApiError {
        code: "unknown_kind",
        ..ApiError::field(
            "kind",
            format!("unknown job kind {kind_name:?}; known: {}", state.scheduler.kind_names().join(", ")),
        )
    })?;
    if kind.admin_only() && !caller.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_only",
            format!("{kind_name} jobs change the box; they need an admin key"),
        ));
    }
    if !(-1000..=1000).contains(&priority) {
        return Err(ApiError::field("priority", "must be between -1000 and 1000"));
    }
    let limits = &state.config.limits;
    if !caller.admin && priority > limits.max_client_priority {
        return Err(ApiError::field(
            "priority",
            format!("client keys may use priorities up to {} (limits.max_client_priority)", limits.max_client_priority),
        ));
    }
    super::limits::check_params(kind_name, &params, &state.config.limits)?;
    super::limits::check_gpu_quota(state, caller)?;
    let params = kind.validate(params, &ValidateCtx { config: &state.config })?;
    // After the parameters, so a bad field is named first. A 4xx, not a 503: nothing
    // changes by retrying until someone runs `reelbox setup`, and a box without its runtime
    // must still answer every request without a server error.
    if kind.needs_runtime()
        && let Err(e) = state.scheduler.engine().runtime()
    {
        return Err(ApiError::new(StatusCode::CONFLICT, "runtime_missing", e.to_string()));
    }
    state.scheduler.check_fits(kind.as_ref(), &params).map_err(|m| ApiError::field("params", m.to_string()))?;
    if let Some(secs) = kind.declared_seconds(&params)
        && !caller.admin
        && secs > limits.max_job_seconds as f64
    {
        return Err(ApiError::field(
            "params",
            format!(
                "this job would run {secs:.0} s; client keys may queue jobs up to {} s (limits.max_job_seconds)",
                limits.max_job_seconds
            ),
        ));
    }
    let stages = kind
        .stages(&params)
        .into_iter()
        .map(|name| Stage { name, state: StageState::Pending, artifacts: Vec::new(), energy_wh: None })
        .collect();
    let now = now_ms();
    Ok(Job {
        id: state.store.new_id(),
        owner: caller.owner.clone(),
        kind: kind_name.to_string(),
        params: params.to_string(),
        priority,
        state: JobState::Queued { enqueued_at: now, not_before: None },
        attempts: 0,
        stages,
        idempotency_key,
        created_at: now,
    })
}

/// Durably queues a job made by [`new_job`] within the caller's queue quota; true when an
/// idempotent repeat returned an earlier job.
pub async fn enqueue(state: &AppState, caller: &Caller, job: Job) -> Result<(Job, bool), ApiError> {
    // A client key without its own quota still cannot fill the whole queue.
    let own = caller.max_queued.or((!caller.admin).then_some(state.config.limits.client_max_queued));
    let gpu = super::limits::gpu_reservation(state, caller, &job);
    let submitted = match state.store.submit_with_quotas(job, state.config.queue.max_queued, own, gpu).await {
        Err(StoreError::GpuQuotaExceeded { used_ms, reserved_ms, estimate_ms, limit_ms, .. }) => {
            return Err(super::limits::gpu_quota_error(caller, used_ms, reserved_ms, estimate_ms, limit_ms));
        }
        other => other?,
    };
    if !submitted.existing {
        state.scheduler.notify();
    }
    Ok((submitted.job, submitted.existing))
}

/// Reads the `Idempotency-Key` header.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let key = v.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::field("Idempotency-Key", "must be 1–255 characters"));
            }
            Ok(Some(key.to_string()))
        }
    }
}

/// Loads a job the caller may see (404 otherwise, never 403).
pub fn visible_job(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Job, ApiError> {
    let id = parse_id("job", raw_id)?;
    match state.store.job(id)? {
        Some(job) if caller.may_see(&job.owner) => Ok(job),
        _ => Err(ApiError::not_found("job", raw_id)),
    }
}

/// The view of a job with its live progress, energy and cost.
pub fn view(state: &AppState, job: &Job) -> JobView {
    let mut v = JobView::new(job, state.scheduler.progress(job.id))
        .with_energy(state.scheduler.live_stage_energy_wh(job.id), state.config.energy.price_per_kwh);
    v.vram_mib = state.scheduler.need(job).vram_mib;
    v
}

/// Submit a job.
#[utoipa::path(post, path = "/api/v1/jobs", request_body = SubmitRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = JobView), (status = 200, description = "existing job for the idempotency key", body = JobView),
        (status = 400, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let mut params = req.params;
    if req.kind == "render" {
        super::renders::expand_profile(&state, &caller, &mut params)?;
    }
    let (job, existing) = submit_job(&state, &caller, &req.kind, params, req.priority, key).await?;
    Ok(accepted(&state, &job, existing))
}

/// 202 (or 200 for an idempotent repeat) with the job and its `Location`.
pub fn accepted(state: &AppState, job: &Job, existing: bool) -> Response {
    let status = if existing { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut resp = (status, Json(view(state, job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", params(ListQuery), responses((status = 200, body = JobPage)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    if let Some(s) = &q.state
        && !["queued", "running", "succeeded", "failed", "canceled"].contains(&s.as_str())
    {
        return Err(ApiError::field("state", "must be one of queued, running, succeeded, failed, canceled"));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    let cursor = q.cursor.as_deref().map(|c| parse_id("cursor", c)).transpose()?;
    let filter = JobFilter { state: q.state, kind: q.kind, owner: caller.owner_filter() };
    let jobs = state.store.list_jobs(&filter, cursor, limit + 1)?;
    let more = jobs.len() > limit;
    let jobs: Vec<Job> = jobs.into_iter().take(limit).collect();
    let next_cursor = if more { jobs.last().map(|j| j.id.to_string()) } else { None };
    Ok(Json(JobPage { jobs: jobs.iter().map(|j| view(&state, j)).collect(), next_cursor }))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 404, body = super::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    Ok(Json(view(&state, &job)))
}

/// Cancel a queued or running job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 409, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    let job = state.scheduler.cancel(job.id).await?;
    Ok(Json(view(&state, &job)))
}

/// Re-queue a failed or canceled job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 409, body = super::error::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    let job = state.scheduler.retry(job.id).await?;
    Ok(Json(view(&state, &job)))
}

/// Delete a finished job with its artifacts (records and files) and events. Artifacts a
/// profile or a queued or running job uses stay, without a job.
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", params(("id" = String, Path)),
    responses((status = 200, description = "what was removed", body = Removal),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "the job is queued or running: cancel it first", body = super::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Removal>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    Ok(Json(state.store.delete_job(job.id).await?))
}

/// Change a job's priority.
#[utoipa::path(patch, path = "/api/v1/jobs/{id}", params(("id" = String, Path)), request_body = PatchRequest, responses((status = 200, body = JobView)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PatchRequest>,
) -> Result<Json<JobView>, ApiError> {
    if !(-1000..=1000).contains(&req.priority) {
        return Err(ApiError::field("priority", "must be between -1000 and 1000"));
    }
    let job = visible_job(&state, &caller, &id)?;
    let priority = req.priority;
    let job = state
        .store
        .update_job(job.id, true, move |j| {
            j.priority = priority;
            Ok(vec![])
        })
        .await?;
    Ok(Json(view(&state, &job)))
}

/// Queue state after pause/resume.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueState {
    pub paused: bool,
}

/// Stop starting new jobs (running ones continue).
#[utoipa::path(post, path = "/api/v1/queue/pause", responses((status = 200, body = QueueState)))]
pub async fn pause(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueState>, ApiError> {
    require_admin(&caller)?;
    state.scheduler.set_paused(true);
    Ok(Json(QueueState { paused: true }))
}

/// Start taking jobs again.
#[utoipa::path(post, path = "/api/v1/queue/resume", responses((status = 200, body = QueueState)))]
pub async fn resume(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueState>, ApiError> {
    require_admin(&caller)?;
    state.scheduler.set_paused(false);
    Ok(Json(QueueState { paused: false }))
}

/// 403 unless the caller is an admin.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "admin_only", "this needs an admin key"))
    }
}

/// Submits a job of `kind` from a kind route's typed body: its fields are the parameters,
/// with nulls dropped so the kind fills its own defaults.
pub async fn submit_params(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    kind: &str,
    body: &impl Serialize,
    priority: Option<i32>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let mut params =
        serde_json::to_value(body).map_err(|e| ApiError::internal(format!("cannot encode params: {e}")))?;
    if let Some(map) = params.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    let (job, existing) = submit_job(state, caller, kind, params, priority.unwrap_or(0), key).await?;
    Ok(accepted(state, &job, existing))
}
