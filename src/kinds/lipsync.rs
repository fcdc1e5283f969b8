//! `lipsync`: a portrait (image or short video) and a narration become a talking-head
//! MP4 with the narration as its sound track.
//!
//! Params ([`LipsyncRequest`] → [`LipsyncParams`]): `portrait` (artifact id), the narration as `audio` (artifact id) or as `text`
//! spoken first by a Piper `voice` (with `length_scale`) in a stage of its own,
//! `face_box` `[x, y, w, h]` (from the request or the presenter's profile; found by the
//! default face detector when left out, recorded as `face_model`), `model` (installed
//! Wav2Lip; the lip-sync default, `Catalog::default_model`), `fps` (25), `batch_size` (16).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::fields::{artifact_param, box_param, float_field, int_field, reject_unknown, string_field, u32_in};
use super::inputs::{
    InputFile, Takes, face_detector, input_file, installed_model, require_input, stage_file, stage_model_file,
};
use super::speech::{SpeechParams, SpeechRequest, speak};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::kinds::StageName;
use crate::media::audio::{Audio, decode_bytes, write_wav};
use crate::media::ffmpeg::{H264Encoder, VideoOptions, VideoWriter};
use crate::media::mel::MEL_SAMPLE_RATE;
use crate::media::visual::{Visual, open_visual};
use crate::models::{Catalog, ModelKind};
use crate::pipelines::Progress;
use crate::pipelines::lipsync::{
    DEFAULT_BATCH, DEFAULT_FPS, FaceBox, FaceTrack, MAX_PORTRAIT_SIDE, OnnxFaceDetector, Wav2Lip, fit_size, fit_still,
    lipsync_frames,
};

/// The `lipsync` job kind.
pub struct Lipsync;

/// The model a stored record without one reads as (records always carry one).
pub const DEFAULT_MODEL: &str = "wav2lip";
/// Most frames read from a video portrait (it is cycled when the narration is longer).
const MAX_SOURCE_FRAMES: usize = 750;
/// Memory allowed for a video portrait's decoded frames; large videos get fewer frames.
const MAX_SOURCE_BYTES: usize = 1 << 30;
const STAGE: StageName = StageName::Lipsync;
/// The stage that speaks `text` first.
const SPEECH_STAGE: StageName = StageName::Speech;
const KNOWN: [&str; 9] =
    ["portrait", "audio", "text", "voice", "length_scale", "face_box", "model", "fps", "batch_size"];

/// `lipsync` parameters as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LipsyncRequest {
    /// Artifact id of the portrait (image or short video).
    pub portrait: Option<String>,
    /// Artifact id of the narration; or give `text`.
    pub audio: Option<String>,
    /// Narration to speak first with `voice` and `length_scale`.
    pub text: Option<String>,
    pub voice: Option<String>,
    pub length_scale: Option<f64>,
    /// `[x, y, w, h]` of the face; found by the face detector when unset.
    pub face_box: Option<[u32; 4]>,
    pub model: Option<String>,
    pub fps: Option<i64>,
    pub batch_size: Option<i64>,
}

/// Validated `lipsync` parameters, as stored with the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LipsyncParams {
    pub portrait: String,
    pub audio: Option<String>,
    /// The speech job this one runs first, when the narration is given as text.
    pub speech: Option<SpeechParams>,
    pub face_box: Option<[u32; 4]>,
    pub model: String,
    /// The face detector that finds the face when no `face_box` was given, chosen at
    /// submission (records from before it was kept have none: the default at run time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_model: Option<String>,
    pub fps: u32,
    pub batch_size: u32,
}

impl Default for LipsyncParams {
    fn default() -> Self {
        Self {
            portrait: String::new(),
            audio: None,
            speech: None,
            face_box: None,
            model: DEFAULT_MODEL.into(),
            face_model: None,
            fps: DEFAULT_FPS,
            batch_size: DEFAULT_BATCH as u32,
        }
    }
}

