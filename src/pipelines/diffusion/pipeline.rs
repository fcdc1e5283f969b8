//! One generation: encode the prompts, prepare latents (noise, or a noised init image),
//! run the denoising loop with classifier-free guidance, decode with the VAE; with a mask,
//! only its part of the init image is redrawn (`inpaint`).
//!
//! The order of operations (and of random draws) follows diffusers' StableDiffusion /
//! Img2Img / XL pipelines, so a replayed `NoiseSource` reproduces their images.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio_util::sync::CancellationToken;

use super::DiffusionError;
use super::inpaint::{Keep, Mask, composite};
use super::model::{SdModel, Unet};
use super::noise::NoiseSource;
use super::onnx::{Output, float_input, timestep_input};
use super::preview::latent_preview_png;
use super::samplers::{self, SchedulerChoice, SchedulerConfigFile, StepsMode};
use super::text::{Conditioning, encode_prompts};
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
    pub timings: Timings,
    /// Timesteps actually run.
    pub timesteps: Vec<f64>,
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
    let cond = encode_prompts(model, req, cfg, n, &mut warnings, &mut onnx)?;

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
                Init::Picture(picture) => encode_init_image(model, picture, n, per, noise, &mut onnx)?,
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
            let mut eps = vec![0f32; latents.len()];
            noise.fill(&mut eps)?;
            scheduler.add_noise(start, &clean, &eps, &mut latents);
            if let Init::Picture(InitImage { mask: Some(mask), .. }) = init {
                keep = Some(Keep::new(mask, (req.width, req.height, f), clean, eps)?);
            }
            start
        }
    };

    let total = (all_timesteps.len() - start) as u64;
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
    for (k, i) in (start..all_timesteps.len()).enumerate() {
        if let Some(token) = hooks.cancel {
            check_cancel(token)?;
        }
        let t = all_timesteps[i];
        scheduler.scale_model_input(i, &latents, &mut model_in[..n * per]);
        if cfg {
            model_in.copy_within(..n * per, n * per);
        }
        let shape = LatentShape { batch, chunk, per, ch, lh, lw };
        let out_all = predict(unet, &cond, guidance_cond.as_ref(), &model_in, t, shape, hooks.cancel, &mut onnx)?;
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

    let mut images = decode(model, &latents, n, per, (ch, lh, lw), &mut onnx)?;
    if let Some(Init::Picture(picture)) = &req.init {
        composite(&mut images, picture);
    }
    Ok(Generated {
        images,
        final_latents: latents,
        warnings,
        timings: Timings { total: started.elapsed(), onnx, unet_runs },
        timesteps: all_timesteps[start..].to_vec(),
    })
}

/// Latent layout of one UNet step: `batch` items of `per = ch·lh·lw` values, run
/// `chunk` at a time.
#[derive(Clone, Copy)]
struct LatentShape {
    batch: usize,
    chunk: usize,
    per: usize,
    ch: usize,
    lh: usize,
    lw: usize,
}

