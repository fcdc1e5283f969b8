//! The redb store: the only code that touches tables. Writes go through one writer
//! thread that folds concurrent operations into one transaction (group commit); each
//! caller is answered only after the transaction holding its write has committed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::broadcast;
use ulid::Ulid;

pub mod artifacts;
mod choices;
pub mod codec;
mod events;
mod handle;
pub mod keys;
pub mod lock;
mod profiles;
mod queue_state;
pub mod quota;
pub mod records;
mod recovery;
mod references;
pub mod retention;
pub mod storage;
pub mod uploads;
mod writer;

use codec::{Record, decode};
pub use profiles::profiles_at_rest;
use records::{Artifact, Event, EventBody, Job, JobState, JobStatus, now_ms};
pub use recovery::Recovered;
pub use retention::{Removal, SweepPolicy};
pub use writer::WriteCtx;

pub(crate) const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
/// Queue index: (−priority, enqueued_at, job id) → (); first entry runs next.
pub(crate) const QUEUE: TableDefinition<(i64, i64, u128), ()> = TableDefinition::new("queue");
pub(crate) const ARTIFACTS: TableDefinition<u128, &[u8]> = TableDefinition::new("artifacts");
pub(crate) const PROFILES: TableDefinition<u128, &[u8]> = TableDefinition::new("profiles");
pub(crate) const API_KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("api_keys");
/// All events by daemon-wide sequence number (the SSE id).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Per-job event index: (job, seq) → ().
pub(crate) const JOB_EVENTS: TableDefinition<(u128, u64), ()> = TableDefinition::new("job_events");
/// "owner\nkey" → job id.
pub(crate) const IDEMPOTENCY: TableDefinition<&str, u128> = TableDefinition::new("idempotency");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The database file in a data dir.
pub(crate) const DB_FILE: &str = "reelbox.redb";

/// Schema version of the tables' layout, stored in META.
pub const SCHEMA_VERSION: u64 = 1;

/// Store failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("cannot open database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// Another process (a daemon, `keys create --offline`) holds the database.
    #[error("data dir {} in use by {holder}", dir.display())]
    InUse { dir: PathBuf, holder: String },
    #[error("stored record is unreadable: {0}")]
    Codec(String),
    #[error("artifact file error at {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("queue is full ({queued} queued, limit {limit})")]
    QueueFull { queued: u64, limit: u64 },
    #[error("{owner} already has {queued} queued jobs; its quota max_queued is {limit}")]
    OwnerQueueFull { owner: String, queued: u64, limit: u64 },
    /// Used plus reserved GPU time plus this job's estimate would pass the owner's quota.
    #[error(
        "{owner} used {used_ms} ms and reserved {reserved_ms} ms of {limit_ms} GPU-ms today; this job needs about {estimate_ms} ms more"
    )]
    GpuQuotaExceeded { owner: String, used_ms: u64, reserved_ms: u64, estimate_ms: u64, limit_ms: u64 },
    /// An artifact would take its owner past its storage quota.
    #[error("{owner} holds {used} bytes of artifacts; {adding} more would pass its quota max_storage_bytes = {limit}")]
    StorageQuotaExceeded { owner: String, used: u64, adding: u64, limit: u64 },
    #[error("{0}")]
    Conflict(String),
    /// The owner already has another profile of this name (profiles are found by name).
    #[error("a profile named {name:?} already exists (id {id}); pick another name, or rename or delete that one")]
    ProfileNameTaken { name: String, id: String },
    #[error("job {id} is {state}; cancel it first, then delete it")]
    NotFinished { id: String, state: &'static str },
    #[error("the key {:?} was revoked", .0.name)]
    KeyRevoked(Box<records::ApiKey>),
    #[error("the store is shutting down")]
    Closed,
    /// An idempotency key sent with another request than the one it was first used for.
    #[error(
        "the Idempotency-Key {key:?} was first used for job {job} (kind {kind}) with other parameters; send a new key for a new request"
    )]
    IdempotencyKeyReused { key: String, job: Ulid, kind: String },
    /// A write could not be committed (a full disk, most often); see `handle`.
    #[error("cannot write the store in data dir {}: {reason}", dir.display())]
    Unwritable { dir: PathBuf, reason: String },
}

macro_rules! db_err {
    ($($t:ty),*) => { $(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
    })* };
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<codec::CodecError> for StoreError {
    fn from(e: codec::CodecError) -> Self {
        StoreError::Codec(e.to_string())
    }
}

