//! Lip-sync with Wav2Lip: a portrait (or a short video, cycled) and 16 kHz speech become
//! talking-head frames at a fixed rate. Per video frame, the 16 mel frames around it and
//! the face crop go through the model in batches; the generated mouth region is pasted
//! back inside the face box only.
//!
//! Text input (speech synthesised first) belongs to the caller: synthesise, resample to
//! 16 kHz with [`crate::media::Audio::mono_at`], then call [`lipsync`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::Array2;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError};
use crate::gpu::DeviceId;
use crate::media::mel::{MEL_SAMPLE_RATE, MEL_STEP, N_MELS, mel_chunk, video_frame_count, wav2lip_mel};
use crate::pipelines::{Canceled, Progress, ProgressFn, check_cancel};

pub mod detector;
pub mod face;
pub mod model;

pub use detector::OnnxFaceDetector;
pub use face::{FaceBox, FaceDetector, MAX_PORTRAIT_SIDE, fit_size, fit_still};
pub use model::{BatchAxis, Wav2Lip};

use face::{FACE_SIZE, SMOOTH_WINDOW, WAV2LIP_PADS, face_input, feather_for, feather_mask, paste_face, smooth_boxes};

/// Frames per second of Wav2Lip's training data and of our output by default.
pub const DEFAULT_FPS: u32 = 25;
/// Items per model run by default (dynamic-batch models).
pub const DEFAULT_BATCH: usize = 16;

/// Why lip-sync failed.
#[derive(Debug, thiserror::Error)]
pub enum LipsyncError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("model {model} does not have the Wav2Lip interface: {reason}")]
    Interface { model: PathBuf, reason: String },
    #[error("face box [{x},{y},{w},{h}] (padded) lies outside the {width}x{height} {input}", x = face.x, y = face.y, w = face.w, h = face.h)]
    FaceOutside { face: FaceBox, width: u32, height: u32, input: String },
    #[error("face detector found no face in frame {frame} of {input}")]
    NoFace { frame: usize, input: String },
    #[error("face detector failed on {input}: {source}")]
    Detector {
        input: String,
        #[source]
        source: Box<LipsyncError>,
    },
    #[error("{model} does not have the UltraFace interface: {reason}")]
    DetectorInterface { model: PathBuf, reason: String },
    #[error("face detector {model} gave {scores} scores for {boxes} boxes")]
    DetectorOutput { model: PathBuf, scores: usize, boxes: usize },
    #[error("invalid lip-sync input: {0}")]
    Input(String),
    #[error("canceled")]
    Canceled,
}

impl From<Canceled> for LipsyncError {
    fn from(_: Canceled) -> Self {
        LipsyncError::Canceled
    }
}

/// The faces to animate: source frames (one for a still portrait, cycled for a video)
/// and each frame's padded face box.
pub struct FaceTrack<'a> {
    frames: &'a [RgbImage],
    boxes: Vec<FaceBox>,
}

impl<'a> FaceTrack<'a> {
    /// A still portrait with a known face box (from the request or a profile).
    pub fn still(portrait: &'a RgbImage, face: FaceBox) -> Result<Self, LipsyncError> {
        Self::with_boxes(std::slice::from_ref(portrait), &[face], "portrait")
    }

    /// Frames with one box for all of them, or one box per frame. A box given by a user or
    /// a profile is the exact crop (it was drawn around the face the model should see);
    /// only detector boxes get Wav2Lip's chin padding. `input` names the frames' source in
    /// errors.
    pub fn with_boxes(frames: &'a [RgbImage], boxes: &[FaceBox], input: &str) -> Result<Self, LipsyncError> {
        Self::build(frames, boxes, input, [0; 4])
    }

    fn build(frames: &'a [RgbImage], boxes: &[FaceBox], input: &str, pads: [u32; 4]) -> Result<Self, LipsyncError> {
        if frames.is_empty() {
            return Err(LipsyncError::Input(format!("{input} has no frames")));
        }
        if boxes.len() != 1 && boxes.len() != frames.len() {
            return Err(LipsyncError::Input(format!(
                "{} face boxes for {} frames of {input}; give one box or one per frame",
                boxes.len(),
                frames.len()
            )));
        }
        let boxes = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let b = boxes[if boxes.len() == 1 { 0 } else { i }];
                b.padded(pads, f.width(), f.height()).ok_or_else(|| LipsyncError::FaceOutside {
                    face: b,
                    width: f.width(),
                    height: f.height(),
                    input: input.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { frames, boxes })
    }

    /// Frames whose boxes a face detector finds, smoothed over 5 frames as Wav2Lip does.
    pub fn detect(frames: &'a [RgbImage], detector: &dyn FaceDetector, input: &str) -> Result<Self, LipsyncError> {
        let mut boxes = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            let found = detector
                .detect(f)
                .map_err(|e| LipsyncError::Detector { input: input.to_string(), source: Box::new(e) })?
                .ok_or_else(|| LipsyncError::NoFace { frame: i, input: input.to_string() })?;
            boxes.push(found);
        }
        Self::build(frames, &smooth_boxes(&boxes, SMOOTH_WINDOW), input, WAV2LIP_PADS)
    }

