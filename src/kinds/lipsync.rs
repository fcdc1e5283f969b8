//! `lipsync`: a portrait (image or short video) and a narration become a talking-head
//! MP4 with the narration as its sound track.
//!
//! Params: `portrait` (artifact id), the narration as `audio` (artifact id) or as `text`
//! spoken first by a Piper `voice` (with `length_scale`) in a stage of its own,
//! `face_box` `[x, y, w, h]` (from the request or the presenter's profile; found by the
//! installed `face-detector` model when left out), `model`
//! (installed Wav2Lip, default `wav2lip`), `fps` (25), `batch_size` (16).

use image::RgbImage;
use serde_json::json;

use super::inputs::{InputFile, artifact_param, box_param, input_file, model_param, stage_file};
use super::speech::{parse_params as parse_speech, speak, validate_speech};
use super::{JobKind, ParamError, StageError, StageRun, ValidateCtx, int_param, reject_unknown};
use crate::media::audio::{Audio, decode_bytes, write_wav};
use crate::media::ffmpeg::{H264Encoder, VideoOptions, VideoWriter};
use crate::media::mel::MEL_SAMPLE_RATE;
use crate::media::visual::open_visual;
use crate::models::model_file;
use crate::pipelines::Progress;
use crate::pipelines::lipsync::{
    DEFAULT_BATCH, DEFAULT_FPS, DETECTOR_MODEL, FaceBox, FaceTrack, OnnxFaceDetector, Wav2Lip, lipsync_frames,
};

/// The `lipsync` job kind.
pub struct Lipsync;

/// Default installed model name.
pub const DEFAULT_MODEL: &str = "wav2lip";
/// Most frames read from a video portrait (it is cycled when the narration is longer).
const MAX_SOURCE_FRAMES: usize = 750;
/// Memory allowed for a video portrait's decoded frames; large videos get fewer frames.
const MAX_SOURCE_BYTES: usize = 1 << 30;
const STAGE: &str = "lipsync";
/// The stage that speaks `text` first.
const SPEECH_STAGE: &str = "speech";