/// Outcome of a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job: Job,
    /// True when an earlier job with the same idempotency key was returned instead.
    pub existing: bool,
}

/// A submission's GPU-time quota: the owner's daily limit and the job's estimate, both
/// milliseconds. The estimate is reserved with the enqueue and released when the job ends.
#[derive(Debug, Clone, Copy)]
pub struct GpuQuota {
    pub limit_ms: u64,
    pub estimate_ms: u64,
}

/// Filter for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobStatus>,
    pub kind: Option<String>,
    /// Only this owner's jobs; `None` lists everyone's (admin).
    pub owner: Option<String>,
}

/// Counts of jobs per state.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct StateCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub canceled: u64,
}

/// The open store.
#[derive(Clone)]
pub struct Store {
    db: Arc<handle::DbHandle>,
    writer: writer::Writer,
    artifacts_dir: PathBuf,
    events: broadcast::Sender<Arc<Event>>,
    ids: Arc<Mutex<ulid::Generator>>,
}

impl Store {
    /// Opens (creating if needed) `<data>/reelbox.redb` and the artifacts dir, removing
    /// temp files a crash left behind. Fails with [`StoreError::InUse`], having changed
    /// nothing, when another process holds the database.
    pub fn open(data_dir: &Path, group_commit: bool, max_batch: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::File { path: data_dir.to_path_buf(), reason: e.to_string() })?;
        let path = data_dir.join(DB_FILE);
        let db = lock::open_locked(data_dir, &path)?;
        // Only now, with the lock held, are temp files certainly no live process's.
        let artifacts_dir = data_dir.join("artifacts");
        std::fs::create_dir_all(&artifacts_dir)
            .map_err(|e| StoreError::File { path: artifacts_dir.clone(), reason: e.to_string() })?;
        artifacts::remove_orphans(&artifacts_dir);
        let seq = init_tables(&db)?;
        let db = Arc::new(handle::DbHandle::new(data_dir, &path, db));
        let (events, _) = broadcast::channel(4096);
        let batch = if group_commit { max_batch.max(1) } else { 1 };
        let writer = writer::Writer::start(db.clone(), seq, batch, events.clone());
        Ok(Self { db, writer, artifacts_dir, events, ids: Arc::new(Mutex::new(ulid::Generator::new())) })
    }

    /// A new id, monotonic within this process so submission order is id order.
    pub fn new_id(&self) -> Ulid {
        let mut g = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        g.generate().unwrap_or_else(|_| Ulid::new())
    }

    /// Directory holding artifact bytes.
    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts_dir
    }

    /// Live events, published after their transaction committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Runs `f` inside a shared write transaction and waits for the commit.
    pub async fn write<R: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.writer.submit(durable, f).await
    }

    /// As [`Store::write`], for worker threads outside the async runtime.
    pub fn write_blocking<R: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.writer.submit_blocking(durable, f)
    }

    /// Accepts a job durably: idempotency key, queue limit and queue index in one write.
    pub async fn submit(&self, job: Job, max_queued: u64) -> Result<Submitted, StoreError> {
        self.submit_with_quota(job, max_queued, None).await
    }

    /// As [`Store::submit`], also refusing when the job's owner already has
    /// `owner_max_queued` queued jobs (checked in the same transaction, so concurrent
    /// submissions cannot overshoot it).
    pub async fn submit_with_quota(
        &self,
        job: Job,
        max_queued: u64,
        owner_max_queued: Option<u64>,
    ) -> Result<Submitted, StoreError> {
        self.submit_with_quotas(job, max_queued, owner_max_queued, None).await
    }

    /// As [`Store::submit_with_quota`], also reserving the job's estimated GPU time when
    /// `gpu` is given: refused unless today's use plus the owner's reservations plus this
    /// estimate stay within the limit, checked and reserved in the enqueue's transaction.
    pub async fn submit_with_quotas(
        &self,
        job: Job,
        max_queued: u64,
        owner_max_queued: Option<u64>,
        gpu: Option<GpuQuota>,
    ) -> Result<Submitted, StoreError> {
        self.write(true, move |ctx| {
            // Every check comes before the first write: a refused submission must leave
            // nothing behind in the transaction it shares with others.
            if let Some(found) = queue_state::earlier_job(ctx, &job)? {
                return Ok(Submitted { job: found, existing: true });
            }
            keys::refuse_revoked_owner(ctx, &job.owner)?;
            let queued = ctx.txn.open_table(QUEUE)?.len()?;
            if queued >= max_queued {
                return Err(StoreError::QueueFull { queued, limit: max_queued });
            }
            if let Some(limit) = owner_max_queued {
                let mine = ctx.txn.open_table(quota::OWNER_QUEUED)?.get(job.owner.as_str())?.map(|g| g.value());
                let queued = mine.unwrap_or(0);
                if queued >= limit {
                    return Err(StoreError::OwnerQueueFull { owner: job.owner.clone(), queued, limit });
                }
            }
            if let Some(GpuQuota { limit_ms, estimate_ms }) = gpu {
                let used_ms = quota::used_in(ctx.txn, &job.owner, crate::time::day_of(now_ms()))?;
                let reserved_ms = quota::reserved_in(ctx.txn, &job.owner)?;
                if used_ms.saturating_add(reserved_ms).saturating_add(estimate_ms) > limit_ms {
                    let owner = job.owner.clone();
                    return Err(StoreError::GpuQuotaExceeded { owner, used_ms, reserved_ms, estimate_ms, limit_ms });
                }
            }
            queue_state::remember_key(ctx, &job)?;
            ctx.put_job(None, &job)?;
            if let Some(g) = gpu {
                quota::reserve_gpu(ctx.txn, &job, g.estimate_ms)?;
            }
            ctx.event(&job, EventBody::State { state: JobStatus::Queued, error: None })?;
            Ok(Submitted { job, existing: false })
        })
        .await
    }

    /// Reads one job.
    pub fn job(&self, id: Ulid) -> Result<Option<Job>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(JOBS)?;
        table.get(id.0)?.map(|g| decode(g.value())).transpose().map_err(Into::into)
    }

    /// Lists jobs newest first, starting below `before` (the cursor), at most `limit`.
    pub fn list_jobs(&self, filter: &JobFilter, before: Option<Ulid>, limit: usize) -> Result<Vec<Job>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let upper = before.map(|u| u.0).unwrap_or(u128::MAX);
        let mut out = Vec::new();
        for entry in table.range(..upper)?.rev() {
            let (_, v) = entry?;
            let job: Job = decode(v.value())?;
            if filter.owner.as_ref().is_some_and(|o| *o != job.owner)
                || filter.state.is_some_and(|s| s != job.state.status())
                || filter.kind.as_ref().is_some_and(|k| *k != job.kind)
            {
                continue;
            }
            out.push(job);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Jobs per state (optionally one owner's).
    pub fn counts(&self, owner: Option<&str>) -> Result<StateCounts, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut c = StateCounts::default();
        for entry in table.iter()? {
            let (_, v) = entry?;
            let job: Job = decode(v.value())?;
            if owner.is_some_and(|o| o != job.owner) {
                continue;
            }
            *match job.state {
                JobState::Queued { .. } => &mut c.queued,
                JobState::Running { .. } => &mut c.running,
                JobState::Succeeded { .. } => &mut c.succeeded,
                JobState::Failed { .. } => &mut c.failed,
                JobState::Canceled { .. } => &mut c.canceled,
            } += 1;
        }
        Ok(c)
    }

    /// Number of queued jobs.
    pub fn queued_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(QUEUE)?.len()?)
    }

    /// Read-modify-write of one job; `f` returns the events to record. The queue index
    /// follows the job's state.
    pub async fn update_job(
        &self,
        id: Ulid,
        durable: bool,
        f: impl FnOnce(&mut Job) -> Result<Vec<EventBody>, StoreError> + Send + 'static,
    ) -> Result<Job, StoreError> {
        self.write(durable, move |ctx| ctx.update_job(id, f)).await
    }

    /// Blocking form of [`Store::update_job`] for worker threads.
    pub fn update_job_blocking(
        &self,
        id: Ulid,
        durable: bool,
        f: impl FnOnce(&mut Job) -> Result<Vec<EventBody>, StoreError> + Send + 'static,
    ) -> Result<Job, StoreError> {
        self.write_blocking(durable, move |ctx| ctx.update_job(id, f))
    }

    /// Takes the first due queued job that `accept` places on a device, marking it running
    /// there (`accept` answers the device: a worker's own, or a cluster box's).
    pub fn claim_blocking(
        &self,
        accept: impl Fn(&Job) -> Option<crate::gpu::DeviceId> + Send + 'static,
    ) -> Result<Option<Job>, StoreError> {
        self.write_blocking(true, move |ctx| {
            let now = now_ms();
            let mut chosen = None;
            {
                let queue = ctx.txn.open_table(QUEUE)?;
                for entry in queue.iter()? {
                    let (k, _) = entry?;
                    let id = Ulid(k.value().2);
                    let Some(job) = ctx.job(id)? else { continue };
                    let due = match job.state {
                        JobState::Queued { not_before, .. } => not_before.is_none_or(|t| t <= now),
                        _ => false,
                    };
                    if !due {
                        continue;
                    }
                    if let Some(device) = accept(&job) {
                        chosen = Some((job, device));
                        break;
                    }
                }
            }
            let Some((job, device)) = chosen else { return Ok(None) };
            let job = ctx.update_job(job.id, |j| {
                let enqueued_at = match j.state {
                    JobState::Queued { enqueued_at, .. } => enqueued_at,
                    _ => now,
                };
                j.state = JobState::Running { enqueued_at, started_at: now, device };
                // A by-hand retry sets attempts back to 0: it starts the job's time anew.
                if j.attempts == 0 || j.first_started_at.is_none() {
                    j.first_started_at = Some(now);
                }
                j.attempts += 1;
                Ok(vec![EventBody::State { state: JobStatus::Running, error: None }])
            })?;
            Ok(Some(job))
        })
    }

    /// Stores artifact metadata (the bytes are already in place).
    pub fn put_artifact_blocking(&self, artifact: Artifact) -> Result<Artifact, StoreError> {
        self.write_blocking(true, move |ctx| {
            storage::put(ctx.txn, &artifact)?;
            Ok(artifact)
        })
    }

    /// Async form of [`Store::put_artifact_blocking`].
    pub async fn put_artifact(&self, artifact: Artifact) -> Result<Artifact, StoreError> {
        self.write(true, move |ctx| {
            storage::put(ctx.txn, &artifact)?;
            Ok(artifact)
        })
        .await
    }

    /// Reads artifact metadata.
    pub fn artifact(&self, id: Ulid) -> Result<Option<Artifact>, StoreError> {
        self.get(ARTIFACTS, id)
    }

    pub(crate) fn get<T: Record>(
        &self,
        table: TableDefinition<u128, &[u8]>,
        id: Ulid,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(table)?;
        table.get(id.0)?.map(|g| decode(g.value())).transpose().map_err(Into::into)
    }

    /// Stops the writer after it has committed everything queued so far.
    pub fn close(&self) {
        self.writer.close();
    }
}

