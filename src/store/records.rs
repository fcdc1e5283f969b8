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
    /// When it first started since it was submitted or retried by hand. Each try has its own
    /// start in `state` (what a GPU quota charges); a try that resumes the job after a crash
    /// or a retriable failure keeps this one, so the job's time counts from its first start,
    /// not its last try's. `None` before it started, and on records from before version 4.
    pub first_started_at: Option<Millis>,
    pub stages: Vec<Stage>,
    /// Boxed: most jobs have none, and a job is moved and cloned often.
    pub idempotency_key: Option<Box<IdempotencyKey>>,
    pub created_at: Millis,
}

/// A client's `Idempotency-Key` with what it asked for when it first used it: the same
/// key sent with another request is refused rather than answered with this job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub key: String,
    /// sha256 (hex) of the request's kind and parameters as sent; `None` on jobs kept before
    /// it was recorded (their key answers any request with them, as it did then).
    pub request: Option<String>,
}

impl Job {
    /// Marks the stages still running failed with `error` (the job ends failed: they must
    /// not stay `running` in views); the names of those it marked.
    pub fn fail_running_stages(&mut self, now: Millis, error: &str) -> Vec<StageName> {
        let mut failed = Vec::new();
        for stage in &mut self.stages {
            if let StageState::Running { started_at, .. } = stage.state {
                stage.state = StageState::Failed { started_at, finished_at: now, error: error.to_string() };
                failed.push(stage.name);
            }
        }
        failed
    }

    /// Puts the job back in the queue (crash recovery, shutdown checkpoint, retry backoff):
    /// every stage not done runs again.
    pub fn requeue(&mut self, not_before: Option<Millis>) {
        self.state = JobState::Queued { enqueued_at: now_ms(), not_before };
        for stage in &mut self.stages {
            if !matches!(stage.state, StageState::Done { .. }) {
                stage.state = StageState::Pending;
            }
        }
    }

    /// Marks the stages still running stopped at `now` (a canceled job: left `running`,
    /// views and the dashboard showed it running on; put back to pending, nothing showed
    /// where it stopped). `progress` is the running stage's last report (`stage`, `step`,
    /// `total`), kept with the stage it names. A retry runs a stopped stage again, as every
    /// stage not done.
    pub fn stop_running_stages(&mut self, now: Millis, progress: Option<(&str, u64, u64)>) {
        for stage in &mut self.stages {
            if let StageState::Running { started_at, .. } = stage.state {
                let (step, total) = match progress {
                    Some((name, step, total)) if name == stage.name.as_str() => (step, total),
                    _ => (0, 0),
                };
                stage.state = StageState::Stopped { started_at, stopped_at: now, step, total };
            }
        }
    }
}

/// Where a job is in its life; each variant carries the times that define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    Queued {
        enqueued_at: Millis,
        not_before: Option<Millis>,
    },
    Running {
        enqueued_at: Millis,
        started_at: Millis,
        device: DeviceId,
    },
    Succeeded {
        started_at: Millis,
        finished_at: Millis,
    },
    Failed {
        started_at: Option<Millis>,
        finished_at: Millis,
        error: String,
    },
    /// `reason` says why and by whom (`canceled because the key "kid" was revoked`,
    /// `canceled by an admin (key "mum")`, or what the owner gave); `None` for jobs
    /// canceled before job record version 2 kept it.
    Canceled {
        canceled_at: Millis,
        reason: Option<String>,
    },
}

impl JobState {
    /// The state without its times.
    pub fn status(&self) -> JobStatus {
        match self {
            JobState::Queued { .. } => JobStatus::Queued,
            JobState::Running { .. } => JobStatus::Running,
            JobState::Succeeded { .. } => JobStatus::Succeeded,
            JobState::Failed { .. } => JobStatus::Failed,
            JobState::Canceled { .. } => JobStatus::Canceled,
        }
    }

    /// The state's name as the API spells it.
    pub fn name(&self) -> &'static str {
        self.status().as_str()
    }

    /// True once the job will not run again unless retried.
    pub fn is_terminal(&self) -> bool {
        self.status().is_terminal()
    }

    /// When a finished job finished (succeeded, failed or was canceled); `None` while it may
    /// still run.
    pub fn finished_at(&self) -> Option<Millis> {
        match self {
            JobState::Succeeded { finished_at, .. } | JobState::Failed { finished_at, .. } => Some(*finished_at),
            JobState::Canceled { canceled_at, .. } => Some(*canceled_at),
            JobState::Queued { .. } | JobState::Running { .. } => None,
        }
    }
}

/// One stage of a job, the unit of resumption after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: StageName,
    pub state: StageState,
    pub artifacts: Vec<Ulid>,
    /// Energy used by the stage in watt-hours, when the device reports it.
    pub energy_wh: Option<f64>,
}

/// Where a stage is; finished stages are never redone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StageState {
    Pending,
    Running {
        started_at: Millis,
        device: DeviceId,
    },
    Done {
        started_at: Millis,
        finished_at: Millis,
        device: DeviceId,
    },
    Failed {
        started_at: Millis,
        finished_at: Millis,
        error: String,
    },
    /// Stopped by a cancel with `step` of `total` done (0 of 0 when nothing was reported);
    /// run again by a retry. Last, so records before job version 5 read as they were.
    Stopped {
        started_at: Millis,
        stopped_at: Millis,
        step: u64,
        total: u64,
    },
}

