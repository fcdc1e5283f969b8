//! `reelbox image PROMPT -o FILE`: a picture from a prompt with a Stable Diffusion model,
//! on the daemon (`POST /api/v1/images`) when one answers, else in this process; what only a
//! daemon does (a profile, a second pass, a resize, an upscale) on one started here then.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::kinds::image::{ImageRequest, LocalImageArgs, RefineRequest, render_local};
use reelbox::kinds::resize::ResizeRequest;
use reelbox::pipelines::Progress;
use reelbox::pipelines::diffusion::noise::NoiseKind;
use reelbox::pipelines::diffusion::samplers::{SampleAs, Schedule};
use serde_json::json;

use super::Global;
use super::backend::{Backend, Reach, local, run_job, save_artifacts, upload};
use super::client::Client;
use super::refine_arg::RefineArgs;
use super::resize_arg::ResizeArgs;

/// Arguments of `reelbox image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to draw.
    pub prompt: String,
    /// PNG file to write (several images: FILE-1.png, FILE-2.png, ...).
    #[arg(short, long)]
    pub output: PathBuf,
    /// What to keep out of the picture.
    #[arg(long)]
    pub negative: Option<String>,
    /// Installed diffusion model (default: the diffusion default `reelbox models list` tags).
    #[arg(long)]
    pub model: Option<String>,
    /// Width in pixels (a multiple of the model's size step, usually 8).
    #[arg(long)]
    pub width: Option<u32>,
    /// Height in pixels.
    #[arg(long)]
    pub height: Option<u32>,
    /// Denoising steps.
    #[arg(long)]
    pub steps: Option<u32>,
    /// Seed; the same seed and settings give the same pixels.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Classifier-free guidance scale.
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Scheduler, e.g. euler, euler-a, ddim, dpm++2m-karras, lcm.
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Sample as ComfyUI's KSampler does, over this scheduler's σs (A1111's "schedule type"):
    /// normal, karras, exponential, sgm_uniform or simple; with --scheduler euler, euler-a,
    /// ddim or dpmpp_2m.
    #[arg(long, value_parser = Schedule::NAMES)]
    pub schedule: Option<String>,
    /// Where the starting noise comes from: reelbox (its own), torch_cpu (torch's CPU
    /// generator, a seed a picture: A1111's "CPU") or comfyui (the batch from one seed, as
    /// ComfyUI draws it): with either torch source, a seed gives the noise it gives there.
    #[arg(long, value_parser = NoiseKind::NAMES)]
    pub noise: Option<String>,
    /// Whose arithmetic the sampler follows over a --schedule, and whose reading of the
    /// prompt's emphasis (`(red:1.3)`) and chunks past 75 tokens: comfyui (the default:
    /// ComfyUI's KSampler, the whole timestep nearest each σ, √(1 + σ₀²)·noise at the start)
    /// or a1111 (A1111's k-diffusion samplers: fractional timesteps, σ₀·noise; its `[ ]` and
    /// BREAK), so a seed and prompt typed in there draw as they do there.
    #[arg(long, value_parser = SampleAs::NAMES)]
    pub sample_as: Option<String>,
    /// Read the prompts at the text encoder's Nth layer from its end (A1111's "Clip skip",
    /// ComfyUI's CLIPSetLastLayer at -N): 1 is the last, 2 the one before, which many anime
    /// SD 1.5 models are made for; default: the model's own (SDXL's is 2). A model imported
    /// with `reelbox models import` has every layer; one pulled from the hub only its own.
    #[arg(long, value_name = "N")]
    pub clip_skip: Option<u32>,
    /// Preset from presets.toml (size, steps, guidance, scheduler).
    #[arg(long)]
    pub preset: Option<String>,
    /// Start from this picture (image-to-image).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// How much of the init picture to repaint, 0–1.
    #[arg(long, requires = "init")]
    pub strength: Option<f64>,
    /// Repaint only part of the init picture (inpainting): a picture of its size whose
    /// transparent part (or, with no transparency, white part) is redrawn; the rest is kept.
    #[arg(long, value_name = "FILE", requires = "init")]
    pub mask: Option<PathBuf>,
    /// How many images (seeds SEED, SEED+1, ...).
    #[arg(short, long)]
    pub n: Option<u32>,
    /// Profile id or name (`reelbox profiles list`): its picture model, style, negative prompt and
    /// preset, as its renders use them. Profiles live in the daemon, so this needs one.
    #[arg(long)]
    pub profile: Option<String>,
    /// Installed upscale model: the daemon upscales each picture with it, and the upscaled
    /// pictures are what is written (`reelbox models list` names them).
    #[arg(long)]
    pub upscale_model: Option<String>,
    /// The daemon resizes each finished (and upscaled) picture without a model, and the
    /// resized pictures are what is written.
    #[command(flatten)]
    pub resize: ResizeArgs,
    /// The daemon samples each picture a second time, scaled first (the hires fix), before
    /// any upscale and resize; the refined pictures are what is written unless those follow.
    #[command(flatten)]
    pub refine: RefineArgs,
    /// Run in this process even when a daemon answers.
    #[arg(long)]
    pub local: bool,
}

