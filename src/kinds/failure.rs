//! The one retry decision. Every error a stage can fail with implements [`Failure`] here,
//! so whether a job is tried again is read in this file and nowhere else: the kinds convert
//! errors with `?`, and the scheduler asks [`Failure::is_retriable`] of what comes back.

use crate::engine::EngineError;
use crate::media::audio::AudioError;
use crate::media::ffmpeg::FfmpegError;
use crate::media::picture::PictureError;
use crate::media::visual::VisualError;
use crate::models::ModelError;
use crate::pipelines::Canceled;
use crate::pipelines::diffusion::DiffusionError;
use crate::pipelines::lipsync::LipsyncError;
use crate::pipelines::motion::MotionError;
use crate::pipelines::tts::TtsError;
use crate::pipelines::upscale::UpscaleError;
use crate::store::StoreError;

/// An error that says whether running the same stage again may succeed.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    /// True for failures of the moment (a disk hiccup, device memory, a network), false for
    /// ones that will happen again (bad input, a broken model file).
    fn is_retriable(&self) -> bool;
    /// True when the failure is the job's cancellation token firing.
    fn is_canceled(&self) -> bool {
        false
    }
}

/// A failure described by text alone, with the retry decision made where it is raised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct Message {
    /// What went wrong, as the job's error shows it.
    pub text: String,
    /// Whether another attempt may succeed.
    pub retriable: bool,
}

impl Failure for Message {
    fn is_retriable(&self) -> bool {
        self.retriable
    }
}

impl Failure for Canceled {
    fn is_retriable(&self) -> bool {
        false
    }
    fn is_canceled(&self) -> bool {
        true
    }
}

/// Failures that will happen again: bad input data, unreadable parameters.
macro_rules! never_retried {
    ($($t:ty),+ $(,)?) => {$(
        impl Failure for $t {
            fn is_retriable(&self) -> bool {
                false
            }
        }
    )+};
}

never_retried!(
    VisualError,
    PictureError,
    FfmpegError,
    image::ImageError,
    ulid::DecodeError,
    serde_json::Error,
    super::ParamError,
    // A stored latent (`image/latent.rs`) that is not the array it was written as.
    ndarray::ShapeError,
    ndarray_npy::ReadNpyError,
    ndarray_npy::WriteNpyError,
);

/// Disks and the database recover (space freed, a lock released).
impl Failure for std::io::Error {
    fn is_retriable(&self) -> bool {
        true
    }
}

impl Failure for AudioError {
    // Reading and writing files may pass on another try; a corrupt file stays corrupt.
    fn is_retriable(&self) -> bool {
        matches!(self, AudioError::Read { .. } | AudioError::Write { .. })
    }
}

impl Failure for StoreError {
    fn is_retriable(&self) -> bool {
        true
    }
}

impl Failure for ModelError {
    // Networks and disks recover; a bad manifest or unknown name does not. A pull whose
    // hosts could not be reached at all (no network, DNS, a refused connection) is not
    // retried either: the queue's tries (`queue.max_attempts`, 5 s then 10 s apart) made an
    // offline `reelbox pull` wait ~16 s for the same "cannot reach HOST" three times, and a
    // box that is offline now is offline 5 s later. The choice is made here, the one retry
    // decision, rather than in the hub client: it already asks an unreachable host once per
    // source and does not retry a request that never connected. Transfers that break after the
    // host answered (a reset mid-download, a 5xx) keep their retries, in the hub client's
    // ranged parts and here.
    fn is_retriable(&self) -> bool {
        matches!(self, ModelError::Fetch { .. } | ModelError::Io { .. }) && !self.is_unreachable()
    }
}

impl Failure for EngineError {
    // A run can fail for want of device memory or on a busy GPU and pass on another try;
    // a model or runtime that did not load stays broken.
    fn is_retriable(&self) -> bool {
        matches!(self, EngineError::Run { .. } | EngineError::Poisoned { .. })
    }
    fn is_canceled(&self) -> bool {
        matches!(self, EngineError::Canceled { .. })
    }
}

