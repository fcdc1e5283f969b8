//! A1111's model and LoRA hashes, so Civitai and A1111 tools know the model a picture was
//! drawn with: a checkpoint file imported with `reelbox models import` is listed by
//! `/sdapi/v1/sd-models` with the file's sha256 and titled `name [first 10]`; a request picks
//! it by that title, the sha256 or the shorthash; every picture's parameters text (A1111's
//! txt2img, a hires fix, a native job) says `Model hash: first 10` before `Model`, and a model
//! with a LoRA fused in says `Lora hashes: "stem: first 12 of its addnet hash"`; PNG Info
//! reads the hash back and sending it to txt2img picks the same model. A model whose import
//! kept no hash (a folder's, or one from before) is listed with nulls and its pictures say
//! none. A second pass on another model (`hr_checkpoint_name`) keeps the first pass's `Model
//! hash` beside its `Model`. Before, every hash was `null` and no text said one.
//!
//! The hashes are worked out here on their own, from the fixtures' bytes.

use crate::common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::byo::{fixture_once, import_daemon, import_report};
use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::tools::convert_pyenv;
use reelbox::pipelines::diffusion::output::parameters_of;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The sha256 of `bytes`, in hex.
fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// kohya's "addnet" hash of a `.safetensors` file, as A1111 hashes a LoRA: the sha256 of the
/// bytes after its 8-byte header length and the header.
fn addnet_hash(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read LoRA");
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    sha256(&bytes[8 + header..])
}

