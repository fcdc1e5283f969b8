//! `/prompt`, `/queue`, `/interrupt` and `/history`: ComfyUI's queue over reelbox jobs.
//! A prompt is one `image` job; its prompt id is the job id unless the client chose one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::Comfy;
use super::answers::{ExecInfo, HistoryEntry, PromptQueued, QueueContents, QueueInfo};
use super::compile::{Compiled, Upload, compile, input_error};
use super::error::{ComfyError, ComfyQuery, parse_or_default};
use super::files::{file_name, find_upload};
use super::info::spec_context;
use super::messages::{self, Message};
use super::prompts::{PromptMeta, PromptRecord};
use super::validate::{PromptError, ValidGraph, validate};
use crate::api::artifacts::store_upload;
use crate::api::auth::Caller;
use crate::api::json::ApiBytes;
use crate::api::outputs::final_images;
use crate::api::{ApiError, AppState};
use crate::jobs::Submission;
use crate::models::Catalog;
use crate::store::records::{Job, JobState, JobStatus};
use crate::store::{JobFilter, StoreError};

/// Priority of prompts queued with `"front": true`.
pub const FRONT_PRIORITY: i32 = 100;

/// Jobs queued plus running: ComfyUI's `queue_remaining`.
pub fn queue_remaining(state: &AppState) -> u64 {
    state.store.queued_len().unwrap_or(0) + state.scheduler.running_count() as u64
}

/// Body of `POST /prompt` (read as JSON whatever the content type).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PromptRequest {
    /// The API-format graph: node id → `{class_type, inputs}`.
    #[schema(value_type = Object)]
    pub prompt: Value,
    /// The `clientId` of the client's `/ws` connection.
    pub client_id: Option<String>,
    #[schema(value_type = Object)]
    pub extra_data: Option<Value>,
    /// Queue ahead of other prompts.
    pub front: Option<bool>,
    pub number: Option<f64>,
    /// A prompt id of the client's choosing (default: the job id).
    pub prompt_id: Option<String>,
}

/// Queue a prompt (API-format graph).
#[utoipa::path(post, path = "/prompt", tag = "comfyui", request_body = PromptRequest,
    responses((status = 200, body = PromptQueued), (status = 400, description = "a refused graph: `node_errors` by node id", body = super::error::ComfyErrorBody)))]
