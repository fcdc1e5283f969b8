//! `refine`: the picture's second sampling pass, A1111's "hires fix" and ComfyUI's two-pass
//! workflow (KSampler → scale → KSampler at partial denoise). Each picture of the `generate`
//! stage is scaled, by an `upscale_model` and/or the typed `resize` (`kinds::resize`,
//! ComfyUI's rounding), and sampled again as image-to-image at its own `strength`, in a stage
//! of its own, `refine`, before any `upscale` or `resize`; with `from: latent` its final
//! latent is scaled instead, as ComfyUI's LatentUpscale does (`latent`); the stage runs in
//! `refine_stage`. [`RefineRequest`] is what clients send, [`Refine`] the stored form with
//! every default filled from the first pass, so a stored job refines the same pixels after a
//! restart. With a `switch_at_step` it is a base → refiner split instead (`split`): the first
//! pass stops there and this one goes on from its leftover noise.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ImageParams;
use super::sampling::{check_schedule, scheduler_choice, steps_mode};
use super::split::{self, Switch};
use crate::config::Config;
use crate::kinds::ParamError;
use crate::kinds::fields::{float_field, float_in, int_field, int_in, reject_unknown, string_field, u32_in};
use crate::kinds::inputs::installed_model;
use crate::kinds::resize::{Resize, ResizeRequest};
use crate::models::ModelKind;
use crate::pipelines::diffusion::ModelInfo;
use crate::pipelines::diffusion::model::check_size;
use crate::pipelines::diffusion::samplers::{self, Schedule, StepsMode};

const KNOWN: [&str; 16] = [
    "from",
    "switch_at_step",
    "switch_at",
    "continue",
    "model",
    "upscale_model",
    "resize",
    "strength",
    "steps",
    "steps_mode",
    "seed",
    "guidance",
    "scheduler",
    "schedule",
    "prompt",
    "negative_prompt",
];
/// The scale estimates take for an upscale model, whose own is known only once it is loaded:
/// Real-ESRGAN x4's and most others'.
const ASSUMED_MODEL_SCALE: u32 = 4;
/// What a refusal of the whole `refine` says it takes.
const SHAPE: &str = "must be an object: {\"strength\" (more than 0, at most 1) or \"switch_at_step\", and optionally \
                     \"from\", \"model\", \"resize\", \"steps\", \"steps_mode\", \"seed\", \"guidance\", \"scheduler\", \
                     \"schedule\", \"prompt\", \"negative_prompt\"}";

/// A second pass as a request gives it: only `strength` (or, for a split, `switch_at_step`) is
/// required; the rest default to the first pass's (no `resize`: the same size).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefineRequest {
    /// What the second pass starts from: `picture` (default) or `latent` ([`RefineFrom`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A base → refiner split: the first pass runs its schedule's steps before this one and
    /// hands on its leftover noise; this pass goes on from it over the same schedule, adding
    /// none (ComfyUI's KSamplerAdvanced pair, A1111's refiner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_at_step: Option<i64>,
    /// A split's switch as A1111's `refiner_switch_at` gives it, a share from 0 to 1: at the
    /// first step whose noise level is past it (`samplers::a1111_switch_step`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_at: Option<f64>,
    /// How a split's second pass goes on ([`split::Continue`]): `leftover` (default), a run of
    /// its own from the leftover noise, or `run`, the first pass's sampler run going on.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
    /// Installed diffusion model the second pass samples with (A1111's hires checkpoint,
    /// ComfyUI's second checkpoint); default: the first pass's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Installed upscale model each first-pass picture is upscaled by first (ComfyUI's
    /// ImageUpscaleWithModel between the passes), before any `resize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscale_model: Option<String>,
    /// How each first-pass picture is scaled before it is sampled again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeRequest>,
    /// How much of the scaled picture is repainted (ComfyUI's `denoise`), more than 0, at most 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    /// How `steps` count ([`StepsMode`]): `schedule` (default) or `run`, ComfyUI's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// ComfyUI's schedule it samples over (default: the first pass's), as the top-level `schedule`;
    /// `none`: no schedule, the scheduler's own timesteps (what DDIM and PLMS read in A1111).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

