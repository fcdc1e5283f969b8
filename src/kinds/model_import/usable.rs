//! Whether ready ONNX files are a model of their kind: loaded through the very pipeline
//! that runs the kind, whose load already checks the interface (an upscaler's one image
//! input and whole-number scale, Wav2Lip's mel and face inputs, a face detector's scores
//! and boxes, a Stable Diffusion folder's parts and tokenizers, a Piper voice's config and
//! phoneme input). An import asks before it copies; `models verify` asks of an installed
//! import.

use std::path::Path;

use crate::engine::{self, Engine, EngineError};
use crate::gpu::DeviceId;
use crate::models::ModelKind;
use crate::pipelines::diffusion::embedding::{self, Embedding, EmbeddingError};
use crate::pipelines::diffusion::{DiffusionError, SdModel};
use crate::pipelines::lipsync::{LipsyncError, OnnxFaceDetector, Wav2Lip};
use crate::pipelines::tts::{TtsError, Voice, synth::ModelIo};
use crate::pipelines::upscale::{UpscaleError, Upscaler};

/// Why ONNX files are no usable model of a kind: the pipeline's own load error.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error(transparent)]
    Upscale(#[from] UpscaleError),
    #[error(transparent)]
    Lipsync(#[from] LipsyncError),
    #[error(transparent)]
    Diffusion(#[from] DiffusionError),
    #[error(transparent)]
    Tts(#[from] TtsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
}

/// Loads the model of `kind` at `at` on `device` as its jobs would: a single-file model's
/// `.onnx` (or the folder holding its `model.onnx`), a diffusion model's folder, a voice's
/// `.onnx` (or an installed voice's folder). The sessions it made are dropped again.
pub fn check_loads(engine: &Engine, device: DeviceId, kind: ModelKind, at: &Path) -> Result<(), Unusable> {
    let loaded = match kind {
        ModelKind::Upscale => Upscaler::load(engine, device, at).map(drop).map_err(Unusable::from),
        ModelKind::Lipsync => Wav2Lip::load(engine, device, at).map(drop).map_err(Unusable::from),
        ModelKind::Face => OnnxFaceDetector::load(engine, device, at).map(drop).map_err(Unusable::from),
        ModelKind::Diffusion => SdModel::load(at, engine, device).map(drop).map_err(Unusable::from),
        ModelKind::Tts => voice_loads(engine, device, at),
        ModelKind::Embedding => embedding_reads(at),
    };
    // A check holds no session: the files move on install, or stay unused.
    for file in onnx_files(at) {
        engine.forget_model(&file);
    }
    loaded
}

/// A textual-inversion embedding: its vectors read as a run reads them (a folder's
/// `embedding.safetensors`, or the file).
fn embedding_reads(at: &Path) -> Result<(), Unusable> {
    let file = if at.is_dir() { at.join(embedding::FILE) } else { at.to_path_buf() };
    Embedding::read("", &file).map(drop).map_err(Unusable::from)
}

/// A Piper voice: its config read as speech reads it, its graph's phoneme-id input found.
fn voice_loads(engine: &Engine, device: DeviceId, at: &Path) -> Result<(), Unusable> {
    let voice = match (at.is_dir(), at.parent(), at.file_name().and_then(|n| n.to_str())) {
        (true, Some(models), Some(name)) => Voice::find(models, name)?,
        _ => Voice::load(at)?,
    };
    let session = engine.session(&voice.model, device)?;
    let session = engine::lock(&session, &voice.model.display().to_string())?;
    ModelIo::inspect(&session, &voice.model)?;
    Ok(())
}

/// The `.onnx` files a check of `at` may have opened.
fn onnx_files(at: &Path) -> Vec<std::path::PathBuf> {
    if !at.is_dir() {
        return vec![at.to_path_buf()];
    }
    let parts = super::diffusion::PARTS.iter().map(|p| at.join(p).join("model.onnx"));
    let top = std::fs::read_dir(at).into_iter().flatten().flatten().map(|e| e.path());
    top.filter(|p| p.extension().is_some_and(|x| x == "onnx")).chain(parts).collect()
}
