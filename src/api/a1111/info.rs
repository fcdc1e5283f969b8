//! What A1111 clients ask of the box besides pictures: its models (`sd-models`) and the one
//! setting they change (`options`' `sd_model_checkpoint`: an admin's is the box's diffusion
//! default, as `reelbox models default diffusion NAME` sets it, a client key's its own pick,
//! `store::choices`, which its requests naming no model draw with), its samplers, schedules and upscalers,
//! how far the caller's picture is (`progress`), stopping it (`interrupt`), and the lists
//! clients probe (`cmd-flags`, `loras`, the VAEs of `sd-vae` and Forge's `sd-modules`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::error::A1111Error;
use super::params::model_named;
use super::sampler::{SamplerItem, ScheduleItem, sampler_items, schedule_items};
use crate::api::auth::Caller;
use crate::api::json::ApiBytes;
use crate::api::{ApiError, AppState};
use crate::kinds::box_models;
use crate::models::convert::fused::Checkpoint;
use crate::models::{Catalog, ModelKind, ModelStore};
use crate::pipelines::diffusion::output::{LATENT_MODES, PICTURE_MODES};
use crate::store::JobFilter;
use crate::store::records::{Job, JobState, JobStatus};

/// One model of `GET /sdapi/v1/sd-models`, as A1111 lists a checkpoint: a model converted
/// from a checkpoint file at import (`reelbox models import FILE`) by that file's hashes,
/// `title` `name [shorthash]` (one imported before imports kept hashes once the daemon or
/// `reelbox models hash` hashed its file); one converted from a folder, a ready ONNX import, a
/// pulled model and one whose file is gone by its name alone, `hash` and `sha256` `null`, as
/// A1111 lists a checkpoint it has not hashed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111SdModel)]
pub struct SdModel {
    pub title: String,
    pub model_name: String,
    /// A1111's shorthash, the first 10 digits of `sha256` (as A1111's and Forge's API answer).
    pub hash: Option<String>,
    /// The sha256 of the checkpoint file it was converted from.
    pub sha256: Option<String>,
    /// Its folder (on a head, for a model only worker boxes have: its name).
    pub filename: String,
    pub config: Option<String>,
}

/// One item of `GET /sdapi/v1/sd-vae` (and Forge's `sd-modules`): a VAE file of its own.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111SdVae)]
pub struct SdVae {
    pub model_name: String,
    pub filename: String,
}

/// One item of `GET /sdapi/v1/upscalers`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111Upscaler)]
pub struct Upscaler {
    pub name: String,
    pub model_name: Option<String>,
    pub model_path: Option<String>,
    pub model_url: Option<String>,
    pub scale: f64,
}

/// One item of `GET /sdapi/v1/latent-upscale-modes`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111LatentMode)]
pub struct LatentMode {
    pub name: String,
}

/// `GET /sdapi/v1/progress`: how far the caller's newest running picture is.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111Progress)]
pub struct Progress {
    /// 0–1 (0 while none runs).
    pub progress: f64,
    /// Seconds left, from the time so far and the fraction done.
    pub eta_relative: f64,
    /// `job` (the job id), `job_count` (the caller's image jobs queued or running),
    /// `sampling_step`, `sampling_steps`, `interrupted`, `skipped`…
    #[schema(value_type = Object)]
    pub state: Value,
    /// Always `null`: no step previews are kept for this API.
    pub current_image: Option<String>,
    pub textinfo: Option<String>,
}

/// The installed diffusion models (and, on a head, its worker boxes').
#[utoipa::path(get, path = "/sdapi/v1/sd-models", operation_id = "a1111_sd_models", tag = "a1111", responses((status = 200, body = Vec<SdModel>)))]
pub async fn sd_models(State(state): State<AppState>) -> Json<Vec<SdModel>> {
    let catalog = Catalog::load(&state.config);
    let checkpoints = box_models::checkpoints(&catalog);
    let model = |name: &str, filename: String| {
        let hashed = checkpoints.get(name);
        SdModel {
            title: hashed.map_or_else(|| name.to_string(), Checkpoint::title),
            model_name: name.to_string(),
            hash: hashed.and_then(Checkpoint::shorthash).map(str::to_string),
            sha256: hashed.and_then(|c| c.sha256.clone()),
            filename,
            config: None,
        }
    };
    let mut models: Vec<SdModel> = catalog
        .installed(ModelKind::Diffusion)
        .map(|m| model(m.name(), m.dir().map(|d| d.display().to_string()).unwrap_or_default()))
        .collect();
    for name in box_models::names(ModelKind::Diffusion) {
        if !models.iter().any(|m| m.model_name == name) {
            models.push(model(&name, name.clone()));
        }
    }
    Json(models)
}

