//! `render`: the main job. A script (or one prompt) becomes a narrated, lip-synced,
//! subtitled MP4 in stages, each with its own artifacts, so a restart resumes at the
//! first unfinished stage: plan → keyframes → narration → motion → talking head →
//! upscale → mux.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::image::{Image, validate_params as validate_image};
use super::inputs::{artifact_param, box_param, stage_file};
use super::{
    Failure, JobKind, ParamError, StageError, StageRun, ValidateCtx, float_param, int_param, reject_unknown, str_param,
};
use crate::config::LimitsConfig;
use crate::media::audio::{Audio, decode_file, write_wav};
use crate::media::ffmpeg::{H264Encoder, VideoOptions, VideoReader, VideoWriter};
use crate::media::mix::{Ducking, mix_with_ducking};
use crate::media::subtitles::{to_srt, to_webvtt};
use crate::models::model_file;
use crate::pipelines::lipsync::{DEFAULT_BATCH, FaceBox, FaceTrack, Wav2Lip, lipsync_frames};
use crate::pipelines::motion::{CameraMotion, ClipSpec, ImageToVideo, Sequence};
use crate::pipelines::render::plan::{Plan, plan};
use crate::pipelines::render::{Layout, TimedSentence, Timeline, composite, total_frames};
use crate::pipelines::tts::{self, SpeechOptions, SynthesisRun, Voice};
use crate::pipelines::upscale::{TileOptions, Upscaler};
use crate::pipelines::{Progress, check_cancel};

/// Default models of a render: the bundled demo models, replaceable by real exports.
pub const DEFAULT_DIFFUSION: &str = "demo-shapes";
pub const DEFAULT_LIPSYNC: &str = "demo-presenter";
pub const DEFAULT_UPSCALER: &str = "demo-upscaler";
/// Pause between scenes' narration, seconds.
const SCENE_GAP_S: f64 = 0.35;
/// Intermediate videos are kept near-lossless; only the final mux uses normal quality.
const INTERMEDIATE_QUALITY: u8 = 12;

const STAGES: [&str; 7] = ["plan", "keyframes", "narration", "motion", "talking_head", "upscale", "mux"];
const KNOWN: [&str; 24] = [
    "script",
    "prompt",
    "style",
    "negative_prompt",
    "model",
    "steps",
    "guidance",
    "scheduler",
    "preset",
    "seed",
    "keyframe_width",
    "keyframe_height",
    "width",
    "height",
    "fps",
    "voice",
    "length_scale",
    "presenter",
    "layout",
    "lipsync_model",
    "upscale",
    "upscale_model",
    "music",
    "burn_subtitles",
];

/// The presenter of a render: portrait artifact and face box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presenter {
    pub portrait: String,
    pub face_box: [u32; 4],
}

/// Validated render parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderParams {
    pub script: String,
    pub style: String,
    pub negative_prompt: Option<String>,
    pub model: String,
    pub steps: Option<u32>,
    pub guidance: Option<f64>,
    pub scheduler: Option<String>,
    pub preset: Option<String>,
    pub seed: u64,
    pub keyframe_width: Option<u32>,
    pub keyframe_height: Option<u32>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub voice: String,
    pub length_scale: Option<f32>,
    pub presenter: Option<Presenter>,
    pub layout: Layout,
    pub lipsync_model: String,
    pub upscale: bool,
    pub upscale_model: String,
    pub music: Option<String>,
    pub burn_subtitles: bool,
}

/// The `render` job kind.
#[derive(Debug, Default)]
pub struct Render;

fn opt_u32(p: &serde_json::Value, f: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<u32>, ParamError> {
    match p.get(f) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => int_param(p, f, 0, range).map(|v| Some(v as u32)),
    }
}

