//! `reelbox setup` and `reelbox doctor` as library calls, on the provisioned data dir.

use crate::common;

use common::provision;
use reelbox::config::Config;
use reelbox::setup::{CheckStatus, GpuChoice, ModelOutcome, PieceOutcome, SetupOptions, doctor, render_checks, setup};

fn opts() -> SetupOptions {
    SetupOptions {
        gpu: GpuChoice::Cpu,
        install_system: false,
        models: Some(vec![provision::JOE.to_string()]),
        skip_models: false,
        force: false,
        quiet: true,
        make_defaults: false,
        wheels: Default::default(),
    }
}

fn provisioned_config() -> Config {
    let mut c = Config { data_dir: provision::root(), models_dir: Some(provision::models_dir()), ..Config::default() };
    c.runtime.onnxruntime = None;
    c
}

#[test]
fn setup_run_twice_does_nothing_the_second_time() {
    provision::joe_voice();
    let config = provisioned_config();
    let run = || {
        provision::locked(|| {
            let config = config.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(async move { setup(&config, &opts()).await })
            })
            .join()
            .expect("setup thread")
        })
    };
    let first = run().expect("setup succeeds");
    assert!(first.runtime.library.starts_with(provision::root()), "{}", first.runtime.library.display());
    let second = run().expect("setup succeeds again");
    assert!(second.runtime.already_installed, "runtime reinstalled");
    // The pinned espeak-ng 1.52 is installed once, like the runtime.
    assert!(
        matches!(&second.espeak, reelbox::setup::EspeakOutcome::Installed(e) if e.already_installed),
        "{:?}",
        second.espeak
    );
    assert!(second.runtime.version.starts_with("1.31"), "{}", second.runtime.version);
    match &second.models[..] {
        [ModelOutcome::Pulled(r)] => assert!(r.already_installed, "voice pulled again"),
        other => panic!("unexpected model outcome {other:?}"),
    }
    for (piece, outcome) in &second.system {
        assert!(matches!(outcome, PieceOutcome::Present { .. }), "{piece:?}: {outcome:?}");
    }
    assert!(second.complete());
}

#[test]
fn doctor_reports_each_piece_found_with_its_path_or_version() {
    provision::joe_voice();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = provision::test_config(tmp.path());
    let checks = doctor(&config);
    let get = |name: &str| checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"));
    let ort = get("onnxruntime");
    assert_eq!(ort.status, CheckStatus::Ok, "{ort:?}");
    assert!(ort.detail.contains(&provision::runtime().display().to_string()), "{}", ort.detail);
    // Found: ok when it is Piper's 1.52, a warning naming the system's other version (tts.rs).
    assert_ne!(get("espeak-ng").status, CheckStatus::Missing, "fix: apt-get install libespeak-ng1 espeak-ng-data");
    assert!(get("espeak-ng").detail.contains("espeak-ng 1."));
    assert_eq!(get("ffmpeg").status, CheckStatus::Ok, "fix: apt-get install ffmpeg");
    let joe = get("model en_US-joe-medium");
    assert_eq!(joe.status, CheckStatus::Ok, "{joe:?}");
    assert_eq!(get("data-dir").status, CheckStatus::Ok);
    eprintln!("{}", render_checks(&checks));
}

