//! `image` parameters: [`ImageRequest`] as clients send it (every field optional) and
//! [`ImageParams`], every default filled (preset, model defaults, a random seed) so a
//! stored job renders the same pixels after a restart.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::config::Config;
use crate::kinds::ParamError;
use crate::kinds::fields::{float_field, float_in, int_field, int_in, reject_unknown, string_field, u32_in};
use crate::kinds::inputs::installed_model;
use crate::kinds::resize::{Resize, ResizeRequest};

use super::defaults::model_defaults;
use super::refine::{Refine, RefineRequest};
use super::sampling::{check_schedule, named, scheduler_choice, steps_mode};
use crate::models::{Availability, Catalog, ModelKind};
use crate::pipelines::diffusion::model::check_size;
use crate::pipelines::diffusion::noise::NoiseKind;
use crate::pipelines::diffusion::preset::Presets;
use crate::pipelines::diffusion::samplers::{self, SampleAs, Schedule, StepsMode};
use crate::pipelines::diffusion::{DiffusionError, ModelInfo};

const KNOWN: [&str; 24] = [
    "prompt",
    "negative_prompt",
    "model",
    "width",
    "height",
    "steps",
    "guidance",
    "scheduler",
    "schedule",
    "sample_as",
    "clip_skip",
    "seed",
    "n",
    "init_image",
    "strength",
    "mask",
    "mask_grow",
    "steps_mode",
    "noise",
    "preset",
    "preview_every",
    "upscale_model",
    "resize",
    "refine",
];
/// Most images one job may ask for.
pub const MAX_IMAGES: i64 = 8;
/// Most pixels a mask may grow by (ComfyUI's VAEEncodeForInpaint `grow_mask_by` goes to 64).
pub const MAX_MASK_GROW: i64 = 64;
/// Deepest clip skip accepted (ComfyUI's CLIPSetLastLayer goes to -24; whether a model's
/// text encoder has that many layers is known when it is loaded).
pub const MAX_CLIP_SKIP: i64 = 24;
/// Largest seed accepted; JSON clients lose precision above 2^53.
pub const MAX_SEED: i64 = (1 << 53) - 1;

/// `image` parameters as a request gives them: what every producer (the native route, the
/// CLI, ComfyUI graphs, the OpenAI adapter, a render's keyframes) builds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Installed diffusion model (default: the diffusion default `reelbox models list` tags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// ComfyUI's scheduler ([`Schedule`]): sample as its KSampler does, over these σs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Whose arithmetic a run over `schedule` follows ([`SampleAs`]): `comfyui` (default) or
    /// `a1111`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_as: Option<String>,
    /// The text encoder layer, from its end, the prompts are read at: 1 the last (A1111's
    /// "Clip skip", ComfyUI's CLIPSetLastLayer at minus it), 1–[`MAX_CLIP_SKIP`]; unset:
    /// the model's own (1 for SD 1.x/2.x, 2 for SDXL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<i64>,
    /// Random when unset; the stored job records the one used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Artifact id of a picture to start from (image-to-image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// Artifact id of a mask the size of `init_image`: only its part of the picture is
    /// redrawn (inpainting; `pipelines::diffusion::inpaint` says how it is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// Pixels the mask grows by on every side before it is used, 0–[`MAX_MASK_GROW`]
    /// (ComfyUI's VAEEncodeForInpaint `grow_mask_by`); 0 when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_grow: Option<i64>,
    /// How `steps` count from `init_image` ([`StepsMode`]): `schedule` (default) or `run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_mode: Option<String>,
    /// Where the noise comes from ([`NoiseKind`]): `reelbox` (default), `torch_cpu` or `comfyui`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_every: Option<i64>,
    /// Installed upscale model that upscales the pictures in a second stage, `upscale`
    /// (ComfyUI's ImageUpscaleWithModel after VAEDecode); none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscale_model: Option<String>,
    /// The pictures resized last, without a model (ComfyUI's ImageScale, ImageScaleBy and
    /// ImageScaleToTotalPixels after VAEDecode or ImageUpscaleWithModel), in a stage of
    /// its own, `resize`; none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeRequest>,
    /// A second sampling pass over each picture, scaled first (A1111's hires fix, ComfyUI's
    /// second KSampler), in a stage of its own, `refine`, before `upscale` and `resize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refine: Option<RefineRequest>,
}

