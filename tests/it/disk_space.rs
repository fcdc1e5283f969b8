//! Free disk space, as a box that fills up with films and models meets it: below
//! `limits.min_free_disk_bytes` every route that queues or stores work refuses with 507
//! in its own API's shape, saying what to delete; a pull larger than the disk's free space
//! is refused before a byte is fetched; `reelbox jobs rm` deletes finished jobs and frees
//! their files. (A real small disk, filled, is in `diskfull`.)

use crate::common;

use std::time::Duration;

use common::daemon::{DaemonProc, is_final, submit_testcard, wait_job};
use common::tools::{reelbox_cli, run_ok};
use serde_json::{Value, json};

/// A floor no disk reaches: every disk is "low".
const FLOOR: &str = "[limits]\nmin_free_disk_bytes = 1000000000000000000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_floor_every_route_that_queues_or_stores_work_refuses_with_507() {
    let root = tempfile::tempdir().expect("tempdir");
    let models = common::render::models_dir(root.path());
    let data = root.path().join("data");
    let c = reqwest::Client::new();
    // A job sent while the disk had room, whose answer the client lost.
    let card = json!({"kind": "testcard", "params": {"steps": 1}});
    let once = |d: &DaemonProc| c.post(d.at("/api/v1/jobs")).header("Idempotency-Key", "once").json(&card).send();
    let mut d = common::compat::start_daemon(&data, &models);
    let sent: Value = once(&d).await.expect("first send").json().await.expect("json");
    assert!(d.terminate().0.success());

    let config = root.path().join("config.toml");
    std::fs::write(&config, FLOOR).expect("config");
    let d = common::compat::start_daemon_with(&data, &models, &[("REELBOX_CONFIG", config.to_str().expect("utf-8"))]);
    let post = |path: &str, body: Value| c.post(d.at(path)).json(&body).send();

    // Its repeat is answered with it, as always; a bad field is named before the disk.
    let again: Value = once(&d).await.expect("repeat").json().await.expect("json");
    assert_eq!(again["id"], sent["id"], "{again}");
    let bad = post("/api/v1/jobs", json!({"kind": "testcard", "params": {"steps": "many"}})).await.expect("bad");
    assert_eq!(bad.status().as_u16(), 400);

    let native = post("/api/v1/jobs", json!({"kind": "testcard", "params": {"steps": 1}})).await.expect("native");
    assert_eq!(native.status().as_u16(), 507);
    let v: Value = native.json().await.expect("json");
    assert_eq!(v["error"]["code"], "disk_low", "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("limits.min_free_disk_bytes")), "{v}");

    // OpenAI's shape, and no automatic retry by the SDKs: a full disk stays full.
    let openai = post("/v1/images/generations", json!({"prompt": "a cat", "model": "tiny-sd", "size": "64x64"}));
    let openai = openai.await.expect("openai");
    assert_eq!(openai.status().as_u16(), 507);
    assert_eq!(openai.headers().get("x-should-retry").and_then(|h| h.to_str().ok()), Some("false"));
    let v: Value = openai.json().await.expect("json");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("data dir")), "{v}");
    assert_eq!(v["error"]["code"], "disk_low", "{v}");

    let speech = post("/api/v1/speech", json!({"text": "Hello."})).await.expect("speech");
    assert_eq!(speech.status().as_u16(), 507);

    // ComfyUI's shape: an `error` object with its message.
    let graph = json!({
        "3": {"class_type": "KSampler", "inputs": {"cfg": 8, "denoise": 1, "latent_image": ["5", 0],
            "model": ["4", 0], "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "euler",
            "scheduler": "normal", "seed": 1, "steps": 2}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 64, "width": 64}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a bottle"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": ""}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    });
    let comfy = post("/prompt", json!({"prompt": graph})).await.expect("comfy");
    assert_eq!(comfy.status().as_u16(), 507);
    let v: Value = comfy.json().await.expect("json");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("data dir")), "{v}");

    let picture = common::media::png(&common::media::test_picture(32, 32, 1));
    let form =
        reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(picture).file_name("a.png"));
    let upload = c.post(d.at("/upload/image")).multipart(form).send().await.expect("comfy upload");
    assert_eq!(upload.status().as_u16(), 507, "ComfyUI's upload too");

    let list: Value = c.get(d.at("/api/v1/jobs")).send().await.expect("list").json().await.expect("json");
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1), "nothing more queued: {list}");
    let system: Value = c.get(d.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
    assert!(system["disk"]["data"]["free_bytes"].as_u64().is_some_and(|f| f > 0), "{system}");
    assert!(system["disk"]["models"]["total_bytes"].as_u64().is_some_and(|t| t > 0), "{system}");
}

#[test]
fn a_pull_larger_than_the_free_space_is_refused_before_anything_is_fetched() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    let share = home.path().join("share");
    std::fs::create_dir_all(share.join("models")).expect("manifest dir");
    // A model as large as no disk: nothing of it is there to fetch, and nothing needs to be.
    std::fs::write(
        share.join("models/huge.toml"),
        format!(
            "name = \"huge\"\nkind = \"upscale\"\nsources = [\"bundled:payload\"]\n\n\
             [[files]]\npath = \"model.onnx\"\nsize = 900000000000000000\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .expect("manifest");
    let out = reelbox_cli(home.path(), &models).args(["pull", "huge"]).env("REELBOX_SHARE_DIR", &share).output();
    let out = out.expect("pull");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot pull huge") && err.contains("models dir") && err.contains("this needs"), "{err}");
    assert!(err.contains("reelbox rm NAME"), "says how to free space: {err}");
    let left: Vec<_> =
        std::fs::read_dir(&models).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(!models.join("huge").exists() && !models.join(".staging/huge").exists(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_rm_deletes_finished_jobs_and_their_files_and_names_the_one_it_could_not() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let d = DaemonProc::start(&data, &[]);
    let c = reqwest::Client::new();
    let card = json!({"steps": 1, "step_ms": 0, "width": 64, "height": 36});
    let (a, b) = (submit_testcard(&c, &d, card.clone()).await, submit_testcard(&c, &d, card).await);
    for id in [&a, &b] {
        assert_eq!(wait_job(&c, &d, id, Duration::from_secs(30), is_final).await["state"], "succeeded");
    }
    let running = submit_testcard(&c, &d, json!({"steps": 600, "step_ms": 100})).await;
    let out = reelbox_cli(home.path(), home.path())
        .args(["--url", &d.url, "jobs", "rm", &a, &running, &b])
        .output()
        .expect("jobs rm");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "one stayed: {stdout} {stderr}");
    for id in [&a, &b] {
        assert!(stdout.contains(&format!("removed {id}: 2 files")), "{stdout}");
        assert_eq!(c.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("show").status().as_u16(), 404);
    }
    assert!(stderr.contains(&running) && stderr.contains("cancel"), "says why it stayed: {stderr}");
    let cancel = c.post(d.at(&format!("/api/v1/jobs/{running}/cancel"))).send().await.expect("cancel");
    assert!(cancel.status().is_success());
    wait_job(&c, &d, &running, Duration::from_secs(30), is_final).await;
    run_ok(reelbox_cli(home.path(), home.path()).args(["--url", &d.url, "jobs", "rm", &running]));
}
