//! Helpers of the bring-your-own-model tests (`tests/it/byo_*.rs`, `profile_model.rs`): a
//! daemon that can import, and pictures read back as RGB to compare models by.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use super::provision;

/// What the fixture script `script` (in `tests/fixtures/`) writes, made once per test
/// binary with the converter's Python `env` however many tests ask for it (make_byo_sd.py
/// serves the diffusion, LoRA and profile tests), under `CARGO_TARGET_TMPDIR/byo/SCRIPT`.
pub fn fixture_once(env: &Path, script: &'static str) -> &'static Path {
    type Made = Mutex<HashMap<&'static str, &'static OnceLock<PathBuf>>>;
    static MADE: OnceLock<Made> = OnceLock::new();
    // One cell per script, taken under the lock and filled outside it, so two scripts
    // are made side by side and a second asker waits for the first.
    let cell: &'static OnceLock<PathBuf> = {
        let mut made = MADE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        made.entry(script).or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
    };
    cell.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("byo").join(script.trim_end_matches(".py"));
        super::tools::make_fixture(env, script, &dir);
        dir
    })
}

/// `HOME/models`, made.
pub fn models_dir(home: &Path) -> PathBuf {
    let models = home.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    models
}

/// Names under `models` other than the hidden working folders (`.locks`, `.staging`).
pub fn installed(models: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models)
        .expect("models dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// A real (tiny) Piper voice as `DIR/NAME.onnx` with its `NAME.onnx.json`, as a user's
/// download holds one; the `.onnx`.
pub fn voice_pair(dir: &Path, name: &str) -> PathBuf {
    let from = super::fixture("models/tiny-piper/en/tiny-en.onnx");
    let onnx = dir.join(format!("{name}.onnx"));
    std::fs::copy(&from, &onnx).expect("copy voice");
    std::fs::copy(from.with_extension("onnx.json"), dir.join(format!("{name}.onnx.json"))).expect("copy config");
    onnx
}

/// `reelbox models import` on `home` and `models`, run with the converter's environment
/// `env`; callers add the flags and the path.
pub fn import_cmd(env: &Path, home: &Path, models: &Path) -> Command {
    let mut cmd = super::tools::reelbox_cli(home, models);
    cmd.env("REELBOX_CONVERT_PYENV", env).args(["models", "import"]);
    cmd
}

/// `reelbox models import --json` with `args` and `path`; the report, or the failure's stderr.
pub fn import_report(env: &Path, home: &Path, models: &Path, args: &[&str], path: &Path) -> Result<Value, String> {
    let out = import_cmd(env, home, models).args(["--json"]).args(args).arg(path).output().expect("run reelbox");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("report JSON"))
}

/// The command `reelbox pull --force NAME` names as its fix for model `name`, which was
/// imported on this box (no pull replaces it): `reelbox models import …`.
pub fn import_again_command(home: &Path, models: &Path, name: &str) -> String {
    let pull = super::tools::reelbox_cli(home, models).args(["pull", "--force", name]).output().expect("run reelbox");
    let err = String::from_utf8_lossy(&pull.stderr);
    assert!(!pull.status.success(), "a pull of {name} passed: {err}");
    let command = err.split("import it again (`").nth(1).and_then(|c| c.split("`)").next());
    command.unwrap_or_else(|| panic!("no import command in: {err}")).to_string()
}

/// A JSON file an import wrote (`conversion.json`, a scheduler config), parsed.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A daemon over `models` with the provisioned runtime and the converter's environment
/// `env` (so `POST /api/v1/models/import` works), its data under `home/data`.
pub fn import_daemon(home: &Path, models: &Path, env: &Path) -> DaemonProc {
    let runtime = provision::runtime();
    DaemonProc::start(
        &home.join("data"),
        &[
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
            ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
            ("REELBOX_CONVERT_PYENV", env.to_str().expect("utf-8")),
        ],
    )
}

