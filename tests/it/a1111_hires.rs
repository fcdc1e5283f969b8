//! A1111's hires fix as its own tools read it back, on the real daemon with the tiny SD model:
//! a hires-fixed picture's infotext says the first pass and A1111's hires keys (`Hires
//! upscale`, `Hires steps`, `Hires upscaler`, `Hires sampler`, `Hires schedule type`,
//! `Denoising strength`), `png-info` gives them back as txt2img's `enable_hr`/`hr_*` fields,
//! and sending those fields again makes the same picture (PNG Info's "Send to txt2img"); the
//! answer's `extra_generation_params` hold the same keys (before: only `RNG`). Before,
//! the text described the second pass as a picture of its own (`Size: 96x96`, its sampler) with
//! no hires key. A second pass with A1111's DDIM or PLMS, which read no schedule, after a
//! Karras first pass samples over none, as the native job naming `refine.schedule: none` does;
//! before, DDIM ran over Karras and PLMS was refused.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::compat::{TINY_SD, models_dir, start_daemon};
use common::daemon::DaemonProc;
use image::RgbImage;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// POSTs `body` to `path`; the status and the JSON answer.
async fn post(c: &reqwest::Client, d: &DaemonProc, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = c.post(d.at(path)).json(body).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A txt2img answer's first picture's PNG bytes, and its infotext; `body` must be answered 200.
async fn txt2img(c: &reqwest::Client, d: &DaemonProc, body: &Value) -> (Vec<u8>, String) {
    let (bytes, info) = txt2img_info(c, d, body).await;
    (bytes, info["infotexts"][0].as_str().expect("an infotext").to_string())
}

/// A txt2img answer's first picture's PNG bytes, and its `info` read as JSON.
pub(crate) async fn txt2img_info(c: &reqwest::Client, d: &DaemonProc, body: &Value) -> (Vec<u8>, Value) {
    let (status, answer) = post(c, d, "/sdapi/v1/txt2img", body).await;
    assert_eq!(status, StatusCode::OK, "{body}: {answer}");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info text")).expect("info JSON");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["images"][0].as_str().expect("a picture"))
        .expect("base64");
    (bytes, info)
}

pub(crate) fn pixels(png: &[u8]) -> RgbImage {
    image::load_from_memory(png).expect("a picture").to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hires_pictures_infotext_has_a1111s_hires_keys_and_png_info_sends_them_back() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let body = json!({"prompt": "a red door", "seed": 7, "steps": 3, "cfg_scale": 7, "width": 64, "height": 64,
        "sampler_name": "Euler", "scheduler": "Karras", "enable_hr": true, "hr_scale": 1.5,
        "hr_upscaler": "Latent (bicubic)", "denoising_strength": 0.6, "hr_second_pass_steps": 2,
        "hr_sampler_name": "Euler a", "hr_scheduler": "Exponential",
        "override_settings": {"sd_model_checkpoint": TINY_SD}});
    let (png, info) = txt2img_info(&c, &d, &body).await;
    let text = info["infotexts"][0].as_str().expect("an infotext");
    assert_eq!(pixels(&png).dimensions(), (96, 96));
    let want = format!(
        "a red door\nSteps: 3, Sampler: Euler, Schedule type: Karras, CFG scale: 7, Seed: 7, Size: 64x64, Model: \
         {TINY_SD}, Denoising strength: 0.6, RNG: CPU, Hires sampler: Euler a, Hires schedule type: Exponential, \
         Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Latent (bicubic), Version: reelbox"
    );
    assert!(text.starts_with(&want), "the first pass, then A1111's hires keys:\n{text}\n{want}");
    // The answer's `extra_generation_params` hold the same keys, as A1111's scripts read them.
    let extra = json!({"Denoising strength": 0.6, "Hires sampler": "Euler a", "Hires schedule type": "Exponential",
        "Hires upscale": 1.5, "Hires steps": 2, "Hires upscaler": "Latent (bicubic)"});
    assert_eq!(info["extra_generation_params"], extra, "{info}");
    assert_eq!((&info["width"], &info["height"]), (&json!(64), &json!(64)), "the first pass's size: {info}");

    // PNG Info reads them back into txt2img's fields.
    let image = base64::engine::general_purpose::STANDARD.encode(&png);
    let (status, info) = post(&c, &d, "/sdapi/v1/png-info", &json!({"image": image})).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    let p = &info["parameters"];
    let fields = ["enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength"];
    let got: Vec<&Value> = fields.iter().map(|f| &p[*f]).collect();
    assert_eq!(got, [&json!(true), &json!(1.5), &json!("Latent (bicubic)"), &json!(2), &json!(0.6)], "{info}");
    assert_eq!((&p["hr_sampler_name"], &p["hr_scheduler"]), (&json!("Euler a"), &json!("Exponential")), "{info}");
    assert_eq!((&p["Size-1"], &p["Size-2"], &p["Schedule type"]), (&json!("64"), &json!("64"), &json!("Karras")));

    // Sent to txt2img again as PNG Info sends it, the same picture.
    let number = |key: &str| p[key].as_str().and_then(|v| v.parse::<f64>().ok()).expect(key);
    let whole = |key: &str| p[key].as_str().and_then(|v| v.parse::<i64>().ok()).expect(key);
    let mut again = json!({"prompt": p["Prompt"], "seed": whole("Seed"), "steps": whole("Steps"),
        "cfg_scale": number("CFG scale"), "width": whole("Size-1"), "height": whole("Size-2"),
        "sampler_name": p["Sampler"], "scheduler": p["Schedule type"]});
    for field in fields.iter().chain(&["hr_sampler_name", "hr_scheduler", "hr_resize_x", "hr_resize_y"]) {
        again[*field] = p[*field].clone();
    }
    let (same, _) = txt2img(&c, &d, &again).await;
    assert!(pixels(&same) == pixels(&png), "the hires fix read back is not the one that made it: {again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hires_ddim_after_a_karras_first_pass_samples_over_no_schedule_as_the_native_job() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let mut body = json!({"prompt": "a red door", "seed": 7, "steps": 3, "cfg_scale": 7, "width": 64, "height": 64,
        "sampler_name": "Euler", "scheduler": "Karras", "enable_hr": true, "hr_scale": 1.5, "hr_upscaler": "Latent",
        "denoising_strength": 0.6, "hr_second_pass_steps": 2, "hr_sampler_name": "DDIM"});
    let (ddim, text) = txt2img(&c, &d, &body).await;
    assert!(text.contains("Hires sampler: DDIM, Hires upscale: 1.5"), "DDIM reads no schedule: {text}");
    body["hr_sampler_name"] = json!("PLMS");
    let (plms, text) = txt2img(&c, &d, &body).await;
    assert!(text.contains("Hires sampler: PLMS, Hires upscale"), "{text}");
    assert!(pixels(&plms) != pixels(&ddim));

    // The native job: the second pass's sampler over no schedule, though the first's is Karras.
    let native = json!({"prompt": "a red door", "model": TINY_SD, "width": 64, "height": 64, "steps": 3,
        "guidance": 7, "seed": 7, "scheduler": "euler", "schedule": "karras", "noise": "torch_cpu",
        "sample_as": "a1111", "preview_every": 0, "refine": {"from": "latent", "strength": 0.6, "steps_mode": "run", "steps": 2, "scheduler": "ddim",
        "schedule": "none", "resize": {"width": 96, "height": 96, "method": "bilinear"}}});
    let (status, job) = post(&c, &d, "/api/v1/images", &native).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(&c, &d, id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!((&done["state"], &done["params"]["refine"]["schedule"]), (&json!("succeeded"), &json!("none")));
    let png = common::render::artifact(&c, &d, id, "refined.png").await;
    assert!(pixels(&png) == pixels(&ddim), "A1111's hires DDIM is not the native DDIM over no schedule");
    // Over the first pass's Karras, another picture: the one the hires fix ran before.
    let mut karras = native.clone();
    karras["refine"]["schedule"] = json!("karras");
    let (status, job) = post(&c, &d, "/api/v1/images", &karras).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(&c, &d, id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let over_karras = common::render::artifact(&c, &d, id, "refined.png").await;
    assert!(pixels(&over_karras) != pixels(&ddim), "DDIM over Karras is no other picture on this model");
}
