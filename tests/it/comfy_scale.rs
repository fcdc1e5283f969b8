//! ComfyUI's nodes that resize pictures without a model (ImageScale, ImageScaleBy,
//! ImageScaleToTotalPixels), against the real daemon with the tiny SD model and the tiny x4
//! upscaler: an upload's resize runs as an `upscale` job (alone, or before or after the
//! model's upscale), a sampled picture's as the `image` job's last stage, `resize`; each
//! output shows the pictures of its node at the size ComfyUI would give, and the pixels are
//! really resampled (a nearest 2× repeats every pixel). Bad scale nodes get node errors. Every
//! one of these workflows was refused before: "Node 'ImageScaleBy' not found". And an image
//! job's stages weigh what they cost: its fraction once `generate` is done is no longer 0.5.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::DaemonProc;
use common::media::test_picture;
use serde_json::{Value, json};

use crate::comfy_compat::{connect, default_workflow, history_of, http, queue_prompt};
use crate::comfy_upscale::{UPSCALER_FILE, get, messages_until_done, models_with_upscaler, steps, upload, view};

/// A daemon with tiny-sd and the tiny x4 upscaler imported as a user's, and its home.
fn daemon() -> (tempfile::TempDir, tempfile::TempDir, DaemonProc) {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = common::compat::start_daemon(&home.path().join("data"), models.path());
    (home, models, d)
}

/// An upload's pictures through `nodes` (ids "3", "4", ...; each takes the one before, the
/// first the LoadImage "1"), the last saved by node "9".
fn upload_chain(image: &str, nodes: &[Value]) -> Value {
    let mut g = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": UPSCALER_FILE}},
    });
    let mut from = "1".to_string();
    for (i, node) in nodes.iter().enumerate() {
        let id = (i + 3).to_string();
        let mut node = node.clone();
        node["inputs"]["image"] = json!([from, 0]);
        g[&id] = node;
        from = id;
    }
    g["9"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "scaled", "images": [from, 0]}});
    g
}

fn scale(width: u32, height: u32, method: &str, crop: &str) -> Value {
    json!({"class_type": "ImageScale", "inputs": {"upscale_method": method, "width": width, "height": height, "crop": crop}})
}

fn scale_by(method: &str, by: f64) -> Value {
    json!({"class_type": "ImageScaleBy", "inputs": {"upscale_method": method, "scale_by": by}})
}

fn upscale() -> Value {
    json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0]}})
}

