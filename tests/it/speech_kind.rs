//! The `speech` job kind end to end on a worker-like call, with a recording sink.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::provision;
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::kinds::speech::{SayRequest, say_local};
use reelbox::kinds::{JobKind, OwnArtifacts, StageError, StageName, StageRun, StageSink, ValidateCtx, registry};
use reelbox::store::records::{Artifact, now_ms};
use serde_json::json;
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

/// Keeps artifacts in a temp dir and records progress, like the scheduler's sink.
struct RecordingSink {
    dir: PathBuf,
    progress: Mutex<Vec<(u64, u64)>>,
    artifacts: Mutex<Vec<Artifact>>,
}

impl StageSink for RecordingSink {
    fn progress(&self, step: u64, total: u64, _message: Option<&str>) {
        self.progress.lock().expect("lock").push((step, total));
    }
    fn log(&self, _level: &str, _message: &str) {}
    fn put_artifact(&self, name: &str, media_type: &str, bytes: &[u8]) -> Result<Artifact, StageError> {
        std::fs::write(self.dir.join(name), bytes).map_err(|e| StageError::fatal(e.to_string()))?;
        let a = Artifact {
            id: Ulid::new(),
            owner: "local".into(),
            job: None,
            stage: Some("speech".into()),
            name: name.into(),
            media_type: media_type.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            path: name.into(),
            created_at: now_ms(),
        };
        self.artifacts.lock().expect("lock").push(a.clone());
        Ok(a)
    }
    fn put_artifact_file(&self, name: &str, media_type: &str, file: &Path) -> Result<Artifact, StageError> {
        let bytes = std::fs::read(file).map_err(|e| StageError::fatal(e.to_string()))?;
        self.put_artifact(name, media_type, &bytes)
    }
    fn stage_artifacts(&self, _stage: StageName) -> Vec<Artifact> {
        self.artifacts.lock().expect("lock").clone()
    }

    fn scratch_dir(&self) -> PathBuf {
        self.dir.clone()
    }
}

impl OwnArtifacts for RecordingSink {
    fn artifact(&self, _id: Ulid) -> Result<Option<Artifact>, reelbox::store::StoreError> {
        Ok(None)
    }

    fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
        self.dir.join(&artifact.path)
    }
}

fn speech_kind() -> std::sync::Arc<dyn JobKind> {
    registry().into_iter().find(|k| k.name() == "speech").expect("speech is registered")
}

fn config(dir: &Path) -> Config {
    provision::joe_voice();
    provision::test_config(dir)
}

#[test]
fn speech_job_writes_a_wav_and_sentence_timings_with_progress_per_sentence() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let kind = speech_kind();
    let params = kind
        .validate(
            json!({"text": "First sentence here. And a second one!", "noise_scale": 0, "noise_w": 0, "sentence_silence": 0.1}),
            &ValidateCtx { config: &config, artifacts: &common::sink::NoArtifacts },
        )
        .expect("valid");
    assert_eq!(params["voice"], "en_US-joe-medium");
    let engine = Engine::new(&config);
    let sink = RecordingSink {
        dir: tmp.path().to_path_buf(),
        progress: Mutex::new(Vec::new()),
        artifacts: Mutex::new(Vec::new()),
    };
    let cancel = CancellationToken::new();
    for stage in kind.stages(&params) {
        kind.run_stage(
            stage,
            &StageRun {
                job_id: Ulid::new(),
                owner: "local",
                params: &params,
                device: DeviceId::Cpu,
                engine: &engine,
                config: &config,
                cancel: &cancel,
                sink: &sink,
            },
        )
        .expect("stage runs");
    }
    assert_eq!(*sink.progress.lock().expect("lock"), vec![(1, 2), (2, 2)]);
    let artifacts = sink.artifacts.lock().expect("lock").clone();
    let names: Vec<_> = artifacts.iter().map(|a| (a.name.as_str(), a.media_type.as_str())).collect();
    assert_eq!(names, [("speech.wav", "audio/wav"), ("speech.json", "application/json")]);
    let wav = hound::WavReader::open(tmp.path().join("speech.wav")).expect("valid WAV");
    assert_eq!(wav.spec().sample_rate, 22050);
    assert_eq!(wav.spec().bits_per_sample, 16);
    let samples = wav.len() as f64;
    let timing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("speech.json")).expect("json")).expect("parses");
    assert!((timing["duration"].as_f64().expect("duration") - samples / 22050.0).abs() < 1e-9);
    let sentences = timing["sentences"].as_array().expect("sentences");
    assert_eq!(sentences.len(), 2);
    assert_eq!(sentences[1]["text"], "And a second one!");
    let gap = sentences[1]["start"].as_f64().expect("start") - sentences[0]["end"].as_f64().expect("end");
    assert!((gap - 0.1).abs() < 1e-3, "gap {gap}");
}