pub async fn post_prompt(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<Json<PromptQueued>, ComfyError> {
    // ComfyUI reads the body as JSON whatever its content type.
    let req: Value = serde_json::from_slice(&body?.0)
        .map_err(|e| PromptError::top("invalid_prompt", "The request body is not JSON", &e.to_string()))?;
    let Some(prompt) = req.get("prompt").filter(|p| !p.is_null()) else {
        return Err(PromptError::top("no_prompt", "No prompt provided", "No prompt provided").into());
    };
    let client_id = req
        .get("client_id")
        .or_else(|| req.get("extra_data").and_then(|e| e.get("client_id")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let chosen_id = match req.get("prompt_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_prompt_id(id) && !comfy.prompts.prompt_id_taken(id) => Some(id.clone()),
        Some(other) => {
            return Err(PromptError::top(
                "invalid_prompt",
                "prompt_id must be 1–64 letters, digits, '-' or '_', and not used before",
                &other.to_string(),
            )
            .into());
        }
    };
    // Compiling reads pictures (a mask's uploads, worked out pixel by pixel): blocking work,
    // kept off the runtime's workers so other requests go on meanwhile.
    let (graph, mut compiled) = {
        let (state, comfy, caller, prompt) = (state.clone(), comfy.clone(), caller.clone(), prompt.clone());
        tokio::task::spawn_blocking(move || checked_and_compiled(&state, &comfy, &caller, &prompt))
            .await
            .map_err(|e| ApiError::internal(format!("the prompt's check stopped: {e}")))??
    };
    if let Some(png) = compiled.mask.take() {
        // Kept as the caller's upload, as a mask sent to the native route is: the job names it.
        let kept = store_upload(&state, &caller, png, "image/png", "upload", |a| file_name("mask", a)).await?;
        compiled.params["mask"] = json!(kept.artifact.id.to_string());
    }
    let front = req.get("front").and_then(Value::as_bool).unwrap_or(false);
    let priority = if front { FRONT_PRIORITY } else { 0 };
    let submission =
        Submission { kind: compiled.kind.into(), params: compiled.params, priority, idempotency_key: None };
    let job = state.jobs.prepare(&(&caller).into(), submission).map_err(ApiError::from).map_err(|e| {
        match e.field.as_deref().and_then(|f| compiled.roles.source_of(f)) {
            // The kind names its own parameter; point at the node input it came from.
            Some((node, input)) => {
                let class_type = graph.nodes.get(&node).map_or("", |n| n.class_type.as_str());
                // As the client sent it (the checked graph holds a checkpoint's model name).
                let received = prompt.get(&node).and_then(|n| n.get("inputs")).and_then(|i| i.get(input));
                let received = received.cloned().unwrap_or(Value::Null);
                ComfyError::from(input_error(
                    &node,
                    class_type,
                    input,
                    "custom_validation_failed",
                    &e.message,
                    &received,
                ))
            }
            None => ComfyError::from(e),
        }
    })?;
    let mut extra_data = req.get("extra_data").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    if let Some(c) = &client_id {
        extra_data["client_id"] = json!(c);
    }
    let number = match req.get("number").and_then(Value::as_f64) {
        Some(n) if n.is_finite() => n as i64,
        _ => comfy.prompts.next_number(),
    };
    let prompt_id = chosen_id.unwrap_or_else(|| job.id.to_string());
    let record = PromptRecord {
        job: job.id,
        prompt_id: prompt_id.clone(),
        number,
        client_id,
        roles: compiled.roles,
        graph: prompt.clone(),
        extra_data,
    };
    comfy.prompts.put(record).await.map_err(|e| ComfyError::from(ApiError::internal(e.to_string())))?;
    let job_id = job.id;
    if let Err(e) = state.jobs.enqueue(&(&caller).into(), job).await {
        comfy.prompts.remove(job_id);
        return Err(ApiError::from(e).into());
    }
    Ok(Json(PromptQueued { prompt_id, number, node_errors: Map::new() }))
}

/// The checked graph of `prompt` and the job it compiles to, its uploads the caller's. Blocking.
fn checked_and_compiled(
    state: &AppState,
    comfy: &Comfy,
    caller: &Caller,
    prompt: &Value,
) -> Result<(ValidGraph, Compiled), PromptError> {
    let graph = validate(prompt, &spec_context(state))?;
    let compiled = compile(&graph, &|name| {
        let found = find_upload(state, &comfy.uploads, caller, name)?;
        Ok(Upload { id: found.id.to_string(), path: state.store.artifacts_dir().join(&found.path) })
    })?;
    // On a head, its live boxes' fused models too: the job runs on a box that has it.
    let models = crate::kinds::box_models::checkpoints(&Catalog::load(&state.config));
    let compiled = super::loras::onto_fused(&graph, compiled, &models)?;
    Ok((graph, compiled))
}

fn valid_prompt_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The queue length.
#[utoipa::path(get, path = "/prompt", tag = "comfyui", responses((status = 200, body = QueueInfo)))]
pub async fn get_prompt(State(state): State<AppState>, _caller: Caller) -> Json<QueueInfo> {
    Json(QueueInfo { exec_info: ExecInfo { queue_remaining: queue_remaining(&state) } })
}

/// ComfyUI's queue item: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
fn queue_item(comfy: &Comfy, meta: &PromptMeta) -> Value {
    let record = comfy.prompts.record(meta.job);
    let (graph, extra) = record.map_or((json!({}), json!({})), |r| (r.graph, r.extra_data));
    let outputs: Vec<&str> = meta.roles.outputs.iter().map(|o| o.id.as_str()).collect();
    json!([meta.number, meta.prompt_id, graph, extra, outputs])
}

/// Prompts of the caller's jobs in one state, with their jobs (of any kind a prompt makes:
/// the prompts' own index tells them from other jobs).
fn prompts_in_state(
    state: &AppState,
    comfy: &Comfy,
    caller: &Caller,
    job_state: JobStatus,
) -> Result<Vec<(Job, std::sync::Arc<PromptMeta>)>, ApiError> {
    let filter = JobFilter { state: Some(job_state), kind: None, owner: caller.owner_filter() };
    let jobs = state.store.list_jobs(&filter, None, 100_000)?;
    Ok(jobs.into_iter().filter_map(|j| comfy.prompts.by_job(j.id).map(|m| (j, m))).collect())
}

/// Running and pending prompts.
#[utoipa::path(get, path = "/queue", tag = "comfyui", responses((status = 200, body = QueueContents)))]
pub async fn get_queue(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
) -> Result<Json<QueueContents>, ComfyError> {
    let running: Vec<Value> = prompts_in_state(&state, &comfy, &caller, JobStatus::Running)?
        .iter()
        .map(|(_, m)| queue_item(&comfy, m))
        .collect();
    let mut pending = prompts_in_state(&state, &comfy, &caller, JobStatus::Queued)?;
    pending.sort_by_key(|(j, m)| (-j.priority, m.number, j.id));
    let pending: Vec<Value> = pending.iter().map(|(_, m)| queue_item(&comfy, m)).collect();
    Ok(Json(QueueContents { queue_running: running, queue_pending: pending }))
}

/// Body of `POST /queue` and `POST /history`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ClearOrDelete {
    #[serde(default)]
    pub clear: bool,
    #[serde(default)]
    pub delete: Vec<String>,
}

/// Clear pending prompts or delete some by id (running ones are interrupted with `/interrupt`).
#[utoipa::path(post, path = "/queue", tag = "comfyui", request_body = Option<ClearOrDelete>,
    responses((status = 200, description = "done: no body, as ComfyUI answers")))]