/// Checks render parameters and fills defaults.
pub fn validate_params(p: &serde_json::Value, ctx: &ValidateCtx) -> Result<RenderParams, ParamError> {
    reject_unknown(p, &KNOWN)?;
    let config = ctx.config;
    let script = str_param(p, "script")?.or(str_param(p, "prompt")?).map(str::trim).unwrap_or_default();
    if script.is_empty() {
        return Err(ParamError::new("script", "is required (or give a single `prompt`)"));
    }
    if script.chars().count() > config.limits.max_prompt_chars {
        return Err(ParamError::new("script", format!("is longer than {} characters", config.limits.max_prompt_chars)));
    }
    let max_side = i64::from(config.limits.max_image_side);
    let width = int_param(p, "width", 512, 64..=max_side)? as u32;
    let height = int_param(p, "height", 512, 64..=max_side)? as u32;
    if width % 8 != 0 || height % 8 != 0 {
        let field = if width % 8 != 0 { "width" } else { "height" };
        return Err(ParamError::new(field, "must be a multiple of 8"));
    }
    let presenter = match p.get("presenter").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let portrait = artifact_param(v, "portrait")
                .map_err(|e| ParamError::new("presenter.portrait", e.message))?
                .ok_or_else(|| ParamError::new("presenter.portrait", "is required"))?;
            let face_box = box_param(v, "face_box")
                .map_err(|e| ParamError::new("presenter.face_box", e.message))?
                .ok_or_else(|| ParamError::new("presenter.face_box", "is required"))?;
            Some(Presenter { portrait: portrait.to_string(), face_box })
        }
    };
    let layout = match str_param(p, "layout")? {
        None if presenter.is_some() => Layout::Inset,
        None | Some("none") => Layout::None,
        Some("inset") => Layout::Inset,
        Some("full") => Layout::Full,
        Some(other) => return Err(ParamError::new("layout", format!("{other:?} is not inset, full or none"))),
    };
    let upscale = p.get("upscale").and_then(|v| v.as_bool()).unwrap_or(false);
    let named = |f: &str, default: &str| -> Result<String, ParamError> {
        Ok(str_param(p, f)?.filter(|s| !s.is_empty()).unwrap_or(default).to_string())
    };
    let lipsync_model = named("lipsync_model", DEFAULT_LIPSYNC)?;
    let upscale_model = named("upscale_model", DEFAULT_UPSCALER)?;
    if presenter.is_some() && layout != Layout::None && !model_file(config, &lipsync_model).is_file() {
        return Err(ParamError::new("lipsync_model", format!("model {lipsync_model:?} is not installed")));
    }
    if upscale && !model_file(config, &upscale_model).is_file() {
        return Err(ParamError::new("upscale_model", format!("model {upscale_model:?} is not installed")));
    }
    let params = RenderParams {
        script: script.to_string(),
        style: str_param(p, "style")?.unwrap_or_default().to_string(),
        negative_prompt: str_param(p, "negative_prompt")?.map(str::to_owned),
        model: named("model", DEFAULT_DIFFUSION)?,
        steps: opt_u32(p, "steps", 1..=i64::from(config.limits.max_steps))?,
        guidance: match p.get("guidance") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(float_param(p, "guidance", 0.0, 0.0..=30.0)?),
        },
        scheduler: str_param(p, "scheduler")?.map(str::to_owned),
        preset: str_param(p, "preset")?.map(str::to_owned),
        seed: int_param(p, "seed", 0, 0..=super::image::MAX_SEED)? as u64,
        keyframe_width: opt_u32(p, "keyframe_width", 8..=max_side)?,
        keyframe_height: opt_u32(p, "keyframe_height", 8..=max_side)?,
        width,
        height,
        fps: int_param(p, "fps", 25, 1..=60)? as u32,
        voice: named("voice", tts::DEFAULT_VOICE)?,
        length_scale: match p.get("length_scale") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(float_param(p, "length_scale", 1.0, 0.25..=4.0)? as f32),
        },
        presenter,
        layout,
        lipsync_model,
        upscale,
        upscale_model,
        music: artifact_param(p, "music")?.map(|u| u.to_string()),
        burn_subtitles: p.get("burn_subtitles").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    check_length(&plan(&params.script, &params.style, params.seed), &params, &config.limits)?;
    // The first scene's keyframe request validates model, scheduler, preset and sizes.
    validate_image(&keyframe_request(&params, &params.script, params.seed), config)?;
    Ok(params)
}

/// Holds a render to `limits.max_scenes`, and its narration (estimated from the script) to
/// `max_audio_seconds` and its film to `max_frames`.
fn check_length(plan: &Plan, p: &RenderParams, limits: &LimitsConfig) -> Result<(), ParamError> {
    let scenes = plan.scenes.len();
    if scenes > limits.max_scenes as usize {
        return Err(ParamError::new(
            "script",
            format!("has {scenes} scenes (paragraphs); the limit is {} (limits.max_scenes)", limits.max_scenes),
        ));
    }
    let seconds = plan.estimated_seconds(f64::from(p.length_scale.unwrap_or(1.0)), SCENE_GAP_S);
    super::bounds::media_fits(seconds, f64::from(p.fps), limits)
        .map_err(|m| ParamError::new("script", format!("would make {m}")))
}

