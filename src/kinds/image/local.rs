//! `reelbox image --local`: renders in this process, validated exactly as the daemon
//! validates an `image` job, and writes the PNGs next to each other.

use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::{Image, ImageParams, ImageRequest, wire_int};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::kinds::{ParamError, TypedKind};
use crate::pipelines::ProgressFn;
use crate::pipelines::diffusion::{DiffusionError, Timings};

/// Arguments of `reelbox image PROMPT -o FILE ...` run in-process (`--local`).
#[derive(Debug, Clone, Default)]
pub struct LocalImageArgs {
    pub prompt: String,
    pub output: PathBuf,
    pub negative_prompt: Option<String>,
    pub model: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub steps: Option<u32>,
    pub seed: Option<u64>,
    pub guidance: Option<f32>,
    pub scheduler: Option<String>,
    /// ComfyUI's scheduler to sample over (the `image` kind's `schedule`).
    pub schedule: Option<String>,
    /// Where the starting noise comes from (the `image` kind's `noise`).
    pub noise: Option<String>,
    /// Whose arithmetic the sampler follows (the `image` kind's `sample_as`).
    pub sample_as: Option<String>,
    /// The text encoder layer from its end the prompts are read at (the `image` kind's `clip_skip`).
    pub clip_skip: Option<u32>,
    pub preset: Option<String>,
    pub n: Option<u32>,
    /// img2img starting picture (a file, not an artifact).
    pub init: Option<PathBuf>,
    pub strength: Option<f64>,
}

impl LocalImageArgs {
    /// The `image` request these arguments make (previews off; an init picture is read
    /// from its file, so validation sees a placeholder artifact id).
    pub fn request(&self) -> Result<ImageRequest, ParamError> {
        let init = self.init.is_some();
        Ok(ImageRequest {
            prompt: Some(self.prompt.clone()),
            negative_prompt: self.negative_prompt.clone(),
            model: self.model.clone(),
            width: self.width.map(i64::from),
            height: self.height.map(i64::from),
            steps: self.steps.map(i64::from),
            guidance: self.guidance.map(f64::from),
            scheduler: self.scheduler.clone(),
            schedule: self.schedule.clone(),
            sample_as: self.sample_as.clone(),
            clip_skip: self.clip_skip.map(i64::from),
            seed: self.seed.map(|s| wire_int("seed", s)).transpose()?,
            n: self.n.map(i64::from),
            init_image: init.then(|| Ulid::nil().to_string()),
            strength: self.strength.filter(|_| init),
            mask: None,
            mask_grow: None,
            steps_mode: None,
            noise: self.noise.clone(),
            preset: self.preset.clone(),
            preview_every: Some(0),
            upscale_model: None,
            resize: None,
            refine: None,
        })
    }
}

/// Why a local render failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalImageError {
    // Transparent: the message is the inner error's, shown once (a `{0}` message with a
    // `#[from]` source printed it twice in the CLI's error chain).
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Diffusion(#[from] DiffusionError),
    #[error("cannot read init image {path}: {reason}")]
    Init { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What a local render wrote.
#[derive(Debug, Clone)]
pub struct LocalImageReport {
    pub files: Vec<PathBuf>,
    pub params: ImageParams,
    pub warnings: Vec<String>,
    pub timings: Timings,
}

/// Renders in this process (no daemon): validates like the API, renders on `device`,
/// writes `output` (or `stem-1.png`, `stem-2.png`, ... for several images).
pub fn render_local(
    config: &Config,
    engine: &Engine,
    device: DeviceId,
    args: &LocalImageArgs,
    progress: Option<ProgressFn<'_>>,
) -> Result<LocalImageReport, LocalImageError> {
    let params = args.request()?.resolve(config)?;
    // In this process, as on a daemon: a picture too big for the memory it may use is
    // refused before the model loads, not ended by the kernel's OOM killer.
    if device == DeviceId::Cpu
        && let Some(picture) = TypedKind::cpu_picture(&Image, &params, config)
    {
        crate::kinds::memory::check_on_cpu(config, &picture)?;
    }
    let init = match &args.init {
        Some(path) => Some(
            crate::media::picture::open(path)
                .map_err(|e| LocalImageError::Init { path: path.clone(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let kind = Image;
    let rendered = kind.render(
        config,
        engine,
        device,
        &params,
        None,
        init.as_ref().map(super::Start::Picture),
        progress,
        None,
        None,
    )?;
    let mut files = Vec::new();
    for (i, (_, png)) in rendered.images.iter().enumerate() {
        let path = if rendered.images.len() == 1 { args.output.clone() } else { numbered(&args.output, i + 1) };
        std::fs::write(&path, png).map_err(|source| LocalImageError::Write { path: path.clone(), source })?;
        files.push(path);
    }
    Ok(LocalImageReport { files, params, warnings: rendered.warnings, timings: rendered.timings })
}

fn numbered(path: &Path, i: usize) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "png".into());
    path.with_file_name(format!("{stem}-{i}.{ext}"))
}
