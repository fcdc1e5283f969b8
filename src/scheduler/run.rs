//! Running one claimed job stage by stage on a worker thread.
//!
//! A job's end is written once more after every failed attempt (a full disk, most often),
//! until it lands or the daemon shuts down: the store's writer reopens the database after
//! a failed commit and the readiness probe keeps testing it, so as soon as space is freed
//! the job leaves `running` with the error that ended it (for a full disk, the artifact
//! write's "No space left on device" under the data dir). A write that never lands before
//! shutdown leaves the job `running` on disk, which crash recovery re-queues at the next
//! start. Stage-start/end writes that fail end the attempt as retriable instead.

use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::sink::JobSink;
use super::{LiveProgress, RemoteError, RemoteStage, RunningJob, Scheduler};
use crate::gpu::DeviceId;
use crate::kinds::{StageError, StageRun};
use crate::store::records::{EventBody, Job, JobState, JobStatus, StageState, StageStatus, now_ms};

/// One line in the daemon's log for a job that failed or will try again, so that
/// `journalctl -u reelbox` answers "why did my render fail" without the API.
fn log_end(job: &Job, error: &str) {
    let (id, kind, attempt) = (job.id, job.kind.as_str(), job.attempts);
    match &job.state {
        JobState::Failed { .. } => tracing::warn!(job = %id, kind, attempt, "job failed: {error}"),
        JobState::Queued { not_before: Some(due), .. } => {
            let in_s = (due - now_ms()).max(0) / 1000;
            tracing::warn!(job = %id, kind, attempt, "attempt failed, trying again in {in_s} s: {error}");
        }
        _ => {}
    }
}

/// How a job's run ended.
#[derive(Clone)]
enum Outcome {
    Succeeded,
    Canceled,
    Checkpointed,
    /// A stage for a worker box was never sent: the head's NATS server does not answer.
    NotSent(String),
    Retry(String),
    Failed(String),
}

