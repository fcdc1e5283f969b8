//! The `image` job kind end to end on the tiny SD fixtures with the real ONNX Runtime:
//! validation errors name their field, seeds make renders repeatable to the byte,
//! cancellation stops a render between steps, previews and img2img inputs flow through
//! the stage sink.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::fixture;
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::kinds::image::{Image, LocalImageArgs, render_local};
use reelbox::kinds::{JobKind, OwnArtifacts, StageError, StageName, StageRun, StageSink, ValidateCtx};
use reelbox::pipelines::diffusion::{GenerateRequest, Hooks, SchedulerChoice, SdModel, SeededNoise, generate};
use reelbox::pipelines::{Progress, diffusion::DiffusionError};
use reelbox::store::records::Artifact;
use serde_json::json;
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

fn config() -> Config {
    let mut c = Config {
        models_dir: Some(fixture("models")),
        // No presets.toml there: the compiled-in presets apply.
        data_dir: std::env::temp_dir().join("reelbox-image-kind-tests"),
        ..Config::default()
    };
    c.runtime.intra_threads = 1;
    c
}

/// One engine per test process: ONNX Runtime has a single global environment.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&config()))
}

fn kind() -> Image {
    Image
}

/// A stage sink keeping artifacts in memory (and on disk for `artifact_path`).
struct Sink {
    dir: tempfile::TempDir,
    artifacts: Mutex<Vec<(Artifact, Vec<u8>)>>,
    inputs: Mutex<Vec<Artifact>>,
    progress: Mutex<Vec<(u64, u64)>>,
    logs: Mutex<Vec<(String, String)>>,
    on_progress: Box<dyn Fn(u64) + Send + Sync>,
}

impl Sink {
    fn new() -> Self {
        Self::with_progress(|_| {})
    }

    fn with_progress(f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            artifacts: Mutex::default(),
            inputs: Mutex::default(),
            progress: Mutex::default(),
            logs: Mutex::default(),
            on_progress: Box::new(f),
        }
    }

    fn record(&self, name: &str, media_type: &str, bytes: &[u8]) -> Artifact {
        let id = Ulid::new();
        let rel = format!("{id}-{name}");
        std::fs::write(self.dir.path().join(&rel), bytes).expect("write artifact");
        Artifact {
            id,
            owner: "local".into(),
            job: None,
            stage: Some("generate".into()),
            name: name.into(),
            media_type: media_type.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            path: rel,
            created_at: 0,
        }
    }

    /// Stores an input the job may reference by id (an upload).
    fn upload(&self, name: &str, bytes: &[u8]) -> Ulid {
        let a = self.record(name, "image/png", bytes);
        let id = a.id;
        self.inputs.lock().expect("lock").push(a);
        id
    }

    fn outputs(&self) -> Vec<(String, Vec<u8>)> {
        self.artifacts.lock().expect("lock").iter().map(|(a, b)| (a.name.clone(), b.clone())).collect()
    }

    fn output(&self, name: &str) -> Vec<u8> {
        self.outputs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no artifact {name}"))
    }
}

impl StageSink for Sink {
    fn progress(&self, step: u64, total: u64, _message: Option<&str>) {
        self.progress.lock().expect("lock").push((step, total));
        (self.on_progress)(step);
    }
    fn log(&self, level: &str, message: &str) {
        self.logs.lock().expect("lock").push((level.into(), message.into()));
    }
    fn put_artifact(&self, name: &str, media_type: &str, bytes: &[u8]) -> Result<Artifact, StageError> {
        let a = self.record(name, media_type, bytes);
        self.artifacts.lock().expect("lock").push((a.clone(), bytes.to_vec()));
        Ok(a)
    }
    fn put_artifact_file(&self, name: &str, media_type: &str, file: &Path) -> Result<Artifact, StageError> {
        let bytes = std::fs::read(file).map_err(|e| StageError::fatal(e.to_string()))?;
        self.put_artifact(name, media_type, &bytes)
    }
    fn stage_artifacts(&self, _stage: StageName) -> Vec<Artifact> {
        self.artifacts.lock().expect("lock").iter().map(|(a, _)| a.clone()).collect()
    }

