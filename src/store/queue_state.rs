//! Whether the queue is paused, kept in the store so that a pause outlives a restart: an
//! operator who paused the box to work on it must not find every queued job started when
//! the daemon comes back (a package upgrade, a reboot, a crash). Also what a repeated
//! submission finds before anything about the queue refuses it.

use redb::{ReadableDatabase, ReadableTable};
use ulid::Ulid;

use super::records::{IdempotencyKey, Job};
use super::{IDEMPOTENCY, META, Store, StoreError, WriteCtx};

/// META key: 1 while the queue is paused. Absent in databases from before it was kept
/// (read as not paused, as those daemons started).
const PAUSED_KEY: &str = "queue_paused";

/// The IDEMPOTENCY table's key of `owner`'s idempotency key `key` (keys are per owner).
pub(super) fn idempotency_entry(owner: &str, key: &str) -> String {
    format!("{owner}\n{key}")
}

/// `earlier`, the job an idempotency key found, as the answer to `asked` (the same key
/// sent again): refused when the key first came with another request, since answering
/// with that job would hand a script a job it did not ask for.
fn same_request(earlier: Job, asked: &IdempotencyKey) -> Result<Job, StoreError> {
    match earlier.idempotency_key.as_ref().and_then(|k| k.request.as_deref()) {
        Some(first) if asked.request.as_deref().is_some_and(|now| now != first) => {
            Err(StoreError::IdempotencyKeyReused { key: asked.key.clone(), job: earlier.id, kind: earlier.kind })
        }
        _ => Ok(earlier),
    }
}

/// The job `job`'s owner submitted before with `job`'s idempotency key, inside a write.
pub(super) fn earlier_job(ctx: &WriteCtx, job: &Job) -> Result<Option<Job>, StoreError> {
    let Some(asked) = &job.idempotency_key else { return Ok(None) };
    let entry = idempotency_entry(&job.owner, &asked.key);
    let Some(id) = ctx.txn.open_table(IDEMPOTENCY)?.get(entry.as_str())?.map(|g| g.value()) else { return Ok(None) };
    ctx.job(Ulid(id))?.map(|earlier| same_request(earlier, asked)).transpose()
}

/// Records `job`'s idempotency key (after every check of its submission passed).
pub(super) fn remember_key(ctx: &WriteCtx, job: &Job) -> Result<(), StoreError> {
    if let Some(k) = &job.idempotency_key {
        ctx.txn.open_table(IDEMPOTENCY)?.insert(idempotency_entry(&job.owner, &k.key).as_str(), job.id.0)?;
    }
    Ok(())
}

impl Store {
    /// The job `owner` submitted with idempotency key `key`, if it is still kept (read
    /// only): a client repeating a request whose answer it lost gets its job, even while a
    /// new one would be refused (a low disk); the key sent with another request is refused.
    pub fn idempotent_job(&self, owner: &str, key: &IdempotencyKey) -> Result<Option<Job>, StoreError> {
        let id = {
            let txn = self.db.get()?.begin_read()?;
            let found = txn.open_table(IDEMPOTENCY)?.get(idempotency_entry(owner, &key.key).as_str())?;
            found.map(|g| g.value())
        };
        match id {
            Some(id) => self.job(Ulid(id))?.map(|earlier| same_request(earlier, key)).transpose(),
            None => Ok(None),
        }
    }

    /// True when the queue was left paused.
    pub fn queue_paused(&self) -> Result<bool, StoreError> {
        // META is made when the store opens.
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(META)?.get(PAUSED_KEY)?.is_some_and(|v| v.value() == 1))
    }

    /// Records the queue's state durably (before the scheduler acts on it).
    pub async fn set_queue_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.write(true, move |ctx| {
            ctx.txn.open_table(META)?.insert(PAUSED_KEY, u64::from(paused))?;
            Ok(())
        })
        .await
    }
}
