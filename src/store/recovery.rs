//! Crash recovery at start: jobs found `running` were interrupted by the daemon stopping
//! without checkpointing them (kill -9, OOM, power loss, a crash in the job's own code).
//! Each such run already counted as an attempt when it was claimed; a job that has used
//! up `queue.max_attempts` this way fails instead of taking the daemon down forever
//! under a supervisor that keeps restarting it.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use ulid::Ulid;

use super::codec::decode;
use super::records::{EventBody, Job, JobState, JobStatus, now_ms};
use super::{JOBS, Store, StoreError};

/// Times a job was found running at start (job id → count). Kept apart from the job
/// record so old databases open unchanged; cleared when the job reaches a final state, so
/// a retried job starts counting afresh.
pub(crate) const JOB_CRASHES: TableDefinition<u128, u32> = TableDefinition::new("job_crashes");

/// What recovery did with the jobs a stop interrupted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Put back in the queue, to resume after their last finished stage.
    pub requeued: usize,
    /// Failed: their attempts ran out with this interruption.
    pub failed: usize,
}

impl Store {
    /// At start: jobs a crash left `running` go back to the queue, or fail once their
    /// attempts reach `max_attempts`; every interruption is counted durably.
    pub async fn recover_running(&self, max_attempts: u32) -> Result<Recovered, StoreError> {
        let running: Vec<Ulid> = {
            let txn = self.db.get()?.begin_read()?;
            let table = txn.open_table(JOBS)?;
            let mut ids = Vec::new();
            for entry in table.iter()? {
                let (_, v) = entry?;
                let job: Job = decode(v.value())?;
                if matches!(job.state, JobState::Running { .. }) {
                    ids.push(job.id);
                }
            }
            ids
        };
        self.write(true, move |ctx| {
            let mut done = Recovered::default();
            for id in running {
                let crashes = count_crash(ctx.txn, id)?;
                let job = ctx.update_job(id, |j| Ok(recover(j, crashes, max_attempts)))?;
                match job.state {
                    JobState::Failed { .. } => done.failed += 1,
                    _ => done.requeued += 1,
                }
            }
            Ok(done)
        })
        .await
    }
}

/// Adds one interruption to the job's count; returns the new count.
fn count_crash(txn: &WriteTransaction, id: Ulid) -> Result<u32, StoreError> {
    let mut table = txn.open_table(JOB_CRASHES)?;
    let n = table.get(id.0)?.map(|g| g.value()).unwrap_or(0).saturating_add(1);
    table.insert(id.0, n)?;
    Ok(n)
}

/// Forgets a job's interruptions once it is final (called on every final transition).
pub(super) fn forget_crashes(txn: &WriteTransaction, id: Ulid) -> Result<(), StoreError> {
    txn.open_table(JOB_CRASHES)?.remove(id.0)?;
    Ok(())
}

/// Re-queues or fails one interrupted job; returns its events.
fn recover(j: &mut Job, crashes: u32, max_attempts: u32) -> Vec<EventBody> {
    if j.attempts < max_attempts {
        j.requeue(None);
        return vec![
            EventBody::Log {
                level: "warn".into(),
                message: "daemon restarted; job re-queued to resume after its last finished stage".into(),
            },
            EventBody::State { state: JobStatus::Queued, error: None },
        ];
    }
    let now = now_ms();
    let started_at = match j.state {
        JobState::Running { started_at, .. } => Some(started_at),
        _ => None,
    };
    let error = format!(
        "the job was running when the daemon stopped {crashes} times; giving up after {} attempts \
         (queue.max_attempts = {max_attempts})",
        j.attempts
    );
    j.fail_running_stages(now, &error);
    j.state = JobState::Failed { started_at, finished_at: now, error: error.clone() };
    vec![
        EventBody::Log { level: "error".into(), message: error.clone() },
        EventBody::State { state: JobStatus::Failed, error: Some(error) },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::DeviceId;
    use crate::store::records::{Stage, StageState};

    fn running(attempts: u32) -> Job {
        Job {
            id: Ulid::new(),
            owner: "local".into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Running { enqueued_at: 1, started_at: 2, device: DeviceId::Cpu },
            attempts,
            first_started_at: Some(2),
            stages: vec![Stage {
                name: crate::store::records::StageName::Card,
                state: StageState::Running { started_at: 3, device: DeviceId::Cpu },
                artifacts: vec![],
                energy_wh: None,
            }],
            idempotency_key: None,
            created_at: 0,
        }
    }

    #[test]
    fn an_interrupted_job_is_requeued_until_its_attempts_run_out() {
        let mut j = running(1);
        let events = recover(&mut j, 1, 2);
        assert!(matches!(j.state, JobState::Queued { .. }));
        assert_eq!(j.stages[0].state, StageState::Pending);
        assert!(events.iter().any(|e| matches!(e, EventBody::State { state, .. } if state == "queued")));

        let mut j = running(2);
        let events = recover(&mut j, 2, 2);
        let JobState::Failed { started_at, ref error, .. } = j.state else { panic!("failed: {:?}", j.state) };
        assert_eq!(started_at, Some(2));
        assert!(error.contains("running when the daemon stopped 2 times"), "{error}");
        assert!(matches!(j.stages[0].state, StageState::Failed { started_at: 3, .. }));
        assert!(events.iter().any(|e| matches!(e, EventBody::State { state, error: Some(_) } if state == "failed")));
    }
}
