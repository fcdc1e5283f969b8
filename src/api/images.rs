//! `POST /api/v1/images`: pictures from a prompt with a Stable Diffusion model, as an
//! `image` job.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::{kind_request, submit_params};
use super::json::ApiJson;
use super::{ApiError, AppState};
use crate::jobs::Submitter;
use crate::kinds::image;

// utoipa takes only a number literal for `maximum`: the seeds' bound in the document (here,
// on renders and on OpenAI's images) is `kinds::image::MAX_SEED`, checked at build time.
const _: () = assert!(crate::kinds::image::MAX_SEED == 9_007_199_254_740_991);
// Likewise `mask_grow`'s is `kinds::image::MAX_MASK_GROW`.
const _: () = assert!(crate::kinds::image::MAX_MASK_GROW == 64);

/// Body of `POST /api/v1/images`; unset fields come from the preset, then the model.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    #[schema(min_length = 1, max_length = 8000)]
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// Installed diffusion model (default: the diffusion default `reelbox models list` tags).
    pub model: Option<String>,
    /// Pixels; a multiple of the model's size step (usually 8), at most
    /// `limits.max_image_side` (default 2048).
    #[schema(minimum = 8, maximum = 2048, multiple_of = 8)]
    pub width: Option<u32>,
    #[schema(minimum = 8, maximum = 2048, multiple_of = 8)]
    pub height: Option<u32>,
    /// At most `limits.max_steps` (default 150).
    #[schema(minimum = 1, maximum = 150)]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale, 0–30.
    #[schema(minimum = 0, maximum = 30)]
    pub guidance: Option<f64>,
    /// e.g. `euler`, `euler-a`, `ddim`, `dpm++2m-karras`, `lcm`.
    pub scheduler: Option<String>,
    /// Same seed and settings, same pixels (random when unset; the job records it).
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    pub seed: Option<u64>,
    /// Images to make (seeds `seed`, `seed+1`, ...), 1–8.
    #[schema(minimum = 1, maximum = 8)]
    pub n: Option<u32>,
    /// Artifact id of a picture to start from (image-to-image).
    pub init_image: Option<String>,
    /// How much of `init_image` to repaint, 0–1 (default 0.75).
    #[schema(minimum = 0, maximum = 1)]
    pub strength: Option<f64>,
    /// Inpainting: artifact id of a mask picture the size of `init_image` (uploaded as it
    /// is); only its part of the picture is redrawn, the rest comes back exactly as it was
    /// (the redrawn part fading in over the 6 pixels inside the mask's edge). A picture with
    /// transparency: transparent redraws (OpenAI's masks); one without (or all opaque): white
    /// redraws, black keeps (A1111's and ComfyUI's). `strength` says how far the masked part
    /// may change (1: drawn anew there). Only with `init_image`; not with `refine`. Works
    /// with every installed model (its plain UNet, as ComfyUI's SetLatentNoiseMask does).
    pub mask: Option<String>,
    /// Pixels the mask grows by on every side before it is used, 0–64 (default 0), so the
    /// redrawn part reaches past a tight edge (ComfyUI's VAEEncodeForInpaint `grow_mask_by`,
    /// whose side of 6 is a `mask_grow` of 3). Only with `mask`.
    #[schema(minimum = 0, maximum = 64)]
    pub mask_grow: Option<u32>,
    /// How `steps` count from `init_image`: `schedule` (default, A1111's and diffusers' rule:
    /// `steps` is the schedule, of which `⌊steps × strength⌋` run) or `run` (ComfyUI's KSampler:
    /// all `steps` run, over the last of a `⌊steps ÷ strength⌋`-step schedule, so a lower
    /// strength changes less but costs as much). Only with `init_image`.
    #[schema(pattern = "^(schedule|run)$")]
    pub steps_mode: Option<String>,
    /// ComfyUI's scheduler (A1111's "schedule type") to sample over, as ComfyUI's KSampler
    /// samples: `normal`, `karras`, `exponential`, `sgm_uniform` or `simple`, with `scheduler`
    /// `euler`, `euler_a`, `ddim` (ComfyUI's is Euler) or `dpmpp_2m`. Left out: the model's
    /// own (diffusers') schedule for `scheduler`.
    #[schema(pattern = "^(normal|karras|exponential|sgm_uniform|simple)$")]
    pub schedule: Option<String>,
    /// Whose arithmetic a run over `schedule` follows: `comfyui` (default: ComfyUI's KSampler,
    /// the UNet given the whole timestep nearest each σ, a run from the top of the schedule
    /// started at √(1 + σ₀²)·noise, from noise or over a picture's latent, whose VAE mean it
    /// takes) or `a1111` (A1111's k-diffusion samplers: the fractional timestep of each σ,
    /// σ₀·noise, a picture's VAE latent sampled; what its `/sdapi` routes ask for). With the
    /// matching `noise` a seed then makes that program's picture. Without `schedule` it
    /// changes nothing.
    #[schema(pattern = "^(comfyui|a1111)$")]
    pub sample_as: Option<String>,
    /// Read the prompts at the text encoder's Nth layer from its end: 1 its last (A1111's
    /// "Clip skip", ComfyUI's CLIPSetLastLayer at minus it; 2 is what many anime SD 1.5 models
    /// are made for); default: the model's own (1 for SD 1.x/2.x, 2 for SDXL). A model from
    /// the hub gives its own layer only: another is a failed job saying to import the model's
    /// checkpoint or diffusers folder (`reelbox models import`), whose export has every layer;
    /// past the encoder's layers likewise.
    #[schema(minimum = 1, maximum = 24)]
    pub clip_skip: Option<u32>,
    /// Where the starting noise comes from: `reelbox` (default: its own generator),
    /// `torch_cpu` (torch's CPU generator, a seed per picture: A1111's "CPU" source) or
    /// `comfyui` (torch's CPU generator, the batch drawn at once from `seed`: ComfyUI's
    /// KSampler). With either torch source a seed starts from the latents it gives there.
    #[schema(pattern = "^(reelbox|torch_cpu|comfyui)$")]
    pub noise: Option<String>,
    /// Preset name from presets.toml.
    pub preset: Option<String>,
    /// Installed upscale model: each picture is then upscaled by it in a second stage
    /// (`upscaled.png`, or `upscaled-N.png`, beside `image.png`).
    pub upscale_model: Option<String>,
    /// Resize the pictures without a model, last (after `upscale_model`'s stage when there is
    /// one), in a stage of their own: `resized.png` (or `resized-N.png`) beside the others.
    pub resize: Option<Resize>,
    /// A second sampling pass (A1111's "hires fix"): each picture scaled, then sampled again
    /// as image-to-image at `refine.strength`, in a stage of its own, `refine`, after
    /// `generate` and before the upscale and the resize: `refined.png` (or `refined-N.png`).
    pub refine: Option<Refine>,
    /// Store a preview every this many steps (0: none; default 5; at most 10000).
    #[schema(maximum = 10000)]
    pub preview_every: Option<u32>,
    /// Profile id or name: its picture model, negative prompt and preset fill what the request
    /// leaves out, and its style goes before the prompt (as in its renders' keyframes).
    pub profile: Option<String>,
    /// Higher runs first (default 0; client keys up to `limits.max_client_priority`).
    #[serde(skip_serializing_if = "super::json::never")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
}

