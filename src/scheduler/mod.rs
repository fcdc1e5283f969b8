//! Queue order, workers per device, cancellation, retries and recovery. The store holds
//! the queue (so it survives `kill -9`); this module decides who runs what, when.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::kinds::JobKind;
use crate::store::records::{EventBody, Job, JobState, now_ms};
use crate::store::{Store, StoreError, requeue};

mod run;
mod sink;

/// Live progress of a running job (kept in memory; events carry the history).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct LiveProgress {
    pub stage: String,
    pub step: u64,
    pub total: u64,
    pub message: Option<String>,
}

struct RunningJob {
    cancel: CancellationToken,
    progress: Arc<Mutex<LiveProgress>>,
}

/// Why a cancel or retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job is {0}; only {1} jobs can be {2}")]
    WrongState(String, &'static str, &'static str),
}

/// The scheduler and its workers.
pub struct Scheduler {
    store: Store,
    config: Arc<Config>,
    engine: Arc<Engine>,
    kinds: HashMap<&'static str, Arc<dyn JobKind>>,
    devices: Vec<(DeviceId, usize)>,
    wake: Notify,
    paused: AtomicBool,
    running: Mutex<HashMap<Ulid, RunningJob>>,
    shutdown: CancellationToken,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Scheduler {
    /// Builds the scheduler; `start` launches the workers.
    pub fn new(store: Store, config: Arc<Config>, engine: Arc<Engine>, kinds: Vec<Arc<dyn JobKind>>) -> Arc<Self> {
        let mut devices = vec![(DeviceId::Cpu, config.workers.cpu_concurrency.max(1))];
        devices.extend(
            crate::gpu::visible_gpus(&config)
                .into_iter()
                .map(|i| (DeviceId::Cuda(i), config.workers.gpu_concurrency.max(1))),
        );
        Arc::new(Self {
            store,
            config,
            engine,
            kinds: kinds.into_iter().map(|k| (k.name(), k)).collect(),
            devices,
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            workers: Mutex::new(Vec::new()),
        })
    }

    /// Recovers jobs a crash left running, then starts one worker task per device slot.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let recovered = self.store.recover_running().await?;
        if recovered > 0 {
            tracing::warn!(recovered, "re-queued jobs that were running when the daemon stopped");
        }
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for &(device, slots) in &self.devices {
            for slot in 0..slots {
                let me = self.clone();
                workers.push(tokio::spawn(async move { me.worker(device, slot).await }));
            }
        }
        Ok(())
    }

    /// The job kinds this scheduler runs.
    pub fn kind(&self, name: &str) -> Option<Arc<dyn JobKind>> {
        self.kinds.get(name).cloned()
    }

    /// Names of the known kinds.
    pub fn kind_names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.kinds.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Devices with their worker slot counts.
    pub fn devices(&self) -> &[(DeviceId, usize)] {
        &self.devices
    }

    /// The store the scheduler works on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The engine jobs run on.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The daemon's configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Tells idle workers that a job may be waiting.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// True while the queue is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Pauses or resumes taking new jobs; running jobs continue.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        if !paused {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
    }

    /// Live progress of a running job.
    pub fn progress(&self, id: Ulid) -> Option<LiveProgress> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(&id).map(|r| r.progress.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Number of jobs running now.
    pub fn running_count(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Cancels a job: a queued one at once, a running one through its token (its
    /// pipeline sees it between steps).
    pub async fn cancel(&self, id: Ulid) -> Result<Job, ControlError> {
        for _ in 0..50 {
            let job = self
                .store
                .update_job(id, true, |j| match j.state {
                    JobState::Queued { .. } => {
                        j.state = JobState::Canceled { canceled_at: now_ms() };
                        Ok(vec![EventBody::State { state: "canceled".into(), error: None }])
                    }
                    _ => Ok(vec![]),
                })
                .await?;
            match job.state {
                JobState::Canceled { .. } => return Ok(job),
                JobState::Running { .. } => {
                    let token =
                        self.running.lock().unwrap_or_else(|p| p.into_inner()).get(&id).map(|r| r.cancel.clone());
                    if let Some(token) = token {
                        token.cancel();
                        return Ok(job);
                    }
                    // Claimed but not yet registered by its worker: try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => return Err(ControlError::WrongState(job.state.name().into(), "queued or running", "canceled")),
            }
        }
        Err(ControlError::WrongState("running".into(), "queued or running", "canceled"))
    }

    /// Re-queues a failed or canceled job; finished stages are kept.
    pub async fn retry(&self, id: Ulid) -> Result<Job, ControlError> {
        let job = self
            .store
            .update_job(id, true, |j| match j.state {
                JobState::Failed { .. } | JobState::Canceled { .. } => {
                    requeue(j, None);
                    j.attempts = 0;
                    Ok(vec![EventBody::State { state: "queued".into(), error: None }])
                }
                _ => Ok(vec![]),
            })
            .await?;
        if !matches!(job.state, JobState::Queued { .. }) {
            return Err(ControlError::WrongState(job.state.name().into(), "failed or canceled", "retried"));
        }
        self.notify();
        Ok(job)
    }

    /// Stops taking jobs, checkpoints running ones back into the queue, and waits (up to
    /// `grace`) for workers to finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            for r in running.values() {
                r.cancel.cancel();
            }
        }
        self.wake.notify_waiters();
        let workers: Vec<_> = self.workers.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        let all = futures::future::join_all(workers);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("workers did not stop within {grace:?}; their jobs resume at next start");
        }
    }

    async fn worker(self: Arc<Self>, device: DeviceId, slot: usize) {
        tracing::debug!(%device, slot, "worker started");
        while !self.shutdown.is_cancelled() {
            if self.is_paused() {
                self.idle().await;
                continue;
            }
            let store = self.store.clone();
            let known: Vec<String> = self.kinds.keys().map(|k| k.to_string()).collect();
            // The pause is checked again inside the claim's transaction: a claim already on
            // its way when the queue was paused must not take a job submitted after.
            let me = self.clone();
            let accept = move |job: &Job| !me.is_paused() && known.contains(&job.kind);
            let claimed = tokio::task::spawn_blocking(move || store.claim_blocking(device, accept)).await;
            match claimed {
                Ok(Ok(Some(job))) => {
                    // More may be waiting: let another idle slot look too.
                    self.wake.notify_one();
                    self.clone().run_job(job, device).await;
                }
                Ok(Ok(None)) => self.idle().await,
                Ok(Err(e)) => {
                    tracing::error!(%device, "cannot claim a job: {e}");
                    self.idle().await;
                }
                Err(e) => tracing::error!(%device, "claim task failed: {e}"),
            }
        }
        tracing::debug!(%device, slot, "worker stopped");
    }

    async fn idle(&self) {
        // The timeout also wakes jobs whose retry backoff has passed.
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}
