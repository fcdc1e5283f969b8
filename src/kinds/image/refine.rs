//! `refine`: the picture's second sampling pass, A1111's "hires fix" and ComfyUI's two-pass
//! workflow (KSampler → scale → KSampler at partial denoise). Each picture of the `generate`
//! stage is scaled by the typed `resize` (`kinds::resize`, ComfyUI's rounding) and sampled
//! again as image-to-image at its own `strength`, in a stage of its own, `refine`, before any
//! `upscale` or `resize`. [`RefineRequest`] is what clients send, [`Refine`] the stored form
//! with every default filled from the first pass, so a stored job refines the same pixels
//! after a restart.

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Image, ImageParams};
use crate::config::Config;
use crate::kinds::fields::{float_field, float_in, int_field, int_in, reject_unknown, string_field, u32_in};
use crate::kinds::resize::{Resize, ResizeRequest};
use crate::kinds::{ParamError, StageError, StageName, StageRun};
use crate::pipelines::diffusion::model::check_size;
use crate::pipelines::diffusion::samplers::{self, SchedulerChoice};
use crate::pipelines::diffusion::{ModelInfo, Preview};

const KNOWN: [&str; 8] = ["resize", "strength", "steps", "seed", "guidance", "scheduler", "prompt", "negative_prompt"];
/// What a refusal of the whole `refine` says it takes.
const SHAPE: &str = "must be an object: {\"strength\" (more than 0, at most 1), and optionally \"resize\", \"steps\", \
                     \"seed\", \"guidance\", \"scheduler\", \"prompt\", \"negative_prompt\"}";

/// A second pass as a request gives it: only `strength` is required; the rest default to the
/// first pass's (no `resize`: the same size).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefineRequest {
    /// How each first-pass picture is scaled before it is sampled again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeRequest>,
    /// How much of the scaled picture is repainted (ComfyUI's `denoise`), more than 0, at most 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

/// A validated second pass, every default filled, as a job stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refine {
    /// The scale of each first-pass picture; `None`: sampled again at its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
    /// The size it samples at: the resize's, each side cut down to a multiple of the model's
    /// size step (the middle kept, as ComfyUI's VAEEncode crops).
    pub width: u32,
    pub height: u32,
    pub strength: f64,
    pub steps: u32,
    /// The first picture's seed; picture N takes `seed + N − 1`, as the first pass does.
    pub seed: u64,
    pub guidance: f32,
    pub scheduler: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
}

/// `field` of the request's `refine`, as errors name it.
fn sub(field: &str) -> String {
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
            resize: ResizeRequest::from_json(v, "resize").map_err(under)?,
            strength: float_field(v, "strength").map_err(under)?,
            steps: int_field(v, "steps").map_err(under)?,
            seed: int_field(v, "seed").map_err(under)?,
            guidance: float_field(v, "guidance").map_err(under)?,
            scheduler: string_field(v, "scheduler").map_err(under)?,
            prompt: string_field(v, "prompt").map_err(under)?,
            negative_prompt: string_field(v, "negative_prompt").map_err(under)?,
        }))
    }

    /// Fills the defaults from the `first` pass (already resolved) and checks the second pass
    /// against the model `info` and the config's limits: its size as the model takes it,
    /// named at the resize input behind it.
    pub fn resolve(self, first: &ImageParams, info: &ModelInfo, config: &Config) -> Result<Refine, ParamError> {
        let strength = match self.strength {
            None => {
                return Err(ParamError::new(
                    sub("strength"),
                    "required: how much of each picture the second pass repaints, more than 0 and at most 1",
                ));
            }
            Some(s) if s.is_finite() && s > 0.0 && s <= 1.0 => s,
            Some(s) => {
                return Err(ParamError::new(sub("strength"), format!("must be more than 0 and at most 1, got {s}")));
            }
        };
        if !info.has_vae_encoder {
            return Err(ParamError::new(
                "refine",
                format!("model {} has no vae_encoder for a second pass", first.model),
            ));
        }
        let resize = self.resize.map(|r| r.resolve(config).map_err(under)).transpose()?;
        let (width, height) = match &resize {
            None => (first.width, first.height),
            Some(r) => {
                let field = sub(&r.field());
                if let Some(why) = r.refusal("each picture", first.width, first.height, config) {
                    return Err(ParamError::new(field, why));
                }
                let (w, h) = r.size_of(first.width, first.height);
                let step = info.vae_scale.max(1);
                let (w, h) = (w / step * step, h / step * step);
                check_size(info, None, w, h, config.limits.max_image_side).map_err(|e| {
                    ParamError::new(field, format!("each picture comes out {w}x{h} for its second pass: {e}"))
                })?;
                (w, h)
            }
        };
        let steps = match self.steps {
            None => first.steps,
            Some(s) => u32_in(&sub("steps"), s, 1..=i64::from(config.limits.max_steps))?,
        };
        let guidance = match self.guidance {
            None => first.guidance,
            Some(g) => float_in(&sub("guidance"), g, 0.0..=30.0)? as f32,
        };
        let scheduler = self.scheduler.unwrap_or_else(|| first.scheduler.clone());
        let choice =
            SchedulerChoice::parse(&scheduler).map_err(|e| ParamError::new(sub("scheduler"), e.to_string()))?;
        samplers::build(choice, &info.scheduler_config, steps as usize, strength).map_err(|e| match e {
            samplers::SchedulerError::Steps(m) => ParamError::new(sub("steps"), m),
            other => ParamError::new(sub("scheduler"), other.to_string()),
        })?;
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
            resize,
            width,
            height,
            strength,
            steps,
            seed,
            guidance,
            scheduler: choice.name().to_string(),
            prompt,
            negative_prompt,
        })
    }
}

