//! Bring your own ONNX models, as the box's owner walked it: an ONNX import is loaded in
//! ONNX Runtime through the pipeline of its kind before anything is installed, and only
//! the model's files are copied; an upscaler's `.onnx` is installed under the name its
//! loader opens whatever it was called, given alone or in a folder; `models verify` loads
//! an imported model too; a broken model's job error says the fix that works for where it
//! came from; and a file that is no checkpoint is refused before the converter's
//! environment (PyTorch, gigabytes) is made. Real CLI and daemon, real ONNX Runtime, the
//! committed tiny models; nothing here converts.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::byo::{import_daemon, installed, models_dir, testcard_png, upscale_card, upscale_size};
use common::daemon::{DaemonProc, post_json};
use common::fixture;
use common::tools::{reelbox_cli, run_ok};
use serde_json::json;

/// The environment of a reelbox that must not make the converter's environment: it is to
/// be at `HOME/no-env`, and the Python that would make it fails at once (an ONNX import
/// never needs one; a refused checkpoint must not start downloading PyTorch).
fn no_converter(home: &Path) -> [(&'static str, PathBuf); 2] {
    [("REELBOX_CONVERT_PYENV", home.join("no-env")), ("REELBOX_PYTHON", PathBuf::from("false"))]
}

/// `reelbox models import ARGS PATH` without a converter environment ([`no_converter`]).
fn import(home: &Path, models: &Path, args: &[&str], path: &Path) -> Output {
    let mut cmd = reelbox_cli(home, models);
    cmd.envs(no_converter(home)).args(["models", "import"]).args(args).arg(path);
    cmd.output().expect("run reelbox")
}

/// What the owner imported as an upscaler: a subtitle file named `model.onnx`.
const SUBTITLES: &str = "1\n00:00:00,000 --> 00:00:02,000\nA red circle.\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Bytes that look like nothing: a fixed-seed xorshift stream.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn onnx_imports_load_before_they_install_and_an_upscaler_of_any_file_name_upscales() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let upscaler = fixture("models/tiny-esrgan-x4/model.onnx");

    // The owner's folder: subtitles named model.onnx beside notes and random "weights". It
    // was installed, verified ok, and failed at its first job ("Protobuf parsing failed").
    let byo = home.path().join("byo");
    std::fs::create_dir_all(&byo).expect("mkdir");
    std::fs::write(byo.join("notes.txt"), "hello\n").expect("write");
    std::fs::write(byo.join("model.onnx"), SUBTITLES).expect("write");
    std::fs::write(byo.join("x.safetensors"), noise(1000)).expect("write");
    let out = import(home.path(), &models, &["--kind", "upscale"], &byo);
    let err = text(&out.stderr);
    let said = format!(
        "{}: not usable as an upscale model: cannot load model {}",
        byo.display(),
        byo.join("model.onnx").display()
    );
    assert!(!out.status.success() && err.contains(&said) && err.contains("nothing was installed"), "{err}");
    assert!(installed(&models).is_empty() && !models.join(".staging/byo").exists(), "{:?}", installed(&models));

    // A real ONNX of another interface (a Stable Diffusion UNet) failed only at job time.
    let unet = fixture("models/tiny-sd/unet");
    let out = import(home.path(), &models, &["--kind", "upscale", "--name", "wrongshape"], &unet);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("does not have the Real-ESRGAN interface: expected one image input, found 3"), "{err}");
    assert!(installed(&models).is_empty(), "{:?}", installed(&models));

    // A downloaded Real-ESRGAN-x4plus.onnx in a folder with other files: it was installed
    // as "esr", listed and verified, and every request said `no …/esr/model.onnx`.
    let esr = home.path().join("esr");
    std::fs::create_dir_all(&esr).expect("mkdir");
    let file = esr.join("Real-ESRGAN-x4plus.onnx");
    std::fs::copy(&upscaler, &file).expect("copy");
    std::fs::write(esr.join("notes.txt"), "from the model card\n").expect("write");
    std::fs::write(esr.join("RealESRGAN_x4plus.pth"), noise(300)).expect("write");
    let out = import(home.path(), &models, &["--kind", "upscale"], &esr);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.contains("imported esr (upscale, 1 files)"), "{said}");
    assert!(said.contains("left out (not part of the model): RealESRGAN_x4plus.pth, notes.txt"), "{said}");
    let verify = run_ok(reelbox_cli(home.path(), &models).args(["models", "verify", "esr"]));
    assert!(text(&verify.stdout).starts_with("ok"), "{}", text(&verify.stdout));
    let mut files: Vec<String> = std::fs::read_dir(models.join("esr"))
        .expect("esr")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.retain(|f| !f.starts_with('.'));
    assert_eq!(files, ["model.onnx"], "only the model is copied");
    // The list said its install folder, as for any model: now where it was imported from.
    let list = run_ok(reelbox_cli(home.path(), &models).args(["models", "list"]));
    let list = text(&list.stdout);
    let row = list.lines().find(|l| l.starts_with("esr ")).unwrap_or_default();
    assert!(row.contains(&format!("imported from {}", esr.display())), "{list}");

    // The file itself, as someone who downloaded it tries first: it was refused as "a
    // Piper voice X.onnx with X.onnx.json beside it", whatever --kind said.
    let out = import(home.path(), &models, &["--kind", "upscale"], &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("imported Real-ESRGAN-x4plus (upscale, 1 files)"), "{}", text(&out.stdout));
    // Without a kind it says which to name.
    let out = import(home.path(), &models, &["--name", "guess"], &file);
    assert!(!out.status.success() && text(&out.stderr).contains("--kind upscale, lipsync or face"), "{out:?}");
    // A name with `ü` was refused as using something other than "letters": ü is one.
    let out = import(home.path(), &models, &["--kind", "upscale", "--name", "Omas-Stimme-für-Zoë"], &file);
    let said = text(&out.stderr);
    assert!(!out.status.success() && said.contains("may only use ASCII letters (a-z, A-Z), digits"), "{said}");

    // Installed means usable: both upscale ×4 in the daemon.
    let d = import_daemon(home.path(), &models, &home.path().join("no-env"));
    let http = reqwest::Client::new();
    assert_eq!(upscale_size(&http, &d, "esr").await, (128, 96));
    assert_eq!(upscale_size(&http, &d, "Real-ESRGAN-x4plus").await, (128, 96));
}

