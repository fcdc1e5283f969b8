//! A directory-backed `StageSink` so job kinds can be run directly in tests: artifacts
//! are files in a temp dir, logs and progress are recorded for assertions.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::kinds::{JobKind, OwnArtifacts, StageError, StageName, StageRun, StageSink, ValidateCtx};
use reelbox::store::records::Artifact;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

/// Stores artifacts as files under a directory.
pub struct DirSink {
    pub dir: PathBuf,
    pub artifacts: Mutex<Vec<Artifact>>,
    pub logs: Mutex<Vec<(String, String)>>,
    pub progress: Mutex<Vec<(u64, u64)>>,
    pub stage: Mutex<String>,
}

impl DirSink {
    /// A sink storing under `dir`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("scratch")).expect("scratch dir");
        Self {
            dir: dir.to_path_buf(),
            artifacts: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            progress: Mutex::new(Vec::new()),
            stage: Mutex::new(String::new()),
        }
    }

    /// Registers an input file (as an upload would) and returns its artifact id.
    pub fn upload(&self, name: &str, media_type: &str, bytes: &[u8]) -> Ulid {
        let id = Ulid::new();
        let path = format!("{id}");
        std::fs::write(self.dir.join(&path), bytes).expect("write upload");
        self.artifacts.lock().expect("lock").push(artifact(id, None, name, media_type, bytes.len() as u64, path));
        id
    }

    /// Artifacts produced by `stage`.
    pub fn produced(&self, stage: &str) -> Vec<Artifact> {
        self.stage_artifacts(stage.parse().expect("a stage name"))
    }
}

fn artifact(id: Ulid, stage: Option<String>, name: &str, media_type: &str, size: u64, path: String) -> Artifact {
    Artifact {
        id,
        owner: "local".into(),
        job: None,
        stage,
        name: name.into(),
        media_type: media_type.into(),
        size,
        sha256: String::new(),
        path,
        created_at: 0,
    }
}

impl StageSink for DirSink {
    fn progress(&self, step: u64, total: u64, _message: Option<&str>) {
        self.progress.lock().expect("lock").push((step, total));
    }
    fn log(&self, level: &str, message: &str) {
        self.logs.lock().expect("lock").push((level.into(), message.into()));
    }
    fn put_artifact(&self, name: &str, media_type: &str, bytes: &[u8]) -> Result<Artifact, StageError> {
        let id = Ulid::new();
        let path = format!("{id}-{name}");
        std::fs::write(self.dir.join(&path), bytes).map_err(|e| StageError::retriable(e.to_string()))?;
        let stage = Some(self.stage.lock().expect("lock").clone());
        let a = artifact(id, stage, name, media_type, bytes.len() as u64, path);
        self.artifacts.lock().expect("lock").push(a.clone());
        Ok(a)
    }
    fn put_artifact_file(&self, name: &str, media_type: &str, file: &Path) -> Result<Artifact, StageError> {
        let bytes = std::fs::read(file).map_err(|e| StageError::retriable(e.to_string()))?;
        self.put_artifact(name, media_type, &bytes)
    }
    fn stage_artifacts(&self, stage: StageName) -> Vec<Artifact> {
        let all = self.artifacts.lock().expect("lock");
        all.iter().filter(|a| a.stage.as_deref() == Some(stage.as_str())).cloned().collect()
    }

    fn scratch_dir(&self) -> PathBuf {
        self.dir.join("scratch")
    }
}

impl OwnArtifacts for DirSink {
    fn artifact(&self, id: Ulid) -> Result<Option<Artifact>, reelbox::store::StoreError> {
        Ok(self.artifacts.lock().expect("lock").iter().find(|a| a.id == id).cloned())
    }

    fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
        self.dir.join(&artifact.path)
    }
}

/// A submitter with no artifacts, for kinds validated without inputs.
pub struct NoArtifacts;

impl OwnArtifacts for NoArtifacts {
    fn artifact(&self, _id: Ulid) -> Result<Option<Artifact>, reelbox::store::StoreError> {
        Ok(None)
    }
    fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
        PathBuf::from(&artifact.path)
    }
}

/// A config whose models dir is the test fixtures' model folder.
pub fn fixture_config() -> Config {
    Config { models_dir: Some(super::fixture("models")), ..Config::default() }
}

/// Validates `params` and runs every stage of `kind` on the CPU.
pub fn run_kind(
    kind: &dyn JobKind,
    config: &Config,
    engine: &Engine,
    sink: &DirSink,
    params: serde_json::Value,
) -> Result<(), String> {
    let params =
        kind.validate(params, &ValidateCtx { config, artifacts: sink }).map_err(|e| format!("validate: {e}"))?;
    let cancel = CancellationToken::new();
    for stage in kind.stages(&params) {
        *sink.stage.lock().expect("lock") = stage.to_string();
        let run = StageRun {
            job_id: Ulid::new(),
            owner: "local",
            params: &params,
            device: DeviceId::Cpu,
            engine,
            config,
            cancel: &cancel,
            sink,
        };
        kind.run_stage(stage, &run).map_err(|e| format!("stage {stage}: {e}"))?;
    }
    Ok(())
}
