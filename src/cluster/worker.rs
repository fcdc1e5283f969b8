//! `reelbox worker`: a box that runs stages the head publishes. It pulls from its own
//! subject of the work stream as slots free up, acks in progress while a stage runs (a
//! worker that dies stops acking and the head moves the stage elsewhere), runs the stage
//! through the same kind code as the head, and publishes the result durably before it
//! acks the work, so a crash between the two repeats the stage rather than losing it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::objects;
use super::protocol::{
    Advert, AdvertDevice, AdvertRunning, ObjectRef, Outcome, StageResult, StageWork, box_consumer, result_subject,
    work_subject,
};
use super::runs::Runs;
use super::worker_sink::WorkerSink;
use super::{Bus, ClusterError};
use crate::config::{ClusterConfig, Config};
use crate::engine::Engine;
use crate::gpu::{BoxName, DeviceId, Telemetry};
use crate::kinds::{JobKind, StageError, StageName, StageRun};

/// The worker's shared parts.
struct Worker {
    bus: Bus,
    config: Arc<Config>,
    cluster: ClusterConfig,
    host: BoxName,
    engine: Arc<Engine>,
    kinds: HashMap<&'static str, Arc<dyn JobKind>>,
    telemetry: Arc<Telemetry>,
    /// The GPUs this box offers: none when the CUDA provider does not register here.
    gpus: Vec<crate::gpu::DeviceInfo>,
    running: Arc<Runs>,
    /// This run, in each heartbeat: another box under this name is told apart by it.
    instance: super::protocol::Instance,
    /// Whether this box can read its heartbeat back (not with an older NATS config's rights).
    checks_name: bool,
    /// Set when a box that started earlier turned out to run under this name: this one stops.
    clash: std::sync::OnceLock<super::protocol::Instance>,
    /// Work messages up to this one may have been given away while the box was down.
    asks_upto: u64,
}

/// Runs a worker box until `stop` fires; stages running then are left unacked, so the
/// head places them again.
pub async fn run(config: Config, cluster: ClusterConfig, stop: CancellationToken) -> Result<(), ClusterError> {
    let host = super::box_name(&cluster)?;
    // SIGTERM must stop a box still dialling NATS or waiting for the head, too (systemd
    // would otherwise wait out TimeoutStopSec and kill it).
    let client_name = format!("reelbox worker {host}");
    let bus = tokio::select! {
        bus = Bus::join(&cluster, &client_name) => bus?,
        _ = stop.cancelled() => {
            tracing::info!(host = %host, "worker stopped before it joined the cluster");
            return Ok(());
        }
    };
    let instance = super::name_claim::this_instance();
    let ttl = Duration::from_secs(cluster.heartbeat_ttl_s);
    // Before the claim: a box restarted after a crash has its first heartbeat out right
    // after its old one expired, before the head would count it gone and send its stage
    // anew while the box takes it back.
    let telemetry = Telemetry::new(crate::gpu::open_source());
    telemetry.start();
    let config = Arc::new(config);
    let engine = Arc::new(Engine::new(&config));
    // Idle sessions unload after their keep-alive while the box waits for work.
    let _reaper = engine.spawn_reaper();
    let gpus = crate::scheduler::gpus::usable_gpus(&telemetry, &config, &engine).list;
    let claimed = tokio::select! {
        claimed = super::name_claim::claim(&bus, host.as_str(), &instance, ttl) => Some(claimed),
        _ = stop.cancelled() => None,
    };
    let Some(Ok(checks_name)) = claimed else {
        telemetry.stop();
        return claimed.transpose().map(|_| ());
    };
    super::take_back::take_back(&bus, host.as_str(), checks_name).await;
    let asks_upto = super::held::asks_upto(&bus).await;
    let worker = Arc::new(Worker {
        bus,
        engine,
        kinds: crate::kinds::registry().into_iter().map(|k| (k.name(), k)).collect(),
        config,
        cluster,
        host,
        telemetry,
        gpus,
        running: Arc::default(),
        instance,
        checks_name,
        clash: std::sync::OnceLock::new(),
        asks_upto,
    });
    // Stops the loop on `stop`, or when another box under this name turns up.
    let stop = stop.child_token();
    let mut consumer = worker.consumer().await?;
    let mut looked = std::time::Instant::now();
    let heartbeat = tokio::spawn(worker.clone().heartbeat(stop.clone()));
    let cancels = tokio::spawn(worker.clone().listen_cancels(stop.clone()));
    let (bus, runs) = (worker.bus.clone(), worker.running.clone());
    let asks = tokio::spawn(super::held::watch(bus, host.to_string(), runs, worker.heartbeat_every(), stop.clone()));
    tracing::info!(host = %host, slots = worker.slots(), "worker joined the cluster");
    let slots = Arc::new(Semaphore::new(worker.slots()));
    while !stop.is_cancelled() {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stop.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(1)).messages().await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot fetch work: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let msg = tokio::select! {
            m = batch.next() => m,
            _ = stop.cancelled() => break,
        };
        match msg {
            Some(Ok(msg)) => {
                let w = worker.clone();
                tokio::spawn(async move {
                    w.handle(msg).await;
                    drop(permit);
                });
            }
            Some(Err(e)) => tracing::debug!("fetch: {e}"),
            // Idle. The head deletes the consumer of a box gone longer than
            // `forget_box_after_h`; one that comes back without a restart (a long network
            // cut) would then pull forever, as a pull from a missing consumer gets no answer
            // at all. So an idle box looks at its consumer once per heartbeat TTL.
            None if looked.elapsed() >= Duration::from_secs(worker.cluster.heartbeat_ttl_s) => {
                looked = std::time::Instant::now();
                match worker.consumer().await {
                    Ok(c) => consumer = c,
                    Err(e) => tracing::warn!("cannot bind the work consumer: {e}"),
                }
            }
            None => {}
        }
    }
    worker.running.cancel_all();
    heartbeat.abort();
    cancels.abort();
    asks.abort();
    worker.telemetry.stop();
    if let Some(other) = worker.clash.get() {
        // The heartbeat under this name is the other box's: it stays.
        return Err(super::name_claim::taken(host.as_str(), other.clone()));
    }
    let _ = worker.bus.boxes.delete(host.as_str()).await;
    tracing::info!(host = %host, "worker left the cluster");
    Ok(())
}

