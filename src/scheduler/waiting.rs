//! Why a queued job waits when no box can take it (a head whose work all goes to worker
//! boxes, with none connected or none holding the job's models; GPU memory other jobs
//! hold): placement notes the reason inside the claim, the job view shows it, and each
//! new reason is said once as a `log` event (so SSE followers see it) after the claim's
//! transaction. A job that waits for memory, then for a slot, then for memory again is
//! told once: a reason is said again only when it changes.

use std::collections::HashMap;
use std::sync::Mutex;

use ulid::Ulid;

use crate::store::Store;
use crate::store::records::{EventBody, Job};

/// What every queued job waits for while the queue is paused (said by the view only: a
/// pause is one act on the box, not news for each job's event stream).
pub const PAUSED: &str = "the queue is paused; `reelbox queue resume` (POST /api/v1/queue/resume) starts it again";

/// Reasons by job, the last one said for each, and the ones not yet said as events.
#[derive(Default)]
pub(super) struct Waiting {
    reasons: Mutex<HashMap<Ulid, String>>,
    said: Mutex<HashMap<Ulid, String>>,
    unsaid: Mutex<Vec<(Job, String)>>,
}

impl Waiting {
    /// Records why `job` waits now (`None`: it does not, or only for a free slot).
    pub fn note(&self, job: &Job, reason: Option<String>) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = reason else {
            reasons.remove(&job.id);
            return;
        };
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        if said.get(&job.id) != Some(&r) {
            said.insert(job.id, r.clone());
            self.unsaid.lock().unwrap_or_else(|p| p.into_inner()).push((job.clone(), r.clone()));
        }
        reasons.insert(job.id, r);
    }

    /// Why the job waits, when no box can take it.
    pub fn reason(&self, id: Ulid) -> Option<String> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Forgets a job that left the queue (claimed or canceled).
    pub fn forget(&self, id: Ulid) {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.said.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Appends a `waiting: …` log event for each reason noted since the last call; blocking.
    pub fn say(&self, store: &Store) {
        let unsaid: Vec<_> = self.unsaid.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for (job, reason) in unsaid {
            tracing::warn!(job = %job.id, "waiting: {reason}");
            let event = EventBody::Log { level: "warn".into(), message: format!("waiting: {reason}") };
            if let Err(e) = store.append_events_blocking(&job, vec![event]) {
                tracing::error!(job = %job.id, "cannot record why the job waits: {e}");
            }
        }
    }
}
