//! `image`: text-to-image and image-to-image with a Stable Diffusion model. Parameters
//! ([`ImageRequest`] → [`ImageParams`], in `params`) fill every default so a stored job
//! renders the same pixels after a restart; the `generate` stage writes PNGs with
//! A1111-style parameters and previews as they come, and with an `upscale_model` the
//! `upscale` stage upscales each picture (ComfyUI's ImageUpscaleWithModel after VAEDecode),
//! and with a `resize` the `resize` stage resizes the pictures of the stage before it without
//! a model (ComfyUI's ImageScale and its kin); with a `refine` the `refine` stage, right after
//! `generate`, scales each picture and samples it again (the hires fix, `refine`), or goes on
//! from the first pass's leftover noise (a base → refiner split, `split`), or with its sampler
//! run (`carry`); with a
//! `mask` only its part of `init_image` is redrawn (inpainting, `mask`); `weights` is what
//! each stage's share of the job's time is; `local` renders without a daemon.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::inputs::{Takes, require_input};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::kinds::StageName;
use crate::models::convert::fused::Checkpoint;
use crate::models::{Catalog, ModelKind};
use crate::pipelines::ProgressFn;
use crate::pipelines::diffusion::output::{ImageParameters, ModelHashes, encode_png};
use crate::pipelines::diffusion::{
    Carried, DiffusionError, GenerateRequest, Hooks, Init, InitImage, InitLatents, Mask, Preview, SdModel, Timings,
    generate,
};
use crate::pipelines::upscale::TileOptions;

mod carry;
mod defaults;
pub mod embeddings;
mod hires_text;
mod latent;
mod local;
mod mask;
mod params;
mod refine;
mod refine_stage;
mod sampling;
mod split;
mod weights;

pub use defaults::{DrawingDefaults, drawing_defaults};
pub use local::{LocalImageArgs, LocalImageError, LocalImageReport, render_local};
pub use params::{
    ImageParams, ImageRequest, MAX_CLIP_SKIP, MAX_IMAGES, MAX_MASK_GROW, MAX_SEED, diffusion_model, validate_params,
    wire_int,
};
pub use refine::{PassSize, Refine, RefineFrom, RefineRequest};
pub use sampling::NO_SCHEDULE;
pub use split::{Continue, Switch};
pub(crate) use weights::upscale_kind_weights;

/// The `image` job kind. Models are opened per render: the engine's session cache keeps
/// the sessions warm and decides when they unload, so nothing here pins them.
#[derive(Debug, Default)]
pub struct Image;

/// Where a picture's sampling starts when not from noise: image to image.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// A picture, encoded by the model's VAE.
    Picture(&'a image::RgbImage),
    /// A picture of which only the part its mask picture says is redrawn (inpainting).
    Inpaint(&'a image::RgbImage, &'a image::DynamicImage),
    /// A latent at the picture's size, `[C, height / f, width / f]`, as ComfyUI's LATENT holds
    /// it (before the VAE's scaling factor), as [`Rendered::latents`] gives it.
    Latent(&'a [f32]),
    /// A split's leftover noise, as [`Rendered::leftover`] gives it: gone on from as it is.
    Leftover(&'a [f32]),
    /// A split's first pass's sampler run, one picture's: gone on with as the one run.
    Continued(&'a carry::Carry),
}

/// A picture's latent as ComfyUI's LATENT holds it: the sampler's, divided by the VAE's
/// scaling factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Latent {
    /// Channels, height and width in cells (`height / f`, `width / f` of the picture).
    pub shape: [usize; 3],
    pub values: Vec<f32>,
}

/// A finished render: PNGs with their parameters text, and what to tell the user.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `(file name, PNG bytes)` per image.
    pub images: Vec<(String, Vec<u8>)>,
    /// The pictures' final latents before they were decoded, as sampling holds them (times
    /// the VAE's scaling factor), one after another: read as ComfyUI's with [`Rendered::latents`]
    /// only when a second pass from the latent asks, so no other render copies them.
    final_latents: Vec<f32>,
    /// Channels, height and width in cells of each picture's latent.
    latent_shape: [usize; 3],
    /// The model's VAE scaling factor.
    vae_scaling_factor: f32,
    pub warnings: Vec<String>,
    pub timings: Timings,
    /// A split's first pass: where its sampler run stopped, the whole batch's.
    carried: Option<Carried>,
}

impl Rendered {
    /// Each picture's final latent as ComfyUI's LATENT holds it: the sampler's divided by
    /// the VAE's scaling factor.
    pub fn latents(&self) -> impl Iterator<Item = Latent> + '_ {
        let [c, h, w] = self.latent_shape;
        let sf = self.vae_scaling_factor;
        self.final_latents
            .chunks((c * h * w).max(1))
            .map(move |l| Latent { shape: self.latent_shape, values: l.iter().map(|v| v / sf).collect() })
    }

    /// Each picture's leftover noise after a split's first pass, as the sampler holds it
    /// (x₀ + σ·ε, times the VAE's scaling factor): handed on bit for bit, so a split of one
    /// model on a sampler with no noise and no history draws its one run's pixels exactly.
    pub fn leftover(&self) -> impl Iterator<Item = Latent> + '_ {
        let [c, h, w] = self.latent_shape;
        self.final_latents.chunks((c * h * w).max(1)).map(|l| Latent { shape: self.latent_shape, values: l.to_vec() })
    }
}

