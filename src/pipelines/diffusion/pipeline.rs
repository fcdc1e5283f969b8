//! One generation: encode the prompts, prepare latents (noise, or a noised init image),
//! run the denoising loop with classifier-free guidance, decode with the VAE; with a mask,
//! only its part of the init image is redrawn (`inpaint`).
//!
//! The order of operations (and of random draws) follows diffusers' StableDiffusion /
//! Img2Img / XL pipelines, so a replayed `NoiseSource` reproduces their images.

use std::time::{Duration, Instant};

use image::RgbImage;
use tokio_util::sync::CancellationToken;

use super::DiffusionError;
use super::inpaint::{Keep, Mask, composite};
use super::model::SdModel;
use super::noise::{Counted, Draws, NoiseSource};
use super::predict::{LatentShape, guidance_embedding, predict};
use super::preview::latent_preview_png;
use super::samplers::{self, SamplerState, SchedulerChoice, SchedulerConfigFile, StepsMode};
use super::text::encode_schedule;
use super::vae::{decode, encode_init_image};
use crate::pipelines::{Progress, ProgressFn, check_cancel};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    /// `None` lets SDXL models use zero embeddings; others encode `""`.
    pub negative_prompt: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    /// How `steps` count in image to image: the schedule's (diffusers') or the steps run
    /// (ComfyUI's); text to image runs `steps` either way.
    pub steps_mode: StepsMode,
    /// Classifier-free guidance scale; guidance is off at ≤ 1.
    pub guidance: f32,
    pub scheduler: SchedulerChoice,
    /// Replaces the model's `scheduler_config.json` (reference tests, power users).
    pub scheduler_config: Option<SchedulerConfigFile>,
    /// Images in the batch.
    pub count: u32,
    /// Image to image: where sampling starts, noised to `strength` (none: from noise).
    pub init: Option<Init>,
    /// Largest side accepted (the daemon's `limits.max_image_side`).
    pub max_side: u32,
    /// A base → refiner split's first pass: only the schedule's steps before this index run,
    /// and the latents are handed on with their leftover noise, as k-diffusion holds them
    /// ([`samplers::to_sigma_space`]), undecoded: no pictures (none: the whole schedule).
    pub stop_at: Option<usize>,
    /// The text encoder layer, from its end, the prompts are read at (A1111's "Clip skip";
    /// [`TextEncoder::hidden_for`](super::text_encoder::TextEncoder::hidden_for)); none: the model's own.
    pub clip_skip: Option<u32>,
    /// A hires fix's second pass: the first pass's steps, which A1111's prompt editing counts
    /// a whole `when` on from (`sample_as: a1111`); none for every other run.
    pub first_pass_steps: Option<u32>,
    /// The textual-inversion embeddings installed, which its prompts may name; those the
    /// model's text encoders take are used.
    pub embeddings: Vec<std::sync::Arc<super::embedding::Embedding>>,
}

/// What image to image starts from: a picture, VAE-encoded, or latents as they are.
#[derive(Debug, Clone)]
pub enum Init {
    Picture(InitImage),
    Latents(InitLatents),
}

impl Init {
    /// How much of the schedule to run (1 = ignore the start's content).
    pub fn strength(&self) -> f64 {
        match self {
            Init::Picture(p) => p.strength,
            Init::Latents(l) => l.strength,
        }
    }
}

/// Clean latents to start from (a hires fix from the first pass's latent, scaled), at the
/// output size, as sampling holds them: the VAE's latents times its scaling factor.
#[derive(Debug, Clone)]
pub struct InitLatents {
    /// `[C, height / f, width / f]`, for every image of the batch alike.
    pub latents: Vec<f32>,
    pub strength: f64,
    /// They already hold the noise of the step the run starts at (a split's leftover noise,
    /// x₀ + σ·ε): none is added (ComfyUI's `add_noise: disable`), and the run goes on from them.
    pub noised: bool,
    /// The run goes on from where another run of the same sampler and schedule stopped
    /// ([`Generated::carried`], one picture's, for each of the batch alike): `latents` are that run's, as its
    /// sampler held them, its state is taken up, no noise is drawn for the start, and the
    /// noise given draws on from where that run's stood (A1111's refiner: one sampler run).
    pub resume: Option<SamplerState>,
}

