//! The render's stages after `plan`, one function each: keyframes → narration → motion →
//! talking head → upscale → mux. Each reads earlier stages' artifacts and stores its own.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::SCENE_GAP_S;
use super::params::{RenderParams, keyframe_request};
use crate::kinds::StageName;
use crate::kinds::StageRun;
use crate::kinds::image::Image;
use crate::kinds::inputs::{stage_file, stage_model_file};
use crate::kinds::{Failure, StageError};
use crate::media::audio::{Audio, decode_file, write_wav};
use crate::media::ffmpeg::{H264Encoder, VideoOptions, VideoReader, VideoWriter, loudness};
use crate::media::mix::{Ducking, mix_with_ducking};
use crate::media::subtitles::{iso639_2, line_columns, to_srt, to_webvtt};
use crate::models::ModelKind;
use crate::pipelines::lipsync::{
    DEFAULT_BATCH, FaceBox, FaceDetector, FaceTrack, MAX_PORTRAIT_SIDE, OnnxFaceDetector, Wav2Lip, fit_still,
    lipsync_frames,
};
use crate::pipelines::motion::{CameraMotion, ClipSpec, ImageToVideo, Sequence};
use crate::pipelines::render::plan::Plan;
use crate::pipelines::render::{Layout, TimedSentence, Timeline, composite, total_frames};
use crate::pipelines::tts::{self, SpeechOptions, SynthesisRun, Voice};
use crate::pipelines::upscale::{TileOptions, Upscaler};
use crate::pipelines::{Progress, check_cancel};

/// Intermediate videos are kept near-lossless; only the final mux uses normal quality.
const INTERMEDIATE_QUALITY: u8 = 12;

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

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(
    run: &StageRun,
    stage: StageName,
    name: &str,
) -> Result<T, StageError> {
    let art = run
        .sink
        .stage_artifacts(stage)
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| StageError::fatal(format!("stage {stage} left no {name}")))?;
    let bytes = std::fs::read(run.sink.artifact_path(&art))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::context(format!("{name} is unreadable"), e))
}

pub(super) fn put_json(run: &StageRun, name: &str, value: &impl Serialize) -> Result<(), StageError> {
    let bytes = serde_json::to_vec_pretty(value)?;
    run.sink.put_artifact(name, "application/json", &bytes).map(|_| ())
}

pub(super) fn keyframes(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let plan: Plan = read_json(run, StageName::Plan, "plan.json")?;
    let n = plan.scenes.len() as u64;
    // Said once, so a user sees which picture model (request, profile or default) drew them.
    run.sink.log("info", &format!("keyframes with diffusion model {}", p.model));
    for scene in &plan.scenes {
        check_cancel(run.cancel)?;
        let params = keyframe_request(p, &scene.prompt, scene.seed).and_then(|request| request.resolve(run.config))?;
        let index = scene.index as u64;
        let progress = |pr: Progress| {
            let msg = format!("scene {}/{n}: step {}/{}", index + 1, pr.step, pr.total);
            run.sink.progress(index * 1000 + pr.step * 1000 / pr.total.max(1), n * 1000, Some(&msg));
        };
        let out = Image
            .render(run.config, run.engine, run.device, &params, None, None, Some(&progress), None, Some(run.cancel))
            .map_err(|e| step(run.cancel, format!("keyframe of scene {}", scene.index + 1)).fail(e))?;
        for w in &out.warnings {
            run.sink.log("warn", w);
        }
        let (_, png) = out.images.first().ok_or_else(|| StageError::fatal("diffusion returned no image"))?;
        run.sink.put_artifact(&format!("keyframe_{:02}.png", scene.index), "image/png", png)?;
    }
    Ok(())
}

