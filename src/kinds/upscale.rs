//! `upscale`: super-resolution of an image (→ PNG) or a video (→ MP4 with its sound), and
//! a picture's resize without a model (→ `resized.png`; ComfyUI's ImageScale and its kin on
//! a LoadImage), before or after the model's upscale or alone.
//!
//! Params ([`UpscaleRequest`] → [`UpscaleParams`]): `input` (artifact id), `model`
//! (installed Real-ESRGAN-style model; default: the kind's default, `Catalog::default_model`;
//! none when a `resize` is given without one), `tile` (0 = automatic), `tile_pad` (10),
//! `resize` (`kinds::resize`, a stage of its own: after the model's, or before it with
//! `resize_first`).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::fields::{artifact_param, bool_field, int_field, reject_unknown, string_field, u32_in};
use super::inputs::{Takes, input_file, installed_model, require_input, stage_model_file};
use super::resize::{Resize, ResizeRequest};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::kinds::StageName;
use crate::media::ffmpeg::H264Encoder;
use crate::media::visual::{Visual, open_visual};
use crate::models::ModelKind;
use crate::pipelines::Progress;
use crate::pipelines::upscale::{DEFAULT_TILE_PAD, TileOptions, UpscaleError, Upscaler};

/// The `upscale` job kind.
pub struct Upscale;

/// Default installed model name.
pub const DEFAULT_MODEL: &str = "realesrgan-x4";
const STAGE: StageName = StageName::Upscale;
const KNOWN: [&str; 6] = ["input", "model", "tile", "tile_pad", "resize", "resize_first"];

/// `upscale` parameters as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpscaleRequest {
    /// Artifact id of the image or video.
    pub input: Option<String>,
    pub model: Option<String>,
    /// Tile side, 0 = automatic.
    pub tile: Option<i64>,
    pub tile_pad: Option<i64>,
    /// The picture resized without a model: alone when no `model` is named, else after the
    /// model's upscale (before it with `resize_first`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize_first: Option<bool>,
}

/// Validated `upscale` parameters, as stored with the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpscaleParams {
    pub input: String,
    /// `None`: no model, only the `resize` (jobs stored before resizes always name one).
    pub model: Option<String>,
    pub tile: u32,
    pub tile_pad: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
    /// The resize runs before the model's upscale, on the input.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resize_first: bool,
}

impl Default for UpscaleParams {
    fn default() -> Self {
        Self {
            input: String::new(),
            model: Some(DEFAULT_MODEL.into()),
            tile: 0,
            tile_pad: DEFAULT_TILE_PAD,
            resize: None,
            resize_first: false,
        }
    }
}

impl UpscaleRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &KNOWN)?;
        Ok(Self {
            input: artifact_param(params, "input")?.map(|u| u.to_string()),
            model: string_field(params, "model")?,
            tile: int_field(params, "tile")?,
            tile_pad: int_field(params, "tile_pad")?,
            resize: ResizeRequest::from_json(params, "resize")?,
            resize_first: bool_field(params, "resize_first")?,
        })
    }

    /// Checks the input and model and fills the defaults.
    pub fn resolve(self, config: &Config) -> Result<UpscaleParams, ParamError> {
        let input = self.input.ok_or_else(|| ParamError::new("input", "required"))?;
        let resize = self.resize.map(|r| r.resolve(config)).transpose()?;
        // A resize alone runs no model; without a resize the default model upscales.
        let model = match (&self.model, &resize) {
            (None, Some(_)) => None,
            (m, _) => Some(installed_model("model", m.as_deref(), ModelKind::Upscale, config)?),
        };
        let resize_first = self.resize_first.unwrap_or(false);
        if resize_first && (resize.is_none() || model.is_none()) {
            return Err(ParamError::new("resize_first", "only applies with both a resize and a model"));
        }
        let tile = u32_in("tile", self.tile.unwrap_or(0), 0..=4096)?;
        if (1..32).contains(&tile) {
            return Err(ParamError::new("tile", "must be 0 (automatic) or at least 32"));
        }
        let tile_pad = u32_in("tile_pad", self.tile_pad.unwrap_or(i64::from(DEFAULT_TILE_PAD)), 0..=64)?;
        Ok(UpscaleParams { input, model, tile, tile_pad, resize, resize_first })
    }
}

/// Why upscale refuses a `w`×`h` input (`label` names it), when it does: its output is 4×
/// larger, so it takes what pictures made may be (limits.max_image_side), not uploads.
/// The `image` kind's `upscale` stage holds its pictures to the same rule.
pub(crate) fn too_large(label: &str, w: u32, h: u32, config: &Config) -> Option<String> {
    let max_side = config.limits.max_image_side;
    (w.max(h) > max_side)
        .then(|| format!("{label} is {w}x{h}; the largest side allowed is {max_side} (limits.max_image_side)"))
}

impl TypedKind for Upscale {
    type Params = UpscaleParams;
    const NAME: &'static str = "upscale";
    const FIRST_STAGE: StageName = StageName::Upscale;

    fn vram_mib(&self, p: &UpscaleParams, config: &Config) -> u64 {
        p.model.as_ref().map_or(0, |m| super::memory::single_model_mib(config, m))
    }

    /// A resize alone runs no model: it runs on a box without ONNX Runtime.
    fn needs_runtime(&self, p: &UpscaleParams) -> bool {
        p.model.is_some()
    }