/// The packaged service's data dir belongs to its `reelbox` user; an admin's `sudo reelbox
/// keys create --offline` or `sudo reelbox pull` must leave nothing there the service cannot
/// write (a root-made database stopped the service starting: "Permission denied").
#[test]
fn root_cli_runs_hand_what_they_write_to_the_data_dirs_owner() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        eprintln!("skipped: needs root (chown)");
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    // A system uid with no name stands in for the `reelbox` system user.
    let (uid, gid) = (990, 990);
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown");
    // A link the service user could plant: root's hand-back must not follow it.
    let outside = home.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    std::fs::write(outside.join("root-file"), "x").expect("root file");
    std::os::unix::fs::symlink(&outside, data.join("planted")).expect("symlink");
    let run = |args: &[&str]| {
        let mut cmd = common::tools::reelbox_cli(home.path(), &data.join("models"));
        cmd.env("REELBOX_DATA_DIR", &data).args(args);
        common::tools::run_ok(&mut cmd)
    };
    run(&["keys", "create", "--offline", "--name", "admin", "--scope", "admin"]);
    run(&["pull", "demo-shapes"]);

    let mut root_owned = Vec::new();
    let mut seen = 0;
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            seen += 1;
            if (meta.uid(), meta.gid()) != (uid, gid) {
                root_owned.push(path.clone());
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(data.join("reelbox.redb").is_file() && data.join("models/demo-shapes").is_dir());
    assert!(seen > 5, "the commands wrote {seen} entries");
    assert!(root_owned.is_empty(), "left for root, not the dir's owner: {root_owned:?}");
    let outside_owner = std::fs::metadata(outside.join("root-file")).expect("outside file").uid();
    assert_eq!(outside_owner, 0, "the hand-back followed a link out of the data dir");

    // A daemon cannot hand back files while it writes them: `sudo reelbox serve` there is
    // refused, naming the service to start instead.
    let mut serve = common::tools::reelbox_cli(home.path(), &data.join("models"));
    let out = serve.env("REELBOX_DATA_DIR", &data).args(["serve", "--bind", "127.0.0.1:0"]).output().expect("serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("sudo systemctl start reelbox"), "{stderr}");
    // A login user's dir (a container running as root on a volume the host's user owns) is
    // a deliberate setup: a warning, not a refusal.
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).expect("chown");
    let config = reelbox::config::Config { data_dir: data.clone(), ..Default::default() };
    assert!(reelbox::setup::owner::check_not_root_over(&config, "serve").is_ok());
}

/// A daemon started with its own `--data-dir` (or one on another box) keeps its models
/// there: `reelbox pull` from a login whose models dir is another one has the daemon pull,
/// so the model is where its renders look (installed beside the login instead, the daemon's
/// "no diffusion model is installed; `reelbox pull …`" sent the user round in a loop), and
/// `reelbox models list` shows the daemon's models, and `reelbox rm` removes from its dir.
/// A login sharing the daemon's dir still pulls itself.
#[test]
fn a_pull_beside_a_daemon_with_another_models_dir_installs_where_the_daemon_looks() {
    let home = tempfile::tempdir().expect("tempdir");
    let (data, login) = (home.path().join("films"), home.path().join("login"));
    let daemon_models = data.join("models");
    let daemon_env = daemon_models.to_str().expect("utf-8 path");
    let daemon = common::daemon::DaemonProc::start(&data, &[("REELBOX_MODELS_DIR", daemon_env)]);
    let run = |models: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
            .args(["--url", &daemon.url])
            .args(args)
            .env_remove("REELBOX_CONFIG")
            .env_remove("REELBOX_KEY")
            .env("HOME", &login)
            .env("XDG_CONFIG_HOME", login.join("config"))
            .env("REELBOX_DATA_DIR", login.join("data"))
            .env("REELBOX_MODELS_DIR", models)
            .env("REELBOX_LOG", "warn")
            .output()
            .expect("run reelbox");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let login_models = login.join("models");
    let (ok, stdout, stderr) = run(&login_models, &["pull", "demo-shapes"]);
    assert!(ok, "the pull failed:\n{stdout}\n{stderr}");
    let said = format!("another dir than this login's; the daemon at {} pulls demo-shapes", daemon.url);
    assert!(stderr.contains(&said), "{stderr}");
    assert!(daemon_models.join("demo-shapes.toml").is_file(), "installed in the daemon's models dir");
    assert!(!login_models.join("demo-shapes.toml").exists(), "not in the login's");
    let (ok, stdout, stderr) = run(&login_models, &["models", "list"]);
    assert!(ok, "{stderr}");
    let row = stdout.lines().find(|l| l.starts_with("demo-shapes ")).unwrap_or_default();
    assert!(row.contains(" installed "), "the daemon's state, not the login's: {stdout}");
    assert!(stderr.contains(&format!("(the daemon's at {};", daemon.url)), "{stderr}");
    // And removes from the daemon's dir what the daemon has.
    let (ok, stdout, stderr) = run(&login_models, &["rm", "demo-shapes"]);
    assert!(ok && stdout.contains("removed demo-shapes"), "{stdout}\n{stderr}");
    assert!(!daemon_models.join("demo-shapes").exists(), "removed from the daemon's models dir");
    let (ok, stdout, _) = run(&login_models, &["rm", "demo-shapes"]);
    assert!(ok && stdout.contains("demo-shapes was not installed"), "{stdout}");
    // Sharing the daemon's dir, the login pulls itself, as before.
    let (ok, stdout, stderr) = run(&daemon_models, &["pull", "demo-upscaler"]);
    assert!(ok && !stderr.contains("the daemon at"), "{stdout}\n{stderr}");
    assert!(daemon_models.join("demo-upscaler.toml").is_file(), "{stdout}");
}