impl Image {
    /// Opens model `name` on `device` (sessions come from the engine's cache).
    pub fn model(
        &self,
        config: &Config,
        engine: &Engine,
        device: DeviceId,
        name: &str,
    ) -> Result<SdModel, DiffusionError> {
        let dir = Catalog::installed_dir_of(config, ModelKind::Diffusion, name).ok_or_else(|| {
            // Checked at submission: gone since (`reelbox rm`), so say how to get it back.
            let message = match super::inputs::require_installed("model", ModelKind::Diffusion, name, config) {
                Err(e) => e.message,
                Ok(()) => format!("diffusion model {name:?} is not installed"),
            };
            DiffusionError::Request { field: "model", message }
        })?;
        SdModel::load(&dir, engine, device)
    }

    /// Renders validated `params` (init picture already decoded) to PNG bytes, whose parameters
    /// text says `described_as` where given (a second pass's: the first pass's, with its hires
    /// keys), else `params`.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &self,
        config: &Config,
        engine: &Engine,
        device: DeviceId,
        params: &ImageParams,
        described_as: Option<&ImageParameters<'_>>,
        init: Option<Start<'_>>,
        progress: Option<ProgressFn<'_>>,
        preview: Option<&(dyn Fn(Preview) + Send + Sync)>,
        cancel: Option<&CancellationToken>,
    ) -> Result<Rendered, DiffusionError> {
        let model = self.model(config, engine, device, &params.model)?;
        // The hashes of the model the pictures' text names as A1111's `Model` (a second pass's
        // text names the first pass's; its own model is its `Hires checkpoint`).
        let hashes = model_hashes(config, described_as.map_or(params.model.as_str(), |d| d.model));
        let refiner = described_as.and_then(|d| d.refiner).and_then(|r| model_hashes(config, r.model).model);
        let choice = sampling::sampler_choice(params)?;
        let req = GenerateRequest {
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            width: params.width,
            height: params.height,
            steps: params.steps,
            steps_mode: params.steps_mode,
            guidance: params.guidance,
            scheduler: choice,
            scheduler_config: None,
            count: params.n,
            init: init.map(|start| {
                let strength = params.strength.unwrap_or(0.75);
                match start {
                    Start::Picture(img) => {
                        Init::Picture(InitImage::from_rgb(img, params.width, params.height, strength))
                    }
                    Start::Inpaint(img, mask) => Init::Picture(
                        InitImage::from_rgb(img, params.width, params.height, strength)
                            .with_mask(Mask::from_picture(mask, params.width, params.height).grown(params.mask_grow)),
                    ),
                    // Sampling holds latents times the scaling factor; ComfyUI's LATENT without.
                    Start::Latent(latent) => Init::Latents(InitLatents {
                        latents: latent.iter().map(|v| v * model.info.vae_scaling_factor).collect(),
                        strength,
                        noised: false,
                        resume: None,
                    }),
                    Start::Leftover(latent) => {
                        Init::Latents(InitLatents { latents: latent.to_vec(), strength, noised: true, resume: None })
                    }
                    Start::Continued(carry) => Init::Latents(InitLatents {
                        latents: carry.latents.clone(),
                        strength,
                        noised: true,
                        resume: Some(carry.sampler()),
                    }),
                }
            }),
            max_side: config.limits.max_image_side,
            stop_at: params.refine.as_ref().and_then(|r| r.switch).map(|s| s.step as usize),
            clip_skip: params.clip_skip,
            // A hires fix's second pass: its text describes the first pass, whose steps A1111's
            // prompt editing counts on from.
            first_pass_steps: described_as.filter(|d| d.hires.is_some()).map(|d| d.steps),
            embeddings: embeddings::installed(config).0.clone(),
        };
        let seeds: Vec<u64> = (0..u64::from(params.n)).map(|i| params.seed.wrapping_add(i)).collect();
        let mut noise = match init {
            // The first pass's noise, drawn on from where its run stopped.
            Some(Start::Continued(carry)) => carry.noise()?,
            _ => params.noise.source(&seeds),
        };
        let hooks = Hooks { progress, preview, preview_every: params.preview_every, cancel };
        let out = generate(&model, &req, noise.as_mut(), None, &hooks)?;
        let hashes = ModelHashes { embeddings: embeddings::hashes_of(config, &out.embeddings), ..hashes };
        let mut images = Vec::with_capacity(out.images.len());
        for (i, img) in out.images.iter().enumerate() {
            let own = || params.text_of(i);
            let mut text = ImageParameters { hashes: Some(&hashes), ..described_as.cloned().unwrap_or_else(own) };
            if let Some(r) = text.refiner.as_mut() {
                r.hash = refiner.as_deref();
            }
            let text = text.to_text();
            let name = picture_name("image", i, params.n);
            images.push((name, encode_png(&img.to_rgb8(), Some(&text))?));
        }
        tracing::info!(
            model = %params.model,
            steps = params.steps,
            total_ms = out.timings.total.as_millis() as u64,
            onnx_ms = out.timings.onnx.as_millis() as u64,
            "image rendered"
        );
        let f = model.info.vae_scale.max(1) as usize;
        let (h, w) = (params.height as usize / f, params.width as usize / f);
        // Per picture of the batch (a split's first pass has no pictures to count by).
        let per = out.final_latents.len() / (params.n as usize).max(1);
        Ok(Rendered {
            images,
            final_latents: out.final_latents,
            latent_shape: [per / (h * w).max(1), h, w],
            vae_scaling_factor: model.info.vae_scaling_factor,
            warnings: out.warnings,
            timings: out.timings,
            carried: out.carried,
        })
    }
}