pub(super) fn narration(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let plan: Plan = read_json(run, StageName::Plan, "plan.json")?;
    let voice = Voice::find(&run.config.models_dir(), &p.voice)?;
    // A film's sentences are its subtitle cues: "Dr. Åsa Lindqvist" is one of them.
    let opts = SpeechOptions { length_scale: p.length_scale, titles_run_on: true, ..SpeechOptions::default() };
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
    let language = iso639_2(&voice.config.espeak_voice).unwrap_or_default().to_string();
    let timeline = Timeline { duration: samples.len() as f64 / f64::from(rate), scenes, sentences, language };
    // The estimate at submission may have been short (a slow voice, long words).
    crate::kinds::bounds::media_fits(timeline.duration, f64::from(p.fps), &run.config.limits)
        .map_err(|m| StageError::fatal(format!("the narration would make {m}{}", m.film_remedy())))?;
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
    let file = stage_model_file(run.config, "upscale_model", ModelKind::Upscale, &p.upscale_model)?;
    let up = Upscaler::load(run.engine, run.device, &file).map_err(|e| StageError::context("upscale_model", e))?;
    let s = up.scale().max(1);
    Ok(((p.width / s).max(8) & !1, (p.height / s).max(8) & !1, s))
}

fn writer(run: &StageRun, path: &Path, w: u32, h: u32, fps: u32) -> Result<VideoWriter, StageError> {
    let mut opts = VideoOptions::new(w, h, fps);
    opts.encoder = H264Encoder::for_device(run.device);
    opts.quality = INTERMEDIATE_QUALITY;
    Ok(VideoWriter::create(path, &opts)?)
}