    fn scratch_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl OwnArtifacts for Sink {
    fn artifact(&self, id: Ulid) -> Result<Option<Artifact>, reelbox::store::StoreError> {
        Ok(self.inputs.lock().expect("lock").iter().find(|a| a.id == id).cloned())
    }

    fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
        self.dir.path().join(&artifact.path)
    }
}

fn validate(params: serde_json::Value) -> Result<serde_json::Value, reelbox::kinds::ParamError> {
    validate_for(params, &common::sink::NoArtifacts)
}

/// Validates as a submitter holding `artifacts`.
fn validate_for(
    params: serde_json::Value,
    artifacts: &dyn OwnArtifacts,
) -> Result<serde_json::Value, reelbox::kinds::ParamError> {
    let config = config();
    kind().validate(params, &ValidateCtx { config: &config, artifacts })
}

fn run(params: &serde_json::Value, sink: &Sink, cancel: &CancellationToken) -> Result<(), StageError> {
    let config = config();
    let run = StageRun {
        job_id: Ulid::new(),
        owner: "local",
        params,
        device: DeviceId::Cpu,
        engine: engine(),
        config: &config,
        cancel,
        sink,
    };
    kind().run_stage(StageName::Generate, &run)
}

fn render(params: serde_json::Value) -> Sink {
    let params = validate(params).expect("valid request");
    let sink = Sink::new();
    run(&params, &sink, &CancellationToken::new()).expect("render succeeds");
    sink
}

fn base() -> serde_json::Value {
    json!({"prompt": "a photo of an astronaut riding a horse on mars", "model": "tiny-sd", "steps": 4, "seed": 7})
}

fn with(mut v: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    v[key] = value;
    v
}

#[test]
fn same_seed_gives_same_png_bytes() {
    let a = render(base()).output("image.png");
    let b = render(base()).output("image.png");
    assert_eq!(a, b);
    let img = image::load_from_memory(&a).expect("png").to_rgb8();
    assert_eq!(img.dimensions(), (64, 64));
}

#[test]
fn different_seed_gives_different_image() {
    let a = render(base()).output("image.png");
    let b = render(with(base(), "seed", json!(8))).output("image.png");
    let (ia, ib) =
        (image::load_from_memory(&a).expect("png").to_rgb8(), image::load_from_memory(&b).expect("png").to_rgb8());
    let differing = ia.pixels().zip(ib.pixels()).filter(|(x, y)| x != y).count();
    assert!(differing > 64 * 64 / 2, "only {differing} pixels differ");
}

#[test]
fn png_carries_a1111_parameters() {
    let bytes = render(with(base(), "negative_prompt", json!("blurry"))).output("image.png");
    let reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().expect("png");
    let chunk = reader.info().uncompressed_latin1_text.iter().find(|c| c.keyword == "parameters").expect("parameters");
    assert!(
        chunk.text.starts_with("a photo of an astronaut riding a horse on mars\nNegative prompt: blurry\nSteps: 4, "),
        "{}",
        chunk.text
    );
    assert!(chunk.text.contains("Seed: 7, Size: 64x64, Model: tiny-sd"), "{}", chunk.text);
}

#[test]
fn bad_requests_name_the_field() {
    let cases = [
        (with(base(), "width", json!(511)), "width"),
        (with(base(), "height", json!(60)), "height"),
        (with(base(), "steps", json!(0)), "steps"),
        (with(base(), "scheduler", json!("heun")), "scheduler"),
        (with(base(), "model", json!("no-such-model")), "model"),
        (with(base(), "model", json!("../tiny-sd")), "model"),
        (with(base(), "prompt", json!("")), "prompt"),
        (with(base(), "preset", json!("ultra")), "preset"),
        (with(base(), "strength", json!(0.5)), "strength"),
        (with(base(), "init_image", json!("not-an-id")), "init_image"),
        (with(base(), "guidance", json!(-1)), "guidance"),
        (with(base(), "n", json!(100)), "n"),
        (with(base(), "sampler", json!("euler")), "sampler"),
        (with(with(base(), "scheduler", json!("lcm")), "steps", json!(80)), "steps"),
        (with(base(), "upscale_model", json!("no-such-upscaler")), "upscale_model"),
    ];
    for (params, field) in cases {
        let err = validate(params.clone()).expect_err(&format!("{params} must be rejected"));
        assert_eq!(err.field, field, "{params}: {err}");
    }
}

