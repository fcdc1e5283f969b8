//! [`TypedKind`]: a job kind written against its own parameter struct, and the adaptor
//! that makes every typed kind a [`JobKind`] — the object-safe interface the scheduler and
//! the API use with the JSON stored in each job. Validation serialises the typed
//! parameters once; every later call reads them back, so the stored form is the struct's
//! serde form and jobs already in a store keep running.

use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};

use super::{DEFAULT_GPU_SECONDS, JobKind, ParamError, StageError, StageRun, ValidateCtx, even_weights};
use crate::config::Config;
use crate::kinds::StageName;

/// A job kind over typed parameters; see the module docs for how it becomes a [`JobKind`].
pub trait TypedKind: Send + Sync {
    /// Validated parameters, every default filled in; their serde form is what a job stores.
    type Params: Serialize + DeserializeOwned;
    /// The kind's name in the API (`testcard`, `speech`, `image`, ...).
    const NAME: &'static str;
    /// Reads request JSON (field-named errors) and resolves it against the config.
    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<Self::Params, ParamError>;
    /// The stage a job whose stored parameters cannot be read runs (and fails in, saying why).
    const FIRST_STAGE: StageName;
    /// The stages for these parameters, in order.
    fn stages(&self, params: &Self::Params) -> Vec<StageName>;
    /// Runs one stage; blocking, called on a worker thread.
    fn run_stage(&self, stage: StageName, params: &Self::Params, run: &StageRun) -> Result<(), StageError>;
    /// GPU memory a job needs, MiB; see [`JobKind::vram_mib`].
    fn vram_mib(&self, _params: &Self::Params, _config: &Config) -> u64 {
        0
    }
    /// The largest picture it makes; see [`JobKind::cpu_picture`].
    fn cpu_picture(&self, _params: &Self::Params, _config: &Config) -> Option<super::memory::CpuPicture> {
        None
    }
    /// Whether only admins may submit it; see [`JobKind::admin_only`].
    fn admin_only(&self) -> bool {
        false
    }
    /// Whether it never leaves the head; see [`JobKind::runs_on_head`].
    fn runs_on_head(&self) -> bool {
        false
    }
    /// Run time the parameters fix, seconds; see [`JobKind::declared_seconds`].
    fn declared_seconds(&self, _params: &Self::Params) -> Option<f64> {
        None
    }
    /// GPU seconds to reserve; see [`JobKind::gpu_seconds_estimate`].
    fn gpu_seconds_estimate(&self, params: &Self::Params) -> f64 {
        self.declared_seconds(params).unwrap_or(DEFAULT_GPU_SECONDS)
    }
    /// Whether a job with these parameters runs ONNX models; see [`JobKind::needs_runtime`].
    fn needs_runtime(&self, _params: &Self::Params) -> bool {
        true
    }
    /// Names of the models a job loads; see [`JobKind::models`].
    fn models(&self, _params: &Self::Params) -> Vec<String> {
        Vec::new()
    }
    /// Each stage's share of a job's time; see [`JobKind::stage_weights`].
    fn stage_weights(&self, _params: &Self::Params, stages: &[StageName]) -> Vec<f64> {
        even_weights(stages)
    }
}

/// Reads a job's stored parameters back into the kind's struct.
fn stored<K: TypedKind>(params: &serde_json::Value) -> Result<K::Params, serde_json::Error> {
    K::Params::deserialize(params)
}

impl<K: TypedKind> JobKind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn validate(&self, params: serde_json::Value, ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError> {
        let p = TypedKind::validate(self, &params, ctx)?;
        serde_json::to_value(p).map_err(|e| ParamError::new("params", e.to_string()))
    }

    fn stages(&self, params: &serde_json::Value) -> Vec<StageName> {
        // Unreadable parameters still get a stage, so the job runs and fails saying why.
        stored::<K>(params).map_or_else(|_| vec![K::FIRST_STAGE], |p| TypedKind::stages(self, &p))
    }

    fn run_stage(&self, stage: StageName, run: &StageRun) -> Result<(), StageError> {
        let p = stored::<K>(run.params)
            .map_err(|e| StageError::context(format!("stored {} parameters are unreadable", K::NAME), e))?;
        // A picture made on this box's CPU must fit the memory jobs may use here: the daemon
        // checked it when the job was sent only where it makes pictures on its own CPU, not
        // on a worker box (whose memory the head does not know) nor on a head beside boxes.
        let picture = TypedKind::cpu_picture(self, &p, run.config).filter(|pic| pic.stage == stage);
        let on_cpu = picture.filter(|_| run.device == crate::gpu::DeviceId::Cpu);
        if let Some(picture) = &on_cpu {
            super::memory::check_on_cpu(run.config, picture)?;
        }
        // Model runs stop mid-graph on a cancel, and whatever a stopped run fails with
        // (wrapped by a pipeline as its own error) is the cancel, not a failure.
        let ran = crate::engine::stoppable(run.cancel, || TypedKind::run_stage(self, stage, &p, run))
            .map_err(|e| if run.cancel.is_cancelled() { StageError::Canceled } else { e });
        // The memory the picture took stays with its model's sessions: let them go once the
        // box idles when it outweighs what they hold anyway, however the stage ended.
        if let Some(picture) = on_cpu.filter(|pic| pic.outweighs_its_model(run.config)) {
            run.engine.release_when_idle(&crate::models::model_dir(run.config, &picture.model), run.device);
        }
        ran
    }

    fn vram_mib(&self, params: &serde_json::Value, config: &Config) -> u64 {
        stored::<K>(params).map_or(0, |p| TypedKind::vram_mib(self, &p, config))
    }

    fn cpu_picture(&self, params: &serde_json::Value, config: &Config) -> Option<super::memory::CpuPicture> {
        stored::<K>(params).ok().and_then(|p| TypedKind::cpu_picture(self, &p, config))
    }

    fn admin_only(&self) -> bool {
        TypedKind::admin_only(self)
    }

    fn runs_on_head(&self) -> bool {
        TypedKind::runs_on_head(self)
    }

    fn declared_seconds(&self, params: &serde_json::Value) -> Option<f64> {
        stored::<K>(params).ok().and_then(|p| TypedKind::declared_seconds(self, &p))
    }

    fn gpu_seconds_estimate(&self, params: &serde_json::Value) -> f64 {
        stored::<K>(params).map_or(DEFAULT_GPU_SECONDS, |p| TypedKind::gpu_seconds_estimate(self, &p))
    }

    fn needs_runtime(&self, params: &serde_json::Value) -> bool {
        // Unreadable parameters: as the kind's jobs mostly are (its stage fails saying why).
        stored::<K>(params).map_or(true, |p| TypedKind::needs_runtime(self, &p))
    }

    fn models(&self, params: &serde_json::Value) -> Vec<String> {
        stored::<K>(params).map(|p| TypedKind::models(self, &p)).unwrap_or_default()
    }

    fn stage_weights(&self, params: &serde_json::Value, stages: &[StageName]) -> Vec<f64> {
        // Unreadable parameters still show a job whose stages weigh alike.
        stored::<K>(params).map_or_else(|_| even_weights(stages), |p| TypedKind::stage_weights(self, &p, stages))
    }
}
