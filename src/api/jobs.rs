//! Job routes: submit, list, show, cancel, retry, reprioritise, delete, pause/resume the queue.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::json::{ApiJson, ApiJsonOrDefault, ApiQuery};
use super::views::JobView;
use super::{ApiError, AppState};
use crate::jobs::{self, JobList, ListRequest, Submission, Submitter};
use crate::store::Removal;
use crate::store::records::{Job, JobStatus};

/// Body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Job kind, e.g. `testcard`, `speech`, `image`, `render`.
    #[schema(pattern = "^(testcard|speech|lipsync|upscale|image|render|model_pull|model_import|face_detect)$")]
    pub kind: String,
    /// Kind-specific parameters (none, or `null`: the kind's defaults).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
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

/// Body of `POST /api/v1/jobs/{id}/cancel`; optional, so no body at all cancels without a
/// reason.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, in a line (at most 200 characters): the job keeps it and shows it as its `error`.
    /// Without one the job says who canceled it: `canceled by its owner`, or `canceled by an
    /// admin (key "NAME")` (an admin's reason follows that).
    #[serde(default)]
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub reason: Option<String>,
}

// utoipa takes only a literal for `max_length`: the build stops if the limit moves without it.
const _: () = assert!(jobs::CANCEL_REASON_MAX_CHARS == 200);
// Nor for `minimum`/`maximum` (a number literal; `schema_with` would drop the parameter's
// description): `limit`'s bounds below are `jobs::PAGE_SIZES`, checked here the same way.
const _: () = assert!(*jobs::PAGE_SIZES.start() == 1 && *jobs::PAGE_SIZES.end() == 500);

/// Query of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    #[param(pattern = "^(queued|running|succeeded|failed|canceled)$")]
    pub state: Option<String>,
    /// Only jobs of this kind (the same list as `SubmitRequest`'s `kind`).
    #[param(pattern = "^(testcard|speech|lipsync|upscale|image|render|model_pull|model_import|face_detect)$")]
    pub kind: Option<String>,
    /// Page size (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (a job id: the document says so in
    /// `openapi::describe_params`, with the ids in paths).
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    pub next_cursor: Option<String>,
}

/// Parses a record id from the path (400 naming `id`).
pub fn parse_id(what: &str, raw: &str) -> Result<Ulid, ApiError> {
    Ok(jobs::parse_id(what, raw)?)
}

impl From<&Caller> for Submitter {
    fn from(c: &Caller) -> Self {
        Submitter {
            owner: c.owner.clone(),
            label: c.label.clone(),
            admin: c.admin,
            max_queued: c.max_queued,
            gpu_seconds_per_day: c.gpu_seconds_per_day,
        }
    }
}

/// The one translation of the jobs service's refusals into HTTP: status, code, field and
/// message as clients have always seen them.
impl From<jobs::Error> for ApiError {
    fn from(e: jobs::Error) -> Self {
        match e {
            jobs::Error::UnknownKind { .. } => {
                ApiError { code: "unknown_kind", ..ApiError::field("kind", e.to_string()) }
            }
            jobs::Error::AdminOnly { .. } => ApiError::new(StatusCode::FORBIDDEN, "admin_only", e.to_string()),
            jobs::Error::Param(p) => p.into(),
            jobs::Error::LimitExceeded { field, message } => {
                ApiError { code: "limit_exceeded", ..ApiError::field(field, message) }
            }
            jobs::Error::RuntimeMissing(err) => ApiError::new(StatusCode::CONFLICT, "runtime_missing", err.to_string()),
            jobs::Error::GpuQuota(r) => ApiError {
                retry_after: Some(r.retry_after_s),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", r.message)
            },
            jobs::Error::JobNotFound(id) => ApiError::not_found("job", &id),
            jobs::Error::Store(s) => s.into(),
            jobs::Error::Control(c) => c.into(),
            jobs::Error::DiskLow(low) => low.into(),
        }
    }
}

/// Validates and durably queues a job for `caller`; true when an idempotent repeat
/// returned an earlier job.
pub async fn submit_job(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    params: serde_json::Value,
    priority: i32,
    idempotency_key: Option<String>,
) -> Result<(Job, bool), ApiError> {
    let submission = Submission { kind: kind.to_string(), params, priority, idempotency_key };
    let submitted = state.jobs.submit(&caller.into(), submission).await?;
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
            // `to_str` lets a tab through; the document (and the stores that log keys) take
            // visible ASCII and spaces only.
            if !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(ApiError::field("Idempotency-Key", "must be visible ASCII (no tabs)"));
            }
            Ok(Some(key.to_string()))
        }
    }
}

