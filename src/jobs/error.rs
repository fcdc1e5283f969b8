//! Why the jobs service refused or failed; the API turns each into its status and code.

use crate::engine::EngineError;
use crate::kinds::ParamError;
use crate::scheduler::ControlError;
use crate::store::StoreError;

/// A refusal or failure of the jobs service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No job kind by this name.
    #[error("unknown job kind {kind:?}; known: {known}")]
    UnknownKind { kind: String, known: String },
    /// The kind changes the box (model pulls); only admins may submit it.
    #[error("{kind} jobs change the box; they need an admin key")]
    AdminOnly { kind: String },
    /// A request field is invalid (names the field).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A request field is past a `[limits]` value (names the field and the config key).
    #[error("{field}: {message}")]
    LimitExceeded { field: String, message: String },
    /// The kind needs ONNX Runtime and this box has none (`reelbox setup` installs it).
    #[error(transparent)]
    RuntimeMissing(EngineError),
    /// The submitter's `gpu_seconds_per_day` is used up or reserved.
    #[error(transparent)]
    GpuQuota(#[from] GpuQuotaRefusal),
    /// No job by this id that the caller may see.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// The store refused or failed (queue full, not found, closed, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Cancel or retry of a job in the wrong state.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The data dir's disk is below `limits.min_free_disk_bytes`.
    #[error(transparent)]
    DiskLow(#[from] crate::disk::DiskLow),
}

/// A submission refused by the daily GPU-time quota: the message names the key, its use
/// and the reset time; `retry_after_s` says when trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GpuQuotaRefusal {
    /// Human explanation, with the numbers.
    pub message: String,
    /// Seconds until a retry may succeed.
    pub retry_after_s: u64,
}
