//! Bring your own models, the mistakes people make: a `--kind` the files cannot be, a
//! folder of other files, a name that is installed, two imports of one name at once, and
//! the daemon killed mid-conversion. Each is refused before the converter runs where it
//! can be, names the field or flag, installs nothing and keeps what was installed.
//!
//! Uses the conversion environment `.ci/test` makes (`REELBOX_CONVERT_PYENV`) and the
//! fixtures of `make_byo_models.py` and `make_byo_sd.py` (see `byo_import.rs`).

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::byo::{fixture_once, import_cmd, import_daemon, installed, models_dir, read_json, voice_pair};
use common::daemon::{get_json, is_final, post_json, wait_job};
use common::tools::{convert_pyenv, reelbox_cli, run_ok};
use serde_json::json;

/// `models import ARGS PATH` with the CLI: (success, stderr).
fn import(env: &Path, home: &Path, models: &Path, args: &[&str], path: &Path) -> (bool, String) {
    let out = import_cmd(env, home, models).args(args).arg(path).output().expect("run reelbox");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn mistakes_are_refused_at_once_naming_the_flag_or_field_and_what_is_installed_stays() {
    let env = convert_pyenv();
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // An installed (copied) Piper voice named "voice".
    let voice = voice_pair(home.path(), "voice");
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
    // (A pickle's opening, so the look at the file before the converter passes it.)
    let ckpt = home.path().join("thing.pth");
    std::fs::write(&ckpt, b"\x80\x02not read").expect("write");
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
    // Conversion flags on ONNX files sent them to the converter ("not a readable checkpoint").
    for (flag, path) in [(vec!["--fp16"], &voice), (vec!["--prediction", "v"], &diffusers)] {
        let (ok, err) = import(&env, home.path(), &models, &[&flag[..], &["--name", "v2"]].concat(), path);
        assert!(!ok && err.starts_with(&format!("reelbox: {}: ", flag[0])), "{flag:?}: {err}");
    }
    assert_eq!(installed(&models), ["voice", "voice.toml"]);

    // The API refuses the same at submission, naming the field; no job is made.
    let d = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    for (body, field) in [
        (json!({"path": ckpt, "name": "voice"}), "name"),
        (json!({"path": home.path().join("voice.onnx")}), "name"),
        (json!({"path": diffusers, "kind": "face"}), "kind"),
        // Read from the daemon's working directory, whatever that was.
        (json!({"path": "tests/fixtures"}), "path"),
    ] {
        let (s, b) = post_json(&http, &d, "/api/v1/models/import", body.clone()).await;
        assert_eq!((s, b["error"]["field"].as_str()), (400, Some(field)), "{body}: {b}");
    }
    let (_, b) = post_json(&http, &d, "/api/v1/models/import", json!({"path": ckpt, "name": "voice"})).await;
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("already installed (kept as it is)"), "{message}");
    let jobs = get_json(&http, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    // A folder's contents are its job's to check: its error named the CLI's flag (--kind),
    // where the request sets the field "kind".
    let (s, job) = post_json(&http, &d, "/api/v1/models/import", json!({"path": other})).await;
    assert_eq!(s, 202, "{job}");
    let job = wait_job(&http, &d, job["id"].as_str().expect("id"), Duration::from_secs(60), is_final).await;
    let error = job["error"].as_str().unwrap_or_default();
    assert!(job["state"] == "failed" && error.contains(r#"name the kind (the field "kind")"#), "{job}");
    assert!(!error.contains("--kind"), "{error}");
    assert_eq!(std::fs::read(models.join("voice/voice.onnx")).expect("kept"), std::fs::read(&voice).expect("voice"));

    // `models rm` of a model a queued job names: it removed it, and the job failed later
    // with "unknown model"; now it is refused naming the job, and `--force` removes it.
    let onnx = common::fixture("models/tiny-esrgan-x4");
    run_ok(import_cmd(&env, home.path(), &models).args(["--kind", "upscale", "--name", "up"]).arg(&onnx));
    let card = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "width": 32, "height": 24}});
    let (_, card) = post_json(&http, &d, "/api/v1/jobs", card).await;
    let card = wait_job(&http, &d, card["id"].as_str().expect("id"), Duration::from_secs(30), is_final).await;
    let png = card["stages"][0]["artifacts"][0].as_str().expect("testcard png").to_string();
    let paused = http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    assert!(paused.status().is_success());
    let (s, job) = post_json(&http, &d, "/api/v1/upscale", json!({"input": png, "model": "up"})).await;
    assert_eq!(s, 202, "{job}");
    assert_eq!(job["models"], json!(["up"]), "the view names what the job runs");
    let id = job["id"].as_str().expect("id");
    let rm = |force: bool| {
        let mut cmd = reelbox_cli(home.path(), &models);
        cmd.args(["--url", &d.url, "rm", "up"]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().expect("run reelbox rm")
    };
    let out = rm(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(id) && err.contains("--force"), "{err}");
    assert!(models.join("up.toml").exists(), "kept");
    assert!(rm(true).status.success());
    assert!(!models.join("up.toml").exists() && !models.join("up").exists(), "removed with --force");
    // The job then fails at once saying the model is not installed, as a request naming it
    // would be told (it said "fix: `reelbox pull` the model again" of an imported model).
    let resumed = http.post(d.at("/api/v1/queue/resume")).send().await.expect("resume");
    assert!(resumed.status().is_success());
    let job = wait_job(&http, &d, id, Duration::from_secs(30), is_final).await;
    let error = job["error"].as_str().unwrap_or_default();
    assert!(job["state"] == "failed" && error.contains(r#"upscale model "up" is installed"#), "{job}");
    assert_eq!(job["attempts"], 1, "not retried: {job}");
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

#[test]
fn checkpoints_the_converter_refuses_get_one_line_naming_the_file() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_models.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // A prediction type is for Stable Diffusion; an upscaler took it silently.
    let rrdb = ckpt.join("tiny-rrdb-x4.pth");
    let (ok, err) = import(&env, home.path(), &models, &["--prediction", "v"], &rrdb);
    assert!(!ok && err.contains("--prediction applies to Stable Diffusion checkpoints only"), "{err}");
    // A `.ckpt` that is a zip of something else said "[enforce fail at inline_container.cc:179] …".
    let fake = home.path().join("fake.ckpt");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&fake).expect("create"));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("notes.txt", stored).expect("zip entry");
    std::io::Write::write_all(&mut zip, b"notes").expect("zip write");
    zip.finish().expect("zip finish");
    let (ok, err) = import(&env, home.path(), &models, &[], &fake);
    let last = err.lines().last().unwrap_or_default();
    assert!(!ok && last.contains("fake.ckpt: a zip archive, but not a PyTorch checkpoint"), "{err}");
    assert!(installed(&models).is_empty(), "{:?}", installed(&models));
}

#[test]
fn an_import_on_a_disk_that_fills_says_so_in_one_line_and_installs_nothing() {
    let env = convert_pyenv();
    let ckpt = fixture_once(&env, "make_byo_models.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // 16 MiB for a 145 MB Wav2Lip export.
    let Some(_mount) = crate::diskfull::mount_tmpfs(&models) else { return };
    let (ok, err) = import(&env, home.path(), &models, &[], &ckpt.join("wav2lip-random.pth"));
    let last = err.lines().last().unwrap_or_default();
    // It ended with the converter's traceback joined into one line, ENOSPC at its end.
    assert!(!ok && last.starts_with("reelbox: ") && last.contains("the disk filled up while converting"), "{err}");
    assert!(last.contains(&format!("free space in {}", models.display())), "{last}");
    assert!(err.contains("converter: Traceback"), "the traceback goes to the log: {err}");
    assert!(installed(&models).is_empty(), "{:?}", installed(&models));
    assert!(!models.join(".staging/wav2lip-random").exists(), "staging removed");
}

#[test]
fn ctrl_c_during_a_cli_import_stops_it_and_removes_its_staging_folder() {
    let env = convert_pyenv();
    let sd = fixture_once(&env, "make_byo_sd.py").join("tiny-sd-diffusers");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let child = import_cmd(&env, home.path(), &models)
        .args(["--name", "stopped"])
        .arg(&sd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn reelbox");
    let staging = models.join(".staging/stopped");
    let start = Instant::now();
    while std::fs::read_dir(&staging).map_or(true, |mut d| d.next().is_none()) {
        assert!(start.elapsed() < Duration::from_secs(60), "the conversion never wrote");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGINT to reelbox alone, as a terminal's Ctrl-C would also send it to the converter.
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()));
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    // It died at once and left the half-converted model (gigabytes for a real one) behind.
    assert!(!out.status.success() && err.lines().last().unwrap_or_default().ends_with("canceled"), "{err}");
    assert!(!staging.exists(), "staging removed");
    assert!(installed(&models).is_empty(), "{:?}", installed(&models));
}

/// The first import makes the conversion environment (pip, minutes on a fast link): Ctrl-C
/// there said "cannot prepare the conversion environment … ERROR: Operation cancelled by
/// user" where the rest of an import says `canceled`, and left the half-made environment.
#[test]
fn ctrl_c_while_the_conversion_environment_is_made_says_canceled() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let env = home.path().join("pyenv");
    // A package index that takes connections and never answers: pip waits on it.
    let index = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/simple", index.local_addr().expect("address"));
    std::thread::spawn(move || index.incoming().flatten().collect::<Vec<_>>());
    let ckpt = home.path().join("thing.pth");
    std::fs::write(&ckpt, b"\x80\x02 a pickle's opening").expect("write");
    let child = reelbox_cli(home.path(), &models)
        .env("REELBOX_CONVERT_PYENV", &env)
        .env("PIP_INDEX_URL", &url)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .args(["models", "import"])
        .arg(&ckpt)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn reelbox");
    let start = Instant::now();
    while !pip_installing(&env) {
        assert!(start.elapsed() < Duration::from_secs(120), "pip never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // As a terminal's Ctrl-C: to the whole foreground process group, pip included.
    let sent = std::process::Command::new("kill").args(["-INT", "--", &format!("-{}", child.id())]).status();
    assert!(sent.is_ok_and(|s| s.success()));
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.ends_with(": canceled") && !err.contains("Operation cancelled"), "{err}");
    assert_eq!(out.status.code(), Some(1), "the exit status of a canceled import: {err}");
    assert!(!env.exists(), "the half-made environment is removed");
}

/// True while the conversion environment at `env` installs packages (reelbox's pip, not the
/// venv's own ensurepip: its command line has reelbox's `--disable-pip-version-check`).
fn pip_installing(env: &Path) -> bool {
    let python = env.join("bin/python").display().to_string();
    std::fs::read_dir("/proc").expect("/proc").flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| *a == python.as_bytes()) && args.contains(&&b"--disable-pip-version-check"[..])
        })
    })
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
    // `rm` of the name while the job converts again leaves its staging folder alone (it
    // removed it, and the conversion failed).
    let start = Instant::now();
    // (The killed try's folder is still there, marked as an import's: wait for the converter.)
    while converters_of(&models).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "the job did not convert again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rm = run_ok(reelbox_cli(home.path(), &models).args(["models", "rm", "cut"]));
    assert!(String::from_utf8_lossy(&rm.stdout).contains("not installed"), "{rm:?}");
    // A second import of the name meanwhile is refused at submission (it made a job that failed).
    let (s, b) = post_json(&http, &d, "/api/v1/models/import", json!({"path": sd, "name": "cut"})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("name")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or_default().contains("another import or pull of cut is running"));
    let done = wait_job(&http, &d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(!models.join(".staging/cut").exists(), "staging cleaned");
    let verify = run_ok(reelbox_cli(home.path(), &models).args(["models", "verify", "cut"]));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("ok"), "{verify:?}");
}

