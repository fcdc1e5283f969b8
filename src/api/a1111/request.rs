//! The bodies of `POST /sdapi/v1/txt2img` and `/img2img` as A1111's API takes them (its
//! `StableDiffusionProcessingTxt2Img`/`Img2Img` fields that reelbox runs), and their answer.
//! Fields A1111 has that change nothing here (`restore_faces`, `tiling`, `styles`,
//! `subseed`, `script_name`, `alwayson_scripts`…) are accepted and left unread, as A1111's
//! own API leaves fields it does not know; the README lists them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What both routes take.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[schema(as = A1111Generation)]
pub struct Generation {
    /// What to draw (not blank).
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    /// The first picture's seed; picture N takes `seed + N − 1`. `-1` (or none): random.
    #[schema(minimum = -1, maximum = 9_007_199_254_740_991_i64)]
    pub seed: Option<i64>,
    /// Denoising steps (none: the model's own number).
    #[schema(minimum = 1)]
    pub steps: Option<i64>,
    /// Guidance (none: the model's own).
    #[schema(minimum = 0.0, maximum = 30.0)]
    pub cfg_scale: Option<f64>,
    /// Picture width (none: the model's size; img2img: the picture's own).
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// `Euler`, `Euler a`, `DPM++ 2M`, `DDIM`, `LCM`, `PLMS` (or their lower-case aliases;
    /// a schedule may end the name, `DPM++ 2M Karras`). None: the model's own sampler.
    pub sampler_name: Option<String>,
    /// A1111's older name of `sampler_name`, read when that is not sent.
    pub sampler_index: Option<String>,
    /// `Automatic` or `Karras` (see `GET /sdapi/v1/schedulers`).
    pub scheduler: Option<String>,
    /// Pictures per batch; `batch_size × n_iter` pictures in all, at most 8.
    #[schema(minimum = 1)]
    pub batch_size: Option<i64>,
    /// Batches.
    #[schema(minimum = 1)]
    pub n_iter: Option<i64>,
    /// The model that goes on from `refiner_switch_at` (A1111 1.6+'s refiner): an installed
    /// diffusion model's name or title, as `sd_model_checkpoint` takes it (`None` or empty:
    /// none). The job's split (`refine.switch_at`): two sampler runs, see the README.
    pub refiner_checkpoint: Option<String>,
    /// Where the refiner takes over, 0–1: at the first step whose noise level reaches this
    /// share, as A1111 works it out (none or 0: the refiner runs every step; 1: none).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub refiner_switch_at: Option<f64>,
    /// Settings for this request only: `sd_model_checkpoint` (an installed diffusion
    /// model's name or title) is read; the others are left as they are.
    #[schema(value_type = Option<Object>)]
    pub override_settings: Option<Map<String, Value>>,
    /// `false`: the answer carries no pictures (`images` is empty).
    pub send_images: Option<bool>,
    /// Accepted; the pictures are kept as the job's artifacts either way.
    pub save_images: Option<bool>,
}

/// Body of `POST /sdapi/v1/txt2img`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[schema(as = A1111Txt2ImgRequest)]
pub struct Txt2Img {
    #[serde(flatten)]
    pub generation: Generation,
    /// The hires fix: each picture scaled and sampled again (the native `refine`).
    pub enable_hr: Option<bool>,
    /// How much the hires fix scales each picture (default 2) when `hr_resize_x`/`_y` are 0.
    #[schema(exclusive_minimum = 0.0, maximum = 8.0)]
    pub hr_scale: Option<f64>,
    /// The hires fix's width; 0 follows the shape (both 0: `hr_scale`).
    #[schema(minimum = 0)]
    pub hr_resize_x: Option<i64>,
    #[schema(minimum = 0)]
    pub hr_resize_y: Option<i64>,
    /// How much of each scaled picture the hires fix repaints (default 0.75).
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub denoising_strength: Option<f64>,
    /// The hires fix's steps (0: the first pass's).
    #[schema(minimum = 0)]
    pub hr_second_pass_steps: Option<i64>,
    /// `Latent` (default) and its `Latent (…)` modes scale the latent; `None`, `Lanczos`,
    /// `Nearest` or an installed upscale model the picture (`GET /sdapi/v1/upscalers`).
    pub hr_upscaler: Option<String>,
    /// The checkpoint the hires fix samples with: an installed diffusion model's name or title,
    /// as `GET /sdapi/v1/sd-models` lists it (`Use same checkpoint`, empty, or none: the first
    /// pass's). From a latent upscaler's start, only a model of the first's latent space.
    pub hr_checkpoint_name: Option<String>,
    /// The hires fix's sampler (`Use same sampler`, or none: the first pass's).
    pub hr_sampler_name: Option<String>,
    /// The hires fix's schedule (`Use same scheduler`, or none: the first pass's).
    pub hr_scheduler: Option<String>,
    /// The hires fix's prompt (empty: the first pass's).
    pub hr_prompt: Option<String>,
    pub hr_negative_prompt: Option<String>,
}

/// Body of `POST /sdapi/v1/img2img`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[schema(as = A1111Img2ImgRequest)]
pub struct Img2Img {
    #[serde(flatten)]
    pub generation: Generation,
    /// The picture to redraw, base64 (a `data:image/…;base64,` prefix is allowed); one.
    pub init_images: Option<Vec<String>>,
    /// How far the picture may change, 0–1 (default 0.75).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub denoising_strength: Option<f64>,
    /// Only 0, "just resize": the picture is stretched to `width`×`height`.
    #[schema(minimum = 0, maximum = 0)]
    pub resize_mode: Option<i64>,
    /// A picture, base64, whose white (or, with transparency, opaque) part is redrawn.
    pub mask: Option<String>,
    /// 1: the mask's black part is redrawn instead.
    #[schema(minimum = 0, maximum = 1)]
    pub inpainting_mask_invert: Option<i64>,
    /// Accepted: the redrawn part always fades in over the 6 pixels inside the mask's edge.
    pub mask_blur: Option<i64>,
    /// Accepted: the masked part always starts from the picture's own (A1111's "original").
    pub inpainting_fill: Option<i64>,
    /// Accepted: the whole picture is sampled, the unmasked part put back as it was.
    pub inpaint_full_res: Option<bool>,
    /// `true`: `parameters` echoes `init_images` and `mask` (else they are `null`).
    pub include_init_images: Option<bool>,
}

/// The answer of both routes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = A1111ImageResponse)]
pub struct ImageResponse {
    /// The pictures, base64 PNGs (each with its `parameters` text chunk).
    pub images: Vec<String>,
    /// The request as it was read.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// A JSON text: `seed`, `all_seeds`, `infotexts` (each picture's `parameters` text),
    /// `sd_model_name`, `width`, `height`, `sampler_name`, `cfg_scale`, `steps`…
    pub info: String,
}
