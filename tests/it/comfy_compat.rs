//! The ComfyUI-compatible API against the real daemon, the tiny SD model and real HTTP and
//! WebSockets: the default workflow runs with live messages and previews, lands in
//! history and `/view`; bad graphs get per-node errors; the history survives a restart.

use crate::common;

use std::time::{Duration, Instant};

use common::compat::{models_dir, run_client, start_daemon, start_daemon_with};
use common::daemon::DaemonProc;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// ComfyUI's default text-to-image workflow (API format), sized for the tiny model.
pub(crate) fn default_workflow(ckpt: &str, steps: u32) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {"cfg": 8, "denoise": 1, "latent_image": ["5", 0],
            "model": ["4", 0], "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "euler",
            "scheduler": "normal", "seed": 8566257, "steps": steps}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 64, "width": 64}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1],
            "text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "text, watermark"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}

pub(crate) async fn connect(d: &DaemonProc, client_id: &str) -> Socket {
    let url = format!("{}/ws?clientId={client_id}", d.url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
    let first = next_json(&mut socket, Duration::from_secs(5)).await.expect("a first message");
    assert_eq!(first["type"], "status");
    assert_eq!(first["data"]["sid"], client_id);
    socket
}

/// The next text message as JSON, skipping binary frames.
pub(crate) async fn next_json(socket: &mut Socket, timeout: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(timeout, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).expect("json message")),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

pub(crate) async fn queue_prompt(c: &reqwest::Client, d: &DaemonProc, body: Value) -> String {
    let resp = c.post(d.at("/prompt")).json(&body).send().await.expect("post prompt");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["node_errors"], json!({}));
    assert!(v["number"].is_number());
    v["prompt_id"].as_str().expect("prompt_id").to_string()
}

/// Asserts that `GET url` answers as the served document lists for `template`: its status,
/// content type and (JSON) schema, ComfyUI's shapes for these routes.
pub(crate) async fn answers_as_documented(c: &reqwest::Client, d: &DaemonProc, template: &str, url: &str) {
    let doc: Value = c.get(d.at("/openapi.json")).send().await.expect("document").json().await.expect("json");
    let resp = c.get(d.at(url)).send().await.expect("get");
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.bytes().await.expect("body");
    let why = common::api::unlisted(&doc, "get", template, status, content_type.as_deref(), &body);
    assert_eq!(why, None, "GET {url}: {}", String::from_utf8_lossy(&body));
}

