//! ComfyUI workflows that end with an upscale (UpscaleModelLoader → ImageUpscaleWithModel),
//! against the real daemon, the tiny SD model and the tiny x4 upscaler imported as a user's
//! `4x-UltraSharp`: an uploaded picture's upscale runs as an `upscale` job, a sampled
//! picture's as the `image` job's second stage with each output under its own node; the
//! socket names the upscale node while it runs; bad upscale nodes get node errors. Every
//! one of these workflows was refused before: "Node 'UpscaleModelLoader' not found".

use crate::common;

use std::time::{Duration, Instant};

use common::compat::{models_dir, start_daemon};
use common::daemon::DaemonProc;
use common::media::{png, test_picture};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::comfy_compat::{Socket, connect, default_workflow, history_of, http, queue_prompt};

/// The name the user's upscaler is imported under, and the file their workflows name.
pub(crate) const UPSCALER: &str = "4x-UltraSharp";
pub(crate) const UPSCALER_FILE: &str = "4x-UltraSharp.pth";

/// A models dir with tiny-sd and the tiny x4 upscaler imported as [`UPSCALER`].
pub(crate) fn models_with_upscaler(home: &std::path::Path) -> tempfile::TempDir {
    let models = models_dir(false);
    let fixture = common::fixture("models/tiny-esrgan-x4");
    common::tools::import_bare(home, models.path(), UPSCALER, "upscale", &fixture);
    models
}

/// `picture` uploaded through `/upload/image`: the name LoadImage takes.
pub(crate) async fn upload(c: &reqwest::Client, d: &DaemonProc, name: &str, picture: &image::RgbImage) -> String {
    let part = reqwest::multipart::Part::bytes(png(picture)).file_name(name.to_string()).mime_str("image/png");
    let form = reqwest::multipart::Form::new().part("image", part.expect("mime"));
    let up: Value =
        c.post(d.at("/upload/image")).multipart(form).send().await.expect("upload").json().await.expect("json");
    up["name"].as_str().expect("name").to_string()
}

/// ComfyUI's upscale of an uploaded picture: LoadImage → ImageUpscaleWithModel → SaveImage.
fn upscale_workflow(image: &str, model_name: &str) -> Value {
    json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": "upscaled", "images": ["3", 0]}}
    })
}

/// The text messages of one prompt until its `executing` with `node: null`.
pub(crate) async fn messages_until_done(socket: &mut Socket, prompt_id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "no end of prompt; saw {seen:?}");
        let msg = match tokio::time::timeout(Duration::from_secs(60), socket.next()).await {
            Ok(Some(Ok(m))) => m,
            other => panic!("socket ended: {other:?}; saw {seen:?}"),
        };
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).expect("json");
        if v["type"] == "status" {
            continue;
        }
        assert_eq!(v["data"]["prompt_id"], prompt_id, "{v}");
        let done = v["type"] == "executing" && v["data"]["node"].is_null();
        seen.push(v);
        if done {
            return seen;
        }
    }
}

/// `(type, node)` of each message (`executed` and `progress` name their node too).
pub(crate) fn steps(messages: &[Value]) -> Vec<(String, String)> {
    let node = |v: &Value| v["data"]["node"].as_str().or(v["data"]["node_id"].as_str()).unwrap_or("").to_string();
    messages.iter().map(|v| (v["type"].as_str().unwrap_or("").to_string(), node(v))).collect()
}

/// The picture `/view` serves for an `{filename, subfolder, type}` of an output.
pub(crate) async fn view(c: &reqwest::Client, d: &DaemonProc, image: &Value) -> image::DynamicImage {
    let query = [("filename", &image["filename"]), ("subfolder", &image["subfolder"]), ("type", &image["type"])]
        .map(|(k, v)| (k, v.as_str().expect("a string").to_string()));
    let resp = c.get(d.at("/view")).query(&query).send().await.expect("view");
    assert_eq!(resp.status(), 200, "{image}");
    image::load_from_memory(&resp.bytes().await.expect("bytes")).expect("a picture")
}