/// Validated `image` parameters, every default filled in; the stored form of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageParams {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: String,
    /// ComfyUI's schedule the sampler runs over (none, and in jobs stored before it: the
    /// model's own diffusers schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Whose arithmetic its schedules are sampled by (every pass's; jobs stored before it:
    /// ComfyUI's).
    #[serde(default, skip_serializing_if = "SampleAs::is_comfyui")]
    pub sample_as: SampleAs,
    /// The text encoder layer, from its end, every pass reads its prompts at; `None` (and in
    /// jobs stored before it): the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<u32>,
    pub seed: u64,
    pub n: u32,
    pub init_image: Option<String>,
    pub strength: Option<f64>,
    /// Inpainting: the mask's artifact id; `None` (and in jobs stored before it): the whole
    /// init image is redrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// Pixels the mask grows by on every side; 0 (and in jobs stored before it): as sent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mask_grow: u32,
    /// How `steps` count from the init image (stored jobs from before it count the schedule's).
    #[serde(default, skip_serializing_if = "StepsMode::is_schedule")]
    pub steps_mode: StepsMode,
    /// Where the noise comes from (stored jobs from before it: reelbox's own).
    #[serde(default, skip_serializing_if = "NoiseKind::is_reelbox")]
    pub noise: NoiseKind,
    pub preset: Option<String>,
    /// Preview every this many steps; 0 turns previews off.
    pub preview_every: u32,
    /// The upscale model of the `upscale` stage; `None` (and in jobs stored before it): no
    /// such stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale_model: Option<String>,
    /// The resize of the `resize` stage, after the others; `None` (and in jobs stored
    /// before it): no such stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
    /// The second pass of the `refine` stage, after `generate`; `None` (and in jobs stored
    /// before it): no such stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<Refine>,
}

impl ImageParams {
    /// UNet steps its first pass runs per picture: `steps` from noise; from `init_image`, a
    /// share of them or all, as `steps_mode` counts them; those before a split's switch.
    pub fn steps_run(&self) -> u32 {
        let strength = self.strength.unwrap_or(1.0);
        let rule = samplers::count_rule(self.schedule, self.sample_as);
        let span = samplers::Span::of(self.steps as usize, strength, self.steps_mode, usize::MAX, rule);
        let run = match self.refine.as_ref().and_then(|r| r.switch) {
            // The schedule's steps from its start up to the switch.
            Some(switch) => (switch.step as usize).saturating_sub(span.start).max(1),
            None => span.steps_run(),
        };
        u32::try_from(run).unwrap_or(self.steps)
    }
}

/// A `u64` from a typed producer as a wire integer; past `i64` it reads as no integer,
/// as such a number always has.
pub fn wire_int(field: &str, v: u64) -> Result<i64, ParamError> {
    i64::try_from(v).map_err(|_| ParamError::new(field, "must be an integer"))
}

fn request_error(e: DiffusionError) -> ParamError {
    match e {
        DiffusionError::Request { field, message } => ParamError::new(field, message),
        other => ParamError::new("model", other.to_string()),
    }
}

