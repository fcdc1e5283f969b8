//! The `refine` stage from the first pass's pictures (A1111's hires fix, ComfyUI's pixel
//! form): each picture upscaled by the second pass's model, if any, scaled, its middle cut to
//! the pass size and sampled again ([`sample_again`], which the latent form, `latent`, shares).
//! What it samples with is [`Refine`]'s, checked at submission (`refine`): its own model's
//! text encoder, UNet and VAE where it names one (`refine.model`), loaded through the engine
//! as the first pass's model is, else the first pass's.

use image::RgbImage;

use super::refine::{PassSize, Refine, RefineFrom, pass_size};
use super::{Image, ImageParams, Start};
use crate::config::Config;
use crate::kinds::memory::{CpuPicture, check_on_cpu};
use crate::kinds::{StageError, StageName, StageRun};
use crate::pipelines::diffusion::Preview;
use crate::pipelines::upscale::TileOptions;

impl Refine {
    /// First-pass picture `img` (upscaled) as the second pass starts from it: resized, then
    /// its middle cut to `size` (ComfyUI's VAEEncode crop to whole latents).
    fn start_from(&self, img: &RgbImage, size: PassSize, label: &str, config: &Config) -> Result<RgbImage, StageError> {
        let PassSize { width, height } = size;
        let scaled = match &self.resize {
            Some(r) => r.apply(img, label, config)?,
            None => img.clone(),
        };
        let (w, h) = scaled.dimensions();
        if (w, h) == (width, height) {
            return Ok(scaled);
        }
        if w < width || h < height {
            return Err(StageError::fatal(format!(
                "{label} scaled to {w}x{h} is smaller than the {width}x{height} its second pass samples"
            )));
        }
        let (x, y) = ((w - width) / 2, (h - height) / 2);
        Ok(image::imageops::crop_imm(&scaled, x, y, width, height).to_image())
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
    if refine.from == RefineFrom::Latent {
        return super::latent::refine_latents(kind, first, refine, run);
    }
    let pictures: Vec<_> =
        run.sink.stage_artifacts(StageName::Generate).into_iter().filter(|a| a.name.starts_with("image")).collect();
    if pictures.is_empty() {
        return Err(StageError::fatal("the generate stage left no picture to refine"));
    }
    let count = pictures.len() as u64;
    let sink = run.sink;
    let upscaler = match &refine.upscale_model {
        Some(m) => Some(crate::kinds::upscale::load(run, "refine.upscale_model", m)?),
        None => None,
    };
    // After an upscale model the size is known only now: the size rules of the model it
    // samples with decide it.
    let model = refine.model_of(first);
    let info = match refine.size {
        Some(_) => None,
        None => Some(kind.model(run.config, run.engine, run.device, model)?.info.clone()),
    };
    run.sink.log(
        "info",
        &format!(
            "refining {count} picture(s) with {model} at strength {}, {} steps",
            refine.strength,
            refine.steps_run(first)
        ),
    );
    for (i, picture) in pictures.iter().enumerate() {
        let label = format!("picture {}", picture.name);
        let img = crate::media::picture::open(&run.sink.artifact_path(picture))
            .map_err(|e| StageError::context(format!("{label} is not a readable image"), e))?;
        let img = match &upscaler {
            None => img,
            Some(upscaler) => {
                let (w, h) = img.dimensions();
                if let Some(why) = crate::kinds::upscale::too_large(&label, w, h, run.config) {
                    return Err(StageError::fatal(why));
                }
                upscaler.upscale_image(&img, TileOptions::default(), run.cancel, &|_| {})?
            }
        };
        let size = match (refine.size, &info) {
            (Some(size), _) => size,
            (None, Some(info)) => {
                let size = pass_size(refine.from, refine.resize.as_ref(), img.dimensions(), info, run.config)
                    .map_err(|e| StageError::fatal(format!("{}: {}", e.field, e.message)))?;
                if run.device == crate::gpu::DeviceId::Cpu {
                    let (width, height) = (size.width, size.height);
                    let fields = ("refine", "refine");
                    let picture =
                        CpuPicture { model: model.to_string(), width, height, fields, stage: StageName::Refine };
                    check_on_cpu(run.config, &picture)?;
                }
                size
            }
            (None, None) => return Err(StageError::fatal("a second pass of no known size")),
        };
        if i == 0 {
            sink.log("info", &format!("sampling each picture again at {}x{}", size.width, size.height));
        }
        let start = refine.start_from(&img, size, &label, run.config)?;
        let name = picture.name.replacen("image", "refined", 1);
        sample_again(kind, first, refine, run, (i, count, size), Start::Picture(&start), &name)?;
    }
    Ok(())
}

/// Picture `i` of `count` sampled again at `size` from `start`, stored as `name`: its steps
/// counted on across the pictures, its previews `preview-refine-NNNN.png`.
pub(super) fn sample_again(
    kind: &Image,
    first: &ImageParams,
    refine: &Refine,
    run: &StageRun,
    (i, count, size): (usize, u64, PassSize),
    start: Start<'_>,
    name: &str,
) -> Result<(), StageError> {
    let (sink, done) = (run.sink, i as u64);
    let progress = |p: crate::pipelines::Progress| {
        sink.progress(done * p.total + p.step, count * p.total, p.message.as_deref());
    };
    let preview_name = |p: &Preview| format!("preview-refine-{:04}.png", done * p.total + p.step);
    let pass = refine.pass(first, size, i);
    let described = refine.described(first, size, i);
    let rendered = kind.sample(run, &pass, Some(&described), Some(start), &progress, &preview_name)?;
    for (_, png) in &rendered.images {
        sink.put_artifact(name, "image/png", png)?;
    }
    Ok(())
}
