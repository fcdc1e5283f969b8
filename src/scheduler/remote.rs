//! The scheduler's one seam to other boxes: [`RemoteBoxes`] lists worker boxes' devices
//! for placement and runs a stage on one of them. The cluster module implements it; without
//! `[cluster]` nothing is attached and the single-box path is unchanged.

use tokio_util::sync::CancellationToken;

use super::Scheduler;
use super::placement::Candidate;
use crate::gpu::DeviceId;
use crate::kinds::{StageError, StageSink};
use crate::store::records::Job;

/// A worker box's device as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteDevice {
    /// `NAME/cpu` or `NAME/cuda:N`.
    pub device: DeviceId,
    /// GPU model name (`None` for a CPU).
    pub name: Option<String>,
    /// Total GPU memory, MiB (`None` for a CPU).
    pub total_mib: Option<u64>,
    /// Stages it runs at once.
    pub slots: usize,
    /// Free GPU memory, MiB (`None` for a CPU).
    pub free_mib: Option<u64>,
    /// GPU utilisation, percent.
    pub util: Option<u32>,
    /// Models installed on that box.
    pub installed: Vec<String>,
    /// Why the box takes no new stages now (its disk is below its floor), in a user's words.
    pub held: Option<String>,
}

/// One stage to run on a worker box.
pub struct RemoteStage<'a> {
    /// The job as claimed (its `attempts` already counts this run).
    pub job: &'a Job,
    /// Index of the stage in `job.stages`.
    pub index: usize,
    /// The job's stored parameters.
    pub params: &'a serde_json::Value,
    /// The remote device placement chose.
    pub device: DeviceId,
    /// Fires on cancel or shutdown.
    pub cancel: &'a CancellationToken,
    /// Fires on shutdown only: the remote stage may go on, its result is taken at restart.
    pub stopping: &'a CancellationToken,
    /// Where progress, logs and the stage's outputs go, exactly as for a local stage.
    pub sink: &'a dyn StageSink,
}

/// Why a stage placed on a worker box did not finish.
#[derive(Debug)]
pub enum RemoteError {
    /// It failed (or was canceled) as a local stage would.
    Stage(StageError),
    /// It never reached its box: the head's NATS server does not answer. Not the job's
    /// fault, so the attempt does not count; the job waits for the server.
    NotSent(String),
}

impl From<StageError> for RemoteError {
    fn from(e: StageError) -> Self {
        RemoteError::Stage(e)
    }
}

/// Worker boxes the scheduler may place stages on.
pub trait RemoteBoxes: Send + Sync {
    /// Every live box's devices now.
    fn devices(&self) -> Vec<RemoteDevice>;
    /// Runs one stage on its box and brings its outputs in through the sink; blocking.
    fn run_stage(&self, stage: RemoteStage<'_>) -> Result<(), RemoteError>;
    /// Whether the NATS server does not answer now: no box can be seen or sent work.
    fn unreachable(&self) -> bool {
        false
    }
    /// How many stages may run remotely at once (the scheduler's remote worker tasks).
    fn max_running(&self) -> usize;
    /// The live boxes' last heartbeats by name, as JSON (`GET /api/v1/cluster`): their
    /// wire form belongs to the cluster module, which the scheduler does not import.
    fn adverts(&self) -> Vec<serde_json::Value>;
    /// Seconds a heartbeat lives: a box silent this long is gone.
    fn heartbeat_ttl_s(&self) -> u64;
    /// Each box's artifact bucket with what it holds (boxes gone included), as JSON;
    /// counted when asked (it lists the NATS server's buckets), hence a future.
    fn buckets(&self) -> futures::future::BoxFuture<'_, Vec<serde_json::Value>> {
        Box::pin(async { Vec::new() })
    }
}

impl Scheduler {
    /// Placement candidates for the live worker boxes' devices.
    pub(super) fn remote_candidates(&self, ledger: &super::placement::Ledger) -> Vec<Candidate> {
        let Some(remote) = self.remote.get() else { return Vec::new() };
        let keep_alive = std::time::Duration::from_secs(self.config.runtime.keep_alive_s);
        remote
            .devices()
            .into_iter()
            .map(|d| {
                let (running, reserved) = ledger.load(d.device);
                Candidate {
                    device: d.device,
                    idle_slots: d.slots.saturating_sub(running),
                    running,
                    free_mib: d.free_mib.map(|f| f.saturating_sub(reserved)),
                    util: d.util,
                    warm: ledger.warm(d.device, keep_alive),
                    installed: Some(d.installed),
                    held: d.held,
                }
            })
            .collect()
    }
}