/// Installed diffusion model `name` as A1111 knows it (its title and hashes), where this box
/// has it, or on a head, a live worker box.
pub fn checkpoint_of(state: &AppState, name: &str) -> Option<Checkpoint> {
    box_models::checkpoints(&Catalog::load(&state.config)).get(name).cloned()
}

/// The model a client key picked through `options` while it is still installed (an admin's
/// pick is the box's default): what its requests naming none draw with.
pub fn picked(state: &AppState, caller: &Caller) -> Option<String> {
    if caller.admin {
        return None;
    }
    let pick = state.store.owner_checkpoint(&caller.owner).ok().flatten()?;
    model_named(&state.config, &pick, "sd_model_checkpoint").ok()
}

/// The clip skip `caller` set through `options` (`CLIP_stop_at_last_layers`), else 1.
pub(super) fn clip_skip_set(state: &AppState, caller: &Caller) -> u32 {
    state.store.owner_clip_skip(&caller.owner).ok().flatten().unwrap_or(1)
}

/// The model `caller`'s requests naming none draw with: its pick, else the box's default.
pub fn current(state: &AppState, caller: &Caller) -> Option<String> {
    picked(state, caller).or_else(|| box_models::default_anywhere(&state.config, ModelKind::Diffusion))
}

/// The settings clients read: `sd_model_checkpoint` is the model the caller's requests naming
/// none draw with, by its A1111 title, and `sd_checkpoint_hash` its checkpoint file's sha256.
#[utoipa::path(get, path = "/sdapi/v1/options", operation_id = "a1111_get_options", tag = "a1111", responses((status = 200, body = Object)))]
pub async fn get_options(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let name = current(&state, &caller);
    let hashed = name.as_deref().and_then(|n| checkpoint_of(&state, n));
    Json(json!({
        // Its title, as A1111 keeps the option: `name [shorthash]` for a hashed model.
        "sd_model_checkpoint": hashed.as_ref().map(Checkpoint::title).or(name),
        "sd_checkpoint_hash": hashed.and_then(|c| c.sha256),
        "samples_format": "png",
        "randn_source": "CPU",
        "eta_noise_seed_delta": 0,
        // Its clip skip, as this caller set it.
        "CLIP_stop_at_last_layers": clip_skip_set(&state, &caller),
        "sd_vae": "Automatic",
    }))
}

/// Sets `sd_model_checkpoint` (an installed diffusion model's name, title or hash, as
/// `params::model_named` reads it): an admin's
/// becomes the box's diffusion default, which requests naming no model use; a client key's
/// is its own pick (SillyTavern and Open WebUI pick a model only here), kept across restarts,
/// which its requests naming none draw with, other keys unaffected. `CLIP_stop_at_last_layers`
/// (1–12) is the caller's own clip skip, which its requests without one in
/// `override_settings` draw with (`params::clip_skip`). Other settings are accepted and left
/// as they are (clients send back all they read).
#[utoipa::path(post, path = "/sdapi/v1/options", operation_id = "a1111_set_options", tag = "a1111", request_body = Object,
    responses((status = 200, description = "set: `null`, as A1111 answers", body = Option<Object>),
        (status = 404, description = "no such diffusion model", body = super::error::A1111ErrorBody),
        (status = 422, description = "a body that is not a JSON object, a checkpoint that is no name, or a `CLIP_stop_at_last_layers` not 1 to 12", body = super::error::A1111ErrorBody)))]