/// A txt2img of a 64×64, 2-step picture with `model` (an `override_settings` value); the
/// answer's `info` and its picture's PNG bytes.
async fn txt2img(http: &reqwest::Client, d: &DaemonProc, model: &str, extra: Value) -> (Value, Vec<u8>) {
    let mut body = json!({"prompt": "a red circle", "seed": 7, "steps": 2, "width": 64, "height": 64,
        "override_settings": {"sd_model_checkpoint": model}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let (s, answer) = post_json(http, d, "/sdapi/v1/txt2img", body).await;
    assert_eq!(s, 200, "{model}: {answer}");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info JSON");
    let png = base64::engine::general_purpose::STANDARD.decode(answer["images"][0].as_str().expect("an image"));
    (info, png.expect("base64"))
}

/// The `parameters` text of the picture a native `image` job with `model` made.
async fn native_text(http: &reqwest::Client, d: &DaemonProc, model: &str) -> String {
    let params = json!({"model": model, "prompt": "a red circle", "seed": 7, "width": 64, "height": 64, "steps": 2});
    let (s, job) = post_json(http, d, "/api/v1/jobs", json!({"kind": "image", "params": params})).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(http, d, &id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let out = get_json(http, d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let png = out.as_array().and_then(|a| a.iter().find(|x| x["name"] == "image.png").cloned());
    let png = png.unwrap_or_else(|| panic!("no image.png among {out}"));
    let bytes = http.get(d.at(png["url"].as_str().expect("url"))).send().await.expect("get");
    parameters_of(&bytes.bytes().await.expect("bytes")).expect("a parameters text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_checkpoints_and_loras_are_known_by_a1111s_hashes_in_listings_requests_and_pictures() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_ckpt.py").join("tiny-sd1.safetensors");
    let style = fixture_once(&env, "make_byo_lora.py").join("style-kohya.safetensors");
    let base = fixture_once(&env, "make_byo_sd.py").join("tiny-sd-diffusers");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let (h, m) = (home.path(), models.as_path());
    import_report(&env, h, m, &["--name", "sd1"], &ckpt).unwrap_or_else(|e| panic!("{e}"));
    let lora = format!("{}:0.8", style.display());
    import_report(&env, h, m, &["--name", "inked", "--lora", &lora], &base).unwrap_or_else(|e| panic!("{e}"));
    // A model with no import record at all, as one copied in or imported before hashes.
    std::os::unix::fs::symlink(common::fixture("models/tiny-sd"), models.join("tiny-sd")).expect("link tiny-sd");
    // Another model of no hash, for a second pass of its own.
    std::os::unix::fs::symlink(common::fixture("models/tiny-sd-2"), models.join("tiny-sd-2")).expect("link tiny-sd-2");

    let sha = sha256(&std::fs::read(&ckpt).expect("read checkpoint"));
    let short = &sha[..10];
    let lora_short = &addnet_hash(&style)[..12];
    assert_ne!(lora_short, &sha256(&std::fs::read(&style).expect("read"))[..12], "not the whole file's hash");

    let d = import_daemon(h, &models, &env);
    let http = reqwest::Client::new();
    let listed = get_json(&http, &d, "/sdapi/v1/sd-models").await;
    let entry = |name: &str| {
        let found = listed.as_array().and_then(|a| a.iter().find(|x| x["model_name"] == name).cloned());
        found.unwrap_or_else(|| panic!("no {name} in {listed}"))
    };
    let sd1 = entry("sd1");
    assert_eq!((&sd1["sha256"], &sd1["hash"]), (&json!(sha), &json!(short)), "{sd1}");
    assert_eq!(sd1["title"], format!("sd1 [{short}]"), "{sd1}");
    for unhashed in ["inked", "tiny-sd"] {
        let e = entry(unhashed);
        assert_eq!((&e["sha256"], &e["hash"], &e["title"]), (&Value::Null, &Value::Null, &json!(unhashed)), "{e}");
    }

    // Picked by its title, as A1111 clients send the model they listed.
    let title = format!("sd1 [{short}]");
    let (info, png) = txt2img(&http, &d, &title, json!({})).await;
    assert_eq!((&info["sd_model_name"], &info["sd_model_hash"]), (&json!("sd1"), &json!(short)), "{info}");
    let text = parameters_of(&png).expect("a parameters text");
    assert!(text.contains(&format!(", Size: 64x64, Model hash: {short}, Model: sd1, ")), "{text}");
    assert_eq!(info["infotexts"][0].as_str(), Some(text.as_str()));

    // PNG Info reads the hash back; sent back to txt2img, it picks the same model.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let (s, read) = post_json(&http, &d, "/sdapi/v1/png-info", json!({"image": b64})).await;
    assert_eq!(s, 200, "{read}");
    let hash = read["parameters"]["Model hash"].as_str().unwrap_or_else(|| panic!("no Model hash in {read}"));
    assert_eq!(hash, short);
    let (again, _) = txt2img(&http, &d, hash, json!({})).await;
    assert_eq!(again["sd_model_name"], "sd1", "{again}");
    // The whole sha256 picks it too, in either case.
    let (by_sha, _) = txt2img(&http, &d, &sha.to_uppercase(), json!({})).await;
    assert_eq!(by_sha["sd_model_name"], "sd1", "{by_sha}");

    // A hires fix's text and a native job's name the model's hash alike.
    let (_, hires) = txt2img(&http, &d, "sd1", json!({"enable_hr": true, "hr_scale": 1.5})).await;
    let text = parameters_of(&hires).expect("a parameters text");
    assert!(text.contains(&format!("Model hash: {short}, Model: sd1,")) && text.contains("Hires upscale"), "{text}");
    // A second pass on another model (A1111's Hires checkpoint): the text's Model is the
    // first pass's, and so is its Model hash (it was the second model's, here none).
    let other =
        json!({"enable_hr": true, "hr_scale": 1.5, "hr_upscaler": "Lanczos", "hr_checkpoint_name": "tiny-sd-2"});
    let (info, hires) = txt2img(&http, &d, "sd1", other).await;
    let text = parameters_of(&hires).expect("a parameters text");
    assert!(text.contains(&format!("Model hash: {short}, Model: sd1,")), "{text}");
    assert!(text.contains("Hires checkpoint: tiny-sd-2") && info["sd_model_hash"] == short, "{text} {info}");
    let native = native_text(&http, &d, "sd1").await;
    assert!(native.contains(&format!(", Model hash: {short}, Model: sd1, ")), "{native}");

    // The options: set by the sha256, read back as A1111 keeps them.
    let (s, set) = post_json(&http, &d, "/sdapi/v1/options", json!({"sd_model_checkpoint": sha})).await;
    assert_eq!(s, 200, "{set}");
    let options = get_json(&http, &d, "/sdapi/v1/options").await;
    assert_eq!((&options["sd_model_checkpoint"], &options["sd_checkpoint_hash"]), (&json!(title), &json!(sha)));

    // A LoRA fused in: named by its file's stem and A1111's hash of it; its base was a folder,
    // which has no file hash.
    let (info, png) = txt2img(&http, &d, "inked", json!({})).await;
    let text = parameters_of(&png).expect("a parameters text");
    assert!(text.contains(&format!(", Lora hashes: \"style-kohya: {lora_short}\", Version: ")), "{text}");
    assert!(!text.contains("Model hash") && info["sd_model_hash"].is_null(), "{text} {info}");
    assert_eq!(info["extra_generation_params"]["Lora hashes"], format!("style-kohya: {lora_short}"), "{info}");
    let (s, read) = post_json(
        &http,
        &d,
        "/sdapi/v1/png-info",
        json!({"image": base64::engine::general_purpose::STANDARD.encode(&png)}),
    )
    .await;
    assert_eq!((s, &read["parameters"]["Lora hashes"]), (200, &json!(format!("style-kohya: {lora_short}"))));

    // No record: drawn and described as before, with no hash.
    let (info, png) = txt2img(&http, &d, "tiny-sd", json!({})).await;
    let text = parameters_of(&png).expect("a parameters text");
    assert!(!text.contains("hash") && info["sd_model_hash"].is_null(), "{text} {info}");
}
