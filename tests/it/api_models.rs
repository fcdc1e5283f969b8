//! The model routes and the generation routes' edge checks against a real daemon:
//! `GET /api/v1/models`, pulls as `model_pull` jobs, and `POST /api/v1/images`,
//! `/upscale`, `/lipsync` refusing bad input with the field named.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::api::misfit;
use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::fixture;
use common::provision;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A daemon over `models` with the provisioned runtime; `share` (shipped manifests and
/// bundled files) when given.
fn daemon(home: &Path, models: &Path, share: Option<&Path>) -> DaemonProc {
    let runtime = provision::runtime();
    let mut env = vec![
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8 path")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8 path")),
    ];
    if let Some(s) = share {
        env.push(("REELBOX_SHARE_DIR", s.to_str().expect("utf-8 path")));
    }
    DaemonProc::start(&home.join("data"), &env)
}

fn tiny_sd_models(home: &Path) -> PathBuf {
    let models = home.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(fixture("models/tiny-sd"), models.join("tiny-sd")).expect("link tiny-sd");
    models
}

fn assert_bad_field(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains(field), "{body}");
}

#[tokio::test]
async fn models_route_lists_the_linked_test_model_and_images_refuse_bad_input() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    let d = daemon(home.path(), &models, None);
    let http = reqwest::Client::new();

    let list = get_json(&http, &d, "/api/v1/models").await;
    assert_eq!(list["models_dir"], models.display().to_string());
    let tiny = list["models"].as_array().expect("models").iter().find(|m| m["name"] == "tiny-sd").cloned();
    let tiny = tiny.unwrap_or_else(|| panic!("tiny-sd not listed: {list}"));
    assert_eq!((tiny["kind"].as_str(), tiny["test"].as_bool()), (Some("diffusion"), Some(true)), "{tiny}");
    assert_eq!(tiny["state"], "installed");

    let base = json!({"prompt": "a red circle", "model": "tiny-sd", "steps": 2, "width": 64, "height": 64});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let (s, b) = post_json(&http, &d, "/api/v1/images", with("width", json!(511))).await;
    assert_bad_field(s, &b, "width");
    let (s, b) = post_json(&http, &d, "/api/v1/images", with("model", json!("no-such-model"))).await;
    assert_bad_field(s, &b, "model");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("tiny-sd"), "names what is installed: {b}");
    let (s, b) = post_json(&http, &d, "/api/v1/images", with("height", json!(-8))).await;
    assert_bad_field(s, &b, "height");
    let (s, b) = post_json(&http, &d, "/api/v1/images", with("sampler", json!("euler"))).await;
    assert_bad_field(s, &b, "sampler");
    let (s, b) = post_json(&http, &d, "/api/v1/images", with("prompt", json!(""))).await;
    assert_bad_field(s, &b, "prompt");
    let jobs = get_json(&http, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "refused requests leave no job: {jobs}");

    // A good request is a queued image job; the same Idempotency-Key returns it again.
    let send = || {
        http.post(d.at("/api/v1/images")).header("Idempotency-Key", "red-circle-1").json(&with("seed", json!(5))).send()
    };
    let first = send().await.expect("submit");
    assert_eq!(first.status().as_u16(), 202);
    assert!(first.headers().get("location").is_some());
    let first: Value = first.json().await.expect("job");
    assert_eq!(first["kind"], "image");
    let again = send().await.expect("submit again");
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.json::<Value>().await.expect("job")["id"], first["id"]);
    let done = wait_job(&http, &d, first["id"].as_str().expect("id"), Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

/// A share dir shipping one manifest, `tiny-upscaler`, whose file is bundled with it.
fn share_with_upscaler(home: &Path) -> PathBuf {
    let share = home.join("share");
    let payload = share.join("payload/tiny-upscaler");
    std::fs::create_dir_all(&payload).expect("payload dir");
    std::fs::create_dir_all(share.join("models")).expect("manifest dir");
    let bytes = std::fs::read(fixture("models/tiny-esrgan-x4/model.onnx")).expect("fixture model");
    std::fs::write(payload.join("model.onnx"), &bytes).expect("payload");
    let manifest = format!(
        "name = \"tiny-upscaler\"\nkind = \"upscale\"\nsummary = \"tiny random x4 upscaler\"\n\
         sources = [\"bundled:payload/tiny-upscaler\"]\n\n[[files]]\npath = \"model.onnx\"\nsize = {}\nsha256 = \"{}\"\n",
        bytes.len(),
        hex::encode(Sha256::digest(&bytes))
    );
    std::fs::write(share.join("models/tiny-upscaler.toml"), manifest).expect("manifest");
    share
}

/// The listing says how a request naming no size, steps, guidance or sampler draws each installed
/// diffusion model, so a client can offer its own size: the web studio set 512 for an SDXL
/// model the CLI draws at 1024.
#[tokio::test]
async fn the_listing_gives_a_diffusion_models_native_size_and_defaults_as_a_request_draws_them() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    common::byo::sdxl_at_1024(&models, "sdxl-base");
    let d = daemon(home.path(), &models, None);
    let http = reqwest::Client::new();
    let list = get_json(&http, &d, "/api/v1/models").await;
    let listed = |name: &str| {
        let m = list["models"].as_array().expect("models").iter().find(|m| m["name"] == name).cloned();
        m.unwrap_or_else(|| panic!("{name} not listed: {list}"))
    };
    for (name, side) in [("sdxl-base", 1024), ("tiny-sd", 64)] {
        let m = listed(name);
        assert_eq!((&m["native_width"], &m["native_height"]), (&json!(side), &json!(side)), "{m}");
        // What a request naming none gets, as the image kind fills it in.
        let (status, job) =
            post_json(&http, &d, "/api/v1/images", json!({"prompt": "a red circle", "model": name})).await;
        assert_eq!(status, 202, "{job}");
        let p = &job["params"];
        assert_eq!((&p["width"], &p["height"]), (&json!(side), &json!(side)), "{job}");
        assert_eq!((&p["steps"], &p["guidance"]), (&m["default_steps"], &m["default_guidance"]), "{m} {job}");
        assert_eq!(&p["scheduler"], &m["default_scheduler"], "the sampler said as the model's own: {m} {job}");
        let cancel = format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id"));
        assert_eq!(post_json(&http, &d, &cancel, json!({})).await.0, 200);
    }
    // Other kinds have no picture size.
    let others = list["models"].as_array().expect("models").iter().filter(|m| m["kind"] != "diffusion");
    assert!(others.into_iter().all(|m| m.get("native_width").is_none()), "{list}");
}

