//! The `reelbox` binary as a user runs it: `say`, `image` and `render` through a real daemon or in
//! process, `models list`, and `doctor`. Runtime and voice come from the project's own
//! installer (tests/common/provision.rs); the diffusion model is the tiny test fixture.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemon::DaemonProc;
use common::fixture;
use common::provision;
use common::tools::{reelbox_cli, run_ok};
use serde_json::Value;

/// Nothing listens here: port 1 on loopback refuses at once.
const NO_DAEMON: &str = "http://127.0.0.1:1";

fn daemon(home: &Path, models: &Path) -> DaemonProc {
    let runtime = provision::runtime();
    DaemonProc::start(
        &home.join("daemon-data"),
        &[
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8 path")),
            ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8 path")),
        ],
    )
}

async fn jobs_of_kind(d: &DaemonProc, kind: &str) -> Vec<Value> {
    let page: Value = reqwest::get(d.at(&format!("/api/v1/jobs?kind={kind}")))
        .await
        .expect("list jobs")
        .json()
        .await
        .expect("job page");
    page["jobs"].as_array().cloned().unwrap_or_default()
}

/// (sample rate, samples) of a mono 16-bit WAV.
fn wav_shape(path: &Path) -> (u32, u32) {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{} is not a WAV: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{spec:?}");
    (spec.sample_rate, reader.duration())
}

/// A models dir holding the provisioned joe voice (and its manifest) by link.
fn voice_models(home: &Path) -> PathBuf {
    provision::joe_voice();
    let models = home.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    for name in [provision::JOE.to_string(), format!("{}.toml", provision::JOE)] {
        std::os::unix::fs::symlink(provision::models_dir().join(&name), models.join(&name)).expect("link voice");
    }
    models
}

