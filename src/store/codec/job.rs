//! Job records' older layouts and how each is read now (a version per change: v1 before a
//! canceled job kept why, v2 before an idempotency key kept its request, v3 before a job
//! kept its first start across tries, v4 before a canceled job's stage could be `Stopped`).

#[cfg(test)]
use serde::Serialize;

use super::{CodecError, Record, decode_old, no_migration};
use crate::gpu::DeviceId;
use crate::store::records::{IdempotencyKey, Job, JobState, Millis, Stage};

/// `Job` as record version 1 wrote it, before a canceled job kept why. Frozen, like
/// [`ApiKeyV1`]; tests write it too.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct JobV1 {
    id: ulid::Ulid,
    owner: String,
    kind: String,
    params: String,
    priority: i32,
    state: JobStateV1,
    attempts: u32,
    // The live struct, unchanged since v1: a change to `Stage`'s layout needs a `StageV1` here.
    stages: Vec<Stage>,
    idempotency_key: Option<String>,
    created_at: Millis,
}

/// `JobState` as job record version 1 wrote it: every variant, in order (bincode reads the
/// variant by its index).
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum JobStateV1 {
    Queued { enqueued_at: Millis, not_before: Option<Millis> },
    Running { enqueued_at: Millis, started_at: Millis, device: DeviceId },
    Succeeded { started_at: Millis, finished_at: Millis },
    Failed { started_at: Option<Millis>, finished_at: Millis, error: String },
    Canceled { canceled_at: Millis },
}

/// `Job` as record version 2 wrote it, before idempotency keys kept their request (frozen;
/// `JobState` and `Stage` are the live types, unchanged since).
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct JobV2 {
    id: ulid::Ulid,
    owner: String,
    kind: String,
    params: String,
    priority: i32,
    state: JobState,
    attempts: u32,
    stages: Vec<Stage>,
    idempotency_key: Option<String>,
    created_at: Millis,
}

impl From<JobV1> for JobV2 {
    fn from(v1: JobV1) -> Self {
        let state = match v1.state {
            JobStateV1::Queued { enqueued_at, not_before } => JobState::Queued { enqueued_at, not_before },
            JobStateV1::Running { enqueued_at, started_at, device } => {
                JobState::Running { enqueued_at, started_at, device }
            }
            JobStateV1::Succeeded { started_at, finished_at } => JobState::Succeeded { started_at, finished_at },
            JobStateV1::Failed { started_at, finished_at, error } => {
                JobState::Failed { started_at, finished_at, error }
            }
            // Nobody recorded why: views show the job canceled, without a reason.
            JobStateV1::Canceled { canceled_at } => JobState::Canceled { canceled_at, reason: None },
        };
        let JobV1 { id, owner, kind, params, priority, attempts, stages, idempotency_key, created_at, .. } = v1;
        JobV2 { id, owner, kind, params, priority, state, attempts, stages, idempotency_key, created_at }
    }
}

/// `Job` as record version 3 wrote it, before a job kept its first start across tries
/// (frozen; `JobState`, `Stage` and `IdempotencyKey` are the live types, unchanged since).
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct JobV3 {
    id: ulid::Ulid,
    owner: String,
    kind: String,
    params: String,
    priority: i32,
    state: JobState,
    attempts: u32,
    stages: Vec<Stage>,
    idempotency_key: Option<Box<IdempotencyKey>>,
    created_at: Millis,
}

impl From<JobV2> for JobV3 {
    fn from(v2: JobV2) -> Self {
        let JobV2 { id, owner, kind, params, priority, state, attempts, stages, idempotency_key, created_at } = v2;
        // What the key first asked for was not kept: it keeps answering with this job.
        let idempotency_key = idempotency_key.map(|key| Box::new(IdempotencyKey { key, request: None }));
        JobV3 { id, owner, kind, params, priority, state, attempts, stages, idempotency_key, created_at }
    }
}