pub async fn post_queue(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<StatusCode, ComfyError> {
    let req: ClearOrDelete = parse_or_default(body)?;
    let pending = prompts_in_state(&state, &comfy, &caller, JobStatus::Queued)?;
    for (job, meta) in pending {
        if req.clear || req.delete.contains(&meta.prompt_id) {
            // A prompt that started meanwhile stays running: ComfyUI deletes only pending ones.
            let _ = state.jobs.cancel_job(&(&caller).into(), &job, None).await;
        }
    }
    Ok(StatusCode::OK)
}

/// Body of `POST /interrupt`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct InterruptRequest {
    pub prompt_id: Option<String>,
}

/// Stop the running prompt (the given one, or every running prompt of the caller).
#[utoipa::path(post, path = "/interrupt", tag = "comfyui", request_body = Option<InterruptRequest>,
    responses((status = 200, description = "done: no body, as ComfyUI answers")))]
pub async fn interrupt(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<StatusCode, ComfyError> {
    let req: InterruptRequest = parse_or_default(body)?;
    for (job, meta) in prompts_in_state(&state, &comfy, &caller, JobStatus::Running)? {
        if req.prompt_id.as_ref().is_none_or(|id| *id == meta.prompt_id) {
            let _ = state.jobs.cancel_job(&(&caller).into(), &job, None).await;
        }
    }
    Ok(StatusCode::OK)
}

/// Query of `GET /history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Most entries to return (newest).
    pub max_items: Option<usize>,
}

/// A finished prompt's history entry, or `None` while it has not finished. A prompt canceled
/// before it ran (deleted from the queue, its key revoked) has one too, interrupted with no
/// outputs: ComfyUI itself keeps none for a deleted pending prompt, and a client polling
/// `/history/{id}` for it would wait forever.
pub fn history_entry(state: &AppState, comfy: &Comfy, meta: &PromptMeta, job: &Job) -> Result<Option<Value>, ApiError> {
    let (started, finished) = match &job.state {
        JobState::Canceled { canceled_at, reason } if job.attempts == 0 => {
            let never_ran = messages::execution_interrupted(meta, reason.as_deref(), *canceled_at, None);
            return Ok(Some(entry(comfy, meta, Map::new(), Map::new(), ("error", false), vec![never_ran])));
        }
        JobState::Succeeded { started_at, finished_at } => (*started_at, *finished_at),
        JobState::Failed { started_at, finished_at, .. } => (started_at.unwrap_or(*finished_at), *finished_at),
        JobState::Canceled { canceled_at, .. } => (*canceled_at, *canceled_at),
        _ => return Ok(None),
    };
    let images = final_images(&state.store, job)?;
    let mut outputs = Map::new();
    let mut meta_out = Map::new();
    if matches!(job.state, JobState::Succeeded { .. }) {
        for out in &meta.roles.outputs {
            outputs.insert(out.id.clone(), messages::node_output(meta, &out.id, &images));
            meta_out.insert(
                out.id.clone(),
                json!({"node_id": out.id, "display_node": out.id, "parent_node": null, "real_node_id": out.id}),
            );
        }
    }
    let mut msgs: Vec<Message> =
        vec![messages::execution_start(meta, started), messages::execution_cached(meta, started)];
    let (status_str, completed) = match &job.state {
        JobState::Succeeded { .. } => {
            msgs.push(messages::execution_success(meta, finished));
            ("success", true)
        }
        JobState::Failed { error, .. } => {
            msgs.push(messages::execution_error(meta, messages::stopped_node(meta, job), error, finished));
            ("error", false)
        }
        JobState::Canceled { reason, .. } => {
            let node = messages::stopped_node(meta, job);
            msgs.push(messages::execution_interrupted(meta, reason.as_deref(), finished, node));
            ("error", false)
        }
        // Queued and running prompts have no history entry (returned above).
        _ => return Ok(None),
    };
    Ok(Some(entry(comfy, meta, outputs, meta_out, (status_str, completed), msgs)))
}

