//! A head that hands out all its work (`local_work = false`) need not hold the models it
//! hands out: a picture whose model only a worker box has is accepted, filled from that
//! box's heartbeat (the model's size and defaults) and made there; a model neither the head
//! nor any box has is still refused, saying it was looked for on the boxes too. Every list
//! a client picks a model from shows the live boxes' models, and drops them once a box's
//! heartbeat expires.

use crate::cluster_support;
use crate::common;

use std::time::Duration;

use cluster_support::{Nats, WorkerProc, stage_devices, start_head, start_head_with, wait_boxes};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::provision;
use common::render::{check_film, models_dir, render_request};
use common::tools::{reelbox_cli, run_ok};
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

/// What the head's model lists say of one model.
#[derive(Debug, Default, PartialEq)]
struct Listed {
    /// ComfyUI's `CheckpointLoaderSimple` choices and `/models/checkpoints`.
    comfy: (bool, bool),
    /// OpenAI's `/v1/models`.
    openai: bool,
    /// `GET /api/v1/models`: the row's `boxes`, `state` and `origin`, when listed.
    native: Option<(Value, String, String)>,
    /// `reelbox models list --json` on the head's machine: the row's `boxes`.
    cli: Option<Value>,
    /// `reelbox models list`'s table line for it.
    table: Option<String>,
}

/// What every list on the head says of model `name` (a diffusion model or a voice).
async fn listed(http: &reqwest::Client, head: &DaemonProc, home: &std::path::Path, name: &str) -> Listed {
    let get = |path: &str| {
        let url = head.at(path);
        async move { http.get(url).send().await.expect("get").json::<Value>().await.expect("json") }
    };
    let has = |list: &Value| list.as_array().is_some_and(|l| l.iter().any(|n| n == name));
    let info = get("/object_info").await;
    let combo = &info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0];
    let ids: Vec<Value> =
        get("/v1/models").await["data"].as_array().expect("data").iter().map(|m| m["id"].clone()).collect();
    let row = |list: &Value| list["models"].as_array().expect("models").iter().find(|m| m["name"] == name).cloned();
    let native = row(&get("/api/v1/models").await).map(|m| {
        (
            m["boxes"].clone(),
            m["state"].as_str().unwrap_or_default().into(),
            m["origin"].as_str().unwrap_or_default().into(),
        )
    });
    let models = head.data_dir.join("models");
    let cli = |args: &[&str]| {
        let out = run_ok(reelbox_cli(home, &models).args(["--url", &head.url]).args(args));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let json: Value = serde_json::from_str(&cli(&["--json", "models", "list"])).expect("models list --json");
    let table = cli(&["models", "list"]);
    Listed {
        comfy: (has(combo), has(&get("/models/checkpoints").await)),
        openai: ids.iter().any(|id| id == name),
        native,
        cli: row(&json).map(|m| m["boxes"].clone()),
        table: table.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_owned),
    }
}

/// A head with no models of its own lists the models its box `w1` has (a shipped model
/// the head could pull, and a voice it knows nothing of), saying they are on `w1`; speaks
/// with that voice through OpenAI's route; and drops them from every list once `w1` is
/// gone and its heartbeat expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lists_show_a_worker_box_s_models_until_its_heartbeat_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    std::os::unix::fs::symlink(common::fixture("models/tiny-piper/en"), models.join("tiny-en")).expect("link voice");
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, false);
    let models = models.to_str().expect("utf-8");
    let mut w1 = WorkerProc::start_with(&dir.path().join("w1"), &nats, "w1", &["--models-dir", models]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;
    let home = dir.path().join("cli");

    let shapes = listed(&http, &head, &home, "demo-shapes").await;
    assert_eq!(shapes.comfy, (true, true), "ComfyUI's checkpoints: {shapes:?}");
    assert!(shapes.openai, "/v1/models: {shapes:?}");
    let w1_only = json!(["w1"]);
    assert_eq!(shapes.native, Some((w1_only.clone(), "not_installed".into(), "manifest".into())), "{shapes:?}");
    assert_eq!(shapes.cli, Some(w1_only.clone()), "models list --json: {shapes:?}");
    let line = shapes.table.unwrap_or_default();
    assert!(line.contains(" w1 ") && !line.contains("this box"), "models list: {line:?}");

    let voice = listed(&http, &head, &home, "tiny-en").await;
    assert_eq!(voice.comfy, (false, false), "a voice is no checkpoint: {voice:?}");
    assert!(voice.openai, "/v1/models: {voice:?}");
    assert_eq!(voice.native, Some((w1_only.clone(), "not_installed".into(), "box".into())), "{voice:?}");
    assert_eq!(voice.cli, Some(w1_only), "models list --json: {voice:?}");
    assert!(voice.table.is_some_and(|l| l.contains(" w1 ")), "models list shows the voice on w1");

    // A voice picked from `/v1/models` is spoken, on the box that has it.
    let body = json!({"model": "tiny-en", "voice": "alloy", "input": "Hello there.", "response_format": "wav"});
    let r = http.post(head.at("/v1/audio/speech")).json(&body).send().await.expect("speech");
    let status = r.status();
    let bytes = r.bytes().await.expect("bytes");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert!(bytes.starts_with(b"RIFF"), "a WAV came back");

    w1.kill9();
    let t0 = std::time::Instant::now();
    loop {
        let gone = listed(&http, &head, &home, "demo-shapes").await;
        if gone.native.as_ref().is_some_and(|(boxes, _, _)| boxes == &json!([])) {
            // Each list of `gone` was read at its own moment, the first ones maybe before the
            // expiry the native list saw: every list read from now on must have dropped w1.
            let gone = listed(&http, &head, &home, "demo-shapes").await;
            assert_eq!(gone.comfy, (false, false), "{gone:?}");
            assert!(!gone.openai && gone.cli == Some(json!([])), "{gone:?}");
            assert!(gone.table.is_some_and(|l| !l.contains("w1")), "models list drops w1");
            break;
        }
        // The heartbeat lives 2 s (`cluster_toml`); the head reads them every 500 ms.
        assert!(t0.elapsed() < Duration::from_secs(10), "still listed on w1 after its heartbeat expired: {gone:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        listed(&http, &head, &home, "tiny-en").await,
        Listed::default(),
        "the box's voice is gone from every list"
    );
}
