//! A seed from A1111 gives A1111's picture: txt2img through `/sdapi/v1` on the real daemon with
//! the tiny SD model (Euler and Euler a on their Automatic schedule, A1111's Uniform; DPM++ 2M
//! Karras), against the pictures A1111's own sampling path makes with the same parts
//! (tests/fixtures/make_a1111_reference.py: its CPU generator per picture, k-diffusion's
//! `CompVisDenoiser` unquantized and its samplers). Before, the A1111 routes sampled by
//! ComfyUI's arithmetic (√(1 + σ₀²)·noise to start, the nearest whole timestep for each σ):
//! the same request and seed gave a picture several 8-bit steps away. The native API asks for
//! the same with `noise: "torch_cpu"` and `sample_as: "a1111"`.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::compat::{TINY_SD, models_dir, start_daemon};
use common::source_tree;
use ndarray::ArrayD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::comfy_seed::max_diff;

#[derive(Deserialize)]
struct Case {
    name: String,
    sampler_name: String,
    scheduler: String,
    seed: u64,
    steps: u32,
    cfg_scale: f64,
    prompt: String,
    negative_prompt: String,
    expected: String,
}

impl Case {
    /// The native `scheduler` and `schedule` A1111's sampler and schedule run as.
    fn native(&self) -> (&'static str, &'static str) {
        match (self.sampler_name.as_str(), self.scheduler.as_str()) {
            ("Euler", "Automatic") => ("euler", "normal"),
            ("Euler a", "Automatic") => ("euler_a", "normal"),
            ("DPM++ 2M", "Karras") => ("dpmpp_2m", "karras"),
            other => panic!("no native name for {other:?}"),
        }
    }
}

/// How far a picture may be from A1111's: half an 8-bit step, the PNG's rounding (measured:
/// 0.500 of 1/255 in each case), and a little for f32 arithmetic in another order tipping a
/// rounding. ComfyUI's arithmetic on these cases is 3.4 to 12.4 steps of 1/255 away.
const TOLERANCE: f32 = 0.6 / 255.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a1111_seed_gives_a1111s_picture() {
    let text = std::fs::read_to_string(source_tree().join("tests/fixtures/reference/a1111/cases.json")).expect("cases");
    let cases: Vec<Case> = serde_json::from_str(&text).expect("cases.json");
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    for case in &cases {
        let expected: ArrayD<f32> = ndarray_npy::read_npy(source_tree().join(&case.expected)).expect("reference");
        let body = json!({"prompt": case.prompt, "negative_prompt": case.negative_prompt, "seed": case.seed,
            "steps": case.steps, "cfg_scale": case.cfg_scale, "width": 64, "height": 64,
            "sampler_name": case.sampler_name, "scheduler": case.scheduler,
            "override_settings": {"sd_model_checkpoint": TINY_SD}});
        let resp = c.post(d.at("/sdapi/v1/txt2img")).json(&body).send().await.expect("txt2img");
        assert!(resp.status().is_success(), "{}: {}", case.name, resp.status());
        let answer: Value = resp.json().await.expect("json");
        let b64 = answer["images"][0].as_str().unwrap_or_else(|| panic!("{}: {answer}", case.name));
        let png = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        let picture = image::load_from_memory(&png).expect("png").to_rgb8();
        let diff = max_diff(&picture, &expected);
        eprintln!("{}: {:.3} of 1/255 from A1111's", case.name, diff * 255.0);
        assert!(diff <= TOLERANCE, "{}: A1111's picture differs by {} of 1/255", case.name, diff * 255.0);

        // The native API, asked to sample as A1111 does, makes the same picture.
        let (scheduler, schedule) = case.native();
        let body = json!({"prompt": case.prompt, "negative_prompt": case.negative_prompt, "model": TINY_SD,
            "width": 64, "height": 64, "steps": case.steps, "guidance": case.cfg_scale, "seed": case.seed,
            "scheduler": scheduler, "schedule": schedule, "noise": "torch_cpu", "sample_as": "a1111",
            "preview_every": 0});
        let job: Value =
            c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post").json().await.expect("json");
        let id = job["id"].as_str().unwrap_or_else(|| panic!("{}: {job}", case.name)).to_string();
        let done = common::daemon::wait_job(&c, &d, &id, Duration::from_secs(120), common::daemon::is_final).await;
        assert_eq!((&done["state"], &done["params"]["sample_as"]), (&json!("succeeded"), &json!("a1111")), "{done}");
        let native = common::render::artifact(&c, &d, &id, "image.png").await;
        let native = image::load_from_memory(&native).expect("png").to_rgb8();
        assert!(native == picture, "{}: the native job's picture is not the A1111 route's", case.name);
    }
    // The A1111 route's jobs say whose arithmetic they followed.
    let jobs: Value = c.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
    let jobs = jobs["jobs"].as_array().expect("jobs");
    assert!(jobs.iter().all(|j| j["params"]["sample_as"] == "a1111"), "{jobs:?}");

    // A rule reelbox does not have is a 400 naming the field.
    let bad = json!({"prompt": "a door", "model": TINY_SD, "scheduler": "euler", "schedule": "normal",
        "sample_as": "forge"});
    let resp = c.post(d.at("/api/v1/images")).json(&bad).send().await.expect("post");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
    let refusal: Value = resp.json().await.expect("json");
    assert!(refusal.to_string().contains("sample_as"), "{refusal}");
}
