//! `upscale`: super-resolution of an image (→ PNG) or a video (→ MP4 with its sound).
//!
//! Params: `input` (artifact id), `model` (installed Real-ESRGAN-style model, default
//! `realesrgan-x4`), `tile` (0 = automatic), `tile_pad` (10).

use std::io::Cursor;

use serde_json::json;

use super::inputs::{artifact_param, input_file, model_param};
use super::{JobKind, ParamError, StageError, StageRun, ValidateCtx, int_param, reject_unknown};
use crate::media::ffmpeg::H264Encoder;
use crate::media::visual::{Visual, open_visual};
use crate::models::model_file;
use crate::pipelines::Progress;
use crate::pipelines::upscale::{DEFAULT_TILE_PAD, TileOptions, UpscaleError, Upscaler};

/// The `upscale` job kind.
pub struct Upscale;

/// Default installed model name.
pub const DEFAULT_MODEL: &str = "realesrgan-x4";
const STAGE: &str = "upscale";

impl JobKind for Upscale {
    fn name(&self) -> &'static str {
        "upscale"
    }

    fn vram_mib(&self, params: &serde_json::Value, config: &crate::config::Config) -> u64 {
        let model = params.get("model").and_then(|v| v.as_str()).unwrap_or(DEFAULT_MODEL);
        super::memory::single_model_mib(config, model)
    }

    fn models(&self, params: &serde_json::Value) -> Vec<String> {
        super::param_models(params, &["model"])
    }

    fn validate(&self, params: serde_json::Value, ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError> {
        reject_unknown(&params, &["input", "model", "tile", "tile_pad"])?;
        let input = artifact_param(&params, "input")?.ok_or_else(|| ParamError::new("input", "required"))?;
        let model = model_param(&params, "model", DEFAULT_MODEL, ctx.config)?;
        let tile = int_param(&params, "tile", 0, 0..=4096)?;
        if (1..32).contains(&tile) {
            return Err(ParamError::new("tile", "must be 0 (automatic) or at least 32"));
        }
        let tile_pad = int_param(&params, "tile_pad", i64::from(DEFAULT_TILE_PAD), 0..=64)?;
        Ok(json!({"input": input.to_string(), "model": model, "tile": tile, "tile_pad": tile_pad}))
    }

    fn stages(&self, _params: &serde_json::Value) -> Vec<String> {
        vec![STAGE.to_string()]
    }

    fn run_stage(&self, stage: &str, run: &StageRun) -> Result<(), StageError> {
        if stage != STAGE {
            return Err(StageError::fatal(format!("upscale has no stage {stage:?}")));
        }
        let p = run.params;
        let get = |k: &str, d: u64| p.get(k).and_then(|v| v.as_u64()).unwrap_or(d) as u32;
        let opts = TileOptions { tile: get("tile", 0), pad: get("tile_pad", u64::from(DEFAULT_TILE_PAD)) };
        let model_name = p.get("model").and_then(|v| v.as_str()).unwrap_or(DEFAULT_MODEL);

        let input = input_file(run, "input")?;
        let visual = open_visual(&input.path, &input.label, Some(&input.artifact.media_type))?;
        let (w, h) = visual.size();
        let max_side = run.config.limits.max_image_side;
        if w.max(h) > max_side {
            return Err(StageError::fatal(format!(
                "{} is {w}x{h}; the largest side allowed is {max_side} (limits.max_image_side)",
                input.label
            )));
        }
        let upscaler = Upscaler::load(run.engine, run.device, &model_file(run.config, model_name))?;
        run.sink.log("info", &format!("upscaling {w}x{h} ×{} with {model_name}", upscaler.scale()));
        let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, pr.message.as_deref());
        match visual {
            Visual::Image(img) => {
                let out = upscaler.upscale_image(&img, opts, run.cancel, &progress)?;
                let mut png = Vec::new();
                out.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(|e| StageError::context("cannot encode PNG", e))?;
                run.sink.put_artifact("upscaled.png", "image/png", &png)?;
            }
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