#[test]
fn validation_fills_defaults_from_preset_and_model() {
    let v = validate(json!({"prompt": "a cat", "model": "tiny-sd", "preset": "fast", "steps": 3})).expect("valid");
    assert_eq!(v["width"], 64, "512-px preset sizes scale to the 64-px test model");
    assert_eq!(v["steps"], 3, "request fields override the preset");
    assert_eq!(v["scheduler"], "dpmpp_2m_karras");
    assert!(v["seed"].is_u64(), "a seed is chosen at validation so retries repeat the image");
    let plain = validate(json!({"prompt": "a cat", "model": "tiny-sdxl"})).expect("valid");
    assert_eq!(plain["width"], 64);
    assert_eq!(plain["scheduler"], "euler", "the model's own scheduler class");
    // A ComfyUI schedule asked for takes the place of a default's Karras σs; one beside a
    // `_karras` name the request gave is refused, naming `schedule`.
    let fast = json!({"prompt": "a cat", "model": "tiny-sd", "preset": "fast", "schedule": "exponential"});
    let v = validate(fast.clone()).expect("valid");
    assert_eq!((&v["scheduler"], &v["schedule"]), (&json!("dpmpp_2m"), &json!("exponential")), "{v}");
    let err = validate(with(fast, "scheduler", json!("dpmpp_2m_karras"))).expect_err("two σ schedules");
    assert_eq!(err.field, "schedule", "{err:?}");
}

/// ComfyUI's ImageUpscaleWithModel after VAEDecode: the pictures upscaled in a second stage,
/// with the upscaler's memory reserved and placed like the diffusion model's.
#[test]
fn an_upscale_model_adds_the_upscale_stage() {
    let v = validate(with(base(), "upscale_model", json!("tiny-esrgan-x4"))).expect("valid");
    assert_eq!(v["upscale_model"], "tiny-esrgan-x4");
    assert_eq!(kind().stages(&v), [StageName::Generate, StageName::Upscale]);
    assert_eq!(kind().models(&v), ["tiny-sd", "tiny-esrgan-x4"]);
    let plain = validate(base()).expect("valid");
    assert_eq!(kind().stages(&plain), [StageName::Generate], "no upscale unless asked");
    assert!(plain.get("upscale_model").is_none(), "stored as jobs before it were: {plain}");
}

#[test]
fn cancel_during_step_3_of_20_stops_within_a_second_without_artifacts() {
    let params = validate(with(with(base(), "steps", json!(20)), "preview_every", json!(1))).expect("valid");
    let cancel = CancellationToken::new();
    let canceled_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (token, at) = (cancel.clone(), canceled_at.clone());
    let sink = Sink::with_progress(move |step| {
        if step == 3 {
            *at.lock().expect("lock") = Some(Instant::now());
            token.cancel();
        }
    });
    let result = run(&params, &sink, &cancel);
    let finished = Instant::now();
    assert!(matches!(result, Err(StageError::Canceled)), "{result:?}");
    let at = canceled_at.lock().expect("lock").expect("canceled at step 3");
    assert!(finished - at < Duration::from_secs(1));
    // tiny-sd ships SD 1.5's PNDM config: PLMS runs 20 steps as 21 UNet calls, as diffusers does.
    assert_eq!(sink.progress.lock().expect("lock").last(), Some(&(3, 21)));
    assert!(!sink.outputs().iter().any(|(n, _)| n.starts_with("image")), "no image artifact");
}

#[test]
fn pipeline_stops_between_steps_when_canceled() {
    let model = SdModel::load(&fixture("models/tiny-sd"), engine(), DeviceId::Cpu).expect("model");
    let req = GenerateRequest {
        prompt: "a cat".into(),
        negative_prompt: None,
        width: 64,
        height: 64,
        steps: 20,
        steps_mode: reelbox::pipelines::diffusion::StepsMode::Schedule,
        guidance: 7.5,
        scheduler: SchedulerChoice::parse("euler_a").expect("euler_a"),
        scheduler_config: None,
        count: 1,
        init: None,
        max_side: 2048,
        stop_at: None,
        clip_skip: None,
        first_pass_steps: None,
        embeddings: Vec::new(),
    };
    let cancel = CancellationToken::new();
    let steps = Mutex::new(Vec::new());
    let progress = |p: Progress| {
        steps.lock().expect("lock").push(p.step);
        if p.step == 3 {
            cancel.cancel();
        }
    };
    let hooks = Hooks { progress: Some(&progress), preview: None, preview_every: 0, cancel: Some(&cancel) };
    let result = generate(&model, &req, &mut SeededNoise::new(&[1]), None, &hooks);
    assert!(matches!(result, Err(DiffusionError::Canceled)), "{:?}", result.map(|g| g.timesteps));
    assert_eq!(*steps.lock().expect("lock"), vec![1, 2, 3]);
}