/// A history entry in ComfyUI's shape: the queue item, the outputs by node, the status with
/// its messages.
fn entry(
    comfy: &Comfy,
    meta: &PromptMeta,
    outputs: Map<String, Value>,
    meta_out: Map<String, Value>,
    (status_str, completed): (&str, bool),
    msgs: Vec<Message>,
) -> Value {
    let msgs: Vec<Value> = msgs.into_iter().map(|(t, d)| json!([t, d])).collect();
    json!({
        "prompt": queue_item(comfy, meta),
        "outputs": outputs,
        "status": {"status_str": status_str, "completed": completed, "messages": msgs},
        "meta": meta_out,
    })
}

/// Finished prompts, newest `max_items`.
#[utoipa::path(get, path = "/history", tag = "comfyui", params(HistoryQuery),
    responses((status = 200, body = HashMap<String, HistoryEntry>, description = "finished prompts by prompt id, newest first")))]
pub async fn history(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    ComfyQuery(q): ComfyQuery<HistoryQuery>,
) -> Result<Json<Value>, ComfyError> {
    let limit = q.max_items.unwrap_or(usize::MAX);
    let mut out = Map::new();
    for meta in comfy.prompts.all_newest_first() {
        if out.len() >= limit {
            break;
        }
        let Some(job) = state.store.job(meta.job)? else { continue };
        if !caller.may_see(&job.owner) {
            continue;
        }
        if let Some(entry) = history_entry(&state, &comfy, &meta, &job)? {
            out.insert(meta.prompt_id.clone(), entry);
        }
    }
    Ok(Json(Value::Object(out)))
}

/// One prompt's history (`{}` while it runs or when unknown, as ComfyUI answers).
#[utoipa::path(get, path = "/history/{prompt_id}", tag = "comfyui", params(("prompt_id" = String, Path)),
    responses((status = 200, body = HashMap<String, HistoryEntry>, description = "the prompt by its id once it finished, else `{}`")))]
pub async fn history_one(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    Path(prompt_id): Path<String>,
) -> Result<Json<Value>, ComfyError> {
    let Some(meta) = comfy.prompts.by_prompt_id(&prompt_id) else { return Ok(Json(json!({}))) };
    let Some(job) = state.store.job(meta.job)?.filter(|j| caller.may_see(&j.owner)) else {
        return Ok(Json(json!({})));
    };
    Ok(Json(match history_entry(&state, &comfy, &meta, &job)? {
        Some(entry) => json!({ prompt_id: entry }),
        None => json!({}),
    }))
}

/// Delete finished prompts (all the caller sees with `clear`, or by id with `delete`): their
/// history entries, jobs, pictures and events. Pending and running prompts are left alone,
/// as in ComfyUI; an input a pending prompt still uses stays.
#[utoipa::path(post, path = "/history", tag = "comfyui", request_body = Option<ClearOrDelete>,
    responses((status = 200, description = "done: no body, as ComfyUI answers")))]
pub async fn post_history(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<StatusCode, ComfyError> {
    let req: ClearOrDelete = parse_or_default(body)?;
    for meta in comfy.prompts.all_newest_first() {
        if !(req.clear || req.delete.contains(&meta.prompt_id)) {
            continue;
        }
        // A record without its job is left alone: it may be a prompt being queued right now
        // (its record is written first); start-up drops the ones whose job never came.
        let Some(job) = state.store.job(meta.job)? else { continue };
        if !caller.may_see(&job.owner) || !job.state.is_terminal() {
            continue;
        }
        match state.store.delete_job(job.id).await {
            // Gone meanwhile (another delete) is as good as deleted.
            Ok(_) | Err(StoreError::NotFound { .. }) => comfy.prompts.remove(job.id),
            // Retried meanwhile: it is pending again, so it stays.
            Err(StoreError::NotFinished { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(StatusCode::OK)
}
