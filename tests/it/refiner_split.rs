//! A base → refiner split on the real daemon with the two tiny SD models of one latent space:
//! the first pass runs its schedule's steps before the switch and hands its leftover noise on
//! (`leftover.npy`, no picture), the second goes on from that step of the same schedule adding
//! none. On one model an Euler split is its one run to the pixel (same schedule, same noise,
//! no history: nothing is lost at the hand-over); on `tiny-sd-2` it is another picture, not the
//! second pass over the first's latent. ComfyUI's KSamplerAdvanced pair is its native job, and
//! A1111's `refiner_checkpoint` + `refiner_switch_at` one too, whose text PNG Info reads back.
//! Before, the native `switch_at_step` was an unknown field, the ComfyUI pair was refused at
//! `return_with_leftover_noise`, and A1111's refiner fields were left unread.

use crate::common;

use base64::Engine;
use common::compat::{TINY_SD, start_daemon};
use common::daemon::DaemonProc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::comfy_compat::{default_workflow, history_of, http, queue_prompt};
use crate::comfy_inpaint::refused;
use crate::comfy_upscale::{get, view};
use crate::hires_checkpoint::{TINY_SD_2, pixels, post, refined, two_models};

/// Six Euler steps on tiny-sd, with `refine` if given.
fn native(refine: Option<Value>) -> Value {
    let mut body = json!({"prompt": "a red door", "model": TINY_SD, "width": 64, "height": 64, "steps": 6,
        "guidance": 7, "seed": 7, "scheduler": "euler", "preview_every": 0});
    if let Some(r) = refine {
        body["refine"] = r;
    }
    body
}

