//! `POST /sdapi/v1/txt2img` and `/img2img`: the request becomes one `image` job, which the
//! request waits for as OpenAI's image routes do (`openai::run`: a client that hangs up
//! leaves the job for the same request sent again, canceled if none comes), answered in
//! A1111's shape: the pictures as base64 PNGs, the request as read, and `info`, a JSON text
//! whose `infotexts` are the pictures' own `parameters` text.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{A1111Error, read_body};
use super::infotext::extra_generation_params;
use super::params::{clip_skip, generation, hires, refiner, refiner_field, request_field, request_words};
use super::pictures::{init_picture, mask_picture};
use super::request::{Generation, ImageResponse, Img2Img, Txt2Img};
use super::sampler::a1111_names;
use crate::api::auth::Caller;
use crate::api::json::ApiBytes;
use crate::api::openai::edits::own_size;
use crate::api::openai::run::{job_failure, read_artifact, submit};
use crate::api::openai::{JOB_HEADER, OpenAiError};
use crate::api::outputs::last_stage_images;
use crate::api::{ApiError, AppState};
use crate::kinds::image::{self, ImageParams};
use crate::pipelines::diffusion::output::parameters_of;
use crate::store::records::{Job, JobState};

/// Reads a JSON body whatever its content type; one that is not the request is A1111's 422.
/// The fields both routes take are read first on their own: read through `flatten`, serde
/// would not say which of them it could not read.
fn parse_body<T: DeserializeOwned + utoipa::PartialSchema>(body: Result<ApiBytes, ApiError>) -> Result<T, A1111Error> {
    let body = body?;
    read_body::<Generation>(&body)?;
    read_body(&body)
}

/// Generate pictures from a prompt (A1111-compatible txt2img).
#[utoipa::path(post, path = "/sdapi/v1/txt2img", operation_id = "a1111_txt2img", tag = "a1111", request_body = Txt2Img,
    responses((status = 200, body = ImageResponse),
        (status = 404, description = "no such diffusion model", body = super::error::A1111ErrorBody),
        (status = 409, description = "the job was canceled (`/sdapi/v1/interrupt`)", body = super::error::A1111ErrorBody),
        (status = 422, description = "a field reelbox cannot run as sent; the detail names it", body = super::error::A1111ErrorBody),
        (status = 429, body = super::error::A1111ErrorBody)))]
pub async fn txt2img(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<Response, A1111Error> {
    let req: Txt2Img = parse_body(body)?;
    let mut params = generation(&state, &req.generation)?;
    let refined = refiner(&state, &caller, &req.generation, &mut params)?;
    params.clip_skip = clip_skip(&state, &caller, &req.generation, &params)?;
    params.refine = hires(&state.config, &req)?;
    if refined.is_some() && params.refine.is_some() {
        return Err(A1111Error::field(
            "refiner_checkpoint",
            "reelbox runs a refiner or the hires fix in one request, not both: leave one out",
        ));
    }
    params.refine = params.refine.or(refined);
    let parameters = serde_json::to_value(&req).unwrap_or(Value::Null);
    respond(&state, &caller, params, parameters, req.generation.send_images != Some(false)).await
}

/// Redraw a picture, or the part a mask says (A1111-compatible img2img and inpainting).
#[utoipa::path(post, path = "/sdapi/v1/img2img", operation_id = "a1111_img2img", tag = "a1111", request_body = Img2Img,
    responses((status = 200, body = ImageResponse),
        (status = 404, description = "no such diffusion model", body = super::error::A1111ErrorBody),
        (status = 409, description = "the job was canceled (`/sdapi/v1/interrupt`)", body = super::error::A1111ErrorBody),
        (status = 413, description = "a picture past `limits.max_upload_bytes`, or the key's storage quota", body = super::error::A1111ErrorBody),
        (status = 422, description = "a field reelbox cannot run as sent; the detail names it", body = super::error::A1111ErrorBody),
        (status = 429, body = super::error::A1111ErrorBody)))]
