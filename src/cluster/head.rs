//! The head's side: the scheduler's [`RemoteBoxes`]. Heartbeats are read from the KV bucket; a stage placed on a
//! box is published to that box's subject with its inputs in the box's own object bucket; the result comes back
//! on the results stream, and its outputs go through the job's own sink (the same durability as local outputs)
//! before the objects are deleted. A result nobody waits for is kept a while (a head restarted mid-stage takes
//! it when the stage runs again) and otherwise discarded, never doubled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::objects;
use super::protocol::{
    Advert, Live, ObjectRef, Outcome, RESULT_CONSUMER, RunKey, StageResult, StageWork, cancel_subject,
    progress_subject, result_subject, work_subject,
};
use super::{Bus, ClusterError};
use crate::config::ClusterConfig;
use crate::gpu::DeviceId;
use crate::kinds::{StageError, StageSink};
use crate::scheduler::{RemoteError, RemoteStage};
use crate::store::Store;

mod boxes;
mod held;

/// How long a result nobody waits for is kept for a stage that may run again.
const ORPHAN_KEEP: Duration = Duration::from_secs(600);

/// The head's view of the cluster, and the scheduler's way to run stages on it.
pub struct Head {
    bus: Bus,
    rt: Handle,
    cluster: ClusterConfig,
    /// Live boxes by name, from the heartbeat bucket.
    boxes: Mutex<HashMap<String, Advert>>,
    /// Runs waiting for their result, with the box each was given to.
    waiting: Mutex<HashMap<RunKey, (String, oneshot::Sender<StageResult>)>>,
    /// Results that came with nobody waiting, by (job, stage index).
    orphans: Mutex<HashMap<(Ulid, usize), (StageResult, Instant)>>,
    /// Stages whose result this head took recently: a later copy is a late duplicate.
    finished: Mutex<HashMap<(Ulid, usize), Instant>>,
    /// Runs boxes asked after, kept for them or given away (`held.rs`); locked after `waiting`.
    told: Mutex<held::Told>,
    /// The jobs, read to answer a box asking after a run of a job that has ended (`held.rs`).
    store: Store,
    /// Deletes the buckets of boxes long gone.
    sweeper: super::sweep::Sweeper,
    stop: CancellationToken,
}

impl Head {
    /// Connects, takes results that arrived while the head was down, follows heartbeats and results until `stop`.
    pub async fn start(
        cluster: ClusterConfig,
        store: Store,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, ClusterError> {
        let host = super::box_name(&cluster)?;
        let bus = Bus::connect(&cluster, &format!("reelbox head {host}")).await?;
        let consumer = bus
            .results
            .get_or_create_consumer(
                RESULT_CONSUMER,
                pull::Config {
                    durable_name: Some(RESULT_CONSUMER.into()),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ClusterError::js("results consumer", e))?;
        let head = Arc::new(Self {
            bus,
            rt: Handle::current(),
            sweeper: super::sweep::Sweeper::new(&cluster),
            cluster,
            boxes: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            orphans: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
            told: Mutex::new(held::Told::default()),
            store,
            stop,
        });
        head.refresh_boxes().await; // Results that came while the head was down are taken before jobs resume.
        loop {
            let batch = consumer.fetch().max_messages(64).expires(Duration::from_millis(300)).messages().await;
            let Ok(mut batch) = batch else { break };
            let mut n = 0;
            while let Some(Ok(msg)) = batch.next().await {
                n += 1;
                head.take_result(&msg.subject, &msg.payload).await;
                let _ = msg.ack().await;
            }
            if n == 0 {
                break;
            }
        }
        tokio::spawn(head.clone().follow_boxes());
        tokio::spawn(head.clone().follow_results(consumer));
        tokio::spawn(head.clone().answer_held());
        Ok(head)
    }

    async fn follow_boxes(self: Arc<Self>) {
        while !self.stop.is_cancelled() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.stop.cancelled() => return,
            }
            self.refresh_boxes().await;
            self.expire_orphans().await;
            self.expire_told();
            let (alive, busy) = self.hosts();
            self.sweeper.sweep(&self.bus, &alive, &busy).await;
        }
    }

