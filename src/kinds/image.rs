//! `image`: text-to-image and image-to-image with a Stable Diffusion model. Validation
//! fills every default (preset, model defaults, a random seed) so a stored job renders the
//! same pixels after a restart; the one stage writes PNGs with A1111-style parameters and
//! previews as they come.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::{
    JobKind, ParamError, StageError, StageRun, ValidateCtx, float_param, int_param, reject_unknown, str_param,
};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::models::{Catalog, ModelKind};
use crate::pipelines::ProgressFn;
use crate::pipelines::diffusion::model::check_size;
use crate::pipelines::diffusion::output::{ImageParameters, encode_png};
use crate::pipelines::diffusion::preset::Presets;
use crate::pipelines::diffusion::samplers::{self, SchedulerChoice, SchedulerKind};
use crate::pipelines::diffusion::{
    DiffusionError, GenerateRequest, Hooks, InitImage, ModelInfo, Preview, SdModel, SeededNoise, Timings, generate,
};

const KNOWN: [&str; 14] = [
    "prompt",
    "negative_prompt",
    "model",
    "width",
    "height",
    "steps",
    "guidance",
    "scheduler",
    "seed",
    "n",
    "init_image",
    "strength",
    "preset",
    "preview_every",
];
/// Most images one job may ask for.
pub const MAX_IMAGES: i64 = 8;
/// Largest seed accepted; JSON clients lose precision above 2^53.
pub const MAX_SEED: i64 = (1 << 53) - 1;

/// Validated `image` parameters, every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageParams {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: String,
    pub seed: u64,
    pub n: u32,
    pub init_image: Option<String>,
    pub strength: Option<f64>,
    pub preset: Option<String>,
    /// Preview every this many steps; 0 turns previews off.
    pub preview_every: u32,
}

fn request_error(e: DiffusionError) -> ParamError {
    match e {
        DiffusionError::Request { field, message } => ParamError::new(field, message),
        other => ParamError::new("model", other.to_string()),
    }
}

/// Steps, guidance and scheduler a model is meant to run with when the request and
/// preset say nothing: LCM and Turbo models need few steps and little or no guidance.
fn model_defaults(info: &ModelInfo) -> (i64, f64, SchedulerChoice) {
    let fallback = SchedulerChoice { kind: SchedulerKind::DpmSolverMultistep, karras: true };
    let own = info.default_scheduler;
    if own.is_some_and(|c| c.kind == SchedulerKind::Lcm) {
        let guidance = if info.time_cond_proj_dim.is_some() { 8.5 } else { 1.0 };
        return (4, guidance, own.unwrap_or(fallback));
    }
    if info.name.to_ascii_lowercase().contains("turbo") {
        return (1, 0.0, own.unwrap_or(SchedulerChoice { kind: SchedulerKind::Euler, karras: false }));
    }
    (25, 7.0, own.unwrap_or(fallback))
}