/// `models import` (CLI) as `kill -9`, a crash or a closed SSH session ends it: the
/// half-converted model stayed in `.staging/NAME` (gigabytes for a real SD) until an import
/// of that very name. The next import of any model removes it and says what it freed; a
/// pull's resumable partial download and a running import's folder stay.
#[test]
fn the_next_import_removes_what_a_killed_import_left_and_keeps_pulls_and_running_imports() {
    let env = convert_pyenv();
    let sd = fixture_once(&env, "make_byo_sd.py").join("tiny-sd-diffusers");
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    let spawn = |name: &str| {
        import_cmd(&env, home.path(), &models)
            .args(["--name", name])
            .arg(&sd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn reelbox")
    };
    let converting = |name: &str| {
        let staging = models.join(".staging").join(name);
        let start = Instant::now();
        while converters_of(&models).is_empty() || std::fs::read_dir(&staging).map_or(true, |d| d.count() < 2) {
            // Generous: a busy machine starts Python and torch slowly; a conversion that writes stops the wait.
            assert!(start.elapsed() < Duration::from_secs(180), "the conversion of {name} never wrote");
            std::thread::sleep(Duration::from_millis(50));
        }
        staging
    };
    let mut crashed = spawn("crashed");
    let left = converting("crashed");
    crashed.kill().expect("kill -9");
    crashed.wait().expect("wait");
    let start = Instant::now();
    while !converters_of(&models).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "the converter outlived reelbox");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(left.exists(), "kill -9 leaves the staging folder, as a crash would");
    // A pull cut off mid-download keeps its partial files for the next pull to resume.
    let partial = models.join(".staging/sd-turbo/unet");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::write(partial.join("model.onnx"), vec![7u8; 4096]).expect("write");
    let voice = |name: &str| import(&env, home.path(), &models, &[], &voice_pair(home.path(), name));
    let (ok, err) = voice("voice");
    assert!(ok, "{err}");
    let said = format!("removed {} left by an import of crashed that did not finish (", left.display());
    assert!(err.contains(&said), "{err}");
    assert!(!left.exists(), "the killed import's folder is gone");
    assert!(partial.join("model.onnx").exists(), "a pull's partial download stays");

    // Another import converting meanwhile: its folder is not stale.
    let running = spawn("running");
    let busy = converting("running");
    let (ok, err) = voice("voice2");
    assert!(ok && !err.contains("removed"), "{err}");
    assert!(busy.exists(), "a running import's folder stays");
    let out = running.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(installed(&models), ["running", "running.toml", "voice", "voice.toml", "voice2", "voice2.toml"]);
    // Nothing of the mark is left in what was installed.
    assert!(!models.join("voice/.reelbox-import").exists() && !models.join("running/.reelbox-import").exists());
}