/// An img2img starting picture, already at the output size, NCHW-ready in [−1, 1].
#[derive(Debug, Clone)]
pub struct InitImage {
    /// `[3, height, width]`, values in [−1, 1].
    pub pixels: Vec<f32>,
    pub width: u32,
    pub height: u32,
    /// How much of the schedule to run (1 = ignore the picture's content).
    pub strength: f64,
    /// Inpainting: only this part of the picture is redrawn (none: all of it).
    pub mask: Option<Mask>,
}

impl InitImage {
    /// Prepares `img` for a `width`×`height` run, resizing (Lanczos, like diffusers'
    /// image processor) when the sizes differ.
    pub fn from_rgb(img: &RgbImage, width: u32, height: u32, strength: f64) -> Self {
        let resized;
        let img = if img.dimensions() == (width, height) {
            img
        } else {
            resized = image::imageops::resize(img, width, height, image::imageops::FilterType::Lanczos3);
            &resized
        };
        let plane = (width * height) as usize;
        let mut pixels = vec![0f32; 3 * plane];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                pixels[c * plane + i] = (f32::from(p[c]) / 255.0) * 2.0 - 1.0;
            }
        }
        Self { pixels, width, height, strength, mask: None }
    }

    /// The same start with only `mask`'s part of it redrawn.
    pub fn with_mask(self, mask: Mask) -> Self {
        Self { mask: Some(mask), ..self }
    }
}

/// A cheap look at an unfinished image.
#[derive(Debug, Clone)]
pub struct Preview {
    pub step: u64,
    pub total: u64,
    /// PNG bytes at latent resolution.
    pub png: Vec<u8>,
}

/// Callbacks and controls of a run.
#[derive(Default, Clone, Copy)]
pub struct Hooks<'a> {
    pub progress: Option<ProgressFn<'a>>,
    pub preview: Option<&'a (dyn Fn(Preview) + Send + Sync)>,
    /// Preview after every this many steps (0 = never).
    pub preview_every: u32,
    pub cancel: Option<&'a CancellationToken>,
}

/// A decoded image: `[3, height, width]` floats in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl DecodedImage {
    /// 8-bit RGB, rounding as diffusers' `numpy_to_pil` does.
    pub fn to_rgb8(&self) -> RgbImage {
        let plane = (self.width * self.height) as usize;
        RgbImage::from_fn(self.width, self.height, |x, y| {
            let i = (y * self.width + x) as usize;
            let px = |c: usize| (self.data[c * plane + i] * 255.0).round().clamp(0.0, 255.0) as u8;
            image::Rgb([px(0), px(1), px(2)])
        })
    }
}

/// Where a run's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Wall time of the whole `generate` call.
    pub total: Duration,
    /// Time inside ONNX Runtime `run` calls, all parts.
    pub onnx: Duration,
    /// UNet runs made.
    pub unet_runs: u32,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Generated {
    pub images: Vec<DecodedImage>,
    /// Latents after the last step, `[count, C, h, w]`.
    pub final_latents: Vec<f32>,
    /// Things the caller should tell the user (prompt truncation).
    pub warnings: Vec<String>,
    /// The textual-inversion embeddings its prompts named, by name.
    pub embeddings: Vec<String>,
    pub timings: Timings,
    /// Timesteps actually run.
    pub timesteps: Vec<f64>,
    /// A run stopped before the end (`stop_at`): what another run needs to go on with it.
    pub carried: Option<Carried>,
}

/// Where a run stopped, for another to go on from as the one run ([`InitLatents::resume`]).
#[derive(Debug, Clone)]
pub struct Carried {
    /// The latents as the sampler holds them, `[count, C, h, w]` (for the DDPM family not
    /// those of [`samplers::to_sigma_space`], whose round trip is not exact).
    pub latents: Vec<f32>,
    pub sampler: SamplerState,
    /// The draws made from its noise, the whole batch's.
    pub draws: Draws,
}

