//! Per-owner artifact bytes for the storage quota (`max_storage_bytes`). Kept in the same
//! transactions that add or remove artifact records, and recounted on open.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{decode, encode};
use super::records::Artifact;
use super::{ARTIFACTS, Store, StoreError};
use ulid::Ulid;

/// owner → bytes of its artifacts.
pub(crate) const OWNER_BYTES: TableDefinition<&str, u64> = TableDefinition::new("owner_bytes");

/// Adds (`grow`) or takes away bytes of `owner`.
pub(crate) fn adjust(txn: &WriteTransaction, owner: &str, bytes: u64, grow: bool) -> Result<(), StoreError> {
    let mut table = txn.open_table(OWNER_BYTES)?;
    let before = table.get(owner)?.map(|g| g.value()).unwrap_or(0);
    let after = if grow { before.saturating_add(bytes) } else { before.saturating_sub(bytes) };
    if after == 0 {
        table.remove(owner)?;
    } else {
        table.insert(owner, after)?;
    }
    Ok(())
}

/// Writes an artifact record, keeping its owner's byte count in step (a rewrite of the
/// same record, e.g. detaching it from a job, counts once).
pub(crate) fn put(txn: &WriteTransaction, artifact: &Artifact) -> Result<(), StoreError> {
    let old: Option<Artifact> = txn
        .open_table(ARTIFACTS)?
        .insert(artifact.id.0, encode(artifact).as_slice())?
        .map(|g| decode(g.value()))
        .transpose()?;
    if let Some(old) = old {
        adjust(txn, &old.owner, old.size, false)?;
    }
    adjust(txn, &artifact.owner, artifact.size, true)
}

/// Refuses `artifact` when it would take its owner past `limit` bytes; run in the
/// transaction that then writes it, so concurrent uploads cannot overshoot.
pub(crate) fn refuse_past(txn: &WriteTransaction, artifact: &Artifact, limit: Option<u64>) -> Result<(), StoreError> {
    let Some(limit) = limit else { return Ok(()) };
    let used = txn.open_table(OWNER_BYTES)?.get(artifact.owner.as_str())?.map(|g| g.value()).unwrap_or(0);
    within(&artifact.owner, used, artifact.size, limit)
}

/// Refuses `adding` bytes to `owner`'s `used` past `limit`: the one quota rule, in the
/// writing transaction ([`refuse_past`]) and before an upload's bytes are written.
pub fn within(owner: &str, used: u64, adding: u64, limit: u64) -> Result<(), StoreError> {
    if used.saturating_add(adding) > limit {
        return Err(StoreError::StorageQuotaExceeded { owner: owner.to_string(), used, adding, limit });
    }
    Ok(())
}

/// Recounts every owner's bytes from the artifacts table (run on open).
pub(crate) fn rebuild(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for entry in txn.open_table(ARTIFACTS)?.iter()? {
        let a: Artifact = decode(entry?.1.value())?;
        let n = counts.entry(a.owner).or_default();
        *n = n.saturating_add(a.size);
    }
    txn.delete_table(OWNER_BYTES)?;
    let mut table = txn.open_table(OWNER_BYTES)?;
    for (owner, n) in counts {
        table.insert(owner.as_str(), n)?;
    }
    Ok(())
}

impl Store {
    /// The data dir: the database and the artifacts dir under it, on the disk whose free
    /// space `limits.min_free_disk_bytes` guards.
    pub fn data_dir(&self) -> &std::path::Path {
        self.db.data_dir()
    }

    /// Artifact `id` when `owner` holds it: what a job of theirs may read, whatever id its
    /// request names. A read error is the store's, not the request's: callers must not
    /// answer it as "no such artifact".
    pub fn owned_artifact(&self, id: Ulid, owner: &str) -> Result<Option<Artifact>, StoreError> {
        Ok(self.artifact(id)?.filter(|a| a.owner == owner))
    }

    /// Bytes of artifacts `owner` holds.
    pub fn owner_bytes(&self, owner: &str) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        Ok(txn.open_table(OWNER_BYTES)?.get(owner)?.map(|g| g.value()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::now_ms;

    /// An upload of `size` bytes, each with bytes of its own (its sha256 is its id).
    fn artifact(store: &Store, owner: &str, size: u64) -> Artifact {
        let id = store.new_id();
        Artifact {
            id,
            owner: owner.into(),
            job: None,
            stage: Some("upload".into()),
            name: "a.bin".into(),
            media_type: "application/octet-stream".into(),
            size,
            sha256: id.to_string(),
            path: "none".into(),
            created_at: now_ms(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_past_the_storage_quota_are_refused_and_counts_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        store.put_upload_within(artifact(&store, "k1", 600), Some(1000)).await.expect("fits");
        let err = store.put_upload_within(artifact(&store, "k1", 500), Some(1000)).await.expect_err("over");
        assert!(err.to_string().contains("max_storage_bytes"), "{err}");
        store.put_upload_within(artifact(&store, "k2", 500), Some(1000)).await.expect("other owner");
        assert_eq!(store.owner_bytes("k1").expect("bytes"), 600);
        store.close();
        drop(store);
        let store = Store::open(dir.path(), true, 64).expect("reopen");
        assert_eq!(store.owner_bytes("k1").expect("bytes"), 600);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_record_is_an_error_not_someone_elses_artifact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let mine = store.put_upload_within(artifact(&store, "k1", 10), None).await.expect("stored").artifact;
        assert_eq!(store.owned_artifact(mine.id, "k1").expect("read").map(|a| a.id), Some(mine.id));
        assert_eq!(store.owned_artifact(mine.id, "k2").expect("read"), None, "another key's reads as none");
        // A record this build cannot read (a newer reelbox wrote it): the submission must
        // answer the store's error, not "no such artifact, upload it".
        let id = mine.id.0;
        store
            .write(true, move |ctx| {
                ctx.txn.open_table(ARTIFACTS)?.insert(id, [u8::MAX, 0].as_slice())?;
                Ok(())
            })
            .await
            .expect("overwrite");
        let err = store.owned_artifact(mine.id, "k1").expect_err("unreadable");
        assert!(err.to_string().contains("newer"), "{err}");
        store.close();
    }
}