fn keyframe_request(p: &RenderParams, prompt: &str, seed: u64) -> serde_json::Value {
    let mut v = json!({"prompt": prompt, "model": p.model, "seed": seed, "n": 1, "preview_every": 0});
    let put = |v: &mut serde_json::Value, k: &str, x: serde_json::Value| {
        if !x.is_null() {
            v[k] = x;
        }
    };
    put(&mut v, "negative_prompt", json!(p.negative_prompt));
    put(&mut v, "steps", json!(p.steps));
    put(&mut v, "guidance", json!(p.guidance));
    put(&mut v, "scheduler", json!(p.scheduler));
    put(&mut v, "preset", json!(p.preset));
    put(&mut v, "width", json!(p.keyframe_width));
    put(&mut v, "height", json!(p.keyframe_height));
    v
}

/// Failures of one render step, reported as `what: error`. Once the job is canceled a
/// pipeline stopped mid-run may fail with an error of its own; that is the cancellation.
struct Step<'a> {
    cancel: &'a CancellationToken,
    what: String,
}

impl Step<'_> {
    fn fail(&self, e: impl Failure) -> StageError {
        if self.cancel.is_cancelled() { StageError::Canceled } else { StageError::context(self.what.clone(), e) }
    }
}

fn step(cancel: &CancellationToken, what: impl Into<String>) -> Step<'_> {
    Step { cancel, what: what.into() }
}

fn read_json<T: for<'de> Deserialize<'de>>(run: &StageRun, stage: &str, name: &str) -> Result<T, StageError> {
    let art = run
        .sink
        .stage_artifacts(stage)
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| StageError::fatal(format!("stage {stage} left no {name}")))?;
    let bytes = std::fs::read(run.sink.artifact_path(&art))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::context(format!("{name} is unreadable"), e))
}

fn put_json(run: &StageRun, name: &str, value: &impl Serialize) -> Result<(), StageError> {
    let bytes = serde_json::to_vec_pretty(value)?;
    run.sink.put_artifact(name, "application/json", &bytes).map(|_| ())
}

impl JobKind for Render {
    fn name(&self) -> &'static str {
        "render"
    }

    /// The largest of its GPU stages: keyframes, talking head, upscale (one at a time).
    fn vram_mib(&self, params: &serde_json::Value, config: &crate::config::Config) -> u64 {
        let Ok(p) = serde_json::from_value::<RenderParams>(params.clone()) else { return 0 };
        let (w, h) = (p.keyframe_width.unwrap_or(p.width), p.keyframe_height.unwrap_or(p.height));
        let mut need = super::memory::diffusion_mib(config, &p.model, w, h, 1);
        if p.presenter.is_some() {
            need = need.max(super::memory::single_model_mib(config, &p.lipsync_model));
        }
        if p.upscale {
            need = need.max(super::memory::single_model_mib(config, &p.upscale_model));
        }
        need
    }

    fn models(&self, params: &serde_json::Value) -> Vec<String> {
        super::param_models(params, &["model", "voice", "lipsync_model", "upscale_model"])
    }

    fn validate(&self, params: serde_json::Value, ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError> {
        let p = validate_params(&params, ctx)?;
        serde_json::to_value(p).map_err(|e| ParamError::new("params", e.to_string()))
    }

    fn stages(&self, _params: &serde_json::Value) -> Vec<String> {
        STAGES.iter().map(|s| s.to_string()).collect()
    }

    fn run_stage(&self, stage: &str, run: &StageRun) -> Result<(), StageError> {
        let p: RenderParams = serde_json::from_value(run.params.clone())
            .map_err(|e| StageError::context("stored parameters are unreadable", e))?;
        match stage {
            "plan" => put_json(run, "plan.json", &plan(&p.script, &p.style, p.seed)),
            "keyframes" => keyframes(run, &p),
            "narration" => narration(run, &p),
            "motion" => motion(run, &p),
            "talking_head" => talking_head(run, &p),
            "upscale" => upscale(run, &p),
            "mux" => mux(run, &p),
            other => Err(StageError::fatal(format!("render has no stage {other:?}"))),
        }
    }
}