/// Runs one request. `initial_latents` (`[count, C, h, w]`, unscaled N(0,1)) replaces the
/// first noise draw of text-to-image runs, as diffusers' `latents=` argument does.
pub fn generate(
    model: &SdModel,
    req: &GenerateRequest,
    noise: &mut dyn NoiseSource,
    initial_latents: Option<&[f32]>,
    hooks: &Hooks,
) -> Result<Generated, DiffusionError> {
    let started = Instant::now();
    let mut onnx = Duration::ZERO;
    let mut noise = Counted::new(noise);
    let noise = &mut noise;
    model.check_size(req.width, req.height, req.max_side)?;
    if req.steps == 0 {
        return Err(DiffusionError::Request { field: "steps", message: "must be at least 1".into() });
    }
    if req.count == 0 {
        return Err(DiffusionError::Request { field: "n", message: "must be at least 1".into() });
    }
    if !req.guidance.is_finite() || req.guidance < 0.0 {
        return Err(DiffusionError::Request { field: "guidance", message: "must be a number ≥ 0".into() });
    }
    let steps = req.steps as usize;
    let n = req.count as usize;
    let strength = req.init.as_ref().map_or(1.0, Init::strength);
    let sched_file = req.scheduler_config.as_ref().unwrap_or(&model.info.scheduler_config);
    let (mut scheduler, span) = samplers::build_span(req.scheduler, sched_file, steps, strength, req.steps_mode)
        .map_err(|e| match e {
            samplers::SchedulerError::Steps(m) => DiffusionError::Request { field: "steps", message: m },
            other => other.into(),
        })?;
    let all_timesteps = scheduler.timesteps().to_vec();

    // LCM-distilled UNets take guidance as an embedding and run without a CFG batch.
    let unet = &model.unet;
    let cfg = req.guidance > 1.0 && unet.timestep_cond.is_none();
    let mut warnings = Vec::new();
    let conds = encode_schedule(model, req, (cfg, n), &mut warnings, &mut onnx)?;
    // A1111's step counter for its prompt editing counts the model's calls of this run from
    // 0, one a step; where a split's second pass goes on with the first's run, on from it.
    let continued = matches!(req.init, Some(Init::Latents(InitLatents { noised: true, .. })));

    let f = model.info.vae_scale as usize;
    let (lh, lw, ch) = (req.height as usize / f, req.width as usize / f, unet.latent_channels);
    let per = ch * lh * lw;
    let mut latents = vec![0f32; n * per];
    let mut keep = None;
    let start = match &req.init {
        None => {
            match initial_latents {
                Some(given) if given.len() == latents.len() => latents.copy_from_slice(given),
                Some(given) => {
                    return Err(DiffusionError::Request {
                        field: "latents",
                        message: format!(
                            "expected {} values ([{n}, {ch}, {lh}, {lw}]), got {}",
                            latents.len(),
                            given.len()
                        ),
                    });
                }
                None => noise.fill(&mut latents)?,
            }
            let sigma = scheduler.init_noise_sigma();
            latents.iter_mut().for_each(|v| *v *= sigma);
            0
        }
        Some(init) => {
            let clean = match init {
                Init::Picture(picture) => {
                    encode_init_image(model, picture, (n, per), req.scheduler.encodes_to_mean(), noise, &mut onnx)?
                }
                Init::Latents(given) if given.latents.len() == per => given.latents.repeat(n),
                Init::Latents(given) => {
                    return Err(DiffusionError::Request {
                        field: "latents",
                        message: format!(
                            "expected {per} values ([{ch}, {lh}, {lw}]) to start from, got {}",
                            given.latents.len()
                        ),
                    });
                }
            };
            // At least one step runs, however small the strength.
            let start = span.start.min(all_timesteps.len() - 1);
            if let Init::Latents(InitLatents { resume: Some(state), .. }) = init {
                // Another run's latents and sampler as it stopped: nothing drawn, nothing added.
                let state = state.repeated(n);
                if let Some(other) = state.latents.iter().flatten().find(|l| l.len() != latents.len()) {
                    return Err(DiffusionError::Request {
                        field: "latents",
                        message: format!(
                            "a sampler state of {} values goes on a run of {}",
                            other.len(),
                            latents.len()
                        ),
                    });
                }
                scheduler.resume(state)?;
                latents.copy_from_slice(&clean);
                start
            } else {
                let mut eps = vec![0f32; latents.len()];
                // Drawn even when none is added, so a sampler's step noise comes where it would
                // (ComfyUI's second sampler draws its steps' noise from its own generator).
                noise.fill(&mut eps)?;
                if matches!(init, Init::Latents(InitLatents { noised: true, .. })) {
                    // No noise: the leftover latents in the scheduler's own form at `start`.
                    eps.fill(0.0);
                }
                scheduler.add_noise(start, &clean, &eps, &mut latents);
                if let Init::Picture(InitImage { mask: Some(mask), .. }) = init {
                    keep = Some(Keep::new(mask, (req.width, req.height, f), clean, eps)?);
                }
                start
            }
        }
    };

    let end = match req.stop_at {
        None => all_timesteps.len(),
        Some(stop) if stop > start && stop < all_timesteps.len() => stop,
        Some(stop) => {
            return Err(DiffusionError::Request {
                field: "stop_at",
                message: format!("a run from step {start} of {} cannot stop at step {stop}", all_timesteps.len()),
            });
        }
    };
    let total = (end - start) as u64;
    let batch = if cfg { 2 * n } else { n };
    let chunk = model.unet_batch.min(batch).max(1);
    let mut model_in = vec![0f32; batch * per];
    let mut eps = vec![0f32; n * per];
    let mut denoised = vec![0f32; n * per];
    let mut unet_runs = 0u32;
    let guidance_cond = unet
        .timestep_cond
        .as_ref()
        .map(|info| guidance_embedding(req.guidance - 1.0, info.fixed(1).unwrap_or(256), batch));
    for (k, i) in (start..end).enumerate() {
        if let Some(token) = hooks.cancel {
            check_cancel(token)?;
        }
        let t = all_timesteps[i];
        scheduler.scale_model_input(i, &latents, &mut model_in[..n * per]);
        if cfg {
            model_in.copy_within(..n * per, n * per);
        }
        let shape = LatentShape { batch, chunk, per, ch, lh, lw };
        let cond = conds.at(u32::try_from(if continued { i } else { k }).unwrap_or(u32::MAX));
        let out_all = predict(unet, cond, guidance_cond.as_ref(), &model_in, t, shape, hooks.cancel, &mut onnx)?;
        unet_runs += batch.div_ceil(chunk) as u32;
        if cfg {
            let g = req.guidance;
            let (uncond, text) = out_all.split_at(n * per);
            for ((e, &u), &c) in eps.iter_mut().zip(uncond).zip(text) {
                *e = u + g * (c - u);
            }
        } else {
            eps.copy_from_slice(&out_all);
        }
        let want_preview = hooks.preview.is_some()
            && hooks.preview_every > 0
            && (k as u64 + 1) % u64::from(hooks.preview_every) == 0
            && (k as u64 + 1) < total;
        scheduler.step(i, &eps, &mut latents, noise, want_preview.then_some(&mut denoised[..]))?;
        if let Some(keep) = keep.as_mut() {
            keep.after_step(scheduler.as_ref(), i + 1, &mut latents);
        }
        if let Some(progress) = hooks.progress {
            progress(Progress { step: k as u64 + 1, total, message: Some(format!("denoising, t = {t:.0}")) });
        }
        if want_preview && let Some(preview) = hooks.preview {
            let png = latent_preview_png(&denoised[..per], ch, lh, lw, model.info.family);
            preview(Preview { step: k as u64 + 1, total, png });
        }
    }
    if let Some(token) = hooks.cancel {
        check_cancel(token)?;
    }
    if end < all_timesteps.len() {
        // A split's first pass: its leftover noise goes on to another run, not to the VAE.
        let carried = Carried { latents: latents.clone(), sampler: scheduler.state(), draws: noise.draws.clone() };
        samplers::to_sigma_space(scheduler.as_ref(), end, &mut latents);
        return Ok(Generated {
            images: Vec::new(),
            final_latents: latents,
            warnings,
            embeddings: conds.embeddings(),
            timings: Timings { total: started.elapsed(), onnx, unet_runs },
            timesteps: all_timesteps[start..end].to_vec(),
            carried: Some(carried),
        });
    }

    let mut images = decode(model, &latents, n, per, (ch, lh, lw), &mut onnx)?;
    if let Some(Init::Picture(picture)) = &req.init {
        composite(&mut images, picture);
    }
    Ok(Generated {
        images,
        final_latents: latents,
        warnings,
        embeddings: conds.embeddings(),
        timings: Timings { total: started.elapsed(), onnx, unet_runs },
        timesteps: all_timesteps[start..].to_vec(),
        carried: None,
    })
}