pub(super) fn motion(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let plan: Plan = read_json(run, StageName::Plan, "plan.json")?;
    let timeline: Timeline = read_json(run, StageName::Narration, "timeline.json")?;
    let (w, h, _) = working_size(run, p)?;
    let transition = ((0.4 * f64::from(p.fps)) as usize).max(1);
    let lengths = timeline.scene_frames(p.fps, if plan.scenes.len() > 1 { transition } else { 0 });
    let mut keyframes: Vec<RgbImage> = Vec::new();
    for scene in &plan.scenes {
        let path = stage_file(run, StageName::Keyframes, &format!("keyframe_{:02}.png", scene.index))
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

pub(super) fn talking_head(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let Some(presenter) = p.presenter.as_ref().filter(|_| p.layout != Layout::None) else {
        run.sink.log("info", "no presenter: talking head skipped");
        return Ok(());
    };
    // Said once, as the keyframes' model is: the request's, its profile's or the default.
    run.sink.log("info", &format!("talking head with lip-sync model {}", p.lipsync_model));
    let err = step(run.cancel, "talking head");
    let id = ulid::Ulid::from_string(&presenter.portrait).map_err(|e| err.fail(e))?;
    let art = run.sink.artifact(id)?.ok_or_else(|| StageError::fatal(format!("presenter portrait {id} not found")))?;
    let portrait = crate::media::picture::open(&run.sink.artifact_path(&art))
        .map_err(|e| StageError::context(format!("presenter portrait {id}"), e))?;
    let wav = stage_file(run, StageName::Narration, "narration.wav")
        .ok_or_else(|| StageError::fatal("narration.wav is missing"))?;
    let audio_16k = decode_file(&wav).and_then(|a| a.mono_at(16_000)).map_err(|e| err.fail(e))?;
    let model = Wav2Lip::load(
        run.engine,
        run.device,
        &stage_model_file(run.config, "lipsync_model", ModelKind::Lipsync, &p.lipsync_model)?,
    )
    .map_err(|e| err.fail(e))?;
    // Never lip-synced larger than the film shows it: a phone photo's full size would only
    // cost memory (a batch of frames each its size) and time.
    let cap = p.width.max(p.height).min(MAX_PORTRAIT_SIDE);
    let (portrait, scale) = fit_still(portrait, cap);
    let face = match (presenter.face_box, &presenter.face_model) {
        (Some(b), _) => FaceBox::from_xywh(b).scaled(scale),
        (None, Some(name)) => find_face(run, name, &portrait)?,
        (None, None) => return Err(StageError::fatal("the presenter has no face box and no face detector")),
    };
    let track = FaceTrack::still(&portrait, face).map_err(|e| err.fail(e))?;
    let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, Some("lip-sync"));
    let mut faces = lipsync_frames(&model, track, &audio_16k, p.fps, DEFAULT_BATCH, run.cancel, &progress)
        .map_err(|e| err.fail(e))?;
    let motion =
        stage_file(run, StageName::Motion, "motion.mp4").ok_or_else(|| StageError::fatal("motion.mp4 is missing"))?;
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

/// The face the detector `name` finds in the (scaled) presenter portrait.
fn find_face(run: &StageRun, name: &str, portrait: &RgbImage) -> Result<FaceBox, StageError> {
    let file = stage_model_file(run.config, "presenter.face_model", ModelKind::Face, name)?;
    let detector = OnnxFaceDetector::load(run.engine, run.device, &file)?;
    detector.detect(portrait)?.ok_or_else(|| {
        StageError::fatal(format!(
            "the face detector {name} found no face in the presenter portrait; give its face box \
             (`reelbox profiles update NAME --face-box x,y,w,h`, or the web studio's profile editor)"
        ))
    })
}

fn latest_video(run: &StageRun) -> Result<PathBuf, StageError> {
    stage_file(run, StageName::Upscale, "upscaled.mp4")
        .or_else(|| stage_file(run, StageName::TalkingHead, "composed.mp4"))
        .or_else(|| stage_file(run, StageName::Motion, "motion.mp4"))
        .ok_or_else(|| StageError::fatal("no video from earlier stages"))
}

pub(super) fn upscale(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    if !p.upscale {
        return Ok(());
    }
    run.sink.log("info", &format!("upscale with upscale model {}", p.upscale_model));
    let err = step(run.cancel, "upscale");
    let input = latest_video(run)?;
    let file = stage_model_file(run.config, "upscale_model", ModelKind::Upscale, &p.upscale_model)?;
    let up = Upscaler::load(run.engine, run.device, &file).map_err(|e| err.fail(e))?;
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

pub(super) fn mux(run: &StageRun, p: &RenderParams) -> Result<(), StageError> {
    let err = step(run.cancel, "mux");
    let timeline: Timeline = read_json(run, StageName::Narration, "timeline.json")?;
    let scratch = run.sink.scratch_dir();
    let srt = scratch.join("film.srt");
    let vtt = scratch.join("film.vtt");
    let cues = timeline.cues(line_columns(p.width, p.height));
    std::fs::write(&srt, to_srt(&cues)).map_err(|e| err.fail(e))?;
    std::fs::write(&vtt, to_webvtt(&cues)).map_err(|e| err.fail(e))?;
    let narration = stage_file(run, StageName::Narration, "narration.wav")
        .ok_or_else(|| StageError::fatal("narration.wav is missing"))?;
    let audio = match &p.music {
        None => narration,
        Some(id) => {
            let id = ulid::Ulid::from_string(id).map_err(|e| err.fail(e))?;
            let art =
                run.sink.artifact(id)?.ok_or_else(|| StageError::fatal(format!("music artifact {id} not found")))?;
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
    // Every film as loud as the last (narration alone or over music), its peaks under
    // full scale so the AAC never clips on playback.
    opts.audio_filter = loudness::normalising_filter(&audio).map_err(|e| err.fail(e))?;
    opts.audio = Some(audio);
    // A player or file manager lists the film by its opening words, not as "film.mp4".
    opts.title = timeline.title();
    opts.subtitles = Some(srt.clone());
    // A player lists the track by its language: the voice's, `und` when it is not known.
    opts.subtitle_language = if timeline.language.is_empty() { "und".into() } else { timeline.language.clone() };
    opts.burn_subtitles = p.burn_subtitles.then(|| srt.clone());
    // A viewer skipping through the film lands on a keyframe every two seconds and at
    // each scene's start, not ten seconds back (x264's default).
    opts.keyframe_interval = Some(p.fps * 2);
    // At the time of the scene's first frame (its start, rounded as the motion stage cut
    // it): ffmpeg takes the frame nearest each time.
    let fps = f64::from(p.fps);
    opts.keyframes_at = timeline.scenes.iter().skip(1).map(|(start, _)| (start * fps).round() / fps).collect();
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