/// What a second pass starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefineFrom {
    /// The first pass's picture, scaled, then encoded by the model's VAE (A1111's hires fix,
    /// ComfyUI's pixel form).
    #[default]
    Picture,
    /// The first pass's final latent, scaled as ComfyUI's latent nodes scale it, with no VAE
    /// round trip (ComfyUI's latent form: the blocky start of a `nearest-exact` scale that
    /// the second pass repaints).
    Latent,
}

impl RefineFrom {
    fn is_picture(&self) -> bool {
        *self == RefineFrom::Picture
    }
}

/// A validated second pass, every default filled, as a job stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refine {
    /// What it starts from (stored jobs from before it was asked start from the picture).
    #[serde(default, skip_serializing_if = "RefineFrom::is_picture")]
    pub from: RefineFrom,
    /// A base → refiner split's switch; `None` (and in jobs stored before it): a second pass
    /// over the first pass's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
    /// The diffusion model it samples with; `None` (and in jobs stored before it): the first
    /// pass's ([`Refine::model_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The upscale model each first-pass picture is upscaled by first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale_model: Option<String>,
    /// The scale of each (upscaled) first-pass picture; `None`: sampled again at its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
    /// The size it samples at ([`PassSize`]); `None` after an `upscale_model`, whose scale
    /// only loading it tells: the stage works it out then, held to the same rules.
    #[serde(flatten)]
    pub size: Option<PassSize>,
    pub strength: f64,
    pub steps: u32,
    /// How `steps` count (stored jobs from before it count the schedule's).
    #[serde(default, skip_serializing_if = "StepsMode::is_schedule")]
    pub steps_mode: StepsMode,
    /// The first picture's seed; picture N takes `seed + N − 1`, as the first pass does.
    pub seed: u64,
    pub guidance: f32,
    pub scheduler: String,
    /// ComfyUI's schedule it samples over, `Some(None)` none (stored as `none`: the scheduler's
    /// own timesteps though the first pass had one); `None`, not stored: the first pass's (as in
    /// jobs stored before a second pass could name its own).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::sampling::pass_schedule")]
    pub schedule: Option<Option<Schedule>>,
    pub prompt: String,
    pub negative_prompt: Option<String>,
}

/// The size a second pass samples at: the scaled picture's, each side cut down to a multiple
/// of the model's size step (the middle kept, as ComfyUI's VAEEncode crops).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassSize {
    pub width: u32,
    pub height: u32,
}

/// The [`PassSize`] of a `w`×`h` picture resized by `resize` (from the latent: its latent),
/// or why the model cannot sample it, named at the resize input behind it (`refine` without one).
pub(super) fn pass_size(
    from: RefineFrom,
    resize: Option<&Resize>,
    (w, h): (u32, u32),
    info: &ModelInfo,
    config: &Config,
) -> Result<PassSize, ParamError> {
    let field = resize.map_or_else(|| "refine".to_string(), |r| sub(&r.field()));
    let step = info.vae_scale.max(1);
    let (w, h) = match (resize, from) {
        (None, _) => (w, h),
        (Some(r), RefineFrom::Latent) => {
            let (cells_w, cells_h) = r.latent_size_of(w / step, h / step, step);
            (cells_w.saturating_mul(step), cells_h.saturating_mul(step))
        }
        (Some(r), RefineFrom::Picture) => {
            if let Some(why) = r.refusal("each picture", w, h, config) {
                return Err(ParamError::new(field, why));
            }
            r.size_of(w, h)
        }
    };
    let (w, h) = (w / step * step, h / step * step);
    check_size(info, None, w, h, config.limits.max_image_side)
        .map_err(|e| ParamError::new(field, format!("each picture comes out {w}x{h} for its second pass: {e}")))?;
    Ok(PassSize { width: w, height: h })
}

/// `field` of the request's `refine`, as errors name it.
pub(super) fn sub(field: &str) -> String {
    format!("refine.{field}")
}

/// A reader's error on the `refine` object named as `refine.FIELD`.
fn under(e: ParamError) -> ParamError {
    ParamError { field: sub(&e.field), ..e }
}

