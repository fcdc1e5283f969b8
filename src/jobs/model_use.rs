//! What removing an installed model would break: the queued and running jobs that run it
//! (they would fail without it), asked before `DELETE /api/v1/models/{name}` removes it.

use ulid::Ulid;

use super::{Error, Service};
use crate::store::JobFilter;
use crate::store::records::JobStatus;

/// Jobs read per page while looking (the queue holds at most `queue.max_queued`).
const PAGE: usize = 500;

impl Service {
    /// The queued and running jobs, any owner's, whose models include `name` (a profile's
    /// or a default's choice included, as their views list them), newest first.
    pub fn jobs_needing_model(&self, name: &str) -> Result<Vec<Ulid>, Error> {
        let mut ids = Vec::new();
        for state in [JobStatus::Running, JobStatus::Queued] {
            let filter = JobFilter { state: Some(state), kind: None, owner: None };
            let mut before = None;
            loop {
                let page = self.store().list_jobs(&filter, before, PAGE)?;
                let needing = page.iter().filter(|job| self.scheduler.view_needs(job).1.iter().any(|m| m == name));
                ids.extend(needing.map(|job| job.id));
                if page.len() < PAGE {
                    break;
                }
                before = page.last().map(|job| job.id);
            }
        }
        Ok(ids)
    }
}