/// A picture resized without a model, as ComfyUI's ImageScale, ImageScaleBy and
/// ImageScaleToTotalPixels do: a `method` and one target, `width`/`height` (with `crop`),
/// `scale_by`, or `megapixels` (with `resolution_steps`). Sizes round as ComfyUI's do; the
/// result is held to `limits.max_image_side` (a 400 naming the field behind it, e.g.
/// `resize.scale_by`, when the picture's size is known at submission, else the stage fails).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    /// `nearest-exact`, `bilinear`, `area` (box-averaged when shrinking), `bicubic` or
    /// `lanczos` (default); a `refine` from the latent takes `nearest-exact` (its default),
    /// `bilinear`, `area`, `bicubic` or `bislerp`, as ComfyUI's LatentUpscale.
    #[schema(pattern = "^(nearest-exact|bilinear|area|bicubic|lanczos|bislerp)$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Pixels, at most `limits.max_image_side`; 0 (or left out beside `height`) follows the
    /// picture's shape.
    #[schema(maximum = 2048)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[schema(maximum = 2048)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// With `width` and `height`: `disabled` (default) stretches the picture, `center` cuts
    /// its middle to the new shape first.
    #[schema(pattern = "^(disabled|center)$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    /// Each side times this, 0.01–8 (rounded to whole pixels, halves to even).
    #[schema(minimum = 0.01, maximum = 8)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_by: Option<f64>,
    /// About this many megapixels (of 2^20 pixels), 0.01–16, the shape kept.
    #[schema(minimum = 0.01, maximum = 16)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub megapixels: Option<f64>,
    /// With `megapixels`: each side a multiple of this, 1–256 (default 1).
    #[schema(minimum = 1, maximum = 256)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_steps: Option<u32>,
}

