//! A head knows the models its worker boxes imported as it knows its own: each box's
//! heartbeat carries a diffusion model's import record (its base, the LoRAs fused in with
//! their files and scales, the file it was converted from, A1111's hashes), so on a head
//! that has none of it a ComfyUI workflow's LoRA loaders on that base run on the box's fused
//! model, `/object_info` lists the box's LoRA files and the base's file as a checkpoint,
//! A1111's `sd-models` titles the model by its hash and a request picks it by that hash, and
//! `GET /api/v1/models` says what it is fused of. Before, the head knew the box's model by
//! name alone: the workflow was refused at `ckpt_name`, `lora_name` had no choices, the hash
//! was `null` and picking by it a 404.
//!
//! The fused model is tiny-sd's files with the record an import writes (`comfy_lora.rs`'s
//! `fake_fused`), its A1111 hashes added as the import keeps them.

use crate::cluster_support;
use crate::common;

use std::time::Duration;

use base64::Engine;
use cluster_support::{Nats, WorkerProc, stage_devices, start_head_with, wait_boxes};
use common::daemon::post_json;
use common::provision;
use reelbox::pipelines::diffusion::output::parameters_of;
use serde_json::{Value, json};

use crate::comfy_compat::{history_of, http, queue_prompt};
use crate::comfy_lora::{fake_fused, with_loras};
use crate::comfy_upscale::{get, view};

/// The sha256 the record says `dreamy`'s checkpoint file had; A1111's shorthash is its first 10.
const SHA256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The style LoRA's A1111 (addnet) hash the record keeps.
const LORA_HASH: &str = "fedcba98fedcba98fedcba98fedcba98fedcba98fedcba98fedcba98fedcba98";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_runs_loras_lists_files_and_hashes_of_a_fused_model_only_its_worker_box_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    // w1 has `dreamy` (tiny-sd with style×0.8 fused in) and not tiny-sd itself; the head has no model.
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    fake_fused(&models, "dreamy", &[("style.safetensors", 0.8)]);
    let record_path = models.join("dreamy/conversion.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_path).expect("record")).expect("json");
    record["sha256"] = json!(SHA256);
    record["model_hash"] = json!("89abcdef");
    record["loras"][0]["a1111_hash"] = json!(LORA_HASH);
    std::fs::write(&record_path, record.to_string()).expect("record");

    let runtime = provision::runtime();
    let runtime = runtime.to_str().expect("utf-8");
    let nats = Nats::start(dir.path());
    let head = start_head_with(&dir.path().join("head"), &nats, false, &[("REELBOX_ONNXRUNTIME", runtime)]);
    let args = ["--models-dir", models.to_str().expect("utf-8")];
    let _w1 = WorkerProc::start_env(&dir.path().join("w1"), &nats, "w1", &args, &[("REELBOX_ONNXRUNTIME", runtime)]);
    let c = http();
    wait_boxes(&c, &head, &["w1"]).await;

    // ComfyUI clients fill their pickers from these: the box's LoRA file, and its model's
    // base as a checkpoint (run through the loaders), beside the model itself.
    let info = get(&c, &head, "/object_info").await;
    assert_eq!(info["LoraLoader"]["input"]["required"]["lora_name"], json!([["style.safetensors"]]));
    assert_eq!(get(&c, &head, "/models/loras").await, json!(["style.safetensors"]));
    let checkpoints = &info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0];
    assert_eq!(checkpoints, &json!(["dreamy", "tiny-sd"]), "{info}");

    // The checkpoint named by the file the box's model was converted from, through a
    // LoraLoader at the fused scale: run on w1's fused model, and its picture comes home.
    let id = queue_prompt(&c, &head, json!({"prompt": with_loras(&[("SD1.5/style.safetensors", 0.8)])})).await;
    let entry = history_of(&c, &head, &id, Duration::from_secs(300)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let picture = view(&c, &head, &entry["outputs"]["9"]["images"][0]).await.to_rgb8();
    assert_eq!(picture.dimensions(), (64, 64));
    let job = get(&c, &head, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["params"]["model"], "dreamy", "{job}");
    let devices = stage_devices(&job);
    assert!(!devices.is_empty() && devices.iter().all(|d| d == "w1/cpu"), "ran off the box: {job}");

    // A1111 clients see the box's model by its checkpoint file's hash, and pick it by it.
    let listed = get(&c, &head, "/sdapi/v1/sd-models").await;
    let row = listed.as_array().and_then(|l| l.iter().find(|m| m["model_name"] == "dreamy")).cloned();
    let row = row.unwrap_or_else(|| panic!("dreamy not in {listed}"));
    assert_eq!(
        (&row["title"], &row["hash"], &row["sha256"]),
        (&json!("dreamy [0123456789]"), &json!("0123456789"), &json!(SHA256))
    );
    let body = json!({"prompt": "a red circle", "seed": 7, "steps": 2, "width": 64, "height": 64,
        "override_settings": {"sd_model_checkpoint": "0123456789"}});
    let (status, answer) = post_json(&c, &head, "/sdapi/v1/txt2img", body).await;
    assert_eq!(status, 200, "{answer}");
    let info: Value = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info JSON");
    assert_eq!((&info["sd_model_name"], &info["sd_model_hash"]), (&json!("dreamy"), &json!("0123456789")), "{info}");
    // The picture's text is written on the box, from its own record.
    let png = base64::engine::general_purpose::STANDARD.decode(answer["images"][0].as_str().expect("an image"));
    let text = parameters_of(&png.expect("base64")).expect("a parameters text");
    assert!(text.contains("Model hash: 0123456789, Model: dreamy"), "{text}");
    assert!(text.contains(&format!("Lora hashes: \"style: {}\"", &LORA_HASH[..12])), "{text}");

    // The native listing says what the box's model is fused of, and from which file.
    let native = get(&c, &head, "/api/v1/models").await;
    let row = native["models"].as_array().and_then(|l| l.iter().find(|m| m["name"] == "dreamy")).cloned();
    let row = row.unwrap_or_else(|| panic!("dreamy not in {native}"));
    assert_eq!((&row["origin"], &row["boxes"]), (&json!("box"), &json!(["w1"])), "{row}");
    assert_eq!(
        (&row["fused"], &row["imported_from"]),
        (&json!("tiny-sd + style×0.8"), &json!("/m/tiny-sd.safetensors"))
    );
    // And its hashes, as the head's own imported models list theirs.
    assert_eq!((&row["sha256"], &row["shorthash"]), (&json!(SHA256), &json!(&SHA256[..10])), "{row}");
    assert_eq!(row["loras"][0]["shorthash"], json!(&LORA_HASH[..12]), "{row}");
}
