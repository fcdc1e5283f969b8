//! The catalog as a job sees it, against the real daemon: `reelbox models default` picks
//! the model an `image` request naming none uses, and a CUDA-only model is refused at
//! submission on a box without a CUDA device, naming the `model` field and why.

use crate::common;

use std::path::Path;

use common::compat::start_daemon_with;
use common::fixture;
use reelbox::models::{Manifest, ManifestFile, ModelKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn link_tiny_sd(models: &Path, name: &str) {
    std::os::unix::fs::symlink(fixture("models/tiny-sd"), models.join(name)).expect("link tiny-sd");
}

/// Runs `reelbox ARGS` on the data and models dirs; returns (success, stdout + stderr).
fn reelbox(data: &Path, models: &Path, args: &[&str]) -> (bool, String) {
    let (ok, stdout, stderr) = reelbox_out(data, models, args);
    (ok, format!("{stdout}{stderr}"))
}

/// As [`reelbox`], with stdout and stderr apart.
fn reelbox_out(data: &Path, models: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(args)
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", data.join("no-config"))
        .env("REELBOX_DATA_DIR", data)
        .env("REELBOX_MODELS_DIR", models)
        .env("REELBOX_LOG", "warn")
        .output()
        .expect("run reelbox");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout.into_owned(), stderr.into_owned())
}

