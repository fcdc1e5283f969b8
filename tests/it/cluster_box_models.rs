//! A head that hands out all its work (`local_work = false`) need not hold the models it
//! hands out: a picture whose model only a worker box has is accepted, filled from that
//! box's heartbeat (the model's size and defaults) and made there; a model neither the head
//! nor any box has is still refused, saying it was looked for on the boxes too.

use crate::cluster_support;
use crate::common;

use std::time::Duration;

use cluster_support::{Nats, WorkerProc, stage_devices, start_head, start_head_with, wait_boxes};
use common::daemon::{is_final, wait_job};
use common::provision;
use common::render::{check_film, models_dir, render_request};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_whose_model_only_a_worker_box_has_is_made_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let models = models.to_str().expect("utf-8");
    let nats = Nats::start(dir.path());
    // The head's own models dir (under its data dir) is empty.
    let head = start_head(&dir.path().join("head"), &nats, false);
    let _w1 = WorkerProc::start_with(&dir.path().join("w1"), &nats, "w1", &["--models-dir", models]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    // Named, and left to the default (the only diffusion model any box has); sized by the
    // request, and by the model's own size and steps as the box sent them.
    for body in [
        json!({"prompt": "a red circle", "width": 256, "height": 256}),
        json!({"prompt": "a blue square", "model": "demo-shapes"}),
    ] {
        let r = http.post(head.at("/api/v1/images")).json(&body).send().await.expect("submit");
        let status = r.status();
        let j: Value = r.json().await.expect("json");
        assert_eq!(status, 202, "{body} answered {j}");
        let id = j["id"].as_str().expect("id");
        let done = wait_job(&http, &head, id, Duration::from_secs(120), is_final).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(stage_devices(&done), ["w1/cpu"], "made on the box with the model: {done}");
        let image = done["stages"][0]["artifacts"][0].as_str().expect("image id");
        let bytes = http.get(head.at(&format!("/api/v1/artifacts/{image}"))).send().await.expect("get");
        assert!(bytes.bytes().await.expect("bytes").starts_with(b"\x89PNG"), "the picture came home as a PNG");
    }

    // An OpenAI client's picture, by the box's model and by the default.
    for model in ["demo-shapes", "dall-e-2"] {
        let body = json!({"prompt": "a red door", "model": model, "size": "64x64", "response_format": "b64_json"});
        let r = http.post(head.at("/v1/images/generations")).json(&body).send().await.expect("submit");
        let status = r.status();
        let answer: Value = r.json().await.expect("json");
        assert_eq!(status, 200, "{model}: {answer}");
        assert!(answer["data"][0]["b64_json"].as_str().is_some_and(|b| !b.is_empty()), "{answer}");
    }

    // Neither the head nor any box has these: refused at once, saying where it looked.
    for (model, words) in [
        ("sd-turbo", "diffusion model \"sd-turbo\" is not installed here nor on any worker box"),
        ("no-such-model", "not installed here nor on any worker box"),
    ] {
        let body = json!({"prompt": "a red circle", "model": model});
        let r = http.post(head.at("/api/v1/images")).json(&body).send().await.expect("submit");
        let status = r.status();
        let j: Value = r.json().await.expect("json");
        assert_eq!(status, 400, "{model}: {j}");
        assert_eq!(j["error"]["field"], "model", "{j}");
        let message = j["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{model}: {message}");
    }
}

/// The whole render, every model (the picture's, the voice, lip-sync, upscale) only on the
/// worker box: accepted by a head that has none of them, and its film comes home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_whose_models_only_a_worker_box_has_comes_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let models = models.to_str().expect("utf-8");
    let runtime = provision::runtime();
    let runtime = runtime.to_str().expect("utf-8");
    let nats = Nats::start(dir.path());
    let head = start_head_with(&dir.path().join("head"), &nats, false, &[("REELBOX_ONNXRUNTIME", runtime)]);
    let args = ["--models-dir", models];
    let _w1 = WorkerProc::start_env(&dir.path().join("w1"), &nats, "w1", &args, &[("REELBOX_ONNXRUNTIME", runtime)]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    let body = render_request(&http, &head, true).await;
    let r = http.post(head.at("/api/v1/jobs")).json(&body).send().await.expect("submit");
    let status = r.status();
    let job: Value = r.json().await.expect("json");
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let done = wait_job(&http, &head, id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(stage_devices(&done).iter().all(|d| d == "w1/cpu"), "a stage ran off the box: {done}");
    check_film(&http, &head, id, dir.path()).await;
}

/// A head that runs work itself (`local_work = true`) keeps a model only a box has off its
/// own devices: the picture is made on the box, not failed on the head for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_works_too_leaves_a_model_it_lacks_to_the_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let models = models.to_str().expect("utf-8");
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, true);
    let _w1 = WorkerProc::start_with(&dir.path().join("w1"), &nats, "w1", &["--models-dir", models]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    let body = json!({"prompt": "a green triangle", "model": "demo-shapes", "width": 64, "height": 64, "steps": 1});
    let r = http.post(head.at("/api/v1/images")).json(&body).send().await.expect("submit");
    let status = r.status();
    let j: Value = r.json().await.expect("json");
    assert_eq!(status, 202, "{j}");
    let done = wait_job(&http, &head, j["id"].as_str().expect("id"), Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(stage_devices(&done), ["w1/cpu"], "made on the box with the model: {done}");
}