pub async fn set_options(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<Json<Value>, A1111Error> {
    let options: Map<String, Value> = serde_json::from_slice(&body?.0).map_err(|e| {
        A1111Error::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the body is not a JSON object: {e}"))
    })?;
    if let Some(v) = options.get("CLIP_stop_at_last_layers").filter(|v| !v.is_null()) {
        let skip = super::params::stop_at_last_layers(v, "CLIP_stop_at_last_layers")?;
        state
            .store
            .set_owner_clip_skip(&caller.owner, (skip > 1).then_some(skip))
            .await
            .map_err(|e| A1111Error::internal(format!("cannot keep the clip skip set: {e}")))?;
    }
    let asked = match options.get("sd_model_checkpoint") {
        None | Some(Value::Null) => return Ok(Json(Value::Null)),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(A1111Error::field(
                "sd_model_checkpoint",
                format!("must be a model's name or title, got {other}"),
            ));
        }
    };
    let name = model_named(&state.config, asked, "sd_model_checkpoint")?;
    if current(&state, &caller).as_deref() == Some(name.as_str()) {
        return Ok(Json(Value::Null));
    }
    if !caller.admin {
        state
            .store
            .set_owner_checkpoint(&caller.owner, Some(name.clone()))
            .await
            .map_err(|e| A1111Error::internal(format!("cannot keep the model picked: {e}")))?;
        tracing::info!(model = %name, by = %caller.label, "a client key picked its model through /sdapi/v1/options");
        return Ok(Json(Value::Null));
    }
    let store = ModelStore::new(&state.config);
    store
        .set_default(ModelKind::Diffusion, &name)
        .map_err(|e| A1111Error::new(StatusCode::NOT_FOUND, format!("sd_model_checkpoint: {e}")))?;
    tracing::info!(model = %name, by = %caller.label, "the diffusion default was set through /sdapi/v1/options");
    Ok(Json(Value::Null))
}

/// The samplers reelbox runs, by A1111's names.
#[utoipa::path(get, path = "/sdapi/v1/samplers", operation_id = "a1111_samplers", tag = "a1111", responses((status = 200, body = Vec<SamplerItem>)))]
pub async fn samplers() -> Json<Vec<SamplerItem>> {
    Json(sampler_items())
}

/// The schedules reelbox runs: Automatic and Karras.
#[utoipa::path(get, path = "/sdapi/v1/schedulers", operation_id = "a1111_schedulers", tag = "a1111", responses((status = 200, body = Vec<ScheduleItem>)))]
pub async fn schedulers() -> Json<Vec<ScheduleItem>> {
    Json(schedule_items())
}

/// The hires fix's upscalers: plain resizes and the installed upscale models.
#[utoipa::path(get, path = "/sdapi/v1/upscalers", operation_id = "a1111_upscalers", tag = "a1111", responses((status = 200, body = Vec<Upscaler>)))]
pub async fn upscalers(State(state): State<AppState>) -> Json<Vec<Upscaler>> {
    let plain =
        |name: &str| Upscaler { name: name.into(), model_name: None, model_path: None, model_url: None, scale: 4.0 };
    let mut list: Vec<Upscaler> = PICTURE_MODES.iter().map(|m| plain(m.name)).collect();
    for m in Catalog::load(&state.config).installed(ModelKind::Upscale) {
        list.push(Upscaler {
            name: m.name().into(),
            model_name: Some(m.name().into()),
            model_path: m.dir().map(|d| d.display().to_string()),
            model_url: None,
            scale: 4.0,
        });
    }
    Json(list)
}

/// The hires fix's latent modes.
#[utoipa::path(get, path = "/sdapi/v1/latent-upscale-modes", operation_id = "a1111_latent_upscale_modes", tag = "a1111",
    responses((status = 200, body = Vec<LatentMode>)))]
pub async fn latent_upscale_modes() -> Json<Vec<LatentMode>> {
    Json(LATENT_MODES.iter().map(|m| LatentMode { name: m.name.to_string() }).collect())
}

/// The caller's image jobs in `status`, newest first (at most `limit`).
fn image_jobs(state: &AppState, caller: &Caller, status: JobStatus, limit: usize) -> Result<Vec<Job>, A1111Error> {
    let filter = JobFilter { state: Some(status), kind: Some("image".into()), owner: Some(caller.owner.clone()) };
    Ok(state.store.list_jobs(&filter, None, limit).map_err(ApiError::from)?)
}