/// The A1111 hashes of installed diffusion model `name` as its import recorded them, which
/// its pictures' parameters text writes; none for a model whose import kept none.
fn model_hashes(config: &Config, name: &str) -> ModelHashes {
    let Some(dir) = Catalog::installed_dir_of(config, ModelKind::Diffusion, name) else {
        return ModelHashes::default();
    };
    let checkpoint = Checkpoint::read(name, &dir, None);
    ModelHashes {
        model: checkpoint.shorthash().map(str::to_string),
        loras: checkpoint.lora_hashes(),
        embeddings: Vec::new(),
    }
}

impl TypedKind for Image {
    type Params = ImageParams;
    const NAME: &'static str = "image";
    const FIRST_STAGE: StageName = StageName::Generate;

    /// The larger of its stages' (they run one at a time; a second pass samples one picture
    /// at a time, on its own model).
    fn vram_mib(&self, p: &ImageParams, config: &Config) -> u64 {
        let upscale = p.upscale_model.as_ref().map_or(0, |m| super::memory::single_model_mib(config, m));
        let refine = p.refine.as_ref().map_or(0, |r| {
            let (w, h) = r.expected_size(p);
            super::memory::diffusion_mib(config, r.model_of(p), w, h, 1)
        });
        super::memory::diffusion_mib(config, &p.model, p.width, p.height, p.n).max(upscale).max(refine)
    }