impl RefineRequest {
    /// Reads the `refine` object of request JSON (`None` when absent); errors name `refine.FIELD`.
    pub fn from_json(params: &Value) -> Result<Option<Self>, ParamError> {
        let v = match params.get("refine") {
            None | Some(Value::Null) => return Ok(None),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(ParamError::new("refine", SHAPE)),
        };
        reject_unknown(v, &KNOWN).map_err(under)?;
        Ok(Some(Self {
            from: string_field(v, "from").map_err(under)?,
            switch_at_step: int_field(v, "switch_at_step").map_err(under)?,
            switch_at: float_field(v, "switch_at").map_err(under)?,
            continues: string_field(v, "continue").map_err(under)?,
            model: string_field(v, "model").map_err(under)?,
            upscale_model: string_field(v, "upscale_model").map_err(under)?,
            resize: ResizeRequest::from_json(v, "resize").map_err(under)?,
            strength: float_field(v, "strength").map_err(under)?,
            steps: int_field(v, "steps").map_err(under)?,
            steps_mode: string_field(v, "steps_mode").map_err(under)?,
            seed: int_field(v, "seed").map_err(under)?,
            guidance: float_field(v, "guidance").map_err(under)?,
            scheduler: string_field(v, "scheduler").map_err(under)?,
            schedule: string_field(v, "schedule").map_err(under)?,
            prompt: string_field(v, "prompt").map_err(under)?,
            negative_prompt: string_field(v, "negative_prompt").map_err(under)?,
        }))
    }

