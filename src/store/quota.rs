//! Per-owner bookkeeping for quotas: queued jobs per owner, GPU time per owner and UTC
//! day, and GPU time reserved by jobs not yet finished. All follow every job write in the
//! same transaction (see `WriteCtx::put_job`), so they cannot drift from the jobs table;
//! the queued counts and reservation totals are rebuilt on open anyway, which also covers
//! databases written before these tables existed.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::codec::decode;
use super::records::{Job, JobState};
use super::{JOBS, QUEUE, Store, StoreError};
use crate::gpu::DeviceId;
use crate::time::now_ms;

/// owner → number of its queued jobs.
pub(crate) const OWNER_QUEUED: TableDefinition<&str, u64> = TableDefinition::new("owner_queued");
/// (owner, UTC day number) → GPU milliseconds used by jobs that ended a run that day.
pub(crate) const GPU_USAGE: TableDefinition<(&str, i64), u64> = TableDefinition::new("gpu_usage");

/// job → GPU milliseconds reserved for it at submission and not yet released: the
/// estimate, less what its earlier runs were already charged.
pub(crate) const JOB_GPU_RESERVED: TableDefinition<u128, u64> = TableDefinition::new("job_gpu_reserved");
/// owner → sum of its jobs' reservations. Reservations are not per day: a job queued
/// yesterday is charged on the day its run ends, so it weighs on today's quota.
pub(crate) const GPU_RESERVED: TableDefinition<&str, u64> = TableDefinition::new("gpu_reserved");

pub use crate::time::{DAY_MS, day_of};

// The refusals these tables lead to are built with the owner id the store keeps.
impl StoreError {
    /// The same error with a quota refusal naming its owner as people know it (`key "kid"`)
    /// instead of by the owner id the store keeps; other errors are unchanged.
    pub fn naming_owner(mut self, label: &str) -> Self {
        if let Self::OwnerQueueFull { owner, .. }
        | Self::GpuQuotaExceeded { owner, .. }
        | Self::StorageQuotaExceeded { owner, .. } = &mut self
        {
            *owner = label.to_string();
        }
        self
    }
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
        if !new.state.is_terminal() {
            // Re-queued (crash recovery, retry backoff): what ran is now charged as used,
            // so only the rest of the estimate stays reserved; nothing is counted twice.
            shrink_reservation(txn, new, used)?;
        }
    }
    if new.state.is_terminal() {
        // Finished, failed or canceled: its real time is charged above; the estimate goes.
        // A job retried later from here runs unreserved and is charged when it ends.
        shrink_reservation(txn, new, u64::MAX)?;
    }
    Ok(())
}

/// Reserves `ms` of GPU time for a job being submitted (inside the submit transaction).
pub(crate) fn reserve_gpu(txn: &WriteTransaction, job: &Job, ms: u64) -> Result<(), StoreError> {
    if ms == 0 {
        return Ok(());
    }
    txn.open_table(JOB_GPU_RESERVED)?.insert(job.id.0, ms)?;
    let mut totals = txn.open_table(GPU_RESERVED)?;
    let before = totals.get(job.owner.as_str())?.map(|g| g.value()).unwrap_or(0);
    totals.insert(job.owner.as_str(), before.saturating_add(ms))?;
    Ok(())
}

/// Takes up to `ms` off a job's reservation (all of it for `u64::MAX`) and its owner's total.
fn shrink_reservation(txn: &WriteTransaction, job: &Job, ms: u64) -> Result<(), StoreError> {
    let mut per_job = txn.open_table(JOB_GPU_RESERVED)?;
    let Some(held) = per_job.get(job.id.0)?.map(|g| g.value()) else { return Ok(()) };
    let freed = held.min(ms);
    if freed == held {
        per_job.remove(job.id.0)?;
    } else {
        per_job.insert(job.id.0, held - freed)?;
    }
    let mut totals = txn.open_table(GPU_RESERVED)?;
    let total = totals.get(job.owner.as_str())?.map(|g| g.value()).unwrap_or(0).saturating_sub(freed);
    if total == 0 {
        totals.remove(job.owner.as_str())?;
    } else {
        totals.insert(job.owner.as_str(), total)?;
    }
    Ok(())
}

/// GPU milliseconds `owner` has reserved, read inside a write transaction.
pub(crate) fn reserved_in(txn: &WriteTransaction, owner: &str) -> Result<u64, StoreError> {
    Ok(txn.open_table(GPU_RESERVED)?.get(owner)?.map(|g| g.value()).unwrap_or(0))
}

/// GPU milliseconds `owner` used on `day`, read inside a write transaction.
pub(crate) fn used_in(txn: &WriteTransaction, owner: &str, day: i64) -> Result<u64, StoreError> {
    Ok(txn.open_table(GPU_USAGE)?.get((owner, day))?.map(|g| g.value()).unwrap_or(0))
}