impl JobKind for Lipsync {
    fn name(&self) -> &'static str {
        "lipsync"
    }

    fn vram_mib(&self, params: &serde_json::Value, config: &crate::config::Config) -> u64 {
        let model = params.get("model").and_then(|v| v.as_str()).unwrap_or(DEFAULT_MODEL);
        super::memory::single_model_mib(config, model)
    }

    fn models(&self, params: &serde_json::Value) -> Vec<String> {
        super::param_models(params, &["model"])
    }

    fn validate(&self, params: serde_json::Value, ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError> {
        reject_unknown(
            &params,
            &["portrait", "audio", "text", "voice", "length_scale", "face_box", "model", "fps", "batch_size"],
        )?;
        let portrait = artifact_param(&params, "portrait")?.ok_or_else(|| ParamError::new("portrait", "required"))?;
        let given = |f: &str| params.get(f).is_some_and(|v| !v.is_null());
        let (audio, speech) = match (given("audio"), given("text")) {
            (true, true) => return Err(ParamError::new("text", "give the narration as audio or as text, not both")),
            (false, false) => return Err(ParamError::new("audio", "required (or give `text` to speak first)")),
            (true, false) => {
                for f in ["voice", "length_scale"] {
                    if given(f) {
                        return Err(ParamError::new(f, "only applies to `text` narration"));
                    }
                }
                (artifact_param(&params, "audio")?.map(|a| a.to_string()), None)
            }
            (false, true) => {
                let mut speech = json!({"text": params["text"]});
                for f in ["voice", "length_scale"] {
                    if given(f) {
                        speech[f] = params[f].clone();
                    }
                }
                (None, Some(validate_speech(&speech, ctx.config)?.to_json()))
            }
        };
        let face_box = box_param(&params, "face_box")?;
        if face_box.is_none() && !model_file(ctx.config, DETECTOR_MODEL).is_file() {
            return Err(ParamError::new(
                "face_box",
                format!("required: [x, y, w, h] of the face (no face detector is installed as {DETECTOR_MODEL:?})"),
            ));
        }
        let model = model_param(&params, "model", DEFAULT_MODEL, ctx.config)?;
        let fps = int_param(&params, "fps", i64::from(DEFAULT_FPS), 1..=60)?;
        if let Some(text) = params.get("text").and_then(|t| t.as_str()) {
            // Spoken text's length is estimated as a render's narration is.
            let scale = params.get("length_scale").and_then(|v| v.as_f64()).unwrap_or(1.0);
            let words = text.split_whitespace().count() as f64;
            let seconds = words / crate::pipelines::render::plan::WORDS_PER_SECOND * scale;
            super::bounds::media_fits(seconds, fps as f64, &ctx.config.limits)
                .map_err(|m| ParamError::new("text", format!("would make {m}")))?;
        }
        let batch = int_param(&params, "batch_size", DEFAULT_BATCH as i64, 1..=256)?;
        Ok(json!({
            "portrait": portrait.to_string(),
            "audio": audio,
            "speech": speech,
            "face_box": face_box,
            "model": model,
            "fps": fps,
            "batch_size": batch,
        }))
    }

    fn stages(&self, params: &serde_json::Value) -> Vec<String> {
        speaks(params).then(|| SPEECH_STAGE.to_string()).into_iter().chain([STAGE.to_string()]).collect()
    }

    fn run_stage(&self, stage: &str, run: &StageRun) -> Result<(), StageError> {
        if stage == SPEECH_STAGE {
            let p = parse_speech(&run.params["speech"], usize::MAX)?;
            return speak(run, &p);
        }
        if stage != STAGE {
            return Err(StageError::fatal(format!("lipsync has no stage {stage:?}")));
        }
        let p = run.params;
        let fps = p.get("fps").and_then(|v| v.as_u64()).unwrap_or(u64::from(DEFAULT_FPS)) as u32;
        let batch = p.get("batch_size").and_then(|v| v.as_u64()).unwrap_or(DEFAULT_BATCH as u64) as usize;
        let face = box_param(p, "face_box")?.map(FaceBox::from_xywh);
        let model_name = p.get("model").and_then(|v| v.as_str()).unwrap_or(DEFAULT_MODEL);

        let portrait = input_file(run, "portrait")?;
        let frames = portrait_frames(&portrait)?;
        let audio = narration(run)?;
        super::bounds::media_fits(audio.duration_s(), f64::from(fps), &run.config.limits)
            .map_err(|m| StageError::fatal(format!("this narration would make {m}")))?;
        let audio_16k = audio.mono_at(MEL_SAMPLE_RATE)?;

        let model = Wav2Lip::load(run.engine, run.device, &model_file(run.config, model_name))?;
        let track = match face {
            Some(face) => FaceTrack::with_boxes(&frames, &[face], &portrait.label)?,
            None => {
                let detector = OnnxFaceDetector::load(run.engine, run.device, &model_file(run.config, DETECTOR_MODEL))?;
                FaceTrack::detect(&frames, &detector, &portrait.label)?
            }
        };
        let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, pr.message.as_deref());
        let clip = lipsync_frames(&model, track, &audio_16k, fps, batch, run.cancel, &progress)?;
        run.sink.log("info", &format!("lip-syncing {} frames at {fps} fps with {model_name}", clip.total()));

        // The sound track is the decoded narration itself, so picture and sound agree.
        let scratch = run.sink.scratch_dir();
        let wav = scratch.join("narration.wav");
        write_wav(&wav, &audio)?;
        let out = scratch.join("lipsync.mp4");
        let (w, h) = frames[0].dimensions();
        let mut opts = VideoOptions::new(w, h, fps);
        opts.encoder = H264Encoder::for_device(run.device);
        opts.audio = Some(wav);
        let mut writer = VideoWriter::create(&out, &opts).map_err(|e| ffmpeg_error(run, e))?;
        for frame in clip {
            writer.push(&frame?).map_err(|e| ffmpeg_error(run, e))?;
        }
        writer.finish().map_err(|e| ffmpeg_error(run, e))?;
        run.sink.put_artifact_file("lipsync.mp4", "video/mp4", &out)?;
        Ok(())
    }
}

/// The portrait's frames: one for an image; for a video up to [`MAX_SOURCE_FRAMES`] within
/// [`MAX_SOURCE_BYTES`].
fn portrait_frames(portrait: &InputFile) -> Result<Vec<RgbImage>, StageError> {
    let visual = open_visual(&portrait.path, &portrait.label, Some(&portrait.artifact.media_type))?;
    let (w, h) = visual.size();
    let max_frames = (MAX_SOURCE_BYTES / (w as usize * h as usize * 3).max(1)).clamp(1, MAX_SOURCE_FRAMES);
    Ok(visual.frames(&portrait.label, max_frames)?)
}

/// Whether the validated job speaks `text` first (its parameters carry a `speech` request).
fn speaks(params: &serde_json::Value) -> bool {
    params.get("speech").is_some_and(|s| s.is_object())
}

/// The narration to lip-sync: the speech stage's WAV when the job speaks `text`, else the
/// `audio` artifact.
fn narration(run: &StageRun) -> Result<Audio, StageError> {
    let (path, name, label) = if speaks(run.params) {
        let path = stage_file(run, SPEECH_STAGE, "speech.wav")
            .ok_or_else(|| StageError::fatal("the speech stage left no speech.wav"))?;
        (path, "speech.wav".to_string(), "the spoken text".to_string())
    } else {
        let audio = input_file(run, "audio")?;
        (audio.path, audio.artifact.name, audio.label)
    };
    let bytes = std::fs::read(&path).map_err(|e| StageError::context(format!("cannot read {label}"), e))?;
    decode_bytes(bytes, &name).map_err(|e| StageError::context(label, e))
}

/// Puts ffmpeg's complaint into the job's events and fails the stage with it.
pub(crate) fn ffmpeg_error(run: &StageRun, e: crate::media::ffmpeg::FfmpegError) -> StageError {
    run.sink.log("error", &e.to_string());
    e.into()
}
