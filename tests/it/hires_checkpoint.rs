//! The hires fix's second pass on another checkpoint (A1111's "Hires checkpoint", a second
//! CheckpointLoaderSimple in ComfyUI), on the real daemon with two tiny SD models of one
//! latent space, `tiny-sd` and its "fine-tune" `tiny-sd-2` (another UNet): the native
//! `refine.model`, A1111's `hr_checkpoint_name` and ComfyUI's second checkpoint make the same
//! picture, which is not the one refined on the first pass's model; its infotext says
//! `Hires checkpoint` and PNG Info gives `hr_checkpoint_name` back. A model the box lacks, or
//! one of another latent space from the latent, is refused naming the field; ComfyUI wiring
//! that mixes the two checkpoints in one pass is refused at its node. Before, `refine.model`
//! and `hr_checkpoint_name` were unknown fields and the graph was refused ("must come from the
//! sampler's checkpoint").

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::compat::{TINY_SD, models_dir, start_daemon};
use common::daemon::DaemonProc;
use image::RgbImage;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::comfy_compat::{http, queue_prompt};
use crate::comfy_hires::{hires, latent_by};
use crate::comfy_upscale::{get, view};

/// The fine-tune the second passes sample with.
pub(crate) const TINY_SD_2: &str = "tiny-sd-2";

/// A models dir with `tiny-sd`, `tiny-sd-2` and `tiny-sdxl` (another latent space).
pub(crate) fn two_models() -> tempfile::TempDir {
    let models = models_dir(false);
    for name in [TINY_SD_2, "tiny-sdxl"] {
        let from = common::fixture(&format!("models/{name}"));
        std::os::unix::fs::symlink(&from, models.path().join(name)).expect("link a fixture model");
    }
    models
}

pub(crate) async fn post(c: &reqwest::Client, d: &DaemonProc, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = c.post(d.at(path)).json(body).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) fn pixels(png: &[u8]) -> RgbImage {
    image::load_from_memory(png).expect("a picture").to_rgb8()
}