impl StageState {
    /// The state without its times.
    pub fn status(&self) -> StageStatus {
        match self {
            StageState::Pending => StageStatus::Pending,
            StageState::Running { .. } => StageStatus::Running,
            StageState::Done { .. } => StageStatus::Done,
            StageState::Failed { .. } => StageStatus::Failed,
            StageState::Stopped { .. } => StageStatus::Stopped,
        }
    }

    /// The state's name as the API spells it.
    pub fn name(&self) -> &'static str {
        self.status().as_str()
    }
}

/// A state (or stage) name that is not one of its enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

/// Defines a state-name enum that reads and writes as its lowercase name, in JSON and in
/// stored records alike: events stored while these were strings decode unchanged, and the
/// wire shows the same words.
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        pub enum $name {
            $(#[doc = $text] $variant),+
        }

        impl $name {
            /// Every value, in order (states in life order).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl From<$name> for &'static str {
            fn from(s: $name) -> Self {
                s.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownState(other.to_string())),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownState;
            fn try_from(s: String) -> Result<Self, UnknownState> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, not `write_str`: tables format states with widths (`{:<8}`).
                f.pad(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

status_enum! {
    /// A job's state without its times: what events, filters and views carry.
    JobStatus { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Canceled => "canceled" }
}

impl JobStatus {
    /// True once the job will not run again unless retried.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
    }
}

status_enum! {
    /// A stage's state without its times: what stage events and views carry.
    StageStatus { Pending => "pending", Running => "running", Done => "done", Failed => "failed", Stopped => "stopped" }
}

status_enum! {
    /// A stage of some job kind (kinds name theirs from this one list, so events, records
    /// and views carry a closed set; stored and sent as the lowercase name).
    StageName {
        Card => "card",
        Summary => "summary",
        Speech => "speech",
        Lipsync => "lipsync",
        Upscale => "upscale",
        Generate => "generate",
        Pull => "pull",
        Plan => "plan",
        Keyframes => "keyframes",
        Narration => "narration",
        Motion => "motion",
        TalkingHead => "talking_head",
        Mux => "mux",
        Import => "import",
        Detect => "detect",
        Resize => "resize",
        Refine => "refine",
    }
}

/// A finished output file. Bytes live under `<data>/artifacts/`; this is its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: Ulid,
    pub owner: String,
    pub job: Option<Ulid>,
    /// The job stage that made it (a stage name), or what brought it in (`upload`, `profile`).
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

impl Artifact {
    /// Whether a client sent it (`upload`, `profile`) rather than a job made it: only
    /// uploads are found again by their bytes (`store::uploads`).
    pub fn is_upload(&self) -> bool {
        self.job.is_none() && matches!(self.stage.as_deref(), Some("upload" | "profile"))
    }
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

/// Look of a profile's renders, and the models that make them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Style {
    pub prompt_prefix: String,
    pub negative_prompt: String,
    pub preset: Option<String>,
    /// Installed diffusion model for the keyframes when a render names none (profile
    /// record version 2; `None` for profiles written before it).
    pub image_model: Option<String>,
    /// Installed lip-sync model for the presenter when a render names none (profile record
    /// version 3; `None` for profiles written before it: the box's default).
    pub lipsync_model: Option<String>,
    /// Installed upscaler for an upscaled render that names none (profile record version 3,
    /// as `lipsync_model`).
    pub upscale_model: Option<String>,
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
    /// Who revoked it, as people read it: `key "mum"`, `user alice` (record version 3;
    /// `None` while active, and for keys revoked before it).
    pub revoked_by: Option<String>,
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
    State { state: JobStatus, error: Option<String> },
    Stage { stage: StageName, state: StageStatus },
    Progress { stage: StageName, step: u64, total: u64, message: Option<String> },
    Log { level: String, message: String },
    Artifact { stage: StageName, artifact: Ulid, media_type: String },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `EventBody` as it was when states were strings; events stored then must still read.
    #[derive(Serialize, Deserialize)]
    enum StringEventBody {
        State { state: String, error: Option<String> },
        Stage { stage: String, state: String },
    }

    #[test]
    fn state_enums_encode_exactly_as_the_strings_they_replaced() {
        let config = bincode::config::standard();
        let old = StringEventBody::State { state: "canceled".into(), error: None };
        let new = EventBody::State { state: JobStatus::Canceled, error: None };
        let old_bytes = bincode::serde::encode_to_vec(&old, config).expect("encode");
        assert_eq!(old_bytes, bincode::serde::encode_to_vec(&new, config).expect("encode"));
        let (read, _): (EventBody, usize) = bincode::serde::decode_from_slice(&old_bytes, config).expect("decode");
        assert_eq!(read, new);
        let old = StringEventBody::Stage { stage: "card".into(), state: "done".into() };
        let old_bytes = bincode::serde::encode_to_vec(&old, config).expect("encode");
        let (read, _): (EventBody, usize) = bincode::serde::decode_from_slice(&old_bytes, config).expect("decode");
        assert_eq!(read, EventBody::Stage { stage: StageName::Card, state: StageStatus::Done });
        assert_eq!(serde_json::to_string(&JobStatus::Succeeded).expect("json"), "\"succeeded\"");
        assert!(serde_json::from_str::<StageStatus>("\"finished\"").is_err(), "unknown names are refused");
        assert_eq!(format!("{:<8}|", StageStatus::Done), "done    |", "widths apply as they did to strings");
    }
}
