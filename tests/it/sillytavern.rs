//! SillyTavern's image generation against the real daemon, the tiny SD model and real HTTP,
//! replaying the calls its server makes for each source (SillyTavern's
//! `src/endpoints/stable-diffusion.js`: the A1111 `router`, the `comfy` router) with the
//! bodies its client sends (`public/scripts/extensions/stable-diffusion/index.js`), and
//! reading exactly the fields it reads. Before, the A1111 source's VAE list was a 404 on both
//! routes it tries (`sd-vae`, Forge's `sd-modules`), its default DDIM sampler with its default
//! `normal` schedule a 422, and the ComfyUI source's model and VAE lists failed on the
//! `UNETLoader` and `VAELoader` it reads from `/object_info` unguarded.

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::compat::{TINY_SD, models_dir, start_daemon};
use common::daemon::DaemonProc;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// SillyTavern's A1111 calls carry `Authorization: Basic base64(auth)`, `auth` its "user:pass"
/// field: the key as the password.
fn basic_client(key: &str) -> reqwest::Client {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("sillytavern:{key}"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Basic {auth}").parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// `GET path` as SillyTavern fetches it: the answer must be ok (it throws otherwise) and JSON.
async fn get_ok(c: &reqwest::Client, d: &DaemonProc, path: &str) -> Value {
    let resp = c.get(d.at(path)).send().await.expect("request");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "GET {path}: {status} {body}");
    body
}

/// `data.map(x => x[field])`, each a text, as SillyTavern lists names.
fn names(data: &Value, field: &str) -> Vec<String> {
    let items = data.as_array().unwrap_or_else(|| panic!("a list of objects with {field}: {data}"));
    items.iter().map(|x| x[field].as_str().unwrap_or_else(|| panic!("{field} of {x}")).to_string()).collect()
}

/// A picture's size from its bytes.
fn size_of(bytes: &[u8]) -> (u32, u32) {
    let picture = image::load_from_memory(bytes).expect("a picture");
    (picture.width(), picture.height())
}

/// The body SillyTavern's `generateAutoImage` sends, `url` and `auth` included (its server
/// forwards the whole body), with its defaults: DDIM, the `normal` schedule, clip skip 1.
fn st_txt2img(url: &str, auth: &str, enable_hr: bool) -> Value {
    json!({
        "url": url, "auth": auth,
        "prompt": "best quality, absurdres, aesthetic, a lighthouse at dusk",
        "negative_prompt": "lowres, bad anatomy, bad hands, text, error, cropped, worst quality",
        "sampler_name": "DDIM", "scheduler": "normal", "steps": 4, "cfg_scale": 7, "width": 64, "height": 64,
        "restore_faces": false, "enable_hr": enable_hr, "hr_upscaler": "Latent", "hr_scale": 2.0,
        "hr_additional_modules": [], "denoising_strength": 0.7, "hr_second_pass_steps": 0,
        "override_settings": {"CLIP_stop_at_last_layers": 1},
        "override_settings_restore_afterwards": true, "clip_skip": 1,
        "save_images": true, "send_images": true, "do_not_save_grid": false, "do_not_save_samples": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sillytavern_lists_sets_the_model_and_draws_through_the_a1111_source() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let (_, key) = common::api::create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let c = basic_client(&key);

    // router.post('/ping'): GET /sdapi/v1/options answers ok.
    get_ok(&c, &d, "/sdapi/v1/options").await;
    // router.post('/upscalers'): the upscalers' then the latent modes' `name`s.
    let upscalers = names(&get_ok(&c, &d, "/sdapi/v1/upscalers").await, "name");
    let latent = names(&get_ok(&c, &d, "/sdapi/v1/latent-upscale-modes").await, "name");
    assert!(upscalers.first().is_some_and(|u| u == "None") && latent.contains(&"Latent".into()), "{upscalers:?}");
    // router.post('/vaes'): whichever of A1111's sd-vae and Forge's sd-modules answers ok must
    // be a list of objects with `model_name` (reelbox keeps no VAE apart from its models: none).
    for path in ["/sdapi/v1/sd-vae", "/sdapi/v1/sd-modules"] {
        assert_eq!(names(&get_ok(&c, &d, path).await, "model_name"), Vec::<String>::new(), "{path}");
    }
    // router.post('/samplers'), ('/schedulers'): `name`s; its defaults are among them.
    let samplers = names(&get_ok(&c, &d, "/sdapi/v1/samplers").await, "name");
    let schedules = names(&get_ok(&c, &d, "/sdapi/v1/schedulers").await, "name");
    assert!(samplers.contains(&"DDIM".into()) && schedules.contains(&"normal".into()), "{samplers:?} {schedules:?}");
    // router.post('/models'): each model's `title`; ('/get-model'): options' sd_model_checkpoint.
    let titles = names(&get_ok(&c, &d, "/sdapi/v1/sd-models").await, "title");
    assert_eq!(titles, vec![TINY_SD.to_string()]);
    let options = get_ok(&c, &d, "/sdapi/v1/options").await;
    assert_eq!(options["sd_model_checkpoint"], TINY_SD);

    // router.post('/set-model'): POST the title, then poll progress until it reads idle.
    let resp = c.post(d.at("/sdapi/v1/options")).json(&json!({"sd_model_checkpoint": titles[0]})).send().await;
    assert!(resp.expect("set").status().is_success());
    let progress = get_ok(&c, &d, "/sdapi/v1/progress").await;
    assert_eq!((progress["progress"].as_f64(), progress["state"]["job_count"].as_u64()), (Some(0.0), Some(0)));

    // router.post('/generate'): options (no `forge_preset`: not Forge), then txt2img with
    // SillyTavern's body; it shows `images[0]`.
    assert!(get_ok(&c, &d, "/sdapi/v1/options").await.get("forge_preset").is_none());
    let b64 = base64::engine::general_purpose::STANDARD;
    for (enable_hr, side) in [(false, 64), (true, 128)] {
        let body = st_txt2img(&d.url, &format!("sillytavern:{key}"), enable_hr);
        let resp = c.post(d.at("/sdapi/v1/txt2img")).json(&body).send().await.expect("txt2img");
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "enable_hr {enable_hr}: {answer}");
        let picture = b64.decode(answer["images"][0].as_str().expect("images[0]")).expect("base64");
        assert_eq!(size_of(&picture), (side, side), "enable_hr {enable_hr}");
    }

    // The socket's 'close' while drawing: SillyTavern aborts its request and POSTs interrupt;
    // the picture stops rather than drawing on for no one.
    let mut long = st_txt2img(&d.url, "", false);
    long["steps"] = json!(150);
    let drawing = tokio::spawn({
        let (c, url) = (c.clone(), d.at("/sdapi/v1/txt2img"));
        async move { c.post(url).json(&long).send().await.map(|r| r.status()) }
    });
    let t0 = Instant::now();
    let job = loop {
        let progress = get_ok(&c, &d, "/sdapi/v1/progress").await;
        if let Some(job) = progress["state"]["job"].as_str().filter(|j| !j.is_empty()) {
            break job.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the picture never ran: {progress}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drawing.abort();
    let resp = c.post(d.at("/sdapi/v1/interrupt")).send().await.expect("interrupt");
    assert!(resp.status().is_success());
    let t0 = Instant::now();
    loop {
        let view = get_ok(&c, &d, &format!("/api/v1/jobs/{job}")).await;
        if view["state"] == "canceled" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "not canceled: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SillyTavern's default ComfyUI workflow (`default/content/Default_Comfy_Workflow.json`),
/// placeholders and all, as its client reads it: text to replace in.
const ST_WORKFLOW: &str = r#"{
    "3": {"class_type": "KSampler", "inputs": {"cfg": "%scale%", "denoise": 1, "latent_image": ["5", 0],
        "model": ["4", 0], "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "%sampler%",
        "scheduler": "%scheduler%", "seed": "%seed%", "steps": "%steps%"}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "%model%"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": "%height%", "width": "%width%"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "%prompt%"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "%negative_prompt%"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "SillyTavern", "images": ["8", 0]}}
}"#;

/// `POST /prompt` as SillyTavern's server sends it: the body a text (node-fetch then says
/// `text/plain`), no key, `{"prompt": WORKFLOW}`. The status and the JSON answer.
async fn post_prompt(c: &reqwest::Client, d: &DaemonProc, workflow: &str) -> (StatusCode, Value) {
    let body = format!("{{\n    \"prompt\": {workflow}\n}}");
    let resp = c.post(d.at("/prompt")).header("content-type", "text/plain;charset=UTF-8").body(body).send().await;
    let resp = resp.expect("post prompt");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sillytavern_lists_models_and_vaes_and_draws_its_workflow_through_the_comfyui_source() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    // SillyTavern's ComfyUI calls carry no key: a keyless box on its loopback.
    let c = reqwest::Client::new();

    // comfy.post('/ping'): /system_stats answers ok.
    get_ok(&c, &d, "/system_stats").await;
    let info = get_ok(&c, &d, "/object_info").await;
    let required = |node: &str, input: &str| -> Vec<String> {
        let choices = &info[node]["input"]["required"][input][0];
        let choices = choices.as_array().unwrap_or_else(|| panic!("{node}.input.required.{input}[0]: {choices}"));
        choices.iter().map(|c| c.as_str().expect("a name").to_string()).collect()
    };
    // comfy.post('/samplers'), ('/schedulers'): KSampler's choices.
    let (samplers, schedulers) = (required("KSampler", "sampler_name"), required("KSampler", "scheduler"));
    assert!(samplers.contains(&"euler".into()) && schedulers.contains(&"normal".into()), "{samplers:?}");
    // comfy.post('/models'): the checkpoints, then UNETLoader's unets (read unguarded), then
    // UnetLoaderGGUF's if that node is there.
    let mut listed = required("CheckpointLoaderSimple", "ckpt_name");
    listed.extend(required("UNETLoader", "unet_name"));
    assert!(info.get("UnetLoaderGGUF").is_none());
    assert_eq!(listed, vec![TINY_SD.to_string()], "reelbox loads no UNet on its own");
    // comfy.post('/vaes'): VAELoader's choices (read unguarded): none apart from the models'.
    assert_eq!(required("VAELoader", "vae_name"), Vec::<String>::new());

    // comfy.post('/generate'): the workflow with its placeholders replaced as the client
    // replaces them, posted; then /history polled until the prompt is in it; then /view.
    let fill = [
        ("prompt", json!("a lighthouse at dusk")),
        ("negative_prompt", json!("lowres, text")),
        ("seed", json!(6_004_291_823_655_473_u64)),
        ("model", json!(listed[0])),
        ("sampler", json!("euler")),
        ("scheduler", json!("normal")),
        ("steps", json!(4)),
        ("scale", json!(7)),
        ("width", json!(64)),
        ("height", json!(64)),
    ];
    let workflow =
        fill.iter().fold(ST_WORKFLOW.to_string(), |w, (ph, v)| w.replace(&format!("\"%{ph}%\""), &v.to_string()));
    let (status, queued) = post_prompt(&c, &d, &workflow).await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let id = queued["prompt_id"].as_str().expect("prompt_id").to_string();
    let t0 = Instant::now();
    let item = loop {
        let history = get_ok(&c, &d, "/history").await;
        if let Some(item) = history.get(&id) {
            break item.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "prompt {id} never in /history");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(item["status"]["status_str"], "error", "{item}");
    let outputs = item["outputs"].as_object().expect("outputs");
    let img = outputs.values().find_map(|o| o["images"].get(0)).expect("outputs' images[0]");
    let (filename, subfolder, kind) = (&img["filename"], &img["subfolder"], &img["type"]);
    let view = format!(
        "/view?filename={}&subfolder={}&type={}",
        filename.as_str().expect("filename"),
        subfolder.as_str().expect("subfolder"),
        kind.as_str().expect("type")
    );
    let resp = c.get(d.at(&view)).send().await.expect("view");
    assert!(resp.status().is_success(), "{view}: {}", resp.status());
    assert!(filename.as_str().is_some_and(|f| f.ends_with(".png")), "{img}");
    assert_eq!(size_of(&resp.bytes().await.expect("bytes")), (64, 64));

    // A workflow of its user's loading a UNet and a VAE on their own (Flux's shape): refused
    // before it runs, at each loader and the input naming what reelbox does not have.
    let mut graph: Value = serde_json::from_str(&workflow).expect("the filled workflow");
    graph["10"] = json!({"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}});
    graph["11"] = json!({"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}});
    graph["3"]["inputs"]["model"] = json!(["10", 0]);
    graph["8"]["inputs"]["vae"] = json!(["11", 0]);
    let (status, refused) = post_prompt(&c, &d, &graph.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    for (node, class_type, input) in [("10", "UNETLoader", "unet_name"), ("11", "VAELoader", "vae_name")] {
        let errors = &refused["node_errors"][node];
        assert_eq!(errors["class_type"], class_type, "{refused}");
        assert_eq!(errors["errors"][0]["type"], "value_not_in_list", "{refused}");
        assert_eq!(errors["errors"][0]["extra_info"]["input_name"], input, "{refused}");
    }
}