    /// Fills the defaults from the `first` pass (already resolved, its model's configs read as
    /// `first_info`) and checks the second pass against the model it samples with and the
    /// config's limits: its size as that model takes it, named at the resize input behind it.
    pub fn resolve(self, first: &ImageParams, first_info: &ModelInfo, config: &Config) -> Result<Refine, ParamError> {
        let switch = split::asked(&self)?;
        let strength = match (self.strength, switch) {
            // A split goes on with the schedule as it is: no strength of its own.
            (None, Some(_)) => 1.0,
            (None, None) => {
                return Err(ParamError::new(
                    sub("strength"),
                    "required: how much of each picture the second pass repaints, more than 0 and at most 1",
                ));
            }
            (Some(s), _) if s.is_finite() && s > 0.0 && s <= 1.0 => s,
            (Some(s), _) => {
                return Err(ParamError::new(sub("strength"), format!("must be more than 0 and at most 1, got {s}")));
            }
        };
        let from = match self.from.as_deref() {
            None if switch.is_some() => RefineFrom::Latent,
            None | Some("picture") => RefineFrom::Picture,
            Some("latent") => RefineFrom::Latent,
            Some(other) => {
                return Err(ParamError::new(sub("from"), format!("{other:?} is neither \"picture\" nor \"latent\"")));
            }
        };
        let own =
            self.model.as_deref().map(|m| super::params::diffusion_model(&sub("model"), m, config)).transpose()?;
        let info = own.as_ref().unwrap_or(first_info);
        // Its prompts are read at the first pass's clip skip, on its own model's text encoder.
        if let (Some(skip), Some(own)) = (first.clip_skip, &own) {
            own.check_clip_skip(skip).map_err(|e| ParamError::new(sub("model"), e.to_string()))?;
        }
        // Its prompts (its own, else the first pass's) name only embeddings its model takes.
        let texts = (self.prompt.as_deref(), self.negative_prompt.as_deref());
        super::embeddings::check_second_pass(config, info, first, texts, own.is_some())?;
        if from == RefineFrom::Picture && !info.has_vae_encoder {
            let field = if own.is_some() { sub("model") } else { "refine".to_string() };
            return Err(ParamError::new(
                field,
                format!(
                    "model {} has no vae_encoder to encode a picture for a second pass; \"from\": \"latent\" \
                     needs none",
                    self.model.as_deref().unwrap_or(&first.model)
                ),
            ));
        }
        if let (RefineFrom::Latent, Some(own)) = (from, &own)
            && let Some(why) = first_info.latent_mismatch(own)
        {
            let name = self.model.as_deref().unwrap_or_default();
            let instead = if own.has_vae_encoder {
                format!("\"from\": \"picture\" samples {name} on its own VAE's encoding of the picture")
            } else {
                format!("and {name} has no vae_encoder to start from the picture either")
            };
            return Err(ParamError::new(
                sub("model"),
                format!("a second pass from the latent samples the first pass's latent, and {why}; {instead}"),
            ));
        }
        if from == RefineFrom::Latent && self.upscale_model.is_some() {
            return Err(ParamError::new(
                sub("upscale_model"),
                "an upscale model scales pictures, and a second pass from the latent scales the latent: leave it \
                 out, or refine from the picture",
            ));
        }
        let upscale_model = self
            .upscale_model
            .map(|m| installed_model(&sub("upscale_model"), Some(&m), ModelKind::Upscale, config))
            .transpose()?;
        let resize = self
            .resize
            .map(|r| match from {
                RefineFrom::Picture => r.resolve(config).map_err(under),
                RefineFrom::Latent => r.resolve_latent(config).map_err(under),
            })
            .transpose()?;
        let size = match upscale_model {
            Some(_) => None,
            None => Some(pass_size(from, resize.as_ref(), (first.width, first.height), info, config)?),
        };
        // A split's second pass goes on over the first's schedule unless it names its own length.
        let first_span = switch.map(|s| split::first_span(s, first, first_info)).transpose()?;
        let steps = match self.steps {
            None => first_span.map_or(first.steps, |s| u32::try_from(s.schedule).unwrap_or(first.steps)),
            Some(s) => u32_in(&sub("steps"), s, 1..=i64::from(config.limits.max_steps))?,
        };
        let guidance = match self.guidance {
            None => first.guidance,
            Some(g) => float_in(&sub("guidance"), g, 0.0..=30.0)? as f32,
        };
        // Unless it names its own, the second pass samples over the first's schedule, if any.
        let asked = (self.scheduler.as_deref(), self.schedule.as_deref());
        let fields = (sub("scheduler"), sub("schedule"));
        let choice = scheduler_choice(asked, (&first.scheduler, first.schedule), (&fields.0, &fields.1))?;
        let steps_mode = steps_mode(&sub("steps_mode"), self.steps_mode.as_deref())?;
        let mut switch =
            switch.zip(first_span).map(|(s, span)| s.resolve(first, first_info, span, steps)).transpose()?;
        if let (Some(switch), Some(span)) = (switch.as_mut(), first_span) {
            switch.continues = split::continues((self.continues.as_deref(), self.seed), first, choice, steps, span)?;
        }
        let (run, run_strength, run_mode) = switch.map_or((steps, strength, steps_mode), |s| s.second_pass(steps));
        check_schedule(choice, info, run, run_strength, run_mode, (&sub("steps"), &fields.0))?;
        let seed = match self.seed {
            None => first.seed,
            Some(s) => int_in(&sub("seed"), s, 0..=super::MAX_SEED)?.unsigned_abs(),
        };
        let prompt = match self.prompt.as_deref().map(str::trim) {
            None => first.prompt.clone(),
            Some("") => {
                return Err(ParamError::new(sub("prompt"), "empty; leave it out to sample with the first pass's"));
            }
            Some(p) => p.to_string(),
        };
        let max_chars = config.limits.max_prompt_chars;
        for (field, text) in [("prompt", Some(prompt.as_str())), ("negative_prompt", self.negative_prompt.as_deref())] {
            if text.is_some_and(|t| t.chars().count() > max_chars) {
                return Err(ParamError::new(sub(field), format!("longer than {max_chars} characters")));
            }
        }
        let negative_prompt = self.negative_prompt.or_else(|| first.negative_prompt.clone());
        Ok(Refine {
            from,
            switch,
            model: self.model,
            upscale_model,
            resize,
            size,
            strength,
            steps,
            steps_mode,
            seed,
            guidance,
            scheduler: choice.name().to_string(),
            // None stored only where the first pass has one, so that no schedule stays none.
            schedule: match (choice.schedule, first.schedule) {
                (None, None) => None,
                (own, _) => Some(own),
            },
            prompt,
            negative_prompt,
        })
    }
}