impl Worker {
    /// This box's durable consumer of its work subject, made when missing (its first start,
    /// or the head deleted it after the box was gone longer than `forget_box_after_h`).
    async fn consumer(&self) -> Result<async_nats::jetstream::consumer::PullConsumer, ClusterError> {
        let name = box_consumer(self.host.as_str());
        if let Ok(c) = self.bus.work.get_consumer(&name).await {
            return Ok(c);
        }
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: work_subject(self.host.as_str()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(self.cluster.ack_wait_s),
            ..Default::default()
        };
        let made = self.bus.work.get_or_create_consumer(&name, config).await;
        let made = made.map_err(|e| ClusterError::js("work consumer", e))?;
        tracing::info!(consumer = %name, "made this box's work consumer");
        Ok(made)
    }

    /// Stages this box runs at once: its CPU slots plus one per GPU.
    fn slots(&self) -> usize {
        self.cluster.cpu_slots.max(1) + self.gpus().len() * self.config.workers.gpu_concurrency.max(1)
    }

    fn gpus(&self) -> &[crate::gpu::DeviceInfo] {
        &self.gpus
    }

    /// A third of the heartbeat TTL: how often the box says it is there.
    fn heartbeat_every(&self) -> Duration {
        Duration::from_millis((self.cluster.heartbeat_ttl_s * 1000 / 3).max(200))
    }