impl ImageRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &KNOWN)?;
        Ok(Self {
            prompt: string_field(params, "prompt")?,
            negative_prompt: string_field(params, "negative_prompt")?,
            model: string_field(params, "model")?,
            width: int_field(params, "width")?,
            height: int_field(params, "height")?,
            steps: int_field(params, "steps")?,
            guidance: float_field(params, "guidance")?,
            scheduler: string_field(params, "scheduler")?,
            schedule: string_field(params, "schedule")?,
            sample_as: string_field(params, "sample_as")?,
            clip_skip: int_field(params, "clip_skip")?,
            seed: int_field(params, "seed")?,
            n: int_field(params, "n")?,
            init_image: string_field(params, "init_image")?,
            strength: float_field(params, "strength")?,
            mask: string_field(params, "mask")?,
            mask_grow: int_field(params, "mask_grow")?,
            steps_mode: string_field(params, "steps_mode")?,
            noise: string_field(params, "noise")?,
            preset: string_field(params, "preset")?,
            preview_every: int_field(params, "preview_every")?,
            upscale_model: string_field(params, "upscale_model")?,
            resize: ResizeRequest::from_json(params, "resize")?,
            refine: RefineRequest::from_json(params)?,
        })
    }

    /// Holds the (trimmed) prompt and the negative prompt to `limits.max_prompt_chars`.
    fn limits(&self, prompt: &str, config: &Config) -> Result<(), ParamError> {
        let max_chars = config.limits.max_prompt_chars;
        for (field, text) in [("prompt", Some(prompt)), ("negative_prompt", self.negative_prompt.as_deref())] {
            if text.is_some_and(|t| t.chars().count() > max_chars) {
                return Err(ParamError::new(field, format!("longer than {max_chars} characters")));
            }
        }
        Ok(())
    }

    /// Fills every default (preset, then the model's own, a random seed) and checks the
    /// result against the model, the scheduler and the config's limits.
    pub fn resolve(self, config: &Config) -> Result<ImageParams, ParamError> {
        let prompt = self.prompt.as_deref().map(str::trim).unwrap_or_default().to_string();
        if prompt.is_empty() {
            return Err(ParamError::new("prompt", "required"));
        }
        self.limits(&prompt, config)?;
        let preset = Presets::check(&config.data_dir, self.preset.as_deref())
            .map_err(|e| ParamError::new("preset", e.to_string()))?;

        let model = match &self.model {
            Some(m) => m.clone(),
            None => crate::kinds::inputs::default_model("model", ModelKind::Diffusion, config)?,
        };
        let info = diffusion_model("model", &model, config)?;
        // A model's manifest may give its own steps and guidance (Turbo: 1–4, 0); presets follow it.
        let tuning = Catalog::tuning_of(config, &model);
        let (model_steps, model_guidance, model_scheduler) = model_defaults(&info, tuning);
        let tuned = preset.as_ref().zip(tuning).map(|(p, t)| p.tuned(t.max_steps, t.guidance, model_scheduler.name()));
        let preset = tuned.as_ref().or(preset.as_ref());

        let (pw, ph) = preset.map_or((info.native_size, info.native_size), |p| p.size_for(info.native_size));
        let max_side = i64::from(config.limits.max_image_side);
        let width = u32_in("width", self.width.unwrap_or(i64::from(pw)), 1..=max_side)?;
        let height = u32_in("height", self.height.unwrap_or(i64::from(ph)), 1..=max_side)?;
        check_size(&info, None, width, height, config.limits.max_image_side).map_err(request_error)?;
        let default_steps = preset.map_or(model_steps, |p| i64::from(p.steps));
        let steps = u32_in("steps", self.steps.unwrap_or(default_steps), 1..=i64::from(config.limits.max_steps))?;
        let default_guidance = preset.map_or(model_guidance, |p| f64::from(p.guidance));
        let guidance = float_in("guidance", self.guidance.unwrap_or(default_guidance), 0.0..=30.0)? as f32;
        let default_scheduler = preset.map_or_else(|| model_scheduler.name(), |p| p.scheduler.as_str());
        let asked = (self.scheduler.as_deref(), self.schedule.as_deref());
        let choice = scheduler_choice(asked, (default_scheduler, None), ("scheduler", "schedule"))?;
        let seed = match self.seed {
            None => u64::from(rand::random::<u32>()),
            Some(s) => int_in("seed", s, 0..=MAX_SEED)?.unsigned_abs(),
        };
        let n = u32_in("n", self.n.unwrap_or(1), 1..=MAX_IMAGES)?;
        let preview_every = u32_in("preview_every", self.preview_every.unwrap_or(5), 0..=10_000)?;
        let upscale_model = self
            .upscale_model
            .map(|m| installed_model("upscale_model", Some(&m), ModelKind::Upscale, config))
            .transpose()?;
        let resize = self.resize.map(|r| r.resolve(config)).transpose()?;
        if let Some(id) = &self.init_image {
            Ulid::from_string(id).map_err(|_| ParamError::new("init_image", "must be an artifact id"))?;
            if !info.has_vae_encoder {
                return Err(ParamError::new(
                    "init_image",
                    format!("model {model} has no vae_encoder for image-to-image"),
                ));
            }
        }
        let strength = match (&self.init_image, self.strength) {
            (None, None) => None,
            (None, Some(_)) => return Err(ParamError::new("strength", "only applies with init_image")),
            (Some(_), s) => Some(float_in("strength", s.unwrap_or(0.75), 0.0..=1.0)?),
        };
        if let Some(id) = &self.mask {
            if self.init_image.is_none() {
                return Err(ParamError::new("mask", "only applies with init_image, the picture whose part it redraws"));
            }
            Ulid::from_string(id).map_err(|_| ParamError::new("mask", "must be an artifact id"))?;
            if self.refine.is_some() {
                return Err(ParamError::new(
                    "refine",
                    "a masked picture takes no second pass: leave refine out, or send the refined picture with its mask again",
                ));
            }
        }
        let mask_grow = match (&self.mask, self.mask_grow) {
            (_, None) => 0,
            (None, Some(_)) => return Err(ParamError::new("mask_grow", "only applies with mask")),
            (Some(_), Some(px)) => u32_in("mask_grow", px, 0..=MAX_MASK_GROW)?,
        };
        let steps_mode = match (&self.init_image, self.steps_mode.as_deref()) {
            (None, Some(_)) => return Err(ParamError::new("steps_mode", "only applies with init_image")),
            (_, mode) => steps_mode("steps_mode", mode)?,
        };
        let clip_skip = self.clip_skip.map(|c| u32_in("clip_skip", c, 1..=MAX_CLIP_SKIP)).transpose()?;
        if let Some(skip) = clip_skip {
            info.check_clip_skip(skip).map_err(request_error)?;
        }
        // The schedule itself may refuse the step count (LCM takes at most its original steps).
        check_schedule(choice, &info, steps, strength.unwrap_or(1.0), steps_mode, ("steps", "scheduler"))?;
        let sample_as =
            named("sample_as", self.sample_as.as_deref(), SampleAs::parse, &SampleAs::NAMES)?.unwrap_or_default();
        let texts = [(prompt.as_str(), "prompt"), (self.negative_prompt.as_deref().unwrap_or(""), "negative_prompt")];
        super::embeddings::check_named(config, &info, sample_as, &texts)?;
        let mut params = ImageParams {
            prompt,
            negative_prompt: self.negative_prompt,
            model,
            width,
            height,
            steps,
            guidance,
            scheduler: choice.name().to_string(),
            schedule: choice.schedule,
            sample_as,
            clip_skip,
            seed,
            n,
            init_image: self.init_image,
            strength,
            mask: self.mask,
            mask_grow,
            steps_mode,
            noise: named("noise", self.noise.as_deref(), NoiseKind::parse, &NoiseKind::NAMES)?.unwrap_or_default(),
            preset: self.preset,
            preview_every,
            upscale_model,
            resize,
            refine: None,
        };
        params.refine = self.refine.map(|r| r.resolve(&params, &info, config)).transpose()?;
        if let Some(r) = &params.resize {
            // After an upscale (the last stage's or the second pass's) the pictures' size waits
            // for its model's scale, which only loading it tells: the resize stage checks it then.
            let size = match &params.refine {
                None => Some((width, height)),
                Some(f) => f.size.map(|s| (s.width, s.height)),
            };
            let known = size.filter(|_| params.upscale_model.is_none());
            r.check(known.map(|(w, h)| ("the picture", w, h)), config)?;
        }
        Ok(params)
    }
}

