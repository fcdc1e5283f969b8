//! Cancel and retry: what a user's (or a revoke's) control of one job does to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ulid::Ulid;

use super::Scheduler;
use crate::store::StoreError;
use crate::store::records::{EventBody, Job, JobState, JobStatus, now_ms};

/// Why a cancel or retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the job's state is {0}; only {1} jobs can be {2}")]
    WrongState(JobStatus, &'static str, &'static str),
}

impl Scheduler {
    /// Cancels a job: a queued one at once, a running one through its token (its
    /// pipeline sees it between steps). `reason` (why, and by whom: "canceled because the
    /// key … was revoked") is kept on the canceled job and is the error of its `canceled`
    /// event, for whoever reads its views or events.
    pub async fn cancel(&self, id: Ulid, reason: Option<String>) -> Result<Job, ControlError> {
        for _ in 0..50 {
            let why = reason.clone();
            let job = self
                .store
                .update_job(id, true, move |j| match j.state {
                    JobState::Queued { .. } => {
                        j.state = JobState::Canceled { canceled_at: now_ms(), reason: why.clone() };
                        Ok(vec![EventBody::State { state: JobStatus::Canceled, error: why }])
                    }
                    _ => Ok(vec![]),
                })
                .await?;
            match job.state {
                JobState::Canceled { .. } => {
                    self.waiting.forget(id);
                    return Ok(job);
                }
                JobState::Running { .. } => {
                    let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).get(&id).map(|r| {
                        if let Some(why) = &reason {
                            // Set before the token fires, so the job's end finds it.
                            let _ = r.cancel_reason.set(why.clone());
                        }
                        r.cancel.clone()
                    });
                    if let Some(token) = running {
                        token.cancel();
                        return Ok(job);
                    }
                    // Claimed but not yet registered by its worker: try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => return Err(ControlError::WrongState(job.state.status(), "queued or running", "canceled")),
            }
        }
        Err(ControlError::WrongState(JobStatus::Running, "queued or running", "canceled"))
    }

    /// Re-queues a failed or canceled job, or one waiting to try again after a failed
    /// attempt (it may start now); finished stages are kept.
    pub async fn retry(&self, id: Ulid) -> Result<Job, ControlError> {
        let requeued = Arc::new(AtomicBool::new(false));
        let did = requeued.clone();
        let job = self
            .store
            .update_job(id, true, move |j| match j.state {
                JobState::Failed { .. } | JobState::Canceled { .. } | JobState::Queued { not_before: Some(_), .. } => {
                    j.requeue(None);
                    j.attempts = 0;
                    did.store(true, Ordering::Relaxed);
                    Ok(vec![EventBody::State { state: JobStatus::Queued, error: None }])
                }
                _ => Ok(vec![]),
            })
            .await?;
        if !requeued.load(Ordering::Relaxed) {
            return Err(ControlError::WrongState(job.state.status(), "failed or canceled", "retried"));
        }
        self.notify();
        Ok(job)
    }
}