#[tokio::test]
async fn a_broken_models_job_error_gives_the_fix_for_where_it_came_from_and_verify_loads_imports() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // An import made before imports were loaded: the owner's subtitles as an upscaler.
    let old = home.path().join("old");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("model.onnx"), SUBTITLES).expect("write");
    let store = reelbox::models::ModelStore::with_dirs(models.clone(), Vec::new(), Vec::new());
    let unchecked = |_: &reelbox::models::import::ImportPlan| Ok::<_, reelbox::models::ModelError>(());
    store
        .import(&old, None, Some(reelbox::models::ModelKind::Upscale), reelbox::models::import::Via::Cli, unchecked)
        .expect("import as before");

    // `models verify` said `ok old`: its files match what was imported.
    let out = reelbox_cli(home.path(), &models).args(["models", "verify", "old"]).output().expect("verify");
    let said = text(&out.stdout);
    let first: Vec<&str> = said.split_whitespace().take(2).collect();
    assert!(!out.status.success() && first == ["BROKEN", "old"], "{said}");
    assert!(said.contains("does not load: ") && said.contains("cannot load model"), "{said}");

    // Its job's error ended "fix: pull the model again (`reelbox pull --force NAME`)", and
    // that pull says the model has no sources.
    let d = import_daemon(home.path(), &models, &home.path().join("no-env"));
    let http = reqwest::Client::new();
    let job = upscale_card(&http, &d, "old").await;
    let error = job["error"].as_str().unwrap_or_default();
    let fix = format!(
        "fix: old was imported on this box and no pull replaces it: `reelbox rm old`, then import it again \
         (`reelbox models import {} --kind upscale --name old`)",
        old.display()
    );
    assert!(job["state"] == "failed" && error.contains(&fix) && !error.contains("reelbox pull"), "{job}");
    let out = reelbox_cli(home.path(), &models).args(["pull", "--force", "old"]).output().expect("pull");
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("has no sources to pull from; fix: old was imported"), "{err}");
    assert!(said.contains(&format!("        {fix}\n")), "verify says the same fix: {said}");

    // Its model.onnx deleted: a request was refused "not installed (no …/model.onnx)", and
    // verify said DAMAGED, each with no fix.
    std::fs::remove_file(models.join("old/model.onnx")).expect("delete model.onnx");
    let png = testcard_png(&http, &d).await;
    let (s, b) = post_json(&http, &d, "/api/v1/upscale", json!({"input": png, "model": "old"})).await;
    let message = b["error"]["message"].as_str().unwrap_or_default();
    let missing = format!("(no {}); {fix}", models.join("old/model.onnx").display());
    assert!(s == 400 && message.contains(&missing), "{b}");
    let out = reelbox_cli(home.path(), &models).args(["models", "verify", "old"]).output().expect("verify");
    let said = text(&out.stdout);
    assert!(
        !out.status.success() && said.starts_with("DAMAGED old") && said.contains(&format!("        {fix}\n")),
        "{said}"
    );

    // A pulled model whose file broke is pulled again, as its error says, and works again.
    run_ok(reelbox_cli(home.path(), &models).args(["pull", "demo-upscaler"]));
    let file = models.join("demo-upscaler/model.onnx");
    let size = std::fs::metadata(&file).expect("pulled").len() as usize;
    std::fs::write(&file, noise(size)).expect("break it, keeping its size");
    let job = upscale_card(&http, &d, "demo-upscaler").await;
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("fix: pull the model again (`reelbox pull --force demo-upscaler`)"), "{job}");
    run_ok(reelbox_cli(home.path(), &models).args(["pull", "--force", "demo-upscaler"]));
    assert_eq!(upscale_size(&http, &d, "demo-upscaler").await, (64, 48));
    // Its file deleted: pulled again, as both the refusal and verify say.
    std::fs::remove_file(&file).expect("delete model.onnx");
    let fix = "fix: pull the model again (`reelbox pull --force demo-upscaler`)";
    let (s, b) = post_json(&http, &d, "/api/v1/upscale", json!({"input": png, "model": "demo-upscaler"})).await;
    assert!(s == 400 && b["error"]["message"].as_str().unwrap_or_default().contains(fix), "{b}");
    let out = reelbox_cli(home.path(), &models).args(["models", "verify", "demo-upscaler"]).output().expect("verify");
    let said = text(&out.stdout);
    assert!(said.starts_with("DAMAGED demo-upscaler") && said.contains(&format!("        {fix}\n")), "{said}");
}

