//! Record encoding: one version byte, then a bincode 2 payload. bincode stays behind this
//! module so replacing it (it is unmaintained) is a one-file change.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors decoding a stored record.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("record version {found} is newer than this reelbox understands (max {max}); upgrade reelbox")]
    TooNew { found: u8, max: u8 },
    #[error("record is corrupt: {0}")]
    Corrupt(String),
}

/// A stored record type with a schema version. Bump `VERSION` when the layout changes
/// and teach `migrate` to read the old one.
pub trait Record: Serialize + DeserializeOwned {
    const VERSION: u8;
    /// Reads a payload written by an older `version`.
    fn migrate(version: u8, _payload: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::Corrupt(format!("no migration from record version {version}")))
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes a record with its version byte.
pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    // Encoding our own in-memory records cannot fail: every field type is serde-plain.
    match bincode::serde::encode_to_vec(value, bincode_config()) {
        Ok(bytes) => out.extend(bytes),
        Err(e) => tracing::error!("record encoding failed: {e}"),
    }
    out
}

/// Decodes a record, migrating older versions.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, payload) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version == T::VERSION {
        let (value, _) = bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| CodecError::Corrupt(e.to_string()))?;
        Ok(value)
    } else if version > T::VERSION {
        Err(CodecError::TooNew { found: version, max: T::VERSION })
    } else {
        T::migrate(version, payload)
    }
}

macro_rules! record_v1 {
    ($($t:ty),*) => { $(impl Record for $t { const VERSION: u8 = 1; })* };
}
use super::records::{
    ApiKey, Artifact, Event, IdempotencyKey, Job, JobState, Millis, Profile, Scope, Stage, Style, Voice,
};
use crate::gpu::DeviceId;
record_v1!(Artifact, Event);

/// Decodes a payload of `what`'s record version 1, the only older layout most records have
/// so far; another version is corrupt.
fn decode_v1<T: DeserializeOwned>(what: &str, version: u8, payload: &[u8]) -> Result<T, CodecError> {
    if version != 1 {
        return Err(no_migration(what, version));
    }
    decode_old(payload)
}

/// Decodes a payload in an older layout `T`.
fn decode_old<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (old, _) =
        bincode::serde::decode_from_slice(payload, bincode_config()).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    Ok(old)
}

fn no_migration(what: &str, version: u8) -> CodecError {
    CodecError::Corrupt(format!("no migration from {what} record version {version}"))
}

/// `ApiKey` as record version 1 wrote it, before `max_storage_bytes`. Frozen: bincode
/// reads fields by position, so this must keep the exact v1 layout.
#[derive(serde::Deserialize)]
struct ApiKeyV1 {
    id: ulid::Ulid,
    name: String,
    hash: String,
    scope: Scope,
    max_queued: Option<u64>,
    gpu_seconds_per_day: Option<u64>,
    created_at: Millis,
    revoked_at: Option<Millis>,
}

/// `ApiKey` as record version 2 wrote it, before `revoked_by`: version 1's fields, then
/// `max_storage_bytes` (bincode lays a nested struct's fields out in place, so this is the
/// flat v2 layout). Frozen, like [`ApiKeyV1`].
#[derive(serde::Deserialize)]
struct ApiKeyV2 {
    v1: ApiKeyV1,
    max_storage_bytes: Option<u64>,
}

impl Record for ApiKey {
    const VERSION: u8 = 3;
    fn migrate(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let ApiKeyV2 { v1, max_storage_bytes } = match version {
            // Keys from before storage quotas had none; keep them unlimited.
            1 => ApiKeyV2 { v1: decode_old(payload)?, max_storage_bytes: None },
            2 => decode_old(payload)?,
            other => return Err(no_migration("api key", other)),
        };
        // Who revoked a key before version 3 was not kept.
        Ok(ApiKey {
            id: v1.id,
            name: v1.name,
            hash: v1.hash,
            scope: v1.scope,
            max_queued: v1.max_queued,
            gpu_seconds_per_day: v1.gpu_seconds_per_day,
            created_at: v1.created_at,
            revoked_at: v1.revoked_at,
            max_storage_bytes,
            revoked_by: None,
        })
    }
}

/// `Profile` as record version 1 wrote it, before `Style::image_model`. Frozen, like
/// [`ApiKeyV1`].
#[derive(serde::Deserialize)]
struct ProfileV1 {
    id: ulid::Ulid,
    owner: String,
    name: String,
    portrait: Option<ulid::Ulid>,
    face_box: Option<[u32; 4]>,
    voice_sample: Option<ulid::Ulid>,
    // The live struct, unchanged since v1: a change to `Voice`'s layout needs a `VoiceV1` here.
    voice: Voice,
    style: StyleV1,
    created_at: Millis,
}