impl Failure for DiffusionError {
    fn is_retriable(&self) -> bool {
        match self {
            DiffusionError::Run { .. } => true,
            DiffusionError::Inference(e) => e.is_retriable(),
            DiffusionError::Engine { source, .. } => source.is_retriable(),
            _ => false,
        }
    }
    fn is_canceled(&self) -> bool {
        matches!(self, DiffusionError::Canceled)
    }
}

impl Failure for TtsError {
    fn is_retriable(&self) -> bool {
        matches!(self, TtsError::Engine(e) if e.is_retriable())
    }
    fn is_canceled(&self) -> bool {
        matches!(self, TtsError::Canceled)
    }
}

impl Failure for LipsyncError {
    fn is_retriable(&self) -> bool {
        match self {
            LipsyncError::Engine(e) => e.is_retriable(),
            LipsyncError::Detector { source, .. } => source.is_retriable(),
            _ => false,
        }
    }
    fn is_canceled(&self) -> bool {
        matches!(self, LipsyncError::Canceled)
    }
}

impl Failure for MotionError {
    fn is_retriable(&self) -> bool {
        false
    }
    fn is_canceled(&self) -> bool {
        matches!(self, MotionError::Canceled)
    }
}

impl Failure for UpscaleError {
    fn is_retriable(&self) -> bool {
        match self {
            UpscaleError::Engine(e) => e.is_retriable(),
            UpscaleError::Video(e) => e.is_retriable(),
            _ => false,
        }
    }
    fn is_canceled(&self) -> bool {
        matches!(self, UpscaleError::Canceled)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::PathBuf;

    use super::*;
    use crate::kinds::StageError;

    fn run_failed() -> EngineError {
        EngineError::Run { model: "unet".into(), source: ort::Error::new("out of memory") }
    }

    #[test]
    fn a_failed_run_is_retried_and_a_missing_model_is_not_whatever_the_pipeline() {
        assert!(StageError::from(DiffusionError::Inference(run_failed())).is_retriable());
        assert!(StageError::from(UpscaleError::Engine(run_failed())).is_retriable());
        assert!(StageError::from(TtsError::Engine(run_failed())).is_retriable());
        let missing = || EngineError::ModelMissing { path: PathBuf::from("m.onnx"), fix: None };
        assert!(!StageError::from(LipsyncError::Engine(missing())).is_retriable());
        assert!(!StageError::from(TtsError::Engine(missing())).is_retriable());
    }

    #[test]
    fn a_pull_that_reached_no_host_is_not_retried_and_one_cut_off_is() {
        use crate::models::FetchError;
        let failed = |failures| StageError::from(ModelError::Fetch { name: "m".into(), failures });
        let (source_name, file) = ("hf:org/m@main".to_string(), "model.onnx".to_string());
        let unreachable = || FetchError::Unreachable {
            source_name: source_name.clone(),
            file: file.clone(),
            reason: "cannot reach huggingface.co (dns error)".into(),
        };
        let cut = || FetchError::Unavailable {
            source_name: source_name.clone(),
            file: file.clone(),
            reason: "gave up on bytes 0-100 after 5 attempts".into(),
        };
        assert!(!failed(vec![unreachable()]).is_retriable());
        assert!(failed(vec![unreachable(), cut()]).is_retriable());
        assert!(failed(vec![cut()]).is_retriable());
    }

    #[test]
    fn a_pipeline_that_was_canceled_cancels_the_stage() {
        assert!(matches!(StageError::from(TtsError::Canceled), StageError::Canceled));
        assert!(matches!(StageError::from(Canceled), StageError::Canceled));
        assert!(matches!(StageError::context("motion", MotionError::Canceled), StageError::Canceled));
    }

    #[test]
    fn the_job_error_is_the_top_message_and_the_chain_keeps_the_cause() {
        let e = StageError::from(UpscaleError::Engine(run_failed()));
        assert_eq!(e.to_string(), "inference failed in unet: out of memory");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("out of memory"));
        let e = StageError::context("keyframe of scene 2", DiffusionError::Inference(run_failed()));
        assert_eq!(e.to_string(), "keyframe of scene 2: inference failed in unet: out of memory");
        assert!(e.is_retriable());
        assert_eq!(StageError::retriable("try again").to_string(), "try again");
        assert!(!StageError::fatal("no such stage").is_retriable());
    }
}