impl Scheduler {
    pub(super) async fn run_job(self: Arc<Self>, job: Job, device: DeviceId) {
        let cancel = self.shutdown.child_token();
        let progress = Arc::new(Mutex::new(LiveProgress::default()));
        let reason = Arc::new(OnceLock::new());
        let running = RunningJob { cancel: cancel.clone(), progress: progress.clone(), cancel_reason: reason.clone() };
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(job.id, running);
        let id = job.id;
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || me.execute(job, device, &cancel, &progress, &reason)).await;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Err(e) = result {
            tracing::error!(job = %id, "job thread failed: {e}");
        }
    }

    fn execute(
        &self,
        job: Job,
        device: DeviceId,
        cancel: &CancellationToken,
        progress: &Arc<Mutex<LiveProgress>>,
        cancel_reason: &OnceLock<String>,
    ) {
        let outcome = self.run_stages(&job, device, cancel, progress);
        let error = match &outcome {
            Outcome::Retry(e) | Outcome::Failed(e) => e.clone(),
            _ => String::new(),
        };
        let cancel_reason = cancel_reason.get().cloned();
        // Where a cancel stopped the job, kept in the stage it stopped (views show it).
        let last = progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let store = &self.store;
        let max_attempts = self.config.queue.max_attempts;
        let backoff_ms = self.config.queue.retry_backoff_s.saturating_mul(1000) as i64;
        let finish = move |j: &mut Job| {
            let started_at = match j.state {
                JobState::Running { started_at, .. } => Some(started_at),
                _ => None,
            };
            let now = now_ms();
            Ok(match outcome {
                Outcome::Succeeded => {
                    j.state = JobState::Succeeded { started_at: started_at.unwrap_or(now), finished_at: now };
                    vec![EventBody::State { state: JobStatus::Succeeded, error: None }]
                }
                Outcome::Canceled => {
                    j.state = JobState::Canceled { canceled_at: now, reason: cancel_reason.clone() };
                    j.stop_running_stages(now, Some((&last.stage, last.step, last.total)));
                    vec![EventBody::State { state: JobStatus::Canceled, error: cancel_reason.clone() }]
                }
                stopped @ (Outcome::Checkpointed | Outcome::NotSent(_)) => {
                    // Shutdown, or a NATS server away, is not the job's fault: the attempt does not count.
                    j.requeue(None);
                    j.attempts = j.attempts.saturating_sub(1);
                    let mut events = Vec::new();
                    if let Outcome::NotSent(msg) = &stopped {
                        let message = format!("{msg}; it waits for the server, and this attempt does not count");
                        events.push(EventBody::Log { level: "warn".into(), message });
                    }
                    events.push(EventBody::State { state: JobStatus::Queued, error: None });
                    events
                }
                Outcome::Retry(msg) if j.attempts < max_attempts => {
                    let delay = backoff_ms.saturating_mul(1 << j.attempts.saturating_sub(1).min(16));
                    // The stage this attempt stopped in stays failed with its error until the
                    // next attempt runs it again: the job's view (`error`, `jobs show`, top,
                    // the web studio) says why it waits to try again, not only its events.
                    let stopped = j.stages.clone();
                    j.requeue(Some(now + delay));
                    for (stage, before) in j.stages.iter_mut().zip(stopped) {
                        if let StageState::Running { started_at, .. } = before.state {
                            stage.state = StageState::Failed { started_at, finished_at: now, error: msg.clone() };
                        }
                    }
                    vec![
                        EventBody::Log {
                            level: "warn".into(),
                            message: format!("attempt {} failed: {msg}; retrying in {} ms", j.attempts, delay),
                        },
                        EventBody::State { state: JobStatus::Queued, error: Some(msg) },
                    ]
                }
                Outcome::Retry(msg) | Outcome::Failed(msg) => {
                    // The stage the last attempt stopped in failed with it (a retriable error
                    // left it `running`: views and the dashboard showed it running on a
                    // failed job).
                    let failed = j.fail_running_stages(now, &msg);
                    let mut events: Vec<EventBody> = failed
                        .into_iter()
                        .map(|stage| EventBody::Stage { stage, state: StageStatus::Failed })
                        .collect();
                    j.state = JobState::Failed { started_at, finished_at: now, error: msg.clone() };
                    events.push(EventBody::State { state: JobStatus::Failed, error: Some(msg) });
                    events
                }
            })
        };
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            // The closure is consumed per try and the outcome must survive a failed one.
            let finish = finish.clone();
            let e = match store.update_job_blocking(job.id, true, finish) {
                Ok(ended) => {
                    log_end(&ended, &error);
                    break;
                }
                Err(e) => e,
            };
            if matches!(e, crate::store::StoreError::NotFound { .. }) || self.shutdown.is_cancelled() {
                tracing::error!(job = %job.id, "cannot record the job's end: {e}");
                break;
            }
            tracing::error!(job = %job.id, "cannot record the job's end, retrying in {delay:?}: {e}");
            std::thread::sleep(delay);
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
        self.notify();
    }

    fn run_stages(
        &self,
        job: &Job,
        device: DeviceId,
        cancel: &CancellationToken,
        progress: &Arc<Mutex<LiveProgress>>,
    ) -> Outcome {
        let Some(kind) = self.kind(&job.kind) else {
            return Outcome::Failed(format!("unknown job kind {:?}", job.kind));
        };
        let params: serde_json::Value = match serde_json::from_str(&job.params) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("stored parameters are unreadable: {e}")),
        };
        let scratch_root = self.config.data_dir.join("scratch").join(job.id.to_string());
        for (index, stage) in job.stages.iter().enumerate() {
            if matches!(stage.state, StageState::Done { .. }) {
                continue;
            }
            if cancel.is_cancelled() {
                return self.stopped();
            }
            let name = stage.name;
            let started_at = now_ms();
            let mark = self.store.update_job_blocking(job.id, false, {
                move |j| {
                    if let Some(s) = j.stages.get_mut(index) {
                        s.state = StageState::Running { started_at, device };
                    }
                    Ok(vec![EventBody::Stage { stage: name, state: StageStatus::Running }])
                }
            });
            if let Err(e) = mark {
                return Outcome::Retry(format!("cannot record stage start: {e}"));
            }
            *progress.lock().unwrap_or_else(|p| p.into_inner()) =
                LiveProgress { stage: name.to_string(), step: 0, total: 0, message: None };
            let energy_start = self.mark_stage_energy(job.id, device);
            let sink =
                JobSink::new(self.store.clone(), job.clone(), name, scratch_root.join(name.as_str()), progress.clone());
            let run = StageRun {
                job_id: job.id,
                owner: &job.owner,
                params: &params,
                device,
                engine: &self.engine,
                config: &self.config,
                cancel,
                sink: &sink,
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (device, self.remote()) {
                (DeviceId::Remote { .. }, Some(remote)) => remote.run_stage(RemoteStage {
                    job,
                    index,
                    params: &params,
                    device,
                    cancel,
                    stopping: &self.shutdown,
                    sink: &sink,
                }),
                (DeviceId::Remote { .. }, None) => {
                    Err(StageError::retriable(format!("{device} is not in a cluster")).into())
                }
                _ => kind.run_stage(name, &run).map_err(RemoteError::Stage),
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(StageError::fatal(format!("internal error in stage {name}: {what}")).into())
            });
            let artifacts = sink.finish();
            // Whole-device energy: exact with one job per GPU (`gpu_concurrency = 1`);
            // with more, concurrent jobs' stages each count the device's total.
            let energy_wh =
                energy_start.zip(self.telemetry.energy_mj(device)).map(|(a, b)| crate::gpu::telemetry::energy_wh(a, b));
            let result = match result {
                Err(RemoteError::NotSent(why)) => return Outcome::NotSent(format!("stage {name} was not sent: {why}")),
                Err(RemoteError::Stage(e)) => Err(e),
                Ok(()) => Ok(()),
            };
            match result {
                Ok(()) => {
                    let finished_at = now_ms();
                    let done = self.store.update_job_blocking(job.id, true, {
                        move |j| {
                            if let Some(s) = j.stages.get_mut(index) {
                                s.state = StageState::Done { started_at, finished_at, device };
                                s.artifacts = artifacts;
                                s.energy_wh = energy_wh;
                            }
                            Ok(vec![EventBody::Stage { stage: name, state: StageStatus::Done }])
                        }
                    });
                    if let Err(e) = done {
                        return Outcome::Retry(format!("cannot record stage end: {e}"));
                    }
                }
                Err(StageError::Canceled) => return self.stopped(),
                Err(e) if e.is_retriable() => return Outcome::Retry(format!("stage {name}: {e}")),
                Err(e) => {
                    let finished_at = now_ms();
                    let error = format!("stage {name}: {e}");
                    let stage_error = error.clone();
                    let _ = self.store.update_job_blocking(job.id, true, move |j| {
                        if let Some(s) = j.stages.get_mut(index) {
                            s.state = StageState::Failed { started_at, finished_at, error: stage_error };
                            s.energy_wh = energy_wh;
                        }
                        Ok(vec![EventBody::Stage { stage: name, state: StageStatus::Failed }])
                    });
                    return Outcome::Failed(error);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch_root);
        Outcome::Succeeded
    }

    /// Reads the device's energy counter at a stage start and remembers it for live views.
    fn mark_stage_energy(&self, job: ulid::Ulid, device: DeviceId) -> Option<u64> {
        let start = self.telemetry.energy_mj(device);
        if let Some(p) = self.ledger.lock().unwrap_or_else(|p| p.into_inner()).placed.get_mut(&job) {
            p.stage_energy_start = start;
        }
        start
    }

    fn stopped(&self) -> Outcome {
        if self.shutdown.is_cancelled() { Outcome::Checkpointed } else { Outcome::Canceled }
    }
}
