//! Stable Diffusion through ONNX Runtime: the optimum/diffusers ONNX layout, CLIP
//! tokenizer, pure-Rust samplers (noise schedulers) and the text-to-image / image-to-image pipeline.
//!
//! `ModelInfo::inspect` reads a model directory cheaply (for validation); `SdModel::load`
//! opens its sessions; `generate` runs one request with a `NoiseSource` (seeded in
//! production, replayed in reference tests).

use std::path::PathBuf;

pub mod bench;
mod chunks;
pub mod embedding;
pub mod emphasis;
mod fixes;
pub mod inpaint;
pub mod latent_scale;
pub mod model;
pub mod noise;
pub mod onnx;
pub mod output;
pub mod pipeline;
mod predict;
pub mod preset;
pub mod preview;
pub mod prompt_schedule;
pub mod samplers;
mod text;
pub mod text_encoder;
pub mod tokenizer;
pub mod torch_noise;
mod vae;

pub use inpaint::Mask;
pub use model::{Family, ModelInfo, SdModel};
pub use noise::{NoiseSource, ReplayNoise, SeededNoise};
pub use pipeline::{
    Carried, DecodedImage, GenerateRequest, Generated, Hooks, Init, InitImage, InitLatents, Preview, Timings, generate,
};
pub use predict::guidance_embedding;
pub use samplers::{SchedulerChoice, SchedulerConfigFile, StepsMode};
pub use text::prompt_embeddings;

/// Everything that can go wrong loading or running a diffusion model.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    #[error("model {model} is missing its {part} ({path})")]
    MissingPart { model: String, part: &'static str, path: PathBuf },
    #[error("config file {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigCause,
    },
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("model {model}, part {part}: {source}")]
    Engine { model: String, part: &'static str, source: Box<crate::engine::EngineError> },
    #[error("{part} has an interface reelbox cannot use: {reason}")]
    Interface { part: &'static str, reason: String },
    /// A part ran but its output is not what the pipeline needs.
    #[error("{part} failed: {reason}")]
    Run { part: &'static str, reason: String },
    /// A part's session failed to run, or an input for it could not be built.
    #[error(transparent)]
    Inference(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Scheduler(#[from] samplers::SchedulerError),
    #[error(transparent)]
    Noise(#[from] noise::NoiseError),
    /// A request value the model cannot take; `field` names the request parameter.
    #[error("{field}: {message}")]
    Request { field: &'static str, message: String },
    #[error("image: cannot encode PNG: {0}")]
    Png(#[source] png::EncodingError),
    #[error("canceled")]
    Canceled,
}

/// Why a model's config file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigCause {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl From<crate::pipelines::Canceled> for DiffusionError {
    fn from(_: crate::pipelines::Canceled) -> Self {
        DiffusionError::Canceled
    }
}