    /// Source frame and padded box for output frame `i`.
    fn at(&self, i: usize) -> (&'a RgbImage, FaceBox) {
        let k = i % self.frames.len();
        (&self.frames[k], self.boxes[k])
    }
}

/// Lip-synced frames, produced lazily a batch at a time (a long narration never holds
/// all its frames in memory).
pub struct LipsyncFrames<'a> {
    model: &'a Wav2Lip,
    track: FaceTrack<'a>,
    mel: Array2<f32>,
    fps: u32,
    total: usize,
    next: usize,
    batch: usize,
    pending: VecDeque<RgbImage>,
    mask: Option<(FaceBox, Vec<f32>)>,
    /// The last face input built, by track frame: a still portrait's never changes.
    input: Option<(usize, Vec<f32>)>,
    cancel: &'a CancellationToken,
    progress: ProgressFn<'a>,
    failed: bool,
}

/// Starts lip-syncing `audio_16k` (mono, 16 kHz) onto `track` at `fps`; `batch` is the
/// wanted number of frames per model run. Yields exactly `round(duration · fps)` frames.
pub fn lipsync_frames<'a>(
    model: &'a Wav2Lip,
    track: FaceTrack<'a>,
    audio_16k: &[f32],
    fps: u32,
    batch: usize,
    cancel: &'a CancellationToken,
    progress: ProgressFn<'a>,
) -> Result<LipsyncFrames<'a>, LipsyncError> {
    if audio_16k.is_empty() {
        return Err(LipsyncError::Input("the audio is empty".into()));
    }
    if fps == 0 {
        return Err(LipsyncError::Input("fps must be positive".into()));
    }
    let total = video_frame_count(audio_16k.len(), MEL_SAMPLE_RATE, fps);
    Ok(LipsyncFrames {
        model,
        track,
        mel: wav2lip_mel(audio_16k),
        fps,
        total,
        next: 0,
        batch: model.run_batch(batch),
        pending: VecDeque::new(),
        mask: None,
        input: None,
        cancel,
        progress,
        failed: false,
    })
}

impl LipsyncFrames<'_> {
    /// Number of frames the whole clip has.
    pub fn total(&self) -> usize {
        self.total
    }

    fn run_batch(&mut self) -> Result<(), LipsyncError> {
        check_cancel(self.cancel)?;
        let n = self.batch.min(self.total - self.next);
        let mut mels = Vec::with_capacity(n * N_MELS * MEL_STEP);
        let mut faces = vec![0.0f32; n * 6 * FACE_SIZE * FACE_SIZE];
        for (j, face) in faces.chunks_exact_mut(6 * FACE_SIZE * FACE_SIZE).enumerate() {
            let i = self.next + j;
            mels.extend(mel_chunk(self.mel.view(), i, self.fps).iter());
            let k = i % self.track.frames.len();
            if self.input.as_ref().is_none_or(|(at, _)| *at != k) {
                let (frame, b) = self.track.at(i);
                let mut built = vec![0.0f32; face.len()];
                face_input(frame, b, &mut built);
                self.input = Some((k, built));
            }
            if let Some((_, built)) = &self.input {
                face.copy_from_slice(built);
            }
        }
        let predicted = self.model.infer(n, mels, faces)?;
        for (j, pred) in predicted.chunks_exact(3 * FACE_SIZE * FACE_SIZE).enumerate() {
            let (frame, b) = self.track.at(self.next + j);
            if self.mask.as_ref().is_none_or(|(mb, _)| *mb != b) {
                self.mask = Some((b, feather_mask(b.w, b.h, feather_for(b))));
            }
            let mut out = frame.clone();
            if let Some((_, mask)) = &self.mask {
                paste_face(&mut out, b, pred, mask);
            }
            self.pending.push_back(out);
        }
        self.next += n;
        (self.progress)(Progress { step: self.next as u64, total: self.total as u64, message: None });
        Ok(())
    }
}

impl Iterator for LipsyncFrames<'_> {
    type Item = Result<RgbImage, LipsyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty() && self.next < self.total && !self.failed {
            if let Err(e) = self.run_batch() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        self.pending.pop_front().map(Ok)
    }
}

/// Lip-syncs a still portrait: loads the Wav2Lip model at `model` (a directory with
/// `model.onnx`, or the file) on `device` and returns all frames. For long clips prefer
/// [`lipsync_frames`], which streams.
#[allow(clippy::too_many_arguments)]
pub fn lipsync(
    engine: &Engine,
    device: DeviceId,
    model: &Path,
    portrait: &RgbImage,
    face_box: FaceBox,
    audio_16k: &[f32],
    fps: u32,
    cancel: &CancellationToken,
    progress: ProgressFn,
) -> Result<Vec<RgbImage>, LipsyncError> {
    let model = Wav2Lip::load(engine, device, model)?;
    let track = FaceTrack::still(portrait, face_box)?;
    lipsync_frames(&model, track, audio_16k, fps, DEFAULT_BATCH, cancel, progress)?.collect()
}
