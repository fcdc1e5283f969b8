//! Bring your own models, the mistakes people make: a `--kind` the files cannot be, a
//! folder of other files, a name that is installed, two imports of one name at once, and
//! the daemon killed mid-conversion. Each is refused before the converter runs where it
//! can be, names the field or flag, installs nothing and keeps what was installed.
//!
//! Uses the conversion environment `.ci/test` makes (`REELBOX_CONVERT_PYENV`) and the
//! fixtures of `make_byo_models.py` and `make_byo_sd.py` (see `byo_import.rs`).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::byo::{fixture_once, import_cmd, import_daemon, read_json};
use common::daemon::{get_json, is_final, post_json, wait_job};
use common::tools::{convert_pyenv, reelbox_cli, run_ok};
use serde_json::json;

fn models_dir(home: &Path) -> PathBuf {
    let models = home.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    models
}

/// `models import ARGS PATH` with the CLI: (success, stderr).
fn import(env: &Path, home: &Path, models: &Path, args: &[&str], path: &Path) -> (bool, String) {
    let out = import_cmd(env, home, models).args(args).arg(path).output().expect("run reelbox");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Names under `models` other than the hidden working folders (`.locks`, `.staging`).
fn installed(models: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models)
        .expect("models dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_kind_the_files_cannot_be_a_folder_of_other_files_and_an_installed_name_are_refused_at_once() {
    let env = convert_pyenv();
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // An installed (copied) Piper voice named "voice".
    let voice = home.path().join("voice.onnx");
    std::fs::write(&voice, b"onnx").expect("write");
    std::fs::write(home.path().join("voice.onnx.json"), b"{}").expect("write");
    run_ok(import_cmd(&env, home.path(), &models).arg(&voice));

    // A folder of pictures and notes given a kind was installed as an "upscale model".
    let other = home.path().join("downloads");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), b"notes").expect("write");
    std::fs::write(other.join("cat.png"), b"\x89PNG\r\n\x1a\n").expect("write");
    let (ok, err) = import(&env, home.path(), &models, &["--kind", "upscale", "--name", "junk"], &other);
    assert!(!ok && err.contains("no .onnx file in this folder"), "{err}");
    // The CLI says the file once (it said "cannot import X: cannot import X: ...").
    let (ok, err) = import(&env, home.path(), &models, &[], &other);
    let named = other.display().to_string();
    assert!(!ok && err.matches(named.as_str()).count() == 1, "{err}");

    // A diffusers folder, or LoRAs, with another kind; a checkpoint as a voice: refused
    // naming --kind before the converter reads a byte (a real SD conversion takes minutes).
    let diffusers = home.path().join("my-sd");
    std::fs::create_dir_all(diffusers.join("unet")).expect("mkdir");
    std::fs::write(diffusers.join("model_index.json"), b"{}").expect("write");
    std::fs::write(diffusers.join("unet/config.json"), b"{}").expect("write");
    let ckpt = home.path().join("thing.pth");
    std::fs::write(&ckpt, b"not read").expect("write");
    let lora = home.path().join("style.safetensors");
    std::fs::write(&lora, b"not read").expect("write");
    let lora_arg = lora.display().to_string();
    for (args, path) in [
        (vec!["--kind", "upscale"], &diffusers),
        (vec!["--kind", "lipsync", "--lora", lora_arg.as_str()], &ckpt),
        (vec!["--kind", "tts"], &ckpt),
    ] {
        let (ok, err) = import(&env, home.path(), &models, &args, path);
        assert!(!ok && err.starts_with("reelbox: --kind: "), "{args:?}: {err}");
        assert!(!err.contains("converter") && !err.contains('['), "refused before converting: {err}");
    }
    assert_eq!(installed(&models), ["voice", "voice.toml"]);

    // The API refuses the same at submission, naming the field; no job is made.
    let d = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    for (body, field) in [
        (json!({"path": ckpt, "name": "voice"}), "name"),
        (json!({"path": home.path().join("voice.onnx")}), "name"),
        (json!({"path": diffusers, "kind": "face"}), "kind"),
    ] {
        let (s, b) = post_json(&http, &d, "/api/v1/models/import", body.clone()).await;
        assert_eq!((s, b["error"]["field"].as_str()), (400, Some(field)), "{body}: {b}");
    }
    let (_, b) = post_json(&http, &d, "/api/v1/models/import", json!({"path": ckpt, "name": "voice"})).await;
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("already installed (kept as it is)"), "{message}");
    let jobs = get_json(&http, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    assert_eq!(std::fs::read(models.join("voice/voice.onnx")).expect("kept"), b"onnx");
}

#[test]
fn two_imports_of_one_name_at_once_install_one_whole_model() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_models.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // Both shared `.staging/twin`: one wiped the other's files mid-conversion, and the
    // later install replaced the earlier one.
    let files = [ckpt.join("tiny-rrdb-x4.pth"), ckpt.join("tiny-compact-x2.pth")];
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            import_cmd(&env, home.path(), &models)
                .args(["--name", "twin"])
                .arg(f)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn reelbox")
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    let winners: Vec<usize> = (0..2).filter(|&i| outs[i].status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one import wins: {outs:?}");
    let loser = String::from_utf8_lossy(&outs[1 - winners[0]].stderr).into_owned();
    let last = loser.lines().last().unwrap_or_default();
    assert!(
        last.contains("another import or pull of twin is running") || last.contains("already installed"),
        "{loser}"
    );
    assert!(!loser.contains("Traceback"), "{loser}");
    let verify = run_ok(reelbox_cli(home.path(), &models).args(["models", "verify", "twin"]));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("ok"), "{verify:?}");
    let record = read_json(&models.join("twin/conversion.json"));
    assert_eq!(record["source"], files[winners[0]].display().to_string(), "{record}");
    assert!(!models.join(".staging/twin").exists());
}

/// Pids of converter processes working for `models` (their command line names it).
fn converters_of(models: &Path) -> Vec<u32> {
    let needle = models.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("convert.py") && c.contains(&needle)
            })
        })
        .collect()
}

#[tokio::test]
async fn kill_9_of_the_daemon_mid_import_stops_the_converter_and_the_job_finishes_after_restart() {
    let env = convert_pyenv();
    let sd = fixture_once(&env, "make_byo_sd.py").join("tiny-sd-diffusers");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let mut d = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    let (s, job) = post_json(&http, &d, "/api/v1/models/import", json!({"path": sd, "name": "cut"})).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let start = Instant::now();
    while converters_of(&models).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "the converter never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.kill9();
    // The orphaned converter went on (it ended only at its next progress line, minutes
    // apart for a real model), writing into the staging folder the resumed job converts into.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(converters_of(&models), Vec::<u32>::new(), "the converter outlived the daemon");
    assert!(installed(&models).is_empty(), "nothing installed: {:?}", installed(&models));

    let d = import_daemon(home.path(), &models, &env);
    let done = wait_job(&http, &d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(!models.join(".staging/cut").exists(), "staging cleaned");
    let verify = run_ok(reelbox_cli(home.path(), &models).args(["models", "verify", "cut"]));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("ok"), "{verify:?}");
}
