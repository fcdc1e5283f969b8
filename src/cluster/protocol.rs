//! What travels through NATS, as JSON: stage work, results, progress, heartbeats, and
//! the subjects, stream and bucket names they use. Both sides build every name here.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Work-queue stream of stages; one subject per box (`reelbox.work.NAME`).
pub const WORK_STREAM: &str = "REELBOX_WORK";
/// Subjects of the work stream.
pub const WORK_SUBJECTS: &str = "reelbox.work.>";
/// Stream of stage results for the head (work-queue, file storage: survives restarts).
pub const RESULT_STREAM: &str = "REELBOX_RESULTS";
/// Subjects of stage results, one per box (`reelbox.result.NAME`), so that per-box NATS
/// permissions (`reelbox cluster nats-config`) let a box publish only its own.
pub const RESULT_SUBJECTS: &str = "reelbox.result.>";
/// The head's durable consumer of results.
pub const RESULT_CONSUMER: &str = "head";
/// KV bucket of worker heartbeats (capabilities), one key per box, entries expire.
pub const BOXES_BUCKET: &str = "reelbox_boxes";
/// KV bucket of when the head last saw each box alive (ms since the epoch), no TTL: the
/// head's forget clock (`forget_box_after_h`) survives its restarts. Only the head uses it.
pub const SEEN_BUCKET: &str = "reelbox_seen";

/// The one artifact bucket all boxes shared before each had its own: its rights are
/// rewritten by `nats-config --add-to`, and the head deletes it once empty.
pub const SHARED_BUCKET_BEFORE: &str = "reelbox_artifacts";

/// Object store bucket of one box's stage inputs and outputs in transit: one per box, so
/// that per-box NATS permissions keep a box from reading another's artifacts.
pub fn object_bucket(host: &str) -> String {
    format!("reelbox_artifacts_{host}")
}

/// Subject a box's stages are published on.
pub fn work_subject(host: &str) -> String {
    format!("reelbox.work.{host}")
}

/// Subject a box publishes its stage results on.
pub fn result_subject(host: &str) -> String {
    format!("reelbox.result.{host}")
}

/// Inbox prefix of a box's connection: replies to it (JetStream answers, fetched work)
/// arrive under it, and per-box permissions let only that box subscribe there.
pub fn inbox_prefix(host: &str) -> String {
    format!("_INBOX_{host}")
}

/// Core subject of a job's live progress and log lines from the box running it (worker →
/// head); per box, so that per-box permissions keep a box from speaking for another.
pub fn progress_subject(host: &str, job: Ulid) -> String {
    format!("reelbox.progress.{host}.{job}")
}

/// Core subject on which a box asks the head whether it still holds a run for it, before
/// running a stage queued before this run of the box joined (see [`crate::cluster::held`]).
/// Under the box's own progress subjects: per-box rights already let only that box publish
/// there, so the subject proves who asks and no server config needs new rights.
pub fn held_subject(host: &str, job: Ulid) -> String {
    format!("reelbox.progress.{host}.held.{job}")
}

/// Core subject on which a box asks the same while it runs the stage (each time its
/// connection comes back, and at each heartbeat), to stop a run the head gave away while the
/// box was cut off. Told apart from [`held_subject`] so that the head does not keep the run
/// for the box on this question (the box's heartbeat says whether it is there), and a head
/// from before this, which does not listen here, leaves the run going.
pub fn running_held_subject(host: &str, job: Ulid) -> String {
    format!("{}{RUNNING_ASK}", held_subject(host, job))
}

/// The end of [`running_held_subject`].
pub const RUNNING_ASK: &str = ".running";

/// The head's side of [`held_subject`] and [`running_held_subject`]: every box's questions.
pub const HELD_SUBJECTS: &str = "reelbox.progress.*.held.>";

/// The head's answer to a box asking after a run ([`held_subject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// The head waits for this run from this box (and, asked before the box runs it, no
    /// longer counts the box gone for a heartbeat TTL).
    Yes,
    /// The head took the run back (its box stopped answering, or the job was canceled or
    /// has ended): running it would be wasted, its result discarded.
    GivenAway,
    /// The head knows nothing of it (it restarted since): the box runs it, and a head
    /// that resumes the job takes the result.
    Unknown,
}

/// Core subject that cancels a job's remote stage (head → workers).
pub fn cancel_subject(job: Ulid) -> String {
    format!("reelbox.cancel.{job}")
}

/// Durable consumer name of a box.
pub fn box_consumer(host: &str) -> String {
    format!("box-{host}")
}

/// Which run of which stage: a result counts only while the head still waits for exactly
/// this run, so a late or duplicate result is discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunKey {
    /// The job.
    pub job: Ulid,
    /// Index of the stage in the job.
    pub stage: usize,
    /// The job's attempt number this run belongs to.
    pub attempt: u32,
}

impl RunKey {
    /// Unique text for message ids and object names.
    pub fn tag(&self) -> String {
        format!("{}-{}-{}", self.job, self.stage, self.attempt)
    }
}