/// Loads a job the caller may see (404 otherwise, never 403).
pub fn visible_job(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Job, ApiError> {
    Ok(state.jobs.visible(&caller.into(), raw_id)?)
}

/// The view of a job with its live progress, energy and cost.
pub fn view(state: &AppState, job: &Job) -> JobView {
    let mut v = JobView::new(job, &state.jobs.stage_weights(job), state.scheduler.progress(job.id))
        .with_energy(state.scheduler.live_stage_energy_wh(job.id), state.config.energy.price_per_kwh)
        .with_waiting(|| state.scheduler.waiting(job.id));
    (v.vram_mib, v.models) = state.scheduler.view_needs(job);
    v
}

/// Submit a job.
#[utoipa::path(post, path = "/api/v1/jobs", request_body = SubmitRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = JobView), (status = 200, description = "existing job for the idempotency key", body = JobView),
        (status = 400, body = super::error::ErrorBody),
        (status = 403, description = "`admin_only`: a kind that changes the box (`model_pull`, `model_import`) with a client key", body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    // `null` is no parameters, as the document says and every kind reads none: the profile
    // expansions below take them as an empty object too.
    let mut params = if req.params.is_null() { serde_json::json!({}) } else { req.params };
    match req.kind.as_str() {
        "render" => state.jobs.expand_render_profile(&(&caller).into(), &mut params)?,
        "image" => state.jobs.expand_image_profile(&(&caller).into(), &mut params)?,
        // As `POST /api/v1/lipsync` does: `reelbox lipsync --profile` submits here.
        "lipsync" => {
            if let Some(obj) = params.as_object_mut() {
                state.jobs.expand_lipsync_profile(&(&caller).into(), obj)?;
            }
        }
        _ => {}
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
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "list_jobs", params(ListQuery), responses((status = 200, body = JobPage)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let state_filter = q.state.map(|s| s.parse::<JobStatus>()).transpose().map_err(|_| {
        let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::field("state", format!("must be one of {}", names.join(", ")))
    })?;
    let req = ListRequest { state: state_filter, kind: q.kind, limit: q.limit, cursor: q.cursor };
    let JobList { jobs, next_cursor } = state.jobs.list(&(&caller).into(), req)?;
    Ok(Json(JobPage { jobs: jobs.iter().map(|j| view(&state, j)).collect(), next_cursor }))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", operation_id = "show_job", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 404, body = super::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    Ok(Json(view(&state, &job)))
}

/// Cancel a queued or running job. It keeps why (the body's `reason`, else who canceled it),
/// shown as its `error`.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = String, Path)),
    request_body(content = Option<CancelRequest>, description = "optional: no body cancels without a reason"),
    responses((status = 200, body = JobView), (status = 400, description = "`reason` too long, not one line or not a string", body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJsonOrDefault(req): ApiJsonOrDefault<CancelRequest>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.jobs.cancel(&(&caller).into(), &id, req.reason).await?;
    Ok(Json(view(&state, &job)))
}

/// Re-queue a failed or canceled job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 409, body = super::error::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.jobs.retry(&(&caller).into(), &id).await?;
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
    Ok(Json(state.jobs.delete(&(&caller).into(), &id).await?))
}

/// Change a job's priority.
#[utoipa::path(patch, path = "/api/v1/jobs/{id}", params(("id" = String, Path)), request_body = PatchRequest,
    responses((status = 200, body = JobView),
        (status = 409, description = "`wrong_state`: the job has succeeded", body = super::error::ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PatchRequest>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.jobs.reprioritise(&(&caller).into(), &id, req.priority).await?;
    Ok(Json(view(&state, &job)))
}

/// Queue state after pause/resume.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueState {
    pub paused: bool,
}

/// Stop starting new jobs (running ones continue).
#[utoipa::path(post, path = "/api/v1/queue/pause",
    responses((status = 200, body = QueueState), (status = 403, description = "`admin_only`", body = super::error::ErrorBody)))]
pub async fn pause(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueState>, ApiError> {
    require_admin(&caller)?;
    state.scheduler.set_paused(true).await?;
    Ok(Json(QueueState { paused: true }))
}

/// Start taking jobs again.
#[utoipa::path(post, path = "/api/v1/queue/resume",
    responses((status = 200, body = QueueState), (status = 403, description = "`admin_only`", body = super::error::ErrorBody)))]
pub async fn resume(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueState>, ApiError> {
    require_admin(&caller)?;
    state.scheduler.set_paused(false).await?;
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

/// Reads a route's typed body as its kind reads any request JSON (`from_json`), so every
/// field error is the kind's own. The body's numbers are `f64`, as the kinds read them: an
/// `f32` made a number past its range infinity, which JSON writes as `null`, so the kind
/// took its default instead of refusing it.
pub fn kind_request<T>(
    body: &impl Serialize,
    from_json: fn(&serde_json::Value) -> Result<T, crate::kinds::ParamError>,
) -> Result<T, ApiError> {
    let body = serde_json::to_value(body).map_err(|e| ApiError::internal(format!("cannot encode params: {e}")))?;
    Ok(from_json(&body)?)
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