impl LipsyncRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &KNOWN)?;
        Ok(Self {
            portrait: artifact_param(params, "portrait")?.map(|u| u.to_string()),
            audio: artifact_param(params, "audio")?.map(|u| u.to_string()),
            text: string_field(params, "text")?,
            voice: string_field(params, "voice")?,
            length_scale: float_field(params, "length_scale")?,
            face_box: box_param(params, "face_box")?,
            model: string_field(params, "model")?,
            fps: int_field(params, "fps")?,
            batch_size: int_field(params, "batch_size")?,
        })
    }

    /// Checks the narration, face and model against the install and fills the defaults.
    pub fn resolve(self, config: &Config) -> Result<LipsyncParams, ParamError> {
        let portrait = self.portrait.ok_or_else(|| ParamError::new("portrait", "required"))?;
        let (audio, speech) = match (self.audio, &self.text) {
            (Some(_), Some(_)) => {
                return Err(ParamError::new("text", "give the narration as audio or as text, not both"));
            }
            (None, None) => return Err(ParamError::new("audio", "required (or give `text` to speak first)")),
            (Some(audio), None) => {
                let stray = [("voice", self.voice.is_some()), ("length_scale", self.length_scale.is_some())];
                if let Some((f, _)) = stray.iter().find(|(_, given)| *given) {
                    return Err(ParamError::new(*f, "only applies to `text` narration"));
                }
                (Some(audio), None)
            }
            (None, Some(text)) => {
                let speech = SpeechRequest {
                    text: Some(text.clone()),
                    voice: self.voice.clone(),
                    length_scale: self.length_scale,
                    ..SpeechRequest::default()
                };
                (None, Some(speech.resolve(config)?))
            }
        };
        let face_model = match self.face_box {
            Some(_) => None,
            None => Some(face_detector("face_box", config)?),
        };
        let model = installed_model("model", self.model.as_deref(), ModelKind::Lipsync, config)?;
        let fps = u32_in("fps", self.fps.unwrap_or(i64::from(DEFAULT_FPS)), 1..=60)?;
        if let Some(text) = &self.text {
            // Spoken text's length is estimated as a render's narration is.
            let scale = self.length_scale.unwrap_or(1.0);
            let words = crate::pipelines::render::plan::spoken_words(text) as f64;
            let seconds = words / crate::pipelines::render::plan::WORDS_PER_SECOND * scale;
            super::bounds::media_fits(seconds, f64::from(fps), &config.limits)
                .map_err(|m| ParamError::new("text", format!("would make {m}")))?;
        }
        let batch_size = u32_in("batch_size", self.batch_size.unwrap_or(DEFAULT_BATCH as i64), 1..=256)?;
        Ok(LipsyncParams { portrait, audio, speech, face_box: self.face_box, model, face_model, fps, batch_size })
    }
}

impl TypedKind for Lipsync {
    type Params = LipsyncParams;
    const NAME: &'static str = "lipsync";
    const FIRST_STAGE: StageName = StageName::Speech;

    fn vram_mib(&self, p: &LipsyncParams, config: &Config) -> u64 {
        super::memory::single_model_mib(config, &p.model)
    }

