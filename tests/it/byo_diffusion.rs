//! Bring your own Stable Diffusion: a diffusers folder (epsilon and v-prediction) imports
//! through the CLI and through `POST /api/v1/models/import`, converts to the ONNX layout
//! the diffusion pipeline loads, passes the self-check (one UNet step and a 4-step image
//! at a fixed seed against diffusers, ≤ 1e-3), keeps v-prediction in its scheduler config,
//! and the imported model renders an image in the real daemon.
//!
//! Needs the conversion environment (`REELBOX_CONVERT_PYENV`, made by `.ci/test`); without
//! one these tests fail and say how to make it. The tiny models are made at test time by
//! `tests/fixtures/make_byo_sd.py` (random weights, fixed seeds, 64×64 native).

use crate::common;

use common::byo::{api_import, fixture_once, import_again_command, import_cmd, import_daemon, read_json, render_rgb};
use common::tools::convert_pyenv;
use serde_json::{Value, json};

#[test]
fn a_v_prediction_diffusers_folder_converts_and_keeps_its_prediction_type() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sd.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let out = import_cmd(&env, home.path(), &models)
        .args(["--json", "--name", "vpred"])
        .arg(src.join("tiny-sd-vpred"))
        .output()
        .expect("run reelbox");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!((report["name"].as_str(), report["kind"].as_str()), (Some("vpred"), Some("diffusion")), "{report}");
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "reelbox differs from diffusers by {diff}: {report}");
    let compared = report["self_check"]["compared"].as_str().unwrap_or_default();
    assert!(compared.contains("UNet step") && compared.contains("4-step 64x64 image"), "{report}");
    let dir = models.join("vpred");
    let sched = read_json(&dir.join("scheduler/scheduler_config.json"));
    assert_eq!(sched["prediction_type"], "v_prediction", "{sched}");
    assert!(dir.join("unet/model.onnx_data").is_file(), "the UNet's weights are external");
    let record = read_json(&dir.join("conversion.json"));
    assert_eq!(record["details"]["prediction_type"], "v_prediction", "{record}");
    assert!(!models.join(".staging/vpred").exists(), "staging is gone after install");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diffusers_folder_imports_through_the_api_and_renders_in_the_daemon() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sd.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let d = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    let body = json!({"path": src.join("tiny-sd-diffusers"), "name": "my-sd"});
    let report = api_import(&http, &d, body, "exported the UNet").await;
    assert_eq!(report["kind"], "diffusion", "{report}");
    // The imported model serves an image job.
    let rgb = render_rgb(&http, &d, "my-sd", 7).await;
    assert_eq!(rgb.len(), 64 * 64 * 3);
}

#[test]
fn fp16_stores_half_size_weights_and_passes_the_looser_self_check() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sd.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let import = |name: &str, extra: &[&str]| -> Value {
        let out = import_cmd(&env, home.path(), &models)
            .args(["--json", "--name", name])
            .args(extra)
            .arg(src.join("tiny-sd-diffusers"))
            .output()
            .expect("run reelbox");
        assert!(out.status.success(), "import {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("report JSON")
    };
    let full = import("sd32", &[]);
    let half = import("sd16", &["--fp16"]);
    let fp32 = full["self_check"]["tolerance"].as_f64().expect("tolerance");
    assert!((fp32 - 1e-3).abs() < 1e-9, "{full}");
    let tolerance = half["self_check"]["tolerance"].as_f64().expect("tolerance");
    let diff = half["self_check"]["max_abs_diff"].as_f64().expect("diff");
    assert!((tolerance - 2e-2).abs() < 1e-6 && diff <= tolerance, "{half}");
    let size = |name: &str| std::fs::metadata(models.join(name).join("unet/model.onnx_data")).expect("weights").len();
    let (s32, s16) = (size("sd32"), size("sd16"));
    assert!(s16 * 10 < s32 * 6, "fp16 UNet weights are {s16} bytes, fp32 {s32}");
    let record = read_json(&models.join("sd16/conversion.json"));
    assert_eq!(record["fp16"], true, "{record}");
    // Its fix imports it again with --fp16 (it came back full size).
    let again = import_again_command(home.path(), &models, "sd16");
    assert!(again.ends_with("--kind diffusion --name sd16 --fp16"), "{again}");
    let again = import_again_command(home.path(), &models, "sd32");
    assert!(again.ends_with("--kind diffusion --name sd32"), "{again}");
}