/// What installed diffusion model `model`, which request field `field` names, reads as; an
/// unknown or missing model, or one of another kind, refused naming `field` with what is
/// installed or the pull that installs it. One check for every field that names the model a
/// pass samples with (`model`, `refine.model`).
pub fn diffusion_model(field: &str, model: &str, config: &Config) -> Result<ModelInfo, ParamError> {
    crate::kinds::inputs::require_kind(field, ModelKind::Diffusion, model, config)?;
    // The whole catalog is read only to name the choices in an error: an installed model is
    // read from its own directory.
    let installed = || match Catalog::load(config).installed_names(ModelKind::Diffusion).join(", ") {
        none if none.is_empty() => {
            "none (`reelbox models list --available` shows what `reelbox pull NAME` installs)".into()
        }
        names => names,
    };
    match Catalog::installed_dir_of(config, ModelKind::Diffusion, model) {
        Some(dir) => ModelInfo::inspect(&dir).map_err(|e| ParamError::new(field, e.to_string())),
        // On a head, a model only a worker box has: its sizes and defaults as that box sent them.
        None => crate::kinds::box_models::diffusion(model).ok_or_else(|| {
            match Availability::of(config, ModelKind::Diffusion, model) {
                // Known to the catalog (a profile may name one before it is pulled): the pull to make.
                known @ (Availability::Pullable { .. } | Availability::Gone { .. }) => {
                    ParamError::unavailable_model(field, ModelKind::Diffusion, model, &known)
                }
                other => {
                    let text = match crate::kinds::box_models::missing_where() {
                        "" => format!("unknown model {model:?}; installed: {}", installed()),
                        looked => format!("unknown model {model:?}: not installed{looked}; installed: {}", installed()),
                    };
                    ParamError::new(field, text).with_model(other.problem(ModelKind::Diffusion, model))
                }
            }
        }),
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Checks and normalises `image` request JSON; every error names its field.
pub fn validate_params(params: &serde_json::Value, config: &Config) -> Result<ImageParams, ParamError> {
    ImageRequest::from_json(params)?.resolve(config)
}