/// The listing keeps each diffusion model's drawing defaults with the catalog's reading
/// (`models/catalog/kept.rs`): while the models dir looks the same a listing reads no
/// model's configs, and once an entry of a model's folder changes the next one reads them
/// again (an edit inside one, a config rewritten in place by hand, shows within 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_reads_a_models_configs_again_only_when_its_folder_changes() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let dir = common::byo::sdxl_at_1024(&models, "sdxl-base");
    let d = daemon(home.path(), &models, None);
    let http = reqwest::Client::new();
    let native = || async {
        let list = get_json(&http, &d, "/api/v1/models").await;
        let row = list["models"].as_array().expect("models").iter().find(|m| m["name"] == "sdxl-base").cloned();
        row.unwrap_or_else(|| panic!("sdxl-base not listed: {list}"))["native_width"].clone()
    };
    // A reading is kept once the files' times are 2 s old; the second listing is the kept one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    native().await;
    assert_eq!(native().await, json!(1024));

    let config = dir.join("unet/config.json");
    let mut unet: Value = serde_json::from_slice(&std::fs::read(&config).expect("unet config")).expect("json");
    unet["sample_size"] = json!(64);
    std::fs::write(&config, unet.to_string()).expect("rewrite in place");
    assert_eq!(native().await, json!(1024), "the folder looks the same: its configs are not read again");
    std::fs::write(dir.join("notes.txt"), "trained at 512").expect("add a file");
    assert_eq!(native().await, json!(512), "its folder changed: read again");
}