/// Runs `graph` to its end and returns the picture its node "9" saved, and the job.
async fn run(c: &reqwest::Client, d: &DaemonProc, graph: Value) -> (image::RgbImage, Value) {
    let id = queue_prompt(c, d, json!({"prompt": graph})).await;
    let entry = history_of(c, d, &id, Duration::from_secs(60)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let images = entry["outputs"]["9"]["images"].as_array().expect("images of node 9");
    assert_eq!(images.len(), 1, "{entry}");
    assert!(images[0]["filename"].as_str().is_some_and(|f| f.starts_with("scaled_")), "{entry}");
    (view(c, d, &images[0]).await.to_rgb8(), get(c, d, &format!("/api/v1/jobs/{id}")).await)
}

fn stage_names(job: &Value) -> Vec<&str> {
    job["stages"].as_array().expect("stages").iter().filter_map(|s| s["name"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploads_scales_come_out_at_comfyuis_sizes_with_their_pixels_resampled() {
    let (_home, _models, d) = daemon();
    let c = http();
    // The nodes as ComfyUI's front end reads them.
    let info = get(&c, &d, "/object_info").await;
    let methods = json!([["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]]);
    let image_scale = &info["ImageScale"];
    assert_eq!(image_scale["input_order"]["required"], json!(["image", "upscale_method", "width", "height", "crop"]));
    assert_eq!(image_scale["input"]["required"]["upscale_method"], methods);
    assert_eq!(image_scale["input"]["required"]["crop"], json!([["disabled", "center"]]));
    assert_eq!(image_scale["input"]["required"]["width"][1]["min"], 0, "0 keeps the picture's shape");
    assert_eq!((&image_scale["output"], &image_scale["category"]), (&json!(["IMAGE"]), &json!("image/upscaling")));
    assert_eq!(info["ImageScaleBy"]["input"]["required"]["scale_by"][1]["min"], 0.01);
    let total = &info["ImageScaleToTotalPixels"]["input"]["required"];
    assert_eq!((&total["megapixels"][0], &total["megapixels"][1]["max"]), (&json!("FLOAT"), &json!(16.0)));
    assert_eq!(get(&c, &d, "/object_info/ImageScaleBy").await["ImageScaleBy"], info["ImageScaleBy"]);

    let picture = test_picture(24, 20, 3);
    let name = upload(&c, &d, "cat.png", &picture).await;
    // Nearest 2×: every pixel repeated, an `upscale` job that runs no model.
    let (doubled, job) = run(&c, &d, upload_chain(&name, &[scale_by("nearest-exact", 2.0)])).await;
    assert_eq!(doubled.dimensions(), (48, 40));
    for (x, y, p) in doubled.enumerate_pixels() {
        assert_eq!(p, picture.get_pixel(x / 2, y / 2), "pixel {x},{y} of the nearest 2×");
    }
    assert_eq!((&job["kind"], &job["params"]["model"]), (&json!("upscale"), &Value::Null), "{job}");
    assert_eq!(stage_names(&job), ["resize"]);

    // A 0 side follows the shape: round(24 × 50 / 20) = 60.
    let (tall, _) = run(&c, &d, upload_chain(&name, &[scale(0, 50, "bilinear", "disabled")])).await;
    assert_eq!(tall.dimensions(), (60, 50));
    // A center crop to a square cuts 2 columns off each side first, then resizes (here not at all).
    let (square, _) = run(&c, &d, upload_chain(&name, &[scale(20, 20, "nearest-exact", "center")])).await;
    assert_eq!(square.dimensions(), (20, 20));
    assert!(square.enumerate_pixels().all(|(x, y, p)| p == picture.get_pixel(x + 2, y)), "the middle 20×20");
    // 0.01 megapixels (10485.76 pixels) of 24×20: round(24 × 4.674) × round(20 × 4.674).
    let pixels =
        json!({"class_type": "ImageScaleToTotalPixels", "inputs": {"upscale_method": "area", "megapixels": 0.01}});
    let (sized, _) = run(&c, &d, upload_chain(&name, &[pixels])).await;
    assert_eq!(sized.dimensions(), (112, 93));
    // Area halving averages each 2×2 box.
    let (halved, _) = run(&c, &d, upload_chain(&name, &[scale_by("area", 0.5)])).await;
    assert_eq!(halved.dimensions(), (12, 10));
    let mean = |x: u32, y: u32, ch: usize| {
        let sum: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
            .iter()
            .map(|(dx, dy)| u32::from(picture.get_pixel(2 * x + dx, 2 * y + dy).0[ch]))
            .sum();
        sum as f64 / 4.0
    };
    for (x, y, p) in halved.enumerate_pixels() {
        for ch in 0..3 {
            assert!((f64::from(p.0[ch]) - mean(x, y, ch)).abs() <= 1.0, "pixel {x},{y} channel {ch}: {p:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploads_scale_before_and_after_its_upscale_gives_the_sizes_in_that_order() {
    let (_home, _models, d) = daemon();
    let c = http();
    let name = upload(&c, &d, "cat.png", &test_picture(24, 20, 5)).await;
    // Halved first (12×10), then the model's 4× (48×40).
    let (first, job) = run(&c, &d, upload_chain(&name, &[scale_by("bicubic", 0.5), upscale()])).await;
    assert_eq!(first.dimensions(), (48, 40));
    assert_eq!(stage_names(&job), ["resize", "upscale"]);
    assert_eq!(job["params"]["resize_first"], true, "{job}");
    // The model's 4× first (96×80), then halved (48×40): a 2× photo from a 4× model.
    let (after, job) = run(&c, &d, upload_chain(&name, &[upscale(), scale_by("lanczos", 0.5)])).await;
    assert_eq!(after.dimensions(), (48, 40));
    assert_eq!(stage_names(&job), ["upscale", "resize"]);
}

/// The default workflow's picture upscaled, then halved, each saved under its own node.
fn sampled_upscaled_and_halved() -> Value {
    let mut g = default_workflow("tiny-sd", 4);
    g["10"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": UPSCALER_FILE}});
    g["11"] = json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["10", 0], "image": ["8", 0]}});
    g["12"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "big", "images": ["11", 0]}});
    g["13"] = json!({"class_type": "ImageScaleBy", "inputs": {"image": ["11", 0], "upscale_method": "area", "scale_by": 0.5}});
    g["14"] = json!({"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}});
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_pictures_scale_is_the_image_jobs_last_stage_under_its_own_nodes() {
    let (_home, _models, d) = daemon();
    let c = http();
    let mut socket = connect(&d, "scale-a").await;
    let id = queue_prompt(&c, &d, json!({"prompt": sampled_upscaled_and_halved(), "client_id": "scale-a"})).await;
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["params"]["resize"], json!({"method": "area", "scale_by": 0.5}), "{job}");
    assert_eq!(stage_names(&job), ["generate", "upscale", "resize"]);

    let seen = steps(&messages_until_done(&mut socket, &id).await);
    let at = |step: (&str, &str)| {
        seen.iter()
            .position(|(t, n)| (t.as_str(), n.as_str()) == step)
            .unwrap_or_else(|| panic!("no {step:?} in {seen:?}"))
    };
    // The upscale's picture saved, then the scale node runs and its output shows its picture.
    assert!(at(("executed", "12")) < at(("executing", "13")), "{seen:?}");
    assert!(at(("executing", "13")) < at(("executed", "14")), "{seen:?}");
    assert!(at(("executed", "14")) < at(("execution_success", "")), "{seen:?}");

    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    let shown = |node: &str| entry["outputs"][node]["images"].as_array().map(Vec::len);
    assert_eq!((shown("9"), shown("12"), shown("14")), (Some(1), Some(1), Some(1)), "{entry}");
    let small = view(&c, &d, &entry["outputs"]["9"]["images"][0]).await;
    let big = view(&c, &d, &entry["outputs"]["12"]["images"][0]).await;
    let halved = view(&c, &d, &entry["outputs"]["14"]["images"][0]).await;
    assert_eq!(
        [small.width(), big.width(), halved.width(), halved.height()],
        [64, 256, 128, 128],
        "the upscale's 256² halved"
    );
    assert_eq!(entry["outputs"]["14"]["images"][0]["type"], "temp", "a PreviewImage's");
    // The very upscale, box-averaged: each pixel is its 2×2 box's mean.
    let (big, halved) = (big.to_rgb8(), halved.to_rgb8());
    let p = |x: u32, y: u32| big.get_pixel(x, y).0[0] as f64;
    let want = (p(20, 30) + p(21, 30) + p(20, 31) + p(21, 31)) / 4.0;
    assert!((f64::from(halved.get_pixel(10, 15).0[0]) - want).abs() <= 1.0);

    // Past the largest side only once the model's 4× is known (128² → 512² → 4096²): the
    // resize stage fails, and the socket and history name the scale node.
    let mut graph = sampled_upscaled_and_halved();
    graph["5"]["inputs"]["width"] = json!(128);
    graph["5"]["inputs"]["height"] = json!(128);
    graph["13"]["inputs"]["scale_by"] = json!(8.0);
    let id = queue_prompt(&c, &d, json!({"prompt": graph, "client_id": "scale-a"})).await;
    let messages = messages_until_done(&mut socket, &id).await;
    let error = messages.iter().find(|m| m["type"] == "execution_error").expect("an execution_error");
    assert_eq!((&error["data"]["node_id"], &error["data"]["node_type"]), (&json!("13"), &json!("ImageScaleBy")));
    let said = error["data"]["exception_message"].as_str().unwrap_or("");
    assert!(said.contains("4096x4096") && said.contains("limits.max_image_side"), "{error}");
    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scale_nodes_get_node_errors_naming_the_node_and_input() {
    let (_home, _models, d) = daemon();
    let c = http();
    let small = upload(&c, &d, "cat.png", &test_picture(48, 40, 5)).await;
    let wide = upload(&c, &d, "wide.png", &test_picture(512, 64, 3)).await;
    let mut too_big_sample = default_workflow("tiny-sd", 4);
    too_big_sample["5"]["inputs"]["width"] = json!(512);
    too_big_sample["10"] =
        json!({"class_type": "ImageScaleBy", "inputs": {"image": ["8", 0], "upscale_method": "area", "scale_by": 4.5}});
    too_big_sample["9"]["inputs"]["images"] = json!(["10", 0]);
    let mut scale_then_upscale = default_workflow("tiny-sd", 4);
    scale_then_upscale["10"] =
        json!({"class_type": "ImageScaleBy", "inputs": {"image": ["8", 0], "upscale_method": "area", "scale_by": 0.5}});
    scale_then_upscale["11"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": UPSCALER_FILE}});
    scale_then_upscale["12"] =
        json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["11", 0], "image": ["10", 0]}});
    scale_then_upscale["9"]["inputs"]["images"] = json!(["12", 0]);
    let cases = [
        (upload_chain(&small, &[scale_by("bislerp", 2.0)]), "3", "upscale_method", "value_not_in_list", ""),
        (upload_chain(&small, &[scale_by("area", 0.0)]), "3", "scale_by", "value_smaller_than_min", ""),
        (upload_chain(&small, &[scale_by("area", -1.0)]), "3", "scale_by", "value_smaller_than_min", ""),
        (
            upload_chain(
                &small,
                &[json!({"class_type": "ImageScale", "inputs": {"upscale_method": "area",
                "width": "wide", "height": 64, "crop": "disabled"}})],
            ),
            "3",
            "width",
            "invalid_input_type",
            "",
        ),
        (upload_chain(&small, &[scale(4096, 64, "area", "disabled")]), "3", "width", "value_bigger_than_max", ""),
        // Sizes only the picture tells: past limits.max_image_side, or no pixels at all.
        (upload_chain(&wide, &[scale_by("area", 8.0)]), "3", "scale_by", "custom_validation_failed", "4096x512"),
        (upload_chain(&small, &[scale_by("area", 0.01)]), "3", "scale_by", "custom_validation_failed", "0x0"),
        (too_big_sample, "10", "scale_by", "custom_validation_failed", "2304x288"),
        (scale_then_upscale, "12", "", "unsupported_graph", "after its upscale"),
    ];
    for (graph, node, input, kind, says) in cases {
        let resp = c.post(d.at("/prompt")).json(&json!({"prompt": graph})).send().await.expect("post");
        assert_eq!(resp.status(), 400, "{node}.{input} {kind}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation", "{body}");
        let errors = body["node_errors"].as_object().expect("node_errors");
        assert_eq!(errors.keys().collect::<Vec<_>>(), [node], "{body}");
        let e = &errors[node]["errors"][0];
        assert_eq!(e["type"], kind, "{body}");
        if !input.is_empty() {
            assert_eq!(e["extra_info"]["input_name"], input, "{body}");
        }
        assert!(e["message"].as_str().is_some_and(|m| m.contains(says)), "says why: {body}");
    }
    // Nothing was queued by any of them.
    assert_eq!(get(&c, &d, "/api/v1/jobs").await["jobs"], json!([]));
}

/// The job `body` asks `route` for, run to its end: its final view.
async fn native(c: &reqwest::Client, d: &DaemonProc, route: &str, body: Value) -> Value {
    let resp = c.post(d.at(route)).json(&body).send().await.expect("post");
    let job: Value = resp.json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{route}: {job}"));
    let done = common::daemon::wait_job(c, d, id, Duration::from_secs(60), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done
}

/// A job's PNG artifact `name`, decoded.
async fn picture_of(c: &reqwest::Client, d: &DaemonProc, job: &Value, name: &str) -> image::RgbImage {
    let id = job["id"].as_str().expect("id");
    image::load_from_memory(&common::render::artifact(c, d, id, name).await).expect("a PNG").to_rgb8()
}

/// The typed `resize` the ComfyUI nodes compile to is the native routes' too: `POST
/// /api/v1/upscale` resizes an upload (alone or before the model), `POST /api/v1/images` its
/// pictures, `POST /api/v1/jobs` either kind; a bad one is a 400 naming `resize.FIELD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_routes_resize_too_and_name_the_resize_fields() {
    let (_home, _models, d) = daemon();
    let c = http();
    let picture = test_picture(24, 20, 7);
    let input = common::api::upload(&d, None, "cat.png", common::media::png(&picture)).await;
    let input = input["id"].as_str().expect("id");

    let nearest = json!({"input": input, "resize": {"method": "nearest-exact", "scale_by": 2}});
    let job = native(&c, &d, "/api/v1/upscale", nearest).await;
    assert_eq!(stage_names(&job), ["resize"]);
    let doubled = picture_of(&c, &d, &job, "resized.png").await;
    assert!(doubled.enumerate_pixels().all(|(x, y, p)| p == picture.get_pixel(x / 2, y / 2)), "pixel-doubled");

    let shrink_first = json!({"kind": "upscale", "params": {"input": input, "model": "4x-UltraSharp",
        "resize": {"width": 12, "height": 0}, "resize_first": true}});
    let job = native(&c, &d, "/api/v1/jobs", shrink_first).await;
    assert_eq!(stage_names(&job), ["resize", "upscale"]);
    assert_eq!(picture_of(&c, &d, &job, "resized.png").await.dimensions(), (12, 10));
    assert_eq!(picture_of(&c, &d, &job, "upscaled.png").await.dimensions(), (48, 40));

    let pictures = json!({"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 3, "n": 2,
        "resize": {"method": "area", "megapixels": 0.01, "resolution_steps": 8}});
    let job = native(&c, &d, "/api/v1/images", pictures).await;
    assert_eq!(stage_names(&job), ["generate", "resize"]);
    // 0.01 MP (10485.76 pixels) of 64²: each side × 1.6 = 102.4, in steps of 8: 104.
    for name in ["resized-1.png", "resized-2.png"] {
        assert_eq!(picture_of(&c, &d, &job, name).await.dimensions(), (104, 104), "{name}");
    }

    let refused = [
        ("/api/v1/upscale", json!({"input": input, "resize": {"scale_by": 9}}), "resize.scale_by"),
        ("/api/v1/upscale", json!({"input": input, "resize": {"method": "bislerp", "scale_by": 2}}), "resize.method"),
        ("/api/v1/upscale", json!({"input": input, "resize": {"scale_by": 0.01}}), "resize.scale_by"),
        ("/api/v1/upscale", json!({"input": input, "resize_first": true}), "resize_first"),
        ("/api/v1/images", json!({"prompt": "a cat", "width": 512, "resize": {"scale_by": 8}}), "resize.scale_by"),
        ("/api/v1/images", json!({"prompt": "a cat", "resize": {"width": 64, "scale_by": 2}}), "resize.scale_by"),
        ("/api/v1/jobs", json!({"kind": "image", "params": {"prompt": "a cat", "resize": {}}}), "resize"),
    ];
    for (route, body, field) in refused {
        let resp = c.post(d.at(route)).json(&body).send().await.expect("post");
        let status = resp.status();
        let err: Value = resp.json().await.expect("json");
        assert_eq!((status.as_u16(), err["error"]["field"].as_str()), (400, Some(field)), "{route} {body}: {err}");
    }
}

/// The first view of image job `id` with `generate` done while the job still runs.
async fn at_its_upscale(c: &reqwest::Client, d: &DaemonProc, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let job = get(c, d, &format!("/api/v1/jobs/{id}")).await;
        assert_ne!(job["state"], "succeeded", "the upscale ended before a view caught it: {job}");
        if job["state"] == "running" && job["stages"][0]["state"] == "done" {
            return job;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{job}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `POST /api/v1/images` with `steps` and the upscaler: the job's id.
async fn picture_job(c: &reqwest::Client, d: &DaemonProc, steps: u32) -> String {
    // Eight pictures, so their upscale lasts long enough to be watched.
    let body = json!({"prompt": "a lighthouse", "width": 64, "height": 64, "steps": steps, "seed": 1, "n": 8,
        "upscale_model": "4x-UltraSharp", "preview_every": 0});
    let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
    let job: Value = resp.json().await.expect("json");
    job["id"].as_str().unwrap_or_else(|| panic!("{job}")).to_string()
}

/// Alike weights showed a 20-step picture half done once it was drawn and only its upscale
/// was left, and a 1-step one the same; its fraction now weighs what each stage costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_jobs_fraction_at_its_upscale_weighs_what_its_generate_cost() {
    let (_home, _models, d) = daemon();
    let c = http();
    let mut generate_weights = Vec::new();
    for steps in [20, 1] {
        let id = picture_job(&c, &d, steps).await;
        let job = at_its_upscale(&c, &d, &id).await;
        let weight = |i: usize| job["stages"][i]["weight"].as_f64().expect("a weight");
        let progress = &job["progress"];
        let within = match (progress["stage"].as_str(), progress["step"].as_f64(), progress["total"].as_f64()) {
            (Some("upscale"), Some(step), Some(total)) if total > 0.0 => step / total,
            _ => 0.0,
        };
        let fraction = progress["fraction"].as_f64().expect("fraction");
        assert!((fraction - (weight(0) + weight(1) * within)).abs() < 1e-9, "{steps} steps: {job}");
        assert!((weight(0) + weight(1) - 1.0).abs() < 1e-9, "{job}");
        generate_weights.push(weight(0));
        common::daemon::wait_job(&c, &d, &id, Duration::from_secs(120), common::daemon::is_final).await;
    }
    let [twenty, one] = generate_weights[..] else { panic!("{generate_weights:?}") };
    // A 20-step picture is most of the job at its upscale; a 1-step one is little of it.
    assert!(twenty > 0.6 && one < 0.4, "generate weighs {twenty} at 20 steps, {one} at 1");
}

/// A resize without a model runs no ONNX model, so a box without ONNX Runtime runs it: on
/// the native route, through `/api/v1/jobs` and as ComfyUI's LoadImage → ImageScale (each
/// was refused with 409 `runtime_missing`, as if the resize needed it); an upscale by a
/// model is still refused there, naming `reelbox setup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_without_a_model_runs_on_a_box_without_onnx_runtime() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = crate::comfy_upscale::models_with_upscaler(home.path());
    let env = [
        ("ORT_DYLIB_PATH", ""),
        ("REELBOX_ONNXRUNTIME", "/nonexistent/libonnxruntime.so"),
        ("REELBOX_MODELS_DIR", models.path().to_str().expect("utf8")),
    ];
    let d = DaemonProc::start(&home.path().join("data"), &env);
    let c = http();
    let picture = test_picture(24, 20, 7);
    let input = common::api::upload(&d, None, "cat.png", common::media::png(&picture)).await;
    let input = input["id"].as_str().expect("id");

    let job = native(
        &c,
        &d,
        "/api/v1/upscale",
        json!({"input": input, "resize": {"method": "nearest-exact", "scale_by": 2}}),
    )
    .await;
    let doubled = picture_of(&c, &d, &job, "resized.png").await;
    assert!(doubled.enumerate_pixels().all(|(x, y, p)| p == picture.get_pixel(x / 2, y / 2)), "pixel-doubled");
    let halved = json!({"kind": "upscale", "params": {"input": input, "resize": {"width": 12, "height": 0}}});
    let job = native(&c, &d, "/api/v1/jobs", halved).await;
    assert_eq!(picture_of(&c, &d, &job, "resized.png").await.dimensions(), (12, 10));

    let name = upload(&c, &d, "cat.png", &picture).await;
    let graph = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "3": {"class_type": "ImageScale", "inputs": {"upscale_method": "nearest-exact", "width": 48, "height": 40,
            "crop": "disabled", "image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "scaled", "images": ["3", 0]}},
    });
    let (scaled, job) = run(&c, &d, graph).await;
    assert_eq!((scaled.dimensions(), stage_names(&job)), ((48, 40), vec!["resize"]));

    let by_model = json!({"input": input, "model": "4x-UltraSharp"});
    let resp = c.post(d.at("/api/v1/upscale")).json(&by_model).send().await.expect("post");
    assert_eq!(resp.status(), 409);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "runtime_missing", "{err}");
}
