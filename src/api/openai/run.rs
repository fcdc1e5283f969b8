//! Runs a job for a client that waits on the same request. The job is an ordinary job
//! (queue, dashboard, artifacts); when the request future is dropped, which hyper does when
//! the client disconnects mid-request, a guard leaves the job for the same request sent
//! again and cancels it if none comes ([`super::rejoin`]).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::broadcast::error::RecvError;
use ulid::Ulid;

use super::OpenAiError;
use super::rejoin::{Fingerprint, Watch};
use crate::api::ApiError;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::jobs::Submission;
use crate::store::records::{Artifact, EventBody, Job, JobState};

/// How often the job is re-read even without an event (a lagged subscriber misses some).
const RECHECK: Duration = Duration::from_secs(1);

/// What a waiting request learns about its job.
pub enum Progress {
    /// The job stored a picture: a step preview or a final one (`outputs::is_preview` tells).
    Preview(Ulid),
    /// The job ended (succeeded, failed or canceled).
    Done(Job),
}

/// A queued job its client waits on: holds the client's stream slot, the event
/// subscription and its [`Watch`] on the job, which leaves the job for the request sent
/// again if the waiting is dropped.
pub struct Waiting {
    state: AppState,
    id: Ulid,
    events: tokio::sync::broadcast::Receiver<Arc<crate::store::records::Event>>,
    watch: Watch,
    _permit: crate::api::limits::StreamPermit,
}

/// Validates and queues a job for a client that waits on it, or waits on the job this same
/// request started before ([`super::rejoin`]; `retry` when the request says it is sent
/// again). Dropping the returned [`Waiting`] (client disconnect) leaves the job for the
/// request sent again, canceled if it is not.
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    params: serde_json::Value,
    retry: bool,
) -> Result<Waiting, OpenAiError> {
    let fingerprint = Fingerprint::new(&caller.owner, kind, &params);
    let submission = Submission { kind: kind.to_string(), params, priority: 0, idempotency_key: None };
    let job = state.jobs.prepare(&caller.into(), submission).map_err(ApiError::from)?;
    // A request held open until its job ends is a stream too: it takes a slot meanwhile.
    let permit = state.gate.streams.acquire(caller, &state.config.limits)?;
    // Subscribed before the job exists, so its final event cannot slip past.
    let events = state.store.subscribe();
    if let Some((id, watch)) = rejoin(state, &fingerprint, retry)? {
        return Ok(Waiting { state: state.clone(), id, events, watch, _permit: permit });
    }
    let mut watch = state.waits.track(fingerprint, job.id);
    let job = match state.jobs.enqueue(&caller.into(), job).await {
        Ok(submitted) => submitted.job,
        Err(e) => {
            // Refused (queue full, shutting down): there is no job to leave.
            watch.ended();
            return Err(ApiError::from(e).into());
        }
    };
    Ok(Waiting { state: state.clone(), id: job.id, events, watch, _permit: permit })
}

/// The job this same request started before, while it may still give the answer: queued,
/// running or succeeded (after a failure or a cancel the request makes a new job).
fn rejoin(state: &AppState, fingerprint: &Fingerprint, retry: bool) -> Result<Option<(Ulid, Watch)>, OpenAiError> {
    let Some((id, mut watch)) = state.waits.join(fingerprint, retry) else { return Ok(None) };
    let job = state.store.job(id).map_err(|e| OpenAiError::internal(e.to_string()))?;
    if job.is_some_and(|j| !j.state.is_terminal() || matches!(j.state, JobState::Succeeded { .. })) {
        tracing::info!(job = %id, "a request came again; it waits on the job its first try started");
        return Ok(Some((id, watch)));
    }
    watch.ended();
    Ok(None)
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
                    self.watch.ended();
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
