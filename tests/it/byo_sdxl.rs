//! Bring your own SDXL: a diffusers SDXL base folder (two text encoders, the second with a
//! pooled `text_embeds` output; a UNet with `text_embeds`/`time_ids`) imports through
//! `POST /api/v1/models/import`, converts to the ONNX layout the diffusion pipeline loads
//! for SDXL, passes the self-check with SDXL's inputs (one UNet step with the added
//! conditioning and a 4-step image against diffusers' StableDiffusionXLPipeline, ≤ 1e-3),
//! and renders an image in the real daemon. The tiny SDXL is made at test time by
//! `tests/fixtures/make_byo_sdxl.py`.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::provision;
use common::tools::{convert_pyenv, make_fixture};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdxl_diffusers_folder_imports_self_checks_and_renders_in_the_daemon() {
    let env = convert_pyenv();
    let src = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("byo-sdxl");
    make_fixture(&env, "make_byo_sdxl.py", &src);
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let runtime = provision::runtime();
    let d = DaemonProc::start(
        &home.path().join("data"),
        &[
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
            ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
            ("REELBOX_CONVERT_PYENV", env.to_str().expect("utf-8")),
        ],
    );
    let http = reqwest::Client::new();
    let body = json!({"path": src.join("tiny-sdxl-diffusers"), "name": "my-sdxl"});
    let (s, job) = post_json(&http, &d, "/api/v1/models/import", body).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&http, &d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let text = events.text().await.expect("event text");
    assert!(text.contains("exported the text encoders") && text.contains("self-check passed"), "{text}");
    let artifacts = get_json(&http, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let report = get_json(&http, &d, artifacts[0]["url"].as_str().expect("url")).await;
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("diff");
    assert!(diff <= 1e-3, "reelbox's SDXL pipeline differs from diffusers' by {diff}: {report}");
    println!("SDXL self-check: {}", report["self_check"]);

    let dir = models.join("my-sdxl");
    for part in ["text_encoder_2/model.onnx", "tokenizer_2/vocab.json", "unet/model.onnx_data"] {
        assert!(dir.join(part).is_file(), "{part} is installed");
    }
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model_index.json")).expect("index")).expect("JSON");
    assert_eq!(index["_class_name"], "StableDiffusionXLPipeline", "{index}");
    let listed = get_json(&http, &d, "/api/v1/models").await;
    let entry = listed["models"].as_array().and_then(|a| a.iter().find(|x| x["name"] == "my-sdxl").cloned());
    assert_eq!(entry.as_ref().map(|e| e["kind"].clone()), Some(json!("diffusion")), "{listed}");

    // The imported SDXL serves an image job; a different seed draws a different picture.
    let mut pictures = Vec::new();
    for seed in [7, 8] {
        let params =
            json!({"model": "my-sdxl", "prompt": "a red circle", "seed": seed, "width": 64, "height": 64, "steps": 2});
        let (s, job) = post_json(&http, &d, "/api/v1/jobs", json!({"kind": "image", "params": params})).await;
        assert_eq!(s, 202, "{job}");
        let id = job["id"].as_str().expect("id").to_string();
        let done = wait_job(&http, &d, &id, Duration::from_secs(120), is_final).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        let out = get_json(&http, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
        let png = out
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"].as_str().is_some_and(|n| n.ends_with(".png"))).cloned())
            .unwrap_or_else(|| panic!("no PNG among {out}"));
        let bytes = http.get(d.at(png["url"].as_str().expect("url"))).send().await.expect("get");
        let img = image::load_from_memory(&bytes.bytes().await.expect("bytes")).expect("PNG").to_rgb8();
        assert_eq!(img.dimensions(), (64, 64));
        pictures.push(img.into_raw());
    }
    assert_ne!(pictures[0], pictures[1], "the seed changes the picture");
}
