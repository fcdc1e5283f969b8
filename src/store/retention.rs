//! Deleting finished jobs and sweeping what nobody needs. One write transaction removes
//! the records (jobs, their events, their artifacts' metadata, an upload's entry in the
//! index by bytes, `uploads.rs`); the files go after the commit, so a crash in between
//! leaves only files without records, which no route can reach and the sweep removes later.
//! What `References` says is in use is never removed: an in-use artifact of a deleted job
//! stays, as an artifact of its owner without a job.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::codec::{Record, decode, encode};
use super::records::{Artifact, Job, Millis, Profile};
use super::references::References;
use super::{ARTIFACTS, EVENTS, IDEMPOTENCY, JOB_EVENTS, JOBS, META, PROFILES, Store, StoreError, WriteCtx, artifacts};

/// META key: the highest event sequence number ever removed, so numbering never goes back
/// to ids that clients have already seen when the newest events are deleted.
pub(crate) const EVENTS_REMOVED_UPTO: &str = "events_removed_upto";

/// Files without a record are removed only once this old: a file is renamed into place a
/// moment before its record commits, and must not be mistaken for an orphan meanwhile.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// What a deletion or sweep removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Removal {
    /// Finished jobs removed.
    pub jobs: u64,
    /// Events of those jobs.
    pub events: u64,
    /// Artifacts removed (records and files): removed jobs' outputs and unused uploads.
    pub artifacts: u64,
    /// Files in the artifacts dir that no record named (left by a crash).
    pub orphan_files: u64,
    /// Bytes of the removed files.
    pub bytes: u64,
    /// Artifacts of removed jobs kept because a profile or a queued or running job uses them.
    pub kept_in_use: u64,
}

/// What a sweep removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepPolicy {
    /// Finished jobs that finished before this time, with their events and artifacts.
    pub jobs_finished_before: Option<Millis>,
    /// Artifacts of no job, made before this time, that nothing needs.
    pub unused_before: Option<Millis>,
    /// Files in the artifacts dir no record names, older than [`ORPHAN_GRACE`].
    pub orphan_files: bool,
}

/// The tables a plan is made from, read inside the transaction that carries it out.
pub(super) struct Snapshot {
    pub(super) jobs: Vec<Job>,
    pub(super) profiles: Vec<Profile>,
    pub(super) artifacts: Vec<Artifact>,
    /// When uploads sent again were last sent (`uploads::last_sent`).
    pub(super) sent: HashMap<Ulid, Millis>,
}

/// What to remove, decided before the first write.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) jobs: Vec<Job>,
    /// Artifact records (and then files) to remove.
    pub(super) remove: Vec<Artifact>,
    /// Artifacts of removed jobs that stay because they are in use.
    pub(super) detach: Vec<Artifact>,
}

fn read_all<T: Record>(txn: &WriteTransaction, def: TableDefinition<u128, &[u8]>) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(def)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        out.push(decode(entry?.1.value())?);
    }
    Ok(out)
}

pub(super) fn snapshot(txn: &WriteTransaction) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        jobs: read_all(txn, JOBS)?,
        profiles: read_all(txn, PROFILES)?,
        artifacts: read_all(txn, ARTIFACTS)?,
        sent: super::uploads::last_sent(txn)?,
    })
}

/// Removes the finished jobs in `leaving` with their artifacts, and unused artifacts of no
/// job made (or, uploads, last sent) before `unused_before`; what [`References`] needs stays.
fn plan(snap: &Snapshot, leaving: &HashSet<Ulid>, unused_before: Option<Millis>) -> Plan {
    let refs = References::of(&snap.jobs, &snap.profiles);
    let kept_jobs: HashSet<Ulid> = snap.jobs.iter().map(|j| j.id).filter(|id| !leaving.contains(id)).collect();
    let mut plan = Plan {
        jobs: snap.jobs.iter().filter(|j| leaving.contains(&j.id) && j.state.is_terminal()).cloned().collect(),
        ..Plan::default()
    };
    for a in &snap.artifacts {
        match a.job {
            Some(job) if leaving.contains(&job) => {
                if refs.in_use(a.id) {
                    plan.detach.push(a.clone());
                } else {
                    plan.remove.push(a.clone());
                }
            }
            Some(job) if kept_jobs.contains(&job) => {}
            // An upload, or an output whose job is gone.
            _ => {
                let since = snap.sent.get(&a.id).map_or(a.created_at, |&sent| sent.max(a.created_at));
                if unused_before.is_some_and(|t| since < t) && !refs.needed(a.id, leaving) {
                    plan.remove.push(a.clone());
                }
            }
        }
    }
    plan
}

