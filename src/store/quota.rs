//! Per-owner bookkeeping for quotas: queued jobs per owner and GPU time per owner and UTC
//! day. Both follow every job write in the same transaction (see `WriteCtx::put_job`), so
//! they cannot drift from the jobs table; the queued counts are rebuilt on open anyway,
//! which also covers databases written before these tables existed.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::codec::decode;
use super::records::{Job, JobState, Millis, now_ms};
use super::{JOBS, QUEUE, Store, StoreError};
use crate::gpu::DeviceId;

/// owner → number of its queued jobs.
pub(crate) const OWNER_QUEUED: TableDefinition<&str, u64> = TableDefinition::new("owner_queued");
/// (owner, UTC day number) → GPU milliseconds used by jobs that ended a run that day.
pub(crate) const GPU_USAGE: TableDefinition<(&str, i64), u64> = TableDefinition::new("gpu_usage");

/// Milliseconds in a day.
pub const DAY_MS: Millis = 86_400_000;

/// The UTC day number of a timestamp (days since the Unix epoch).
pub fn day_of(at: Millis) -> i64 {
    at.div_euclid(DAY_MS)
}

/// Keeps the per-owner tables in step with one job write (`old` → `new`).
pub(crate) fn on_job_write(txn: &WriteTransaction, old: Option<&Job>, new: &Job) -> Result<(), StoreError> {
    let was_queued = old.is_some_and(|j| matches!(j.state, JobState::Queued { .. }));
    let is_queued = matches!(new.state, JobState::Queued { .. });
    if was_queued != is_queued {
        let mut table = txn.open_table(OWNER_QUEUED)?;
        let n = table.get(new.owner.as_str())?.map(|g| g.value()).unwrap_or(0);
        let n = if is_queued { n + 1 } else { n.saturating_sub(1) };
        if n == 0 {
            table.remove(new.owner.as_str())?;
        } else {
            table.insert(new.owner.as_str(), n)?;
        }
    }
    // A run on a GPU ends (done, failed, canceled, re-queued): charge its wall time.
    if let Some(Job { state: JobState::Running { started_at, device: DeviceId::Cuda(_), .. }, .. }) = old
        && !matches!(new.state, JobState::Running { .. })
    {
        let now = now_ms();
        let used = u64::try_from(now.saturating_sub(*started_at)).unwrap_or(0);
        add_usage(txn, &new.owner, day_of(now), used)?;
    }
    Ok(())
}

fn add_usage(txn: &WriteTransaction, owner: &str, day: i64, ms: u64) -> Result<(), StoreError> {
    let mut table = txn.open_table(GPU_USAGE)?;
    let before = table.get((owner, day))?.map(|g| g.value()).unwrap_or(0);
    table.insert((owner, day), before.saturating_add(ms))?;
    Ok(())
}

/// Recounts queued jobs per owner from the queue index (run on open).
pub(crate) fn rebuild_owner_queued(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    {
        let queue = txn.open_table(QUEUE)?;
        let jobs = txn.open_table(JOBS)?;
        for entry in queue.iter()? {
            let id = entry?.0.value().2;
            if let Some(v) = jobs.get(id)? {
                let job: Job = decode(v.value())?;
                *counts.entry(job.owner).or_default() += 1;
            }
        }
    }
    txn.delete_table(OWNER_QUEUED)?;
    let mut table = txn.open_table(OWNER_QUEUED)?;
    for (owner, n) in counts {
        table.insert(owner.as_str(), n)?;
    }
    txn.open_table(GPU_USAGE)?;
    Ok(())
}

impl Store {
    /// How many queued jobs `owner` has.
    pub fn owner_queued(&self, owner: &str) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(OWNER_QUEUED)?.get(owner)?.map(|g| g.value()).unwrap_or(0))
    }

    /// GPU milliseconds `owner` used on UTC day `day`.
    pub fn gpu_ms_used(&self, owner: &str, day: i64) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(GPU_USAGE)?.get((owner, day))?.map(|g| g.value()).unwrap_or(0))
    }

    /// Charges GPU time to an owner by hand (imports, corrections, tests).
    pub async fn add_gpu_ms(&self, owner: &str, day: i64, ms: u64) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.write(true, move |ctx| add_usage(ctx.txn, &owner, day, ms)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::records::Job;

    fn job(store: &Store, owner: &str) -> Job {
        Job {
            id: store.new_id(),
            owner: owner.into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Queued { enqueued_at: now_ms(), not_before: None },
            attempts: 0,
            stages: vec![],
            idempotency_key: None,
            created_at: now_ms(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_never_overshoot_an_owners_quota() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (s, j) = (store.clone(), job(&store, "k1"));
                tokio::spawn(async move { s.submit_with_quota(j, 1000, Some(3)).await })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(_) => accepted += 1,
                Err(StoreError::OwnerQueueFull { limit: 3, .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(accepted, 3);
        assert_eq!(store.owner_queued("k1").expect("count"), 3);
        store.submit_with_quota(job(&store, "k2"), 1000, Some(3)).await.expect("other owners unaffected");
        store.close();
        drop(store);
        // Reopening recounts from the queue index and agrees.
        let store = Store::open(dir.path(), true, 64).expect("reopen");
        assert_eq!(store.owner_queued("k1").expect("count"), 3);
        store.close();
    }

    #[test]
    fn days_split_at_utc_midnight() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }
}
