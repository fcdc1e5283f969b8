//! Job kinds: the glue between a job's parameters and a pipeline. Each kind has one
//! parameter struct (read from request JSON by [`fields`], resolved against the config),
//! implements [`TypedKind`] over it (names its stages, runs one stage at a time on a
//! worker thread), and is a [`JobKind`] through the adaptor in `typed`, which the
//! scheduler and the API use with each job's stored JSON.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::models::{Availability, ModelKind, ModelProblem};
use crate::store::records::Artifact;
pub use crate::store::records::StageName;

pub use failure::{Failure, Message};

pub mod bounds;
pub mod box_models;
pub mod face_detect;
pub mod failure;
pub mod fields;
pub mod image;
pub mod inputs;
pub mod lipsync;
pub mod memory;
pub mod model_import;
pub mod model_pull;
pub mod render;
pub mod resize;
pub mod speech;
pub mod testcard;
mod typed;
pub mod upscale;

pub use fields::{reject_unknown, str_param};
pub use typed::TypedKind;

/// A request parameter that failed validation; becomes a 400 naming `field`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParamError {
    pub field: String,
    pub message: String,
    /// The model the field names that cannot run, as data (the API error's `model`).
    pub model: Option<Box<ModelProblem>>,
}

impl ParamError {
    /// Error for `field` with a human message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), model: None }
    }

    /// The refusal of model `name` of `kind`, which `availability` says is not installed,
    /// naming `field`: [`Availability`]'s sentence with its problem as data.
    pub fn unavailable_model(field: &str, kind: ModelKind, name: &str, availability: &Availability) -> Self {
        let looked = box_models::missing_where();
        Self::new(field, availability.refusal_where(kind, name, looked).unwrap_or_default())
            .with_model(availability.problem(kind, name))
    }

    /// The same error carrying the model problem behind it.
    #[must_use]
    pub fn with_model(mut self, problem: Option<ModelProblem>) -> Self {
        self.model = problem.map(Box::new);
        self
    }
}

/// Why a stage did not finish.
#[derive(Debug)]
pub enum StageError {
    /// The job was canceled, or the daemon is stopping.
    Canceled,
    /// The stage failed; its source says whether another attempt may help.
    Failed {
        /// What the stage was doing, shown before the source's message.
        context: Option<String>,
        source: Box<dyn Failure>,
    },
}

impl StageError {
    /// A failure described by text alone that will happen again (bad input, no such stage).
    pub fn fatal(text: impl Into<String>) -> Self {
        Self::from(Message { text: text.into(), retriable: false })
    }

    /// A failure described by text alone that may pass on another attempt.
    pub fn retriable(text: impl Into<String>) -> Self {
        Self::from(Message { text: text.into(), retriable: true })
    }

    /// `source` with what the stage was doing in front of its message (`context: source`).
    pub fn context(context: impl Into<String>, source: impl Failure) -> Self {
        if source.is_canceled() {
            return StageError::Canceled;
        }
        StageError::Failed { context: Some(context.into()), source: Box::new(source) }
    }

    /// Whether running the stage again may succeed: the scheduler's one retry question.
    pub fn is_retriable(&self) -> bool {
        match self {
            StageError::Canceled => false,
            StageError::Failed { source, .. } => source.is_retriable(),
        }
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Canceled => f.write_str("canceled"),
            StageError::Failed { context: Some(context), source } => write!(f, "{context}: {source}"),
            StageError::Failed { context: None, source } => source.fmt(f),
        }
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StageError::Canceled => None,
            StageError::Failed { context: Some(_), source } => Some(&**source as &(dyn std::error::Error + 'static)),
            // Without context this error's message is the source's, so the chain goes on
            // from the source's own cause rather than repeating it.
            StageError::Failed { context: None, source } => source.source(),
        }
    }
}

impl<E: Failure> From<E> for StageError {
    fn from(e: E) -> Self {
        if e.is_canceled() {
            return StageError::Canceled;
        }
        StageError::Failed { context: None, source: Box::new(e) }
    }
}

/// What a stage can do besides computing: report, log, store artifacts, and find them as
/// its job's owner may ([`OwnArtifacts`], what validation checked the inputs against).
pub trait StageSink: OwnArtifacts + Send + Sync {
    /// Reports step progress of the current stage.
    fn progress(&self, step: u64, total: u64, message: Option<&str>);
    /// Adds a line to the job's events (`info`, `warn`, `error`).
    fn log(&self, level: &str, message: &str);
    /// Stores bytes as a durable artifact of the current stage.
    fn put_artifact(&self, name: &str, media_type: &str, bytes: &[u8]) -> Result<Artifact, StageError>;
    /// Moves a finished file (written under `scratch_dir`) in as an artifact.
    fn put_artifact_file(&self, name: &str, media_type: &str, file: &std::path::Path) -> Result<Artifact, StageError>;
    /// Artifacts of an earlier finished stage of this job, in creation order.
    fn stage_artifacts(&self, stage: StageName) -> Vec<Artifact>;
    /// A private scratch directory for this stage, removed after the stage.
    fn scratch_dir(&self) -> PathBuf;
}

/// Everything a stage gets to run.
pub struct StageRun<'a> {
    pub job_id: Ulid,
    pub owner: &'a str,
    pub params: &'a serde_json::Value,
    pub device: DeviceId,
    pub engine: &'a Engine,
    pub config: &'a Config,
    pub cancel: &'a CancellationToken,
    pub sink: &'a dyn StageSink,
}

/// What validation may consult.
pub struct ValidateCtx<'a> {
    pub config: &'a Config,
    /// The submitter's own artifacts: an input parameter must name one of these
    /// ([`inputs::require_input`]), as a running stage can read no other.
    pub artifacts: &'a dyn OwnArtifacts,
}

