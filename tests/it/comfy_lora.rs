//! ComfyUI workflows with LoRA loaders (LoraLoader, LoraLoaderModelOnly) against the real
//! daemon: ComfyUI patches LoRAs onto the checkpoint as it samples, reelbox runs the model
//! the import fused them into (`reelbox models import BASE --lora FILE:SCALE`). A workflow
//! checkpoint → LoraLoader(s) → KSampler/CLIPTextEncode runs on the installed model whose
//! `conversion.json` has that base and those LoRAs at those scales; one with LoRAs no model
//! has is refused at the loader with the import that makes it; `/object_info` and
//! `/models/loras` list the LoRA files. Every such workflow was refused before: "Node
//! 'LoraLoader' not found".
//!
//! A real fusing import needs the conversion environment (`byo_lora.rs` runs one); here the
//! fused models are the tiny SD model's files with the record an import writes, as
//! `models::availability`'s tests fake a conversion, and a scheduler of their own, so their
//! pictures differ from the base's.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::compat::{models_dir, start_daemon};
use common::daemon::{DaemonProc, is_final, post_json, wait_job};
use serde_json::{Value, json};

use crate::comfy_compat::{default_workflow, history_of, http, queue_prompt};
use crate::comfy_upscale::{get, view};

/// A fused model `name` in `models`: tiny-sd's files but its scheduler (`beta_end`, so its
/// pictures are its own), and the `conversion.json` an import of `/m/tiny-sd.safetensors`
/// with `loras` (files under `/l/`) writes.
pub(crate) fn fake_fused(models: &Path, name: &str, loras: &[(&str, f32)]) {
    let dir = models.join(name);
    let tiny = common::fixture("models/tiny-sd");
    std::fs::create_dir_all(dir.join("scheduler")).expect("mkdir");
    for part in ["model_index.json", "text_encoder", "tokenizer", "unet", "vae_decoder", "vae_encoder"] {
        std::os::unix::fs::symlink(tiny.join(part), dir.join(part)).expect("link");
    }
    let config = std::fs::read_to_string(tiny.join("scheduler/scheduler_config.json")).expect("config");
    let config = config.replace("\"beta_end\": 0.012", "\"beta_end\": 0.02");
    assert!(config.contains("0.02"), "the fixture's scheduler changed: {config}");
    std::fs::write(dir.join("scheduler/scheduler_config.json"), config).expect("config");
    let record = json!({
        "source": "/m/tiny-sd.safetensors",
        "format": "stable-diffusion",
        "loras": loras.iter().map(|(f, s)| json!({"file": format!("/l/{f}"), "scale": s})).collect::<Vec<_>>(),
        "fp16": false,
        "details": {"family": "sd", "base": "tiny-sd", "prediction_type": "epsilon",
            "loras": loras.iter().map(|(f, s)| json!({"name": f.trim_end_matches(".safetensors"), "scale": s}))
                .collect::<Vec<_>>()},
    });
    std::fs::write(dir.join("conversion.json"), record.to_string()).expect("record");
}

/// tiny-sd, `dreamy` (it with style×0.8) and `duo` (it with style×0.8 and ink×1).
fn lora_models() -> tempfile::TempDir {
    let models = models_dir(false);
    fake_fused(models.path(), "dreamy", &[("style.safetensors", 0.8)]);
    fake_fused(models.path(), "duo", &[("style.safetensors", 0.8), ("ink.safetensors", 1.0)]);
    models
}

/// The default workflow on tiny-sd with `loras` (file, strength) chained from its checkpoint
/// as ComfyUI's users chain them (ids 10, 11, …): each LoraLoader takes the last one's MODEL
/// and CLIP, the sampler and both prompts the last one's.
pub(crate) fn with_loras(loras: &[(&str, f64)]) -> Value {
    let mut g = default_workflow("tiny-sd.safetensors", 4);
    let mut from = "4".to_string();
    for (i, (file, strength)) in loras.iter().enumerate() {
        let id = (10 + i).to_string();
        g[&id] = json!({"class_type": "LoraLoader", "inputs": {"model": [from, 0], "clip": [from, 1],
            "lora_name": file, "strength_model": strength, "strength_clip": strength}});
        from = id;
    }
    g["3"]["inputs"]["model"] = json!([from, 0]);
    g["6"]["inputs"]["clip"] = json!([from, 1]);
    g["7"]["inputs"]["clip"] = json!([from, 1]);
    g
}