/// Checks and normalises `image` parameters; every error names its field.
pub fn validate_params(params: &serde_json::Value, config: &Config) -> Result<ImageParams, ParamError> {
    reject_unknown(params, &KNOWN)?;
    let prompt = str_param(params, "prompt")?.map(str::trim).unwrap_or_default().to_string();
    if prompt.is_empty() {
        return Err(ParamError::new("prompt", "required"));
    }
    let max_chars = config.limits.max_prompt_chars;
    for (field, text) in [("prompt", Some(prompt.as_str())), ("negative_prompt", str_param(params, "negative_prompt")?)]
    {
        if text.is_some_and(|t| t.chars().count() > max_chars) {
            return Err(ParamError::new(field, format!("longer than {max_chars} characters")));
        }
    }
    let negative_prompt = str_param(params, "negative_prompt")?.map(str::to_owned);

    let presets = Presets::load(&config.data_dir).map_err(|e| ParamError::new("preset", e.to_string()))?;
    let preset_name = str_param(params, "preset")?.map(str::to_owned);
    let preset = match &preset_name {
        Some(name) => Some(presets.get(name).ok_or_else(|| {
            ParamError::new("preset", format!("unknown preset {name:?}; known: {}", presets.names().join(", ")))
        })?),
        None => None,
    };

    let catalog = Catalog::load(config);
    let installed = catalog.installed_names(ModelKind::Diffusion);
    let model = match str_param(params, "model")? {
        Some(m) => m.to_string(),
        None => catalog
            .default_name(ModelKind::Diffusion, config)
            .ok_or_else(|| ParamError::new("model", format!("required; installed: {}", installed.join(", "))))?,
    };
    let dir = catalog.installed_dir(ModelKind::Diffusion, &model).ok_or_else(|| {
        ParamError::new("model", format!("unknown model {model:?}; installed: {}", installed.join(", ")))
    })?;
    let info = ModelInfo::inspect(&dir).map_err(|e| ParamError::new("model", e.to_string()))?;
    let (model_steps, model_guidance, model_scheduler) = model_defaults(&info);

    let (pw, ph) = preset.map_or((info.native_size, info.native_size), |p| p.size_for(info.native_size));
    let max_side = i64::from(config.limits.max_image_side);
    let width = int_param(params, "width", i64::from(pw), 1..=max_side)? as u32;
    let height = int_param(params, "height", i64::from(ph), 1..=max_side)? as u32;
    check_size(&info, None, width, height, config.limits.max_image_side).map_err(request_error)?;
    let steps = int_param(
        params,
        "steps",
        preset.map_or(model_steps, |p| i64::from(p.steps)),
        1..=i64::from(config.limits.max_steps),
    )? as u32;
    let guidance =
        float_param(params, "guidance", preset.map_or(model_guidance, |p| f64::from(p.guidance)), 0.0..=30.0)? as f32;
    let scheduler_name = match str_param(params, "scheduler")? {
        Some(s) => s.to_string(),
        None => preset.map_or_else(|| model_scheduler.name().to_string(), |p| p.scheduler.clone()),
    };
    let choice = SchedulerChoice::parse(&scheduler_name).map_err(|e| ParamError::new("scheduler", e.to_string()))?;
    let seed = match params.get("seed") {
        None | Some(serde_json::Value::Null) => rand::random::<u32>() as u64,
        Some(_) => int_param(params, "seed", 0, 0..=MAX_SEED)? as u64,
    };
    let n = int_param(params, "n", 1, 1..=MAX_IMAGES)? as u32;
    let preview_every = int_param(params, "preview_every", 5, 0..=10_000)? as u32;
    let init_image = str_param(params, "init_image")?.map(str::to_owned);
    if let Some(id) = &init_image {
        Ulid::from_string(id).map_err(|_| ParamError::new("init_image", "must be an artifact id"))?;
        if !info.has_vae_encoder {
            return Err(ParamError::new("init_image", format!("model {model} has no vae_encoder for image-to-image")));
        }
    }
    let strength = match (&init_image, params.get("strength")) {
        (None, None | Some(serde_json::Value::Null)) => None,
        (None, Some(_)) => return Err(ParamError::new("strength", "only applies with init_image")),
        (Some(_), _) => Some(float_param(params, "strength", 0.75, 0.0..=1.0)?),
    };
    // The schedule itself may refuse the step count (LCM takes at most its original steps).
    samplers::build(choice, &info.scheduler_config, steps as usize, strength.unwrap_or(1.0)).map_err(|e| match e {
        samplers::SchedulerError::Steps(m) => ParamError::new("steps", m),
        other => ParamError::new("scheduler", other.to_string()),
    })?;
    Ok(ImageParams {
        prompt,
        negative_prompt,
        model,
        width,
        height,
        steps,
        guidance,
        scheduler: choice.name().to_string(),
        seed,
        n,
        init_image,
        strength,
        preset: preset_name,
        preview_every,
    })
}

/// The `image` job kind. Models are opened per render: the engine's session cache keeps
/// the sessions warm and decides when they unload, so nothing here pins them.
#[derive(Debug, Default)]
pub struct Image;

/// A finished render: PNGs with their parameters text, and what to tell the user.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `(file name, PNG bytes)` per image.
    pub images: Vec<(String, Vec<u8>)>,
    pub warnings: Vec<String>,
    pub timings: Timings,
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
        let dir = Catalog::load(config)
            .installed_dir(ModelKind::Diffusion, name)
            .ok_or_else(|| DiffusionError::Request { field: "model", message: format!("unknown model {name:?}") })?;
        SdModel::load(&dir, engine, device)
    }

    /// Renders validated `params` (init picture already decoded) to PNG bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &self,
        config: &Config,
        engine: &Engine,
        device: DeviceId,
        params: &ImageParams,
        init: Option<&image::RgbImage>,
        progress: Option<ProgressFn<'_>>,
        preview: Option<&(dyn Fn(Preview) + Send + Sync)>,
        cancel: Option<&CancellationToken>,
    ) -> Result<Rendered, DiffusionError> {
        let model = self.model(config, engine, device, &params.model)?;
        let choice = SchedulerChoice::parse(&params.scheduler)?;
        let req = GenerateRequest {
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            width: params.width,
            height: params.height,
            steps: params.steps,
            guidance: params.guidance,
            scheduler: choice,
            scheduler_config: None,
            count: params.n,
            init: init
                .map(|img| InitImage::from_rgb(img, params.width, params.height, params.strength.unwrap_or(0.75))),
            max_side: config.limits.max_image_side,
        };
        let seeds: Vec<u64> = (0..u64::from(params.n)).map(|i| params.seed.wrapping_add(i)).collect();
        let mut noise = SeededNoise::new(&seeds);
        let hooks = Hooks { progress, preview, preview_every: params.preview_every, cancel };
        let out = generate(&model, &req, &mut noise, None, &hooks)?;
        let mut images = Vec::with_capacity(out.images.len());
        for (i, img) in out.images.iter().enumerate() {
            let text = ImageParameters {
                prompt: &params.prompt,
                negative_prompt: params.negative_prompt.as_deref(),
                steps: params.steps,
                sampler: choice.label(),
                guidance: params.guidance,
                seed: seeds[i],
                width: params.width,
                height: params.height,
                model: &params.model,
                strength: params.strength,
            }
            .to_text();
            let name = if params.n == 1 { "image.png".to_string() } else { format!("image-{}.png", i + 1) };
            images.push((name, encode_png(&img.to_rgb8(), Some(&text))?));
        }
        tracing::info!(
            model = %params.model,
            steps = params.steps,
            total_ms = out.timings.total.as_millis() as u64,
            onnx_ms = out.timings.onnx.as_millis() as u64,
            "image rendered"
        );
        Ok(Rendered { images, warnings: out.warnings, timings: out.timings })
    }
}