#[test]
fn previews_arrive_every_few_steps() {
    let sink = render(with(with(base(), "steps", json!(10)), "preview_every", json!(2)));
    let previews: Vec<_> = sink.outputs().into_iter().filter(|(n, _)| n.starts_with("preview")).collect();
    let names: Vec<&str> = previews.iter().map(|(n, _)| n.as_str()).collect();
    // 10 PLMS steps are 11 UNet calls; the last one is the image itself, not a preview.
    assert_eq!(
        names,
        ["preview-0002.png", "preview-0004.png", "preview-0006.png", "preview-0008.png", "preview-0010.png"]
    );
    let img = image::load_from_memory(&previews[0].1).expect("preview png").to_rgb8();
    assert_eq!(img.dimensions(), (8, 8), "previews are at latent resolution");
}

#[test]
fn img2img_reads_the_init_image_artifact() {
    let init = std::fs::read(fixture("reference/sd/init_64.png")).expect("init png");
    let sink = Sink::new();
    let id = sink.upload("init.png", &init);
    let params = validate_for(with(with(base(), "init_image", json!(id.to_string())), "strength", json!(0.5)), &sink)
        .expect("valid");
    run(&params, &sink, &CancellationToken::new()).expect("img2img renders");
    // diffusers' get_timesteps: strength 0.5 of 4 steps starts at index 2 of PLMS's 5 timesteps.
    assert_eq!(sink.progress.lock().expect("lock").last(), Some(&(3, 3)), "strength 0.5 of 4 PLMS steps runs 3");
    let out = image::load_from_memory(&sink.output("image.png")).expect("png").to_rgb8();
    let txt = image::load_from_memory(&render(base()).output("image.png")).expect("png").to_rgb8();
    assert_ne!(out, txt, "the init picture changes the result");
    // An id the submitter has no artifact of is refused at submission; one gone since, when run.
    let err = validate(with(base(), "init_image", json!(Ulid::new().to_string()))).expect_err("no such artifact");
    assert_eq!(err.field, "init_image");
    assert!(
        matches!(run(&params, &Sink::new(), &CancellationToken::new()), Err(e) if !e.is_retriable() && e.to_string().contains("init_image"))
    );
}

#[test]
fn each_image_of_a_batch_follows_its_own_seed() {
    let batch = render(with(base(), "n", json!(2)));
    let second = render(with(base(), "seed", json!(8))).output("image.png");
    let a = image::load_from_memory(&batch.output("image-2.png")).expect("png").to_rgb8();
    let b = image::load_from_memory(&second).expect("png").to_rgb8();
    assert_eq!(a, b);
}

#[test]
fn sdxl_models_render_through_the_job_kind() {
    let sink = render(json!({"prompt": "a cat", "model": "tiny-sdxl", "steps": 2, "seed": 1, "width": 80}));
    let img = image::load_from_memory(&sink.output("image.png")).expect("png").to_rgb8();
    assert_eq!(img.dimensions(), (80, 64));
}

#[test]
fn local_render_writes_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cat.png");
    let args = LocalImageArgs {
        prompt: "a cat".into(),
        output: out.clone(),
        // This export carries no unet/config.json, so its native size reads as SD's 512.
        model: Some("tiny-sd-diffusers".into()),
        width: Some(64),
        height: Some(64),
        steps: Some(3),
        seed: Some(5),
        init: Some(fixture("reference/sd/init_64.png")),
        strength: Some(0.7),
        ..Default::default()
    };
    let report = render_local(&config(), engine(), DeviceId::Cpu, &args, None).expect("renders");
    assert_eq!(report.files, vec![out.clone()]);
    assert_eq!(image::open(&out).expect("png").to_rgb8().dimensions(), (64, 64));
    assert!(report.timings.onnx <= report.timings.total);
}
