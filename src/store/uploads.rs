//! Uploads kept once per owner and content: `(owner, sha256)` → the upload artifact holding
//! those bytes. A client sending the same file again (a phone re-sending a photo, a refused
//! CLI run retried) is answered with the upload it already has, not charged for a copy.
//! The index is written and cleared in the transactions that write and remove the artifact
//! records; a lookup still checks the record and its file, so an entry a crash or an older
//! reelbox left stale only costs a fresh upload. Owners never share: an entry is found only
//! under its own owner, so one key's upload says nothing about another's files. A re-send
//! keeps the upload's `created_at` (when it was first sent, as the library sorts it) and is
//! kept apart, in [`SENT`], for `[retention] unused_upload_days`.

use std::collections::HashMap;

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use ulid::Ulid;

use super::codec::decode;
use super::records::{Artifact, Millis, now_ms};
use super::{ARTIFACTS, META, Store, StoreError, storage};

/// (owner, sha256 hex) → the id of the owner's upload with those bytes.
pub(crate) const UPLOADS: TableDefinition<(&str, &str), u128> = TableDefinition::new("uploads_by_sha256");

/// Upload id → when its owner last sent its bytes again (uploads never sent again have none).
pub(crate) const SENT: TableDefinition<u128, Millis> = TableDefinition::new("uploads_last_sent");

/// The stage of a file a key sent on its own (not as part of a profile).
const UPLOAD_STAGE: &str = "upload";

/// META key, set once the uploads stored before the index existed have been indexed.
const INDEXED: &str = "uploads_indexed";

/// An upload as stored: a new artifact, or the owner's earlier one with the same bytes.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The upload's record.
    pub artifact: Artifact,
    /// True when the owner already held these bytes and that upload is answered instead.
    pub existing: bool,
}

/// The owner's upload with bytes `sha256`, while its record and its whole file are there.
fn live(
    index: &impl ReadableTable<(&'static str, &'static str), u128>,
    artifacts: &impl ReadableTable<u128, &'static [u8]>,
    dir: &Path,
    owner: &str,
    sha256: &str,
) -> Result<Option<Artifact>, StoreError> {
    let Some(id) = index.get((owner, sha256))?.map(|g| g.value()) else { return Ok(None) };
    let Some(raw) = artifacts.get(id)? else { return Ok(None) };
    let a: Artifact = decode(raw.value())?;
    let whole = std::fs::metadata(dir.join(&a.path)).is_ok_and(|m| m.is_file() && m.len() == a.size);
    Ok((a.owner == owner && a.sha256 == sha256 && a.is_upload() && whole).then_some(a))
}

/// [`live`] inside a write transaction.
fn live_in(txn: &WriteTransaction, dir: &Path, owner: &str, sha256: &str) -> Result<Option<Artifact>, StoreError> {
    live(&txn.open_table(UPLOADS)?, &txn.open_table(ARTIFACTS)?, dir, owner, sha256)
}

/// Marks `found` sent again now at `stage`, as `media_type`, and keeps it: `[retention]
/// unused_upload_days` counts from an upload's last send ([`SENT`]), so sending the same
/// file again keeps it as long as a fresh upload, while its `created_at` stays when it was
/// first sent. The media type is what the re-send's bytes were read as, so one an older
/// reelbox guessed from a file name is corrected. A profile's portrait sent on its own
/// becomes an upload: deleting the profile then leaves it, as the key holds it for itself too.
fn refresh(
    txn: &WriteTransaction,
    found: Artifact,
    stage: Option<&str>,
    media_type: &str,
) -> Result<Artifact, StoreError> {
    let stage = match stage {
        Some(UPLOAD_STAGE) => Some(UPLOAD_STAGE.to_string()),
        _ => found.stage.clone(),
    };
    let refreshed = Artifact { stage, media_type: media_type.to_string(), ..found };
    storage::put(txn, &refreshed)?;
    txn.open_table(SENT)?.insert(refreshed.id.0, now_ms())?;
    Ok(refreshed)
}

/// When each upload sent again was last sent ([`SENT`]), for the sweep: an upload counts as
/// unused from then, or from its `created_at` when it was never sent again.
pub(crate) fn last_sent(txn: &WriteTransaction) -> Result<HashMap<Ulid, Millis>, StoreError> {
    let mut out = HashMap::new();
    for entry in txn.open_table(SENT)?.iter()? {
        let (id, at) = entry?;
        out.insert(Ulid(id.value()), at.value());
    }
    Ok(out)
}