/// Sequence numbers of a job's events.
fn event_seqs(txn: &WriteTransaction, job: Ulid) -> Result<Vec<u64>, StoreError> {
    let index = txn.open_table(JOB_EVENTS)?;
    let mut out = Vec::new();
    for entry in index.range((job.0, 0)..=(job.0, u64::MAX))? {
        out.push(entry?.0.value().1);
    }
    Ok(out)
}

/// Counts what `plan` removes and, unless `dry_run`, removes the records. Returns the
/// removal and the files to delete once committed.
pub(super) fn execute(ctx: &mut WriteCtx, plan: &Plan, dry_run: bool) -> Result<(Removal, Vec<String>), StoreError> {
    let txn = ctx.txn;
    let mut removal = Removal {
        jobs: plan.jobs.len() as u64,
        artifacts: plan.remove.len() as u64,
        bytes: plan.remove.iter().map(|a| a.size).sum(),
        kept_in_use: plan.detach.len() as u64,
        ..Removal::default()
    };
    let mut highest_seq = 0;
    for job in &plan.jobs {
        let seqs = event_seqs(txn, job.id)?;
        removal.events += seqs.len() as u64;
        if dry_run {
            continue;
        }
        let mut index = txn.open_table(JOB_EVENTS)?;
        let mut events = txn.open_table(EVENTS)?;
        for seq in seqs {
            index.remove((job.id.0, seq))?;
            events.remove(seq)?;
            highest_seq = highest_seq.max(seq);
        }
    }
    let files = plan.remove.iter().map(|a| a.path.clone()).collect();
    if dry_run {
        return Ok((removal, files));
    }
    {
        let mut jobs = txn.open_table(JOBS)?;
        let mut idempotency = txn.open_table(IDEMPOTENCY)?;
        for job in &plan.jobs {
            jobs.remove(job.id.0)?;
            if let Some(k) = &job.idempotency_key {
                let key = super::queue_state::idempotency_entry(&job.owner, &k.key);
                if idempotency.get(key.as_str())?.is_some_and(|g| g.value() == job.id.0) {
                    idempotency.remove(key.as_str())?;
                }
            }
        }
    }
    {
        let mut table = txn.open_table(ARTIFACTS)?;
        for a in &plan.remove {
            if table.remove(a.id.0)?.is_some() {
                super::storage::adjust(txn, &a.owner, a.size, false)?;
                super::uploads::unindex(txn, a)?;
            }
        }
        for a in &plan.detach {
            let kept = Artifact { job: None, ..a.clone() };
            table.insert(a.id.0, encode(&kept).as_slice())?;
        }
    }
    if highest_seq > 0 {
        let mut meta = txn.open_table(META)?;
        let before = meta.get(EVENTS_REMOVED_UPTO)?.map(|g| g.value()).unwrap_or(0);
        meta.insert(EVENTS_REMOVED_UPTO, before.max(highest_seq))?;
    }
    Ok((removal, files))
}

impl Store {
    /// Deletes a finished job with its events and artifacts (records, then files); its
    /// artifacts that a profile or a queued or running job uses stay, without a job.
    /// A queued or running job is refused: it must be canceled first.
    pub async fn delete_job(&self, id: Ulid) -> Result<Removal, StoreError> {
        let (removal, files) = self
            .write(true, move |ctx| {
                let job = ctx.job(id)?.ok_or_else(|| StoreError::NotFound { what: "job", id: id.to_string() })?;
                if !job.state.is_terminal() {
                    return Err(StoreError::NotFinished { id: id.to_string(), state: job.state.name() });
                }
                let plan = plan(&snapshot(ctx.txn)?, &HashSet::from([id]), None);
                execute(ctx, &plan, false)
            })
            .await?;
        self.remove_files(files).await;
        Ok(removal)
    }

    /// Removes what `policy` names and nothing in use; with `dry_run`, only counts it.
    pub async fn sweep(&self, policy: SweepPolicy, dry_run: bool) -> Result<Removal, StoreError> {
        // Listed before the records are read, so a file whose record commits meanwhile is
        // either too young to be a candidate or has its record in the snapshot.
        let candidates = if policy.orphan_files {
            let dir = self.artifacts_dir.clone();
            let cutoff = SystemTime::now().checked_sub(ORPHAN_GRACE).unwrap_or(SystemTime::UNIX_EPOCH);
            tokio::task::spawn_blocking(move || artifacts::files_older_than(&dir, cutoff))
                .await
                .map_err(|e| StoreError::Db(format!("listing artifact files failed: {e}")))?
        } else {
            Vec::new()
        };
        let (removal, files) = self
            .write(!dry_run, move |ctx| {
                let snap = snapshot(ctx.txn)?;
                let leaving: HashSet<Ulid> = snap
                    .jobs
                    .iter()
                    .filter(|j| {
                        let before = policy.jobs_finished_before;
                        j.state.finished_at().is_some_and(|t| before.is_some_and(|cutoff| t < cutoff))
                    })
                    .map(|j| j.id)
                    .collect();
                let known: HashSet<&str> = snap.artifacts.iter().map(|a| a.path.as_str()).collect();
                let orphans: Vec<(String, u64)> =
                    candidates.into_iter().filter(|(path, _)| !known.contains(path.as_str())).collect();
                let plan = plan(&snap, &leaving, policy.unused_before);
                let (mut removal, mut files) = execute(ctx, &plan, dry_run)?;
                removal.orphan_files = orphans.len() as u64;
                removal.bytes += orphans.iter().map(|(_, size)| size).sum::<u64>();
                files.extend(orphans.into_iter().map(|(path, _)| path));
                Ok((removal, files))
            })
            .await?;
        if !dry_run {
            self.remove_files(files).await;
        }
        Ok(removal)
    }