/// One UNet evaluation of the whole (CFG) batch, split into runs of `shape.chunk` items
/// (what the export and the device take). A cancel is seen between runs, so a big batch
/// on the CPU stops after the item it is on, not after the whole step.
#[allow(clippy::too_many_arguments)]
fn predict(
    unet: &Unet,
    cond: &Conditioning,
    guidance_cond: Option<&(Vec<f32>, usize)>,
    model_in: &[f32],
    t: f64,
    shape: LatentShape,
    cancel: Option<&CancellationToken>,
    onnx: &mut Duration,
) -> Result<Vec<f32>, DiffusionError> {
    let LatentShape { batch, chunk, per, ch, lh, lw } = shape;
    let fixed_batch = unet.sample.fixed(0);
    let mut out_all: Vec<f32> = Vec::with_capacity(batch * per);
    for a in (0..batch).step_by(chunk) {
        if let Some(token) = cancel {
            check_cancel(token)?;
        }
        let b = (a + chunk).min(batch);
        // Exports with a fixed batch larger than what is left get the last item repeated.
        let m = fixed_batch.unwrap_or(b - a);
        let sample = padded_rows(model_in, a, b, m, per);
        let hidden = padded_rows(&cond.hidden, a, b, m, cond.seq * cond.dim);
        let mut feeds = vec![
            float_input(&unet.sample, vec![m, ch, lh, lw], &sample)?,
            timestep_input(&unet.timestep, t, m)?,
            float_input(&unet.hidden, vec![m, cond.seq, cond.dim], &hidden)?,
        ];
        let text_embeds = cond.text_embeds.as_ref().map(|(te, p)| (padded_rows(te, a, b, m, *p), *p));
        if let (Some(info), Some((te, p))) = (&unet.text_embeds, &text_embeds) {
            feeds.push(float_input(info, vec![m, *p], te)?);
        }
        let time_ids = cond.time_ids.as_ref().map(|ids| padded_rows(ids, a, b, m, 6));
        if let (Some(info), Some(ids)) = (&unet.time_ids, &time_ids) {
            feeds.push(float_input(info, vec![m, 6], ids)?);
        }
        let emb = guidance_cond.map(|(e, d)| (padded_rows(e, a, b, m, *d), *d));
        if let (Some(info), Some((e, d))) = (&unet.timestep_cond, &emb) {
            feeds.push(float_input(info, vec![m, *d], e)?);
        }
        let mut outs = unet.part.run(feeds, onnx)?;
        let out = take_output(&mut outs, unet.output, "unet", m * per)?;
        out_all.extend_from_slice(&out.data[..(b - a) * per]);
    }
    Ok(out_all)
}

pub(super) fn take_output(
    outs: &mut [Output],
    index: usize,
    part: &'static str,
    want: usize,
) -> Result<Output, DiffusionError> {
    let out = outs
        .get_mut(index)
        .map(std::mem::take)
        .ok_or_else(|| DiffusionError::Run { part, reason: "no output".into() })?;
    if out.data.len() != want {
        return Err(DiffusionError::Run {
            part,
            reason: format!(
                "output {} has {} values (shape {:?}), expected {want}",
                out.name,
                out.data.len(),
                out.shape
            ),
        });
    }
    Ok(out)
}

/// Rows `a..b` of `data` (rows of `width` values), padded to `m` rows by repeating the
/// last; borrowed when no padding is needed.
fn padded_rows(data: &[f32], a: usize, b: usize, m: usize, width: usize) -> Cow<'_, [f32]> {
    let rows = &data[a * width..b * width];
    if m <= b - a {
        return Cow::Borrowed(rows);
    }
    let mut out = Vec::with_capacity(m * width);
    out.extend_from_slice(rows);
    while out.len() < m * width {
        out.extend_from_slice(&data[(b - 1) * width..b * width]);
    }
    Cow::Owned(out)
}

/// LCM's guidance-scale embedding (`get_guidance_scale_embedding`): sinusoids of 1000·w,
/// repeated for every item of the batch.
pub fn guidance_embedding(w: f32, dim: usize, batch: usize) -> (Vec<f32>, usize) {
    let half = dim / 2;
    let scale = (10000f32).ln() / (half.max(2) - 1) as f32;
    let w = w * 1000.0;
    let mut one: Vec<f32> = (0..half).map(|i| (w * (i as f32 * -scale).exp()).sin()).collect();
    one.extend((0..half).map(|i| (w * (i as f32 * -scale).exp()).cos()));
    one.resize(dim, 0.0);
    (one.repeat(batch), dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_embedding_matches_diffusers_lcm() {
        // LatentConsistencyModelPipeline.get_guidance_scale_embedding(tensor([6.5]), 8)
        let want = [
            -0.044_784_74,
            0.110_189_15,
            0.991_123_26,
            0.605_186_34,
            -0.998_996_7,
            0.993_910_6,
            0.132_946_03,
            0.796_083_9,
        ];
        let (got, dim) = guidance_embedding(6.5, 8, 2);
        assert_eq!(dim, 8);
        for (i, (g, w)) in got[..8].iter().zip(want).enumerate() {
            assert!((g - w).abs() < 2e-3, "[{i}] {g} != {w}");
        }
        assert_eq!(got[..8], got[8..], "repeated per batch item");
    }

    #[test]
    fn fixed_batch_exports_get_the_last_row_repeated() {
        let data = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(&*padded_rows(&data, 1, 2, 3, 2), &[3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
        assert!(matches!(padded_rows(&data, 0, 2, 2, 2), Cow::Borrowed(rows) if rows == data));
    }
}