/// Drops reservations of jobs that are gone or finished and recomputes the per-owner
/// totals from the per-job table (run on open).
fn rebuild_gpu_reserved(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    let mut stale = Vec::new();
    {
        let per_job = txn.open_table(JOB_GPU_RESERVED)?;
        let jobs = txn.open_table(JOBS)?;
        for entry in per_job.iter()? {
            let (id, ms) = entry?;
            let (id, ms) = (id.value(), ms.value());
            let job: Option<Job> = jobs.get(id)?.map(|v| decode(v.value())).transpose()?;
            match job {
                Some(job) if !job.state.is_terminal() => {
                    let t = totals.entry(job.owner).or_default();
                    *t = t.saturating_add(ms);
                }
                _ => stale.push(id),
            }
        }
    }
    let mut per_job = txn.open_table(JOB_GPU_RESERVED)?;
    for id in stale {
        per_job.remove(id)?;
    }
    txn.delete_table(GPU_RESERVED)?;
    let mut table = txn.open_table(GPU_RESERVED)?;
    for (owner, ms) in totals {
        table.insert(owner.as_str(), ms)?;
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
    rebuild_gpu_reserved(txn)
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

    /// GPU milliseconds reserved by `owner`'s unfinished jobs.
    pub fn gpu_ms_reserved(&self, owner: &str) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(GPU_RESERVED)?.get(owner)?.map(|g| g.value()).unwrap_or(0))
    }

    /// Charges GPU time to an owner by hand (imports, corrections, tests).
    pub async fn add_gpu_ms(&self, owner: &str, day: i64, ms: u64) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.write(true, move |ctx| add_usage(ctx.txn, &owner, day, ms)).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::records::Job;

    #[test]
    fn quota_refusals_name_the_owner_as_people_know_it() {
        let full = StoreError::OwnerQueueFull { owner: "01KEYID".into(), queued: 3, limit: 3 };
        assert_eq!(
            full.naming_owner("key \"kid\"").to_string(),
            "key \"kid\" already has 3 queued jobs; its quota max_queued is 3"
        );
        let storage = StoreError::StorageQuotaExceeded { owner: "01KEYID".into(), used: 1, adding: 2, limit: 2 };
        assert!(storage.naming_owner("key \"kid\"").to_string().starts_with("key \"kid\" holds 1 bytes"));
        let other = StoreError::QueueFull { queued: 3, limit: 3 };
        assert_eq!(other.naming_owner("key \"kid\"").to_string(), "queue is full (3 queued, limit 3)");
    }

    /// A queued testcard job of `owner`.
    pub(crate) fn job(store: &Store, owner: &str) -> Job {
        Job {
            id: store.new_id(),
            owner: owner.into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Queued { enqueued_at: now_ms(), not_before: None },
            attempts: 0,
            first_started_at: None,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gpu_reservations_hold_under_a_burst_and_are_released_when_jobs_end() {
        use crate::store::GpuQuota;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let gpu = Some(GpuQuota { limit_ms: 1000, estimate_ms: 300 });
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (s, j) = (store.clone(), job(&store, "k1"));
                tokio::spawn(async move { s.submit_with_quotas(j, 1000, None, gpu).await })
            })
            .collect();
        let mut accepted = Vec::new();
        for t in tasks {
            match t.await.expect("join") {
                Ok(s) => accepted.push(s.job),
                Err(StoreError::GpuQuotaExceeded { limit_ms: 1000, .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(accepted.len(), 3, "3 × 300 ms fit in 1000 ms, a fourth does not");
        assert_eq!(store.gpu_ms_reserved("k1").expect("reserved"), 900);
        // A run re-queued after 100 ms is charged that and keeps only the rest reserved.
        let first = accepted[0].id;
        let started_at = now_ms() - 100;
        let device = DeviceId::Cuda(0);
        store
            .update_job(first, true, move |j| {
                j.state = JobState::Running { enqueued_at: started_at, started_at, device };
                Ok(vec![])
            })
            .await
            .expect("run");
        store
            .update_job(first, true, |j| {
                j.requeue(None);
                Ok(vec![])
            })
            .await
            .expect("requeue");
        let used = store.gpu_ms_used("k1", day_of(now_ms())).expect("used");
        assert!(used >= 100, "{used}");
        assert_eq!(store.gpu_ms_reserved("k1").expect("reserved") + used.min(300), 900);
        // Ending (here: canceling) releases what is left; the others survive a reopen.
        store
            .update_job(first, true, |j| {
                j.state = JobState::Canceled { canceled_at: now_ms(), reason: None };
                Ok(vec![])
            })
            .await
            .expect("cancel");
        assert_eq!(store.gpu_ms_reserved("k1").expect("reserved"), 600);
        store.close();
        drop(store);
        let store = Store::open(dir.path(), true, 64).expect("reopen");
        assert_eq!(store.gpu_ms_reserved("k1").expect("reserved"), 600);
        store.close();
    }
}