    /// The first pass's pictures, or the second pass's on its model when it has one (the
    /// larger, made one at a time; after an upscale model, as large as a 4× one makes it, and
    /// checked again in the stage once its size is known).
    fn cpu_picture(&self, p: &ImageParams, _config: &Config) -> Option<super::memory::CpuPicture> {
        let (model, width, height, fields, stage) = match &p.refine {
            Some(r) => {
                let (w, h) = r.expected_size(p);
                (r.model_of(p), w, h, ("refine", "refine"), StageName::Refine)
            }
            None => (p.model.as_str(), p.width, p.height, ("width", "height"), StageName::Generate),
        };
        Some(super::memory::CpuPicture { model: model.to_string(), width, height, fields, stage })
    }

    fn gpu_seconds_estimate(&self, p: &ImageParams) -> f64 {
        let refine = p.refine.as_ref().map_or(0.0, |r| f64::from(r.steps_run(p)) * r.pixel_ratio(p));
        (f64::from(p.steps_run()) + refine) * f64::from(p.n.max(1)) * super::IMAGE_GPU_SECONDS_PER_STEP
    }

    /// Every model its stages load: a box that runs it must have them all (a second pass's
    /// own diffusion model and upscale model included).
    fn models(&self, p: &ImageParams) -> Vec<String> {
        let refine = p.refine.as_ref().map_or([None, None], |r| [r.model.as_ref(), r.upscale_model.as_ref()]);
        std::iter::once(&p.model).chain(refine.into_iter().flatten()).chain(&p.upscale_model).cloned().collect()
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<ImageParams, ParamError> {
        let p = validate_params(params, ctx.config)?;
        if let Some(init) = &p.init_image {
            let picture = require_input(ctx, "init_image", init, Takes::Picture)?;
            if let Some(id) = &p.mask {
                mask::require_mask(ctx, &picture, id)?;
            }
        }
        Ok(p)
    }

    fn stages(&self, p: &ImageParams) -> Vec<StageName> {
        let refine = p.refine.as_ref().map(|_| StageName::Refine);
        let upscale = p.upscale_model.as_ref().map(|_| StageName::Upscale);
        let resize = p.resize.as_ref().map(|_| StageName::Resize);
        std::iter::once(StageName::Generate).chain(refine).chain(upscale).chain(resize).collect()
    }

    fn run_stage(&self, stage: StageName, params: &ImageParams, run: &StageRun) -> Result<(), StageError> {
        match (stage, &params.refine, &params.upscale_model, &params.resize) {
            (StageName::Generate, ..) => self.generate(params, run),
            (StageName::Refine, Some(refine), ..) => refine_stage::refine_pictures(self, params, refine, run),
            (StageName::Upscale, _, Some(model), _) => {
                let (from, prefix) = pictures_before(params, StageName::Upscale);
                upscale_pictures(run, model, from, prefix)
            }
            (StageName::Resize, .., Some(resize)) => {
                let (from, prefix) = pictures_before(params, StageName::Resize);
                super::resize::resize_pictures(run, resize, from, prefix)
            }
            _ => Err(StageError::fatal(format!("image has no stage {stage:?}"))),
        }
    }

    /// A generate's steps over its pixels against an upscale's and a resize's (`weights`).
    fn stage_weights(&self, p: &ImageParams, stages: &[StageName]) -> Vec<f64> {
        weights::stage_weights(p, stages)
    }
}

/// The pictures' names: `image.png`, or `image-N.png` for one of several (previews are
/// `preview-NNNN.png`).
fn picture_name(stem: &str, i: usize, n: u32) -> String {
    if n == 1 { format!("{stem}.png") } else { format!("{stem}-{}.png", i + 1) }
}

/// The stage whose pictures `stage` takes, and their names' prefix: the last made before it
/// (an upscale's, else a second pass's, else the first pass's).
fn pictures_before(p: &ImageParams, stage: StageName) -> (StageName, &'static str) {
    if stage == StageName::Resize && p.upscale_model.is_some() {
        (StageName::Upscale, "upscaled")
    } else if p.refine.is_some() {
        (StageName::Refine, "refined")
    } else {
        (StageName::Generate, "image")
    }
}

/// The `upscale` stage: each picture of stage `from` (named `prefix`, `prefix-N`) upscaled
/// with `model` (as `upscaled.png`, `upscaled-N.png`), held to the `upscale` kind's limit on
/// what it takes.
fn upscale_pictures(run: &StageRun, model: &str, from: StageName, prefix: &str) -> Result<(), StageError> {
    let pictures: Vec<_> = run.sink.stage_artifacts(from).into_iter().filter(|a| a.name.starts_with(prefix)).collect();
    let upscaler = super::upscale::load(run, "upscale_model", model)?;
    run.sink.log("info", &format!("upscaling {} picture(s) ×{} with {model}", pictures.len(), upscaler.scale()));
    for picture in &pictures {
        let label = format!("picture {}", picture.name);
        let img = crate::media::picture::open(&run.sink.artifact_path(picture))
            .map_err(|e| StageError::context(format!("{label} is not a readable image"), e))?;
        if let Some(why) = super::upscale::too_large(&label, img.width(), img.height(), run.config) {
            return Err(StageError::fatal(why));
        }
        let name = picture.name.replacen(prefix, "upscaled", 1);
        super::upscale::store_upscaled(run, &upscaler, &img, TileOptions::default(), &name)?;
    }
    Ok(())
}

impl Image {
    /// The `generate` stage: the pictures, with previews as they come.
    /// Samples `params` in stage `run` (from `init` for image to image), each step preview
    /// stored under the name `preview_name` gives it and the pipeline's warnings said in the
    /// job's log: the first pass's and the second's alike.
    fn sample(
        &self,
        run: &StageRun,
        params: &ImageParams,
        described_as: Option<&ImageParameters<'_>>,
        init: Option<Start<'_>>,
        progress: ProgressFn<'_>,
        preview_name: &(dyn Fn(&Preview) -> String + Send + Sync),
    ) -> Result<Rendered, StageError> {
        let sink = run.sink;
        let preview = |p: Preview| {
            if !p.png.is_empty()
                && let Err(e) = sink.put_artifact(&preview_name(&p), "image/png", &p.png)
            {
                tracing::warn!("cannot store preview: {e}");
            }
        };
        let rendered = self.render(
            run.config,
            run.engine,
            run.device,
            params,
            described_as,
            init,
            Some(progress),
            Some(&preview),
            Some(run.cancel),
        )?;
        for w in &rendered.warnings {
            sink.log("warn", w);
        }
        Ok(rendered)
    }

