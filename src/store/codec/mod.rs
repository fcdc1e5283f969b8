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
use super::records::{ApiKey, Artifact, Event, Millis, Scope};
record_v1!(Artifact, Event);

mod job;
mod profile;

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
#[cfg_attr(test, derive(Serialize))]
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
            first_started_at: None,
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

    #[test]
    fn version_1_api_keys_migrate_without_a_storage_quota() {
        let id = ulid::Ulid::from_string("01JQ00000000000000000000K1").expect("ulid");
        // The frozen v1 layout itself, written as reelbox before storage quotas stored it.
        let old = ApiKeyV1 {
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