fn keyframes(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let plan: Plan = read_json(run, "plan", "plan.json")?;
    let n = plan.scenes.len() as u64;
    for scene in &plan.scenes {
        check_cancel(run.cancel)?;
        let request = keyframe_request(p, &scene.prompt, scene.seed);
        let params = validate_image(&request, run.config)?;
        let index = scene.index as u64;
        let progress = |pr: Progress| {
            let msg = format!("scene {}/{n}: step {}/{}", index + 1, pr.step, pr.total);
            run.sink.progress(index * 1000 + pr.step * 1000 / pr.total.max(1), n * 1000, Some(&msg));
        };
        let out = Image
            .render(run.config, run.engine, run.device, &params, None, Some(&progress), None, Some(run.cancel))
            .map_err(|e| step(run.cancel, format!("keyframe of scene {}", scene.index + 1)).fail(e))?;
        for w in &out.warnings {
            run.sink.log("warn", w);
        }
        let (_, png) = out.images.first().ok_or_else(|| StageError::fatal("diffusion returned no image"))?;
        run.sink.put_artifact(&format!("keyframe_{:02}.png", scene.index), "image/png", png)?;
    }
    Ok(())
}

fn narration(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let plan: Plan = read_json(run, "plan", "plan.json")?;
    let voice = Voice::find(&run.config.models_dir(), &p.voice)?;
    let opts = SpeechOptions { length_scale: p.length_scale, ..SpeechOptions::default() };
    let rate = voice.config.sample_rate;
    let gap = vec![0i16; (SCENE_GAP_S * f64::from(rate)) as usize];
    let mut samples: Vec<i16> = Vec::new();
    let mut scenes = Vec::new();
    let mut sentences = Vec::new();
    let n = plan.scenes.len() as u64;
    for scene in &plan.scenes {
        check_cancel(run.cancel)?;
        let start = samples.len() as f64 / f64::from(rate);
        let progress = |_: Progress| {};
        let speech = tts::synthesize(
            run.engine,
            &voice,
            &scene.sentences.join(" "),
            &opts,
            SynthesisRun { device: run.device, progress: &progress, cancel: run.cancel, on_sentence: None },
        )
        .map_err(|e| step(run.cancel, format!("narration of scene {}", scene.index + 1)).fail(e))?;
        for s in &speech.sentences {
            sentences.push(TimedSentence {
                scene: scene.index,
                text: s.text.clone(),
                start: start + s.start,
                end: start + s.end,
            });
        }
        samples.extend_from_slice(&speech.samples);
        if scene.index + 1 < plan.scenes.len() {
            samples.extend_from_slice(&gap);
        }
        scenes.push((start, samples.len() as f64 / f64::from(rate)));
        run.sink.progress(scene.index as u64 + 1, n, Some("narration"));
    }
    let timeline = Timeline { duration: samples.len() as f64 / f64::from(rate), scenes, sentences };
    // The estimate at submission may have been short (a slow voice, long words).
    super::bounds::media_fits(timeline.duration, f64::from(p.fps), &run.config.limits)
        .map_err(|m| StageError::fatal(format!("the narration would make {m}")))?;
    let wav = tts::Speech { sample_rate: rate, samples, sentences: Vec::new() }.wav_bytes()?;
    run.sink.put_artifact("narration.wav", "audio/wav", &wav)?;
    put_json(run, "timeline.json", &timeline)
}

/// Size the motion and talking-head stages render at: the output size, or the output
/// divided by the upscaler's factor when the upscale stage will bring it up.
fn working_size(run: &StageRun, p: &RenderParams) -> Result<(u32, u32, u32), StageError> {
    if !p.upscale {
        return Ok((p.width, p.height, 1));
    }
    let up = Upscaler::load(run.engine, run.device, &model_file(run.config, &p.upscale_model))
        .map_err(|e| StageError::context("upscale_model", e))?;
    let s = up.scale().max(1);
    Ok(((p.width / s).max(8) & !1, (p.height / s).max(8) & !1, s))
}

fn writer(run: &StageRun, path: &Path, w: u32, h: u32, fps: u32) -> Result<VideoWriter, StageError> {
    let mut opts = VideoOptions::new(w, h, fps);
    opts.encoder = H264Encoder::for_device(run.device);
    opts.quality = INTERMEDIATE_QUALITY;
    Ok(VideoWriter::create(path, &opts)?)
}