/// Forgets `artifact` as its owner's copy of its bytes (it is being removed); an entry that
/// already names a newer upload stays.
pub(crate) fn unindex(txn: &WriteTransaction, artifact: &Artifact) -> Result<(), StoreError> {
    txn.open_table(SENT)?.remove(artifact.id.0)?;
    let mut index = txn.open_table(UPLOADS)?;
    let key = (artifact.owner.as_str(), artifact.sha256.as_str());
    if index.get(key)?.is_some_and(|g| g.value() == artifact.id.0) {
        index.remove(key)?;
    }
    Ok(())
}

/// Indexes the uploads stored before this index existed, once (run on open). Backfilled
/// rather than left out because it is one pass over the artifacts table, as the storage
/// recount on open already makes, and without it a photo sent before the upgrade would be
/// stored again when re-sent. Where an owner holds several copies, the newest is kept.
pub(crate) fn backfill(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(INDEXED)?.is_some() {
        return Ok(());
    }
    let mut index = txn.open_table(UPLOADS)?;
    for entry in txn.open_table(ARTIFACTS)?.iter()? {
        let a: Artifact = decode(entry?.1.value())?;
        if !a.is_upload() || a.sha256.is_empty() {
            continue;
        }
        let key = (a.owner.as_str(), a.sha256.as_str());
        if index.get(key)?.is_none_or(|g| g.value() < a.id.0) {
            index.insert(key, a.id.0)?;
        }
    }
    meta.insert(INDEXED, 1)?;
    Ok(())
}

