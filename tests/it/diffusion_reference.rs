//! The diffusion pipeline against diffusers on the tiny SD fixtures: the same initial
//! latents and replayed noise draws must give the reference images (max abs diff ≤ 1e-3)
//! for every scheduler and every export flavour (optimum, diffusers script, SDXL).
//! Fixtures: tests/fixtures/models/tiny-sd*, tests/fixtures/reference/sd/cases.json.

use crate::common;

use common::{copy_dir, fixture, source_tree};
use ndarray::ArrayD;
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::pipelines::diffusion::{
    GenerateRequest, Hooks, Init, InitImage, ReplayNoise, SchedulerChoice, SchedulerConfigFile, SdModel, generate,
    prompt_embeddings,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    flavour: String,
    prompt: String,
    negative_prompt: Option<String>,
    steps: u32,
    guidance: f32,
    scheduler: String,
    scheduler_config: serde_json::Value,
    width: u32,
    height: u32,
    latents: Option<String>,
    noise: Vec<String>,
    init_image: Option<String>,
    strength: Option<f64>,
    expected: String,
    final_latents: String,
    timesteps: Vec<f64>,
    text_embeddings: Option<serde_json::Value>,
}

fn npy(rel: &str) -> Vec<f32> {
    let a: ArrayD<f32> = ndarray_npy::read_npy(source_tree().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    a.iter().copied().collect()
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture("reference/sd/cases.json")).expect("cases.json");
    let value = reelbox::pipelines::diffusion::model::parse_json_lenient(&text).expect("cases parse");
    serde_json::from_value(value).expect("cases have the expected fields")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// One engine per test process: ONNX Runtime has a single global environment.
fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::default();
        config.runtime.intra_threads = 1;
        Engine::new(&config)
    })
}

fn run_case(engine: &Engine, case: &Case) -> Result<(f32, f32), String> {
    let model = SdModel::load(&source_tree().join(&case.model), engine, DeviceId::Cpu).map_err(|e| e.to_string())?;
    let file: SchedulerConfigFile = serde_json::from_value(case.scheduler_config.clone()).map_err(|e| e.to_string())?;
    let init = match &case.init_image {
        Some(p) => {
            let img = image::open(source_tree().join(p)).map_err(|e| e.to_string())?.to_rgb8();
            Some(Init::Picture(InitImage::from_rgb(&img, case.width, case.height, case.strength.unwrap_or(1.0))))
        }
        None => None,
    };
    let req = GenerateRequest {
        prompt: case.prompt.clone(),
        negative_prompt: case.negative_prompt.clone(),
        width: case.width,
        height: case.height,
        steps: case.steps,
        steps_mode: reelbox::pipelines::diffusion::StepsMode::Schedule,
        guidance: case.guidance,
        scheduler: SchedulerChoice::parse(&case.scheduler).map_err(|e| e.to_string())?,
        scheduler_config: Some(file),
        count: 1,
        init,
        max_side: 2048,
        stop_at: None,
        clip_skip: None,
        first_pass_steps: None,
        embeddings: Vec::new(),
    };
    let mut noise = ReplayNoise::new(case.noise.iter().map(|p| npy(p)).collect());
    let latents = case.latents.as_deref().map(npy);
    let out = generate(&model, &req, &mut noise, latents.as_deref(), &Hooks::default()).map_err(|e| e.to_string())?;
    if noise.remaining() != 0 {
        return Err(format!("{} recorded draws left unused", noise.remaining()));
    }
    if out.timesteps.len() != case.timesteps.len()
        || out.timesteps.iter().zip(&case.timesteps).any(|(a, b)| (a - b).abs() > 1e-3)
    {
        return Err(format!("timesteps {:?} != {:?}", out.timesteps, case.timesteps));
    }
    let image = max_diff(&out.images[0].data, &npy(&case.expected));
    let lat = max_diff(&out.final_latents, &npy(&case.final_latents));
    Ok((image, lat))
}