fn motion(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let plan: Plan = read_json(run, "plan", "plan.json")?;
    let timeline: Timeline = read_json(run, "narration", "timeline.json")?;
    let (w, h, _) = working_size(run, p)?;
    let transition = ((0.4 * f64::from(p.fps)) as usize).max(1);
    let lengths = timeline.scene_frames(p.fps, if plan.scenes.len() > 1 { transition } else { 0 });
    let mut keyframes: Vec<RgbImage> = Vec::new();
    for scene in &plan.scenes {
        let path = stage_file(run, "keyframes", &format!("keyframe_{:02}.png", scene.index))
            .ok_or_else(|| StageError::fatal(format!("keyframe of scene {} is missing", scene.index + 1)))?;
        keyframes.push(
            image::open(&path).map_err(|e| StageError::context(format!("keyframe {}", path.display()), e))?.to_rgb8(),
        );
    }
    let camera = CameraMotion;
    let err = step(run.cancel, "motion");
    let mut clips = Vec::new();
    for ((scene, key), frames) in plan.scenes.iter().zip(&keyframes).zip(&lengths) {
        let spec = ClipSpec {
            duration_s: *frames as f64 / f64::from(p.fps),
            fps: p.fps,
            width: w,
            height: h,
            seed: scene.seed,
        };
        clips.push(camera.animate(key, spec, run.cancel).map_err(|e| err.fail(e))?);
    }
    let total = total_frames(timeline.duration, p.fps) as u64;
    let out = run.sink.scratch_dir().join("motion.mp4");
    let mut video = writer(run, &out, w, h, p.fps)?;
    for (i, frame) in Sequence::new(clips, if plan.scenes.len() > 1 { transition } else { 0 }).enumerate() {
        video.push(&frame.map_err(|e| err.fail(e))?).map_err(|e| err.fail(e))?;
        if i % 25 == 0 {
            check_cancel(run.cancel)?;
            run.sink.progress(i as u64, total, Some("camera moves"));
        }
    }
    video.finish().map_err(|e| err.fail(e))?;
    run.sink.put_artifact_file("motion.mp4", "video/mp4", &out).map(|_| ())
}

fn talking_head(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let Some(presenter) = p.presenter.as_ref().filter(|_| p.layout != Layout::None) else {
        run.sink.log("info", "no presenter: talking head skipped");
        return Ok(());
    };
    let err = step(run.cancel, "talking head");
    let id = ulid::Ulid::from_string(&presenter.portrait).map_err(|e| err.fail(e))?;
    let art = run.sink.artifact(id).ok_or_else(|| StageError::fatal(format!("presenter portrait {id} not found")))?;
    let portrait = image::open(run.sink.artifact_path(&art))
        .map_err(|e| StageError::context(format!("presenter portrait {id}"), e))?
        .to_rgb8();
    let wav =
        stage_file(run, "narration", "narration.wav").ok_or_else(|| StageError::fatal("narration.wav is missing"))?;
    let audio_16k = decode_file(&wav).and_then(|a| a.mono_at(16_000)).map_err(|e| err.fail(e))?;
    let model =
        Wav2Lip::load(run.engine, run.device, &model_file(run.config, &p.lipsync_model)).map_err(|e| err.fail(e))?;
    let track = FaceTrack::still(&portrait, FaceBox::from_xywh(presenter.face_box)).map_err(|e| err.fail(e))?;
    let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, Some("lip-sync"));
    let mut faces = lipsync_frames(&model, track, &audio_16k, p.fps, DEFAULT_BATCH, run.cancel, &progress)
        .map_err(|e| err.fail(e))?;
    let motion = stage_file(run, "motion", "motion.mp4").ok_or_else(|| StageError::fatal("motion.mp4 is missing"))?;
    let scenes = VideoReader::open(&motion).map_err(|e| err.fail(e))?;
    let info = scenes.info();
    let out = run.sink.scratch_dir().join("composed.mp4");
    let mut video = writer(run, &out, info.width, info.height, p.fps)?;
    let mut last_face: Option<RgbImage> = None;
    for scene in scenes {
        let scene = scene.map_err(|e| err.fail(e))?;
        if let Some(face) = faces.next() {
            last_face = Some(face.map_err(|e| err.fail(e))?);
        }
        let frame = match &last_face {
            Some(face) => composite(&scene, face, p.layout),
            None => scene,
        };
        video.push(&frame).map_err(|e| err.fail(e))?;
    }
    video.finish().map_err(|e| err.fail(e))?;
    run.sink.put_artifact_file("composed.mp4", "video/mp4", &out).map(|_| ())
}

