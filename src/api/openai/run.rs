//! Runs a job for a client that waits on the same request. The job is an ordinary job
//! (queue, dashboard, artifacts); a guard cancels it when the request future is dropped,
//! which hyper does when the client disconnects mid-request.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::broadcast::error::RecvError;
use ulid::Ulid;

use super::OpenAiError;
use crate::api::ApiError;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::jobs::Submission;
use crate::scheduler::Scheduler;
use crate::store::records::{Artifact, EventBody, Job, JobState};

/// How often the job is re-read even without an event (a lagged subscriber misses some).
const RECHECK: Duration = Duration::from_secs(1);

/// Cancels a job through the scheduler when dropped, unless disarmed.
pub struct CancelOnDrop {
    scheduler: Arc<Scheduler>,
    job: Option<Ulid>,
}

impl CancelOnDrop {
    /// Arms the guard for `job`.
    pub fn new(scheduler: Arc<Scheduler>, job: Ulid) -> Self {
        Self { scheduler, job: Some(job) }
    }

    /// The job ended on its own; nothing to cancel.
    pub fn disarm(&mut self) {
        self.job = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(job) = self.job.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let scheduler = self.scheduler.clone();
        tracing::info!(%job, "client went away; canceling its job");
        // Drop cannot await: the cancel runs as its own task.
        runtime.spawn(async move {
            let why = "canceled because the client that asked for it disconnected before it finished";
            if let Err(e) = scheduler.cancel(job, Some(why.to_string())).await {
                tracing::debug!(%job, "cancel after disconnect: {e}");
            }
        });
    }
}

/// What a waiting request learns about its job.
pub enum Progress {
    /// The job stored a picture: a step preview or a final one (`outputs::is_preview` tells).
    Preview(Ulid),
    /// The job ended (succeeded, failed or canceled).
    Done(Job),
}

/// A queued job its client waits on: holds the client's stream slot, the event
/// subscription and the guard that cancels the job if the waiting is dropped.
pub struct Waiting {
    state: AppState,
    id: Ulid,
    events: tokio::sync::broadcast::Receiver<Arc<crate::store::records::Event>>,
    guard: CancelOnDrop,
    _permit: crate::api::limits::StreamPermit,
}

/// Validates and queues a job for a client that waits on it. Dropping the returned
/// [`Waiting`] (client disconnect) cancels the job.
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    params: serde_json::Value,
) -> Result<Waiting, OpenAiError> {
    let submission = Submission { kind: kind.to_string(), params, priority: 0, idempotency_key: None };
    let job = state.jobs.prepare(&caller.into(), submission).map_err(ApiError::from)?;
    // A request held open until its job ends is a stream too: it takes a slot meanwhile.
    let permit = state.gate.streams.acquire(caller, &state.config.limits)?;
    // Subscribed before the job exists, so its final event cannot slip past.
    let events = state.store.subscribe();
    let mut guard = CancelOnDrop::new(state.scheduler.clone(), job.id);
    let job = match state.jobs.enqueue(&caller.into(), job).await {
        Ok(submitted) => submitted.job,
        Err(e) => {
            // Refused (queue full, shutting down): there is no job to cancel.
            guard.disarm();
            return Err(ApiError::from(e).into());
        }
    };
    Ok(Waiting { state: state.clone(), id: job.id, events, guard, _permit: permit })
}

impl Waiting {
    /// The job's id.
    pub fn id(&self) -> Ulid {
        self.id
    }

    /// Waits for the job's next preview or its end.
    pub async fn next(&mut self) -> Result<Progress, OpenAiError> {
        let id = self.id;
        loop {
            let current = self.state.store.job(id).map_err(|e| OpenAiError::internal(e.to_string()))?;
            match current {
                Some(j) if j.state.is_terminal() => {
                    self.guard.disarm();
                    return Ok(Progress::Done(j));
                }
                Some(_) => {}
                None => return Err(OpenAiError::internal(format!("job {id} disappeared"))),
            }
            let deadline = tokio::time::sleep(RECHECK);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    got = self.events.recv() => match got {
                        Ok(e) if e.job == id => match e.body {
                            EventBody::State { .. } => break,
                            EventBody::Artifact { artifact, ref media_type, .. } if media_type.starts_with("image/") => {
                                return Ok(Progress::Preview(artifact));
                            }
                            _ => {}
                        },
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => { deadline.as_mut().await; break }
                    },
                    _ = &mut deadline => break,
                    _ = self.state.shutdown.cancelled() => {
                        return Err(OpenAiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "shutting_down",
                            format!("the daemon is shutting down; job {id} was not finished"),
                        ));
                    }
                }
            }
        }
    }

    /// Waits for the job's end.
    pub async fn finish(mut self) -> Result<Job, OpenAiError> {
        loop {
            if let Progress::Done(job) = self.next().await? {
                return Ok(job);
            }
        }
    }
}

/// The error a client sees for a job that did not succeed.
pub fn job_failure(job: &Job) -> OpenAiError {
    // Failures the box could retry it already did (`Failure::is_retriable`); the SDKs'
    // own retries on 409 and 5xx would only queue the same work again as new jobs.
    let e = match &job.state {
        JobState::Failed { error, .. } => OpenAiError::internal(format!("job {} failed: {error}", job.id)),
        JobState::Canceled { reason, .. } => {
            // "canceled by its owner" reads on after "was"; a reason someone typed follows a colon.
            let how = match reason.as_deref() {
                Some(r) if r.starts_with("canceled ") => r.to_string(),
                Some(r) => format!("canceled: {r}"),
                None => "canceled".to_string(),
            };
            OpenAiError::new(StatusCode::CONFLICT, "canceled", format!("job {} was {how}", job.id))
        }
        other => OpenAiError::internal(format!("job {} ended {}", job.id, other.name())),
    };
    e.final_answer()
}

/// The bytes of a job's artifact.
pub async fn read_artifact(state: &AppState, a: &Artifact) -> Result<Vec<u8>, OpenAiError> {
    let path = state.store.artifacts_dir().join(&a.path);
    tokio::fs::read(&path)
        .await
        .map_err(|e| OpenAiError::internal(format!("artifact {} unreadable at {}: {e}", a.id, path.display())))
}
