//! A request sent again after its client stopped waiting gets the job the first one
//! started. OpenAI's SDKs give up on a request after their timeout (10 minutes by default)
//! and send the same request again; a picture on a CPU-only box or behind a long queue can
//! take longer than that. Were the first job canceled when its client hung up, every try
//! would start over at the back of the queue and none would finish.
//!
//! So every job a client waits on is tracked with its request's [`Fingerprint`] (owner, job
//! kind, parameters). When its last waiting client hangs up, the job keeps going for
//! `openai.hangup_grace_s`; the same request sent in that time waits on it, and only a job
//! nobody came back for is canceled. A request that says it is a retry (the SDKs' header
//! `x-stainless-retry-count`) also joins a job whose first client the daemon has not yet
//! seen hang up: the retry can arrive before the hang-up is noticed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::scheduler::Scheduler;

/// The header OpenAI's SDKs number their retries of one request in (0 on the first try).
pub const RETRY_HEADER: &str = "x-stainless-retry-count";

/// What makes two requests the same: who sent it, the job kind and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    owner: String,
    kind: String,
    /// The parameters as JSON: the routes build them from a typed request, so the same
    /// request always writes the same text.
    params: String,
}

impl Fingerprint {
    /// The fingerprint of `owner`'s request for a `kind` job with `params`.
    pub fn new(owner: &str, kind: &str, params: &serde_json::Value) -> Self {
        Self { owner: owner.to_string(), kind: kind.to_string(), params: params.to_string() }
    }
}

/// A tracked job: its request, how many clients wait on it, and which hang-up's grace is
/// running (a later hang-up's grace replaces an earlier one's).
struct Tracked {
    fingerprint: Fingerprint,
    waiters: usize,
    hangups: u64,
}

/// The jobs clients wait on through the OpenAI routes, by job id.
pub struct Waits {
    scheduler: Arc<Scheduler>,
    grace: Duration,
    shutdown: CancellationToken,
    jobs: Mutex<HashMap<Ulid, Tracked>>,
}

impl Waits {
    /// Jobs left for `grace` before they are canceled (at once when the daemon shuts down).
    pub fn new(scheduler: Arc<Scheduler>, grace: Duration, shutdown: CancellationToken) -> Self {
        Self { scheduler, grace, shutdown, jobs: Mutex::default() }
    }

    /// Tracks a new job a client waits on; the guard lets go of it.
    pub fn track(self: &Arc<Self>, fingerprint: Fingerprint, job: Ulid) -> Watch {
        self.table().insert(job, Tracked { fingerprint, waiters: 1, hangups: 0 });
        Watch { waits: self.clone(), job: Some(job) }
    }

    /// A job this same request may wait on: one whose clients all hung up, or, for a
    /// request that says it is a retry, any. `None` when there is none: make a new one.
    pub fn join(self: &Arc<Self>, fingerprint: &Fingerprint, retry: bool) -> Option<(Ulid, Watch)> {
        let mut jobs = self.table();
        let same = |t: &Tracked| &t.fingerprint == fingerprint;
        let left = jobs.iter().find(|(_, t)| same(t) && t.waiters == 0).map(|(id, _)| *id);
        let job = match left {
            Some(job) => job,
            None if retry => jobs.iter().find(|(_, t)| same(t)).map(|(id, _)| *id)?,
            None => return None,
        };
        if let Some(tracked) = jobs.get_mut(&job) {
            tracked.waiters += 1;
        }
        Some((job, Watch { waits: self.clone(), job: Some(job) }))
    }

    /// One client stopped waiting on `job`: it ended (`ended`), or the client hung up.
    fn release(self: &Arc<Self>, job: Ulid, ended: bool) {
        let hangup = {
            let mut jobs = self.table();
            let Some(tracked) = jobs.get_mut(&job) else { return };
            tracked.waiters = tracked.waiters.saturating_sub(1);
            if ended {
                jobs.remove(&job);
                return;
            }
            if tracked.waiters > 0 {
                return;
            }
            tracked.hangups += 1;
            tracked.hangups
        };
        // Called from a guard's `Drop`, which cannot wait: the grace runs as a task.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        tracing::info!(%job, grace_s = self.grace.as_secs(), "client went away; its job waits for the request again");
        let this = self.clone();
        runtime.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(this.grace) => {}
                _ = this.shutdown.cancelled() => {}
            }
            let unclaimed = {
                let mut jobs = this.table();
                let unclaimed = jobs.get(&job).is_some_and(|t| t.waiters == 0 && t.hangups == hangup);
                if unclaimed {
                    jobs.remove(&job);
                }
                unclaimed
            };
            if unclaimed {
                cancel(&this.scheduler, job).await;
            }
        });
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Ulid, Tracked>> {
        // The table holds plain counts; one a panicking holder left is still whole.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn cancel(scheduler: &Scheduler, job: Ulid) {
    tracing::info!(%job, "nobody asked again for the job of a client that went away; canceling it");
    let why = "canceled because the client that asked for it disconnected before it finished";
    if let Err(e) = scheduler.cancel(job, Some(why.to_string())).await {
        // Most often the job ended meanwhile.
        tracing::debug!(%job, "cancel after disconnect: {e}");
    }
}

/// One client's wait on a tracked job. Dropped while armed (the client hung up), it leaves
/// the job for the request sent again once no other client waits on it.
pub struct Watch {
    waits: Arc<Waits>,
    job: Option<Ulid>,
}

impl Watch {
    /// The job ended, or was never queued: nothing is left to anyone.
    pub fn ended(&mut self) {
        if let Some(job) = self.job.take() {
            self.waits.release(job, true);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.waits.release(job, false);
        }
    }
}

/// Whether a request says it is a retry of one sent before.
pub fn is_retry(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(RETRY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|n| n > 0)
}