    fn models(&self, p: &UpscaleParams) -> Vec<String> {
        p.model.iter().cloned().collect()
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<UpscaleParams, ParamError> {
        let p = UpscaleRequest::from_json(params)?.resolve(ctx.config)?;
        let takes = if p.resize.is_some() { Takes::Picture } else { Takes::Visual };
        let input = require_input(ctx, "input", &p.input, takes)?;
        // Uploads may be larger than upscale takes (limits.max_upload_side): a picture's
        // header refuses one now, not when its turn comes.
        let Ok(header) = crate::media::picture::header_at(&input.path) else { return Ok(p) };
        let (w, h) = (header.width, header.height);
        match &p.resize {
            // The resize of the input, held to the same largest side, is what the model takes.
            Some(r) if p.resize_first || p.model.is_none() => r.check(Some((&input.label, w, h)), ctx.config)?,
            _ => {
                if let Some(why) = too_large(&input.label, w, h, ctx.config) {
                    return Err(ParamError::new("input", why));
                }
            }
        }
        Ok(p)
    }

    fn stages(&self, p: &UpscaleParams) -> Vec<StageName> {
        match (&p.model, &p.resize) {
            (None, _) => vec![StageName::Resize],
            (Some(_), None) => vec![STAGE],
            (Some(_), Some(_)) if p.resize_first => vec![StageName::Resize, STAGE],
            (Some(_), Some(_)) => vec![STAGE, StageName::Resize],
        }
    }

    fn run_stage(&self, stage: StageName, p: &UpscaleParams, run: &StageRun) -> Result<(), StageError> {
        match (stage, &p.model, &p.resize) {
            (STAGE, Some(model), _) => upscale_stage(p, run, model),
            // After the model's upscale: its picture.
            (StageName::Resize, Some(_), Some(resize)) if !p.resize_first => {
                super::resize::resize_pictures(run, resize, STAGE, "upscaled")
            }
            (StageName::Resize, _, Some(resize)) => {
                let input = input_file(run, "input", &p.input)?;
                let img = crate::media::picture::open(&input.path)
                    .map_err(|e| StageError::context(format!("{} is not a readable image", input.label), e))?;
                super::resize::store_png(run, &resize.apply(&img, &input.label, run.config)?, "resized.png")?;
                run.sink.progress(1, 1, None);
                Ok(())
            }
            _ => Err(StageError::fatal(format!("upscale has no stage {stage:?}"))),
        }
    }

    /// The model's upscale against a resize of the same picture, which weighs next to nothing.
    fn stage_weights(&self, _p: &UpscaleParams, stages: &[StageName]) -> Vec<f64> {
        super::image::upscale_kind_weights(stages)
    }
}

/// The `upscale` stage: the input (or with `resize_first` its resize) upscaled by `model_name`.
fn upscale_stage(p: &UpscaleParams, run: &StageRun, model_name: &str) -> Result<(), StageError> {
    let opts = TileOptions { tile: p.tile, pad: p.tile_pad };
    let (visual, label) = if p.resize_first {
        let resized = run.sink.stage_artifacts(StageName::Resize).into_iter().find(|a| a.name.starts_with("resized"));
        let resized = resized.ok_or_else(|| StageError::fatal("the resize stage left no picture to upscale"))?;
        let label = format!("picture {}", resized.name);
        let img = crate::media::picture::open(&run.sink.artifact_path(&resized))
            .map_err(|e| StageError::context(format!("{label} is not a readable image"), e))?;
        (Visual::Image(img), label)
    } else {
        let input = input_file(run, "input", &p.input)?;
        (open_visual(&input.path, &input.label, Some(&input.artifact.media_type))?, input.label)
    };
    let (w, h) = visual.size();
    // A picture was measured at submission; a video (or a limit lowered since) here.
    if let Some(why) = too_large(&label, w, h, run.config) {
        return Err(StageError::fatal(why));
    }
    let upscaler = load(run, "model", model_name)?;
    run.sink.log("info", &format!("upscaling {w}x{h} ×{} with {model_name}", upscaler.scale()));
    let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, pr.message.as_deref());
    match visual {
        Visual::Image(img) => store_upscaled(run, &upscaler, &img, opts, "upscaled.png")?,
        Visual::Video { path, info } => {
            if let Some(seconds) = info.duration_s {
                super::bounds::media_fits(seconds, info.fps, &run.config.limits)
                    .map_err(|m| StageError::fatal(format!("the input is {m}")))?;
            }
            let out = run.sink.scratch_dir().join("upscaled.mp4");
            let encoder = H264Encoder::for_device(run.device);
            let result = upscaler.upscale_video(&path, &out, opts, encoder, run.cancel, &progress);
            if let Err(UpscaleError::Video(e)) = &result {
                run.sink.log("error", &e.to_string());
            }
            result?;
            run.sink.put_artifact_file("upscaled.mp4", "video/mp4", &out)?;
        }
    }
    Ok(())
}

/// Loads upscale model `model` (named by parameter `field`) for a running stage.
pub(crate) fn load(run: &StageRun, field: &str, model: &str) -> Result<Upscaler, StageError> {
    Ok(Upscaler::load(run.engine, run.device, &stage_model_file(run.config, field, ModelKind::Upscale, model)?)?)
}

/// Upscales picture `img` and stores it as PNG artifact `name`, its tiles as the stage's
/// progress: this kind's pictures and the `image` kind's `upscale` stage alike.
pub(crate) fn store_upscaled(
    run: &StageRun,
    upscaler: &Upscaler,
    img: &RgbImage,
    opts: TileOptions,
    name: &str,
) -> Result<(), StageError> {
    let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, pr.message.as_deref());
    let out = upscaler.upscale_image(img, opts, run.cancel, &progress)?;
    super::resize::store_png(run, &out, name)
}