/// On a packaged box imports go through the service: a daemon that died mid-import (or a
/// CLI import killed beside it) left `.staging/NAME` with the import mark, and the
/// service's imports never removed it. The next `POST /api/v1/models/import` does, and its
/// job's log says what it freed; a pull's partial download and a running import stay.
#[tokio::test]
async fn a_daemon_import_removes_what_a_killed_import_left_and_says_so_in_its_log() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(home.path());
    // What `import_staging` leaves when its process dies: the mark and half the files.
    let staging = |name: &str, marked: bool| {
        let dir = models.join(".staging").join(name);
        std::fs::create_dir_all(dir.join("unet")).expect("mkdir");
        std::fs::write(dir.join("unet/model.onnx"), vec![7u8; 4096]).expect("write");
        if marked {
            std::fs::write(dir.join(".reelbox-import"), "pid 4000000\n").expect("mark");
        }
        dir
    };
    let left = staging("crashed", true);
    let partial = staging("sd-turbo", false);
    // An import running in another process holds its name's lock (a CLI import beside the service).
    let busy = staging("running", true);
    std::fs::create_dir_all(models.join(".locks")).expect("locks");
    let lock = std::fs::File::create(models.join(".locks/running.lock")).expect("lock file");
    fs4::FileExt::lock(&lock).expect("lock");

    let voice = voice_pair(home.path(), "voice");
    let runtime = common::provision::runtime();
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
    ];
    let d = common::daemon::DaemonProc::start(&home.path().join("data"), &env);
    let http = reqwest::Client::new();
    let (s, job) = post_json(&http, &d, "/api/v1/models/import", json!({"path": voice})).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let done = wait_job(&http, &d, id, Duration::from_secs(60), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let log = events.text().await.expect("event text");
    let said = format!("removed {} left by an import of crashed that did not finish (4.1 kB)", left.display());
    assert!(log.contains(&said), "{log}");
    assert!(!left.exists(), "the killed import's folder is gone");
    assert!(partial.join("unet/model.onnx").exists(), "a pull's partial download stays");
    assert!(busy.join("unet/model.onnx").exists(), "a running import's folder stays");
    assert!(!log.contains("import of running") && !log.contains("import of sd-turbo"), "{log}");
    assert_eq!(installed(&models), ["voice", "voice.toml"]);
}