impl Store {
    /// Whether `owner` holds an upload with bytes `sha256` whose file is whole: sending
    /// those bytes again costs nothing (read only).
    pub fn holds_upload(&self, owner: &str, sha256: &str) -> Result<bool, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let (index, artifacts) = (txn.open_table(UPLOADS)?, txn.open_table(ARTIFACTS)?);
        Ok(live(&index, &artifacts, &self.artifacts_dir, owner, sha256)?.is_some())
    }

    /// `owner`'s upload with bytes `sha256`, marked sent again now at `stage` as
    /// `media_type` (see [`refresh`]), when it holds one whose file is whole; `None` writes
    /// nothing.
    pub async fn reuse_upload(
        &self,
        owner: &str,
        sha256: &str,
        stage: &str,
        media_type: &str,
    ) -> Result<Option<Artifact>, StoreError> {
        // Most uploads are new: a read answers them without a commit.
        if !self.holds_upload(owner, sha256)? {
            return Ok(None);
        }
        let dir = self.artifacts_dir.clone();
        let (owner, sha256, stage, media_type) =
            (owner.to_string(), sha256.to_string(), stage.to_string(), media_type.to_string());
        // Looked up again in the writing transaction: a sweep or a profile's deletion may
        // have removed it since the read, and once refreshed no sweep takes it for unused.
        self.write(true, move |ctx| match live_in(ctx.txn, &dir, &owner, &sha256)? {
            Some(found) => refresh(ctx.txn, found, Some(&stage), &media_type).map(Some),
            None => Ok(None),
        })
        .await
    }

    /// Stores an upload's record (its file is in place) unless it would take its owner past
    /// `limit` bytes, indexing it by its bytes; when the owner came to hold the same bytes
    /// meanwhile (two sends at once), that upload is answered instead and `artifact`'s file
    /// is the caller's to remove. Checked and written in one transaction.
    pub async fn put_upload_within(&self, artifact: Artifact, limit: Option<u64>) -> Result<Uploaded, StoreError> {
        let dir = self.artifacts_dir.clone();
        self.write(true, move |ctx| {
            if let Some(found) = live_in(ctx.txn, &dir, &artifact.owner, &artifact.sha256)? {
                let artifact = refresh(ctx.txn, found, artifact.stage.as_deref(), &artifact.media_type)?;
                return Ok(Uploaded { artifact, existing: true });
            }
            storage::refuse_past(ctx.txn, &artifact, limit)?;
            storage::put(ctx.txn, &artifact)?;
            ctx.txn.open_table(UPLOADS)?.insert((artifact.owner.as_str(), artifact.sha256.as_str()), artifact.id.0)?;
            Ok(Uploaded { artifact, existing: false })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SweepPolicy;
    use crate::store::artifacts;
    use crate::time::DAY_MS;

    /// Writes `bytes` as an upload of `owner` made `days_ago`, without storing its record.
    fn upload(store: &Store, owner: &str, bytes: &[u8], days_ago: i64) -> Artifact {
        let id = store.new_id();
        let stored = artifacts::write_bytes(store.artifacts_dir(), &id.to_string(), "png", bytes).expect("write");
        Artifact {
            id,
            owner: owner.into(),
            job: None,
            stage: Some("upload".into()),
            name: "photo.png".into(),
            media_type: "image/png".into(),
            size: stored.size,
            sha256: stored.sha256,
            path: stored.rel_path,
            created_at: now_ms() - days_ago * DAY_MS,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_re_sent_upload_is_the_old_one_kept_alive_and_gone_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let old = upload(&store, "mum", b"photo", 10);
        let first = store.put_upload_within(old.clone(), None).await.expect("first");
        assert!(!first.existing);
        let again = store
            .reuse_upload("mum", &old.sha256, "upload", "image/png")
            .await
            .expect("reuse")
            .expect("the same bytes");
        assert_eq!(again.id, old.id);
        assert_eq!(again.created_at, old.created_at, "still first sent ten days ago");
        // Read as another type this time (an older reelbox guessed it from the name): corrected.
        let retyped = store.reuse_upload("mum", &old.sha256, "upload", "image/webp").await.expect("reuse");
        assert_eq!(retyped.map(|a| a.media_type).as_deref(), Some("image/webp"));
        let stored = store.artifact(old.id).expect("read").expect("kept");
        assert_eq!((stored.media_type.as_str(), stored.created_at), ("image/webp", old.created_at));
        assert!(
            store.reuse_upload("kid", &old.sha256, "upload", "image/png").await.expect("reuse").is_none(),
            "another owner's"
        );
        assert_eq!(store.owner_bytes("mum").expect("bytes"), old.size, "counted once");

        // Sent again today, it is no longer an upload unused for a week.
        let week_ago = now_ms() - 7 * DAY_MS;
        let policy = SweepPolicy { unused_before: Some(week_ago), ..SweepPolicy::default() };
        assert_eq!(store.sweep(policy, false).await.expect("sweep").artifacts, 0);
        let a_week_on = SweepPolicy { unused_before: Some(now_ms() + 1), ..SweepPolicy::default() };
        assert_eq!(store.sweep(a_week_on, false).await.expect("sweep").artifacts, 1);
        assert!(
            store.reuse_upload("mum", &old.sha256, "upload", "image/png").await.expect("reuse").is_none(),
            "gone with its record"
        );
        let next = store.put_upload_within(upload(&store, "mum", b"photo", 0), None).await.expect("next");
        assert!(!next.existing && next.artifact.id != old.id);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_sends_at_once_keep_one_record_and_a_lost_file_is_not_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let (a, b) = (upload(&store, "mum", b"photo", 0), upload(&store, "mum", b"photo", 0));
        let first = store.put_upload_within(a.clone(), None).await.expect("a");
        let second = store.put_upload_within(b, None).await.expect("b");
        assert!(second.existing && second.artifact.id == first.artifact.id);
        assert_eq!(store.owner_bytes("mum").expect("bytes"), a.size);

        std::fs::remove_file(store.artifacts_dir().join(&a.path)).expect("lose the file");
        assert!(store.reuse_upload("mum", &a.sha256, "upload", "image/png").await.expect("reuse").is_none());
        let c = upload(&store, "mum", b"photo", 0);
        let third = store.put_upload_within(c.clone(), None).await.expect("c");
        assert!(!third.existing && third.artifact.id == c.id);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_stored_before_the_index_are_found_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let old = store.put_artifact(upload(&store, "mum", b"photo", 1)).await.expect("an upload of before");
        let output =
            Artifact { job: Some(store.new_id()), stage: Some("card".into()), ..upload(&store, "mum", b"card", 0) };
        let output = store.put_artifact(output).await.expect("a job's output");
        // As a database from before the index: no entries, no flag.
        store
            .write(true, |ctx| {
                ctx.txn.delete_table(UPLOADS)?;
                ctx.txn.open_table(META)?.remove(INDEXED)?;
                Ok(())
            })
            .await
            .expect("forget the index");
        store.close();
        drop(store);
        let store = Store::open(dir.path(), true, 64).expect("reopen");
        let found = store.reuse_upload("mum", &old.sha256, "upload", "image/png").await.expect("reuse");
        assert_eq!(found.map(|a| a.id), Some(old.id));
        assert!(
            store.reuse_upload("mum", &output.sha256, "upload", "image/png").await.expect("reuse").is_none(),
            "outputs are no uploads"
        );
        store.close();
    }
}
