//! Models imported before imports kept A1111's hashes get them with no new import: the daemon
//! hashes, at start and off its runtime, the checkpoint and LoRA files their `conversion.json`
//! names, where those are unchanged since the import, and writes the hashes into the record;
//! `/sdapi/v1/sd-models`, `GET /api/v1/models`, `reelbox models list` and the pictures' text
//! then name them. A source moved away leaves the model unhashed, and the daemon's log and
//! `reelbox models hash` say which file is missing and what to do; put back, `reelbox models
//! hash` hashes it. A LoRA whose trainer wrote `sshs_model_hash` into its metadata is known
//! by that, as A1111 knows it. Before, such models stayed unhashed for good, and a LoRA was
//! always known by its addnet hash. The rewritten record is recorded in the model's installed
//! manifest, so the model stays installed, not damaged (as it was listed after a rehash before).

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::byo::{fixture_once, import_report, models_dir, read_json};
use common::daemon::{DaemonProc, get_json, post_json};
use common::tools::{convert_pyenv, reelbox_cli};
use reelbox::pipelines::diffusion::output::parameters_of;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The hash a LoRA's trainer wrote into its metadata (kohya's sd-scripts' `sshs_model_hash`).
const TRAINERS_HASH: &str = "5ca1ab1e0ddba11c0ffee0005ca1ab1e0ddba11c0ffee0005ca1ab1e0ddba11c";

/// `lora` written to `to` with `sshs_model_hash` added to its safetensors metadata.
fn with_trainers_hash(lora: &Path, to: &Path) {
    let bytes = std::fs::read(lora).expect("read LoRA");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + len]).expect("header JSON");
    header["__metadata__"]["sshs_model_hash"] = json!(TRAINERS_HASH);
    let mut text = header.to_string().into_bytes();
    // The tensors' data stays 8-byte aligned, as the format pads its header.
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    std::fs::write(to, out).expect("write LoRA");
}

/// Model `name`'s record made as imports made it before they kept hashes.
fn strip_hashes(models: &Path, name: &str) {
    let path = models.join(name).join("conversion.json");
    let mut record = read_json(&path);
    let obj = record.as_object_mut().expect("a record");
    for key in ["sha256", "model_hash", "imported_ms"] {
        obj.remove(key);
    }
    for l in obj.get_mut("loras").and_then(Value::as_array_mut).into_iter().flatten() {
        l.as_object_mut().expect("a LoRA").remove("a1111_hash");
    }
    std::fs::write(&path, serde_json::to_string_pretty(&record).expect("JSON")).expect("write record");
    // As that import installed it: its manifest lists the record as it is.
    let bytes = std::fs::read(&path).expect("read record");
    manifest_entry(models, name, (bytes.len() as u64, hex::encode(Sha256::digest(&bytes))));
}

/// Sets model `name`'s installed manifest's entry for its `conversion.json` to `(size, sha256)`.
fn manifest_entry(models: &Path, name: &str, (size, sha256): (u64, String)) {
    let path = models.join(format!("{name}.toml"));
    let mut manifest: toml::Value = toml::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("TOML");
    let files = manifest.get_mut("files").and_then(toml::Value::as_array_mut).expect("files");
    let entry = files.iter_mut().find(|f| f.get("path").and_then(toml::Value::as_str) == Some("conversion.json"));
    let entry = entry.and_then(toml::Value::as_table_mut).expect("an entry for the record");
    entry.insert("size".into(), toml::Value::Integer(size as i64));
    entry.insert("sha256".into(), toml::Value::String(sha256));
    std::fs::write(&path, toml::to_string(&manifest).expect("TOML")).expect("write manifest");
}

/// A daemon over `models` logging at info into `log`.
fn daemon(home: &Path, models: &Path, env: &Path, log: &Path) -> DaemonProc {
    let runtime = common::provision::runtime();
    let vars = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
        ("REELBOX_CONVERT_PYENV", env.to_str().expect("utf-8")),
        ("REELBOX_LOG", "info"),
    ];
    DaemonProc::start_logged(&home.join("data"), &vars, log)
}