/// The artifacts a submitter may give a job as inputs: their own.
pub trait OwnArtifacts: Sync {
    /// Artifact `id`, when the submitter owns it; an error is the store's (a running stage
    /// fails as it would on any store error, retried, not as a missing input).
    fn artifact(&self, id: Ulid) -> Result<Option<Artifact>, crate::store::StoreError>;
    /// Absolute path of an artifact's bytes.
    fn artifact_path(&self, artifact: &Artifact) -> PathBuf;
}

/// One job kind.
pub trait JobKind: Send + Sync {
    /// The kind's name in the API (`testcard`, `speech`, `image`, ...).
    fn name(&self) -> &'static str;
    /// Checks and normalises parameters (filling defaults) before the job is accepted.
    fn validate(&self, params: serde_json::Value, ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError>;
    /// The stage names for these (validated) parameters, in order.
    fn stages(&self, params: &serde_json::Value) -> Vec<StageName>;
    /// Runs one stage; blocking, called on a worker thread.
    fn run_stage(&self, stage: StageName, run: &StageRun) -> Result<(), StageError>;
    /// GPU memory a job with these (validated) parameters needs, MiB. 0 means it runs
    /// anywhere: on a GPU when one is free, else on the CPU. Kinds that are only practical
    /// on a GPU must return their need so they never spill onto the CPU of a GPU box.
    fn vram_mib(&self, _params: &serde_json::Value, _config: &Config) -> u64 {
        0
    }
    /// The largest picture a job with these (validated) parameters makes with a diffusion
    /// model, for the memory it takes on the CPU (`memory::cpu_picture_mib`), held to
    /// `limits.cpu_memory_mib` at submission and by placement on boxes that make pictures
    /// on the CPU.
    fn cpu_picture(&self, _params: &serde_json::Value, _config: &Config) -> Option<memory::CpuPicture> {
        None
    }
    /// Whether only admins may submit it on any route: kinds that change the box (install
    /// models) rather than make media.
    fn admin_only(&self) -> bool {
        false
    }
    /// Whether it always runs on the box it was sent to, never on a worker box: kinds about
    /// that box's own models dir (a worker box installs its own with `reelbox pull` there).
    fn runs_on_head(&self) -> bool {
        false
    }
    /// How long a job with these (validated) parameters says it will run, seconds, when its
    /// parameters fix that (a testcard's steps × step_ms); clients are held to
    /// `limits.max_job_seconds`.
    fn declared_seconds(&self, _params: &serde_json::Value) -> Option<f64> {
        None
    }
    /// An estimate (not a promise) of the GPU seconds a job with these (validated)
    /// parameters takes, reserved against its owner's `gpu_seconds_per_day` at submission
    /// and replaced by the measured time when it ends. Defaults to the declared run time,
    /// else [`DEFAULT_GPU_SECONDS`]; see [`estimate_gpu_ms`] for the floor applied.
    fn gpu_seconds_estimate(&self, params: &serde_json::Value) -> f64 {
        self.declared_seconds(params).unwrap_or(DEFAULT_GPU_SECONDS)
    }
    /// Whether a job with these (validated) parameters runs ONNX models, so submitting it
    /// without ONNX Runtime installed is refused (409 naming the fix) instead of accepting a
    /// job that can only fail; one that runs none (an `upscale` that only resizes) runs there.
    fn needs_runtime(&self, _params: &serde_json::Value) -> bool {
        true
    }
    /// Names of the models a job loads; placement prefers a GPU that already holds them.
    fn models(&self, _params: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
    /// Each of a job's `stages` (as its record lists them) expected share of its time, in
    /// order, summing to 1: what its overall fraction and the dashboards' time left weigh
    /// the stages by. Alike unless the kind knows better (a render's from its plan).
    /// Costly for some kinds, so asked once per job (`jobs::Service::stage_weights`).
    fn stage_weights(&self, _params: &serde_json::Value, stages: &[StageName]) -> Vec<f64> {
        even_weights(stages)
    }
}

/// Stage weights that are all alike: each of `stages` `1/n` of the job.
pub fn even_weights(stages: &[StageName]) -> Vec<f64> {
    vec![1.0 / stages.len().max(1) as f64; stages.len()]
}

/// GPU seconds assumed for a job whose parameters do not fix its run time.
pub const DEFAULT_GPU_SECONDS: f64 = 30.0;
/// GPU seconds assumed per diffusion step of an image (a mid-range card at 512²).
pub const IMAGE_GPU_SECONDS_PER_STEP: f64 = 0.5;
/// The least a job is estimated at, ms: even an instant job holds a device for a moment,
/// and a zero estimate would let a burst of them through a spent quota.
pub const MIN_GPU_MS: u64 = 100;

/// The GPU time to reserve for a job, ms: the kind's estimate, at least [`MIN_GPU_MS`].
pub fn estimate_gpu_ms(kind: &dyn JobKind, params: &serde_json::Value) -> u64 {
    let secs = kind.gpu_seconds_estimate(params);
    let ms = if secs.is_finite() && secs > 0.0 { (secs * 1000.0).min(u64::MAX as f64) as u64 } else { 0 };
    ms.max(MIN_GPU_MS)
}

/// All job kinds this build knows.
pub fn registry() -> Vec<Arc<dyn JobKind>> {
    vec![
        Arc::new(testcard::Testcard),
        Arc::new(speech::SpeechKind),
        Arc::new(lipsync::Lipsync),
        Arc::new(upscale::Upscale),
        Arc::new(face_detect::FaceDetect),
        Arc::new(image::Image),
        Arc::new(render::Render),
        Arc::new(model_pull::ModelPull),
        Arc::new(model_import::ModelImport),
    ]
}
