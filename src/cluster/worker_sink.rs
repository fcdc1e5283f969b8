//! The [`StageSink`] a stage writes through on a worker box: progress and logs go to the
//! head live over NATS; artifacts go inside the result when small, else to this box's object bucket (the head
//! makes them durable);
//! earlier stages' artifacts and inputs the parameters name come from the downloaded
//! inputs. A stage cannot tell it is not on the head.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use ulid::Ulid;

use super::objects;
use super::protocol::{Live, ObjectRef, RunKey, progress_subject};
use super::{Bus, ClusterError};
use crate::kinds::{OwnArtifacts, StageError, StageSink};
use crate::store::records::{Artifact, StageName, now_ms};

/// Progress lines are throttled to this rate, as on the head.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A worker stage's sink; see the module docs.
pub struct WorkerSink {
    bus: Bus,
    rt: Handle,
    key: RunKey,
    owner: String,
    stage: StageName,
    /// Downloaded inputs: their refs and local files.
    inputs: Vec<(ObjectRef, PathBuf)>,
    scratch: PathBuf,
    last_progress: Mutex<Option<Instant>>,
    outputs: Mutex<Vec<ObjectRef>>,
    /// Bytes the result message may still carry inline.
    inline_left: Mutex<u64>,
}

impl WorkerSink {
    /// A sink for one run; `inputs` are already downloaded.
    pub fn new(
        bus: Bus,
        rt: Handle,
        key: RunKey,
        owner: String,
        stage: StageName,
        inputs: Vec<(ObjectRef, PathBuf)>,
        scratch: PathBuf,
    ) -> Self {
        let inline = bus.inline_bytes;
        Self {
            bus,
            rt,
            key,
            owner,
            stage,
            inputs,
            scratch,
            last_progress: Mutex::new(None),
            outputs: Mutex::new(Vec::new()),
            inline_left: Mutex::new(inline),
        }
    }

    /// The outputs uploaded so far.
    pub fn finish(self) -> Vec<ObjectRef> {
        self.outputs.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, live: &Live) {
        let Ok(body) = serde_json::to_vec(live) else { return };
        let client = self.bus.client.clone();
        let subject = progress_subject(&self.bus.host, self.key.job);
        // Core NATS: progress is live state, a lost line is replaced by the next.
        self.rt.spawn(async move {
            let _ = client.publish(subject, body.into()).await;
        });
    }

    fn upload(&self, name: &str, media_type: &str, file: &Path) -> Result<Artifact, ClusterError> {
        let n = self.outputs.lock().unwrap_or_else(|p| p.into_inner()).len();
        let object = format!("out-{}-{n}", self.key.tag());
        let packed = {
            let mut budget = self.inline_left.lock().unwrap_or_else(|p| p.into_inner());
            self.rt.block_on(objects::pack(&self.bus, &self.bus.host, &object, file, &mut budget))?
        };
        let (size, sha256) = (packed.size, packed.sha256);
        let id = Ulid::new();
        let r = ObjectRef {
            object,
            id,
            name: name.to_string(),
            media_type: media_type.to_string(),
            stage: Some(self.stage.to_string()),
            size,
            sha256: sha256.clone(),
            inline: packed.inline,
        };
        self.outputs.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(Artifact {
            id,
            owner: self.owner.clone(),
            job: Some(self.key.job),
            stage: Some(self.stage.to_string()),
            name: name.to_string(),
            media_type: media_type.to_string(),
            size,
            sha256,
            path: file.to_string_lossy().into_owned(),
            created_at: now_ms(),
        })
    }

    fn as_artifact(&self, r: &ObjectRef, file: &Path) -> Artifact {
        Artifact {
            id: r.id,
            owner: self.owner.clone(),
            job: Some(self.key.job),
            stage: r.stage.clone(),
            name: r.name.clone(),
            media_type: r.media_type.clone(),
            size: r.size,
            sha256: r.sha256.clone(),
            path: file.to_string_lossy().into_owned(),
            created_at: now_ms(),
        }
    }
}

impl StageSink for WorkerSink {
    fn progress(&self, step: u64, total: u64, message: Option<&str>) {
        let mut last = self.last_progress.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || step >= total {
            *last = Some(Instant::now());
            self.send(&Live::Progress { step, total, message: message.map(str::to_owned) });
        }
    }

    fn log(&self, level: &str, message: &str) {
        self.send(&Live::Log { level: level.to_string(), message: message.to_string() });
    }

    fn put_artifact(&self, name: &str, media_type: &str, bytes: &[u8]) -> Result<Artifact, StageError> {
        let dir = self.scratch_dir().join("out");
        let n = self.outputs.lock().unwrap_or_else(|p| p.into_inner()).len();
        let file = dir.join(format!("{n}.{}", crate::store::artifacts::extension_for(media_type)));
        let write = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, bytes));
        write.map_err(|source| ClusterError::Io { path: file.clone(), source })?;
        Ok(self.upload(name, media_type, &file)?)
    }

    fn put_artifact_file(&self, name: &str, media_type: &str, file: &Path) -> Result<Artifact, StageError> {
        Ok(self.upload(name, media_type, file)?)
    }

    fn stage_artifacts(&self, stage: StageName) -> Vec<Artifact> {
        self.inputs
            .iter()
            .filter(|(r, _)| r.stage.as_deref() == Some(stage.as_str()))
            .map(|(r, f)| self.as_artifact(r, f))
            .collect()
    }

    fn scratch_dir(&self) -> PathBuf {
        if let Err(e) = std::fs::create_dir_all(&self.scratch) {
            tracing::warn!("cannot create scratch dir {}: {e}", self.scratch.display());
        }
        self.scratch.clone()
    }
}

impl OwnArtifacts for WorkerSink {
    fn artifact(&self, id: Ulid) -> Result<Option<Artifact>, crate::store::StoreError> {
        Ok(self.inputs.iter().find(|(r, _)| r.id == id).map(|(r, f)| self.as_artifact(r, f)))
    }

    fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
        // Artifacts here carry their local file as `path` (inputs and outputs alike).
        PathBuf::from(&artifact.path)
    }
}