impl Refine {
    /// The second pass's pictures over the first's: what its cost scales by.
    pub fn pixel_ratio(&self, first: &ImageParams) -> f64 {
        let pixels = |w: u32, h: u32| f64::from(w) * f64::from(h);
        pixels(self.width, self.height) / pixels(first.width, first.height).max(1.0)
    }

    /// The parameters of picture `i`'s second pass: an image-to-image run of one picture at
    /// the second pass's size and settings, as [`Image::render`] takes them.
    fn pass(&self, first: &ImageParams, i: usize) -> ImageParams {
        ImageParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            model: first.model.clone(),
            width: self.width,
            height: self.height,
            steps: self.steps,
            guidance: self.guidance,
            scheduler: self.scheduler.clone(),
            seed: self.seed.wrapping_add(i as u64),
            n: 1,
            init_image: None,
            strength: Some(self.strength),
            preset: first.preset.clone(),
            preview_every: first.preview_every,
            upscale_model: None,
            resize: None,
            refine: None,
        }
    }

    /// First-pass picture `img` as the second pass starts from it: scaled, then its middle
    /// cut to the size the model samples (ComfyUI's VAEEncode crop to whole latents).
    fn start_from(&self, img: &RgbImage, label: &str, config: &Config) -> Result<RgbImage, StageError> {
        let scaled = match &self.resize {
            Some(r) => r.apply(img, label, config)?,
            None => img.clone(),
        };
        let (w, h) = scaled.dimensions();
        if (w, h) == (self.width, self.height) {
            return Ok(scaled);
        }
        if w < self.width || h < self.height {
            return Err(StageError::fatal(format!(
                "{label} scaled to {w}x{h} is smaller than the {}x{} its second pass samples",
                self.width, self.height
            )));
        }
        let (x, y) = ((w - self.width) / 2, (h - self.height) / 2);
        Ok(image::imageops::crop_imm(&scaled, x, y, self.width, self.height).to_image())
    }
}

/// The `refine` stage: each picture of the `generate` stage (`image.png`, `image-N.png`)
/// scaled and sampled again, stored as `refined.png`, `refined-N.png`; its steps count on
/// across the pictures, and its previews are `preview-refine-NNNN.png`.
pub(super) fn refine_pictures(
    kind: &Image,
    first: &ImageParams,
    refine: &Refine,
    run: &StageRun,
) -> Result<(), StageError> {
    let pictures: Vec<_> =
        run.sink.stage_artifacts(StageName::Generate).into_iter().filter(|a| a.name.starts_with("image")).collect();
    if pictures.is_empty() {
        return Err(StageError::fatal("the generate stage left no picture to refine"));
    }
    let count = pictures.len() as u64;
    let sink = run.sink;
    run.sink.log(
        "info",
        &format!(
            "refining {count} picture(s) at {}x{}, strength {}, {} steps",
            refine.width, refine.height, refine.strength, refine.steps
        ),
    );
    for (i, picture) in pictures.iter().enumerate() {
        let label = format!("picture {}", picture.name);
        let img = crate::media::picture::open(&run.sink.artifact_path(picture))
            .map_err(|e| StageError::context(format!("{label} is not a readable image"), e))?;
        let start = refine.start_from(&img, &label, run.config)?;
        let done = i as u64;
        let progress = |p: crate::pipelines::Progress| {
            sink.progress(done * p.total + p.step, count * p.total, p.message.as_deref());
        };
        let preview = |p: Preview| {
            let name = format!("preview-refine-{:04}.png", done * p.total + p.step);
            if !p.png.is_empty()
                && let Err(e) = sink.put_artifact(&name, "image/png", &p.png)
            {
                tracing::warn!("cannot store preview: {e}");
            }
        };
        let pass = refine.pass(first, i);
        let rendered = kind.render(
            run.config,
            run.engine,
            run.device,
            &pass,
            Some(&start),
            Some(&progress),
            Some(&preview),
            Some(run.cancel),
        )?;
        for w in &rendered.warnings {
            sink.log("warn", w);
        }
        let name = picture.name.replacen("image", "refined", 1);
        for (_, png) in &rendered.images {
            sink.put_artifact(&name, "image/png", png)?;
        }
    }
    Ok(())
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
        assert_eq!(RefineRequest::from_json(&json!({})), Ok(None));
    }
}