/// How far the caller's newest running picture is (A1111's progress of its one job).
#[utoipa::path(get, path = "/sdapi/v1/progress", operation_id = "a1111_progress", tag = "a1111", responses((status = 200, body = Progress)))]
pub async fn progress(State(state): State<AppState>, caller: Caller) -> Result<Json<Progress>, A1111Error> {
    let running = image_jobs(&state, &caller, JobStatus::Running, usize::MAX)?;
    let queued = image_jobs(&state, &caller, JobStatus::Queued, usize::MAX)?.len();
    let Some(job) = running.first() else {
        let state = json!({"skipped": false, "interrupted": false, "stopping_generation": false, "job": "",
            "job_count": queued, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0});
        return Ok(Json(Progress { progress: 0.0, eta_relative: 0.0, state, current_image: None, textinfo: None }));
    };
    let view = crate::api::jobs::view(&state, job);
    let fraction = view.progress.fraction.clamp(0.0, 1.0);
    let started = match job.state {
        JobState::Running { started_at, .. } => job.first_started_at.unwrap_or(started_at),
        _ => job.created_at,
    };
    let elapsed = (crate::time::now_ms() - started).max(0) as f64 / 1000.0;
    // A1111's estimate: the time so far over the fraction done, less the time so far.
    let eta = if fraction > 0.0 { elapsed / fraction - elapsed } else { 0.0 };
    let state = json!({"skipped": false, "interrupted": false, "stopping_generation": false,
        "job": job.id.to_string(), "job_count": running.len() + queued, "job_timestamp": view.started_at,
        "job_no": 0, "sampling_step": view.progress.step, "sampling_steps": view.progress.total});
    let textinfo = view.progress.stage;
    Ok(Json(Progress { progress: fraction, eta_relative: eta.max(0.0), state, current_image: None, textinfo }))
}

/// Stops the caller's running pictures (their requests answer 409, canceled).
#[utoipa::path(post, path = "/sdapi/v1/interrupt", operation_id = "a1111_interrupt", tag = "a1111", responses((status = 200, body = Object)))]
pub async fn interrupt(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, A1111Error> {
    for job in image_jobs(&state, &caller, JobStatus::Running, usize::MAX)? {
        // One that ended meanwhile stays as it ended.
        let _ = state.jobs.cancel_job(&(&caller).into(), &job, None).await;
    }
    Ok(Json(json!({})))
}

/// The flags clients probe: this box serves the API and no web UI of A1111's.
#[utoipa::path(get, path = "/sdapi/v1/cmd-flags", operation_id = "a1111_cmd_flags", tag = "a1111", responses((status = 200, body = Object)))]
pub async fn cmd_flags() -> Json<Value> {
    Json(json!({"api": true, "nowebui": true, "api_log": false, "api_auth": null, "listen": false,
        "lowvram": false, "medvram": false, "no_half": false, "skip_torch_cuda_test": true}))
}

/// The VAEs a request may pick (`override_settings.sd_vae`): none, since reelbox keeps no
/// VAE on its own; each diffusion model decodes with its own, A1111's "Automatic". Clients
/// (SillyTavern) need the list to be one, even empty, to draw at all.
#[utoipa::path(get, path = "/sdapi/v1/sd-vae", operation_id = "a1111_sd_vae", tag = "a1111", responses((status = 200, body = Vec<SdVae>)))]
pub async fn sd_vae() -> Json<Vec<SdVae>> {
    Json(Vec::new())
}

/// Forge's list of VAEs and text encoders to add to a checkpoint: none, as for `sd-vae`.
#[utoipa::path(get, path = "/sdapi/v1/sd-modules", operation_id = "a1111_sd_modules", tag = "a1111", responses((status = 200, body = Vec<SdVae>)))]
pub async fn sd_modules() -> Json<Vec<SdVae>> {
    Json(Vec::new())
}

/// LoRAs: none through this API.
#[utoipa::path(get, path = "/sdapi/v1/loras", operation_id = "a1111_loras", tag = "a1111", responses((status = 200, body = Vec<Object>)))]
pub async fn loras() -> Json<Vec<Value>> {
    Json(Vec::new())
}