pub(crate) async fn get(c: &reqwest::Client, d: &DaemonProc, path: &str) -> Value {
    c.get(d.at(path)).send().await.expect("get").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploads_upscale_runs_as_an_upscale_job_and_comes_back_four_times_larger() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = http();
    // The nodes and the folder, as ComfyUI's front end and scripts read them.
    let info = get(&c, &d, "/object_info").await;
    let choices = &info["UpscaleModelLoader"]["input"]["required"]["model_name"][0];
    assert!(choices.as_array().is_some_and(|m| m.contains(&json!(UPSCALER))), "{}", info["UpscaleModelLoader"]);
    assert_eq!(info["UpscaleModelLoader"]["output"], json!(["UPSCALE_MODEL"]));
    let upscale = &info["ImageUpscaleWithModel"];
    assert_eq!(upscale["input"]["required"], json!({"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]}));
    assert_eq!((&upscale["output"], &upscale["category"]), (&json!(["IMAGE"]), &json!("image/upscaling")));
    assert_eq!(get(&c, &d, "/api/object_info/ImageUpscaleWithModel").await["ImageUpscaleWithModel"], *upscale);
    assert_eq!(get(&c, &d, "/models").await, json!(["checkpoints", "upscale_models", "loras"]));
    assert_eq!(get(&c, &d, "/models/upscale_models").await, *choices);

    let name = upload(&c, &d, "cat.png", &test_picture(48, 40, 5)).await;
    let mut socket = connect(&d, "up-a").await;
    let id = queue_prompt(&c, &d, json!({"prompt": upscale_workflow(&name, UPSCALER_FILE), "client_id": "up-a"})).await;
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!((&job["kind"], &job["params"]["model"]), (&json!("upscale"), &json!(UPSCALER)), "{job}");

    let seen = steps(&messages_until_done(&mut socket, &id).await);
    let at = |step: (&str, &str)| {
        seen.iter()
            .position(|(t, n)| (t.as_str(), n.as_str()) == step)
            .unwrap_or_else(|| panic!("no {step:?} in {seen:?}"))
    };
    assert!(at(("executing", "1")) < at(("executing", "3")), "{seen:?}");
    assert!(at(("executing", "3")) < at(("progress", "3")), "progress names the upscale node: {seen:?}");
    assert!(at(("progress", "3")) < at(("executed", "4")), "{seen:?}");
    assert!(at(("executed", "4")) < at(("execution_success", "")), "{seen:?}");
    assert!(seen.iter().all(|(t, n)| t != "progress" || n == "3"), "{seen:?}");

    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let images = entry["outputs"]["4"]["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{entry}");
    assert!(images[0]["filename"].as_str().is_some_and(|f| f.starts_with("upscaled_")), "{entry}");
    let picture = view(&c, &d, &images[0]).await;
    assert_eq!((picture.width(), picture.height()), (192, 160), "4x the 48x40 upload");
}

/// The default workflow with its picture upscaled and saved too: two outputs.
fn sampled_and_upscaled() -> Value {
    let mut g = default_workflow("tiny-sd", 4);
    g["10"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": UPSCALER_FILE}});
    g["11"] = json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["10", 0], "image": ["8", 0]}});
    g["12"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "big", "images": ["11", 0]}});
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_picture_and_its_upscale_are_each_saved_under_their_own_node() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = http();
    let mut socket = connect(&d, "up-b").await;
    let id = queue_prompt(&c, &d, json!({"prompt": sampled_and_upscaled(), "client_id": "up-b"})).await;
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!((&job["kind"], &job["params"]["upscale_model"]), (&json!("image"), &json!(UPSCALER)), "{job}");

    let seen = steps(&messages_until_done(&mut socket, &id).await);
    let at = |step: (&str, &str)| {
        seen.iter()
            .position(|(t, n)| (t.as_str(), n.as_str()) == step)
            .unwrap_or_else(|| panic!("no {step:?} in {seen:?}"))
    };
    // The sampler, its picture saved, then the upscale with its own progress, then its output.
    assert!(at(("progress", "3")) < at(("executed", "9")), "{seen:?}");
    assert!(at(("executed", "9")) < at(("executing", "11")), "{seen:?}");
    assert!(at(("executing", "11")) < at(("progress", "11")), "{seen:?}");
    assert!(at(("progress", "11")) < at(("executed", "12")), "{seen:?}");
    assert!(at(("executed", "12")) < at(("execution_success", "")), "{seen:?}");

    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let (small, big) = (&entry["outputs"]["9"]["images"], &entry["outputs"]["12"]["images"]);
    assert_eq!((small.as_array().map(Vec::len), big.as_array().map(Vec::len)), (Some(1), Some(1)), "{entry}");
    assert!(big[0]["filename"].as_str().is_some_and(|f| f.starts_with("big_")), "{entry}");
    let (small, big) = (view(&c, &d, &small[0]).await, view(&c, &d, &big[0]).await);
    assert_eq!((small.width(), small.height()), (64, 64));
    assert_eq!((big.width(), big.height()), (256, 256), "the model's 4x of the sampled picture");
    // The upscale is of that very picture: scaled back down, it is close to it.
    let down = big.resize_exact(64, 64, image::imageops::FilterType::Triangle).to_rgb8();
    let diff: u64 = down.as_raw().iter().zip(small.to_rgb8().as_raw()).map(|(a, b)| u64::from(a.abs_diff(*b))).sum();
    assert!(diff / (64 * 64 * 3) < 40, "mean difference {} per channel", diff / (64 * 64 * 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upscale_that_fails_is_reported_at_the_upscale_node() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = http();
    let mut socket = connect(&d, "up-c").await;
    // Accepted while the upscaler is there, which is gone by the time its stage runs.
    assert_eq!(c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    let id = queue_prompt(&c, &d, json!({"prompt": sampled_and_upscaled(), "client_id": "up-c"})).await;
    std::fs::remove_file(models.path().join(UPSCALER).join("model.onnx")).expect("remove the upscaler");
    assert_eq!(c.post(d.at("/api/v1/queue/resume")).send().await.expect("resume").status(), 200);

    let messages = messages_until_done(&mut socket, &id).await;
    let error = messages.iter().find(|m| m["type"] == "execution_error").expect("an execution_error");
    assert_eq!(
        (&error["data"]["node_id"], &error["data"]["node_type"]),
        (&json!("11"), &json!("ImageUpscaleWithModel"))
    );
    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
    let in_history = entry["status"]["messages"].as_array().and_then(|m| m.iter().find(|m| m[0] == "execution_error"));
    assert_eq!(in_history.map(|m| &m[1]["node_id"]), Some(&json!("11")), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upscale_nodes_get_node_errors_naming_the_node_and_input() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = http();
    let small = upload(&c, &d, "cat.png", &test_picture(48, 40, 5)).await;
    // Within what uploads may be (limits.max_upload_side), past what upscale takes.
    let wide = upload(&c, &d, "wide.png", &test_picture(2100, 64, 3)).await;
    let mut wrong_link = upscale_workflow(&small, UPSCALER);
    wrong_link["3"]["inputs"]["upscale_model"] = json!(["1", 0]);
    let cases = [
        (upscale_workflow(&small, "RealESRGAN_x4plus.pth"), "2", "model_name", "value_not_in_list"),
        (wrong_link, "3", "upscale_model", "return_type_mismatch"),
        (upscale_workflow(&wide, UPSCALER), "3", "image", "custom_validation_failed"),
    ];
    for (graph, node, input, kind) in cases {
        let resp = c.post(d.at("/prompt")).json(&json!({"prompt": graph})).send().await.expect("post");
        assert_eq!(resp.status(), 400, "{node}.{input}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation", "{body}");
        let errors = body["node_errors"].as_object().expect("node_errors");
        assert_eq!(errors.keys().collect::<Vec<_>>(), [node], "{body}");
        let e = &errors[node]["errors"][0];
        assert_eq!((&e["type"], &e["extra_info"]["input_name"]), (&json!(kind), &json!(input)), "{body}");
        if kind == "custom_validation_failed" {
            assert!(e["message"].as_str().is_some_and(|m| m.contains("2100x64")), "says why: {body}");
        }
    }
    // Nothing was queued by any of them.
    assert_eq!(get(&c, &d, "/api/v1/jobs").await["jobs"], json!([]));
}

/// The native route takes the same upscaler: `upscale_model` on `POST /api/v1/images` adds
/// the upscale stage, so a 64² picture comes with its 256² upscale (the field was refused as
/// unknown before; only `POST /api/v1/jobs` had it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_picture_route_upscales_when_asked() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = http();
    let body = json!({"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 3, "upscale_model": UPSCALER});
    let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
    let status = resp.status();
    let job: Value = resp.json().await.expect("json");
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let done = common::daemon::wait_job(&c, &d, id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let stages: Vec<&str> =
        done["stages"].as_array().expect("stages").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(stages, ["generate", "upscale"], "{done}");
    let png = common::render::artifact(&c, &d, id, "upscaled.png").await;
    let picture = image::load_from_memory(&png).expect("a PNG");
    assert_eq!((picture.width(), picture.height()), (256, 256));
    // A name that is no upscaler is refused naming the field, and nothing is queued.
    let bad = json!({"prompt": "a cat", "upscale_model": "tiny-sd"});
    let resp = c.post(d.at("/api/v1/images")).json(&bad).send().await.expect("post");
    let status = resp.status();
    let err: Value = resp.json().await.expect("json");
    assert_eq!((status.as_u16(), err["error"]["field"].as_str()), (400, Some("upscale_model")), "{err}");
}