    /// Puts this box's advert into the KV bucket at a third of its TTL.
    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let every = self.heartbeat_every();
        let mut was_low = None;
        while !stop.is_cancelled() {
            let ttl = Duration::from_secs(self.cluster.heartbeat_ttl_s);
            let check = super::name_claim::check(&self.bus, self.host.as_str(), &self.instance, ttl);
            if let Some(clash) = if self.checks_name { check.await } else { None } {
                let _ = self.clash.set(clash);
                stop.cancel();
                return;
            }
            let advert = self.advert();
            if advert.disk_low != was_low {
                match &advert.disk_low {
                    Some(why) => tracing::warn!("taking no new stages: {why}"),
                    None if was_low.is_some() => tracing::info!("disk space freed: taking stages again"),
                    None => {}
                }
                was_low = advert.disk_low.clone();
            }
            match serde_json::to_vec(&advert) {
                Ok(body) => {
                    match self.bus.boxes.put(self.host.as_str(), body.into()).await {
                        // Said once, as NATS not answering, while the server is away.
                        Err(e) if !self.bus.reach.answers(&self.bus.client) => tracing::debug!("no heartbeat: {e}"),
                        Err(e) => tracing::warn!("cannot send heartbeat: {e}"),
                        Ok(_) => {}
                    }
                }
                Err(e) => tracing::error!("cannot encode heartbeat: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// What this box has and runs now.
    fn advert(&self) -> Advert {
        let latest = self.telemetry.latest();
        let mut devices = vec![AdvertDevice {
            device: "cpu".into(),
            name: "cpu".into(),
            slots: self.cluster.cpu_slots.max(1),
            total_mib: None,
            free_mib: None,
            util: latest.as_ref().and_then(|s| s.host.cpu_percent).map(|p| p.round() as u32),
            power_w: None,
            temp_c: None,
        }];
        for g in self.gpus() {
            let DeviceId::Cuda(i) = g.id else { continue };
            let s = latest.as_ref().and_then(|s| s.gpus.iter().find(|x| x.index == i));
            devices.push(AdvertDevice {
                device: g.id.name(),
                name: g.name.clone(),
                slots: self.config.workers.gpu_concurrency.max(1),
                total_mib: Some(g.memory_total >> 20),
                free_mib: s.and_then(|s| s.mem_free_mib()).or(Some(g.memory_total >> 20)),
                util: s.and_then(|s| s.util_gpu),
                power_w: s.and_then(|s| s.power_w),
                temp_c: s.and_then(|s| s.temperature_c),
            });
        }
        let mut kinds: Vec<String> =
            self.kinds.iter().filter(|(_, k)| !k.runs_on_head()).map(|(name, _)| name.to_string()).collect();
        kinds.sort();
        let used: Vec<DeviceId> = self.gpus().iter().map(|g| g.id).collect();
        Advert {
            host: self.host.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            devices,
            gpus: latest
                .map(|s| s.gpus.iter().filter(|g| used.contains(&DeviceId::Cuda(g.index))).cloned().collect())
                .unwrap_or_default(),
            models: crate::kinds::box_models::installed_names(&self.config),
            model_details: crate::kinds::box_models::installed(&self.config),
            kinds,
            running: self.running.adverts(),
            at_ms: crate::time::now_ms(),
            disk_low: self.disk_low(),
            instance: Some(self.instance.clone()),
        }
    }

    /// Why this box takes no new stages now: its data dir, where each stage's scratch files
    /// and outputs go, is on a disk below the floor. The head places nothing here meanwhile,
    /// so a stage is not sent to fail half-way with "No space left on device".
    fn disk_low(&self) -> Option<String> {
        let floor = self.config.limits.min_free_disk_bytes;
        crate::disk::check_room("data dir", &self.config.data_dir, 0, floor).err().map(|low| low.shortage())
    }

    /// Cancels running stages of jobs the head cancels (core NATS: reaches us at once).
    async fn listen_cancels(self: Arc<Self>, stop: CancellationToken) {
        let mut sub = match self.bus.client.subscribe("reelbox.cancel.*").await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for cancels: {e}");
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = stop.cancelled() => return,
            };
            let Some(msg) = msg else { return };
            let Some(job) = msg.subject.rsplit('.').next().and_then(|j| ulid::Ulid::from_string(j).ok()) else {
                continue;
            };
            self.running.cancel_job(job);
        }
    }

    /// Runs one work message to its result, acking in progress meanwhile.
    async fn handle(self: Arc<Self>, msg: Message) {
        let work: StageWork = match serde_json::from_slice(&msg.payload) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("unreadable work message, dropping it: {e}");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        if super::held::given_away(&self.bus, self.host.as_str(), &msg, &work, self.asks_upto).await {
            return;
        }
        let key = work.key;
        let device = DeviceId::local(work.gpu);
        let cancel = self.running.start(AdvertRunning { key, stage: work.stage.clone(), device: device.name() });
        tracing::info!(job = %key.job, stage = %work.stage, attempt = key.attempt, %device, "stage started");
        let every = Duration::from_millis((self.cluster.ack_wait_s * 1000 / 3).max(200));
        let t0 = std::time::Instant::now();
        let outcome = {
            let run = self.clone().execute(work, device, cancel);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    o = &mut run => break o,
                    _ = tokio::time::sleep(every) => {
                        if let Err(e) = msg.ack_with(AckKind::Progress).await {
                            tracing::warn!(job = %key.job, "cannot extend the stage's ack wait: {e}");
                        }
                    }
                }
            }
        };
        let given_away = self.running.end(&key);
        // Its end, too: a log with only "stage started" lines leaves a user guessing.
        let ms = t0.elapsed().as_millis() as u64;
        if given_away {
            return super::held::stopped(&self.bus, self.host.as_str(), &msg, key, &outcome, ms).await;
        }
        match &outcome {
            Outcome::Done { outputs } => {
                tracing::info!(job = %key.job, attempt = key.attempt, ms, outputs = outputs.len(), "stage done");
            }
            Outcome::Failed { error, retriable } => {
                tracing::warn!(job = %key.job, attempt = key.attempt, ms, retriable, "stage failed: {error}");
            }
            Outcome::Canceled => tracing::info!(job = %key.job, attempt = key.attempt, ms, "stage canceled"),
        }
        let result = StageResult { key, host: self.host.to_string(), outcome };
        match self.publish_result(&result).await {
            Ok(()) => {
                if let Err(e) = msg.double_ack().await {
                    tracing::warn!(job = %key.job, "cannot ack the stage (it may run again): {e}");
                }
            }
            // Not acked: JetStream delivers the stage again after the ack wait.
            Err(e) => tracing::error!(job = %key.job, "cannot publish the stage's result: {e}"),
        }
    }

    /// Publishes a result durably (deduplicated by its run key), retrying briefly.
    async fn publish_result(&self, result: &StageResult) -> Result<(), ClusterError> {
        let body = serde_json::to_vec(result).map_err(|e| ClusterError::js("encode result", e))?;
        let mut last = None;
        for _ in 0..20 {
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(body.clone().into())
                .message_id(format!("result-{}", result.key.tag()));
            match self.bus.js.send_publish(result_subject(self.host.as_str()), publish).await {
                Ok(ack) => match ack.await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some(ClusterError::js("result publish", e)),
                },
                Err(e) => last = Some(ClusterError::js("result publish", e)),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last.unwrap_or_else(|| ClusterError::js("result publish", "gave up")))
    }

    /// Downloads the inputs, runs the stage on a blocking thread, returns how it ended.
    async fn execute(self: Arc<Self>, work: StageWork, device: DeviceId, cancel: CancellationToken) -> Outcome {
        let dir = self.config.data_dir.join("cluster").join(work.key.tag());
        let outcome = match self.clone().fetch_inputs(&work, &dir).await {
            Ok(inputs) => {
                let me = self.clone();
                let rt = tokio::runtime::Handle::current();
                let dir2 = dir.clone();
                tokio::task::spawn_blocking(move || me.run_blocking(work, device, inputs, &dir2, rt, &cancel))
                    .await
                    .unwrap_or_else(|e| failed(&StageError::fatal(format!("stage thread failed: {e}"))))
            }
            Err(e) => failed(&StageError::from(e)),
        };
        // Off the stage's path: the result need not wait for the scratch files to go.
        tokio::spawn(async move {
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
        outcome
    }

    async fn fetch_inputs(
        self: Arc<Self>,
        work: &StageWork,
        dir: &Path,
    ) -> Result<Vec<(ObjectRef, PathBuf)>, ClusterError> {
        let mut out = Vec::with_capacity(work.inputs.len());
        for r in &work.inputs {
            let ext = crate::store::artifacts::extension_for(&r.media_type);
            let file = dir.join("in").join(format!("{}.{ext}", r.id));
            objects::download(&self.bus, self.host.as_str(), r, &file).await?;
            out.push((r.clone(), file));
        }
        Ok(out)
    }

    fn run_blocking(
        &self,
        work: StageWork,
        device: DeviceId,
        inputs: Vec<(ObjectRef, PathBuf)>,
        dir: &Path,
        rt: tokio::runtime::Handle,
        cancel: &CancellationToken,
    ) -> Outcome {
        let Some(kind) = self.kinds.get(work.kind.as_str()) else {
            return failed(&StageError::fatal(format!("this worker does not know job kind {:?}", work.kind)));
        };
        let Ok(stage) = StageName::from_str(&work.stage) else {
            return failed(&StageError::fatal(format!("this worker does not know stage {:?}", work.stage)));
        };
        let sink = WorkerSink::new(
            self.bus.clone(),
            rt.clone(),
            work.key,
            work.owner.clone(),
            stage,
            inputs,
            dir.join("scratch"),
        );
        let run = StageRun {
            job_id: work.key.job,
            owner: &work.owner,
            params: &work.params,
            device,
            engine: &self.engine,
            config: &self.config,
            cancel,
            sink: &sink,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run_stage(stage, &run)));
        let outputs = sink.finish();
        if !matches!(result, Ok(Ok(()))) {
            // Outputs of a stage that did not finish are never ingested.
            rt.block_on(objects::remove(&self.bus, self.host.as_str(), &outputs));
        }
        match result {
            Ok(Ok(())) => Outcome::Done { outputs },
            Ok(Err(StageError::Canceled)) => Outcome::Canceled,
            Ok(Err(e)) => failed(&e),
            Err(_) => failed(&StageError::fatal(format!("internal error in stage {stage} on a worker"))),
        }
    }
}

/// A failed outcome carrying the error's text and retry decision.
fn failed(e: &StageError) -> Outcome {
    Outcome::Failed { error: e.to_string(), retriable: e.is_retriable() }
}
