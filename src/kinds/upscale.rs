//! `upscale`: super-resolution of an image (→ PNG) or a video (→ MP4 with its sound).
//!
//! Params ([`UpscaleRequest`] → [`UpscaleParams`]): `input` (artifact id), `model`
//! (installed Real-ESRGAN-style model; default: the kind's default, `Catalog::default_model`),
//! `tile` (0 = automatic), `tile_pad` (10).

use std::io::Cursor;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::fields::{artifact_param, int_field, reject_unknown, string_field, u32_in};
use super::inputs::{Takes, input_file, installed_model, require_input, stage_model_file};
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
const KNOWN: [&str; 4] = ["input", "model", "tile", "tile_pad"];

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
}

/// Validated `upscale` parameters, as stored with the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpscaleParams {
    pub input: String,
    pub model: String,
    pub tile: u32,
    pub tile_pad: u32,
}

impl Default for UpscaleParams {
    fn default() -> Self {
        Self { input: String::new(), model: DEFAULT_MODEL.into(), tile: 0, tile_pad: DEFAULT_TILE_PAD }
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
        })
    }

    /// Checks the input and model and fills the defaults.
    pub fn resolve(self, config: &Config) -> Result<UpscaleParams, ParamError> {
        let input = self.input.ok_or_else(|| ParamError::new("input", "required"))?;
        let model = installed_model("model", self.model.as_deref(), ModelKind::Upscale, config)?;
        let tile = u32_in("tile", self.tile.unwrap_or(0), 0..=4096)?;
        if (1..32).contains(&tile) {
            return Err(ParamError::new("tile", "must be 0 (automatic) or at least 32"));
        }
        let tile_pad = u32_in("tile_pad", self.tile_pad.unwrap_or(i64::from(DEFAULT_TILE_PAD)), 0..=64)?;
        Ok(UpscaleParams { input, model, tile, tile_pad })
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
        super::memory::single_model_mib(config, &p.model)
    }

    fn models(&self, p: &UpscaleParams) -> Vec<String> {
        vec![p.model.clone()]
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<UpscaleParams, ParamError> {
        let p = UpscaleRequest::from_json(params)?.resolve(ctx.config)?;
        let input = require_input(ctx, "input", &p.input, Takes::Visual)?;
        // Uploads may be larger than upscale takes (limits.max_upload_side): a picture's
        // header refuses one now, not when its turn comes.
        if let Ok(header) = crate::media::picture::header_at(&input.path)
            && let Some(why) = too_large(&input.label, header.width, header.height, ctx.config)
        {
            return Err(ParamError::new("input", why));
        }
        Ok(p)
    }

    fn stages(&self, _p: &UpscaleParams) -> Vec<StageName> {
        vec![STAGE]
    }

    fn run_stage(&self, stage: StageName, p: &UpscaleParams, run: &StageRun) -> Result<(), StageError> {
        if stage != STAGE {
            return Err(StageError::fatal(format!("upscale has no stage {stage:?}")));
        }
        let opts = TileOptions { tile: p.tile, pad: p.tile_pad };
        let model_name = p.model.as_str();

        let input = input_file(run, "input", &p.input)?;
        let visual = open_visual(&input.path, &input.label, Some(&input.artifact.media_type))?;
        let (w, h) = visual.size();
        // A picture was measured at submission; a video (or a limit lowered since) here.
        if let Some(why) = too_large(&input.label, w, h, run.config) {
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
    let mut png = Vec::new();
    out.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| StageError::context("cannot encode PNG", e))?;
    run.sink.put_artifact(name, "image/png", &png)?;
    Ok(())
}