pub async fn img2img(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<Response, A1111Error> {
    let req: Img2Img = parse_body(body)?;
    let mut params = generation(&state, &req.generation)?;
    params.refine = refiner(&state, &caller, &req.generation, &mut params)?;
    params.clip_skip = clip_skip(&state, &caller, &req.generation, &params)?;
    if let Some(mode) = req.resize_mode.filter(|m| *m != 0) {
        return Err(A1111Error::field("resize_mode", format!("reelbox runs 0 (just resize) only, got {mode}")));
    }
    let invert = match req.inpainting_mask_invert.unwrap_or(0) {
        0 => false,
        1 => true,
        other => return Err(A1111Error::field("inpainting_mask_invert", format!("must be 0 or 1, got {other}"))),
    };
    let sent = match req.init_images.as_deref().unwrap_or_default() {
        [one] => one,
        [] => return Err(A1111Error::field("init_images", "send the picture to redraw, base64")),
        more => {
            return Err(A1111Error::field(
                "init_images",
                format!("reelbox redraws one picture at a time; got {}", more.len()),
            ));
        }
    };
    let (picture, header) = init_picture(&state, &caller, "init_images", sent).await?;
    // No size asked: the picture's own (fitted to the box's largest side), not A1111's 512².
    if let Some((w, h)) = own_size(&header, state.config.limits.max_image_side) {
        params.width = params.width.or(Some(i64::from(w)));
        params.height = params.height.or(Some(i64::from(h)));
    }
    if let Some(mask) = req.mask.as_deref().filter(|m| !m.trim().is_empty()) {
        let mask = mask_picture(&state, &caller, mask, invert, (header.width, header.height)).await?;
        params.mask = Some(mask.id.to_string());
    }
    params.init_image = Some(picture.id.to_string());
    params.strength = Some(req.denoising_strength.unwrap_or(0.75));
    let mut parameters = serde_json::to_value(&req).unwrap_or(Value::Null);
    if req.include_init_images != Some(true) {
        // As A1111 answers: the pictures sent come back only when asked for.
        parameters["init_images"] = Value::Null;
        parameters["mask"] = Value::Null;
    }
    respond(&state, &caller, params, parameters, req.generation.send_images != Some(false)).await
}

/// A refusal of the job, its field named as the request names it (`to_request`).
fn renamed(e: OpenAiError, to_request: fn(&str) -> String) -> A1111Error {
    let retry_after = e.retry_after;
    let message = request_words(&e.message);
    A1111Error { retry_after, ..A1111Error::renamed(e.status, e.param.as_deref(), &message, to_request) }
}

/// Runs `params` as an `image` job the request waits on, and answers its pictures.
async fn respond(
    state: &AppState,
    caller: &Caller,
    params: image::ImageRequest,
    parameters: Value,
    send_images: bool,
) -> Result<Response, A1111Error> {
    // A request naming no model draws with the one the caller picked through `options`.
    let params = image::ImageRequest { model: params.model.or_else(|| super::info::picked(state, caller)), ..params };
    let refined = params.refine.as_ref().is_some_and(|r| r.switch_at.is_some());
    let to_request = if refined { refiner_field } else { request_field };
    let params =
        serde_json::to_value(params).map_err(|e| A1111Error::internal(format!("cannot encode params: {e}")))?;
    let waiting = submit(state, caller, "image", params, false).await.map_err(|e| renamed(e, to_request))?;
    let job = waiting.finish().await?;
    if !matches!(job.state, JobState::Succeeded { .. }) {
        return Err(job_failure(&job).into());
    }
    let pictures = last_stage_images(&state.store, &job).map_err(|e| A1111Error::internal(e.to_string()))?;
    let (mut images, mut infotexts) = (Vec::new(), Vec::new());
    for a in &pictures {
        let bytes = read_artifact(state, a).await?;
        infotexts.push(parameters_of(&bytes).unwrap_or_default());
        if send_images {
            images.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
    }
    let info = info(state, &job, infotexts)?.to_string();
    let mut resp = Json(ImageResponse { images, parameters, info }).into_response();
    if let Ok(v) = HeaderValue::from_str(&job.id.to_string()) {
        resp.headers_mut().insert(JOB_HEADER, v);
    }
    Ok(resp)
}

/// A1111's `info` of a finished job, read from its stored parameters (every default filled).
fn info(state: &AppState, job: &Job, infotexts: Vec<String>) -> Result<Value, A1111Error> {
    let p: ImageParams = serde_json::from_str(&job.params)
        .map_err(|e| A1111Error::internal(format!("job {} has unreadable parameters: {e}", job.id)))?;
    let n = p.n as usize;
    let (sampler, schedule) = a1111_names(&p.scheduler, p.schedule.map(|s| s.name()));
    let negative = p.negative_prompt.clone().unwrap_or_default();
    let seeds: Vec<u64> = (0..u64::from(p.n)).map(|i| p.seed.wrapping_add(i)).collect();
    // A hires fix's second pass has a strength; a refiner goes on at none.
    let strength = p.strength.or(p.refine.as_ref().filter(|r| r.switch.is_none()).map(|r| r.strength));
    let timestamp = chrono::DateTime::from_timestamp_millis(job.created_at)
        .map(|t| t.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default();
    Ok(json!({
        "prompt": p.prompt,
        "all_prompts": vec![p.prompt.clone(); n],
        "negative_prompt": negative,
        "all_negative_prompts": vec![negative.clone(); n],
        "seed": p.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": vec![-1; n],
        "subseed_strength": 0,
        "width": p.width,
        "height": p.height,
        "sampler_name": sampler,
        "scheduler": schedule,
        "cfg_scale": p.guidance,
        "steps": p.steps,
        "batch_size": p.n,
        "restore_faces": false,
        "face_restoration_model": null,
        "sd_model_name": p.model,
        // A1111's shorthash of the model's checkpoint file, as its pictures' `Model hash`.
        "sd_model_hash": super::info::checkpoint_of(state, &p.model).and_then(|c| c.shorthash().map(str::to_string)),
        "sd_vae_name": null,
        "sd_vae_hash": null,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": strength,
        "extra_generation_params": extra_generation_params(infotexts.first().map_or("", String::as_str)),
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": timestamp,
        // A1111's setting as it read it (1: none skipped).
        "clip_skip": p.clip_skip.unwrap_or(1),
        "is_using_inpainting_conditioning": false,
        "version": format!("reelbox {}", env!("CARGO_PKG_VERSION")),
    }))
}
