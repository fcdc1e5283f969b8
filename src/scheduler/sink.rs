//! The `StageSink` a running stage writes through: progress, logs and artifacts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ulid::Ulid;

use super::LiveProgress;
use crate::kinds::{OwnArtifacts, StageError, StageSink};
use crate::store::Store;
use crate::store::artifacts::{self, StoredFile};
use crate::store::records::{Artifact, EventBody, Job, StageName, now_ms};

/// Progress events are throttled to this rate; the live value is always current.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

pub(super) struct JobSink {
    store: Store,
    job: Job,
    stage: StageName,
    scratch: PathBuf,
    progress: Arc<Mutex<LiveProgress>>,
    last_event: Mutex<Option<Instant>>,
    made: Mutex<Vec<Ulid>>,
}

impl JobSink {
    pub(super) fn new(
        store: Store,
        job: Job,
        stage: StageName,
        scratch: PathBuf,
        progress: Arc<Mutex<LiveProgress>>,
    ) -> Self {
        Self { store, job, stage, scratch, progress, last_event: Mutex::new(None), made: Mutex::new(Vec::new()) }
    }

    /// Artifacts made by this stage; removes the scratch dir.
    pub(super) fn finish(self) -> Vec<Ulid> {
        let _ = std::fs::remove_dir_all(&self.scratch);
        self.made.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, name: &str, media_type: &str, id: Ulid, stored: StoredFile) -> Result<Artifact, StageError> {
        let artifact = Artifact {
            id,
            owner: self.job.owner.clone(),
            job: Some(self.job.id),
            stage: Some(self.stage.to_string()),
            name: name.to_string(),
            media_type: media_type.to_string(),
            size: stored.size,
            sha256: stored.sha256,
            path: stored.rel_path,
            created_at: now_ms(),
        };
        let artifact = self.store.put_artifact_blocking(artifact)?;
        self.made.lock().unwrap_or_else(|p| p.into_inner()).push(artifact.id);
        let body =
            EventBody::Artifact { stage: self.stage, artifact: artifact.id, media_type: artifact.media_type.clone() };
        let _ = self.store.append_events_blocking(&self.job, vec![body]);
        Ok(artifact)
    }
}

impl StageSink for JobSink {
    fn progress(&self, step: u64, total: u64, message: Option<&str>) {
        {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            *p = LiveProgress { stage: self.stage.to_string(), step, total, message: message.map(str::to_owned) };
        }
        let mut last = self.last_event.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || step >= total;
        if due {
            *last = Some(Instant::now());
            let body = EventBody::Progress { stage: self.stage, step, total, message: message.map(str::to_owned) };
            if let Err(e) = self.store.append_events_blocking(&self.job, vec![body]) {
                tracing::warn!(job = %self.job.id, "cannot record progress: {e}");
            }
        }
    }

    fn log(&self, level: &str, message: &str) {
        let body = EventBody::Log { level: level.to_string(), message: message.to_string() };
        if let Err(e) = self.store.append_events_blocking(&self.job, vec![body]) {
            tracing::warn!(job = %self.job.id, "cannot record log event: {e}");
        }
    }

    fn put_artifact(&self, name: &str, media_type: &str, bytes: &[u8]) -> Result<Artifact, StageError> {
        let id = self.store.new_id();
        let stored = artifacts::write_bytes(
            self.store.artifacts_dir(),
            &id.to_string(),
            artifacts::extension_for(media_type),
            bytes,
        )?;
        self.record(name, media_type, id, stored)
    }

    fn put_artifact_file(&self, name: &str, media_type: &str, file: &Path) -> Result<Artifact, StageError> {
        let id = self.store.new_id();
        let stored = artifacts::adopt_file(
            self.store.artifacts_dir(),
            &id.to_string(),
            artifacts::extension_for(media_type),
            file,
        )?;
        self.record(name, media_type, id, stored)
    }

    fn stage_artifacts(&self, stage: StageName) -> Vec<Artifact> {
        let Ok(Some(job)) = self.store.job(self.job.id) else { return Vec::new() };
        job.stages
            .iter()
            .filter(|s| s.name == stage)
            .flat_map(|s| s.artifacts.iter())
            .filter_map(|id| self.store.artifact(*id).ok().flatten())
            .collect()
    }

    fn scratch_dir(&self) -> PathBuf {
        if let Err(e) = std::fs::create_dir_all(&self.scratch) {
            tracing::warn!("cannot create scratch dir {}: {e}", self.scratch.display());
        }
        self.scratch.clone()
    }
}

impl OwnArtifacts for JobSink {
    fn artifact(&self, id: Ulid) -> Result<Option<Artifact>, crate::store::StoreError> {
        self.store.owned_artifact(id, &self.job.owner)
    }

    fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
        self.store.artifacts_dir().join(&artifact.path)
    }
}
