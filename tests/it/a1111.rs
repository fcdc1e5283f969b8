//! The AUTOMATIC1111-compatible API (`/sdapi/v1`) against the real daemon, the tiny SD model
//! and real HTTP, as Open WebUI, SillyTavern and scripts call it: txt2img answers base64
//! PNGs of the asked size whose `parameters` text is `info`'s infotext, the same seed the
//! same bytes; img2img with an A1111 mask keeps the rest of the picture pixel for pixel;
//! `sd-models` lists the installed models and `options` sets the one txt2img uses; Basic
//! credentials carry a key; refusals come in A1111's shape naming the field; `webuiapi`, the
//! Python client A1111 scripts use, does all of that as it does against A1111. All of these
//! were 404s before (`no_route`).

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::compat::{TINY_SD, models_dir, run_client, start_daemon, start_daemon_with};
use common::daemon::DaemonProc;
use image::{DynamicImage, Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text.as_str().expect("a base64 text")).expect("base64")
}

fn png(img: DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("encode");
    out
}

/// The `parameters` text chunk of a PNG, as A1111 (and PIL) read it.
fn parameters_text(bytes: &[u8]) -> String {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let info = reader.info();
    let latin1 = info.uncompressed_latin1_text.iter().find(|c| c.keyword == "parameters").map(|c| c.text.clone());
    latin1.expect("a parameters text chunk")
}