#[test]
fn every_scheduler_and_export_flavour_matches_diffusers() {
    let engine = engine();
    let cases = cases();
    assert!(cases.len() >= 20, "expected the full reference set, found {}", cases.len());
    let mut report = Vec::new();
    let mut failed = false;
    for case in &cases {
        match run_case(engine, case) {
            Ok((img, lat)) => {
                failed |= img > 1e-3;
                report.push(format!("{:32} {:16} image {img:.2e}  latents {lat:.2e}", case.name, case.flavour));
            }
            Err(e) => {
                failed = true;
                report.push(format!("{:32} {:16} ERROR {e}", case.name, case.flavour));
            }
        }
    }
    let flavours: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.flavour.as_str()).collect();
    assert_eq!(flavours.len(), 3, "{flavours:?}");
    println!("{}", report.join("\n"));
    assert!(!failed, "cases differ from diffusers:\n{}", report.join("\n"));
}

#[test]
fn text_encoder_outputs_match_diffusers() {
    let engine = engine();
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.text_embeddings.is_some()) {
        let model = SdModel::load(&source_tree().join(&case.model), engine, DeviceId::Cpu).expect("model loads");
        let emb = case.text_embeddings.as_ref().expect("filtered");
        let cond = emb.get("cond").and_then(|v| v.as_str()).expect("cond path");
        let got = prompt_embeddings(&model, &case.prompt, None).expect("encode");
        let d = max_diff(&got, &npy(cond));
        assert!(d < 1e-4, "{}: prompt embeddings differ by {d}", case.name);
        checked += 1;
    }
    assert!(checked >= 2, "no text embedding references found");
}

#[test]
fn a_model_dir_missing_a_part_names_the_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = fixture("models/tiny-sd");
    copy_dir(&src, dir.path());
    std::fs::remove_file(dir.path().join("vae_decoder/model.onnx")).expect("remove");
    let err = match SdModel::load(dir.path(), engine(), DeviceId::Cpu) {
        Ok(_) => panic!("a model without a VAE decoder must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("vae_decoder"), "{err}");
}

#[test]
fn fp16_interface_exports_run_and_stay_close_to_f32() {
    // The f16-interface UNet differs from the f32 one only by rounding at its inputs and
    // outputs, so the image must stay close to diffusers' f32 reference.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture("models/tiny-sd"), dir.path());
    std::fs::copy(fixture("models/tiny-sd-unet-f16io.onnx"), dir.path().join("unet/model.onnx"))
        .expect("copy f16 unet");
    let all = cases();
    let case = all.iter().find(|c| c.name == "sd_dpmpp_2m").expect("sd_dpmpp_2m case");
    let model = SdModel::load(dir.path(), engine(), DeviceId::Cpu).expect("f16 model loads");
    assert_eq!(model.unet.sample.ty, ort::value::TensorElementType::Float16);
    let file: SchedulerConfigFile = serde_json::from_value(case.scheduler_config.clone()).expect("config");
    let req = GenerateRequest {
        prompt: case.prompt.clone(),
        negative_prompt: case.negative_prompt.clone(),
        width: case.width,
        height: case.height,
        steps: case.steps,
        steps_mode: reelbox::pipelines::diffusion::StepsMode::Schedule,
        guidance: case.guidance,
        scheduler: SchedulerChoice::parse(&case.scheduler).expect("scheduler"),
        scheduler_config: Some(file),
        count: 1,
        init: None,
        max_side: 2048,
        stop_at: None,
        clip_skip: None,
        first_pass_steps: None,
        embeddings: Vec::new(),
    };
    let latents = npy(case.latents.as_deref().expect("latents"));
    let out =
        generate(&model, &req, &mut ReplayNoise::new(Vec::new()), Some(&latents), &Hooks::default()).expect("runs");
    let d = max_diff(&out.images[0].data, &npy(&case.expected));
    println!("f16-interface UNet vs f32 reference: max abs diff {d:.2e}");
    assert!(d < 1e-2, "f16 interface drifted by {d}");
}