/// On the packaged box the models dir is the service's: a login user's `reelbox pull` is
/// done by the daemon that owns it (a `model_pull` job, with its progress), not refused
/// with "use sudo"; its refusals say what the user can do (the licence flag, an admin key).
#[test]
fn a_user_who_cannot_write_the_models_dir_pulls_through_the_daemon() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        eprintln!("skipped: needs root (another user's dir, setpriv)");
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (data, models) = (home.path().join("data"), home.path().join("data/models"));
    std::fs::create_dir_all(&models).expect("models dir");
    // Another login user's dir (a system user's would make the root daemon here refuse it).
    for dir in [&data, &models] {
        std::os::unix::fs::chown(dir, Some(1990), Some(1990)).expect("chown");
    }
    let models_env = models.to_str().expect("utf-8 path");
    let daemon = common::daemon::DaemonProc::start(&data, &[("REELBOX_MODELS_DIR", models_env)]);
    // The user's own things, and a copy of the binary the user may run wherever the
    // checkout is.
    let user_home = home.path().join("user");
    std::fs::create_dir(&user_home).expect("user home");
    std::fs::set_permissions(&user_home, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let bin = home.path().join("reelbox");
    std::fs::copy(env!("CARGO_BIN_EXE_reelbox"), &bin).expect("copy the binary");
    let user_pull = |name: &str, key: Option<&str>| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["--url", &daemon.url, "pull", name])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &user_home)
            .env("XDG_CONFIG_HOME", user_home.join("config"))
            .env("XDG_CACHE_HOME", user_home.join("cache"))
            .env("REELBOX_DATA_DIR", &data)
            .env("REELBOX_MODELS_DIR", &models)
            .env("REELBOX_LOG", "warn");
        if let Some(k) = key {
            cmd.env("REELBOX_KEY", k);
        }
        let out = cmd.output().expect("run setpriv");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = user_pull("demo-shapes", None);
    assert!(ok, "the user's pull failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("the daemon at {} pulls demo-shapes", daemon.url)), "{stderr}");
    assert!(stdout.contains("demo-shapes installed at"), "{stdout}");
    assert!(models.join("demo-shapes.toml").is_file() && models.join("demo-shapes").is_dir(), "installed");
    // A non-commercial licence is accepted with the flag the user types.
    let (ok, _, stderr) = user_pull("wav2lip", None);
    assert!(!ok && stderr.contains("then pull with `--accept-license`"), "{stderr}");
    // A box with keys takes pulls from an admin key only; the user is told how else.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_, admin) =
        rt.block_on(common::api::create_key(&daemon, None, serde_json::json!({"name": "admin", "scope": "admin"})));
    let (_, own) = rt.block_on(common::api::create_key(&daemon, Some(&admin), serde_json::json!({"name": "me"})));
    for key in [None, Some(own.as_str())] {
        let (ok, _, stderr) = user_pull("demo-upscaler", key);
        assert!(!ok && stderr.contains("pull with an admin key (REELBOX_KEY), or as root"), "{key:?}: {stderr}");
    }
}
