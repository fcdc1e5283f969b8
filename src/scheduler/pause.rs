//! Pausing the queue: running jobs go on, no new one starts. The state is kept in the
//! store first, so a pause outlives a restart (an upgrade or reboot while the operator
//! works on the box does not start the whole queue). A data dir's disk below
//! `limits.min_free_disk_bytes` holds the queue the same way until space is freed.

use std::sync::atomic::Ordering;

use super::Scheduler;
use crate::disk::DiskLow;
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

    /// Why no new job may start although the queue runs: the data dir's disk is below
    /// `limits.min_free_disk_bytes`. A job started now would likely fail writing its
    /// results (and the database needs room to commit); queued jobs start by themselves
    /// once space is freed, as idle workers look again every half second.
    pub fn held_for_disk(&self) -> Option<DiskLow> {
        let min = self.config.limits.min_free_disk_bytes;
        let low = crate::disk::check_room("data dir", self.store.data_dir(), 0, min).err();
        // Said once each way in the log, not at every look.
        if self.disk_held.swap(low.is_some(), Ordering::Relaxed) != low.is_some() {
            match &low {
                Some(low) => tracing::warn!("no job starts: {}", low.waiting_text()),
                None => tracing::info!("the data dir's disk has room again: queued jobs start"),
            }
        }
        low
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