/// Runs `graph`; its job's model and the picture its SaveImage shows.
async fn run(c: &reqwest::Client, d: &DaemonProc, graph: Value) -> (String, String, image::RgbImage) {
    let id = queue_prompt(c, d, json!({"prompt": graph})).await;
    let entry = history_of(c, d, &id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let picture = view(c, d, &entry["outputs"]["9"]["images"][0]).await.to_rgb8();
    let job = get(c, d, &format!("/api/v1/jobs/{id}")).await;
    (id, job["params"]["model"].as_str().unwrap_or_default().to_string(), picture)
}

/// The picture of a native `image` job with job `id`'s parameters.
async fn native_picture(c: &reqwest::Client, d: &DaemonProc, id: &str) -> image::RgbImage {
    let params = get(c, d, &format!("/api/v1/jobs/{id}")).await["params"].clone();
    let (status, job) = post_json(c, d, "/api/v1/jobs", json!({"kind": "image", "params": params})).await;
    assert_eq!(status, 202, "{job}");
    let native = job["id"].as_str().expect("id").to_string();
    let done = wait_job(c, d, &native, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let png = common::render::artifact(c, d, &native, "image.png").await;
    image::load_from_memory(&png).expect("a PNG").to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_through_a_lora_loader_runs_on_the_model_fused_of_that_lora() {
    let models = lora_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    // Clients fill their LoRA pickers from these.
    let info = get(&c, &d, "/object_info/LoraLoader").await;
    let loader = &info["LoraLoader"]["input"]["required"];
    assert_eq!(loader["lora_name"], json!([["ink.safetensors", "style.safetensors"]]), "{info}");
    assert_eq!(loader["strength_model"][1]["default"], 1.0);
    assert_eq!(info["LoraLoader"]["output"], json!(["MODEL", "CLIP"]));
    assert_eq!(get(&c, &d, "/models/loras").await, json!(["ink.safetensors", "style.safetensors"]));
    assert!(get(&c, &d, "/models").await.as_array().is_some_and(|f| f.contains(&json!("loras"))));

    let (plain_id, plain_model, plain) = run(&c, &d, with_loras(&[])).await;
    assert_eq!(plain_model, "tiny-sd");
    // Named as ComfyUI names a file of its `loras` folder.
    let (id, model, fused) = run(&c, &d, with_loras(&[("SD1.5/style.safetensors", 0.8)])).await;
    assert_eq!(model, "dreamy", "the checkpoint with style×0.8 fused in");
    assert!(fused == native_picture(&c, &d, &id).await, "the native job on dreamy draws another picture");
    assert!(fused != plain, "the LoRA's model draws the base's picture");
    assert!(plain == native_picture(&c, &d, &plain_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chained_lora_loaders_run_the_model_with_both_in_any_order() {
    let models = lora_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    // The import fused style then ink; the workflow loads ink first.
    let (_, model, _) = run(&c, &d, with_loras(&[("ink.safetensors", 1.0), ("style.safetensors", 0.8)])).await;
    assert_eq!(model, "duo");
    // A LoRA at strength 0 is no LoRA, as ComfyUI's loader hands the model on.
    let (_, model, _) = run(&c, &d, with_loras(&[("style.safetensors", 0.8), ("ink.safetensors", 0.0)])).await;
    assert_eq!(model, "dreamy");
}

/// `POST /prompt`'s refusal of `graph`: its body, after checking the status.
async fn refused(c: &reqwest::Client, d: &DaemonProc, graph: Value) -> Value {
    let resp = c.post(d.at("/prompt")).json(&json!({"prompt": graph})).send().await.expect("post");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 400, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loras_no_installed_model_has_are_refused_at_the_loader_with_the_import_that_makes_it() {
    let models = lora_models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let body = refused(&c, &d, with_loras(&[("style.safetensors", 0.5)])).await;
    let e = &body["node_errors"]["10"]["errors"][0];
    assert_eq!(body["node_errors"]["10"]["class_type"], "LoraLoader", "{body}");
    assert_eq!(e["extra_info"]["input_name"], "strength_model", "{body}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains("dreamy is tiny-sd + style.safetensors×0.8"), "{message}");
    let fix = "`reelbox models import /m/tiny-sd.safetensors --name tiny-sd-style --lora /l/style.safetensors:0.5`";
    assert!(message.contains(fix), "{message}");

    let body = refused(&c, &d, with_loras(&[("style.safetensors", 0.8), ("grain.safetensors", 1.0)])).await;
    let e = &body["node_errors"]["11"]["errors"][0];
    assert_eq!((&e["type"], &e["extra_info"]["input_name"]), (&json!("value_not_in_list"), &json!("lora_name")));
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains("--lora /l/style.safetensors:0.8 --lora grain.safetensors:1`"), "{message}");

    let mut unequal = with_loras(&[("style.safetensors", 0.8)]);
    unequal["10"]["inputs"]["strength_clip"] = json!(1.0);
    let body = refused(&c, &d, unequal).await;
    let e = &body["node_errors"]["10"]["errors"][0];
    assert_eq!(e["extra_info"]["input_name"], "strength_clip", "{body}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("set both to the same")), "{body}");
}