/// A second sampling pass over each picture (the hires fix; ComfyUI's second KSampler after
/// a scale node or LatentUpscale): the picture scaled by `resize` (as the top-level `resize`
/// rounds; each side then cut down to a multiple of the model's size step, usually 8, its
/// middle kept, as ComfyUI's VAEEncode does), then sampled again from it. Unset fields are
/// the first pass's. Its size is held to the model's and `limits.max_image_side` at
/// submission: a 400 naming the resize field behind it (`refine.resize.scale_by`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refine {
    /// What the second pass starts from: `picture` (default: each picture scaled, then encoded
    /// by the model's VAE) or `latent` (ComfyUI's latent hires fix: the first pass's final
    /// latent scaled as LatentUpscale scales it, `resize` in whole latent cells of 8 pixels,
    /// `scale_by` rounded in cells; no `upscale_model`, no VAE encoder needed). The latent is
    /// kept as the job's `latent.npy` (`latent-N.npy`), `[1, 4, H/8, W/8]` float32 as
    /// ComfyUI's LATENT holds it.
    #[schema(pattern = "^(picture|latent)$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A base → refiner split instead of a second pass over the result: the first pass runs
    /// its schedule's steps before this one and hands its latents on with their leftover noise
    /// (kept as `leftover.npy`, no picture of its own); this pass goes on from that step of the
    /// same schedule (`steps` long) adding no noise, on `model` with its own prompts and sampler
    /// where given (ComfyUI's KSamplerAdvanced pair, A1111's refiner). No `resize`,
    /// `upscale_model`, `strength` or `steps_mode` with it; it must fall after the first pass's
    /// first step and before the end of both schedules.
    #[schema(minimum = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_at_step: Option<u32>,
    /// The split's switch as A1111's `refiner_switch_at`, 0–1: at the first step of the first
    /// pass whose noise level's training timestep t has (999 − t) / 1000 at least this.
    #[schema(minimum = 0, maximum = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_at: Option<f64>,
    /// How a split's second pass goes on: `leftover` (default: a sampler run of its own from
    /// the leftover noise, as ComfyUI's second KSamplerAdvanced) or `run` (the first pass's
    /// sampler run goes on on `model`, as A1111's refiner swaps the model inside one run: its
    /// history, DPM++ 2M's last denoised latent, and its step noise carried over, kept as
    /// `sampler.json`; no `scheduler`, `schedule`, `steps` or `seed` of its own).
    #[schema(pattern = "^(leftover|run)$")]
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
    /// Installed diffusion model the second pass samples with, its text encoder, UNet and VAE
    /// (A1111's hires checkpoint, ComfyUI's second checkpoint; default: the first pass's). From
    /// the latent, only a model of the first's latent space (the same latent channels, cell
    /// size and VAE scaling factor: SD 1.x/2.x fine-tunes share one); from the picture, any.
    /// Its own size rules and memory apply to the second pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Installed upscale model each picture is upscaled by first, before `resize` (its size is
    /// then checked when the stage runs, once the model's scale is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscale_model: Option<String>,
    /// How each picture is scaled first (default: kept at its size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
    /// How much of the scaled picture is repainted (ComfyUI's `denoise`): more than 0, at most
    /// 1; required but for a split (`switch_at_step`), which takes none.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// Steps (default: the first pass's), counted as `steps_mode` says.
    #[schema(minimum = 1, maximum = 150)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// How `steps` count: `schedule` (default: the schedule's, of which `⌊steps × strength⌋`
    /// run) or `run` (all of them run, over the last of a `⌊steps ÷ strength⌋`-step schedule,
    /// as ComfyUI's second KSampler runs them).
    #[schema(pattern = "^(schedule|run)$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_mode: Option<String>,
    /// The first picture's second-pass seed (default: the first pass's; picture N takes `seed + N − 1`).
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Classifier-free guidance scale, 0–30 (default: the first pass's).
    #[schema(minimum = 0, maximum = 30)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// Scheduler (default: the first pass's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// ComfyUI's scheduler (A1111's "Hires schedule type") the second pass samples over, as
    /// the top-level `schedule` (default: the first pass's, if it has one). A `scheduler` left
    /// out with it is the first pass's on its own σs (`dpmpp_2m_karras` becomes `dpmpp_2m`).
    #[schema(pattern = "^(normal|karras|exponential|sgm_uniform|simple)$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Prompt of the second pass (default: the first pass's).
    #[schema(min_length = 1, max_length = 8000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Negative prompt of the second pass (default: the first pass's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

impl ImageRequest {
    /// The `image` kind's request this body makes, with `profile` folded in first, read as
    /// the kind reads any request JSON so every field error is the kind's own.
    pub fn to_params(&self, jobs: &crate::jobs::Service, who: &Submitter) -> Result<image::ImageRequest, ApiError> {
        let mut body =
            serde_json::to_value(self).map_err(|e| ApiError::internal(format!("cannot encode params: {e}")))?;
        jobs.expand_image_profile(who, &mut body)?;
        kind_request(&body, image::ImageRequest::from_json)
    }
}

/// Generate images; the job's artifacts are `image.png` (or `image-N.png`) and previews
/// (and `refined.png`, `upscaled.png`, `resized.png` when asked).
#[utoipa::path(post, path = "/api/v1/images", operation_id = "create_image", request_body = ImageRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the earlier job with this key")),
    responses((status = 202, body = super::views::JobView), (status = 200, description = "existing job for the idempotency key", body = super::views::JobView),
        (status = 400, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ImageRequest>,
) -> Result<Response, ApiError> {
    let params = req.to_params(&state.jobs, &(&caller).into())?;
    submit_params(&state, &caller, &headers, "image", &params, req.priority).await
}