/// Runs native job `body` (no second pass) to its end: its `image.png`.
async fn one_pass(c: &reqwest::Client, d: &DaemonProc, body: &Value) -> Vec<u8> {
    let (status, job) = post(c, d, "/api/v1/images", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(c, d, id, std::time::Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    common::render::artifact(c, d, id, "image.png").await
}

fn text_of(png: &[u8]) -> String {
    reelbox::pipelines::diffusion::output::parameters_of(png).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_goes_on_from_the_first_passs_leftover_noise_over_the_same_schedule() {
    let models = two_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    let whole = pixels(&one_pass(&c, &d, &native(None)).await);
    let (job, same) = refined(&c, &d, &native(Some(json!({"switch_at_step": 3})))).await;
    assert!(pixels(&same) == whole, "an Euler split on one model is not its one run: {job}");
    let kept = get(&c, &d, &format!("/api/v1/jobs/{}/artifacts", job["id"].as_str().expect("id"))).await;
    let names: Vec<&str> = kept.as_array().expect("artifacts").iter().filter_map(|a| a["name"].as_str()).collect();
    assert!(names.contains(&"leftover.npy") && !names.contains(&"image.png"), "{names:?}");

    let on = |step: u32| Some(json!({"switch_at_step": step, "model": TINY_SD_2}));
    let (job, at3) = refined(&c, &d, &native(on(3))).await;
    assert_eq!(job["params"]["refine"]["switch"], json!({"step": 3}), "{job}");
    assert!(pixels(&at3) != whole, "tiny-sd-2 from step 3 is tiny-sd's picture");
    let text = text_of(&at3);
    assert!(text.contains(", Model: tiny-sd,") && text.contains(", Refiner: tiny-sd-2"), "{text}");
    assert!(text.contains(", Refiner switch at: 0.5,") && !text.contains("Denoising strength"), "{text}");
    let (_, at1) = refined(&c, &d, &native(on(1))).await;
    assert!(pixels(&at1) != pixels(&at3), "the switch's step changes nothing");
    // A second pass over the first's finished latent is another thing.
    let again = json!({"from": "latent", "strength": 0.5, "model": TINY_SD_2});
    let (_, again) = refined(&c, &d, &native(Some(again))).await;
    assert!(pixels(&again) != pixels(&at3), "the split is the second pass over the latent");

    for (refine, field) in [
        (json!({"switch_at_step": 0}), "refine.switch_at_step"),
        (json!({"switch_at_step": 6}), "refine.switch_at_step"),
        (json!({"switch_at_step": 3, "steps": 3}), "refine.switch_at_step"),
        (json!({"switch_at_step": 3, "resize": {"scale_by": 1.5}}), "refine.resize"),
        (json!({"switch_at_step": 3, "strength": 0.5}), "refine.strength"),
        (json!({"switch_at_step": 3, "model": "tiny-sdxl"}), "refine.model"),
        (json!({"switch_at": 1.5}), "refine.switch_at"),
        (json!({"switch_at": 1.0}), "refine.switch_at"),
        (json!({"switch_at": 0.5, "switch_at_step": 3}), "refine.switch_at"),
    ] {
        let (status, err) = post(&c, &d, "/api/v1/images", &native(Some(refine.clone()))).await;
        assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{refine}: {err}");
    }
}

/// KSamplerAdvanced on `model`'s output `loader`, its prompts `prompts`, from `latent`, steps
/// `start` to `end` of 4.
fn advanced(loader: &str, prompts: (&str, &str), latent: Value, (start, end): (u32, u32)) -> Value {
    let first = start == 0;
    json!({"class_type": "KSamplerAdvanced", "inputs": {"model": [loader, 0],
        "add_noise": if first { "enable" } else { "disable" }, "noise_seed": 8566257, "steps": 4, "cfg": 8,
        "sampler_name": "euler", "scheduler": "normal", "positive": [prompts.0, 0], "negative": [prompts.1, 0],
        "latent_image": latent, "start_at_step": start, "end_at_step": end,
        "return_with_leftover_noise": if first { "enable" } else { "disable" }}})
}

/// The default workflow split at step 2 of 4: tiny-sd's KSamplerAdvanced (node 3) hands its
/// leftover noise to tiny-sd-2's (node 12, its own prompts), which node 8 decodes.
fn split_graph() -> Value {
    let mut g = default_workflow("tiny-sd", 4);
    g["3"] = advanced("4", ("6", "7"), json!(["5", 0]), (0, 2));
    g["20"] = json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd-2.safetensors"}});
    g["21"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": "sharp details", "clip": ["20", 1]}});
    g["22"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["20", 1]}});
    g["12"] = advanced("20", ("21", "22"), json!(["3", 0]), (2, 10000));
    g["8"]["inputs"] = json!({"samples": ["12", 0], "vae": ["20", 2]});
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyuis_ksampler_advanced_pair_is_the_native_split_and_what_it_cannot_run_is_refused() {
    let models = two_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    let id = queue_prompt(&c, &d, json!({"prompt": split_graph()})).await;
    let entry = history_of(&c, &d, &id, std::time::Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let from_graph = view(&c, &d, &entry["outputs"]["9"]["images"][0]).await.to_rgb8();
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["params"]["refine"]["switch"]["step"], 2, "{job}");
    let settings = json!({"steps": 4, "seed": 8566257, "guidance": 8, "scheduler": "euler", "schedule": "normal"});
    let mut body = json!({"model": TINY_SD, "width": 64, "height": 64, "preview_every": 0, "noise": "comfyui",
        "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "negative_prompt": "text, watermark", "refine": {"switch_at_step": 2, "model": TINY_SD_2,
        "prompt": "sharp details", "negative_prompt": "text, watermark"}});
    for (k, v) in settings.as_object().expect("settings") {
        (body[k], body["refine"][k]) = (v.clone(), v.clone());
    }
    let (_, native) = refined(&c, &d, &body).await;
    assert!(pixels(&native) == from_graph, "the graph's split is not its native job");
    let id = queue_prompt(&c, &d, json!({"prompt": default_workflow("tiny-sd", 4)})).await;
    let entry = history_of(&c, &d, &id, std::time::Duration::from_secs(120)).await;
    let one = view(&c, &d, &entry["outputs"]["9"]["images"][0]).await.to_rgb8();
    assert!(one != from_graph, "the split is tiny-sd's one pass");

    // The leftover noise decoded as a picture too; a second sampler going on from another
    // step; a scale between the two: each refused at its node and input.
    let mut decoded = split_graph();
    decoded["30"] = json!({"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}});
    decoded["31"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "noise", "images": ["30", 0]}});
    let mut elsewhere = split_graph();
    elsewhere["12"]["inputs"]["start_at_step"] = json!(1);
    let mut scaled = split_graph();
    scaled["10"] = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0],
        "upscale_method": "nearest-exact", "scale_by": 1.5}});
    scaled["12"]["inputs"]["latent_image"] = json!(["10", 0]);
    let leftover = "return_with_leftover_noise";
    for (graph, node, input) in [(decoded, "3", leftover), (elsewhere, "12", "start_at_step"), (scaled, "3", leftover)]
    {
        let e = refused(&c, &d, graph, node).await;
        assert_eq!(e["extra_info"]["input_name"], input, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1111s_refiner_is_the_split_its_text_says_and_png_info_gives_back() {
    let models = two_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let b64 = |png: &[u8]| base64::engine::general_purpose::STANDARD.encode(png);
    let picture = |answer: &Value| {
        let png = base64::engine::general_purpose::STANDARD.decode(answer["images"][0].as_str().expect("a picture"));
        png.expect("base64")
    };

    let listed = get(&c, &d, "/sdapi/v1/sd-models").await;
    let title =
        listed.as_array().expect("models").iter().find(|m| m["model_name"] == TINY_SD_2).expect("listed")["title"]
            .clone();
    let plain = json!({"prompt": "a red door", "seed": 7, "steps": 6, "cfg_scale": 7, "width": 64, "height": 64,
        "sampler_name": "Euler", "override_settings": {"sd_model_checkpoint": TINY_SD}});
    let mut body = plain.clone();
    (body["refiner_checkpoint"], body["refiner_switch_at"]) = (title, json!(0.5));
    let (status, answer) = post(&c, &d, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let png = picture(&answer);
    let text = text_of(&png);
    assert!(text.contains(", Refiner: tiny-sd-2") && text.contains(", Refiner switch at: 0.5,"), "{text}");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info JSON");
    assert_eq!(info["extra_generation_params"]["Refiner switch at"], 0.5, "{info}");
    assert_eq!(info["denoising_strength"], Value::Null, "a refiner repaints nothing: {info}");
    let (_, without) = post(&c, &d, "/sdapi/v1/txt2img", &plain).await;
    assert!(pixels(&png) != pixels(&picture(&without)), "the refiner changed nothing");
    // Six Euler steps: step 3's noise level is the first past half (A1111's timestep rule).
    let jobs = get(&c, &d, "/api/v1/jobs").await;
    let refined_job = jobs["jobs"].as_array().expect("jobs").iter().find(|j| !j["params"]["refine"].is_null());
    assert_eq!(
        refined_job.map(|j| &j["params"]["refine"]["switch"]),
        Some(&json!({"step": 3, "at": 0.5, "continue": "run"}))
    );

    // PNG Info gives the refiner back as the request's fields, which draw the same picture.
    let (status, read) = post(&c, &d, "/sdapi/v1/png-info", &json!({"image": b64(&png)})).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let p = &read["parameters"];
    assert!(p["refiner_checkpoint"].as_str().is_some_and(|t| t.starts_with("tiny-sd-2")), "{read}");
    assert_eq!(p["refiner_switch_at"], 0.5, "{read}");
    let mut again = plain.clone();
    (again["refiner_checkpoint"], again["refiner_switch_at"]) = (p["refiner_checkpoint"].clone(), json!(0.5));
    let (_, answer) = post(&c, &d, "/sdapi/v1/txt2img", &again).await;
    assert!(pixels(&picture(&answer)) == pixels(&png), "PNG Info's refiner draws another picture");

    // img2img takes it too.
    let img = json!({"prompt": "a red door", "seed": 7, "steps": 6, "sampler_name": "Euler", "init_images": [b64(&png)],
        "denoising_strength": 0.75, "refiner_checkpoint": TINY_SD_2, "refiner_switch_at": 0.8,
        "override_settings": {"sd_model_checkpoint": TINY_SD}});
    let (status, answer) = post(&c, &d, "/sdapi/v1/img2img", &img).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(text_of(&picture(&answer)).contains(", Refiner switch at: 0.8,"), "{answer}");

    for (field, value, names) in [
        ("refiner_switch_at", json!(1.5), "refiner_switch_at"),
        ("refiner_checkpoint", json!("nonesuch"), "refiner_checkpoint"),
        ("refiner_checkpoint", json!("tiny-sdxl"), "refiner_checkpoint"),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let (status, answer) = post(&c, &d, "/sdapi/v1/txt2img", &bad).await;
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(status.is_client_error() && detail.starts_with(names), "{field}: {status} {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reelbox_image_refine_switch_at_step_splits_the_schedule() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = two_models();
    let d = start_daemon(&home.path().join("data"), models.path());
    let out = home.path().join("split.png");
    let args = ["image", "a red door", "--model", TINY_SD, "--steps", "4", "--width", "64", "--height", "64"];
    let split = ["--seed", "7", "--refine-switch-at-step", "2", "--refine-model", TINY_SD_2, "-o"];
    let cli = || common::tools::reelbox_cli(home.path(), models.path());
    let run = common::tools::run_ok(cli().args(args).args(split).arg(&out).args(["--url", &d.at("")]));
    assert!(String::from_utf8_lossy(&run.stderr).contains("tiny-sd-2 from step 2"), "{run:?}");
    let jobs = get(&http(), &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["params"]["refine"]["switch"], json!({"step": 2}), "{jobs}");
    let text = text_of(&std::fs::read(&out).expect("the refined picture"));
    assert!(text.contains("Refiner: tiny-sd-2") && text.contains("Refiner switch at: 0.5"), "{text}");
    // `--refine-continue run`: the first pass's run goes on, as A1111's refiner's does.
    let run_out = home.path().join("run.png");
    let on = ["--refine-continue", "run"];
    common::tools::run_ok(cli().args(args).args(split).arg(&run_out).args(on).args(["--url", &d.at("")]));
    let jobs = get(&http(), &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["params"]["refine"]["switch"], json!({"step": 2, "continue": "run"}), "{jobs}");
    let wrong = cli().args(args).args(["--refine-continue", "later", "--refine-switch-at-step", "2"]).output();
    assert!(!wrong.expect("runs").status.success(), "--refine-continue takes leftover or run");
    // A split takes no scale or strength of a second pass over the result.
    let both = cli().args(args).args(["--refine-switch-at-step", "2", "--refine", "1.5x", "--url", &d.at("")]).output();
    assert!(!both.expect("runs").status.success(), "--refine and --refine-switch-at-step together");
}

/// LCM's img2img samples a schedule of its own, shortened by the strength, which a split's
/// second pass (a whole schedule from the switch) cannot go on over: refused at the switch the
/// request named. Before, it was accepted and the second pass sampled another LCM schedule's
/// steps. An LCM split from noise goes on as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lcm_split_from_a_picture_is_refused_and_one_from_noise_runs() {
    let models = two_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let lcm = |refine: Value| {
        let mut body = native(Some(refine));
        body["scheduler"] = json!("lcm");
        body
    };

    let (job, _) = refined(&c, &d, &lcm(json!({"switch_at_step": 3, "model": TINY_SD_2}))).await;
    assert_eq!(job["params"]["refine"]["switch"], json!({"step": 3}), "{job}");

    let picture = common::media::png(&common::media::test_picture(64, 64, 3));
    let art = common::api::upload(&d, None, "door.png", picture).await;
    let from_picture = |refine: Value| {
        let mut body = lcm(refine);
        body["init_image"] = art["id"].clone();
        body["strength"] = json!(0.6);
        body
    };
    // Its 6 steps at strength 0.6 run steps 3 to 5: switches within them, else accepted.
    for (refine, field) in [
        (json!({"switch_at_step": 4}), "refine.switch_at_step"),
        (json!({"switch_at": 0.6, "model": TINY_SD_2}), "refine.switch_at"),
    ] {
        let (status, err) = post(&c, &d, "/api/v1/images", &from_picture(refine.clone())).await;
        assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{refine}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("LCM") && message.contains("from noise"), "{refine}: {err}");
    }
    // What it says to do instead: a second pass over the first's result.
    let (job, _) = refined(&c, &d, &from_picture(json!({"from": "latent", "strength": 0.5}))).await;
    assert_eq!(job["params"]["refine"]["switch"], Value::Null, "{job}");
}