/// Runs native image job `body` to its end: its view and its `refined.png`.
pub(crate) async fn refined(c: &reqwest::Client, d: &DaemonProc, body: &Value) -> (Value, Vec<u8>) {
    let (status, job) = post(c, d, "/api/v1/images", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}: {job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(c, d, id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    (done, common::render::artifact(c, d, id, "refined.png").await)
}

/// The native job A1111's txt2img below runs: its first pass, then a second from the latent.
fn native(refine_model: Option<&str>) -> Value {
    let mut body = json!({"prompt": "a red door", "model": TINY_SD, "width": 64, "height": 64, "steps": 3,
        "guidance": 7, "seed": 7, "scheduler": "euler", "schedule": "karras", "noise": "torch_cpu",
        "sample_as": "a1111", "preview_every": 0, "refine": {"from": "latent", "strength": 0.6, "steps_mode": "run", "steps": 2,
        "resize": {"width": 96, "height": 96, "method": "bilinear"}}});
    if let Some(m) = refine_model {
        body["refine"]["model"] = json!(m);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hires_pass_on_another_checkpoint_is_that_models_picture_through_every_api() {
    let models = two_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    let (job, other) = refined(&c, &d, &native(Some(TINY_SD_2))).await;
    assert_eq!(job["params"]["refine"]["model"], TINY_SD_2, "{job}");
    let (_, same) = refined(&c, &d, &native(None)).await;
    assert!(pixels(&other) != pixels(&same), "the second pass on tiny-sd-2 is tiny-sd's picture");
    let text = reelbox::pipelines::diffusion::output::parameters_of(&other).unwrap_or_default();
    assert!(text.contains(", RNG: CPU, Hires checkpoint: tiny-sd-2, Hires upscale: 1.5,"), "{text}");
    assert!(text.contains(", Model: tiny-sd,"), "the first pass's model stays the picture's Model: {text}");

    // A1111's txt2img with the hires checkpoint as `sd-models` titles it: the same picture.
    let listed = get(&c, &d, "/sdapi/v1/sd-models").await;
    let title =
        listed.as_array().expect("models").iter().find(|m| m["model_name"] == TINY_SD_2).expect("listed")["title"]
            .clone();
    let body = json!({"prompt": "a red door", "seed": 7, "steps": 3, "cfg_scale": 7, "width": 64, "height": 64,
        "sampler_name": "Euler", "scheduler": "Karras", "enable_hr": true, "hr_scale": 1.5, "hr_upscaler": "Latent",
        "denoising_strength": 0.6, "hr_second_pass_steps": 2, "hr_checkpoint_name": title,
        "override_settings": {"sd_model_checkpoint": TINY_SD}});
    let (status, answer) = post(&c, &d, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let png = base64::engine::general_purpose::STANDARD.decode(answer["images"][0].as_str().expect("a picture"));
    let png = png.expect("base64");
    assert!(pixels(&png) == pixels(&other), "A1111's hires checkpoint is not the native refine.model");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info JSON");
    assert_eq!(info["extra_generation_params"]["Hires checkpoint"], TINY_SD_2, "{info}");
    // PNG Info gives it back as txt2img's field; a picture refined on its own model says the same one.
    let image = base64::engine::general_purpose::STANDARD.encode(&png);
    let (status, read) = post(&c, &d, "/sdapi/v1/png-info", &json!({"image": image})).await;
    assert_eq!((status, &read["parameters"]["hr_checkpoint_name"]), (StatusCode::OK, &json!(TINY_SD_2)), "{read}");
    let image = base64::engine::general_purpose::STANDARD.encode(&same);
    let (_, read) = post(&c, &d, "/sdapi/v1/png-info", &json!({"image": image})).await;
    assert_eq!(read["parameters"]["hr_checkpoint_name"], "Use same checkpoint", "{read}");

    // ComfyUI: the second KSampler, its prompts and its VAEDecode on a second checkpoint.
    let mut graph = hires(latent_by(1.5), true);
    graph["20"] = json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd-2.safetensors"}});
    for (id, from) in [("21", "6"), ("22", "7")] {
        graph[id] = graph[from].clone();
        graph[id]["inputs"]["clip"] = json!(["20", 1]);
    }
    graph["12"]["inputs"]["model"] = json!(["20", 0]);
    (graph["12"]["inputs"]["positive"], graph["12"]["inputs"]["negative"]) = (json!(["21", 0]), json!(["22", 0]));
    graph["13"]["inputs"]["vae"] = json!(["20", 2]);
    let id = queue_prompt(&c, &d, json!({"prompt": graph})).await;
    let entry = crate::comfy_compat::history_of(&c, &d, &id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let from_graph = view(&c, &d, &entry["outputs"]["14"]["images"][0]).await.to_rgb8();
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!((&job["params"]["model"], &job["params"]["refine"]["model"]), (&json!(TINY_SD), &json!(TINY_SD_2)));
    // The native job with the graph's settings (ComfyUI's noise, all its steps run).
    let settings = json!({"steps": 4, "seed": 8566257, "guidance": 8, "scheduler": "euler"});
    let mut body = json!({"model": TINY_SD, "width": 64, "height": 64, "preview_every": 0, "schedule": "normal",
        "noise": "comfyui", "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "negative_prompt": "text, watermark", "refine": {"from": "latent", "strength": 0.5, "steps_mode": "run",
        "model": TINY_SD_2, "resize": {"method": "nearest-exact", "scale_by": 1.5}}});
    for (k, v) in settings.as_object().expect("settings") {
        (body[k], body["refine"][k]) = (v.clone(), v.clone());
    }
    let (_, png) = refined(&c, &d, &body).await;
    assert!(pixels(&png) == from_graph, "the graph's second checkpoint is not the native refine.model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hires_checkpoint_the_box_cannot_run_there_is_refused_naming_its_field() {
    let models = two_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let refused = |field: &'static str, says: &'static str| {
        move |(status, err): (StatusCode, Value)| {
            assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{err}");
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{message}");
        }
    };
    refused("refine.model", "nonesuch")(post(&c, &d, "/api/v1/images", &native(Some("nonesuch"))).await);
    // From the latent: SDXL's latents are another space (its VAE scales them by 0.13025).
    let sdxl = native(Some("tiny-sdxl"));
    refused("refine.model", "\"from\": \"picture\"")(post(&c, &d, "/api/v1/images", &sdxl).await);
    // From the picture any model the box runs: encoded by its own VAE.
    let mut from_picture = sdxl.clone();
    from_picture["refine"]["from"] = json!("picture");
    from_picture["refine"]["resize"]["method"] = json!("lanczos");
    let (job, png) = refined(&c, &d, &from_picture).await;
    assert_eq!(pixels(&png).dimensions(), (96, 96), "{job}");

    // A1111 names its own field.
    let body = json!({"prompt": "a red door", "steps": 2, "width": 64, "height": 64, "enable_hr": true,
        "hr_scale": 1.5, "hr_checkpoint_name": "nonesuch.safetensors [0123456789]",
        "override_settings": {"sd_model_checkpoint": TINY_SD}});
    let (status, answer) = post(&c, &d, "/sdapi/v1/txt2img", &body).await;
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(status.is_client_error() && detail.starts_with("hr_checkpoint_name"), "{status} {answer}");
    let sdxl = json!({"hr_checkpoint_name": "tiny-sdxl", "hr_upscaler": "Latent"});
    let mut body = body;
    body.as_object_mut().expect("body").extend(sdxl.as_object().expect("fields").clone());
    let (status, answer) = post(&c, &d, "/sdapi/v1/txt2img", &body).await;
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(status.is_client_error() && detail.starts_with("hr_checkpoint_name"), "{status} {answer}");
    assert!(detail.contains("latent space"), "says why: {detail}");
    // What to send instead in A1111's words (it said the native `"from": "picture"`).
    assert!(detail.contains("a picture upscaler for hr_upscaler") && !detail.contains("\"from\""), "{detail}");

    // ComfyUI: a second pass sampled on tiny-sd-2's UNet with its prompts encoded by tiny-sd's
    // CLIP, or decoded by tiny-sd's VAE, is no one model's pass.
    let mut graph = hires(latent_by(1.5), true);
    graph["20"] = json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd-2.safetensors"}});
    graph["12"]["inputs"]["model"] = json!(["20", 0]);
    let mut decoded = graph.clone();
    for (id, from) in [("21", "6"), ("22", "7")] {
        decoded[id] = decoded[from].clone();
        decoded[id]["inputs"]["clip"] = json!(["20", 1]);
    }
    (decoded["12"]["inputs"]["positive"], decoded["12"]["inputs"]["negative"]) = (json!(["21", 0]), json!(["22", 0]));
    for (graph, node, says) in [(graph, "12", "positive"), (decoded, "13", "vae must come from")] {
        let resp = c.post(d.at("/prompt")).json(&json!({"prompt": graph})).send().await.expect("post");
        assert_eq!(resp.status(), 400, "{node}");
        let body: Value = resp.json().await.expect("json");
        let errors = body["node_errors"].as_object().expect("node_errors");
        assert_eq!(errors.keys().collect::<Vec<_>>(), [node], "{body}");
        let message = errors[node]["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says) && message.contains("node 20"), "{body}");
    }
    assert_eq!(
        get(&c, &d, "/api/v1/jobs").await["jobs"].as_array().map(Vec::len),
        Some(1),
        "none queued but the picture's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reelbox_image_refine_model_samples_the_second_pass_on_that_model() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = two_models();
    let d = start_daemon(&home.path().join("data"), models.path());
    let out = home.path().join("hires.png");
    let args = ["image", "a red circle", "--model", TINY_SD, "--steps", "2", "--width", "64", "--height", "64"];
    let refine = ["--seed", "42", "--refine", "1.5x", "--refine-strength", "0.5", "--refine-model", TINY_SD_2, "-o"];
    let cli = || common::tools::reelbox_cli(home.path(), models.path());
    common::tools::run_ok(cli().args(args).args(refine).arg(&out).args(["--url", &d.at("")]));
    let jobs = get(&http(), &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["params"]["refine"]["model"], TINY_SD_2, "{jobs}");
    let png = std::fs::read(&out).expect("the refined picture");
    let text = reelbox::pipelines::diffusion::output::parameters_of(&png).unwrap_or_default();
    assert!(text.contains("Hires checkpoint: tiny-sd-2"), "{text}");
    // `jobs show` says what each pass ran (it said no model of a picture job).
    let id = jobs["jobs"][0]["id"].as_str().expect("id");
    let shown = common::tools::run_ok(cli().args(["jobs", "show", id, "--url", &d.at("")]));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("prompt   a red circle\n"), "{shown}");
    assert!(shown.contains("picture  64x64, 2 steps, seed 42\n"), "{shown}");
    assert!(shown.contains(&format!("models   pictures {TINY_SD}, second pass {TINY_SD_2}\n")), "{shown}");
}