    fn generate(&self, params: &ImageParams, run: &StageRun) -> Result<(), StageError> {
        // Looked up as every kind's input artifact is (`kinds::inputs::input_file`), as the mask.
        let init = match &params.init_image {
            Some(id) => {
                let file = crate::kinds::inputs::input_file(run, "init_image", id)?;
                let img = crate::media::picture::open(&file.path)
                    .map_err(|e| StageError::context(format!("{} is not a readable image", file.label), e))?;
                Some(img)
            }
            None => None,
        };
        let mask = params.mask.as_deref().map(|id| mask::open(run, id)).transpose()?;
        let start = match (&init, &mask) {
            (Some(img), Some(mask)) => Some(Start::Inpaint(img, mask)),
            (img, _) => img.as_ref().map(Start::Picture),
        };
        let sink = run.sink;
        let progress = |p: crate::pipelines::Progress| sink.progress(p.step, p.total, p.message.as_deref());
        let rendered = self.sample(run, params, None, start, &progress, &|p| format!("preview-{:04}.png", p.step))?;
        for (name, png) in &rendered.images {
            sink.put_artifact(name, "image/png", png)?;
        }
        // A second pass from the latent starts where this one ended, in a later stage; a split's
        // from its leftover noise, this pass having made no picture.
        match &params.refine {
            Some(Refine { switch: Some(switch), .. }) => {
                latent::store_latents(run, params, rendered.leftover(), "leftover")?;
                carry::store(run, params, *switch, &rendered)?;
            }
            Some(r) if r.from == RefineFrom::Latent => {
                latent::store_latents(run, params, rendered.latents(), "latent")?
            }
            _ => {}
        }
        sink.log(
            "info",
            &json!({
                "total_ms": rendered.timings.total.as_millis() as u64,
                "onnx_ms": rendered.timings.onnx.as_millis() as u64,
                "unet_runs": rendered.timings.unet_runs,
            })
            .to_string(),
        );
        Ok(())
    }
}