/// `Style` as profile record version 1 wrote it.
#[derive(serde::Deserialize)]
struct StyleV1 {
    prompt_prefix: String,
    negative_prompt: String,
    preset: Option<String>,
}

impl Record for Profile {
    const VERSION: u8 = 2;
    fn migrate(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let v1: ProfileV1 = decode_v1("profile", version, payload)?;
        // Profiles from before picture models leave the model to the render's default.
        let style = Style {
            prompt_prefix: v1.style.prompt_prefix,
            negative_prompt: v1.style.negative_prompt,
            preset: v1.style.preset,
            image_model: None,
        };
        Ok(Profile {
            id: v1.id,
            owner: v1.owner,
            name: v1.name,
            portrait: v1.portrait,
            face_box: v1.face_box,
            voice_sample: v1.voice_sample,
            voice: v1.voice,
            style,
            created_at: v1.created_at,
        })
    }
}

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

impl Record for Job {
    const VERSION: u8 = 3;
    fn migrate(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let v2: JobV2 = match version {
            1 => decode_old::<JobV1>(payload)?.into(),
            2 => decode_old(payload)?,
            other => return Err(no_migration("job", other)),
        };
        let JobV2 { id, owner, kind, params, priority, state, attempts, stages, idempotency_key, created_at } = v2;
        // What the key first asked for was not kept: it keeps answering with this job.
        let idempotency_key = idempotency_key.map(|key| Box::new(IdempotencyKey { key, request: None }));
        let mut job = Job { id, owner, kind, params, priority, state, attempts, stages, idempotency_key, created_at };
        // Builds that wrote older versions could leave the stage a cancel or failure stopped
        // `running`: it is shown as the ends of such jobs are shown now, not running forever.
        match job.state.clone() {
            JobState::Canceled { .. } => job.stop_running_stages(),
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
    use super::*;
    use crate::store::records::*;

    #[test]
    fn job_round_trips_and_newer_versions_are_refused() {
        let job = Job {
            id: ulid::Ulid::new(),
            owner: "local".into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: 3,
            state: JobState::Queued { enqueued_at: 1, not_before: None },
            attempts: 0,
            stages: vec![],
            idempotency_key: Some(Box::new(IdempotencyKey { key: "k".into(), request: Some("ab".repeat(32)) })),
            created_at: 1,
        };
        let bytes = encode(&job);
        assert_eq!(decode::<Job>(&bytes).expect("decodes"), job);
        let mut newer = bytes.clone();
        newer[0] = 9;
        assert!(matches!(decode::<Job>(&newer), Err(CodecError::TooNew { found: 9, .. })));
        assert!(matches!(decode::<Job>(&[]), Err(CodecError::Empty)));
    }

    /// The v1 layout, as a writer: what reelbox before storage quotas stored.
    #[derive(Serialize)]
    struct ApiKeyV1Writer {
        id: ulid::Ulid,
        name: String,
        hash: String,
        scope: Scope,
        max_queued: Option<u64>,
        gpu_seconds_per_day: Option<u64>,
        created_at: Millis,
        revoked_at: Option<Millis>,
    }

    #[test]
    fn version_1_api_keys_migrate_without_a_storage_quota() {
        let id = ulid::Ulid::from_string("01JQ00000000000000000000K1").expect("ulid");
        let old = ApiKeyV1Writer {
            id,
            name: "laptop".into(),
            hash: "ab".repeat(32),
            scope: Scope::Client,
            max_queued: Some(7),
            gpu_seconds_per_day: Some(60),
            created_at: 1_700_000_000_000,
            revoked_at: Some(1_700_000_000_500),
        };
        let mut bytes = vec![1u8];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v1"));
        let key = decode::<ApiKey>(&bytes).expect("v1 migrates");
        assert_eq!(
            key,
            ApiKey {
                id,
                name: "laptop".into(),
                hash: "ab".repeat(32),
                scope: Scope::Client,
                max_queued: Some(7),
                gpu_seconds_per_day: Some(60),
                created_at: 1_700_000_000_000,
                revoked_at: Some(1_700_000_000_500),
                max_storage_bytes: None,
                revoked_by: None,
            }
        );
        let new = ApiKey { max_storage_bytes: Some(4096), ..key };
        let bytes = encode(&new);
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<ApiKey>(&bytes).expect("v3 round-trips"), new);
    }

    #[test]
    fn version_2_api_keys_migrate_without_who_revoked_them() {
        let id = ulid::Ulid::from_string("01JQ00000000000000000000K2").expect("ulid");
        // Written flat, field by field, as version 2's own struct was.
        let old = (
            id,
            "kid",
            "cd".repeat(32),
            Scope::Client,
            None::<u64>,
            Some(600u64),
            1_700_000_000_000i64,
            Some(1_700_000_000_900i64),
            Some(1u64 << 30),
        );
        let mut bytes = vec![2u8];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v2"));
        let key = decode::<ApiKey>(&bytes).expect("v2 migrates");
        assert_eq!(
            (key.id, key.name.as_str(), key.hash.as_str(), key.scope),
            (id, "kid", old.2.as_str(), Scope::Client)
        );
        assert_eq!((key.max_queued, key.gpu_seconds_per_day, key.max_storage_bytes), (None, Some(600), Some(1 << 30)));
        assert_eq!((key.created_at, key.revoked_at), (1_700_000_000_000, Some(1_700_000_000_900)));
        assert_eq!(key.revoked_by, None, "nobody was kept as its revoker");
        let new = ApiKey { revoked_by: Some("key \"mum\"".into()), ..key };
        let bytes = encode(&new);
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<ApiKey>(&bytes).expect("v3 round-trips"), new);
        assert!(matches!(decode::<ApiKey>(&[4, 0]), Err(CodecError::TooNew { found: 4, max: 3 })));
    }
}

