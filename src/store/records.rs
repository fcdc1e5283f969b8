//! The records reelbox keeps. States are enums that carry their own timestamps, so a
//! running job without a start time cannot be expressed. Timestamps are Unix milliseconds.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::gpu::DeviceId;

pub use crate::time::{Millis, now_ms};

/// A job: one request of one kind, run in stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Ulid,
    /// Who submitted it (API key owner, or `local` when auth is off).
    pub owner: String,
    pub kind: String,
    /// Validated request parameters as JSON text (bincode cannot carry `serde_json::Value`).
    pub params: String,
    /// Higher runs first; FIFO within a priority.
    pub priority: i32,
    pub state: JobState,
    /// Times the job has been started (recovery after a crash counts one).
    pub attempts: u32,
    pub stages: Vec<Stage>,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
}

/// Where a job is in its life; each variant carries the times that define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    Queued { enqueued_at: Millis, not_before: Option<Millis> },
    Running { enqueued_at: Millis, started_at: Millis, device: DeviceId },
    Succeeded { started_at: Millis, finished_at: Millis },
    Failed { started_at: Option<Millis>, finished_at: Millis, error: String },
    Canceled { canceled_at: Millis },
}

impl JobState {
    /// The state's name as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued { .. } => "queued",
            JobState::Running { .. } => "running",
            JobState::Succeeded { .. } => "succeeded",
            JobState::Failed { .. } => "failed",
            JobState::Canceled { .. } => "canceled",
        }
    }

    /// True once the job will not run again unless retried.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Succeeded { .. } | JobState::Failed { .. } | JobState::Canceled { .. })
    }

    /// When a finished job finished (succeeded, failed or was canceled); `None` while it may
    /// still run.
    pub fn finished_at(&self) -> Option<Millis> {
        match self {
            JobState::Succeeded { finished_at, .. } | JobState::Failed { finished_at, .. } => Some(*finished_at),
            JobState::Canceled { canceled_at } => Some(*canceled_at),
            JobState::Queued { .. } | JobState::Running { .. } => None,
        }
    }
}

/// One stage of a job, the unit of resumption after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub state: StageState,
    pub artifacts: Vec<Ulid>,
    /// Energy used by the stage in watt-hours, when the device reports it.
    pub energy_wh: Option<f64>,
}

/// Where a stage is; finished stages are never redone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StageState {
    Pending,
    Running { started_at: Millis, device: DeviceId },
    Done { started_at: Millis, finished_at: Millis, device: DeviceId },
    Failed { started_at: Millis, finished_at: Millis, error: String },
}

impl StageState {
    /// The state's name as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            StageState::Pending => "pending",
            StageState::Running { .. } => "running",
            StageState::Done { .. } => "done",
            StageState::Failed { .. } => "failed",
        }
    }
}

/// A finished output file. Bytes live under `<data>/artifacts/`; this is its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: Ulid,
    pub owner: String,
    pub job: Option<Ulid>,
    pub stage: Option<String>,
    /// File name a client should save it as.
    pub name: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    /// Path relative to the artifacts dir.
    pub path: String,
    pub created_at: Millis,
}

/// A presenter: portrait, voice and style reused across renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: Ulid,
    pub owner: String,
    pub name: String,
    pub portrait: Option<Ulid>,
    /// Face box in portrait pixels: x, y, w, h.
    pub face_box: Option<[u32; 4]>,
    pub voice_sample: Option<Ulid>,
    pub voice: Voice,
    pub style: Style,
    pub created_at: Millis,
}

/// Which TTS voice speaks for a profile and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Voice {
    pub model: String,
    pub speaker: Option<String>,
    pub length_scale: Option<f32>,
    pub noise_scale: Option<f32>,
    pub noise_w: Option<f32>,
}

/// Look of a profile's renders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Style {
    pub prompt_prefix: String,
    pub negative_prompt: String,
    pub preset: Option<String>,
}

/// Access scope of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    Admin,
    Client,
}

/// An API key; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Ulid,
    pub name: String,
    /// sha256 of the key, hex.
    pub hash: String,
    pub scope: Scope,
    pub max_queued: Option<u64>,
    pub gpu_seconds_per_day: Option<u64>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    /// Most bytes of artifacts the key's owner may hold (record version 2; `None` for
    /// keys written before it).
    pub max_storage_bytes: Option<u64>,
}

/// A progress or state change of a job; `seq` orders all events of the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub job: Ulid,
    pub owner: String,
    pub at: Millis,
    pub body: EventBody,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    State { state: String, error: Option<String> },
    Stage { stage: String, state: String },
    Progress { stage: String, step: u64, total: u64, message: Option<String> },
    Log { level: String, message: String },
    Artifact { stage: String, artifact: Ulid, media_type: String },
}

impl EventBody {
    /// The SSE `event:` name.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::State { .. } => "state",
            EventBody::Stage { .. } => "stage",
            EventBody::Progress { .. } => "progress",
            EventBody::Log { .. } => "log",
            EventBody::Artifact { .. } => "artifact",
        }
    }
}