/// Imports through `POST /api/v1/models/import` as an admin job; checks the job succeeded,
/// its events show `event` and "self-check passed", and the self-check stayed within 1e-3;
/// returns the import report.
pub async fn api_import(
    http: &reqwest::Client,
    d: &DaemonProc,
    body: serde_json::Value,
    event: &str,
) -> serde_json::Value {
    let (s, job) = post_json(http, d, "/api/v1/models/import", body).await;
    assert_eq!((s, job["kind"].as_str()), (202, Some("model_import")), "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(http, d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let text = events.text().await.expect("event text");
    assert!(text.contains(event) && text.contains("self-check passed"), "{text}");
    let artifacts = get_json(http, d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let report = get_json(http, d, artifacts[0]["url"].as_str().expect("url")).await;
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "reelbox differs from diffusers by {diff}: {report}");
    // The measured difference, for `--nocapture` runs.
    eprintln!("{} self-check: {}", report["name"], report["self_check"]);
    report
}

/// A daemon over a models dir holding the tiny SD of `make_byo_sd.py` (`src`) imported as
/// `anime` and, as `hub-sd`, the tiny SD as the hub exports one (a text encoder with its
/// last layer only and no embedding inputs): its home, models dir, daemon and import report.
pub async fn anime_beside_hub(
    http: &reqwest::Client,
    env: &Path,
    src: &Path,
) -> (tempfile::TempDir, PathBuf, DaemonProc, serde_json::Value) {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    std::os::unix::fs::symlink(super::fixture("models/tiny-sd"), models.join("hub-sd")).expect("link");
    let d = import_daemon(home.path(), &models, env);
    let report = api_import(http, &d, json!({"path": src.join("tiny-sd-diffusers"), "name": "anime"}), "UNet").await;
    (home, models, d, report)
}

/// A 64×64, 2-step image of "a red circle" with `model` at `seed`, made by the daemon; its
/// RGB bytes.
pub async fn render_rgb(http: &reqwest::Client, d: &DaemonProc, model: &str, seed: u64) -> Vec<u8> {
    let params = json!({"model": model, "prompt": "a red circle", "seed": seed, "width": 64, "height": 64, "steps": 2});
    let (s, job) = post_json(http, d, "/api/v1/jobs", json!({"kind": "image", "params": params})).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(http, d, &id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{model}: {done}");
    let out = get_json(http, d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let png = out
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"].as_str().is_some_and(|n| n.ends_with(".png"))).cloned())
        .unwrap_or_else(|| panic!("no PNG among {out}"));
    let bytes = http.get(d.at(png["url"].as_str().expect("url"))).send().await.expect("get");
    let img = image::load_from_memory(&bytes.bytes().await.expect("bytes")).expect("PNG").to_rgb8();
    assert_eq!(img.dimensions(), (64, 64));
    img.into_raw()
}

/// A 32×24 test card made by `d`: its artifact id.
pub async fn testcard_png(http: &reqwest::Client, d: &DaemonProc) -> String {
    let card = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "width": 32, "height": 24}});
    let (s, card) = post_json(http, d, "/api/v1/jobs", card).await;
    assert_eq!(s, 202, "{card}");
    let card = wait_job(http, d, card["id"].as_str().expect("id"), Duration::from_secs(30), is_final).await;
    card["stages"][0]["artifacts"][0].as_str().expect("testcard png").to_string()
}

/// Upscales a 32×24 test card with `model` in `d`; the upscale job once it has ended.
pub async fn upscale_card(http: &reqwest::Client, d: &DaemonProc, model: &str) -> Value {
    let png = testcard_png(http, d).await;
    let (s, job) = post_json(http, d, "/api/v1/upscale", json!({"input": png, "model": model})).await;
    assert_eq!(s, 202, "{job}");
    wait_job(http, d, job["id"].as_str().expect("id"), Duration::from_secs(60), is_final).await
}

/// Upscales a 32×24 test card with `model`, which must succeed; returns the output's size.
pub async fn upscale_size(http: &reqwest::Client, d: &DaemonProc, model: &str) -> (u32, u32) {
    let done = upscale_card(http, d, model).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let id = done["id"].as_str().expect("id");
    let out = get_json(http, d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let bytes = http.get(d.at(out[0]["url"].as_str().expect("url"))).send().await.expect("get");
    let img = image::load_from_memory(&bytes.bytes().await.expect("bytes")).expect("PNG");
    (img.width(), img.height())
}

/// The largest difference of one channel of one pixel between two pictures of one size.
pub fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "pictures of one size");
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// The tiny SDXL fixture installed as `models/NAME` with the native size of a real SDXL base
/// (its UNet's `sample_size` 128 × the VAE's 8 = 1024): the other files linked, so the
/// listing and a request naming no size see a model trained at 1024, as
/// `sd_xl_base_1.0.safetensors` imported is.
pub fn sdxl_at_1024(models: &Path, name: &str) -> PathBuf {
    let from = super::fixture("models/tiny-sdxl");
    let dir = models.join(name);
    std::fs::create_dir_all(dir.join("unet")).expect("model dir");
    for entry in std::fs::read_dir(&from).expect("tiny-sdxl").flatten() {
        if entry.file_name() != "unet" {
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).expect("link");
        }
    }
    std::os::unix::fs::symlink(from.join("unet/model.onnx"), dir.join("unet/model.onnx")).expect("link unet");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(from.join("unet/config.json")).expect("unet config")).expect("json");
    config["sample_size"] = json!(128);
    std::fs::write(dir.join("unet/config.json"), config.to_string()).expect("unet config");
    dir
}
