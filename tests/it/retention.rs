//! Deleting what you made and keeping the box from filling up, as a user sees it on the
//! real daemon: files gone from disk, jobs 404 afterwards, what profiles and queued jobs
//! use kept, `reelbox gc --dry-run` removing nothing, isolation between clients.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::api::call;
use common::compat::{TINY_SD, models_dir, start_daemon_with};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::media::{png, test_picture};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Nothing listens here: port 1 on loopback refuses at once.
const NO_DAEMON: &str = "http://127.0.0.1:1";

/// The files of artifact `id` under the daemon's data dir (sharded by its last two characters).
fn files_of(data: &Path, id: &str) -> Vec<PathBuf> {
    let shard = data.join("artifacts").join(&id[id.len() - 2..]);
    let Ok(entries) = std::fs::read_dir(shard) else { return vec![] };
    entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(id)).collect()
}

async fn testcard(d: &DaemonProc, key: Option<&str>, params: Value) -> String {
    let body = json!({"kind": "testcard", "params": params});
    let (status, job) = call(key, Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().expect("id").to_string()
}

async fn artifact_ids(d: &DaemonProc, job: &str) -> Vec<String> {
    let (_, arts) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{job}/artifacts")), None).await;
    arts.as_array().expect("artifact list").iter().map(|a| a["id"].as_str().expect("id").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_removes_its_files_events_and_record() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    let c = reqwest::Client::new();
    let id = testcard(&d, None, json!({"steps": 2, "step_ms": 10})).await;
    let done = wait_job(&c, &d, &id, Duration::from_secs(30), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let arts = artifact_ids(&d, &id).await;
    assert_eq!(arts.len(), 2, "a card and a summary");
    assert!(arts.iter().all(|a| files_of(data.path(), a).len() == 1), "each artifact has its file");

    let (status, removed) = call(None, Method::DELETE, d.at(&format!("/api/v1/jobs/{id}")), None).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["jobs"], 1);
    assert_eq!(removed["artifacts"], 2);
    assert!(removed["events"].as_u64().is_some_and(|n| n > 0), "{removed}");
    assert!(removed["bytes"].as_u64().is_some_and(|n| n > 0), "{removed}");

    for a in &arts {
        assert!(files_of(data.path(), a).is_empty(), "artifact {a}'s file is still on disk");
        let (status, _) = call(None, Method::GET, d.at(&format!("/api/v1/artifacts/{a}")), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    for path in [format!("/api/v1/jobs/{id}"), format!("/api/v1/jobs/{id}/events")] {
        let (status, body) = call(None, Method::GET, d.at(&path), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, page) = call(None, Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(page["jobs"], json!([]));
    let (status, body) = call(None, Method::DELETE, d.at(&format!("/api/v1/jobs/{id}")), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice: {body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (_, doc) = call(None, Method::GET, d.at("/openapi.json"), None).await;
    assert!(doc["paths"]["/api/v1/jobs/{id}"]["delete"].is_object() && doc["paths"]["/api/v1/gc"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_or_running_job_cannot_be_deleted_until_it_is_canceled() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    let c = reqwest::Client::new();
    let running = testcard(&d, None, json!({"steps": 400, "step_ms": 50})).await;
    wait_job(&c, &d, &running, Duration::from_secs(30), |j| j["state"] == "running").await;
    let (status, _) = call(None, Method::POST, d.at("/api/v1/queue/pause"), None).await;
    assert_eq!(status, StatusCode::OK);
    let queued = testcard(&d, None, json!({"steps": 1})).await;

    for (id, state) in [(&running, "running"), (&queued, "queued")] {
        let (status, body) = call(None, Method::DELETE, d.at(&format!("/api/v1/jobs/{id}")), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "wrong_state", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(state) && message.contains("cancel it first"), "{message}");
        let (_, job) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{id}")), None).await;
        assert_eq!(job["state"], state, "a refused delete changes nothing");
    }

    for id in [&running, &queued] {
        let (status, _) = call(None, Method::POST, d.at(&format!("/api/v1/jobs/{id}/cancel")), None).await;
        assert_eq!(status, StatusCode::OK);
        wait_job(&c, &d, id, Duration::from_secs(30), is_final).await;
        let (status, body) = call(None, Method::DELETE, d.at(&format!("/api/v1/jobs/{id}")), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_delete_another_clients_job_nor_sweep_but_an_admin_can() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    let key = |v: &Value| v["key"].as_str().expect("key").to_string();
    let body = json!({"name": "root", "scope": "admin"});
    let (_, root) = call(None, Method::POST, d.at("/api/v1/keys"), Some(body)).await;
    let admin = key(&root);
    let (_, alice) = call(Some(&admin), Method::POST, d.at("/api/v1/keys"), Some(json!({"name": "alice"}))).await;
    let (_, bob) = call(Some(&admin), Method::POST, d.at("/api/v1/keys"), Some(json!({"name": "bob"}))).await;
    let (alice, bob) = (key(&alice), key(&bob));

    let mut jobs = Vec::new();
    for _ in 0..2 {
        let id = testcard(&d, Some(&alice), json!({"steps": 1, "step_ms": 0})).await;
        for _ in 0..200 {
            let (_, job) = call(Some(&alice), Method::GET, d.at(&format!("/api/v1/jobs/{id}")), None).await;
            if is_final(&job) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        jobs.push(id);
    }
    let url = |id: &str| d.at(&format!("/api/v1/jobs/{id}"));
    let (status, body) = call(Some(&bob), Method::DELETE, url(&jobs[0]), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client's job does not exist for bob: {body}");
    let (status, _) = call(Some(&alice), Method::GET, url(&jobs[0]), None).await;
    assert_eq!(status, StatusCode::OK, "and it is still there");
    let (status, body) = call(Some(&bob), Method::POST, d.at("/api/v1/gc"), Some(json!({"dry_run": true}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "admin_only");

    let (status, _) = call(Some(&alice), Method::DELETE, url(&jobs[0]), None).await;
    assert_eq!(status, StatusCode::OK, "the owner deletes her own");
    let (status, _) = call(Some(&admin), Method::DELETE, url(&jobs[1]), None).await;
    assert_eq!(status, StatusCode::OK, "an admin deletes anyone's");
    for id in &jobs {
        let (status, _) = call(Some(&alice), Method::GET, url(id), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// `reelbox` with a clean environment on `data` with `config`.
fn reelbox(data: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
    cmd.env_remove("REELBOX_URL")
        .env_remove("REELBOX_KEY")
        .env("XDG_CONFIG_HOME", data.join("no-config"))
        .env("REELBOX_CONFIG", config)
        .env("REELBOX_DATA_DIR", data)
        .env("REELBOX_LOG", "warn");
    cmd
}

/// `reelbox gc --json ARGS...`, which must succeed.
fn gc_json(cmd: &mut Command, args: &[&str]) -> Value {
    let out: Output = cmd.args(["gc", "--json"]).args(args).output().expect("run reelbox gc");
    assert!(out.status.success(), "reelbox gc failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("gc --json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_expired_jobs_and_unused_uploads_but_never_what_a_profile_or_queued_job_uses() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let config = root.path().join("config.toml");
    // A little under two seconds, so the test need not wait days.
    std::fs::write(&config, "[retention]\nfinished_job_days = 0.00002\nunused_upload_days = 0.00002\n")
        .expect("config");
    let models = models_dir(false);
    let config_env = config.to_string_lossy().into_owned();
    let d = start_daemon_with(&data, models.path(), &[("REELBOX_CONFIG", &config_env)]);
    let c = reqwest::Client::new();

    let old_job = testcard(&d, None, json!({"steps": 1, "step_ms": 0})).await;
    wait_job(&c, &d, &old_job, Duration::from_secs(30), is_final).await;
    let old_outputs = artifact_ids(&d, &old_job).await;
    let form = Form::new().part("file", Part::bytes(png(&test_picture(32, 32, 0))).file_name("unused.png"));
    let unused: Value =
        c.post(d.at("/api/v1/artifacts")).multipart(form).send().await.expect("upload").json().await.expect("json");
    let unused = unused["id"].as_str().expect("id").to_string();
    let form = Form::new()
        .text("name", "presenter")
        .part("portrait", Part::bytes(png(&test_picture(64, 64, 0))).file_name("me.png"));
    let profile: Value =
        c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile").json().await.expect("json");
    let portrait = profile["portrait"].as_str().expect("portrait").to_string();
    // A ComfyUI image-to-image prompt held in the queue names an uploaded picture.
    let form = Form::new().part(
        "image",
        Part::bytes(png(&test_picture(64, 64, 0))).file_name("start.png").mime_str("image/png").expect("mime"),
    );
    let up: Value =
        c.post(d.at("/upload/image")).multipart(form).send().await.expect("upload").json().await.expect("json");
    let name = up["name"].as_str().expect("name").to_string();
    let init = name.trim_end_matches(".png").rsplit('_').next().expect("id").to_string();
    assert_eq!(c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    let prompt = json!({
        "3": {"class_type": "KSampler", "inputs": {"cfg": 8, "denoise": 0.5, "latent_image": ["11", 0],
            "model": ["4", 0], "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "euler",
            "scheduler": "normal", "seed": 1, "steps": 2}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_SD}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a glass bottle"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "text"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        "10": {"class_type": "LoadImage", "inputs": {"image": name}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    });
    let (status, queued) = call(None, Method::POST, d.at("/prompt"), Some(json!({"prompt": prompt}))).await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let queued = queued["prompt_id"].as_str().expect("prompt id").to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Through the daemon: a dry run says what would go and removes nothing.
    let would = gc_json(&mut reelbox(&data, &config), &["--url", &d.url, "--dry-run"]);
    assert_eq!(would["dry_run"], true);
    assert_eq!(would["finished_job_days"], 0.00002);
    assert_eq!(would["removed"]["jobs"], 1, "{would}");
    assert_eq!(would["removed"]["artifacts"], 3, "the old job's two outputs and the unused upload: {would}");
    for id in old_outputs.iter().chain([&unused, &portrait, &init]) {
        assert_eq!(files_of(&data, id).len(), 1, "the dry run removed artifact {id}'s file");
    }
    let (status, _) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{old_job}")), None).await;
    assert_eq!(status, StatusCode::OK, "the dry run removed the job");

    // With the daemon stopped, `reelbox gc` sweeps the data dir itself.
    let mut d = d;
    assert!(d.terminate().0.success());
    let done = gc_json(&mut reelbox(&data, &config), &["--url", NO_DAEMON]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["removed"], would["removed"], "the sweep removed what the dry run announced");
    for id in old_outputs.iter().chain([&unused]) {
        assert!(files_of(&data, id).is_empty(), "artifact {id}'s file is still on disk");
    }
    for id in [&portrait, &init] {
        assert_eq!(files_of(&data, id).len(), 1, "artifact {id} is in use and must stay");
    }

    let config_env = config.to_string_lossy().into_owned();
    let d = start_daemon_with(&data, models.path(), &[("REELBOX_CONFIG", &config_env)]);
    let (status, _) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{old_job}")), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(None, Method::GET, d.at(&format!("/api/v1/artifacts/{unused}")), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(None, Method::GET, d.at(&format!("/api/v1/artifacts/{portrait}")), None).await;
    assert_eq!(status, StatusCode::OK, "the profile's portrait still downloads");
    let (status, job) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{queued}")), None).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["params"]["init_image"], init.as_str(), "the queued prompt still names its picture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyui_history_delete_and_clear_remove_the_prompts_pictures() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = models_dir(false);
    let d = start_daemon_with(data.path(), models.path(), &[]);
    let c = reqwest::Client::new();
    let graph = |seed: u64| {
        json!({"prompt": {
            "3": {"class_type": "KSampler", "inputs": {"cfg": 8, "denoise": 1, "latent_image": ["5", 0],
                "model": ["4", 0], "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "euler",
                "scheduler": "normal", "seed": seed, "steps": 2}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_SD}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 64, "width": 64}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a glass bottle"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "text"}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
        }})
    };
    let mut prompts = Vec::new();
    for seed in [1, 2] {
        let (status, v) = call(None, Method::POST, d.at("/prompt"), Some(graph(seed))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let id = v["prompt_id"].as_str().expect("prompt id").to_string();
        let job = wait_job(&c, &d, &id, Duration::from_secs(120), is_final).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        prompts.push(id);
    }
    let outputs: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for id in &prompts {
            all.push(artifact_ids(&d, id).await);
        }
        all
    };
    assert!(outputs.iter().all(|o| !o.is_empty() && o.iter().all(|a| !files_of(data.path(), a).is_empty())));

    let (status, _) = call(None, Method::POST, d.at("/history"), Some(json!({"delete": [prompts[0]]}))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = call(None, Method::GET, d.at("/history"), None).await;
    assert!(history.get(&prompts[0]).is_none() && history.get(&prompts[1]).is_some(), "{history}");
    let (status, _) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{}", prompts[0])), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the prompt's job went with its history entry");
    assert!(outputs[0].iter().all(|a| files_of(data.path(), a).is_empty()), "its pictures left the disk");
    assert!(outputs[1].iter().all(|a| !files_of(data.path(), a).is_empty()), "the other prompt's stayed");

    let (status, _) = call(None, Method::POST, d.at("/api/history"), Some(json!({"clear": true}))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = call(None, Method::GET, d.at("/history"), None).await;
    assert_eq!(history, json!({}));
    assert!(outputs[1].iter().all(|a| files_of(data.path(), a).is_empty()));
    let (_, page) = call(None, Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(page["jobs"], json!([]));
}
