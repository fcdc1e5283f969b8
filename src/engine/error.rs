//! What can go wrong in the engine, each failure with the error that caused it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::GpuProvider;
use super::runtime::NotFound;
use crate::config::Config;

/// Why a model transform (a session variant) could not rewrite a model.
pub type TransformError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from loading the runtime or a model, and from running one.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    RuntimeNotFound(#[from] NotFound),
    /// Shared because ONNX Runtime is initialised once per process and its failure is
    /// reported to every later caller.
    #[error("cannot load ONNX Runtime from {path}: {source}")]
    RuntimeLoad {
        path: PathBuf,
        #[source]
        source: Arc<InitCause>,
    },
    /// `fix` says how to get the file back, as fits where the model came from (see
    /// [`EngineError::model_missing`]).
    #[error("model file {path} is missing{}", fix_text(.fix))]
    ModelMissing { path: PathBuf, fix: Option<String> },
    #[error("cannot load model {path} (truncated or not an ONNX model?): {source}{}", fix_text(.fix))]
    ModelLoad {
        path: PathBuf,
        #[source]
        source: LoadCause,
        fix: Option<String>,
    },
    #[error("{} is not available for {device}: {source}; fix: {}", .provider.name(), .provider.fix())]
    ProviderUnavailable {
        device: String,
        provider: GpuProvider,
        #[source]
        source: ort::Error,
    },
    #[error("config runtime.optimization = {value:?} is not one of disable, basic, extended, all")]
    BadOptimization { value: String },
    #[error("config runtime.cudnn_conv_algo_search = {value:?} is not one of heuristic, exhaustive, default")]
    BadConvSearch { value: String },
    /// A lock around a session or the cache was poisoned by a panic in an earlier run.
    #[error("inference failed in {what}: a previous run panicked")]
    Poisoned { what: String },
    /// An input tensor could not be built.
    #[error("inference failed in {model}: input {input}: {source}")]
    Input {
        model: String,
        input: String,
        #[source]
        source: ort::Error,
    },
    /// ONNX Runtime's `run` failed (out of device memory, a bad input shape).
    #[error("inference failed in {model}: {source}")]
    Run {
        model: String,
        #[source]
        source: ort::Error,
    },
    /// The run was stopped mid-graph because its job was canceled ([`super::stoppable`]).
    #[error("the run of {model} was stopped: its job was canceled")]
    Canceled { model: String },
    #[error("inference failed in {model}: no output {output}")]
    MissingOutput { model: String, output: String },
    /// An output that is not a float tensor, or could not be read as one.
    #[error("inference failed in {model}: output {output}: {source}")]
    BadOutput {
        model: String,
        output: String,
        #[source]
        source: OutputCause,
    },
    #[error("inference failed in {model}: output {output} has shape {got}, expected {expected}")]
    BadShape { model: String, output: String, expected: String, got: String },
}

impl EngineError {
    /// Model file `path` is not there; the fix fits the model it belongs to: a pull for a
    /// pulled model, `rm` and import again for one imported here, none for a file outside
    /// the models dir ([`crate::models::repair_advice`]).
    pub fn model_missing(config: &Config, path: &Path) -> Self {
        EngineError::ModelMissing { path: path.to_path_buf(), fix: crate::models::repair_advice(config, path) }
    }

    /// Model file `path` does not load; the fix as for [`EngineError::model_missing`].
    pub fn model_load(config: &Config, path: &Path, source: LoadCause) -> Self {
        EngineError::ModelLoad { path: path.to_path_buf(), source, fix: crate::models::repair_advice(config, path) }
    }

    /// The error for an ort failure building input `input` of `model` (a `map_err` argument).
    pub fn input(model: &str, input: &str) -> impl FnOnce(ort::Error) -> EngineError + use<> {
        let (model, input) = (model.to_string(), input.to_string());
        move |source| EngineError::Input { model, input, source }
    }
}

/// `; fix: …` when there is a fix to give.
fn fix_text(fix: &Option<String>) -> String {
    fix.as_deref().map(|f| format!("; fix: {f}")).unwrap_or_default()
}

/// Why ONNX Runtime could not be initialised.
#[derive(Debug, thiserror::Error)]
pub enum InitCause {
    #[error(transparent)]
    Library(#[from] ort::LoadDynamicError),
    #[error(transparent)]
    Environment(#[from] ort::Error),
}

/// Why a model did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadCause {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Session(#[from] ort::Error),
    #[error("cannot prepare the {variant} variant: {source}")]
    Transform {
        variant: &'static str,
        #[source]
        source: TransformError,
    },
}

/// Why an output could not be read back as f32.
#[derive(Debug, thiserror::Error)]
pub enum OutputCause {
    #[error(transparent)]
    Extract(#[from] ort::Error),
    #[error("has element type {0}, expected a float tensor")]
    NotFloat(String),
}
