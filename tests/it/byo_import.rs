//! Bring your own models: checkpoints in the formats people have (ESRGAN RRDB and
//! Real-ESRGAN compact `.pth`, a Wav2Lip `.pth`) import through the CLI and through
//! `POST /api/v1/models/import`, pass the self-check against PyTorch, and the imported
//! upscalers serve upscale jobs in the real daemon; corrupt and unknown files are refused
//! naming them, and nothing of theirs is installed.
//!
//! The converter runs in the conversion environment `.ci/test` creates and caches
//! (`REELBOX_CONVERT_PYENV`); without one these tests fail and say how to make it (creating
//! it downloads several GB). The checkpoints are made at test time by
//! `tests/fixtures/make_byo_models.py` (random weights, fixed seeds).

use crate::common;

use std::time::Duration;

use common::byo::{fixture_once, import_cmd, import_daemon, models_dir, upscale_size};
use common::daemon::{get_json, is_final, post_json, wait_job};
use common::tools::{convert_pyenv, reelbox_cli, run_ok};
use serde_json::{Value, json};

#[tokio::test]
async fn esrgan_checkpoints_convert_pass_the_self_check_and_upscale_in_the_daemon() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_models.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());

    // The CLI converts an RRDB checkpoint on this machine and reports the self-check.
    let out = run_ok(
        import_cmd(&env, home.path(), &models).args(["--json", "--name", "rrdb"]).arg(ckpt.join("tiny-rrdb-x4.pth")),
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!((report["name"].as_str(), report["kind"].as_str()), (Some("rrdb"), Some("upscale")), "{report}");
    assert_eq!(report["converted_from"], "ESRGAN", "{report}");
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "ONNX differs from PyTorch by {diff}");
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("rrdb/conversion.json")).expect("conversion.json"))
            .expect("conversion JSON");
    assert_eq!(record["details"]["scale"], 4, "{record}");
    assert!(!models.join(".staging/rrdb").exists(), "staging is gone after install");

    // The daemon imports the compact one as an admin job with progress and a report.
    let d = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    let (s, b) = post_json(&http, &d, "/api/v1/models/import", json!({"path": "/no/such/model.pth"})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("path")), "{b}");
    let compact = ckpt.join("tiny-compact-x2.pth");
    let (s, job) = post_json(&http, &d, "/api/v1/models/import", json!({"path": compact, "name": "compact"})).await;
    assert_eq!((s, job["kind"].as_str()), (202, Some("model_import")), "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&http, &d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let text = events.text().await.expect("event text");
    assert!(text.contains("exported ONNX with dynamic height and width"), "converter progress in events:\n{text}");
    assert!(text.contains("self-check passed"), "{text}");
    let artifacts = get_json(&http, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    assert_eq!(artifacts[0]["name"], "import.json", "{artifacts}");
    let report = get_json(&http, &d, artifacts[0]["url"].as_str().expect("url")).await;
    assert!(report["self_check"]["max_abs_diff"].as_f64().expect("diff") <= 1e-3, "{report}");

    // Both render: x4 and x2 of a 32x24 picture.
    assert_eq!(upscale_size(&http, &d, "rrdb").await, (128, 96));
    assert_eq!(upscale_size(&http, &d, "compact").await, (64, 48));
}

#[test]
fn a_wav2lip_checkpoint_converts_with_a_dynamic_batch_and_passes_the_self_check() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_models.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let out = run_ok(import_cmd(&env, home.path(), &models).args(["--json"]).arg(ckpt.join("wav2lip-random.pth")));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(
        (report["name"].as_str(), report["kind"].as_str()),
        (Some("wav2lip-random"), Some("lipsync")),
        "{report}"
    );
    assert_eq!(report["self_check"]["compared"], "a batch of 4 frames", "{report}");
    assert!(report["self_check"]["max_abs_diff"].as_f64().expect("diff") <= 1e-3, "{report}");
    let listed =
        run_ok(reelbox_cli(home.path(), &models).env("REELBOX_CONVERT_PYENV", &env).args(["models", "list", "--json"]));
    let list: Value = serde_json::from_slice(&listed.stdout).expect("list JSON");
    let entry = list["models"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "wav2lip-random").cloned());
    let entry = entry.unwrap_or_else(|| panic!("wav2lip-random is not listed: {list}"));
    assert_eq!((entry["kind"].as_str(), entry["state"].as_str()), (Some("lipsync"), Some("installed")), "{entry}");
    // Where it came from, and that its files were checked (a conversion's were null).
    let from = ckpt.join("wav2lip-random.pth").display().to_string();
    assert_eq!(entry["imported_from"], from.as_str(), "{entry}");
    assert!(entry["verified_at"].is_string(), "the self-check passed at install: {entry}");
    let table = run_ok(reelbox_cli(home.path(), &models).args(["models", "list"]));
    let table = String::from_utf8_lossy(&table.stdout);
    let row = table.lines().find(|l| l.starts_with("wav2lip-random ")).unwrap_or_default();
    assert!(row.contains(&format!("imported from {from}")), "{table}");
}

#[test]
fn corrupt_and_unknown_files_are_refused_naming_them_and_nothing_is_installed() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_models.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // A file that is no model at all is refused before the conversion environment is made
    // (it first downloaded PyTorch, ~5.8 GB, for the converter to call a PNG unknown).
    let png = home.path().join("picture.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n").expect("write png");
    let no_env = home.path().join("no-env");
    let mut cmd = reelbox_cli(home.path(), &models);
    let out = cmd.env("REELBOX_CONVERT_PYENV", &no_env).args(["models", "import"]).arg(&png).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("picture.png is not a model file"), "{stderr}");
    assert!(!no_env.exists(), "no conversion environment for a PNG");
    // A standalone VAE (`ComfyUI/models/vae/`) was "unknown model format".
    let vae = home.path().join("vae-ft-mse-840000-ema-pruned.safetensors");
    std::fs::write(&vae, vae_safetensors()).expect("write vae");
    for (path, says) in [
        (ckpt.join("corrupt.pth"), "not a readable checkpoint"),
        (ckpt.join("unknown.pth"), "unknown model format"),
        (
            vae,
            "a standalone VAE (only an autoencoder's weights): not supported; a Stable Diffusion checkpoint carries its own VAE",
        ),
    ] {
        let file = path.file_name().and_then(|f| f.to_str()).expect("file name").to_string();
        let out = import_cmd(&env, home.path(), &models).arg(&path).output().expect("run");
        assert!(!out.status.success(), "{file} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(path.to_str().expect("utf-8")) && stderr.contains(says), "{file}: {stderr}");
        let stem = file.trim_end_matches(".pth").trim_end_matches(".safetensors");
        assert!(!models.join(stem).exists() && !models.join(format!("{stem}.toml")).exists());
        assert!(!models.join(".staging").join(stem).exists(), "a failed conversion leaves no staging");
    }
}

/// A tiny standalone VAE as `.safetensors` (an autoencoder's LDM names, float32 zeros).
fn vae_safetensors() -> Vec<u8> {
    let names = ["decoder.conv_in.weight", "encoder.conv_in.weight", "post_quant_conv.weight", "quant_conv.weight"];
    let header: serde_json::Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), json!({"dtype": "F32", "shape": [2, 2], "data_offsets": [i * 16, i * 16 + 16]})))
        .collect();
    let header = Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, names.len() * 16));
    bytes
}