#[tokio::test]
async fn a_pull_is_a_queued_job_and_the_pulled_model_upscales() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let share = share_with_upscaler(home.path());
    let d = daemon(home.path(), &models, Some(&share));
    let http = reqwest::Client::new();

    let listed = get_json(&http, &d, "/api/v1/models").await;
    let entry =
        |list: &Value| list["models"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "tiny-upscaler").cloned());
    assert_eq!(entry(&listed).map(|m| m["state"].clone()), Some(json!("not_installed")), "{listed}");

    let (s, b) = post_json(&http, &d, "/api/v1/models/pull", json!({"name": "no-such-model"})).await;
    assert_bad_field(s, &b, "name");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("tiny-upscaler"), "lists known models: {b}");

    let (s, job) = post_json(&http, &d, "/api/v1/models/pull", json!({"name": "tiny-upscaler"})).await;
    assert_eq!(s, 202, "{job}");
    assert_eq!(job["kind"], "model_pull");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&http, &d, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let queue = get_json(&http, &d, "/api/v1/jobs?kind=model_pull").await;
    assert_eq!(queue["jobs"][0]["id"], id.as_str(), "the pull shows in the queue: {queue}");

    // The job's events carry the byte progress; its artifact is the manager's report.
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let text = events.text().await.expect("event text");
    let size = std::fs::metadata(fixture("models/tiny-esrgan-x4/model.onnx")).expect("fixture").len();
    assert!(text.contains(&format!("\"total\":{size}")), "progress counts the model's bytes:\n{text}");
    let artifacts = get_json(&http, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    assert_eq!(artifacts[0]["name"], "pull.json", "{artifacts}");
    let report = get_json(&http, &d, artifacts[0]["url"].as_str().expect("url")).await;
    assert_eq!(report["files"]["model.onnx"], "bundled:payload/tiny-upscaler", "{report}");

    let listed = get_json(&http, &d, "/api/v1/models").await;
    let pulled = entry(&listed).expect("still listed");
    assert_eq!((pulled["state"].as_str(), pulled["kind"].as_str()), (Some("installed"), Some("upscale")), "{pulled}");
    assert!(models.join("tiny-upscaler/model.onnx").is_file());

    // The pulled model serves an upscale job over another job's picture.
    let (s, card) = post_json(
        &http,
        &d,
        "/api/v1/jobs",
        json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "width": 32, "height": 24}}),
    )
    .await;
    assert_eq!(s, 202, "{card}");
    let card = wait_job(&http, &d, card["id"].as_str().expect("id"), Duration::from_secs(30), is_final).await;
    let png = card["stages"][0]["artifacts"][0].as_str().expect("testcard png").to_string();

    let (s, b) = post_json(&http, &d, "/api/v1/upscale", json!({"input": png, "model": "realesrgan-nope"})).await;
    assert_bad_field(s, &b, "model");
    let (s, b) =
        post_json(&http, &d, "/api/v1/upscale", json!({"input": png, "model": "tiny-upscaler", "tile": 8})).await;
    assert_bad_field(s, &b, "tile");
    let (s, job) =
        post_json(&http, &d, "/api/v1/upscale", json!({"input": png, "model": "tiny-upscaler", "priority": 5})).await;
    assert_eq!(s, 202, "{job}");
    assert_eq!((job["kind"].as_str(), job["priority"].as_i64()), (Some("upscale"), Some(5)));
    // Naming no model uses the only installed upscaler, the default `models list` tags (it
    // was refused: the built-in `realesrgan-x4` is not installed here).
    let (s, plain) = post_json(&http, &d, "/api/v1/upscale", json!({"input": png})).await;
    assert_eq!(s, 202, "{plain}");
    assert_eq!(plain["params"]["model"], "tiny-upscaler", "{plain}");
    let done = wait_job(&http, &d, job["id"].as_str().expect("id"), Duration::from_secs(60), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let out = get_json(&http, &d, &format!("/api/v1/jobs/{}/artifacts", job["id"].as_str().expect("id"))).await;
    assert_eq!(out[0]["name"], "upscaled.png");
    let bytes =
        http.get(d.at(out[0]["url"].as_str().expect("url"))).send().await.expect("get").bytes().await.expect("bytes");
    let img = image::load_from_memory(&bytes).expect("PNG");
    assert_eq!((img.width(), img.height()), (128, 96), "x4 of 32x24");

    // The engine's loads and run time show in /metrics.
    let text = http.get(d.at("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    let sample = |name: &str| {
        scrape.samples.iter().find(|s| s.metric == name).unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    let load = sample("reelbox_model_loads_total");
    assert_eq!(
        (load.labels.get("model"), load.labels.get("device")),
        (Some("tiny-upscaler/model.onnx"), Some("cpu")),
        "{text}"
    );
    assert!(matches!(load.value, prometheus_parse::Value::Counter(n) if n >= 1.0), "{text}");
    assert!(
        matches!(sample("reelbox_model_run_seconds_total").value, prometheus_parse::Value::Counter(s) if s > 0.0),
        "{text}"
    );
}

#[tokio::test]
async fn lipsync_and_speech_refuse_bad_input_naming_the_field() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(fixture("models/tiny-wav2lip"), models.join("wav2lip")).expect("link wav2lip");
    let d = daemon(home.path(), &models, None);
    let http = reqwest::Client::new();
    let id = ulid::Ulid::new().to_string();

    // No diffusion model installed: the refusal says so and how to get one (it ended in "installed: ").
    let (s, b) = post_json(&http, &d, "/api/v1/images", json!({"prompt": "a red circle"})).await;
    assert_bad_field(s, &b, "model");
    assert!(b["error"]["message"].as_str().is_some_and(|m| m.contains("none") && m.contains("reelbox pull")), "{b}");

    let (s, b) = post_json(&http, &d, "/api/v1/lipsync", json!({"portrait": id, "audio": id})).await;
    assert_bad_field(s, &b, "face_box");
    let (s, b) = post_json(
        &http,
        &d,
        "/api/v1/lipsync",
        json!({"portrait": "not-an-id", "audio": id, "face_box": [0, 0, 8, 8]}),
    )
    .await;
    assert_bad_field(s, &b, "portrait");
    let (s, b) = post_json(&http, &d, "/api/v1/lipsync", json!({"audio": id})).await;
    assert_bad_field(s, &b, "portrait");
    let (s, b) = post_json(
        &http,
        &d,
        "/api/v1/lipsync",
        json!({"portrait": id, "audio": id, "face_box": [0, 0, 8, 8], "model": "nope"}),
    )
    .await;
    assert_bad_field(s, &b, "model");

    let (s, b) = post_json(&http, &d, "/api/v1/speech", json!({"text": ""})).await;
    assert_bad_field(s, &b, "text");
    // Emoji are never spoken: text of nothing else is refused up front, not failed as a job.
    let (s, b) = post_json(&http, &d, "/api/v1/speech", json!({"text": "😊 🌊!"})).await;
    assert_bad_field(s, &b, "text");
    let (s, b) = post_json(&http, &d, "/api/v1/speech", json!({"text": "Hi.", "length_scale": 9})).await;
    assert_bad_field(s, &b, "length_scale");
    let (s, b) = post_json(&http, &d, "/api/v1/speech", json!({"text": "Hi.", "voice": "nobody"})).await;
    assert_bad_field(s, &b, "voice");
    // Beside the sentence, the model as data, so a client (the web studio) acts on it
    // without reading the words: unknown; a catalog model with its pull.
    let problem = &b["error"]["model"];
    assert_eq!(
        (&problem["kind"], &problem["name"], &problem["state"]),
        (&json!("tts"), &json!("nobody"), &json!("unknown")),
        "{b}"
    );
    assert!(problem.get("pull").is_none(), "nothing to pull for a name no catalog knows: {b}");
    let (s, b) = post_json(&http, &d, "/api/v1/upscale", json!({"input": id, "model": "realesrgan-x4"})).await;
    assert_bad_field(s, &b, "model");
    let problem = &b["error"]["model"];
    assert_eq!((&problem["state"], &problem["pull"]), (&json!("not_installed"), &json!("realesrgan-x4")), "{b}");
    let (s, b) = post_json(&http, &d, "/api/v1/speech", json!({"text": "Hi.", "format": "mp3"})).await;
    assert_bad_field(s, &b, "format");

    // Every new route is in the OpenAPI document.
    let doc = get_json(&http, &d, "/openapi.json").await;
    for path in [
        "/api/v1/speech",
        "/api/v1/images",
        "/api/v1/lipsync",
        "/api/v1/upscale",
        "/api/v1/models",
        "/api/v1/models/pull",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from /openapi.json");
    }
    // `priority` is documented on each generation body (serde's skip_serializing hid it).
    for schema in ["SpeechRequest", "ImageRequest", "LipsyncRequest", "UpscaleRequest"] {
        assert!(doc["components"]["schemas"][schema]["properties"]["priority"].is_object(), "{schema}");
    }
    assert!(doc["components"]["schemas"]["SystemView"]["properties"]["sessions"].is_object());
    assert!(doc["components"]["schemas"]["ErrorDetail"]["properties"]["model"].is_object());
    assert!(doc["components"]["schemas"]["ModelProblem"]["properties"]["pull"].is_object());
}

#[tokio::test]
async fn a_real_render_request_fits_the_served_render_schema() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = common::render::models_dir(home.path());
    let d = daemon(home.path(), &models, None);
    let http = reqwest::Client::new();
    let doc = get_json(&http, &d, "/openapi.json").await;
    let schema = &doc["paths"]["/api/v1/renders"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(schema["$ref"].as_str().is_some_and(|r| r.ends_with("/RenderBody")), "a typed body: {schema}");
    let body = &doc["components"]["schemas"]["RenderBody"];
    assert!(body["properties"]["presenter"].is_object() && body["properties"]["script"].is_object(), "{body}");

    let mut request = common::render::render_request(&http, &d, true).await["params"].clone();
    request["priority"] = json!(3);
    assert_eq!(misfit(&doc, schema, &request, "body"), None, "{request}");
    // The check can fail: what the schema refuses, the route refuses too.
    for (field, bad) in [("upscale", json!("yes")), ("width", json!(-8)), ("scripts", json!("x"))] {
        let mut wrong = request.clone();
        wrong[field] = bad;
        assert!(misfit(&doc, schema, &wrong, "body").is_some(), "{field}: {wrong}");
    }
    let mut wrong = request.clone();
    wrong["presenter"] = json!({"portrait": request["presenter"]["portrait"]});
    // A portrait alone fits (the box's face detector finds the face); this box has none, so
    // the route says what is missing, naming the field.
    assert_eq!(misfit(&doc, schema, &wrong, "body"), None, "{wrong}");
    let (s, b) = post_json(&http, &d, "/api/v1/renders", wrong).await;
    assert_bad_field(s, &b, "presenter.face_box");

    let (s, job) = post_json(&http, &d, "/api/v1/renders", request).await;
    assert_eq!((s, job["kind"].as_str(), job["priority"].as_i64()), (202, Some("render"), Some(3)), "{job}");
}