/// POSTs `body` to `path`; the status and the JSON answer.
async fn post(c: &reqwest::Client, d: &DaemonProc, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = c.post(d.at(path)).json(body).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A successful generation's answer, with `info` read from its JSON text.
async fn generated(c: &reqwest::Client, d: &DaemonProc, path: &str, body: &Value) -> (Value, Value) {
    let (status, answer) = post(c, d, path, body).await;
    assert_eq!(status, StatusCode::OK, "{path} {body}: {answer}");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info is a JSON text")).expect("info JSON");
    (answer, info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt2img_answers_pngs_of_the_asked_size_whose_text_is_the_infotext() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let body = json!({"prompt": "a red door", "negative_prompt": "blur", "seed": 1234, "steps": 4, "cfg_scale": 6.5,
        "width": 96, "height": 64, "sampler_name": "Euler a", "batch_size": 2, "n_iter": 1,
        "override_settings": {"sd_model_checkpoint": TINY_SD}, "restore_faces": false, "send_images": true});
    let (answer, info) = generated(&c, &d, "/sdapi/v1/txt2img", &body).await;
    let images = answer["images"].as_array().expect("images");
    assert_eq!(images.len(), 2, "batch_size × n_iter pictures");
    let infotexts = info["infotexts"].as_array().expect("infotexts");
    for (i, image) in images.iter().enumerate() {
        let bytes = unb64(image);
        let picture = image::load_from_memory(&bytes).expect("a picture");
        assert_eq!((picture.width(), picture.height()), (96, 64));
        assert_eq!(parameters_text(&bytes), infotexts[i].as_str().expect("text"), "picture {i}");
    }
    assert!(infotexts[1].as_str().expect("text").contains("Seed: 1235"), "{info}");
    assert_eq!(info["seed"], 1234);
    assert_eq!(info["all_seeds"], json!([1234, 1235]));
    assert_eq!((info["width"].clone(), info["height"].clone()), (json!(96), json!(64)));
    assert_eq!((info["sampler_name"].as_str(), info["sd_model_name"].as_str()), (Some("Euler a"), Some(TINY_SD)));
    assert_eq!((info["steps"].clone(), info["cfg_scale"].clone()), (json!(4), json!(6.5)));
    assert_eq!(answer["parameters"]["prompt"], "a red door", "the request as read");

    // The same seed is the same pixels and text: the same bytes.
    let (again, _) = generated(&c, &d, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(again["images"], answer["images"]);
    // Each request was an ordinary image job, its noise drawn as A1111's CPU source draws it,
    // sampled over the σs of A1111's Automatic schedule for Euler a (Uniform: `normal`), by
    // A1111's arithmetic.
    let resp = c.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs");
    let jobs: Value = resp.json().await.expect("json");
    let jobs = jobs["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let sampled = |j: &Value| ["noise", "scheduler", "schedule", "sample_as"].map(|k| j["params"][k].clone());
    let a1111 = [json!("torch_cpu"), json!("euler_a"), json!("normal"), json!("a1111")];
    assert!(jobs.iter().all(|j| sampled(j) == a1111), "{jobs:?}");
    // Any schedule A1111's k-diffusion samplers take that reelbox has: SGM Uniform too.
    let sgm = json!({"prompt": "a red door", "seed": 5, "steps": 2, "width": 64, "height": 64,
        "sampler_name": "DPM++ 2M", "scheduler": "SGM Uniform"});
    let (status, answer) = post(&c, &d, "/sdapi/v1/txt2img", &sgm).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info JSON");
    assert_eq!((info["sampler_name"].as_str(), info["scheduler"].as_str()), (Some("DPM++ 2M"), Some("SGM Uniform")));

    // A seed of -1 is a random one, which info says; send_images false answers no pictures.
    let random = json!({"prompt": "a red door", "seed": -1, "steps": 2, "width": 64, "height": 64,
        "send_images": false});
    let (answer, info) = generated(&c, &d, "/sdapi/v1/txt2img", &random).await;
    assert_eq!(answer["images"], json!([]));
    assert!(info["seed"].as_u64().is_some() && info["all_seeds"][0] == info["seed"], "{info}");
    assert_eq!(info["infotexts"].as_array().map(Vec::len), Some(1), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hires_fix_samples_each_picture_again_at_its_scale() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    for upscaler in ["Latent", "Lanczos"] {
        let body = json!({"prompt": "a red door", "seed": 7, "steps": 3, "width": 64, "height": 64,
            "enable_hr": true, "hr_scale": 1.5, "hr_upscaler": upscaler, "denoising_strength": 0.6,
            "hr_second_pass_steps": 2});
        let (answer, info) = generated(&c, &d, "/sdapi/v1/txt2img", &body).await;
        let images = answer["images"].as_array().expect("images");
        assert_eq!(images.len(), 1, "{upscaler}: the second pass's picture only");
        let bytes = unb64(&images[0]);
        let picture = image::load_from_memory(&bytes).expect("a picture");
        assert_eq!((picture.width(), picture.height()), (96, 96), "{upscaler}");
        let text = parameters_text(&bytes);
        assert_eq!(text, info["infotexts"][0].as_str().expect("text"), "{upscaler}");
        // As A1111 writes a hires-fixed picture's: the first pass's size, then the hires keys.
        let hires = format!(
            "Denoising strength: 0.6, RNG: CPU, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: {upscaler},"
        );
        assert!(text.contains("Size: 64x64") && text.contains(&hires), "{upscaler}: {text}");
        assert_eq!(info["denoising_strength"], 0.6, "{upscaler}");
    }
}

/// The hires fix's `hr_scheduler` is the second pass's schedule: Karras after a Normal first
/// pass is another picture than "Use same scheduler", and the native job's with
/// `refine.schedule: karras`. Before, it was dropped: the second pass sampled over Normal.
/// (Four second-pass steps at 0.6 run the last two, whose σs the two schedules do not share:
/// two steps would run only the last, at σ_min in both.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hires_schedule_is_the_second_passs_own() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let picture = |answer: &Value| image::load_from_memory(&unb64(&answer["images"][0])).expect("png").to_rgb8();
    let mut body = json!({"prompt": "a red door", "seed": 7, "steps": 3, "cfg_scale": 7, "width": 64, "height": 64,
        "sampler_name": "Euler", "scheduler": "Normal", "enable_hr": true, "hr_scale": 1.5, "hr_upscaler": "Latent",
        "denoising_strength": 0.6, "hr_second_pass_steps": 4, "hr_scheduler": "Use same scheduler"});
    let (same, _) = generated(&c, &d, "/sdapi/v1/txt2img", &body).await;
    body["hr_scheduler"] = json!("Karras");
    let (karras, info) = generated(&c, &d, "/sdapi/v1/txt2img", &body).await;
    assert!(picture(&karras) != picture(&same), "hr_scheduler Karras sampled over the first pass's Normal");
    let text = info["infotexts"][0].as_str().unwrap_or_default();
    assert!(text.contains("Sampler: Euler, Schedule type: Normal,") && text.contains("Hires schedule type: Karras,"));

    let native = json!({"prompt": "a red door", "model": TINY_SD, "width": 64, "height": 64, "steps": 3,
        "guidance": 7, "seed": 7, "scheduler": "euler", "schedule": "normal", "noise": "torch_cpu",
        "sample_as": "a1111", "preview_every": 0, "refine": {"from": "latent", "strength": 0.6, "steps_mode": "run", "steps": 4, "schedule": "karras",
        "resize": {"width": 96, "height": 96, "method": "bilinear"}}});
    let (status, job) = post(&c, &d, "/api/v1/images", &native).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(&c, &d, id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!((&done["state"], &done["params"]["refine"]["schedule"]), (&json!("succeeded"), &json!("karras")));
    let png = common::render::artifact(&c, &d, id, "refined.png").await;
    assert!(image::load_from_memory(&png).expect("png").to_rgb8() == picture(&karras), "not the native job's");
}

/// A 64² picture and an A1111 mask of its left half.
fn picture_and_masks() -> (Vec<u8>, Vec<(Value, Value)>) {
    let picture = png(image::open(common::fixture("reference/sd/init_64.png")).expect("init picture"));
    let mask =
        |f: &dyn Fn(bool) -> Rgba<u8>| png(DynamicImage::ImageRgba8(RgbaImage::from_fn(64, 64, |x, _| f(x < 32))));
    let grey = |v: u8| Rgba([v, v, v, 255]);
    let masks = vec![
        // White redraws (A1111's brush colour).
        (json!(b64(&mask(&|left| if left { grey(255) } else { grey(0) }))), json!(0)),
        // Inverted: black redraws.
        (json!(b64(&mask(&|left| if left { grey(0) } else { grey(255) }))), json!(1)),
        // With transparency, by its alpha: opaque redraws (A1111's `create_binary_mask`).
        (json!(b64(&mask(&|left| Rgba([9, 9, 9, if left { 255 } else { 0 }])))), json!(0)),
    ];
    (picture, masks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn img2img_with_a_mask_redraws_only_the_masked_half() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let (picture, masks) = picture_and_masks();
    let input = image::load_from_memory(&picture).expect("picture").to_rgb8();
    let mut outputs = Vec::new();
    for (mask, invert) in masks {
        let body = json!({"prompt": "a red door", "seed": 99, "steps": 6, "denoising_strength": 0.9,
            "init_images": [format!("data:image/png;base64,{}", b64(&picture))], "mask": mask,
            "inpainting_mask_invert": invert, "mask_blur": 4, "inpainting_fill": 1, "resize_mode": 0});
        let (answer, info) = generated(&c, &d, "/sdapi/v1/img2img", &body).await;
        let bytes = unb64(&answer["images"][0]);
        assert_eq!(parameters_text(&bytes), info["infotexts"][0].as_str().expect("text"));
        let out = image::load_from_memory(&bytes).expect("a picture").to_rgb8();
        assert_eq!(out.dimensions(), (64, 64), "the picture's own size when none is asked");
        let right = |img: &image::RgbImage| {
            img.enumerate_pixels().filter(|(x, ..)| *x >= 32).map(|(.., p)| *p).collect::<Vec<_>>()
        };
        assert_eq!(right(&out), right(&input), "invert {invert}: the unmasked half is the picture's own");
        let redrawn = out.enumerate_pixels().filter(|(x, _, p)| *x < 26 && input.get_pixel(*x, 0) != *p).count();
        assert!(redrawn > 26 * 64 / 2, "invert {invert}: the masked half is redrawn ({redrawn} px)");
        assert_eq!(answer["parameters"]["init_images"], Value::Null, "not echoed unless asked");
        outputs.push(bytes);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "the three masks say the same half: the same pixels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_models_lists_the_models_and_options_sets_the_one_txt2img_uses() {
    let models = models_dir(false);
    std::os::unix::fs::symlink(common::source_tree().join("models/demo/shapes"), models.path().join("demo-shapes"))
        .expect("link the demo model");
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let listed: Value = c.get(d.at("/sdapi/v1/sd-models")).send().await.expect("sd-models").json().await.expect("json");
    let mut titles: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|m| m["title"].as_str()).collect();
    titles.sort_unstable();
    assert_eq!(titles, ["demo-shapes", TINY_SD], "{listed}");
    for model in [TINY_SD, "demo-shapes"] {
        // As Open WebUI sets its model: it reads the options and sends them all back.
        let mut options: Value =
            c.get(d.at("/sdapi/v1/options")).send().await.expect("get").json().await.expect("json");
        options["sd_model_checkpoint"] = json!(model);
        let (status, answer) = post(&c, &d, "/sdapi/v1/options", &options).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let read: Value = c.get(d.at("/sdapi/v1/options")).send().await.expect("get").json().await.expect("json");
        assert_eq!(read["sd_model_checkpoint"], model);
        let body = json!({"prompt": "a red door", "seed": 1, "steps": 2, "width": 64, "height": 64});
        let (_, info) = generated(&c, &d, "/sdapi/v1/txt2img", &body).await;
        assert_eq!(info["sd_model_name"], model, "txt2img draws with the model options set");
    }
    let (status, answer) = post(&c, &d, "/sdapi/v1/options", &json!({"sd_model_checkpoint": "nonesuch"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(answer["detail"].as_str().is_some_and(|m| m.starts_with("sd_model_checkpoint")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_carry_a_key_and_refusals_come_in_a1111s_shape() {
    let models = models_dir(false);
    std::os::unix::fs::symlink(common::source_tree().join("models/demo/shapes"), models.path().join("demo-shapes"))
        .expect("link the demo model");
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let (_, admin) = common::api::create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, client) = common::api::create_key(&d, Some(&admin), json!({"name": "webui"})).await;
    let c = reqwest::Client::new();
    let models_with = |auth: Option<String>| {
        let mut r = c.get(d.at("/sdapi/v1/sd-models"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    // Open WebUI's `AUTOMATIC1111_API_AUTH` is `user:password`: any user, the key as password.
    let basic = |user: &str, key: &str| Some(format!("Basic {}", b64(format!("{user}:{key}").as_bytes())));
    let resp = models_with(basic("open-webui", &client)).await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    for (auth, what) in [(None, "none"), (Some(String::new()), "empty"), (basic("me", "not-a-key"), "a wrong one")] {
        let resp = models_with(auth).await.expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"reelbox\"", "{what}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "HTTPException", "{what}: {body}");
        assert!(body["errors"].as_str().is_some_and(|e| e.starts_with("401: ")), "{what}: {body}");
    }
    // A client key's pick is its own (SillyTavern and Open WebUI pick a model only through
    // options): its options and its requests naming no model follow it, while the box's
    // default, an admin's to change, stays for everyone else.
    let keyed = common::api::keyed_client(&client);
    let admin_client = common::api::keyed_client(&admin);
    let daemon = &d;
    let checkpoint = |c: reqwest::Client| async move {
        let options: Value =
            c.get(daemon.at("/sdapi/v1/options")).send().await.expect("get").json().await.expect("json");
        options["sd_model_checkpoint"].as_str().expect("a model").to_string()
    };
    let default = checkpoint(keyed.clone()).await;
    let other = if default == TINY_SD { "demo-shapes" } else { TINY_SD };
    let (status, answer) = post(&keyed, &d, "/sdapi/v1/options", &json!({"sd_model_checkpoint": default})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = post(&keyed, &d, "/sdapi/v1/options", &json!({"sd_model_checkpoint": other})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(checkpoint(keyed.clone()).await, other, "the key's own pick");
    assert_eq!(checkpoint(admin_client.clone()).await, default, "the box's default is unchanged");
    let drawn = |c: reqwest::Client| async move {
        let body = json!({"prompt": "a red door", "steps": 1, "width": 64, "height": 64, "seed": 1});
        let (status, answer) = post(&c, daemon, "/sdapi/v1/txt2img", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let info: Value = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info json");
        info["sd_model_name"].as_str().expect("model").to_string()
    };
    assert_eq!(drawn(keyed.clone()).await, other, "a request naming no model draws with the key's pick");
    assert_eq!(drawn(admin_client.clone()).await, default, "and another caller's with the default");
    let (status, answer) = post(&admin_client, &d, "/sdapi/v1/options", &json!({"sd_model_checkpoint": other})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(checkpoint(admin_client.clone()).await, other, "an admin's pick is the box's default");

    // Refusals name the request's field, in A1111's shape.
    let refused = [
        (json!({"prompt": "x", "sampler_name": "Heun"}), "sampler_name"),
        (json!({"prompt": "x", "sampler_name": "Euler", "scheduler": "Beta"}), "scheduler"),
        (json!({"prompt": "x", "batch_size": 4, "n_iter": 3}), "batch_size"),
        (json!({"prompt": "", "steps": 2}), "prompt"),
        (json!({"prompt": "x", "cfg_scale": 99}), "cfg_scale"),
        (json!({"prompt": "x", "width": "wide"}), "width"),
        (json!({"prompt": "x", "enable_hr": "yes"}), "enable_hr"),
        (json!({"prompt": "x", "enable_hr": true, "hr_upscaler": "4x-Nonesuch"}), "hr_upscaler"),
    ];
    for (body, field) in refused {
        let (status, answer) = post(&keyed, &d, "/sdapi/v1/txt2img", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"], "HTTPException", "{answer}");
        let detail = answer["detail"].as_str().expect("detail");
        assert!(detail.starts_with(field), "{body}: {field} first in {detail:?}");
    }
    let (status, answer) = post(&keyed, &d, "/sdapi/v1/img2img", &json!({"prompt": "x", "init_images": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer["detail"].as_str().is_some_and(|m| m.starts_with("init_images")), "{answer}");
    let resp = keyed.get(d.at("/sdapi/v1/interrogate")).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.expect("json");
    assert!(body["detail"].as_str().is_some_and(|m| m.contains("/sdapi/v1/txt2img")), "{body}");
    let listed: Value = keyed.get(d.at("/sdapi/v1/samplers")).send().await.expect("get").json().await.expect("json");
    let names: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["DPM++ 2M", "Euler a", "Euler", "LCM", "DDIM", "PLMS"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_follows_the_callers_job_and_a_client_that_hangs_up_cancels_it() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("config.toml");
    std::fs::write(&config, "[openai]\nhangup_grace_s = 1\n").expect("config");
    let d = start_daemon_with(data.path(), models.path(), &[("REELBOX_CONFIG", config.to_str().expect("utf-8"))]);
    let c = reqwest::Client::new();
    let idle: Value = c.get(d.at("/sdapi/v1/progress")).send().await.expect("progress").json().await.expect("json");
    assert_eq!((idle["progress"].clone(), idle["state"]["job_count"].clone()), (json!(0.0), json!(0)), "{idle}");
    let resp = c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    assert_eq!(resp.status(), StatusCode::OK);
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().expect("client");
    let body = json!({"prompt": "a red door", "steps": 2, "width": 64, "height": 64});
    let err = impatient.post(d.at("/sdapi/v1/txt2img")).json(&body).send().await.expect_err("times out");
    assert!(err.is_timeout(), "{err}");
    let waiting: Value = c.get(d.at("/sdapi/v1/progress")).send().await.expect("progress").json().await.expect("json");
    assert_eq!(
        (waiting["progress"].clone(), waiting["state"]["job_count"].clone()),
        (json!(0.0), json!(1)),
        "{waiting}"
    );
    let t0 = Instant::now();
    loop {
        let resp = c.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs");
        let jobs: Value = resp.json().await.expect("json");
        if jobs["jobs"][0]["state"] == "canceled" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the job of a client that hung up stays: {jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = c.post(d.at("/sdapi/v1/interrupt")).send().await.expect("interrupt");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_says_how_far_the_running_picture_is_and_interrupt_stops_it() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    // Long enough to be seen running: 8 pictures of 150 steps.
    let body = json!({"prompt": "a red door", "steps": 150, "width": 256, "height": 256, "batch_size": 8});
    let waiting = tokio::spawn({
        let (c, url) = (c.clone(), d.at("/sdapi/v1/txt2img"));
        async move {
            let resp = c.post(url).json(&body).send().await.expect("txt2img");
            (resp.status(), resp.json::<Value>().await.expect("json"))
        }
    });
    let t0 = Instant::now();
    let running = loop {
        let p: Value = c.get(d.at("/sdapi/v1/progress")).send().await.expect("progress").json().await.expect("json");
        if p["progress"].as_f64().is_some_and(|f| f > 0.0) {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(60) && !waiting.is_finished(), "never seen running: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(running["progress"].as_f64().is_some_and(|f| f < 1.0), "{running}");
    assert!(running["eta_relative"].as_f64().is_some_and(|s| s >= 0.0), "{running}");
    assert_eq!(running["state"]["job_count"], 1, "{running}");
    assert!(running["state"]["sampling_steps"].as_u64().is_some_and(|n| n > 0), "{running}");
    assert_eq!(running["current_image"], Value::Null);
    let resp = c.post(d.at("/sdapi/v1/interrupt")).send().await.expect("interrupt");
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, answer) = waiting.await.expect("join");
    assert_eq!(status, StatusCode::CONFLICT, "the interrupted request says its job was canceled: {answer}");
    assert!(answer["detail"].as_str().is_some_and(|m| m.contains("canceled")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webuiapi_logs_in_with_a_key_picks_the_model_and_draws_and_inpaints() {
    let models = models_dir(false);
    std::os::unix::fs::symlink(common::source_tree().join("models/demo/shapes"), models.path().join("demo-shapes"))
        .expect("link the demo model");
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let (_, key) = common::api::create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let picture = data.path().join("picture.png");
    std::fs::copy(common::fixture("reference/sd/init_64.png"), &picture).expect("picture");
    let args = vec![d.url.clone(), key, TINY_SD.to_string(), picture.to_string_lossy().into_owned()];
    let summary = run_client("a1111_client.py", args).await;
    assert_eq!(summary["models"], json!(["demo-shapes", TINY_SD]), "{summary}");
    assert_eq!(summary["checkpoint"], TINY_SD, "util_set_model set it through /options: {summary}");
    assert_eq!(
        summary["txt2img"],
        json!({"sizes": [[96, 64], [96, 64]], "seeds": [42, 43], "model": TINY_SD, "infotexts_match": true})
    );
    assert_eq!(summary["img2img"], json!({"size": [64, 64], "kept_right_half": true, "redrew_left_half": true}));
}
