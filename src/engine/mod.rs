//! ONNX Runtime: finding and loading the shared library, choosing execution providers per
//! device, and a cache of loaded sessions. Pipelines get sessions only from here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;

use crate::config::Config;
use crate::gpu::DeviceId;

/// A loaded model session shared between jobs; `run` needs `&mut`, hence the lock.
pub type SharedSession = Arc<Mutex<Session>>;

/// Errors from loading the runtime or a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("ONNX Runtime library not found; searched: {searched}. Fix: run `reelbox setup`, or set ORT_DYLIB_PATH / runtime.onnxruntime to libonnxruntime.so")]
    RuntimeNotFound { searched: String },
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    RuntimeLoad { path: PathBuf, reason: String },
    #[error("model file {path} is missing")]
    ModelMissing { path: PathBuf },
    #[error("cannot load model {path}: {reason}")]
    ModelLoad { path: PathBuf, reason: String },
    #[error("inference failed in {model}: {reason}")]
    Run { model: String, reason: String },
}

/// The inference engine: one ONNX Runtime environment and a session cache.
pub struct Engine {
    config: Config,
    env: OnceLock<Result<Environment, String>>,
    sessions: Mutex<HashMap<(PathBuf, DeviceId), SharedSession>>,
}

impl Engine {
    /// Creates the engine; the runtime library is loaded lazily on first use.
    pub fn new(config: &Config) -> Self {
        Self { config: config.clone(), env: OnceLock::new(), sessions: Mutex::new(HashMap::new()) }
    }

    /// Candidate library paths in search order.
    pub fn runtime_candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(p) = &self.config.runtime.onnxruntime {
            out.push(p.clone());
        }
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
            out.push(PathBuf::from(p));
        }
        out.push(self.config.data_dir.join("runtime/libonnxruntime.so"));
        for dir in ["/usr/lib", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"] {
            out.push(Path::new(dir).join("libonnxruntime.so"));
        }
        out
    }

    fn environment(&self) -> Result<&Environment, EngineError> {
        let env = self.env.get_or_init(|| {
            let candidates = self.runtime_candidates();
            let Some(path) = candidates.iter().find(|p| p.is_file()) else {
                let searched =
                    candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
                return Err(format!("not-found:{searched}"));
            };
            ort::init_from(path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|b| b.build().map_err(|e| format!("{}: {e}", path.display())))
        });
        env.as_ref().map_err(|e| match e.strip_prefix("not-found:") {
            Some(searched) => EngineError::RuntimeNotFound { searched: searched.to_string() },
            None => EngineError::RuntimeLoad { path: PathBuf::new(), reason: e.clone() },
        })
    }

    /// Returns a cached session for `model_file` on `device`, loading it on first use.
    pub fn session(&self, model_file: &Path, device: DeviceId) -> Result<SharedSession, EngineError> {
        let key = (model_file.to_path_buf(), device);
        if let Some(s) = self.sessions.lock().map_err(poisoned)?.get(&key) {
            return Ok(s.clone());
        }
        if !model_file.is_file() {
            return Err(EngineError::ModelMissing { path: model_file.to_path_buf() });
        }
        let env = self.environment()?;
        let load_err =
            |e: ort::Error| EngineError::ModelLoad { path: model_file.to_path_buf(), reason: e.to_string() };
        let mut builder = Session::builder(env).map_err(load_err)?;
        if self.config.runtime.intra_threads > 0 {
            builder = builder.with_intra_threads(self.config.runtime.intra_threads).map_err(|e| load_err(e.into()))?;
        }
        let session = builder.commit_from_file(model_file).map_err(load_err)?;
        let shared = Arc::new(Mutex::new(session));
        self.sessions.lock().map_err(poisoned)?.insert(key, shared.clone());
        Ok(shared)
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> EngineError {
    EngineError::Run { model: "session cache".into(), reason: "a previous run panicked".into() }
}