impl Record for Job {
    const VERSION: u8 = 5;
    fn migrate(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let v3: JobV3 = match version {
            1 => JobV2::from(decode_old::<JobV1>(payload)?).into(),
            2 => decode_old::<JobV2>(payload)?.into(),
            3 => decode_old(payload)?,
            // Version 4 is this layout before a stage could be `Stopped` (a new last variant):
            // it reads as it is, and a stage its cancel put back to pending stays pending.
            4 => return decode_old(payload),
            other => return Err(no_migration("job", other)),
        };
        let JobV3 { id, owner, kind, params, priority, state, attempts, stages, idempotency_key, created_at } = v3;
        // The first start of a job resumed before it was kept is unknown: its views count
        // from its last try's, as they did.
        let first_started_at = None;
        let mut job = Job {
            id,
            owner,
            kind,
            params,
            priority,
            state,
            attempts,
            first_started_at,
            stages,
            idempotency_key,
            created_at,
        };
        // Builds that wrote older versions could leave the stage a cancel or failure stopped
        // `running`: it is shown as the ends of such jobs are shown now, not running forever.
        match job.state.clone() {
            JobState::Canceled { canceled_at, .. } => job.stop_running_stages(canceled_at, None),
            JobState::Failed { finished_at, error, .. } => {
                job.fail_running_stages(finished_at, &error);
            }
            _ => {}
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{bincode_config, decode, encode};
    use super::*;
    use crate::store::records::*;

    /// A job as reelbox before cancel reasons stored it.
    fn v1_bytes(state: JobStateV1) -> Vec<u8> {
        v1_bytes_with(state, StageState::Done { started_at: 2, finished_at: 3, device: DeviceId::Cpu })
    }

    fn v1_bytes_with(state: JobStateV1, stage: StageState) -> Vec<u8> {
        let stage =
            Stage { name: StageName::Card, state: stage, artifacts: vec![ulid::Ulid::nil()], energy_wh: Some(0.5) };
        let old = JobV1 {
            id: ulid::Ulid::nil(),
            owner: "kid".into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: -2,
            state,
            attempts: 1,
            stages: vec![stage],
            idempotency_key: Some("k".into()),
            created_at: 1,
        };
        let mut bytes = vec![1u8];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v1"));
        bytes
    }

    #[test]
    fn version_1_canceled_jobs_migrate_without_a_reason() {
        let job = decode::<Job>(&v1_bytes(JobStateV1::Canceled { canceled_at: 9 })).expect("v1 migrates");
        assert_eq!(job.state, JobState::Canceled { canceled_at: 9, reason: None });
        assert_eq!((job.owner.as_str(), job.priority, job.attempts, job.created_at), ("kid", -2, 1, 1));
        let key = Some(Box::new(IdempotencyKey { key: "k".into(), request: None }));
        assert_eq!((job.stages[0].energy_wh, &job.idempotency_key), (Some(0.5), &key));
        // The other states read as they were written, variant by variant.
        let failed = JobStateV1::Failed { started_at: Some(2), finished_at: 3, error: "bad model".into() };
        let failed = decode::<Job>(&v1_bytes(failed)).expect("v1 migrates").state;
        assert_eq!(failed, JobState::Failed { started_at: Some(2), finished_at: 3, error: "bad model".into() });
        let running = JobStateV1::Running { enqueued_at: 1, started_at: 2, device: DeviceId::Cuda(1) };
        let running = decode::<Job>(&v1_bytes(running)).expect("v1 migrates").state;
        assert_eq!(running, JobState::Running { enqueued_at: 1, started_at: 2, device: DeviceId::Cuda(1) });
        let why = Some("canceled because the key \"kid\" was revoked".to_string());
        let new = Job { state: JobState::Canceled { canceled_at: 9, reason: why }, ..job };
        let bytes = encode(&new);
        assert_eq!(bytes[0], 5);
        assert_eq!(decode::<Job>(&bytes).expect("v5 round-trips"), new);
    }

    #[test]
    fn version_2_jobs_keep_their_idempotency_key_without_a_request() {
        let old = JobV2 {
            id: ulid::Ulid::nil(),
            owner: "kid".into(),
            kind: "speech".into(),
            params: r#"{"text":"hi"}"#.into(),
            priority: 4,
            state: JobState::Canceled { canceled_at: 9, reason: Some("asked".into()) },
            attempts: 2,
            stages: vec![],
            idempotency_key: Some("retry-1".into()),
            created_at: 1,
        };
        let bytes = [vec![2u8], bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v2")].concat();
        let job = decode::<Job>(&bytes).expect("v2 migrates");
        // Its key still answers with it, whatever a repeat asks (what was asked is unknown).
        assert_eq!(job.idempotency_key, Some(Box::new(IdempotencyKey { key: "retry-1".into(), request: None })));
        let kept = (job.kind.as_str(), job.params.as_str(), job.priority, job.attempts, job.state);
        assert_eq!(kept, ("speech", old.params.as_str(), 4, 2, old.state));
    }

    #[test]
    fn version_3_jobs_read_without_a_first_start() {
        let old = JobV3 {
            id: ulid::Ulid::nil(),
            owner: "kid".into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: 1,
            state: JobState::Succeeded { started_at: 5, finished_at: 9 },
            attempts: 2,
            stages: vec![],
            idempotency_key: Some(Box::new(IdempotencyKey { key: "k".into(), request: Some("ab".into()) })),
            created_at: 1,
        };
        let bytes = [vec![3u8], bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v3")].concat();
        let job = decode::<Job>(&bytes).expect("v3 migrates");
        assert_eq!((job.first_started_at, job.attempts, &job.state), (None, 2, &old.state));
        assert_eq!(job.idempotency_key, old.idempotency_key);
    }

    /// A version 4 job (written before a stage could be stopped) reads as it was: the stage
    /// its cancel put back to pending stays pending, its done stages done.
    #[test]
    fn version_4_jobs_read_as_they_were() {
        let done = StageState::Done { started_at: 2, finished_at: 3, device: DeviceId::Cpu };
        let stage = |name, state| Stage { name, state, artifacts: vec![], energy_wh: None };
        let old = Job {
            id: ulid::Ulid::nil(),
            owner: "kid".into(),
            kind: "render".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Canceled { canceled_at: 9, reason: Some("typo".into()) },
            attempts: 1,
            first_started_at: Some(2),
            stages: vec![stage(StageName::Plan, done), stage(StageName::Keyframes, StageState::Pending)],
            idempotency_key: None,
            created_at: 1,
        };
        let bytes = [vec![4u8], bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v4")].concat();
        assert_eq!(decode::<Job>(&bytes).expect("v4 reads"), old);
    }

    /// Builds that wrote version 1 left the stage a cancel stopped `running`, so an upgraded
    /// box showed it running forever; it reads as stopped when the job was canceled (as a
    /// cancel leaves it now, its progress unknown), and a failed job's as failed with the
    /// job's error.
    #[test]
    fn version_1_jobs_that_ended_have_no_stage_left_running() {
        let running = StageState::Running { started_at: 2, device: DeviceId::Cpu };
        let canceled = decode::<Job>(&v1_bytes_with(JobStateV1::Canceled { canceled_at: 9 }, running.clone()))
            .expect("v1 migrates");
        let stopped = StageState::Stopped { started_at: 2, stopped_at: 9, step: 0, total: 0 };
        assert_eq!(canceled.stages[0].state, stopped);
        let failed = JobStateV1::Failed { started_at: Some(2), finished_at: 3, error: "bad model".into() };
        let failed = decode::<Job>(&v1_bytes_with(failed, running.clone())).expect("v1 migrates");
        let error = "bad model".to_string();
        assert_eq!(failed.stages[0].state, StageState::Failed { started_at: 2, finished_at: 3, error });
        let still = JobStateV1::Running { enqueued_at: 1, started_at: 2, device: DeviceId::Cpu };
        assert_eq!(decode::<Job>(&v1_bytes_with(still, running.clone())).expect("v1").stages[0].state, running);
    }
}
