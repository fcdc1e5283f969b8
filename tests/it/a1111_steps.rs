//! How many steps A1111's image to image and hires fix run, on the real daemon with the tiny SD
//! model, as A1111 runs them. Its img2img with a k-diffusion sampler at denoising strength d
//! runs `⌊min(d, 0.999) × steps⌋ + 1` of its schedule (16 of 20 at 0.75; before: diffusers'
//! 15), its DDIM diffusers' share still; its hires fix runs all of its steps (`hr_second_pass_steps`,
//! else the first pass's) over the last of a longer schedule (4 at 0.5; before: 2). A refiner
//! that is the model drawing, the caller's default included, is none, as in A1111: its
//! pictures' text names no refiner (before: `Refiner: …` and a split run).

use crate::common;

use base64::Engine;
use common::compat::{TINY_SD, models_dir, start_daemon};
use common::daemon::DaemonProc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::comfy_denoise::{stage_totals as stages, totals_and_log};

/// POSTs `body` to A1111's `path`: the job it ran and its first picture's infotext.
async fn drawn(c: &reqwest::Client, d: &DaemonProc, path: &str, body: &Value) -> (String, String) {
    let resp = c.post(d.at(path)).json(body).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    let job = resp.headers()["x-reelbox-job"].to_str().expect("job header").to_string();
    let answer: Value = resp.json().await.expect("json");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info text")).expect("info JSON");
    (job, info["infotexts"][0].as_str().expect("an infotext").to_string())
}

/// The progress total of each stage of job `id`.
async fn totals(c: &reqwest::Client, d: &DaemonProc, id: &str) -> Vec<(String, u64)> {
    totals_and_log(c, d, id).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn img2img_and_the_hires_fix_run_as_many_steps_as_a1111s() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(common::media::test_picture(64, 64, 3))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    let init = base64::engine::general_purpose::STANDARD.encode(&png);
    let img2img = |sampler: &str| {
        json!({"prompt": "a red door", "seed": 5, "steps": 20, "cfg_scale": 7, "width": 64, "height": 64,
            "sampler_name": sampler, "denoising_strength": 0.75, "init_images": [init],
            "override_settings": {"sd_model_checkpoint": TINY_SD}})
    };
    // Euler (k-diffusion's): t_enc = ⌊0.75 × 20⌋ = 15, and its σs from the 4th: 16 steps.
    let (job, text) = drawn(&c, &d, "/sdapi/v1/img2img", &img2img("Euler")).await;
    assert_eq!(totals(&c, &d, &job).await, stages(&[("generate", 16)]), "{text}");
    assert!(text.contains("Steps: 20, Sampler: Euler,") && text.contains("Denoising strength: 0.75"), "{text}");
    // DDIM is not k-diffusion's: diffusers' share, 15.
    let (job, _) = drawn(&c, &d, "/sdapi/v1/img2img", &img2img("DDIM")).await;
    assert_eq!(totals(&c, &d, &job).await, stages(&[("generate", 15)]));

    // The hires fix at 0.5 runs its 4 steps (the first pass's), as A1111 gives them to its
    // img2img; and `hr_second_pass_steps` 3, its 3.
    let mut hires = json!({"prompt": "a red door", "seed": 5, "steps": 4, "cfg_scale": 7, "width": 64,
        "height": 64, "sampler_name": "Euler", "enable_hr": true, "hr_scale": 1.5, "denoising_strength": 0.5,
        "override_settings": {"sd_model_checkpoint": TINY_SD}});
    let (job, text) = drawn(&c, &d, "/sdapi/v1/txt2img", &hires).await;
    assert_eq!(totals(&c, &d, &job).await, stages(&[("generate", 4), ("refine", 4)]), "{text}");
    hires["hr_second_pass_steps"] = json!(3);
    let (job, text) = drawn(&c, &d, "/sdapi/v1/txt2img", &hires).await;
    assert_eq!(totals(&c, &d, &job).await, stages(&[("generate", 4), ("refine", 3)]), "{text}");
    assert!(text.contains("Hires steps: 3"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refiner_that_is_the_callers_own_model_is_none() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    // The box's model, as Open WebUI and SillyTavern pick one: then requests name none.
    let resp = c.post(d.at("/sdapi/v1/options")).json(&json!({"sd_model_checkpoint": TINY_SD})).send().await;
    assert_eq!(resp.expect("options").status(), StatusCode::OK);
    let body = |refiner: &str| {
        json!({"prompt": "a red door", "seed": 5, "steps": 6, "width": 64, "height": 64, "sampler_name": "Euler",
            "refiner_checkpoint": refiner, "refiner_switch_at": 0.5})
    };
    let (job, with) = drawn(&c, &d, "/sdapi/v1/txt2img", &body(TINY_SD)).await;
    assert!(!with.contains("Refiner"), "no refiner: {with}");
    assert_eq!(totals(&c, &d, &job).await, stages(&[("generate", 6)]), "one pass: {with}");
    let (_, without) = drawn(&c, &d, "/sdapi/v1/txt2img", &body("None")).await;
    assert_eq!(with, without, "the same picture's text as with no refiner");
}