pub(crate) async fn history_of(c: &reqwest::Client, d: &DaemonProc, id: &str, timeout: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let h: Value =
            c.get(d.at(&format!("/history/{id}"))).send().await.expect("history").json().await.expect("json");
        if let Some(entry) = h.get(id) {
            return entry.clone();
        }
        assert!(t0.elapsed() < timeout, "prompt {id} not in history after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_workflow_streams_progress_and_previews_then_lands_in_history_and_view() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut mine = connect(&d, "client-a").await;
    let mut other = connect(&d, "client-b").await;
    let id =
        queue_prompt(&c, &d, json!({"prompt": default_workflow("tiny-sd.safetensors", 10), "client_id": "client-a"}))
            .await;

    let mut types = Vec::new();
    let mut previews = 0;
    let mut executed = None;
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "no end of prompt; saw {types:?}");
        let msg = match tokio::time::timeout(Duration::from_secs(30), mine.next()).await {
            Ok(Some(Ok(m))) => m,
            other => panic!("socket ended: {other:?}; saw {types:?}"),
        };
        let v: Value = match msg {
            Message::Binary(b) => {
                assert_eq!(&b[..8], &[0, 0, 0, 1, 0, 0, 0, 2], "preview header");
                image::load_from_memory(&b[8..]).expect("preview frame is a PNG");
                previews += 1;
                continue;
            }
            Message::Text(t) => serde_json::from_str(&t).expect("json"),
            _ => continue,
        };
        let kind = v["type"].as_str().expect("type").to_string();
        if kind != "status" {
            assert_eq!(v["data"]["prompt_id"], id.as_str(), "{v}");
        }
        match kind.as_str() {
            "progress" => {
                assert_eq!(v["data"]["max"], 10);
                assert_eq!(v["data"]["node"], "3");
            }
            "executed" => executed = Some(v["data"].clone()),
            "executing" if v["data"]["node"].is_null() => {
                types.push(kind);
                break;
            }
            _ => {}
        }
        types.push(kind);
    }
    let pos = |t: &str| types.iter().position(|k| k == t).unwrap_or_else(|| panic!("no {t} in {types:?}"));
    assert!(pos("execution_start") < pos("progress"));
    assert!(pos("progress") < pos("executed"));
    assert!(pos("executed") < pos("execution_success"));
    assert_eq!(types.last().map(String::as_str), Some("executing"));
    assert!(previews >= 1, "no preview frames; saw {types:?}");
    let executed = executed.expect("executed message");
    assert_eq!(executed["node"], "9");
    let image = &executed["output"]["images"][0];

    // The other client heard only queue status.
    while let Some(v) = next_json(&mut other, Duration::from_millis(300)).await {
        assert_eq!(v["type"], "status", "client-b got {v}");
    }

    let entry = history_of(&c, &d, &id, Duration::from_secs(5)).await;
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["status"]["completed"], true);
    assert_eq!(entry["outputs"]["9"]["images"][0], *image);
    assert_eq!(entry["prompt"][1], id.as_str());
    let filename = image["filename"].as_str().expect("filename");
    assert!(filename.starts_with("ComfyUI_") && filename.ends_with(".png"), "{filename}");
    assert_eq!(image["type"], "output");

    for base in ["", "/api"] {
        let resp = c
            .get(d.at(&format!("{base}/view")))
            .query(&[("filename", filename), ("subfolder", ""), ("type", "output")])
            .send()
            .await
            .expect("view");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "image/png");
        // Saved under the name asked for, as ComfyUI does (not every prompt's "image-1.png").
        let disposition = resp.headers()["content-disposition"].to_str().expect("ascii").to_string();
        assert!(disposition.ends_with(&format!("filename=\"{filename}\"")), "{disposition}");
        let png = image::load_from_memory(&resp.bytes().await.expect("bytes")).expect("a picture");
        assert_eq!((png.width(), png.height()), (64, 64));
    }
    for (filename, subfolder) in [("../reelbox.redb", ""), (filename, "../.."), ("a/../../b.png", "")] {
        let resp = c
            .get(d.at("/view"))
            .query(&[("filename", filename), ("subfolder", subfolder), ("type", "output")])
            .send()
            .await
            .expect("view");
        assert_eq!(resp.status(), 400, "{filename} in {subfolder:?}");
    }
    let queue: Value = c.get(d.at("/api/queue")).send().await.expect("queue").json().await.expect("json");
    assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
    // `/free` unloads the model now, not after the keep-alive (it was a 404).
    let sessions = |c: reqwest::Client, url: String| async move {
        let system: Value = c.get(url).send().await.expect("system").json().await.expect("json");
        system["sessions"].as_array().map_or(0, Vec::len)
    };
    assert!(sessions(c.clone(), d.at("/api/v1/system")).await > 0, "the prompt left its model loaded");
    let freed = c.post(d.at("/api/free")).json(&json!({"unload_models": true})).send().await.expect("free");
    assert_eq!(freed.status(), 200);
    assert_eq!(sessions(c.clone(), d.at("/api/v1/system")).await, 0, "/free left models loaded");
    let _ = mine.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_graph_is_refused_with_errors_at_each_node() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut graph = default_workflow("tiny-sd", 4);
    graph["10"] = json!({"class_type": "UltimateSDUpscale", "inputs": {"image": ["8", 0]}});
    graph["7"]["inputs"].as_object_mut().expect("inputs").remove("text");
    graph["3"]["inputs"]["sampler_name"] = json!("dpmpp_sde");
    // ComfyUI reads the body as JSON whatever the content type says.
    let resp = c
        .post(d.at("/api/prompt"))
        .header("content-type", "text/plain")
        .body(json!({"prompt": graph}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    let errors = body["node_errors"].as_object().expect("node_errors");
    assert_eq!(errors.len(), 3, "{body}");
    assert_eq!(errors["10"]["class_type"], "UltimateSDUpscale");
    assert_eq!(errors["10"]["errors"][0]["type"], "missing_node_type");
    assert_eq!(errors["7"]["errors"][0]["type"], "required_input_missing");
    assert_eq!(errors["7"]["errors"][0]["extra_info"]["input_name"], "text");
    assert_eq!(errors["3"]["errors"][0]["type"], "value_not_in_list");
    assert_eq!(errors["3"]["errors"][0]["extra_info"]["input_name"], "sampler_name");
    assert!(errors["3"]["dependent_outputs"].as_array().expect("deps").contains(&json!("9")));
    assert!(body["error"]["message"].is_string());

    // Each on its own gets its own error type.
    let mut g = default_workflow("tiny-sd", 4);
    g["3"]["inputs"]["scheduler"] = json!("beta");
    let body: Value =
        c.post(d.at("/prompt")).json(&json!({"prompt": g})).send().await.expect("post").json().await.expect("json");
    assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(body["node_errors"]["3"]["errors"][0]["extra_info"]["input_name"], "scheduler");
    let body: Value = c
        .post(d.at("/prompt"))
        .json(&json!({"client_id": "x"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(body["error"]["type"], "no_prompt");
    let g = default_workflow("missing-model.safetensors", 4);
    let body: Value =
        c.post(d.at("/prompt")).json(&json!({"prompt": g})).send().await.expect("post").json().await.expect("json");
    assert_eq!(body["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list");
    // Nothing was queued by any of them.
    let jobs: Value = c.get(d.at("/api/v1/jobs")).send().await.expect("jobs").json().await.expect("json");
    assert_eq!(jobs["jobs"], json!([]));
}

/// A ComfyUI user's workflow names its checkpoint by the file they imported:
/// `Realistic Vision V5.1 (fp16).safetensors` was refused `not in [...]` because the import
/// had named the model `Realistic-Vision-V5.1--fp16-` and `/prompt` only stripped the folder
/// and extension. The file name now finds the model its import named, under today's rule
/// (runs of `-` joined, none at the ends) or the former one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_named_by_its_file_with_spaces_runs_the_model_its_import_named() {
    let models = models_dir(false);
    let home = tempfile::tempdir().expect("tempdir");
    // Today's import of a file with spaces names it without runs of `-`.
    let file = home.path().join("4x Ultra Sharp (1).onnx");
    std::fs::copy(common::fixture("models/tiny-esrgan-x4/model.onnx"), &file).expect("copy");
    let out = common::tools::run_ok(
        common::tools::reelbox_cli(home.path(), models.path())
            .args(["models", "import", "--kind", "upscale"])
            .arg(&file),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("imported 4x-Ultra-Sharp-1 (upscale"), "{said}");
    // Checkpoints imported under today's rule and under the former one.
    let sd = common::fixture("models/tiny-sd");
    for name in ["Realistic-Vision-V5.1-fp16", "Anything-V5--fp16-"] {
        std::os::unix::fs::symlink(&sd, models.path().join(name)).expect("link");
    }
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    for (ckpt, model) in [
        ("SD1.5/Realistic Vision V5.1 (fp16).safetensors", "Realistic-Vision-V5.1-fp16"),
        ("Anything V5 (fp16).ckpt", "Anything-V5--fp16-"),
        ("SD1.5/tiny-sd.safetensors", "tiny-sd"),
    ] {
        let id = queue_prompt(&c, &d, json!({"prompt": default_workflow(ckpt, 2)})).await;
        let job: Value =
            c.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("job").json().await.expect("json");
        assert_eq!(job["params"]["model"], model, "{ckpt}: {job}");
        let entry = history_of(&c, &d, &id, Duration::from_secs(120)).await;
        assert_eq!(entry["status"]["status_str"], "success", "{ckpt}: {entry}");
    }
    // A file no import named is still not in the list.
    let g = default_workflow("Realistic Vision V6.0.safetensors", 2);
    let resp = c.post(d.at("/prompt")).json(&json!({"prompt": g})).send().await.expect("post");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_between_prompt_and_history() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let c = http();
    let mut d = start_daemon(data.path(), models.path());
    let id = queue_prompt(&c, &d, json!({"prompt": default_workflow("tiny-sd", 6)})).await;
    let (status, _) = d.terminate();
    assert!(status.success(), "{status}");
    let d = start_daemon(data.path(), models.path());
    let entry = history_of(&c, &d, &id, Duration::from_secs(60)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let image = &entry["outputs"]["9"]["images"][0];
    let resp = c
        .get(d.at("/view"))
        .query(&[("filename", image["filename"].as_str().expect("filename")), ("type", "output")])
        .send()
        .await
        .expect("view");
    assert_eq!(resp.status(), 200);
    let all: Value = c.get(d.at("/history")).send().await.expect("history").json().await.expect("json");
    assert_eq!(all.as_object().map(|m| m.len()), Some(1));
    // And it is the same job in the native API.
    let job: Value = c.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(job["kind"], "image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_image_feeds_image_to_image_and_pending_prompts_can_be_deleted() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut png = Vec::new();
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(png).file_name("gradient.png").mime_str("image/png").expect("mime"),
        )
        .text("type", "input");
    let up: Value =
        c.post(d.at("/upload/image")).multipart(form).send().await.expect("upload").json().await.expect("json");
    assert_eq!(up["type"], "input");
    let name = up["name"].as_str().expect("name").to_string();
    assert!(name.starts_with("gradient_"), "{name}");

    let mut g = default_workflow("tiny-sd", 6);
    g["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    g["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    g["3"]["inputs"]["denoise"] = json!(0.5);
    g.as_object_mut().expect("graph").remove("5");

    // Held in the queue first: listed as pending, then deleted.
    assert_eq!(c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    let doomed = queue_prompt(&c, &d, json!({"prompt": g.clone()})).await;
    let queue: Value = c.get(d.at("/queue")).send().await.expect("queue").json().await.expect("json");
    assert_eq!(queue["queue_pending"][0][1], doomed.as_str());
    assert_eq!(queue["queue_pending"][0][4], json!(["9"]));
    answers_as_documented(&c, &d, "/queue", "/queue").await;
    let resp = c.post(d.at("/queue")).json(&json!({"delete": [doomed]})).send().await.expect("delete");
    assert_eq!(resp.status(), 200);
    let queue: Value = c.get(d.at("/queue")).send().await.expect("queue").json().await.expect("json");
    assert_eq!(queue["queue_pending"], json!([]));
    let job: Value =
        c.get(d.at(&format!("/api/v1/jobs/{doomed}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(job["state"], "canceled");
    // It never ran, yet a client polling its history finds it ended, interrupted, with no
    // outputs, as ComfyUI shows an interrupted prompt (rather than waiting forever).
    let h: Value =
        c.get(d.at(&format!("/history/{doomed}"))).send().await.expect("history").json().await.expect("json");
    let entry = &h[doomed.as_str()];
    assert_eq!(
        (&entry["status"]["status_str"], &entry["status"]["completed"]),
        (&json!("error"), &json!(false)),
        "{h}"
    );
    assert_eq!(entry["outputs"], json!({}), "{h}");
    assert_eq!(entry["prompt"][1], doomed.as_str(), "{h}");
    let messages = entry["status"]["messages"].as_array().expect("messages");
    let kinds: Vec<&str> = messages.iter().filter_map(|m| m[0].as_str()).collect();
    assert_eq!(kinds, ["execution_interrupted"], "{h}");
    assert_eq!((&messages[0][1]["prompt_id"], &messages[0][1]["node_id"]), (&json!(doomed), &Value::Null), "{h}");
    assert_eq!(messages[0][1]["reason"], "canceled by its owner", "{h}");
    let all: Value = c.get(d.at("/history")).send().await.expect("history").json().await.expect("json");
    assert_eq!(all[doomed.as_str()], *entry, "listed in the whole history too");
    answers_as_documented(&c, &d, "/history/{prompt_id}", &format!("/history/{doomed}")).await;

    assert_eq!(c.post(d.at("/api/v1/queue/resume")).send().await.expect("resume").status(), 200);
    let id = queue_prompt(&c, &d, json!({"prompt": g})).await;
    let entry = history_of(&c, &d, &id, Duration::from_secs(60)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    // Both ends, a success with its pictures and an interruption, in the document's shape.
    answers_as_documented(&c, &d, "/history", "/history").await;
    answers_as_documented(&c, &d, "/history/{prompt_id}", &format!("/history/{id}")).await;
    let job: Value = c.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(job["params"]["strength"], 0.5);
    assert!(job["params"]["init_image"].is_string());
    let mut unknown = default_workflow("tiny-sd", 6);
    unknown["10"] = json!({"class_type": "LoadImage", "inputs": {"image": "never-uploaded.png"}});
    unknown["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    unknown["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    let body: Value = c
        .post(d.at("/prompt"))
        .json(&json!({"prompt": unknown}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(body["node_errors"]["10"]["errors"][0]["type"], "custom_validation_failed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_system_descriptions_answer_in_comfyuis_shape() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let get = |path: &str| {
        let c = c.clone();
        let url = d.at(path);
        async move { c.get(url).send().await.expect("get").json::<Value>().await.expect("json") }
    };
    let info = get("/object_info").await;
    // The installed model, beside any demo models a source checkout bundles.
    let ckpts = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0].clone();
    assert!(ckpts.as_array().is_some_and(|c| c.contains(&json!("tiny-sd"))), "{ckpts}");
    let samplers = &info["KSampler"]["input"]["required"]["sampler_name"][0];
    assert_eq!(*samplers, json!(["euler", "euler_ancestral", "ddim", "dpmpp_2m", "lcm"]));
    assert_eq!(info["SaveImage"]["output_node"], true);
    assert_eq!(get("/api/object_info/KSampler").await["KSampler"]["output"], json!(["LATENT"]));
    assert_eq!(get("/models").await, json!(["checkpoints", "upscale_models", "loras"]));
    assert_eq!(get("/models/checkpoints").await, ckpts);
    let stats = get("/system_stats").await;
    let devices = stats["devices"].as_array().expect("devices");
    assert!(!devices.is_empty());
    assert!(devices.iter().all(|d| d["type"] == "cpu" || d["type"] == "cuda"), "{stats}");
    assert!(stats["system"]["ram_total"].as_u64().is_some_and(|r| r > 0));
    assert_eq!(get("/prompt").await, json!({"exec_info": {"queue_remaining": 0}}));
    // What ComfyUI's front end and scripts also ask for (all were 404s).
    assert_eq!(get("/extensions").await, json!([]));
    assert_eq!(get("/api/embeddings").await, json!([]));
    assert!(get("/api/features").await["max_upload_size"].as_u64().is_some_and(|m| m > 0));
    for body in [json!({"unload_models": true, "free_memory": true}), json!({})] {
        let freed = c.post(d.at("/free")).json(&body).send().await.expect("free");
        assert_eq!(freed.status(), 200, "{body}");
    }
    // An OpenAI SDK whose base_url lacks /v1 asks /models too: it is told, not given
    // ComfyUI's list (the Python SDK died on it with an AttributeError).
    let sdk = c.get(d.at("/models")).header("x-stainless-lang", "python").send().await.expect("models");
    assert_eq!(sdk.status(), 404);
    let err: Value = sdk.json().await.expect("json");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("/v1")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_the_running_prompt_and_the_socket_says_so() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut socket = connect(&d, "client-i").await;
    // Big and long enough for the tiny model to still be sampling when the interrupt lands.
    let mut g = default_workflow("tiny-sd", 150);
    g["5"]["inputs"]["width"] = json!(512);
    g["5"]["inputs"]["height"] = json!(512);
    let id = queue_prompt(&c, &d, json!({"prompt": g, "client_id": "client-i"})).await;
    let mut types = Vec::new();
    let mut interrupted = false;
    while let Some(v) = next_json(&mut socket, Duration::from_secs(30)).await {
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        if kind == "progress" && !interrupted {
            let resp = c.post(d.at("/interrupt")).json(&json!({"prompt_id": id})).send().await.expect("interrupt");
            assert_eq!(resp.status(), 200);
            interrupted = true;
        }
        if kind == "execution_interrupted" {
            assert_eq!(v["data"]["reason"], "canceled by its owner", "the socket says who interrupted it: {v}");
        }
        let done = kind == "executing" && v["data"]["node"].is_null();
        types.push(kind);
        if done {
            break;
        }
    }
    assert!(types.contains(&"execution_interrupted".to_string()), "{types:?}");
    assert!(!types.contains(&"execution_success".to_string()), "{types:?}");
    let entry = history_of(&c, &d, &id, Duration::from_secs(5)).await;
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["outputs"], json!({}));
    // The history's status messages say who interrupted it, as the socket did.
    let messages = entry["status"]["messages"].as_array().cloned().unwrap_or_default();
    let end = messages.iter().find(|m| m[0] == "execution_interrupted");
    assert_eq!(end.map(|m| m[1]["reason"].clone()), Some(json!("canceled by its owner")), "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_stats_lists_every_gpu_with_its_memory() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon_with(data.path(), models.path(), &[("REELBOX_FAKE_GPUS", "8192,24576")]);
    let stats: Value = http().get(d.at("/api/system_stats")).send().await.expect("get").json().await.expect("json");
    let devices = stats["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "{stats}");
    for (i, (dev, mib)) in devices.iter().zip([8192u64, 24576]).enumerate() {
        assert_eq!(dev["type"], "cuda");
        assert_eq!(dev["index"], i);
        assert_eq!(dev["vram_total"].as_u64(), Some(mib << 20), "{dev}");
        assert!(dev["vram_free"].as_u64().is_some_and(|f| f <= mib << 20), "{dev}");
        assert!(dev["name"].as_str().is_some_and(|n| n.starts_with(&format!("cuda:{i}"))), "{dev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_names_its_own_upload_gets_the_newest_one() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    // Scripts upload `pics/door.png` with overwrite and name it so in their graph, without
    // reading the answer (ComfyUI keeps the name); it was "not a name /upload/image returned".
    let mut ids = Vec::new();
    for color in [[200u8, 20, 20], [20, 20, 200]] {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(64, 64, image::Rgb(color))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let part = reqwest::multipart::Part::bytes(png).file_name("door.png").mime_str("image/png").expect("mime");
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("subfolder", "pics")
            .text("overwrite", "true")
            .text("type", "input");
        let up: Value =
            c.post(d.at("/upload/image")).multipart(form).send().await.expect("upload").json().await.expect("json");
        assert_eq!((&up["subfolder"], &up["type"]), (&json!("pics"), &json!("input")), "echoed as ComfyUI does: {up}");
        let name = up["name"].as_str().expect("name");
        let id = name.trim_end_matches(".png").rsplit('_').next().expect("id").to_string();
        ids.push(id);
    }
    let view = c
        .get(d.at("/view"))
        .query(&[("filename", "door.png"), ("subfolder", "pics"), ("type", "input")])
        .send()
        .await
        .expect("view");
    assert_eq!(view.status(), 200);
    let seen = image::load_from_memory(&view.bytes().await.expect("bytes")).expect("a picture").to_rgb8();
    assert_eq!(seen.get_pixel(0, 0).0, [20, 20, 200], "the newest upload of the name");
    // An upload is in the input folder only: ComfyUI's temp and output folders do not hold it.
    for folder in ["temp", "output"] {
        let query = [("filename", "door.png"), ("subfolder", "pics"), ("type", folder)];
        let view = c.get(d.at("/view")).query(&query).send().await.expect("view");
        assert_eq!(view.status(), 404, "{folder}");
    }
    // One sent with `type=temp` (or `output`) is in that folder, by either name, and only there.
    for (seed, folder) in [(3, "temp"), (4, "output")] {
        let part = reqwest::multipart::Part::bytes(common::media::png(&common::media::test_picture(32, 32, seed)))
            .file_name(format!("{folder}-scratch.png"))
            .mime_str("image/png")
            .expect("mime");
        let form = reqwest::multipart::Form::new().part("image", part).text("type", folder);
        let up: Value =
            c.post(d.at("/upload/image")).multipart(form).send().await.expect("upload").json().await.expect("json");
        assert_eq!(up["type"], folder, "{up}");
        let answered = up["name"].as_str().expect("name").to_string();
        for name in [answered, format!("{folder}-scratch.png")] {
            for (asked, found) in
                [(folder, 200), ("input", 404), (if folder == "temp" { "output" } else { "temp" }, 404)]
            {
                let view = c.get(d.at("/view")).query(&[("filename", name.as_str()), ("type", asked)]).send().await;
                assert_eq!(view.expect("view").status(), found, "{name} sent to {folder}, asked in {asked}");
            }
        }
    }

    let mut g = default_workflow("tiny-sd", 4);
    g["10"] = json!({"class_type": "LoadImage", "inputs": {"image": "pics/door.png"}});
    g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    g["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    g["3"]["inputs"]["denoise"] = json!(0.6);
    g.as_object_mut().expect("graph").remove("5");
    let id = queue_prompt(&c, &d, json!({"prompt": g})).await;
    let entry = history_of(&c, &d, &id, Duration::from_secs(60)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let job: Value = c.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(job["params"]["init_image"].as_str(), Some(ids[1].as_str()), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_webui_and_comfys_script_examples_get_their_pictures() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let out = tempfile::tempdir().expect("out dir");
    let summary = run_client("comfy_client.py", vec![d.url.clone(), out.path().to_string_lossy().into_owned()]).await;
    assert!(summary["models"].as_array().is_some_and(|m| m.contains(&json!("tiny-sd"))), "{summary}");
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["own_prompt_id_kept"], true, "{run}");
        for t in ["status", "execution_start", "executing", "progress", "executed", "execution_success"] {
            assert!(run["types"].as_array().is_some_and(|ts| ts.contains(&json!(t))), "{t} missing: {run}");
        }
        // 12 steps with a preview every 5: binary preview frames on the socket.
        assert!(run["previews"].as_u64().is_some_and(|n| n > 0), "{run}");
        let images = run["images"].as_array().expect("images");
        assert_eq!(images.len(), 2, "batch_size 2 through Open WebUI's node mapping: {run}");
        for image in images {
            assert_eq!((&image[0], &image[1]), (&json!("9"), &json!("image/png")), "{run}");
            let file = out.path().join(image[2].as_str().expect("filename"));
            let png = image::open(&file).expect("a picture");
            assert_eq!((png.width(), png.height()), (64, 64));
        }
    }
}
