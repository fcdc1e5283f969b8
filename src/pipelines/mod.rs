//! Model pipelines, one folder or file per family. A pipeline takes typed inputs, a
//! progress callback and a cancellation token, and returns typed outputs; it knows
//! nothing about jobs, tables or HTTP.

use tokio_util::sync::CancellationToken;

pub mod diffusion;
pub mod lipsync;
pub mod motion;
pub mod render;
pub mod upscale;

/// Progress of a running pipeline, reported between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: u64,
    pub total: u64,
    pub message: Option<String>,
}

/// Callback a pipeline reports progress through.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// Returned by pipelines when the cancellation token fired between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("canceled")]
pub struct Canceled;

/// Checks the token between steps; `?` it in loops.
pub fn check_cancel(token: &CancellationToken) -> Result<(), Canceled> {
    if token.is_cancelled() { Err(Canceled) } else { Ok(()) }
}

pub mod tts;