#[tokio::test]
async fn say_goes_through_a_running_daemon_and_writes_its_wav() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = voice_models(home.path());
    let d = daemon(home.path(), &models);
    let wav = home.path().join("x.wav");

    let out = run_ok(reelbox_cli(home.path(), &models).args(["say", "This is a test.", "-o"]).arg(&wav).args([
        "--noise-scale",
        "0",
        "--noise-w",
        "0",
        "--url",
        &d.url,
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("running in this process"), "should have used the daemon: {stderr}");

    let (rate, samples) = wav_shape(&wav);
    assert_eq!(rate, 22050, "joe medium speaks at 22050 Hz");
    // Piper itself gives 25344 samples for this sentence with the noise off.
    assert_eq!(samples, 25344);
    let jobs = jobs_of_kind(&d, "speech").await;
    assert_eq!(jobs.len(), 1, "the say command's job is in the daemon's queue: {jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["params"]["text"], "This is a test.");
    assert_eq!(jobs[0]["params"]["noise_scale"], 0.0);

    // `-` reads the text from standard input, as `render -` reads a script (it said "-").
    let mut child = reelbox_cli(home.path(), &models)
        .args(["say", "-", "-o"])
        .arg(home.path().join("stdin.wav"))
        .args(["--url", &d.url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"Guten Abend, Zo\xc3\xab.\n").expect("write");
    let out = child.wait_with_output().expect("say -");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jobs = jobs_of_kind(&d, "speech").await;
    assert!(jobs.iter().any(|j| j["params"]["text"] == "Guten Abend, Zoë."), "{jobs:?}");

    // A Markdown file is said as a render reads it: no "hash", no asterisks, no link address;
    // --format text says it as written.
    let notes = home.path().join("notes.md");
    std::fs::write(&notes, "# Hello\n\nThis is *a* [test](https://example.com).\n").expect("write notes");
    for (format, said) in
        [(None, "Hello\n\nThis is a test."), (Some("text"), "# Hello\n\nThis is *a* [test](https://example.com).")]
    {
        let mut cmd = reelbox_cli(home.path(), &models);
        cmd.args(["say", "--file"]).arg(&notes).arg("-o").arg(home.path().join("notes.wav")).args(["--url", &d.url]);
        if let Some(format) = format {
            cmd.args(["--format", format]);
        }
        run_ok(&mut cmd);
        let jobs = jobs_of_kind(&d, "speech").await;
        assert!(jobs.iter().any(|j| j["params"]["text"] == said), "{format:?}: {jobs:?}");
    }
}

#[test]
fn say_runs_in_process_without_a_daemon() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = voice_models(home.path());

    // No daemon answers: the command says so and synthesises itself.
    let fallback = home.path().join("fallback.wav");
    let out = run_ok(reelbox_cli(home.path(), &models).args(["say", "This is a test.", "-o"]).arg(&fallback).args([
        "--noise-scale",
        "0",
        "--noise-w",
        "0",
        "--url",
        NO_DAEMON,
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no daemon answers at http://127.0.0.1:1"), "{stderr}");
    assert_eq!(wav_shape(&fallback), (22050, 25344));

    // --local never asks a daemon.
    let local = home.path().join("local.wav");
    let out = run_ok(
        reelbox_cli(home.path(), &models)
            .args(["say", "This is a test. And a second sentence.", "-o"])
            .arg(&local)
            .args(["--local", "--url", NO_DAEMON]),
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no daemon answers"));
    let (rate, samples) = wav_shape(&local);
    assert_eq!(rate, 22050);
    assert!(samples > 25344, "two sentences are longer than one: {samples} samples");
}

#[test]
fn an_error_and_its_causes_are_each_said_once() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let missing = home.path().join("nowhere/libonnxruntime.so");
    let out = reelbox_cli(home.path(), &models)
        .env_remove("ORT_DYLIB_PATH")
        .env("REELBOX_ONNXRUNTIME", &missing)
        .args(["image", "a red circle", "--model", "tiny-sd", "--local", "-o"])
        .arg(home.path().join("x.png"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The runtime's message names every place searched and the fix; the layers above it
    // add where it happened, and none repeats it.
    assert_eq!(stderr.matches("not found; searched").count(), 1, "{stderr}");
    assert_eq!(stderr.matches(&missing.display().to_string()).count(), 1, "{stderr}");
    assert!(stderr.contains("reelbox setup"), "{stderr}");
    // A --url that is no URL is named as such (it was "request to nonsense failed: builder error").
    let out = reelbox_cli(home.path(), &models).args(["--url", "nonsense", "jobs", "list"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--url \"nonsense\" is not a daemon URL"), "{stderr}");
}

#[test]
fn an_output_in_a_missing_directory_is_refused_before_any_work() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = voice_models(home.path());
    let out = home.path().join("no-such-dir/x.wav");
    let run = reelbox_cli(home.path(), &models).args(["say", "Hello.", "--local", "-o"]).arg(&out).output();
    let run = run.expect("run");
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no-such-dir does not exist"), "{stderr}");
}

#[test]
fn say_with_an_unknown_voice_fails_with_the_fix() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = voice_models(home.path());
    let out = reelbox_cli(home.path(), &models)
        .args(["say", "Hello.", "-o"])
        .arg(home.path().join("x.wav"))
        .args(["--voice", "nobody", "--local"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Named by its flag, with what is installed; no pull is offered for a name no catalog
    // knows (it would fail), as the daemon refuses it too.
    assert!(
        stderr.contains("--voice: no tts model \"nobody\" is installed or in the catalog; installed: "),
        "{stderr}"
    );
    assert!(!stderr.contains("reelbox pull nobody"), "{stderr}");
    let help = run_ok(reelbox_cli(home.path(), &models).args(["pull", "--help"]));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Pull a model"));
    assert!(!home.path().join("x.wav").exists(), "no WAV is written on failure");
}

/// A models dir with the tiny Stable Diffusion test model linked in.
fn tiny_sd_models(home: &Path) -> PathBuf {
    let models = home.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(fixture("models/tiny-sd"), models.join("tiny-sd")).expect("link tiny-sd");
    models
}

fn image_args(out: &Path, url: &str) -> Vec<String> {
    let mut args: Vec<String> = ["image", "a red circle", "-o"].map(String::from).to_vec();
    args.push(out.display().to_string());
    args.extend(
        ["--model", "tiny-sd", "--steps", "2", "--width", "64", "--height", "64", "--seed", "42", "--url", url]
            .map(String::from),
    );
    args
}

#[tokio::test]
async fn image_through_the_daemon_is_a_png_of_the_asked_size_and_the_same_seed_repeats() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    let d = daemon(home.path(), &models);
    let (a, b) = (home.path().join("a.png"), home.path().join("b.png"));

    run_ok(reelbox_cli(home.path(), &models).args(image_args(&a, &d.url)));
    run_ok(reelbox_cli(home.path(), &models).args(image_args(&b, &d.url)));

    let img = image::open(&a).expect("a PNG");
    assert_eq!((img.width(), img.height()), (64, 64));
    let (bytes_a, bytes_b) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert_eq!(bytes_a, bytes_b, "same seed and settings give the same file");
    let jobs = jobs_of_kind(&d, "image").await;
    assert_eq!(jobs.len(), 2, "both renders ran on the daemon");
    assert!(jobs.iter().all(|j| j["params"]["seed"] == 42 && j["state"] == "succeeded"), "{jobs:?}");

    // The daemon keeps the model's sessions loaded and says so.
    let system: Value = reqwest::get(d.at("/api/v1/system")).await.expect("system").json().await.expect("json");
    let sessions = system["sessions"].as_array().expect("sessions list");
    assert!(sessions.iter().any(|s| s["model"].as_str().is_some_and(|m| m.contains("tiny-sd/unet"))), "{sessions:?}");

    // A different seed is a different picture.
    let c = home.path().join("c.png");
    let mut args = image_args(&c, &d.url);
    let seed_at = args.iter().position(|x| x == "42").expect("seed arg");
    args[seed_at] = "43".into();
    run_ok(reelbox_cli(home.path(), &models).args(args));
    assert_ne!(std::fs::read(&c).expect("c"), bytes_a);
}

/// `--upscale-model` writes the upscaled picture, 4× the asked size (the flag did not exist).
#[tokio::test]
async fn image_with_an_upscaler_writes_the_upscaled_picture() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    std::os::unix::fs::symlink(fixture("models/tiny-esrgan-x4"), models.join("tiny-esrgan-x4")).expect("link");
    let d = daemon(home.path(), &models);
    let out = home.path().join("big.png");
    let mut args = image_args(&out, &d.url);
    args.extend(["--upscale-model", "tiny-esrgan-x4"].map(String::from));
    let done = run_ok(reelbox_cli(home.path(), &models).args(&args));
    let img = image::open(&out).expect("a PNG");
    assert_eq!((img.width(), img.height()), (256, 256), "the 64x64 picture upscaled 4x");
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(said.contains("64×64 · upscaled to 256×256 by tiny-esrgan-x4"), "the summary says both sizes: {said}");
    // With no daemon answering, the upscale runs on a daemon the command starts.
    let alone = home.path().join("alone.png");
    let mut args = image_args(&alone, NO_DAEMON);
    args.extend(["--upscale-model", "tiny-esrgan-x4"].map(String::from));
    run_ok(reelbox_cli(home.path(), &models).args(&args));
    assert_eq!(image::image_dimensions(&alone).expect("a PNG"), (256, 256), "upscaled on a daemon of its own");
    // --local draws in this process, which has no upscale stage: said, not silently dropped.
    let local = home.path().join("local.png");
    let mut args = image_args(&local, NO_DAEMON);
    args.extend(["--upscale-model", "tiny-esrgan-x4", "--local"].map(String::from));
    let out = reelbox_cli(home.path(), &models).args(&args).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--upscale-model"), "{stderr}");
    assert!(!local.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_and_upscale_resize_by_a_factor_a_size_or_a_crop_and_write_the_resized_picture() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    std::os::unix::fs::symlink(fixture("models/tiny-esrgan-x4"), models.join("tiny-esrgan-x4")).expect("link");
    let d = daemon(home.path(), &models);
    let cli = |args: &[&str]| {
        let mut c = reelbox_cli(home.path(), &models);
        c.args(args).args(["--url", &d.url]);
        c
    };
    // Drawn at 64x64, upscaled 4x, then halved: the half is the file written.
    let half = home.path().join("half.png");
    let mut args = image_args(&half, &d.url);
    args.extend(
        ["--upscale-model", "tiny-esrgan-x4", "--resize", "0.5x", "--resize-method", "nearest-exact"].map(String::from),
    );
    let done = run_ok(reelbox_cli(home.path(), &models).args(&args));
    assert_eq!(image::image_dimensions(&half).expect("a PNG"), (128, 128));
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(said.contains("64×64 · upscaled by tiny-esrgan-x4, resized to 128×128"), "{said}");
    // A 0 side keeps the shape.
    let wide = home.path().join("wide.png");
    let mut args = image_args(&wide, &d.url);
    args.extend(["--resize", "96x0"].map(String::from));
    let done = run_ok(reelbox_cli(home.path(), &models).args(&args));
    assert_eq!(image::image_dimensions(&wide).expect("a PNG"), (96, 96));
    assert!(String::from_utf8_lossy(&done.stderr).contains("64×64 · resized to 96×96"));
    // `upscale` with a resize and no model only resizes, written beside the input as -resized.
    let done = run_ok(&mut cli(&["upscale", &wide.display().to_string(), "--resize", "100x50", "--crop"]));
    let resized = home.path().join("wide-resized.png");
    assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), resized.display().to_string());
    assert_eq!(image::image_dimensions(&resized).expect("a PNG"), (100, 50));
    // Resized first, then upscaled: the upscale of the small picture is what is written.
    let small_then_big = home.path().join("sb.png");
    run_ok(&mut cli(&[
        "upscale",
        &wide.display().to_string(),
        "--model",
        "tiny-esrgan-x4",
        "--resize",
        "32x32",
        "--resize-first",
        "-o",
        &small_then_big.display().to_string(),
    ]));
    assert_eq!(image::image_dimensions(&small_then_big).expect("a PNG"), (128, 128));
    // Refusals name the flag, before anything is sent.
    for (args, names) in [
        (vec!["upscale", "x.png", "--resize", "twice"], "--resize"),
        (vec!["upscale", "x.png", "--resize", "2x", "--crop"], "--crop"),
        (vec!["upscale", "x.png", "--resize-first", "--resize", "2x"], "--model"),
    ] {
        let out = cli(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn image_renders_in_process_when_no_daemon_answers() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    let out_path = home.path().join("local.png");
    let mut args = image_args(&out_path, NO_DAEMON);
    args.extend(["-n", "2", "--json"].map(String::from));
    let out = run_ok(reelbox_cli(home.path(), &models).args(args));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["backend"], "local");
    assert_eq!(report["params"]["seed"], 42);
    let files: Vec<PathBuf> =
        report["files"].as_array().expect("files").iter().map(|f| PathBuf::from(f.as_str().expect("path"))).collect();
    assert_eq!(files, vec![home.path().join("local-1.png"), home.path().join("local-2.png")]);
    for f in &files {
        assert_eq!(image::image_dimensions(f).expect("PNG"), (64, 64));
    }
    assert_ne!(std::fs::read(&files[0]).expect("1"), std::fs::read(&files[1]).expect("2"), "seeds 42 and 43 differ");
}

#[test]
fn models_list_shows_a_linked_test_model_as_diffusion() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    let out = run_ok(reelbox_cli(home.path(), &models).args(["models", "list", "--json"]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let tiny = list["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["name"] == "tiny-sd")
        .unwrap_or_else(|| panic!("tiny-sd not listed: {list}"));
    assert_eq!(tiny["kind"], "diffusion");
    assert_eq!(tiny["test"], true);
    assert_eq!(tiny["demo"], false);
    assert_eq!(tiny["state"], "installed");
    assert!(tiny["size"].as_u64().is_some_and(|s| s > 100_000), "{tiny}");

    // Test models are not installed by default: an empty models dir does not list them.
    let empty = home.path().join("empty-models");
    std::fs::create_dir_all(&empty).expect("dir");
    let out = run_ok(reelbox_cli(home.path(), &empty).args(["models", "list", "--json"]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(list["models"].as_array().expect("models").iter().all(|m| m["test"] == false), "{list}");
    // The shipped voice manifest is listed as available.
    let joe = list["models"].as_array().expect("models").iter().find(|m| m["name"] == provision::JOE).cloned();
    assert_eq!(joe.map(|j| j["state"].clone()), Some(Value::from("not_installed")));
}

#[test]
fn models_list_available_shows_only_what_a_pull_would_install_with_its_licence() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = tiny_sd_models(home.path());
    let out = run_ok(reelbox_cli(home.path(), &models).args(["models", "list", "--available", "--json"]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let models = list["models"].as_array().expect("models");
    assert!(models.iter().all(|m| m["state"] == "not_installed"), "installed models are left out: {list}");
    let wav2lip =
        models.iter().find(|m| m["name"] == "wav2lip").unwrap_or_else(|| panic!("wav2lip not listed: {list}"));
    assert_eq!(wav2lip["license"], "Wav2Lip: non-commercial research use only");
    assert_eq!(wav2lip["size"], 145_175_471);
    assert!(wav2lip["sources"][0].as_str().is_some_and(|s| s.starts_with("hf:bluefoxcreation/")), "{wav2lip}");

    let out = run_ok(reelbox_cli(home.path(), &home.path().join("empty")).args(["models", "list", "--available"]));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().next().is_some_and(|h| h.contains("LICENSE")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("realesrgan-x4") && l.contains("BSD-3-Clause")), "{table}");
}

#[test]
fn doctor_names_the_missing_runtime_and_its_fix_and_fails() {
    let home = tempfile::tempdir().expect("tempdir");
    let missing = home.path().join("nowhere/libonnxruntime.so");
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n\n[runtime]\nonnxruntime = {:?}\n",
            home.path().join("data").display().to_string(),
            missing.display().to_string()
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .arg("doctor")
        .arg("--config")
        .arg(&config)
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("REELBOX_ONNXRUNTIME")
        .env_remove("REELBOX_DATA_DIR")
        .env_remove("REELBOX_MODELS_DIR")
        .env("XDG_CONFIG_HOME", home.path().join("no-config"))
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a missing runtime is a failure:\n{stdout}");
    assert!(stdout.contains("MISSING  onnxruntime"), "{stdout}");
    assert!(stdout.contains(&missing.display().to_string()), "the configured path is named:\n{stdout}");
    assert!(stdout.contains("fix: reelbox setup"), "{stdout}");
    // Every other piece is still reported, found or not.
    for piece in ["espeak-ng", "ffmpeg", "data-dir", "gpu"] {
        assert!(stdout.lines().any(|l| l.contains(piece)), "{piece} missing from:\n{stdout}");
    }
    assert!(stdout.contains("found") && stdout.contains("ffmpeg"), "{stdout}");
}

/// A fresh user's `reelbox doctor --data-dir DIR`: a doctor only looks, so DIR is not made
/// (it was: doctor changed the machine it examined) but said not made yet, with what makes
/// it; and each piece is one check (pip and espeak-ng were two each).
#[test]
fn doctor_makes_no_data_dir_and_names_each_piece_once() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("x");
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["doctor", "--json", "--data-dir"])
        .arg(&data)
        .env_remove("REELBOX_CONFIG")
        .env_remove("REELBOX_DATA_DIR")
        .env_remove("REELBOX_MODELS_DIR")
        .env("XDG_CONFIG_HOME", home.path().join("no-config"))
        .output()
        .expect("run doctor");
    assert!(!data.exists(), "doctor made {}", data.display());
    let checks: Value = serde_json::from_slice(&out.stdout).expect("JSON checks");
    let checks = checks.as_array().expect("list");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for piece in ["pip", "espeak", "ffmpeg", "onnxruntime", "data-dir"] {
        assert_eq!(names.iter().filter(|n| n.contains(piece)).count(), 1, "{piece} once: {names:?}");
    }
    let dir = checks.iter().find(|c| c["name"] == "data-dir").expect("data-dir check");
    assert!(dir["detail"].as_str().is_some_and(|d| d.contains("not made yet")), "{dir}");
    assert!(dir["fix"].as_str().is_some_and(|f| f.starts_with("reelbox setup")), "{dir}");
}

/// A worker box's config carries its NATS seed: while every user of the machine can read
/// the file, `reelbox doctor` says so, naming the key and the chmod that closes it.
#[test]
fn doctor_warns_of_a_config_whose_seed_every_user_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("config.toml");
    let toml = "[cluster]\nrole = \"worker\"\nnats_url = \"nats://head:4222\"\nnkey = \"SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY\"\n";
    std::fs::write(&config, toml).expect("write config");
    let doctor = || {
        let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
            .arg("--config")
            .arg(&config)
            .args(["doctor", "--json", "--data-dir"])
            .arg(home.path().join("data"))
            .env_remove("REELBOX_CONFIG")
            .output()
            .expect("run doctor");
        let checks: Value = serde_json::from_slice(&out.stdout).expect("JSON checks");
        checks.as_array().expect("list").iter().find(|c| c["name"] == "config").cloned()
    };
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let check = doctor().expect("a config check");
    assert_eq!(check["status"], "warn", "{check}");
    let detail = check["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("holds cluster.nkey and every user of this machine can read it (mode 0644)"), "{check}");
    assert_eq!(check["fix"], format!("chmod 600 {}", config.display()), "{check}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(doctor(), None, "closed: nothing to say");
}

#[test]
fn setup_installs_the_runtime_that_doctor_then_finds() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("REELBOX_ONNXRUNTIME")
            .env_remove("REELBOX_CONFIG")
            .env_remove("REELBOX_DATA_DIR")
            .env_remove("REELBOX_MODELS_DIR")
            .env("XDG_CONFIG_HOME", home.path().join("no-config"))
            .stdin(std::process::Stdio::null());
        cmd
    };
    let out = run_ok(&mut cli(&["setup", "--gpu", "no", "--no-models"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let library = data.join("runtime/libonnxruntime.so");
    assert!(stdout.contains(&format!("(CPU) at {}", library.display())), "{stdout}");
    assert!(library.exists(), "setup put the runtime in the data dir");

    // Doctor finds that runtime; only the default models (not pulled) are missing.
    let out = cli(&["doctor", "--json"]).output().expect("doctor");
    let checks: Value = serde_json::from_slice(&out.stdout).expect("JSON checks");
    let checks = checks.as_array().expect("list");
    let ort = checks.iter().find(|c| c["name"] == "onnxruntime").expect("runtime check");
    assert_eq!(ort["status"], "ok", "{ort}");
    assert!(ort["detail"].as_str().unwrap_or("").contains(&library.display().to_string()), "{ort}");
    let missing: Vec<&str> =
        checks.iter().filter(|c| c["status"] == "missing").filter_map(|c| c["name"].as_str()).collect();
    assert!(missing.contains(&format!("model {}", provision::JOE).as_str()), "{checks:?}");
    assert!(missing.iter().all(|m| m.starts_with("model ")), "only models are missing: {checks:?}");
    assert!(!out.status.success(), "a missing default voice still fails doctor");
}

#[test]
fn models_pull_verify_rm_and_import_manage_the_models_dir() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    // A share dir shipping one manifest whose file is bundled beside it.
    let share = home.path().join("share");
    std::fs::create_dir_all(share.join("models")).expect("manifest dir");
    std::fs::create_dir_all(share.join("payload")).expect("payload dir");
    let bytes = std::fs::read(fixture("models/tiny-esrgan-x4/model.onnx")).expect("fixture");
    std::fs::write(share.join("payload/model.onnx"), &bytes).expect("payload");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    std::fs::write(
        share.join("models/tiny-upscaler.toml"),
        format!(
            "name = \"tiny-upscaler\"\nkind = \"upscale\"\nsources = [\"bundled:payload\"]\n\n\
             [[files]]\npath = \"model.onnx\"\nsize = {}\nsha256 = \"{sha}\"\n",
            bytes.len()
        ),
    )
    .expect("manifest");
    let cli = |args: &[&str]| {
        let mut cmd = reelbox_cli(home.path(), &models);
        cmd.args(args).env("REELBOX_SHARE_DIR", &share);
        cmd
    };
    let state = |name: &str| {
        let out = run_ok(&mut cli(&["models", "list", "--json"]));
        let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        list["models"].as_array().expect("models").iter().find(|m| m["name"] == name).map(|m| m["state"].clone())
    };

    assert_eq!(state("tiny-upscaler"), Some(Value::from("not_installed")));
    let out = run_ok(&mut cli(&["models", "pull", "tiny-upscaler"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tiny-upscaler installed at"));
    assert_eq!(std::fs::read(models.join("tiny-upscaler/model.onnx")).expect("installed"), bytes);
    assert_eq!(state("tiny-upscaler"), Some(Value::from("installed")));
    run_ok(&mut cli(&["models", "verify", "tiny-upscaler"]));

    // A flipped byte keeps the size, so only verify's sha256 sees it.
    let mut damaged = bytes.clone();
    damaged[100] ^= 0xff;
    std::fs::write(models.join("tiny-upscaler/model.onnx"), &damaged).expect("damage");
    let out = cli(&["models", "verify"]).output().expect("verify");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DAMAGED tiny-upscaler") && stdout.contains(&sha), "{stdout}");

    run_ok(&mut cli(&["models", "rm", "tiny-upscaler"]));
    assert!(!models.join("tiny-upscaler").exists());
    assert_eq!(state("tiny-upscaler"), Some(Value::from("not_installed")));

    let mut import = cli(&["models", "import", "--json", "--name", "my-sd", "--kind", "diffusion"]);
    let out = run_ok(import.arg(fixture("models/tiny-sd")));
    let manifest: Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
    assert_eq!((manifest["name"].as_str(), manifest["kind"].as_str()), (Some("my-sd"), Some("diffusion")));
    assert_eq!(state("my-sd"), Some(Value::from("installed")));
    let out = cli(&["models", "pull", "no-such-model"]).output().expect("pull");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tiny-upscaler"), "the error lists known models");
}

#[test]
fn render_runs_in_a_daemon_of_its_own_when_none_answers_and_writes_film_and_subtitles() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = voice_models(home.path());
    std::os::unix::fs::symlink(fixture("models/tiny-sd"), models.join("tiny-sd")).expect("link tiny-sd");
    let script = home.path().join("script.txt");
    std::fs::write(&script, "A red circle rolls.\n\nA blue square waits. Then it is gone.\n").expect("script");
    let film = home.path().join("film.mp4");
    let out = run_ok(reelbox_cli(home.path(), &models).args([
        "render",
        script.to_str().expect("utf-8"),
        "-o",
        film.to_str().expect("utf-8"),
        "--model",
        "tiny-sd",
        "--width",
        "64",
        "--height",
        "64",
        "--url",
        NO_DAEMON,
        "--json",
    ]));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(report["job"].is_string(), "{report}");
    let info = reelbox::media::ffprobe::probe(&film).expect("the film is a video");
    let v = info.video().expect("video stream");
    assert_eq!((v.codec_name.as_str(), v.width, v.height), ("h264", Some(64), Some(64)));
    assert_eq!(info.audio().expect("narration").codec_name, "aac");
    let srt = std::fs::read_to_string(home.path().join("film.srt")).expect("SRT beside the film");
    assert!(srt.contains("A blue square waits."), "{srt}");
    assert!(std::fs::read_to_string(home.path().join("film.vtt")).expect("VTT beside the film").starts_with("WEBVTT"));
}

#[test]
fn image_needs_no_model_when_one_is_installed_and_names_a_wrong_one_once() {
    let home = tempfile::tempdir().expect("tempdir");
    // Installed as `reelbox setup` installs it; the source tree's bundled copy (models/demo/
    // shapes) must not count as a second installed model.
    let models = common::models_with_demo_shapes(home.path());
    let elsewhere = tempfile::tempdir().expect("another working directory");
    let out = run_ok(reelbox_cli(home.path(), &models).current_dir(elsewhere.path()).args([
        "image",
        "a red circle on a blue background",
        "-o",
        "x.png",
        "--local",
        "--steps",
        "4",
    ]));
    assert!(elsewhere.path().join("x.png").is_file(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = reelbox_cli(home.path(), &models)
        .current_dir(elsewhere.path())
        .args(["image", "a red circle", "--model", "nope", "-o", "y.png", "--local"])
        .output()
        .expect("run reelbox");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("unknown model \"nope\"").count(), 1, "the error is printed once: {err}");
    assert!(err.contains("installed: demo-shapes") && !err.contains("shapes, "), "{err}");
}

#[tokio::test]
async fn json_flag_prints_json_and_a_reader_that_hangs_up_causes_no_panic() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let d = daemon(home.path(), &models);
    for args in [&["queue", "pause"][..], &["queue", "resume"], &["config", "show"], &["version"]] {
        let out = run_ok(reelbox_cli(home.path(), &models).args(["--json", "--url", &d.url]).args(args));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "reelbox --json {args:?} printed: {text}");
    }
    // `reelbox ... | head`: the reader is gone before anything is printed.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = reelbox_cli(home.path(), &models).arg("version").stdout(writer).output().expect("run reelbox");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && out.status.code() == Some(141), "{:?}: {stderr}", out.status);
}

/// A daemon bound to one address (as README's LAN recipe binds it) is the one the CLI on
/// the box talks to when neither `--url` nor `REELBOX_URL` is given: the config's `bind`.
#[test]
fn the_cli_follows_the_configs_bind_when_no_url_is_given() {
    let home = tempfile::tempdir().expect("tempdir");
    // 127.0.0.2 is loopback too, but not the default URL's address.
    let port = std::net::TcpListener::bind("127.0.0.2:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let bind = format!("127.0.0.2:{port}");
    let config = home.path().join("config.toml");
    std::fs::write(&config, format!("bind = \"{bind}\"\n")).expect("config");
    let cfg = config.to_str().expect("utf-8");
    let _d = DaemonProc::start_on(&home.path().join("data"), &bind, &[("REELBOX_CONFIG", cfg)]);
    let models = home.path().join("models");
    let out = run_ok(reelbox_cli(home.path(), &models).args(["--config", cfg, "--json", "jobs", "list"]));
    let jobs: Value = serde_json::from_slice(&out.stdout).expect("jobs as JSON");
    assert_eq!(jobs["jobs"], serde_json::json!([]), "the daemon at {bind} answered: {jobs}");
    // An explicit --url still wins.
    let wrong = reelbox_cli(home.path(), &models)
        .args(["--config", cfg, "jobs", "list", "--url", "http://127.0.0.2:1"])
        .output()
        .expect("run");
    assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("127.0.0.2:1"));
}

/// The ids `reelbox top` shows are their last 8 characters; `reelbox jobs` takes them (any
/// case), as it takes whole ids. It refused them (`not a valid job id`). An end no job's id
/// has is said plainly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_commands_take_the_short_ids_top_shows() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let http = reqwest::Client::new();
    assert_eq!(http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    let id = common::daemon::submit_testcard(&http, &d, serde_json::json!({"steps": 2})).await;
    let other = common::daemon::submit_testcard(&http, &d, serde_json::json!({"steps": 2})).await;
    let short = &id[id.len() - 8..];
    let jobs = |args: &[&str]| {
        reelbox_cli(home.path(), &home.path().join("models")).args(args).args(["--url", &d.url]).output().expect("run")
    };

    let shown =
        run_ok(reelbox_cli(home.path(), &home.path().join("models")).args(["jobs", "show", short, "--url", &d.url]));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&id) && !shown.contains(&other), "{shown}");
    let canceled = jobs(&["jobs", "cancel", &short.to_ascii_lowercase()]);
    assert!(canceled.status.success(), "{}", String::from_utf8_lossy(&canceled.stderr));
    let job: Value =
        http.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(job["state"], "canceled", "{job}");

    // `reelbox jobs` alone lists them, as `reelbox jobs list` does (it refused: a
    // subcommand is required), and each group's bare name does its listing alike.
    let printed = |args: &[&str]| {
        let out = jobs(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let listed: Value = serde_json::from_slice(&printed(&["--json", "jobs"])).expect("jobs as JSON");
    let ids: Vec<&str> = listed["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, [other.as_str(), id.as_str()], "newest first: {listed}");
    for (bare, list) in [("profiles", "list"), ("models", "list"), ("keys", "list"), ("config", "show")] {
        assert_eq!(printed(&["--json", bare]), printed(&["--json", bare, list]), "`reelbox {bare}` is `{bare} {list}`");
    }

    let none = jobs(&["jobs", "show", "ZZZZZZZZ"]);
    assert!(!none.status.success());
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("no job's id ends with ZZZZZZZZ"), "{said}");
}

/// A command the CLI prints for the user to run next reaches the daemon this one reached:
/// it carries the `--url` typed when a bare command would reach another daemon, none when
/// `REELBOX_URL` or the config gives the same anyway, and never the key. (Run as printed
/// against a daemon of its own port: `render_cli`'s Ctrl-C test.)
#[test]
fn a_printed_command_carries_the_typed_url_and_never_the_key() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    // A sentence given as SCRIPT: the CLI says how to film it, before it asks any daemon.
    let hint = |args: &[&str], env: &[(&str, &str)]| {
        let out = reelbox_cli(home.path(), &models)
            .args(args)
            .args(["render", "A red circle rolls."])
            .envs(env.iter().copied())
            .current_dir(home.path())
            .output()
            .expect("run reelbox");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && !said.contains("sk-secret"), "{said}");
        let piped = said.split('`').nth(1).unwrap_or_else(|| panic!("a command: {said}"));
        piped.split(" | ").nth(1).unwrap_or_else(|| panic!("{piped}")).to_string()
    };
    let other = "http://127.0.0.1:9";
    let typed = hint(&["--url", other, "--key", "sk-secret"], &[]);
    assert_eq!(typed, format!("reelbox --url {other} render - -o film.mp4"));
    // REELBOX_URL is in the shell the command is pasted into: nothing to add.
    assert_eq!(hint(&[], &[("REELBOX_URL", other)]), "reelbox render - -o film.mp4");
    assert_eq!(hint(&["--url", other], &[("REELBOX_URL", other)]), "reelbox render - -o film.mp4");
    // The address a bare command reaches anyway (the default here, no config).
    assert_eq!(hint(&["--url", "http://127.0.0.1:8470/"], &[]), "reelbox render - -o film.mp4");
    // A typed --config whose bind is another address: the command names that address.
    let config = home.path().join("box.toml");
    std::fs::write(&config, "bind = \"127.0.0.2:8471\"\n").expect("config");
    let cfg = config.to_str().expect("utf-8");
    assert_eq!(hint(&["--config", cfg], &[]), "reelbox --url http://127.0.0.2:8471 render - -o film.mp4");
}