    async fn follow_results(self: Arc<Self>, consumer: async_nats::jetstream::consumer::PullConsumer) {
        while !self.stop.is_cancelled() {
            let mut messages = match consumer.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("cannot follow results: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = self.stop.cancelled() => return,
                };
                match next {
                    Some(Ok(msg)) => {
                        self.take_result(&msg.subject, &msg.payload).await;
                        let _ = msg.ack().await;
                    }
                    Some(Err(e)) => {
                        tracing::debug!("results stream: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => break,
                }
            }
        }
    }

    /// Hands a result to the run waiting for it, or keeps it as an orphan. A result whose
    /// box is not the one its subject names is dropped untouched: with per-box NATS
    /// permissions the subject is the sender's proven name.
    async fn take_result(&self, subject: &str, body: &[u8]) {
        let result: StageResult = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return tracing::error!("unreadable stage result, dropped: {e}"),
        };
        if subject != result_subject(&result.host) {
            return tracing::warn!(%subject, host = %result.host, "a result claiming another box's name, dropped");
        }
        let key = result.key;
        let waiter = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            // Only the box holding the run may answer it.
            match waiting.get(&key) {
                Some((host, _)) if *host == result.host => waiting.remove(&key).map(|(_, tx)| tx),
                _ => None,
            }
        };
        let result = match waiter {
            Some(tx) => match tx.send(result) {
                Ok(()) => return,
                Err(r) => r,
            },
            None => result,
        };
        let other_run = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|k| k.job == key.job && k.stage == key.stage);
        let taken = self.finished.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&(key.job, key.stage));
        if other_run || taken || !matches!(result.outcome, Outcome::Done { .. }) {
            tracing::info!(job = %key.job, stage = key.stage, attempt = key.attempt, host = %result.host,
                "discarding a late result of a stage run the head no longer holds");
            discard(&self.bus, &result).await;
            return;
        }
        let old = self
            .orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((key.job, key.stage), (result, Instant::now()));
        if let Some((old, _)) = old {
            discard(&self.bus, &old).await;
        }
    }

    async fn expire_orphans(&self) {
        self.finished.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, t| t.elapsed() <= ORPHAN_KEEP);
        let expired: Vec<StageResult> = {
            let mut o = self.orphans.lock().unwrap_or_else(|p| p.into_inner());
            let old: Vec<_> = o.iter().filter(|(_, (_, t))| t.elapsed() > ORPHAN_KEEP).map(|(k, _)| *k).collect();
            old.iter().filter_map(|k| o.remove(k)).map(|(r, _)| r).collect()
        };
        for r in expired {
            discard(&self.bus, &r).await;
        }
    }

    /// Boxes alive now, and boxes whose buckets hold what the head still waits for.
    fn hosts(&self) -> (Vec<String>, Vec<String>) {
        let alive = self.boxes.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let mut busy: Vec<String> = waiting.values().map(|(h, _)| h.clone()).collect();
        busy.extend(self.orphans.lock().unwrap_or_else(|p| p.into_inner()).values().map(|(r, _)| r.host.clone()));
        (alive, busy)
    }

    /// Runs a stage on its box; see the module docs. Blocking: the sink writes the store,
    /// so it is called on this thread while a scoped thread drives the NATS exchange.
    fn run_blocking(&self, s: RemoteStage<'_>) -> Result<(), RemoteError> {
        let DeviceId::Remote { host, gpu } = s.device else {
            return Err(StageError::fatal(format!("{} is not a worker box's device", s.device)).into());
        };
        let key = RunKey { job: s.job.id, stage: s.index, attempt: s.job.attempts };
        let Some(stage) = s.job.stages.get(s.index).map(|st| st.name) else {
            return Err(StageError::fatal(format!("job has no stage {}", s.index)).into());
        };
        let orphan = self.orphans.lock().unwrap_or_else(|p| p.into_inner()).remove(&(key.job, key.stage));
        if let Some((orphan, _)) = orphan {
            tracing::info!(job = %key.job, %stage, host = %orphan.host, "taking the result that arrived while the head was away");
            s.sink.log(
                "info",
                &format!("stage {stage} finished on {} while the head was away; taking its result", orphan.host),
            );
            return Ok(self.ingest(orphan, &[], s.sink)?);
        }
        // Earlier stages' outputs from the store through the sink: the job record this
        // run was claimed with predates the stages that finished since.
        let mut files: Vec<(crate::store::records::Artifact, std::path::PathBuf)> = Vec::new();
        let earlier = s.job.stages[..s.index].iter().flat_map(|st| s.sink.stage_artifacts(st.name));
        for a in earlier.chain(super::protocol::named_artifacts(s.params, s.sink).map_err(StageError::from)?) {
            if !files.iter().any(|(f, _)| f.id == a.id) {
                let path = s.sink.artifact_path(&a);
                files.push((a, path));
            }
        }
        let work = StageWork {
            key,
            kind: s.job.kind.clone(),
            stage: stage.to_string(),
            owner: s.job.owner.clone(),
            params: s.params.clone(),
            gpu,
            inputs: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel::<Live>();
        let exchanged = std::thread::scope(|scope| {
            let exchange =
                scope.spawn(|| self.rt.block_on(self.exchange(host.as_str(), work, files, s.cancel, s.stopping, tx)));
            // Live lines until the exchange ends (it drops the sender).
            for line in rx {
                match line {
                    Live::Progress { step, total, message } => s.sink.progress(step, total, message.as_deref()),
                    Live::Log { level, message } => s.sink.log(&level, &format!("{host}: {message}")),
                }
            }
            exchange.join().unwrap_or_else(|_| Err(StageError::fatal("the cluster exchange panicked").into()))
        });
        let (result, inputs) = exchanged?;
        Ok(self.ingest(result, &inputs, s.sink)?)
    }

    /// Uploads the inputs, publishes the work, and waits for its result, forwarding live
    /// lines; gives up when the box's heartbeat expires or the job is canceled.
    async fn exchange(
        &self,
        host: &str,
        mut work: StageWork,
        files: Vec<(crate::store::records::Artifact, std::path::PathBuf)>,
        cancel: &CancellationToken,
        stopping: &CancellationToken,
        live_tx: std::sync::mpsc::Sender<Live>,
    ) -> Result<(StageResult, Vec<ObjectRef>), RemoteError> {
        let key = work.key;
        // The box's own bucket (made here on first use): only it and the head may read it.
        // Made even when every input is inline: the box writes its larger outputs there.
        self.bus.bucket(host).await.map_err(|e| self.unsent(e))?;
        let mut budget = self.bus.inline_bytes;
        for (a, path) in files {
            let object = format!("in-{}-{}", key.tag(), a.id);
            let p = objects::pack(&self.bus, host, &object, &path, &mut budget).await.map_err(|e| self.unsent(e))?;
            work.inputs.push(ObjectRef {
                object,
                id: a.id,
                name: a.name,
                media_type: a.media_type,
                stage: a.stage,
                size: p.size,
                sha256: p.sha256,
                inline: p.inline,
            });
        }
        let inputs = work.inputs.clone();
        let (tx, mut rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (host.to_string(), tx));
        let mut live = match self.bus.client.subscribe(progress_subject(host, key.job)).await {
            Ok(l) => l,
            Err(e) => {
                self.forget(key, None, host, &inputs).await;
                return Err(self.unsent(ClusterError::js("progress subscribe", e)));
            }
        };
        let seq = match self.publish_work(host, &work).await {
            Ok(seq) => seq,
            Err(e) => {
                self.forget(key, None, host, &inputs).await;
                return Err(self.unsent(e));
            }
        };
        tracing::info!(job = %key.job, stage = %work.stage, attempt = key.attempt, host, "stage sent to a worker");
        let mut missing_since: Option<Instant> = None;
        loop {
            tokio::select! {
                r = &mut rx => return match r {
                    Ok(r) => Ok((r, inputs)),
                    Err(_) => Err(StageError::retriable("the head stopped waiting for the stage").into()),
                },
                Some(m) = live.next() => {
                    if let Ok(line) = serde_json::from_slice::<Live>(&m.payload) {
                        let _ = live_tx.send(line);
                    }
                }
                _ = cancel.cancelled() => {
                    if stopping.is_cancelled() {
                        // Shutdown: the box finishes; the restarted head takes its result.
                        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                        return Err(StageError::Canceled.into());
                    }
                    let _ = self.bus.client.publish(cancel_subject(key.job), "".into()).await;
                    let _ = self.bus.client.flush().await;
                    // A short grace for the worker's answer; the job is canceled either way.
                    let _ = tokio::time::timeout(Duration::from_millis(300), &mut rx).await;
                    self.forget(key, Some(seq), host, &inputs).await;
                    return Err(StageError::Canceled.into());
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    if self.alive(host) {
                        missing_since = None;
                    } else if missing_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) {
                        if !self.give_away(key, host) {
                            // Its box restarted and took the run back just now: its heartbeat follows.
                            missing_since = None;
                            continue;
                        }
                        // Its heartbeat expired (gone or cut off): the stage goes back to the queue,
                        // a late result is discarded; said in the log, where operators look.
                        tracing::warn!(job = %key.job, stage = %work.stage, "worker {host} stopped answering \
                            (its heartbeat expired): the stage goes back to the queue");
                        self.forget(key, Some(seq), host, &inputs).await;
                        return Err(StageError::retriable(format!("worker {host} stopped answering")).into());
                    }
                }
            }
        }
    }

    /// Brings a result's outputs in through the sink (blocking: it writes the store) and
    /// deletes the objects after the sink's commit.
    fn ingest(&self, result: StageResult, inputs: &[ObjectRef], sink: &dyn StageSink) -> Result<(), StageError> {
        let host = result.host.clone();
        if matches!(result.outcome, Outcome::Done { .. }) {
            let stage = (result.key.job, result.key.stage);
            self.finished.lock().unwrap_or_else(|p| p.into_inner()).insert(stage, Instant::now());
        }
        let outcome = match &result.outcome {
            Outcome::Done { outputs } => {
                let dir = sink.scratch_dir().join("remote");
                let mut ingested = Ok(());
                for (n, r) in outputs.iter().enumerate() {
                    let file = dir.join(format!("{n}.{}", crate::store::artifacts::extension_for(&r.media_type)));
                    let step = match self.rt.block_on(objects::download(&self.bus, &host, r, &file)) {
                        Ok(()) => sink.put_artifact_file(&r.name, &r.media_type, &file).map(|_| ()),
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = step {
                        ingested = Err(e);
                        break;
                    }
                }
                ingested
            }
            Outcome::Failed { error, retriable: true } => Err(StageError::retriable(format!("on {host}: {error}"))),
            Outcome::Failed { error, retriable: false } => Err(StageError::fatal(format!("on {host}: {error}"))),
            Outcome::Canceled => Err(StageError::Canceled),
        };
        // After the sink's commit; off the stage's path (the next stage need not wait).
        let (bus, inputs) = (self.bus.clone(), inputs.to_vec());
        self.rt.spawn(async move {
            discard(&bus, &result).await;
            objects::remove(&bus, &result.host, &inputs).await;
        });
        outcome
    }

    /// A failure before the box had its stage: not sent when NATS does not answer (the
    /// connection is down, or the publish's ack timed out), so the attempt does not count;
    /// otherwise the stage's failure.
    fn unsent(&self, e: ClusterError) -> RemoteError {
        use async_nats::jetstream::context::{PublishError, PublishErrorKind};
        let timed_out = matches!(&e, ClusterError::JetStream { source, .. }
            if source.downcast_ref::<PublishError>().is_some_and(|p| p.kind() == PublishErrorKind::TimedOut));
        if timed_out {
            self.bus.reach.unanswered();
        }
        if !timed_out && self.bus.reach.answers(&self.bus.client) {
            return RemoteError::Stage(e.into());
        }
        tracing::warn!("a stage was not sent, NATS does not answer: {e}; it waits for the server");
        RemoteError::NotSent(format!("this head cannot reach its NATS server at {} ({e})", self.cluster.nats_server()))
    }

    /// Stops waiting for a run: its work message and inputs (in `host`'s bucket) are deleted.
    async fn forget(&self, key: RunKey, seq: Option<u64>, host: &str, inputs: &[ObjectRef]) {
        match seq {
            Some(seq) => {
                // The box may hold the message already (it restarted just now): asked, it hears
                // the run was given away, and skips it.
                self.release(key, host);
                let _ = self.bus.work.delete_message(seq).await;
            }
            None => drop(self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&key)),
        }
        objects::remove(&self.bus, host, inputs).await;
    }

    async fn publish_work(&self, host: &str, work: &StageWork) -> Result<u64, ClusterError> {
        let body = serde_json::to_vec(work).map_err(|e| ClusterError::js("encode work", e))?;
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(body.into())
            .message_id(format!("work-{}", work.key.tag()));
        let ack = self
            .bus
            .js
            .send_publish(work_subject(host), publish)
            .await
            .map_err(|e| ClusterError::js("work publish", e))?;
        Ok(ack.await.map_err(|e| ClusterError::js("work publish", e))?.sequence)
    }
}

/// Deletes a result's output objects (in its box's bucket).
async fn discard(bus: &Bus, result: &StageResult) {
    if let Outcome::Done { outputs } = &result.outcome {
        objects::remove(bus, &result.host, outputs).await;
    }
}