fn latest_video(run: &StageRun) -> Result<PathBuf, StageError> {
    stage_file(run, "upscale", "upscaled.mp4")
        .or_else(|| stage_file(run, "talking_head", "composed.mp4"))
        .or_else(|| stage_file(run, "motion", "motion.mp4"))
        .ok_or_else(|| StageError::fatal("no video from earlier stages"))
}

fn upscale(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    if !p.upscale {
        return Ok(());
    }
    let err = step(run.cancel, "upscale");
    let input = latest_video(run)?;
    let up =
        Upscaler::load(run.engine, run.device, &model_file(run.config, &p.upscale_model)).map_err(|e| err.fail(e))?;
    let out = run.sink.scratch_dir().join("upscaled.mp4");
    let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, Some("upscale"));
    up.upscale_video(
        &input,
        &out,
        TileOptions { tile: 0, pad: 10 },
        H264Encoder::for_device(run.device),
        run.cancel,
        &progress,
    )
    .map_err(|e| err.fail(e))?;
    run.sink.put_artifact_file("upscaled.mp4", "video/mp4", &out).map(|_| ())
}

fn mux(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let err = step(run.cancel, "mux");
    let timeline: Timeline = read_json(run, "narration", "timeline.json")?;
    let scratch = run.sink.scratch_dir();
    let srt = scratch.join("film.srt");
    let vtt = scratch.join("film.vtt");
    let cues = timeline.cues();
    std::fs::write(&srt, to_srt(&cues)).map_err(|e| err.fail(e))?;
    std::fs::write(&vtt, to_webvtt(&cues)).map_err(|e| err.fail(e))?;
    let narration =
        stage_file(run, "narration", "narration.wav").ok_or_else(|| StageError::fatal("narration.wav is missing"))?;
    let audio = match &p.music {
        None => narration,
        Some(id) => {
            let id = ulid::Ulid::from_string(id).map_err(|e| err.fail(e))?;
            let art =
                run.sink.artifact(id).ok_or_else(|| StageError::fatal(format!("music artifact {id} not found")))?;
            let music = decode_file(&run.sink.artifact_path(&art)).map_err(|e| StageError::context("music", e))?;
            let voice: Audio = decode_file(&narration).map_err(|e| err.fail(e))?;
            let mixed = mix_with_ducking(&voice, &music, &Ducking::default()).map_err(|e| err.fail(e))?;
            let path = scratch.join("mixed.wav");
            write_wav(&path, &mixed).map_err(|e| err.fail(e))?;
            path
        }
    };
    let input = latest_video(run)?;
    let reader = VideoReader::open(&input).map_err(|e| err.fail(e))?;
    let info = reader.info();
    let mut opts = VideoOptions::new(info.width, info.height, p.fps);
    opts.encoder = H264Encoder::for_device(run.device);
    opts.audio = Some(audio);
    opts.subtitles = Some(srt.clone());
    opts.burn_subtitles = p.burn_subtitles.then(|| srt.clone());
    let out = scratch.join("film.mp4");
    let mut video = VideoWriter::create(&out, &opts).map_err(|e| err.fail(e))?;
    let total = total_frames(timeline.duration, p.fps) as u64;
    for (i, frame) in reader.enumerate() {
        video.push(&frame.map_err(|e| err.fail(e))?).map_err(|e| err.fail(e))?;
        if i % 25 == 0 {
            check_cancel(run.cancel)?;
            run.sink.progress(i as u64, total, Some("mux"));
        }
    }
    video.finish().map_err(|e| {
        if let crate::media::ffmpeg::FfmpegError::Encode { stderr, .. } = &e {
            run.sink.log("error", &format!("ffmpeg said:\n{stderr}"));
        }
        err.fail(e)
    })?;
    run.sink.put_artifact_file("film.srt", "application/x-subrip", &srt)?;
    run.sink.put_artifact_file("film.vtt", "text/vtt", &vtt)?;
    run.sink.put_artifact_file("film.mp4", "video/mp4", &out).map(|_| ())
}