impl Refine {
    /// The diffusion model it samples with: its own, else the `first` pass's.
    pub fn model_of<'a>(&'a self, first: &'a ImageParams) -> &'a str {
        self.model.as_deref().unwrap_or(&first.model)
    }

    /// The schedule it samples over: its own (none included), else the `first` pass's.
    pub fn schedule_of(&self, first: &ImageParams) -> Option<Schedule> {
        self.schedule.unwrap_or(first.schedule)
    }

    /// UNet steps it runs per picture after `first`'s pass: a share of `steps` or all of
    /// them, as `steps_mode` (and the run's `sample_as`) counts; a split's, those from its
    /// switch on.
    pub fn steps_run(&self, first: &ImageParams) -> u32 {
        if let Some(switch) = self.switch {
            return self.steps.saturating_sub(switch.step);
        }
        let rule = samplers::count_rule(self.schedule_of(first), first.sample_as);
        let run = samplers::steps_run(self.steps as usize, self.strength, self.steps_mode, rule);
        u32::try_from(run).unwrap_or(self.steps)
    }

    /// The size it samples at, as far as submission knows it: after an upscale model, the one
    /// a model of [`ASSUMED_MODEL_SCALE`] would give (for estimates only).
    pub fn expected_size(&self, first: &ImageParams) -> (u32, u32) {
        if let Some(s) = self.size {
            return (s.width, s.height);
        }
        let (w, h) = (first.width * ASSUMED_MODEL_SCALE, first.height * ASSUMED_MODEL_SCALE);
        self.resize.map_or((w, h), |r| r.size_of(w, h))
    }

    /// The second pass's pictures over the first's: what its cost scales by.
    pub fn pixel_ratio(&self, first: &ImageParams) -> f64 {
        let pixels = |(w, h): (u32, u32)| f64::from(w) * f64::from(h);
        pixels(self.expected_size(first)) / pixels((first.width, first.height)).max(1.0)
    }

    /// The parameters of picture `i`'s second pass: an image-to-image run of one picture at
    /// the second pass's size and settings, as [`Image::render`] takes them.
    pub(super) fn pass(&self, first: &ImageParams, size: PassSize, i: usize) -> ImageParams {
        let (steps, strength, steps_mode) =
            self.switch.map_or((self.steps, self.strength, self.steps_mode), |s| s.second_pass(self.steps));
        ImageParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            model: self.model_of(first).to_string(),
            width: size.width,
            height: size.height,
            steps,
            guidance: self.guidance,
            scheduler: self.scheduler.clone(),
            schedule: self.schedule_of(first),
            sample_as: first.sample_as,
            // Read at the first pass's layer, as A1111's one setting reads both passes' prompts.
            clip_skip: first.clip_skip,
            seed: self.seed.wrapping_add(i as u64),
            n: 1,
            init_image: None,
            strength: Some(strength),
            mask: None,
            mask_grow: 0,
            steps_mode,
            // The second pass draws its noise as the first did (ComfyUI's second KSampler
            // prepares its noise as the first does).
            noise: first.noise,
            preset: first.preset.clone(),
            preview_every: first.preview_every,
            upscale_model: None,
            resize: None,
            refine: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bad_refines_name_their_field() {
        let field = |v: Value| RefineRequest::from_json(&json!({ "refine": v })).expect_err("refused").field;
        assert_eq!(field(json!(2)), "refine");
        assert_eq!(field(json!({"strength": "most"})), "refine.strength");
        assert_eq!(field(json!({"strength": 0.5, "denoise": 0.5})), "refine.denoise");
        assert_eq!(field(json!({"strength": 0.5, "resize": {"scale": 2}})), "refine.resize.scale");
        assert_eq!(field(json!({"strength": 0.5, "resize": 2})), "refine.resize");
        assert_eq!(field(json!({"strength": 0.5, "from": 1})), "refine.from");
        assert_eq!(field(json!({"strength": 0.5, "steps_mode": 1})), "refine.steps_mode");
        assert_eq!(field(json!({"strength": 0.5, "schedule": 1})), "refine.schedule");
        assert_eq!(RefineRequest::from_json(&json!({})), Ok(None));
    }
}
