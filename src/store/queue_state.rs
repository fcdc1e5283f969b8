//! Whether the queue is paused, kept in the store so that a pause outlives a restart: an
//! operator who paused the box to work on it must not find every queued job started when
//! the daemon comes back (a package upgrade, a reboot, a crash).

use redb::ReadableDatabase;

use super::{META, Store, StoreError};

/// META key: 1 while the queue is paused. Absent in databases from before it was kept
/// (read as not paused, as those daemons started).
const PAUSED_KEY: &str = "queue_paused";

impl Store {
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
