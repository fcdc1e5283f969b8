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
use crate::gpu::{DeviceId, DeviceInfo, Telemetry};
use crate::kinds::JobKind;
use crate::store::records::{Job, JobState};
use crate::store::{Store, StoreError};

mod admission;
mod control;
pub mod gpus;
mod need;
mod pause;
pub mod placement;
pub mod remote;
mod run;
mod sink;
mod waiting;

pub use admission::{NeedsCuda, TooBigForGpus};
pub use control::ControlError;
use need::ClaimPass;
use placement::{Candidate, Ledger};
pub use remote::{RemoteBoxes, RemoteDevice, RemoteError, RemoteStage};
pub use waiting::PAUSED as PAUSED_REASON;

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
    /// Why it was canceled, when the cancel said (a revoked key): its end event carries it.
    cancel_reason: Arc<std::sync::OnceLock<String>>,
}

/// A worker's answer for one queued job.
enum Placement {
    Take,
    /// Placement wants another device for it.
    Elsewhere,
    Skip,
}

/// The scheduler and its workers.
pub struct Scheduler {
    store: Store,
    config: Arc<Config>,
    engine: Arc<Engine>,
    kinds: HashMap<&'static str, Arc<dyn JobKind>>,
    devices: Vec<(DeviceId, usize)>,
    /// The GPUs workers run on (the telemetry source's, limited by `workers.gpus`; none
    /// when the CUDA provider does not register).
    gpus: gpus::UsableGpus,
    telemetry: Arc<Telemetry>,
    /// What runs where; locked briefly, never across a store call.
    ledger: Mutex<Ledger>,
    wake: Notify,
    paused: AtomicBool,
    /// Whether the last look found the data dir's disk too full to start jobs (`pause.rs`).
    disk_held: AtomicBool,
    running: Mutex<HashMap<Ulid, RunningJob>>,
    shutdown: CancellationToken,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Worker boxes, once a cluster head reached its NATS server (before `start`, or later
    /// when the server was down then: [`Scheduler::connect_remote`]).
    remote: std::sync::OnceLock<Arc<dyn RemoteBoxes>>,
    /// Whether this box leads worker boxes (`[cluster]` as head), reached yet or not.
    remote_expected: bool,
    /// Whether this box runs jobs itself (off: a head that only hands stages out).
    local_work: bool,
    /// Why queued jobs no box can take wait.
    waiting: waiting::Waiting,
}

impl Scheduler {
    /// Builds the scheduler over this process's telemetry source (NVML, or fakes from
    /// `REELBOX_FAKE_GPUS`, or none); `start` launches the workers and the sampler.
    pub fn new(store: Store, config: Arc<Config>, engine: Arc<Engine>, kinds: Vec<Arc<dyn JobKind>>) -> Arc<Self> {
        let telemetry = Telemetry::new(crate::gpu::open_source());
        Self::with_telemetry(store, config, engine, kinds, telemetry)
    }

    /// As [`Scheduler::new`] with a given telemetry.
    pub fn with_telemetry(
        store: Store,
        config: Arc<Config>,
        engine: Arc<Engine>,
        kinds: Vec<Arc<dyn JobKind>>,
        telemetry: Arc<Telemetry>,
    ) -> Arc<Self> {
        let gpus = gpus::usable_gpus(&telemetry, &config, &engine);
        let paused = pause::left_paused(&store);
        let mut devices = vec![(DeviceId::Cpu, config.workers.cpu_concurrency.max(1))];
        devices.extend(gpus.list.iter().map(|g| (g.id, config.workers.gpu_concurrency.max(1))));
        Arc::new(Self {
            store,
            config,
            engine,
            kinds: kinds.into_iter().map(|k| (k.name(), k)).collect(),
            devices,
            gpus,
            telemetry,
            ledger: Mutex::new(Ledger::default()),
            wake: Notify::new(),
            paused: AtomicBool::new(paused),
            disk_held: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            workers: Mutex::new(Vec::new()),
            remote: std::sync::OnceLock::new(),
            remote_expected: false,
            local_work: true,
            waiting: Default::default(),
        })
    }

    /// Recovers jobs a crash left running, then starts one worker task per device slot.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let recovered = self.store.recover_running(self.config.queue.max_attempts).await?;
        if recovered.requeued > 0 {
            tracing::warn!(recovered = recovered.requeued, "re-queued jobs that were running when the daemon stopped");
        }
        if recovered.failed > 0 {
            tracing::error!(
                failed = recovered.failed,
                "failed jobs that were running each time the daemon stopped, up to queue.max_attempts"
            );
        }
        self.telemetry.start();
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let remote_only = self.remote_expected && !self.local_work;
        for &(device, slots) in &self.devices {
            // A head that leaves work to its boxes still runs the jobs about its own models
            // (`JobKind::runs_on_head`), on one CPU slot.
            let slots = if remote_only { usize::from(device == DeviceId::Cpu) } else { slots };
            for slot in 0..slots {
                let me = self.clone();
                workers.push(tokio::spawn(async move { me.worker(Some(device), slot).await }));
            }
        }
        drop(workers);
        if let Some(remote) = self.remote.get() {
            self.start_remote_workers(remote.max_running());
        }
        Ok(())
    }