/// Runs `reelbox image`; a daemon's refusal of a field given by flag is said with the flag.
pub async fn run(g: &Global, args: ImageArgs) -> anyhow::Result<ExitCode> {
    draw(g, args).await.map_err(|e| g.typed.worded::<ImageArgs>(e))
}

async fn draw(g: &Global, args: ImageArgs) -> anyhow::Result<ExitCode> {
    super::backend::check_output(&args.output)?;
    let resize = args.resize.request()?;
    let refine = args.refine.request();
    let local_args = LocalImageArgs {
        prompt: args.prompt,
        output: args.output,
        negative_prompt: args.negative,
        model: args.model,
        width: args.width,
        height: args.height,
        steps: args.steps,
        seed: args.seed,
        guidance: args.guidance,
        scheduler: args.scheduler,
        schedule: args.schedule,
        noise: args.noise,
        sample_as: args.sample_as,
        clip_skip: args.clip_skip,
        preset: args.preset,
        n: args.n,
        init: args.init,
        strength: args.strength,
    };
    // What only a daemon does (a profile, a second pass, a resize, an upscale) runs on one
    // started in this process when none answers, as `render` and `upscale` do; `--local`
    // alone draws here, without them.
    let extra =
        DaemonOnly { profile: args.profile, upscale_model: args.upscale_model, resize, refine, mask: args.mask };
    if extra.any() && !args.local {
        let reach = Reach::new(g).await?;
        let result = on_daemon(g, &reach.client, &local_args, extra).await;
        reach.close().await;
        return result.map(|_| ExitCode::SUCCESS);
    }
    match Backend::choose(g, args.local).await? {
        Backend::Daemon(c) => on_daemon(g, &c, &local_args, extra).await?,
        Backend::Local if extra.profile.is_some() => {
            anyhow::bail!(
                "--profile: profiles live in the daemon; start `{}` (or drop --local)",
                g.hint.on_this_box("serve")
            )
        }
        Backend::Local if extra.mask.is_some() => {
            anyhow::bail!("--mask: the daemon inpaints; start `{}` (or drop --local)", g.hint.on_this_box("serve"))
        }
        Backend::Local if extra.refine.is_some() => {
            anyhow::bail!("--refine: the daemon refines; start `{}` (or drop --local)", g.hint.on_this_box("serve"))
        }
        Backend::Local if extra.resize.is_some() => {
            anyhow::bail!("--resize: the daemon resizes; start `{}` (or drop --local)", g.hint.on_this_box("serve"))
        }
        Backend::Local if extra.upscale_model.is_some() => {
            anyhow::bail!(
                "--upscale-model: the daemon upscales; start `{}` (or drop --local and upscale with `reelbox upscale`)",
                g.hint.on_this_box("serve")
            )
        }
        Backend::Local => {
            let config = Config::load(g.config.as_deref())?;
            let bar = if g.json { ProgressBar::hidden() } else { ProgressBar::new(1) };
            bar.set_style(
                ProgressStyle::with_template("{spinner} steps [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            let b = bar.clone();
            let result = local(move || {
                let engine = Engine::new(&config);
                let progress = move |p: Progress| {
                    b.set_length(p.total.max(1));
                    b.set_position(p.step);
                };
                render_local(&config, &engine, DeviceId::Cpu, &local_args, Some(&progress))
            })
            .await?;
            bar.finish_and_clear();
            let done = result?;
            for w in &done.warnings {
                eprintln!("warning: {w}");
            }
            let params = serde_json::to_value(&done.params)?;
            report(g, &done.files, &params, "local");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The flags only a daemon acts on.
struct DaemonOnly {
    profile: Option<String>,
    upscale_model: Option<String>,
    resize: Option<ResizeRequest>,
    refine: Option<RefineRequest>,
    mask: Option<PathBuf>,
}

impl DaemonOnly {
    fn any(&self) -> bool {
        self.profile.is_some()
            || self.upscale_model.is_some()
            || self.resize.is_some()
            || self.refine.is_some()
            || self.mask.is_some()
    }
}

/// Draws on daemon `c` and writes the pictures the last stage made.
async fn on_daemon(g: &Global, c: &Client, local_args: &LocalImageArgs, extra: DaemonOnly) -> anyhow::Result<()> {
    // Checked before the picture is sent, so a refused flag leaves nothing stored.
    let request = local_args.request()?;
    // An init picture is sent to the daemon, so image-to-image runs where the GPU
    // and the loaded model are (it ran in this process, on the CPU).
    let init_image = match &local_args.init {
        Some(path) => Some(upload(c, path, "--init").await?.id),
        None => None,
    };
    let mask = match &extra.mask {
        Some(path) => Some(upload(c, path, "--mask").await?.id),
        None => None,
    };
    // The daemon's own preview default applies (the local render makes none).
    let mut body = serde_json::to_value(ImageRequest {
        preview_every: None,
        init_image,
        mask,
        resize: extra.resize,
        refine: extra.refine,
        ..request
    })?;
    if let Some(obj) = body.as_object_mut() {
        for (field, value) in [("profile", &extra.profile), ("upscale_model", &extra.upscale_model)] {
            if let Some(v) = value {
                obj.insert(field.into(), json!(v));
            }
        }
    }
    let job = run_job(c, g, "/api/v1/images", &body, None).await?;
    // Previews are artifacts too; the finished images are `image.png` / `image-N.png`,
    // their second passes `refined.png`, upscales `upscaled.png` / `upscaled-N.png` and
    // resizes `resized.png` / `resized-N.png`: the last of them is what was asked for.
    let finished = match (&body["resize"], &extra.upscale_model, &body["refine"]) {
        (serde_json::Value::Object(_), ..) => "resized",
        (_, Some(_), _) => "upscaled",
        (.., serde_json::Value::Object(_)) => "refined",
        _ => "image",
    };
    let files =
        save_artifacts(c, &job, &local_args.output, |a| a.media_type == "image/png" && a.name.starts_with(finished))
            .await?;
    report(g, &files, &job.params, c.base());
    Ok(())
}

fn report(g: &Global, files: &[PathBuf], params: &serde_json::Value, backend: &str) {
    if g.json {
        println!("{}", json!({"files": files, "params": params, "backend": backend}));
        return;
    }
    // An upscaled or resized picture's file is another size than it was drawn at: both are said.
    let resized = params["resize"].is_object();
    let refined = match &params["refine"] {
        serde_json::Value::Object(r) if r.contains_key("switch") => {
            let model = r.get("model").and_then(|m| m.as_str()).unwrap_or("the same model");
            format!(" · {model} from step {}", r["switch"]["step"])
        }
        serde_json::Value::Object(r) => format!(" · refined at {}×{}", r["width"], r["height"]),
        _ => String::new(),
    };
    let upscaled = match (params["upscale_model"].as_str(), files.first().map(image::image_dimensions)) {
        (Some(model), Some(Ok((w, h)))) if !resized => format!(" · upscaled to {w}×{h} by {model}"),
        (Some(model), Some(Ok((w, h)))) => format!(" · upscaled by {model}, resized to {w}×{h}"),
        (None, Some(Ok((w, h)))) if resized => format!(" · resized to {w}×{h}"),
        _ => String::new(),
    };
    eprintln!(
        "{} · seed {} · {} steps · {}×{}{refined}{upscaled}",
        params["model"].as_str().unwrap_or("?"),
        params["seed"],
        params["steps"],
        params["width"],
        params["height"]
    );
    for f in files {
        println!("{}", f.display());
    }
}
