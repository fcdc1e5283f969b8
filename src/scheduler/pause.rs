//! Pausing the queue: running jobs go on, no new one starts. The state is kept in the
//! store first, so a pause outlives a restart (an upgrade or reboot while the operator
//! works on the box does not start the whole queue).

use std::sync::atomic::Ordering;

use super::Scheduler;
use crate::store::{Store, StoreError};

/// The state the queue was left in, read once at start; an unreadable store starts it
/// running, as before the state was kept (the store's own errors show elsewhere).
pub(super) fn left_paused(store: &Store) -> bool {
    match store.queue_paused() {
        Ok(true) => {
            tracing::warn!("the queue was left paused: no job starts until `reelbox queue resume`");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!("cannot read whether the queue was paused ({e}); it runs");
            false
        }
    }
}

impl Scheduler {
    /// True while the queue is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Pauses or resumes taking new jobs; running jobs continue. Kept durably before it
    /// takes effect, so an answered pause is still a pause after a restart.
    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.store.set_queue_paused(paused).await?;
        self.paused.store(paused, Ordering::SeqCst);
        if !paused {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
        Ok(())
    }
}
