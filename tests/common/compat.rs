//! What the compatibility-API tests share: a models directory with the tiny SD model and
//! the real joe voice, a daemon over it, and a Python with the clients that drive it (the
//! official `openai` package; `websocket-client`, which Open WebUI drives ComfyUI with;
//! `webuiapi`, A1111's Python client).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::daemon::DaemonProc;
use super::provision;

/// Name the tiny SD fixture is installed under.
pub const TINY_SD: &str = "tiny-sd";

fn link(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at)
        .unwrap_or_else(|e| panic!("cannot link {} → {}: {e}", at.display(), target.display()));
}

/// A fresh models dir holding `tiny-sd` and, when `voice`, the joe voice (symlinked).
pub fn models_dir(voice: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("models tempdir");
    link(&super::fixture("models/tiny-sd"), &dir.path().join(TINY_SD));
    if voice {
        let joe = provision::joe_voice();
        let joe_dir = joe.parent().expect("voice dir");
        link(joe_dir, &dir.path().join(provision::JOE));
    }
    dir
}

/// Starts the daemon on `data_dir` with `models` and the provisioned ONNX Runtime.
pub fn start_daemon(data_dir: &Path, models: &Path) -> DaemonProc {
    start_daemon_with(data_dir, models, &[])
}

/// As [`start_daemon`], with more environment.
pub fn start_daemon_with(data_dir: &Path, models: &Path, env: &[(&str, &str)]) -> DaemonProc {
    start_daemon_at(data_dir, models, "127.0.0.1:0", env)
}

/// As [`start_daemon_with`] on `bind` (a restart on the same port keeps a page's address).
pub fn start_daemon_at(data_dir: &Path, models: &Path, bind: &str, env: &[(&str, &str)]) -> DaemonProc {
    let runtime = provision::runtime();
    let runtime = runtime.to_string_lossy().into_owned();
    let models = models.to_string_lossy().into_owned();
    let mut all = vec![("REELBOX_MODELS_DIR", models.as_str()), ("REELBOX_ONNXRUNTIME", runtime.as_str())];
    all.extend_from_slice(env);
    DaemonProc::start_on(data_dir, bind, &all)
}

/// What the client scripts need from the Python package index, pinned: a new SDK release
/// must not change what CI checks unannounced (raise the pin on purpose, and rerun).
const CLIENT_PACKAGES: [&str; 3] = ["openai==3.63.0", "websocket-client==1.9.2", "webuiapi==0.9.17"];

fn imports_clients(python: &Path, pythonpath: Option<&Path>) -> bool {
    // An older environment (the unpinned SDK of earlier runs) is installed over.
    let openai = CLIENT_PACKAGES[0].trim_start_matches("openai==");
    let check = format!("import sys, openai, websocket, webuiapi; sys.exit(openai.__version__ != {openai:?})");
    super::pyenv::runs(python, pythonpath, &check)
}

/// A Python interpreter (and `PYTHONPATH`) that imports the official `openai` package,
/// `websocket-client` and `webuiapi`: `$REELBOX_TEST_PYTHON` when set, else one installed
/// under `target/` on first use ([`super::pyenv::installed`]).
pub fn client_python() -> (PathBuf, Option<PathBuf>) {
    static PYTHON: OnceLock<(PathBuf, Option<PathBuf>)> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("REELBOX_TEST_PYTHON").filter(|p| !p.is_empty()) {
                let p = PathBuf::from(p);
                assert!(
                    imports_clients(&p, None),
                    "REELBOX_TEST_PYTHON={} cannot import openai, websocket (websocket-client) and webuiapi",
                    p.display()
                );
                return (p, None);
            }
            super::pyenv::installed("openai-client", &CLIENT_PACKAGES, imports_clients)
        })
        .clone()
}

/// `ffprobe`'s format name and duration of a media file.
pub fn ffprobe(path: &Path) -> (String, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=format_name,duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs (apt install ffmpeg)");
    assert!(out.status.success(), "ffprobe rejects {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let name = v["format"]["format_name"].as_str().unwrap_or_default().to_string();
    let duration = v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    (name, duration)
}

/// Runs a script of `tests/clients/` with the client Python and `args`; its stdout as JSON
/// (panics with its output when it fails).
pub async fn run_client(script: &str, args: Vec<String>) -> serde_json::Value {
    let (python, pythonpath) = client_python();
    let mut cmd = Command::new(&python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script)).args(&args);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let run = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run the client");
    assert!(
        run.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("the client's summary is JSON")
}
