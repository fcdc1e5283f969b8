//! Whether the queue is paused, kept in the store so that a pause outlives a restart: an
//! operator who paused the box to work on it must not find every queued job started when
//! the daemon comes back (a package upgrade, a reboot, a crash). Also what a repeated
//! submission finds before anything about the queue refuses it.

use redb::ReadableDatabase;
use ulid::Ulid;

use super::records::Job;
use super::{IDEMPOTENCY, META, Store, StoreError};

/// META key: 1 while the queue is paused. Absent in databases from before it was kept
/// (read as not paused, as those daemons started).
const PAUSED_KEY: &str = "queue_paused";

/// The IDEMPOTENCY table's key of `owner`'s idempotency key `key` (keys are per owner).
pub(super) fn idempotency_entry(owner: &str, key: &str) -> String {
    format!("{owner}\n{key}")
}

impl Store {
    /// The job `owner` submitted with idempotency key `key`, if it is still kept (read
    /// only): a client repeating a request whose answer it lost gets its job, even while a
    /// new one would be refused (a low disk).
    pub fn idempotent_job(&self, owner: &str, key: &str) -> Result<Option<Job>, StoreError> {
        let id = {
            let txn = self.db.get()?.begin_read()?;
            let found = txn.open_table(IDEMPOTENCY)?.get(idempotency_entry(owner, key).as_str())?;
            found.map(|g| g.value())
        };
        match id {
            Some(id) => self.job(Ulid(id)),
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