#[test]
fn unknown_voice_is_refused_at_validation_naming_what_is_installed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let err = speech_kind()
        .validate(
            json!({"text": "Hi", "voice": "en_GB-nobody-low"}),
            &ValidateCtx { config: &config, artifacts: &common::sink::NoArtifacts },
        )
        .expect_err("not installed");
    assert_eq!(err.field, "voice");
    // No catalog knows it, so no pull is offered (it would fail); what is installed is.
    assert!(
        err.message.contains("no tts model \"en_GB-nobody-low\" is installed or in the catalog"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("installed: en_US-joe-medium") && !err.message.contains("reelbox pull"),
        "{}",
        err.message
    );
    // This box never fetched the Piper voice list, so a real voice would read the same: say
    // how to get the list (a profile naming `en_US-lessac-medium` was refused with no way on).
    assert!(err.message.contains("`reelbox voices list --refresh` fetches the list"), "{}", err.message);
    assert_eq!(err.model.as_ref().map(|m| m.state.as_str()), Some("unknown"));
}

/// Every route's speech request goes through this validation: a speaker the voice does
/// not have was accepted (202) and the job failed later at synthesis.
#[test]
fn a_speaker_the_voice_lacks_is_refused_at_validation_naming_speaker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let err = speech_kind()
        .validate(
            json!({"text": "Hi.", "speaker": "3"}),
            &ValidateCtx { config: &config, artifacts: &common::sink::NoArtifacts },
        )
        .expect_err("joe has one speaker");
    assert_eq!(err.field, "speaker", "{err}");
    assert!(err.message.contains("one speaker"), "{err}");
}

#[test]
fn canceled_job_stops_before_writing_artifacts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let kind = speech_kind();
    let params = kind
        .validate(
            json!({"text": "One. Two. Three."}),
            &ValidateCtx { config: &config, artifacts: &common::sink::NoArtifacts },
        )
        .expect("valid");
    let engine = Engine::new(&config);
    let sink = RecordingSink {
        dir: tmp.path().to_path_buf(),
        progress: Mutex::new(Vec::new()),
        artifacts: Mutex::new(Vec::new()),
    };
    let cancel = CancellationToken::new();
    cancel.cancel();
    let run = StageRun {
        job_id: Ulid::new(),
        owner: "local",
        params: &params,
        device: DeviceId::Cpu,
        engine: &engine,
        config: &config,
        cancel: &cancel,
        sink: &sink,
    };
    assert!(matches!(kind.run_stage(StageName::Speech, &run), Err(StageError::Canceled)));
    assert!(sink.artifacts.lock().expect("lock").is_empty());
}

#[test]
fn say_local_writes_the_file_and_reports_timings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let out = tmp.path().join("hello.wav");
    let req = SayRequest {
        text: "This is a test.".into(),
        noise_scale: Some(0.0),
        noise_w: Some(0.0),
        ..SayRequest::default()
    };
    let report = say_local(&config, &req, &out).expect("says");
    assert_eq!(report.speech.samples.len(), 25344);
    assert!(report.first_sentence <= report.elapsed);
    assert_eq!(hound::WavReader::open(&out).expect("wav").len(), 25344);
}