impl JobKind for Image {
    fn name(&self) -> &'static str {
        "image"
    }

    fn vram_mib(&self, params: &serde_json::Value, config: &Config) -> u64 {
        let n = |f: &str, d: u64| params.get(f).and_then(|v| v.as_u64()).unwrap_or(d) as u32;
        let model = params.get("model").and_then(|v| v.as_str()).unwrap_or_default();
        super::memory::diffusion_mib(config, model, n("width", 512), n("height", 512), n("n", 1))
    }

    fn gpu_seconds_estimate(&self, params: &serde_json::Value) -> f64 {
        // Validated params always carry steps and n; the fallbacks only guard odd stores.
        let n = |f: &str, d: u64| params.get(f).and_then(|v| v.as_u64()).unwrap_or(d) as f64;
        n("steps", 20) * n("n", 1).max(1.0) * super::IMAGE_GPU_SECONDS_PER_STEP
    }

    fn models(&self, params: &serde_json::Value) -> Vec<String> {
        super::param_models(params, &["model"])
    }

    fn validate(&self, params: serde_json::Value, ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError> {
        let p = validate_params(&params, ctx.config)?;
        serde_json::to_value(&p).map_err(|e| ParamError::new("params", e.to_string()))
    }

    fn stages(&self, _params: &serde_json::Value) -> Vec<String> {
        vec!["generate".to_string()]
    }

    fn run_stage(&self, stage: &str, run: &StageRun) -> Result<(), StageError> {
        if stage != "generate" {
            return Err(StageError::fatal(format!("image has no stage {stage:?}")));
        }
        let params: ImageParams = serde_json::from_value(run.params.clone())
            .map_err(|e| StageError::context("stored image parameters are not valid", e))?;
        let init = match &params.init_image {
            Some(id) => {
                let ulid =
                    Ulid::from_string(id).map_err(|_| StageError::fatal(format!("init_image {id:?} is not an id")))?;
                let artifact =
                    run.sink.artifact(ulid).ok_or_else(|| StageError::fatal(format!("init_image {id} not found")))?;
                let path = run.sink.artifact_path(&artifact);
                let img = image::open(&path)
                    .map_err(|e| StageError::context(format!("init_image {id} is not a readable image"), e))?
                    .to_rgb8();
                Some(img)
            }
            None => None,
        };
        let sink = run.sink;
        let progress = |p: crate::pipelines::Progress| sink.progress(p.step, p.total, p.message.as_deref());
        let preview = |p: Preview| {
            if p.png.is_empty() {
                return;
            }
            if let Err(e) = sink.put_artifact(&format!("preview-{:04}.png", p.step), "image/png", &p.png) {
                tracing::warn!("cannot store preview: {e}");
            }
        };
        let rendered = self.render(
            run.config,
            run.engine,
            run.device,
            &params,
            init.as_ref(),
            Some(&progress),
            Some(&preview),
            Some(run.cancel),
        )?;
        for w in &rendered.warnings {
            sink.log("warn", w);
        }
        for (name, png) in &rendered.images {
            sink.put_artifact(name, "image/png", png)?;
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
    pub preset: Option<String>,
    pub n: Option<u32>,
    /// img2img starting picture (a file, not an artifact).
    pub init: Option<PathBuf>,
    pub strength: Option<f64>,
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
    let mut req = serde_json::Map::new();
    req.insert("prompt".into(), json!(args.prompt));
    let mut put = |k: &str, v: serde_json::Value| {
        if !v.is_null() {
            req.insert(k.into(), v);
        }
    };
    put("negative_prompt", json!(args.negative_prompt));
    put("model", json!(args.model));
    put("width", json!(args.width));
    put("height", json!(args.height));
    put("steps", json!(args.steps));
    put("seed", json!(args.seed));
    put("guidance", json!(args.guidance));
    put("scheduler", json!(args.scheduler));
    put("preset", json!(args.preset));
    put("n", json!(args.n));
    put("preview_every", json!(0));
    if args.init.is_some() {
        // Validation wants an artifact id; the local path is read below instead.
        put("init_image", json!(Ulid::nil().to_string()));
        put("strength", json!(args.strength));
    }
    let params = validate_params(&serde_json::Value::Object(req), config)?;
    let init = match &args.init {
        Some(path) => Some(
            image::open(path)
                .map_err(|e| LocalImageError::Init { path: path.clone(), reason: e.to_string() })?
                .to_rgb8(),
        ),
        None => None,
    };
    let kind = Image;
    let rendered = kind.render(config, engine, device, &params, init.as_ref(), progress, None, None)?;
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