async fn post_image(http: &reqwest::Client, url: &str, params: Value) -> (u16, Value) {
    let resp = http
        .post(format!("{url}/api/v1/jobs"))
        .json(&json!({"kind": "image", "params": params}))
        .send()
        .await
        .expect("submit");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_default_picks_the_model_an_image_request_without_one_uses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, models) = (tmp.path().join("data"), tmp.path().join("models"));
    std::fs::create_dir_all(&models).expect("models dir");
    link_tiny_sd(&models, "sd-a");
    link_tiny_sd(&models, "sd-b");
    let daemon = start_daemon_with(&data, &models, &[]);
    let http = reqwest::Client::new();

    // Two installed and none chosen: the request must name one.
    let (status, body) = post_image(&http, &daemon.url, json!({"prompt": "a red circle", "seed": 1})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("model")), "{body}");

    let (ok, text) = reelbox(&data, &models, &["models", "default", "diffusion", "sd-b"]);
    assert!(ok, "{text}");
    let (status, job) = post_image(&http, &daemon.url, json!({"prompt": "a red circle", "seed": 1})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["params"]["model"], "sd-b", "{job}");

    let (ok, text, errors) = reelbox_out(&data, &models, &["--json", "models", "list"]);
    assert!(ok, "{text}{errors}");
    let list: Value = serde_json::from_str(&text).expect("models list --json");
    let defaults: Vec<&str> = list["models"]
        .as_array()
        .map(|ms| ms.iter().filter(|m| m["default"] == true).filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(defaults.contains(&"sd-b") && !defaults.contains(&"sd-a"), "{text}");

    let (ok, text) = reelbox(&data, &models, &["models", "default", "tts", "sd-a"]);
    assert!(!ok && text.contains("diffusion model, not tts"), "a model of another kind is refused: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cuda_only_model_is_refused_at_submission_on_a_box_without_cuda() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, models) = (tmp.path().join("data"), tmp.path().join("models"));
    std::fs::create_dir_all(&models).expect("models dir");
    link_tiny_sd(&models, "sd-fused");
    link_tiny_sd(&models, "sd-plain");
    // Installed from a manifest that marks it CUDA-only, as sd-turbo-cuda's does.
    let index = std::fs::read(fixture("models/tiny-sd/model_index.json")).expect("index");
    let file = ManifestFile {
        path: "model_index.json".into(),
        size: index.len() as u64,
        sha256: hex::encode(Sha256::digest(&index)),
    };
    let fused = Manifest { cuda_only: true, ..Manifest::new("sd-fused".into(), ModelKind::Diffusion, vec![file]) };
    std::fs::write(models.join("sd-fused.toml"), fused.to_toml()).expect("manifest");
    let daemon = start_daemon_with(&data, &models, &[]);
    let http = reqwest::Client::new();

    let (status, body) = post_image(&http, &daemon.url, json!({"prompt": "a red circle", "model": "sd-fused"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "model", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("sd-fused") && message.contains("only with CUDA"), "{message}");
    let jobs: Value =
        http.get(format!("{}/api/v1/jobs", daemon.url)).send().await.expect("jobs").json().await.expect("json");
    assert!(!jobs.to_string().contains("sd-fused"), "nothing was queued: {jobs}");

    let (status, job) = post_image(&http, &daemon.url, json!({"prompt": "a red circle", "model": "sd-plain"})).await;
    assert_eq!(status, 202, "the same files without the CUDA-only mark are taken: {job}");

    let (ok, text) = reelbox(&data, &models, &["models", "list"]);
    assert!(ok && text.lines().any(|l| l.starts_with("sd-fused") && l.contains("cuda-only")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_through_the_api_needs_the_non_commercial_licence_accepted_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, models, share) = (tmp.path().join("data"), tmp.path().join("models"), tmp.path().join("share"));
    std::fs::create_dir_all(share.join("models")).expect("share");
    std::fs::create_dir_all(share.join("nc")).expect("bundle");
    std::fs::create_dir_all(&models).expect("models dir");
    let bytes = b"not really an upscaler".to_vec();
    std::fs::write(share.join("nc/model.onnx"), &bytes).expect("bundle file");
    let file = ManifestFile {
        path: "model.onnx".into(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let nc = Manifest {
        license: Some("Test NC Licence".into()),
        noncommercial: true,
        sources: vec!["bundled:nc".into()],
        ..Manifest::new("nc-tiny".into(), ModelKind::Upscale, vec![file])
    };
    std::fs::write(share.join("models/nc-tiny.toml"), nc.to_toml()).expect("manifest");
    let share_env = share.to_string_lossy().into_owned();
    let daemon = start_daemon_with(&data, &models, &[("REELBOX_SHARE_DIR", share_env.as_str())]);
    let http = reqwest::Client::new();
    let pull = |body: Value| {
        let (http, url) = (http.clone(), daemon.at("/api/v1/models/pull"));
        async move {
            let resp = http.post(url).json(&body).send().await.expect("pull");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("json"))
        }
    };

    let (status, body) = pull(json!({"name": "nc-tiny"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("accept_license")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("Test NC Licence")), "{body}");

    let (status, job) = pull(json!({"name": "nc-tiny", "accept_license": true})).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let done =
        common::daemon::wait_job(&http, &daemon, id, std::time::Duration::from_secs(30), common::daemon::is_final)
            .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(std::fs::read(models.join("nc-tiny/model.onnx")).expect("installed"), bytes);

    // Remembered: a forced pull without the flag is taken.
    let (status, body) = pull(json!({"name": "nc-tiny", "force": true})).await;
    assert_eq!(status, 202, "{body}");
}

/// The daemon keeps its models listing between requests (`models/catalog/kept.rs`), and a
/// change made outside it shows at the very next request: a folder copied in, a `reelbox
/// models rm` and a `reelbox models import` run by the CLI, each made once the listing had
/// been kept (its files' times 2 s old).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_outside_the_daemon_show_at_the_next_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, models) = (tmp.path().join("data"), tmp.path().join("models"));
    std::fs::create_dir_all(&models).expect("models dir");
    link_tiny_sd(&models, "sd-a");
    let daemon = start_daemon_with(&data, &models, &[]);
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{}{path}", daemon.url);
        let http = http.clone();
        async move { http.get(url).send().await.expect("get").json::<Value>().await.expect("json") }
    };
    let ids = |list: Value| -> Vec<String> {
        list["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect()
    };
    // Asked twice after the times settled: the second answer is the kept listing.
    let settle = || async {
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        get("/models/checkpoints").await;
        get("/models/checkpoints").await
    };

    assert_eq!(settle().await, json!(["sd-a"]));
    common::copy_dir(&fixture("models/tiny-sd"), &models.join("sd-b"));
    assert_eq!(get("/models/checkpoints").await, json!(["sd-a", "sd-b"]), "a folder copied in");
    assert!(ids(get("/v1/models").await).contains(&"sd-b".to_string()));

    assert_eq!(settle().await, json!(["sd-a", "sd-b"]));
    let (ok, said) = reelbox(&data, &models, &["models", "rm", "sd-b"]);
    assert!(ok, "{said}");
    assert_eq!(get("/models/checkpoints").await, json!(["sd-a"]), "removed by the CLI");
    assert!(!ids(get("/v1/models").await).contains(&"sd-b".to_string()));

    settle().await;
    let voice = fixture("models/tiny-piper/en/tiny-en.onnx");
    let (ok, said) = reelbox(&data, &models, &["models", "import", voice.to_str().expect("utf-8")]);
    assert!(ok, "{said}");
    assert!(ids(get("/v1/models").await).contains(&"tiny-en".to_string()), "imported by the CLI");
    let native = get("/api/v1/models").await;
    let row = native["models"].as_array().expect("models").iter().find(|m| m["name"] == "tiny-en").cloned();
    assert_eq!(row.map(|m| m["state"].clone()), Some(json!("installed")), "{native}");
}