    /// Deletes artifact files whose records are gone; a failure only leaves an orphan
    /// for the next sweep, so it is logged, not returned.
    pub(super) async fn remove_files(&self, files: Vec<String>) {
        let dir = self.artifacts_dir.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || artifacts::remove_files(&dir, &files)).await {
            tracing::warn!("removing artifact files stopped: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::records::{EventBody, IdempotencyKey, JobState, Style, Voice, now_ms};

    const DAY: Millis = crate::time::DAY_MS;

    fn open(dir: &Path) -> Store {
        Store::open(dir, true, 64).expect("open store")
    }

    fn job(store: &Store, state: JobState, params: serde_json::Value) -> Job {
        Job {
            id: store.new_id(),
            owner: "local".into(),
            kind: "testcard".into(),
            params: params.to_string(),
            priority: 0,
            state,
            attempts: 1,
            first_started_at: None,
            stages: vec![],
            idempotency_key: Some(Box::new(IdempotencyKey { key: "k".into(), request: None })),
            created_at: now_ms(),
        }
    }

    fn finished(store: &Store, days_ago: i64) -> Job {
        let at = now_ms() - days_ago * DAY;
        job(store, JobState::Succeeded { started_at: at, finished_at: at }, serde_json::json!({}))
    }

    async fn put_job(store: &Store, job: &Job) {
        let job = job.clone();
        store
            .write(true, move |ctx| {
                ctx.put_job(None, &job)?;
                crate::store::queue_state::remember_key(ctx, &job)?;
                ctx.event(&job, EventBody::State { state: job.state.status(), error: None })?;
                ctx.event(&job, EventBody::Log { level: "info".into(), message: "done".into() })
            })
            .await
            .expect("put job");
    }

    /// Stores an artifact file of `job` (or an upload when `None`) made `days_ago`.
    async fn artifact(store: &Store, job: Option<Ulid>, days_ago: i64) -> Artifact {
        let id = store.new_id();
        let stored = artifacts::write_bytes(store.artifacts_dir(), &id.to_string(), "png", b"pixels").expect("write");
        let a = Artifact {
            id,
            owner: "local".into(),
            job,
            stage: Some("card".into()),
            name: "card.png".into(),
            media_type: "image/png".into(),
            size: stored.size,
            sha256: stored.sha256,
            path: stored.rel_path,
            created_at: now_ms() - days_ago * DAY,
        };
        store.put_artifact(a).await.expect("put artifact")
    }

    fn file_exists(store: &Store, a: &Artifact) -> bool {
        store.artifacts_dir().join(&a.path).exists()
    }

    async fn profile_with(store: &Store, portrait: Ulid) {
        let p = Profile {
            id: store.new_id(),
            owner: "local".into(),
            name: "presenter".into(),
            portrait: Some(portrait),
            face_box: None,
            voice_sample: None,
            voice: Voice { model: "v".into(), speaker: None, length_scale: None, noise_scale: None, noise_w: None },
            style: Style::default(),
            created_at: now_ms(),
        };
        store.put_profile(p).await.expect("profile");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_finished_job_removes_its_records_events_and_files_but_keeps_what_is_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let done = finished(&store, 0);
        put_job(&store, &done).await;
        let plain = artifact(&store, Some(done.id), 0).await;
        let wanted_by_queue = artifact(&store, Some(done.id), 0).await;
        let portrait = artifact(&store, Some(done.id), 0).await;
        let queued = job(
            &store,
            JobState::Queued { enqueued_at: now_ms(), not_before: None },
            serde_json::json!({"input": wanted_by_queue.id.to_string()}),
        );
        store.submit(Job { idempotency_key: None, ..queued }, 100).await.expect("submit");
        profile_with(&store, portrait.id).await;

        let removal = store.delete_job(done.id).await.expect("delete");
        assert_eq!(
            removal,
            Removal { jobs: 1, events: 2, artifacts: 1, bytes: plain.size, kept_in_use: 2, ..Removal::default() }
        );
        assert!(store.job(done.id).expect("read").is_none());
        assert!(store.events_after(Some(done.id), 0, 100).expect("events").is_empty());
        assert!(store.artifact(plain.id).expect("read").is_none());
        assert!(!file_exists(&store, &plain), "the output's file is gone");
        for kept in [&wanted_by_queue, &portrait] {
            let now = store.artifact(kept.id).expect("read").expect("in use, so kept");
            assert_eq!(now.job, None, "kept without its deleted job");
            assert!(file_exists(&store, kept));
        }
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_job_cannot_be_deleted_and_an_unknown_one_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let queued = job(&store, JobState::Queued { enqueued_at: now_ms(), not_before: None }, serde_json::json!({}));
        let id = queued.id;
        store.submit(queued, 100).await.expect("submit");
        let err = store.delete_job(id).await.expect_err("queued");
        assert!(matches!(err, StoreError::NotFinished { state: "queued", .. }), "{err}");
        assert!(store.job(id).expect("read").is_some());
        let err = store.delete_job(Ulid::new()).await.expect_err("unknown");
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_removes_expired_jobs_unused_uploads_and_orphans_and_a_dry_run_only_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let old = finished(&store, 10);
        let recent = finished(&store, 1);
        put_job(&store, &old).await;
        put_job(&store, &recent).await;
        let old_output = artifact(&store, Some(old.id), 10).await;
        let recent_output = artifact(&store, Some(recent.id), 1).await;
        let unused = artifact(&store, None, 10).await;
        let young_upload = artifact(&store, None, 1).await;
        let for_queued = artifact(&store, None, 10).await;
        let for_profile = artifact(&store, None, 10).await;
        let queued = job(
            &store,
            JobState::Queued { enqueued_at: now_ms(), not_before: None },
            serde_json::json!({"presenter": {"portrait": for_queued.id.to_string()}}),
        );
        store.submit(Job { idempotency_key: None, ..queued }, 100).await.expect("submit");
        profile_with(&store, for_profile.id).await;
        let orphan = store.artifacts_dir().join("ZZ/01ORPHANED.png");
        std::fs::create_dir_all(orphan.parent().expect("shard")).expect("mkdir");
        std::fs::write(&orphan, b"lost").expect("orphan");
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&orphan).and_then(|f| f.set_modified(two_hours_ago)).expect("age");
        let young_orphan = store.artifacts_dir().join("ZZ/01JUSTWRITTEN.png");
        std::fs::write(&young_orphan, b"new").expect("young orphan");

        let now = now_ms();
        let policy = SweepPolicy {
            jobs_finished_before: Some(now - 7 * DAY),
            unused_before: Some(now - 7 * DAY),
            orphan_files: true,
        };
        let would = store.sweep(policy, true).await.expect("dry run");
        let expected = Removal {
            jobs: 1,
            events: 2,
            artifacts: 2,
            orphan_files: 1,
            bytes: old_output.size + unused.size + 4,
            kept_in_use: 0,
        };
        assert_eq!(would, expected);
        for a in [&old_output, &recent_output, &unused, &young_upload, &for_queued, &for_profile] {
            assert!(
                store.artifact(a.id).expect("read").is_some() && file_exists(&store, a),
                "dry run removed {}",
                a.id
            );
        }
        assert!(store.job(old.id).expect("read").is_some() && orphan.exists());

        assert_eq!(store.sweep(policy, false).await.expect("sweep"), expected);
        assert!(store.job(old.id).expect("read").is_none());
        assert!(store.job(recent.id).expect("read").is_some());
        for gone in [&old_output, &unused] {
            assert!(store.artifact(gone.id).expect("read").is_none() && !file_exists(&store, gone));
        }
        for kept in [&recent_output, &young_upload, &for_queued, &for_profile] {
            assert!(store.artifact(kept.id).expect("read").is_some() && file_exists(&store, kept), "{}", kept.id);
        }
        assert!(!orphan.exists() && young_orphan.exists());
        assert_eq!(store.sweep(policy, false).await.expect("again"), Removal::default(), "nothing left to remove");
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn event_ids_never_go_back_when_the_newest_events_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let done = finished(&store, 0);
        put_job(&store, &done).await;
        let seen = store.events_after(None, 0, 100).expect("events").last().map(|e| e.seq).expect("an event");
        store.delete_job(done.id).await.expect("delete");
        store.close();
        drop(store);
        let store = open(dir.path());
        let next = finished(&store, 0);
        put_job(&store, &next).await;
        let first = store.events_after(None, 0, 100).expect("events").first().map(|e| e.seq).expect("an event");
        assert!(first > seen, "new event {first} reuses an id up to {seen} a client saw");
        store.close();
    }
}
