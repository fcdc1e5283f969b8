//! A head that hands out all its work (`local_work = false`) need not hold the models it
//! hands out: a picture whose model only a worker box has is accepted, filled from that
//! box's heartbeat (the model's size and defaults) and made there; a model neither the head
//! nor any box has is still refused, saying it was looked for on the boxes too.

use crate::cluster_support;
use crate::common;

use std::time::Duration;

use cluster_support::{Nats, WorkerProc, stage_devices, start_head, start_head_with, wait_boxes};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::provision;
use common::render::{check_film, models_dir, render_request};
use serde_json::{Value, json};

/// A head whose own models dir (under its data dir) is empty and box `w1` with the demo
/// diffusion model, joined; the temporary dir and NATS server live as long as they do.
async fn head_and_box_with_demo_shapes(local_work: bool) -> (tempfile::TempDir, Nats, DaemonProc, WorkerProc) {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let models = models.to_str().expect("utf-8");
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, local_work);
    let w1 = WorkerProc::start_with(&dir.path().join("w1"), &nats, "w1", &["--models-dir", models]);
    wait_boxes(&reqwest::Client::new(), &head, &["w1"]).await;
    (dir, nats, head, w1)
}

/// Submits `body` to the head's `path` and waits for the job: it must be accepted, succeed,
/// and every stage of it run on `w1` (the box with the models). Returns the finished job.
async fn made_on_w1(http: &reqwest::Client, head: &DaemonProc, path: &str, body: &Value) -> Value {
    let r = http.post(head.at(path)).json(body).send().await.expect("submit");
    let status = r.status();
    let j: Value = r.json().await.expect("json");
    assert_eq!(status, 202, "{body} answered {j}");
    let done = wait_job(http, head, j["id"].as_str().expect("id"), Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(stage_devices(&done).iter().all(|d| d == "w1/cpu"), "a stage ran off the box with the models: {done}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_whose_model_only_a_worker_box_has_is_made_there() {
    let (_dir, _nats, head, _w1) = head_and_box_with_demo_shapes(false).await;
    let http = reqwest::Client::new();

    // Named, and left to the default (the only diffusion model any box has); sized by the
    // request, and by the model's own size and steps as the box sent them.
    for body in [
        json!({"prompt": "a red circle", "width": 256, "height": 256}),
        json!({"prompt": "a blue square", "model": "demo-shapes"}),
    ] {
        let done = made_on_w1(&http, &head, "/api/v1/images", &body).await;
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
    let done = made_on_w1(&http, &head, "/api/v1/jobs", &body).await;
    check_film(&http, &head, done["id"].as_str().expect("id"), dir.path()).await;
}

/// A head that runs work itself (`local_work = true`) keeps a model only a box has off its
/// own devices: the picture is made on the box, not failed on the head for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_works_too_leaves_a_model_it_lacks_to_the_box() {
    let (_dir, _nats, head, _w1) = head_and_box_with_demo_shapes(true).await;
    let http = reqwest::Client::new();

    let body = json!({"prompt": "a green triangle", "model": "demo-shapes", "width": 64, "height": 64, "steps": 1});
    made_on_w1(&http, &head, "/api/v1/images", &body).await;
}