/// `model`'s entry of `/sdapi/v1/sd-models`.
async fn sd_model(http: &reqwest::Client, d: &DaemonProc, model: &str) -> Value {
    let listed = get_json(http, d, "/sdapi/v1/sd-models").await;
    let found = listed.as_array().and_then(|a| a.iter().find(|x| x["model_name"] == model).cloned());
    found.unwrap_or_else(|| panic!("no {model} in {listed}"))
}

/// `model`'s row of `GET /api/v1/models`.
async fn model_row(http: &reqwest::Client, d: &DaemonProc, model: &str) -> Value {
    let listed = get_json(http, d, "/api/v1/models").await;
    let found = listed["models"].as_array().and_then(|a| a.iter().find(|x| x["name"] == model).cloned());
    found.unwrap_or_else(|| panic!("no {model} in {listed}"))
}

/// Waits up to a minute for `done` to hold of `log`'s text; the text.
fn log_until(log: &Path, done: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if done(&text) || t0.elapsed() > Duration::from_secs(60) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `reelbox models ARGS`: its exit success and standard output.
fn models_cmd(home: &Path, models: &Path, args: &[&str]) -> (bool, String) {
    let out = reelbox_cli(home, models).arg("models").args(args).output().expect("run reelbox");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_imported_before_hashes_get_them_from_their_files_while_those_are_unchanged() {
    let env = convert_pyenv();
    let fixture_ckpt = fixture_once(&env, "make_byo_ckpt.py").join("tiny-sd1.safetensors");
    let style = fixture_once(&env, "make_byo_lora.py").join("style-kohya.safetensors");
    let base = fixture_once(&env, "make_byo_sd.py").join("tiny-sd-diffusers");
    let home = tempfile::tempdir().expect("tempdir");
    let (h, models) = (home.path(), models_dir(home.path()));
    // The user's own files: a checkpoint, and a LoRA whose trainer wrote its hash in it.
    let mine = h.join("mine");
    std::fs::create_dir_all(mine.join("moved")).expect("mine");
    let ckpt = mine.join("sd1.safetensors");
    std::fs::copy(&fixture_ckpt, &ckpt).expect("copy checkpoint");
    // With what a single file needs beside it: its config and its tokenizer.
    std::fs::copy(fixture_ckpt.with_extension("yaml"), mine.join("sd1.yaml")).expect("copy config");
    std::os::unix::fs::symlink(fixture_ckpt.with_file_name("tokenizer"), mine.join("tokenizer"))
        .expect("link tokenizer");
    let lora = mine.join("inked-style.safetensors");
    with_trainers_hash(&style, &lora);
    let lora_arg = format!("{}:0.8", lora.display());
    import_report(&env, h, &models, &["--name", "inked", "--lora", &lora_arg], &base).unwrap_or_else(|e| panic!("{e}"));
    import_report(&env, h, &models, &["--name", "sd1"], &ckpt).unwrap_or_else(|e| panic!("{e}"));
    // At import the LoRA is known by its trainer's hash, as A1111's NetworkOnDisk knows it.
    let inked_record = read_json(&models.join("inked").join("conversion.json"));
    assert_eq!(inked_record["loras"][0]["a1111_hash"], TRAINERS_HASH, "{inked_record}");

    // Both as imports kept them before hashes: no hash at all.
    strip_hashes(&models, "sd1");
    strip_hashes(&models, "inked");
    let sha = hex::encode(Sha256::digest(std::fs::read(&ckpt).expect("read checkpoint")));
    let short = &sha[..10];
    let log = h.join("daemon.log");
    let mut d = daemon(h, &models, &env, &log);
    let http = reqwest::Client::new();
    let text = log_until(&log, |t| t.matches("A1111's hashes worked out").count() >= 2);
    assert!(text.contains(&format!("A1111 clients list it as sd1 [{short}]")), "{text}");
    let sd1 = sd_model(&http, &d, "sd1").await;
    assert_eq!((&sd1["sha256"], &sd1["title"]), (&json!(sha), &json!(format!("sd1 [{short}]"))), "{sd1}");
    let row = model_row(&http, &d, "sd1").await;
    assert_eq!((&row["sha256"], &row["shorthash"]), (&json!(sha), &json!(short)), "{row}");
    let inked = model_row(&http, &d, "inked").await;
    assert!(inked.get("sha256").is_none(), "made from a folder: no checkpoint hash: {inked}");
    let want = json!([{"name": "inked-style", "file": lora.display().to_string(), "scale": 0.8,
        "hash": TRAINERS_HASH, "shorthash": &TRAINERS_HASH[..12]}]);
    assert_eq!(inked["loras"], want, "{inked}");
    let record = read_json(&models.join("sd1").join("conversion.json"));
    assert!(record["imported_ms"].is_u64() && record["model_hash"].is_string(), "{record}");
    // The rewritten record is the model's, not a damage to it.
    for row in [&row, &inked] {
        assert_eq!(row["state"], "installed", "{row}");
    }

    // The pictures' text names them.
    let body = json!({"prompt": "a red circle", "seed": 7, "steps": 2, "width": 64, "height": 64,
        "override_settings": {"sd_model_checkpoint": "inked"}});
    let (s, answer) = post_json(&http, &d, "/sdapi/v1/txt2img", body).await;
    assert_eq!(s, 200, "{answer}");
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        answer["images"][0].as_str().expect("a picture"),
    );
    let text = parameters_of(&png.expect("base64")).expect("a parameters text");
    assert!(text.contains(&format!("Lora hashes: \"inked-style: {}\"", &TRAINERS_HASH[..12])), "{text}");
    let (ok, table) = models_cmd(h, &models, &["list"]);
    let line = table.lines().find(|l| l.starts_with("sd1 ")).unwrap_or_else(|| panic!("no sd1 in {table}"));
    assert!(ok && table.contains("HASH") && line.contains(short), "{table}");

    // The checkpoint moved away: the model stays unhashed, and the log says which file and why.
    d.terminate();
    // And a record rewritten before its manifest followed (stop 43's daemon left those
    // damaged) is recorded in its manifest at the next start.
    manifest_entry(&models, "inked", (1, "00".repeat(32)));
    strip_hashes(&models, "sd1");
    let moved = mine.join("moved").join("sd1.safetensors");
    std::fs::rename(&ckpt, &moved).expect("move checkpoint");
    let d = daemon(h, &models, &env, &log);
    let text = log_until(&log, |t| t.contains("listed without an A1111 hash"));
    let said = text.lines().find(|l| l.contains("listed without an A1111 hash")).unwrap_or_else(|| panic!("{text}"));
    assert!(said.contains(&ckpt.display().to_string()) && said.contains("not there any more"), "{said}");
    let sd1 = sd_model(&http, &d, "sd1").await;
    assert_eq!((&sd1["sha256"], &sd1["title"]), (&Value::Null, &json!("sd1")), "{sd1}");
    assert_eq!(model_row(&http, &d, "inked").await["state"], "installed");
    let (ok, out) = models_cmd(h, &models, &["hash", "sd1"]);
    assert!(
        !ok && out.contains("sd1: not hashed: ") && out.contains("not there any more (moved or removed?)"),
        "{out}"
    );

    // Put back (a move keeps its time), `reelbox models hash` hashes it, and the daemon lists it so.
    std::fs::rename(&moved, &ckpt).expect("move back");
    let (ok, out) = models_cmd(h, &models, &["hash", "sd1"]);
    assert!(ok && out.contains(&format!("sd1: hashed, A1111 clients list it as sd1 [{short}]")), "{out}");
    let sd1 = sd_model(&http, &d, "sd1").await;
    assert_eq!(sd1["title"], format!("sd1 [{short}]"), "{sd1}");
    let (ok, out) = models_cmd(h, &models, &["hash"]);
    assert!(ok && out.contains("every imported diffusion model has its A1111 hashes"), "{out}");
}