fn init_tables(db: &Database) -> Result<writer::SeqStart, StoreError> {
    let txn = db.begin_write()?;
    let seq;
    {
        txn.open_table(JOBS)?;
        txn.open_table(QUEUE)?;
        txn.open_table(ARTIFACTS)?;
        txn.open_table(PROFILES)?;
        txn.open_table(API_KEYS)?;
        txn.open_table(EVENTS)?;
        txn.open_table(JOB_EVENTS)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(keys::KEY_HASHES)?;
        txn.open_table(recovery::JOB_CRASHES)?;
        quota::rebuild_owner_queued(&txn)?;
        storage::rebuild(&txn)?;
        uploads::backfill(&txn)?;
        let mut meta = txn.open_table(META)?;
        let schema = meta.get("schema")?.map(|g| g.value());
        match schema {
            None => {
                meta.insert("schema", SCHEMA_VERSION)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Db(format!(
                    "database schema {v} is newer than this reelbox ({SCHEMA_VERSION}); upgrade reelbox"
                )));
            }
            Some(_) => {}
        }
        // Numbering resumes above every id a client may have seen: events of non-durable
        // commits may have been sent and then lost in a crash (the durable reservation
        // covers them), and deleted jobs' events count too.
        let reserved = meta.get(writer::SEQ_RESERVED)?.map(|g| g.value()).unwrap_or(0);
        let removed = meta.get(retention::EVENTS_REMOVED_UPTO)?.map(|g| g.value()).unwrap_or(0);
        let events = txn.open_table(EVENTS)?;
        let last = events.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        seq = writer::SeqStart { next: (last.max(removed) + 1).max(reserved), reserved };
    }
    txn.commit()?;
    Ok(seq)
}