    fn start_remote_workers(self: &Arc<Self>, slots: usize) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for slot in 0..slots {
            let me = self.clone();
            workers.push(tokio::spawn(async move { me.worker(None, slot).await }));
        }
    }

    /// Makes this box a cluster head (before `start`), whose worker boxes attach once its
    /// NATS server answers; `local_work` false leaves all work to them, and jobs wait
    /// (`no worker box is connected`) until then.
    pub fn expect_remote(mut self: Arc<Self>, local_work: bool) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.remote_expected = true;
            me.local_work = local_work;
        }
        self
    }

    /// Attaches worker boxes (before `start`); `local_work` false leaves all work to them.
    pub fn attach_remote(self: Arc<Self>, remote: Arc<dyn RemoteBoxes>, local_work: bool) -> Arc<Self> {
        let me = self.expect_remote(local_work);
        let _ = me.remote.set(remote);
        me
    }

    /// Attaches worker boxes to a running scheduler (a head whose NATS server answered only
    /// after the daemon started), starting its remote worker tasks.
    pub fn connect_remote(self: &Arc<Self>, remote: Arc<dyn RemoteBoxes>) {
        let slots = remote.max_running();
        if self.remote.set(remote).is_ok() && !self.shutdown.is_cancelled() {
            self.start_remote_workers(slots);
            self.notify();
        }
    }

    /// The NATS server of a cluster head that has not reached it yet (its worker boxes are
    /// not attached; `cluster::dial` keeps trying), or that does not answer now.
    pub fn unreached_nats(&self) -> Option<&str> {
        let unreached = self.remote.get().is_none_or(|r| r.unreachable());
        let cluster = self.config.cluster.as_ref().filter(|_| self.remote_expected && unreached);
        cluster.map(|c| c.nats_server())
    }

    /// The worker boxes, when a cluster is attached.
    pub fn remote(&self) -> Option<&Arc<dyn RemoteBoxes>> {
        self.remote.get()
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

    /// Device telemetry (history, live samples, energy counters).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The GPUs workers run on.
    pub fn gpus(&self) -> &[DeviceInfo] {
        &self.gpus.list
    }

    /// Why GPUs were found but none is used (the CUDA provider does not register).
    pub fn gpus_unusable(&self) -> Option<&str> {
        self.gpus.unusable.as_deref()
    }

    /// Energy a running job's current stage has used so far, Wh (device counter delta).
    pub fn live_stage_energy_wh(&self, id: Ulid) -> Option<f64> {
        let (device, start) = {
            let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
            let p = ledger.placed.get(&id)?;
            (p.device, p.stage_energy_start?)
        };
        Some(crate::gpu::telemetry::energy_wh(start, self.telemetry.energy_mj(device)?))
    }

    /// Placement's view of every device now.
    fn candidates(&self, ledger: &Ledger) -> Vec<Candidate> {
        let latest = self.telemetry.latest();
        let keep_alive = Duration::from_secs(self.config.runtime.keep_alive_s);
        // With worker boxes a job may name a model only they have: the head's own devices
        // say what it has, or such a job would be placed here and fail for good. Alone,
        // this box has every model a request passed validation with.
        let installed = self.remote.get().map(|_| crate::kinds::box_models::installed_names(&self.config));
        self.devices
            .iter()
            .map(|&(device, slots)| {
                let (running, reserved) = ledger.load(device);
                let (free_mib, util) = match device {
                    DeviceId::Cpu | DeviceId::Remote { .. } => (None, None),
                    DeviceId::Cuda(i) => {
                        let sample = latest.as_ref().and_then(|s| s.gpus.iter().find(|g| g.index == i));
                        let total =
                            self.gpus().iter().find(|g| g.id == device).map(|g| g.memory_total >> 20).unwrap_or(0);
                        (Some(placement::free_mib(sample, total, reserved)), sample.and_then(|s| s.util_gpu))
                    }
                };
                Candidate {
                    device,
                    idle_slots: slots.saturating_sub(running),
                    running,
                    free_mib,
                    util,
                    warm: ledger.warm(device, keep_alive),
                    installed: installed.clone(),
                    held: None,
                }
            })
            .chain(self.remote_candidates(ledger))
            .collect()
    }

    /// Decides inside the claim transaction whether `device` (a local worker's; `None` for
    /// a remote worker task, which takes what placement puts on any worker box) takes
    /// `job`, reserving the device when it does. Claims are serialised by the store's
    /// writer, so two workers never reserve the same memory.
    fn place(&self, device: Option<DeviceId>, job: &Job, pass: &ClaimPass) -> (Placement, Option<DeviceId>) {
        // Checked inside the claim's transaction: a claim already on its way when the queue
        // was paused must not take a job submitted after the pause.
        if !self.kinds.contains_key(job.kind.as_str()) || self.is_paused() {
            return (Placement::Skip, None);
        }
        if let (Some(device), true) = (device, self.pictures_on_cpu()) {
            return self.place_on_cpu_only(device, job);
        }
        let need = self.need_in(job, pass);
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let all = pass.candidates.get_or_init(|| self.candidates(&ledger));
        // Jobs about the head's own models run here; with local_work off, all else on the boxes.
        let head_kind = self.kinds.get(job.kind.as_str()).is_some_and(|k| k.runs_on_head());
        let only: Vec<Candidate>;
        let candidates = if head_kind || (self.remote_expected && !self.local_work) {
            only = all.iter().filter(|c| matches!(c.device, DeviceId::Remote { .. }) != head_kind).cloned().collect();
            &only
        } else {
            all
        };
        match placement::choose(&need, candidates) {
            Some(d) if device.map_or(matches!(d, DeviceId::Remote { .. }), |mine| mine == d) => {
                ledger.reserve(job.id, d, need);
                self.waiting.forget(job.id);
                (Placement::Take, Some(d))
            }
            Some(_) => (Placement::Elsewhere, None),
            None => {
                self.waiting.note(job, placement::waiting_reason(&need, candidates));
                (Placement::Skip, None)
            }
        }
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

    /// Why a queued job waits when no box (local or remote) can take it, e.g. `no box
    /// has model "tiny-sd"` or the paused queue; `None` while it only waits for its turn.
    pub fn waiting(&self, id: Ulid) -> Option<String> {
        if self.is_paused() {
            return Some(waiting::PAUSED.into());
        }
        // No worker task places anything before the head reaches NATS: say it here.
        if let Some(nats) = self.unreached_nats().filter(|_| !self.local_work) {
            return Some(format!("no worker box is connected: this head cannot reach its NATS server at {nats} yet"));
        }
        // The disk is read again only while the workers' last look found it low: job views
        // are listed by the page, and a data dir may be a network share.
        if self.disk_held.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(low) = self.held_for_disk()
        {
            return Some(low.waiting_text());
        }
        self.waiting.reason(id)
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
        self.telemetry.stop();
    }

    /// A worker task: one slot of a local device (`Some`), or a remote slot (`None`) that
    /// runs what placement puts on a worker box.
    async fn worker(self: Arc<Self>, device: Option<DeviceId>, slot: usize) {
        let at = device.map_or_else(|| "remote".to_string(), |d| d.name());
        tracing::debug!(device = %at, slot, "worker started");
        while !self.shutdown.is_cancelled() {
            if self.is_paused() || self.held_for_disk().is_some() {
                self.idle().await;
                continue;
            }
            let me = self.clone();
            let taken: Arc<Mutex<Option<Ulid>>> = Arc::default();
            let elsewhere = Arc::new(AtomicBool::new(false));
            let (t, e) = (taken.clone(), elsewhere.clone());
            let claimed = tokio::task::spawn_blocking(move || {
                let pass = ClaimPass::default();
                let store = me.store.clone();
                let placer = me.clone();
                let claimed = store.claim_blocking(move |job| match placer.place(device, job, &pass) {
                    (Placement::Take, d) => {
                        *t.lock().unwrap_or_else(|p| p.into_inner()) = Some(job.id);
                        d
                    }
                    (Placement::Elsewhere, _) => {
                        e.store(true, Ordering::Relaxed);
                        None
                    }
                    (Placement::Skip, _) => None,
                });
                me.waiting.say(&store);
                claimed
            })
            .await;
            self.after_claim(claimed, &elsewhere, &taken).await;
        }
        tracing::debug!(device = %at, slot, "worker stopped");
    }

    /// Runs what a claim took (on the device it was placed on), or idles.
    async fn after_claim(
        self: &Arc<Self>,
        claimed: Result<Result<Option<Job>, StoreError>, tokio::task::JoinError>,
        elsewhere: &AtomicBool,
        taken: &Mutex<Option<Ulid>>,
    ) {
        if elsewhere.load(Ordering::Relaxed) {
            // A job is meant for another device: wake its idle worker.
            self.wake.notify_waiters();
        }
        let reserved = taken.lock().unwrap_or_else(|p| p.into_inner()).take();
        let claimed_id = match &claimed {
            Ok(Ok(Some(job))) => Some(job.id),
            _ => None,
        };
        if let Some(id) = reserved.filter(|id| Some(*id) != claimed_id) {
            // The claim's transaction failed after placement reserved the device.
            self.ledger.lock().unwrap_or_else(|p| p.into_inner()).release(id, false);
        }
        match claimed {
            Ok(Ok(Some(job))) => {
                // More may be waiting: let another idle slot look too.
                self.wake.notify_one();
                let id = job.id;
                let device = match job.state {
                    JobState::Running { device, .. } => device,
                    _ => DeviceId::Cpu,
                };
                self.clone().run_job(job, device).await;
                self.ledger.lock().unwrap_or_else(|p| p.into_inner()).release(id, true);
                self.notify();
            }
            Ok(Ok(None)) => self.idle().await,
            Ok(Err(e)) => {
                tracing::error!("cannot claim a job: {e}");
                self.idle().await;
            }
            // The runtime is shutting down: nothing went wrong.
            Err(e) if e.is_cancelled() => tracing::debug!("claim task stopped with the runtime"),
            Err(e) => tracing::error!("claim task failed: {e}"),
        }
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
