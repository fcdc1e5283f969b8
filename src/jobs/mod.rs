//! The jobs service: everything a submission, cancel, retry, reprioritisation or delete
//! decides, whichever API layer (native routes, OpenAI, ComfyUI) it came through. Route
//! handlers are thin adapters over [`Service`]; this module knows nothing of HTTP, so its
//! errors are a typed [`Error`] that the API maps to responses in one place.

mod control;
mod error;
mod limits;
mod model_use;
mod profile;
mod submit;
mod weights;

use std::sync::Arc;

use crate::config::Config;
use crate::scheduler::Scheduler;
use crate::store::Store;

pub use control::{CANCEL_REASON_MAX_CHARS, JobList, ListRequest, PAGE_SIZES};
pub use error::{Error, GpuQuotaRefusal};
pub use limits::check_params;
pub use profile::{face_box_fix, model_fix};
pub use submit::Submission;

/// Who asks: the identity and quotas the service's rules look at.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// Owner the job is filed under.
    pub owner: String,
    /// How messages name the submitter (`key "laptop"`, `local`).
    pub label: String,
    /// Admins may submit admin-only kinds, use any priority and see every owner's jobs.
    pub admin: bool,
    /// Most queued jobs this submitter may have (key quota).
    pub max_queued: Option<u64>,
    /// GPU-seconds this submitter may use per UTC day (key quota).
    pub gpu_seconds_per_day: Option<u64>,
}

impl Submitter {
    /// Whether this submitter may see a record owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.owner == owner
    }

    /// The owner filter for listings: `None` (everything) for admins.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.admin).then(|| self.owner.clone())
    }
}

/// The jobs service over the daemon's scheduler (and through it the store and config).
#[derive(Clone)]
pub struct Service {
    scheduler: Arc<Scheduler>,
    /// Stage weights of the jobs shown lately ([`Service::stage_weights`]).
    weights: Arc<weights::WeightCache>,
}

impl Service {
    /// A service over a started scheduler.
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        Self { scheduler, weights: Arc::default() }
    }

    fn store(&self) -> &Store {
        self.scheduler.store()
    }

    fn config(&self) -> &Config {
        self.scheduler.config()
    }
}

/// Parses a record id; the error names `what` (`job`, `profile`, `artifact`) under field `id`.
pub fn parse_id(what: &str, raw: &str) -> Result<ulid::Ulid, crate::kinds::ParamError> {
    ulid::Ulid::from_string(raw)
        .map_err(|_| crate::kinds::ParamError::new("id", format!("{raw:?} is not a valid {what} id")))
}

/// The short form of a job id, as `reelbox top` shows it: its last 8 characters (the first
/// ones are a timestamp and repeat between jobs submitted together).
pub fn short_id(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}