#[cfg(test)]
mod profile_tests {
    use super::*;
    use crate::store::records::*;

    /// The v1 layout, as a writer: what reelbox before profile picture models stored.
    #[derive(Serialize)]
    struct ProfileV1Writer {
        id: ulid::Ulid,
        owner: String,
        name: String,
        portrait: Option<ulid::Ulid>,
        face_box: Option<[u32; 4]>,
        voice_sample: Option<ulid::Ulid>,
        voice: Voice,
        style: (String, String, Option<String>),
        created_at: Millis,
    }

    #[test]
    fn version_1_profiles_migrate_without_a_picture_model() {
        let voice =
            Voice { model: "joe".into(), speaker: None, length_scale: Some(1.5), noise_scale: None, noise_w: None };
        let old = ProfileV1Writer {
            id: ulid::Ulid::nil(),
            owner: "local".into(),
            name: "anna".into(),
            portrait: None,
            face_box: Some([1, 2, 3, 4]),
            voice_sample: None,
            voice: voice.clone(),
            style: ("oil".into(), "blur".into(), Some("fast".into())),
            created_at: 5,
        };
        let mut bytes = vec![1u8];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode_config()).expect("encode v1"));
        let p = decode::<Profile>(&bytes).expect("v1 migrates");
        let style = Style {
            prompt_prefix: "oil".into(),
            negative_prompt: "blur".into(),
            preset: Some("fast".into()),
            image_model: None,
        };
        assert_eq!(
            (p.name.as_str(), p.face_box, &p.voice, &p.style, p.created_at),
            ("anna", Some([1, 2, 3, 4]), &voice, &style, 5)
        );
        let new = Profile { style: Style { image_model: Some("tiny-sd-styled".into()), ..style }, ..p };
        let bytes = encode(&new);
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<Profile>(&bytes).expect("v2 round-trips"), new);
    }
}

#[cfg(test)]
mod job_tests {
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
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<Job>(&bytes).expect("v3 round-trips"), new);
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

    /// Builds that wrote version 1 left the stage a cancel stopped `running`, so an upgraded
    /// box showed it running forever; it reads as pending (as a cancel leaves it now), and a
    /// failed job's as failed with the job's error.
    #[test]
    fn version_1_jobs_that_ended_have_no_stage_left_running() {
        let running = StageState::Running { started_at: 2, device: DeviceId::Cpu };
        let canceled = decode::<Job>(&v1_bytes_with(JobStateV1::Canceled { canceled_at: 9 }, running.clone()))
            .expect("v1 migrates");
        assert_eq!(canceled.stages[0].state, StageState::Pending);
        let failed = JobStateV1::Failed { started_at: Some(2), finished_at: 3, error: "bad model".into() };
        let failed = decode::<Job>(&v1_bytes_with(failed, running.clone())).expect("v1 migrates");
        let error = "bad model".to_string();
        assert_eq!(failed.stages[0].state, StageState::Failed { started_at: 2, finished_at: 3, error });
        let still = JobStateV1::Running { enqueued_at: 1, started_at: 2, device: DeviceId::Cpu };
        assert_eq!(decode::<Job>(&v1_bytes_with(still, running.clone())).expect("v1").stages[0].state, running);
    }
}