    fn models(&self, p: &LipsyncParams) -> Vec<String> {
        vec![p.model.clone()]
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<LipsyncParams, ParamError> {
        let p = LipsyncRequest::from_json(params)?.resolve(ctx.config)?;
        require_input(ctx, "portrait", &p.portrait, Takes::Visual)?;
        if let Some(audio) = &p.audio {
            require_input(ctx, "audio", audio, Takes::Sound)?;
        }
        Ok(p)
    }

    fn stages(&self, p: &LipsyncParams) -> Vec<StageName> {
        p.speech.is_some().then_some(SPEECH_STAGE).into_iter().chain([STAGE]).collect()
    }

    fn run_stage(&self, stage: StageName, p: &LipsyncParams, run: &StageRun) -> Result<(), StageError> {
        if stage == SPEECH_STAGE {
            let speech = p.speech.as_ref().ok_or_else(|| StageError::fatal("this job speaks no text"))?;
            return speak(run, speech);
        }
        if stage != STAGE {
            return Err(StageError::fatal(format!("lipsync has no stage {stage:?}")));
        }
        let (fps, batch) = (p.fps, p.batch_size as usize);
        let model_name = p.model.as_str();

        let portrait = input_file(run, "portrait", &p.portrait)?;
        let (frames, face) = portrait_frames(&portrait, p.face_box.map(FaceBox::from_xywh))?;
        let audio = narration(run, p)?;
        super::bounds::media_fits(audio.duration_s(), f64::from(fps), &run.config.limits)
            .map_err(|m| StageError::fatal(format!("this narration would make {m}")))?;
        let audio_16k = audio.mono_at(MEL_SAMPLE_RATE)?;

        let model = Wav2Lip::load(
            run.engine,
            run.device,
            &stage_model_file(run.config, "model", ModelKind::Lipsync, model_name)?,
        )?;
        let track = match face {
            Some(face) => FaceTrack::with_boxes(&frames, &[face], &portrait.label)?,
            None => {
                let name = p.face_model.clone().or_else(|| Catalog::default_model(run.config, ModelKind::Face));
                let name =
                    name.ok_or_else(|| StageError::fatal("no face_box was given and no face detector is installed"))?;
                let detector = OnnxFaceDetector::load(
                    run.engine,
                    run.device,
                    &stage_model_file(run.config, "face_model", ModelKind::Face, &name)?,
                )?;
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

/// The portrait's frames and the face box on them, scaled to fit [`MAX_PORTRAIT_SIDE`] (a
/// phone's photo or 4K video makes a film a phone plays): one frame for an image; for a
/// video up to [`MAX_SOURCE_FRAMES`] within [`MAX_SOURCE_BYTES`].
fn portrait_frames(
    portrait: &InputFile,
    face: Option<FaceBox>,
) -> Result<(Vec<RgbImage>, Option<FaceBox>), StageError> {
    let visual = open_visual(&portrait.path, &portrait.label, Some(&portrait.artifact.media_type))?;
    if let Visual::Image(img) = visual {
        let (img, scale) = fit_still(img, MAX_PORTRAIT_SIDE);
        return Ok((vec![img], face.map(|b| b.scaled(scale))));
    }
    let (w, h) = visual.size();
    let (w, h, scale) = fit_size(w, h, MAX_PORTRAIT_SIDE);
    let max_frames = (MAX_SOURCE_BYTES / (w as usize * h as usize * 3).max(1)).clamp(1, MAX_SOURCE_FRAMES);
    Ok((visual.frames(&portrait.label, max_frames, (w, h))?, face.map(|b| b.scaled(scale))))
}

/// The narration to lip-sync: the speech stage's WAV when the job speaks `text`, else the
/// `audio` artifact.
fn narration(run: &StageRun, p: &LipsyncParams) -> Result<Audio, StageError> {
    let (path, name, label) = match (&p.speech, &p.audio) {
        (Some(_), _) => {
            let path = stage_file(run, SPEECH_STAGE, "speech.wav")
                .ok_or_else(|| StageError::fatal("the speech stage left no speech.wav"))?;
            (path, "speech.wav".to_string(), "the spoken text".to_string())
        }
        (None, audio) => {
            let audio = input_file(run, "audio", audio.as_deref().unwrap_or_default())?;
            (audio.path, audio.artifact.name, audio.label)
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| StageError::context(format!("cannot read {label}"), e))?;
    decode_bytes(bytes, &name).map_err(|e| StageError::context(label, e))
}

/// Puts ffmpeg's complaint into the job's events and fails the stage with it.
pub(crate) fn ffmpeg_error(run: &StageRun, e: crate::media::ffmpeg::FfmpegError) -> StageError {
    run.sink.log("error", &e.to_string());
    e.into()
}