/// An artifact in the object store: an input for a stage, or a stage's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Object name in the running box's [`object_bucket`].
    pub object: String,
    /// The artifact id on the head (inputs) or a worker-made id (outputs).
    pub id: Ulid,
    /// Artifact name (`card.png`).
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// The stage that made it, for inputs.
    pub stage: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the bytes, checked after download.
    pub sha256: String,
    /// The bytes themselves (base64) for a small artifact that travels inside its message;
    /// `object` then names nothing in the store. Saves the store's round trips per stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// A stage for a worker box.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageWork {
    /// Which run this is.
    pub key: RunKey,
    /// Job kind name.
    pub kind: String,
    /// Stage name.
    pub stage: String,
    /// The job's owner (artifacts it may read were checked by the head).
    pub owner: String,
    /// The kind's stored (typed) parameters.
    pub params: serde_json::Value,
    /// GPU index on the box, `None` for its CPU.
    pub gpu: Option<u32>,
    /// Artifacts the stage may read: earlier stages' and those the parameters name.
    pub inputs: Vec<ObjectRef>,
}

/// Every string in `params` that reads as an id (artifact references such as a portrait).
pub fn named_ids(params: &serde_json::Value, out: &mut Vec<Ulid>) {
    match params {
        serde_json::Value::String(s) if s.len() == 26 => out.extend(Ulid::from_string(s).ok()),
        serde_json::Value::Array(v) => v.iter().for_each(|x| named_ids(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| named_ids(x, out)),
        _ => {}
    }
}

/// The owner's artifacts `params` names (see [`named_ids`]): an id that is no artifact of
/// theirs is skipped; a store that cannot answer is an error (the stage fails and is
/// retried, rather than being sent without an input).
pub fn named_artifacts(
    params: &serde_json::Value,
    own: &dyn crate::kinds::OwnArtifacts,
) -> Result<Vec<crate::store::records::Artifact>, crate::store::StoreError> {
    let mut ids = Vec::new();
    named_ids(params, &mut ids);
    Ok(ids.into_iter().map(|id| own.artifact(id)).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
}

/// How a stage ended on a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// Finished; its outputs are in the object store.
    Done {
        /// The outputs, in the order the stage made them.
        outputs: Vec<ObjectRef>,
    },
    /// Failed with the worker's error.
    Failed {
        /// The error as the worker saw it.
        error: String,
        /// Whether another attempt may pass.
        retriable: bool,
    },
    /// Stopped by a cancel.
    Canceled,
}

/// A stage's result, published by the worker that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageResult {
    /// Which run.
    pub key: RunKey,
    /// The box that ran it.
    pub host: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// A live line from a running remote stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Live {
    /// Step progress.
    Progress {
        /// Steps done.
        step: u64,
        /// Steps in all.
        total: u64,
        /// What it is doing.
        message: Option<String>,
    },
    /// A log line.
    Log {
        /// `info`, `warn`, `error`.
        level: String,
        /// The line.
        message: String,
    },
}

/// One device of a box in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvertDevice {
    /// `cpu` or `cuda:N` (on that box).
    pub device: String,
    /// Device name (GPU model).
    pub name: String,
    /// Stages it runs at once.
    pub slots: usize,
    /// Total memory, MiB (GPUs).
    pub total_mib: Option<u64>,
    /// Free memory, MiB (GPUs).
    pub free_mib: Option<u64>,
    /// Utilisation, percent.
    pub util: Option<u32>,
    /// Power draw, W.
    pub power_w: Option<f64>,
    /// Temperature, °C.
    pub temp_c: Option<u32>,
}

/// A stage running on a box, as its heartbeat lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvertRunning {
    /// Which run.
    pub key: RunKey,
    /// Stage name.
    pub stage: String,
    /// Device on the box.
    pub device: String,
}

/// A worker's heartbeat: what it has and what it runs (the KV value under its name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advert {
    /// The box name.
    pub host: String,
    /// reelbox version on the box.
    pub version: String,
    /// Devices with their free memory.
    pub devices: Vec<AdvertDevice>,
    /// The box's latest full GPU readings (the head shows them as `NAME/cuda:N`).
    #[serde(default)]
    pub gpus: Vec<crate::gpu::GpuSample>,
    /// Models installed on the box (it never gets a stage that needs another).
    pub models: Vec<String>,
    /// The same models with what the head checks and fills a request with when it lacks
    /// them itself (absent from older boxes, whose models the head must have too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_details: Vec<crate::kinds::box_models::BoxModel>,
    /// Job kinds it runs.
    pub kinds: Vec<String>,
    /// Stages running now.
    pub running: Vec<AdvertRunning>,
    /// When this heartbeat was sent, ms since the epoch.
    pub at_ms: i64,
    /// Why the box takes no new stages: its data dir's disk (where a stage's scratch files
    /// and outputs go) is below its `limits.min_free_disk_bytes`. Absent from older boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_low: Option<String>,
    /// Which process sends it: two boxes under one name are told apart by it (absent
    /// from older boxes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
}

/// One run of `reelbox worker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Made at its start (its time is when it started).
    pub id: Ulid,
    /// The machine's hostname.
    pub machine: String,
    /// Its process id there.
    pub pid: u32,
}
