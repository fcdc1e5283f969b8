//! Why a queued job waits when no box can take it (a head whose work all goes to worker
//! boxes, with none connected or none holding the job's models): placement notes the
//! reason inside the claim, the job view shows it, and each new reason is said once as a
//! `log` event (so SSE followers see it) after the claim's transaction.

use std::collections::HashMap;
use std::sync::Mutex;

use ulid::Ulid;

use crate::store::Store;
use crate::store::records::{EventBody, Job};

/// Reasons by job, and the ones not yet said as events.
#[derive(Default)]
pub(super) struct Waiting {
    reasons: Mutex<HashMap<Ulid, String>>,
    unsaid: Mutex<Vec<(Job, String)>>,
}

impl Waiting {
    /// Records why `job` waits now (`None`: it does not, or only for a free slot).
    pub fn note(&self, job: &Job, reason: Option<String>) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        match reason {
            Some(r) if reasons.get(&job.id) != Some(&r) => {
                reasons.insert(job.id, r.clone());
                self.unsaid.lock().unwrap_or_else(|p| p.into_inner()).push((job.clone(), r));
            }
            Some(_) => {}
            None => {
                reasons.remove(&job.id);
            }
        }
    }

    /// Why the job waits, when no box can take it.
    pub fn reason(&self, id: Ulid) -> Option<String> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Forgets a job that left the queue other than through a claim (canceled).
    pub fn forget(&self, id: Ulid) {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
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