#[tokio::test]
async fn a_file_that_is_no_checkpoint_is_refused_naming_it_before_the_converter_environment_is_made() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let no_env = home.path().join("no-env");
    let random = noise(1000);
    assert!(!random.starts_with(b"PK") && random[0] != 0x80, "the noise opens like no checkpoint");
    let x = home.path().join("x.safetensors");
    std::fs::write(&x, &random).expect("write");
    let pth = home.path().join("RealESRGAN_x4plus.pth");
    std::fs::write(&pth, &random).expect("write");
    // A download cut short: a whole header, half the tensor bytes it names.
    let header = r#"{"w":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}"#;
    let mut cut_bytes = (header.len() as u64).to_le_bytes().to_vec();
    cut_bytes.extend_from_slice(header.as_bytes());
    cut_bytes.extend_from_slice(&[0u8; 128]);
    let cut = home.path().join("cut.safetensors");
    std::fs::write(&cut, cut_bytes).expect("write");
    // Each started making the environment ("downloads PyTorch") before the file was read.
    for (file, says) in [
        (&x, "not a safetensors file (its first 8 bytes give a header of"),
        (&pth, "not a readable checkpoint: a PyTorch checkpoint is a zip archive (torch.save) or a pickle"),
        (&cut, "truncated: its tensors need 256 bytes after the header, the file holds 128"),
    ] {
        let out = import(home.path(), &models, &[], file);
        let err = text(&out.stderr);
        assert!(!out.status.success() && err.contains(&format!("{}: {says}", file.display())), "{err}");
        assert!(!err.contains("conversion environment"), "{err}");
    }
    // A LoRA is looked at the same way, named by its flag.
    let base = home.path().join("base.ckpt");
    std::fs::write(&base, b"\x80\x02 a pickle's opening").expect("write");
    let lora = x.display().to_string();
    let out = import(home.path(), &models, &["--lora", &lora], &base);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("--lora {lora}: not a safetensors file")), "{err}");
    assert!(!no_env.exists(), "no conversion environment was made");

    // The API refuses it at submission, naming the field; no job is made.
    let runtime = common::provision::runtime();
    let no_python = no_converter(home.path());
    let mut env: Vec<(&str, &str)> = no_python.iter().map(|(k, v)| (*k, v.to_str().expect("utf-8"))).collect();
    env.extend([
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
    ]);
    let d = DaemonProc::start(&home.path().join("data"), &env);
    let http = reqwest::Client::new();
    let (s, b) = post_json(&http, &d, "/api/v1/models/import", json!({"path": x})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("path")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or_default().contains("not a safetensors file"), "{b}");
    assert!(!no_env.exists() && installed(&models).is_empty(), "{:?}", installed(&models));

    // When the environment must be made, the download's size is said before pip starts
    // (here the Python that would make it fails at once).
    let mut prepare = reelbox_cli(home.path(), &models);
    prepare.envs(no_converter(home.path()));
    let out = prepare.args(["models", "import", "--prepare-env"]).output().expect("prepare-env");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("creating the conversion environment") && err.contains("about 3 GB (5.8 GB on disk"), "{err}");
}
