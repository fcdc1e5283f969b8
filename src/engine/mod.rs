//! ONNX Runtime: finding and loading the shared library, choosing execution providers per
//! device, and a cache of loaded sessions. Pipelines get sessions only from here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;

use crate::config::Config;
use crate::gpu::DeviceId;

mod cache;
mod cancel;
mod error;
mod providers;
mod run;
pub mod runtime;

pub use cache::LoadedSession;
pub use cancel::stoppable;
pub use error::{EngineError, TransformError};
pub use providers::{
    CudaLib, CudaLibOrigin, GpuProvider, cuda_search_dirs, locate_cuda_libraries, parse_optimization, provider_names,
};
pub use run::{Output, Outputs, Want, dims_text, lock, run, run_locked};
pub use runtime::{NotFound, RuntimeInfo};

use cache::{Key, SessionCache};
use error::{InitCause, LoadCause};

/// How long sessions let go by [`Engine::release_when_idle`] stay loaded without a run: a
/// job queued behind the one that made a big picture starts within it and finds them
/// loaded, so only a box left idle loads them again.
pub const RELEASE_IDLE: Duration = Duration::from_secs(10);

/// A loaded model session shared between jobs; `run` needs `&mut`, hence the lock.
pub type SharedSession = Arc<Mutex<Session>>;

/// Rewrites a model's bytes before loading; `Ok(None)` loads the file unchanged.
pub type ModelTransform = dyn Fn(&[u8]) -> Result<Option<Vec<u8>>, TransformError> + Sync;

/// How a session is built: for many runs, or for starting fast.
///
/// ONNX Runtime spends most of a large graph's session creation planning memory reuse
/// between intermediate tensors (measured on the 2 755-node Piper voice: ~75% of creation).
/// Its parallel executor skips that planning, so a `FastStart` session is created several
/// times faster but runs slower (nodes are scheduled on an inter-op pool instead of in
/// order). One-shot work (`reelbox say --local`, a short first request) wins with it; a
/// daemon serving many requests wants `Steady`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionProfile {
    /// Sequential executor with memory reuse: the fastest runs.
    Steady,
    /// Parallel executor without memory-reuse planning: the fastest creation (CPU only;
    /// GPU sessions are always built `Steady`).
    FastStart,
}

/// The inference engine: one ONNX Runtime environment and a session cache.
pub struct Engine {
    config: Config,
    /// The library once found; until then every call looks again, so a `reelbox setup`
    /// run while the daemon is up takes effect without a restart.
    runtime: OnceLock<RuntimeInfo>,
    cache: Mutex<SessionCache<Mutex<Session>>>,
    /// One lock per key being loaded, so two jobs wanting the same model load it once.
    loading: Mutex<HashMap<Key, Arc<Mutex<()>>>>,
    /// Sessions loaded and unloaded so far, for `/metrics`.
    counts: Mutex<BTreeMap<(String, String), LoadCounts>>,
}

/// How often one model was loaded and unloaded on one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    pub loads: u64,
    pub unloads: u64,
}

impl Engine {
    /// Creates the engine; the runtime library is loaded lazily on first use.
    pub fn new(config: &Config) -> Self {
        let budget = match config.runtime.device_budget_mib {
            0 => None,
            mib => Some(mib.saturating_mul(1 << 20)),
        };
        let keep_alive = Duration::from_secs(config.runtime.keep_alive_s);
        Self {
            config: config.clone(),
            runtime: OnceLock::new(),
            cache: Mutex::new(SessionCache::new(budget, keep_alive)),
            loading: Mutex::new(HashMap::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Candidate library paths in search order.
    pub fn runtime_candidates(&self) -> Vec<PathBuf> {
        runtime::candidates(&self.config, crate::config::env::ort_dylib_path()).into_iter().map(|c| c.path).collect()
    }

    /// The runtime library this engine uses (found on first call, then fixed).
    pub fn runtime(&self) -> Result<&RuntimeInfo, EngineError> {
        if let Some(found) = self.runtime.get() {
            return Ok(found);
        }
        let found = runtime::find(&self.config, crate::config::env::ort_dylib_path())?;
        Ok(self.runtime.get_or_init(|| found))
    }

    fn environment(&self) -> Result<&'static Environment, EngineError> {
        let info = self.runtime()?.clone();
        // ONNX Runtime allows one environment per process, and ort keeps the first library it
        // loads; every engine in the process (tests make several) shares both.
        static ENV: OnceLock<Result<(Environment, RuntimeInfo), Arc<InitCause>>> = OnceLock::new();
        let env = ENV.get_or_init(|| {
            let builder = ort::init_from(&info.path).map_err(|e| Arc::new(e.into()))?;
            let built = builder.with_name("reelbox").with_telemetry(false).build().map_err(|e| Arc::new(e.into()))?;
            tracing::info!(path = %info.path.display(), version = %info.version, origin = info.origin.label(), "ONNX Runtime loaded");
            Ok((built, info.clone()))
        });
        match env {
            Ok((env, loaded)) => {
                if loaded.path != info.path {
                    tracing::warn!(wanted = %info.path.display(), loaded = %loaded.path.display(), "ONNX Runtime already loaded from another path in this process");
                }
                Ok(env)
            }
            Err(source) => Err(EngineError::RuntimeLoad { path: info.path, source: source.clone() }),
        }
    }

    /// Returns a cached session for `model_file` on `device`, loading it on first use.
    pub fn session(&self, model_file: &Path, device: DeviceId) -> Result<SharedSession, EngineError> {
        self.session_with(model_file, device, SessionProfile::Steady)
    }

    /// Like [`Engine::session`] with a build profile. A cached `Steady` session also
    /// serves `FastStart` requests: it is already built and runs faster.
    pub fn session_with(
        &self,
        model_file: &Path,
        device: DeviceId,
        profile: SessionProfile,
    ) -> Result<SharedSession, EngineError> {
        self.session_variant(model_file, device, profile, "", &|_| Ok(None))
    }

    /// Like [`Engine::session_with`] for a model rewritten in memory before loading:
    /// `transform` gets the file's bytes and returns new ones (or `None` to load the file
    /// as is); `variant` names the transform in the cache key.
    pub fn session_variant(
        &self,
        model_file: &Path,
        device: DeviceId,
        profile: SessionProfile,
        variant: &'static str,
        transform: &ModelTransform,
    ) -> Result<SharedSession, EngineError> {
        let profile = if device == DeviceId::Cpu { profile } else { SessionProfile::Steady };
        let steady = Key { model: model_file.to_path_buf(), device, profile: SessionProfile::Steady, variant };
        let key = Key { profile, ..steady.clone() };
        if let Some(s) = self.cached(&steady)? {
            return Ok(s);
        }
        if let Some(s) = self.cached(&key)? {
            return Ok(s);
        }
        let key_lock = self.loading.lock().map_err(poisoned)?.entry(key.clone()).or_default().clone();
        let _loading = key_lock.lock().map_err(poisoned)?;
        if let Some(s) = self.cached(&key)? {
            return Ok(s);
        }
        let result = self.load(&key, transform);
        self.loading.lock().map_err(poisoned)?.remove(&key);
        result
    }

    /// True when a `Steady` session for the model is loaded (callers choosing a profile).
    pub fn has_steady(&self, model_file: &Path, device: DeviceId) -> bool {
        let key = Key { model: model_file.to_path_buf(), device, profile: SessionProfile::Steady, variant: "" };
        self.cache.lock().map(|c| c.contains(&key)).unwrap_or(false)
    }

    fn cached(&self, key: &Key) -> Result<Option<SharedSession>, EngineError> {
        let mut cache = self.cache.lock().map_err(poisoned)?;
        let now = Instant::now();
        for gone in cache.expire(now) {
            tracing::info!(model = %gone.model.display(), device = %gone.device, "session unloaded after keep-alive");
            self.count(&gone, |c| c.unloads += 1);
        }
        Ok(cache.get(key, now))
    }

    fn load(&self, key: &Key, transform: &ModelTransform) -> Result<SharedSession, EngineError> {
        let (model_file, device) = (key.model.as_path(), key.device);
        if !model_file.is_file() {
            return Err(EngineError::model_missing(&self.config, model_file));
        }
        let bytes = model_bytes(model_file);
        {
            let mut cache = self.cache.lock().map_err(poisoned)?;
            for gone in cache.make_room(device, bytes) {
                tracing::info!(model = %gone.model.display(), device = %gone.device, "session evicted to fit the device budget");
                self.count(&gone, |c| c.unloads += 1);
            }
            if let Some(budget) = cache.budget()
                && cache.device_bytes(device) + bytes > budget
            {
                tracing::warn!(device = %device, budget, needed = bytes, "device budget exceeded by sessions in use");
            }
        }
        let started = Instant::now();
        let rewritten = if key.variant.is_empty() {
            None
        } else {
            let load_err = |source: LoadCause| EngineError::model_load(&self.config, model_file, source);
            let bytes = std::fs::read(model_file).map_err(|e| load_err(e.into()))?;
            transform(&bytes).map_err(|source| load_err(LoadCause::Transform { variant: key.variant, source }))?
        };
        let session = self.build_session(model_file, rewritten.as_deref(), device, key.profile)?;
        let load_ms = started.elapsed().as_millis() as u64;
        tracing::info!(model = %model_file.display(), device = %device, profile = ?key.profile, load_ms, "session loaded");
        let shared = Arc::new(Mutex::new(session));
        self.cache.lock().map_err(poisoned)?.insert(key.clone(), shared.clone(), bytes, load_ms, Instant::now());
        self.count(key, |c| c.loads += 1);
        Ok(shared)
    }

    /// Builds a `Steady` session without caching it (benchmarks, one-off tools).
    pub fn create_session(&self, model_file: &Path, device: DeviceId) -> Result<Session, EngineError> {
        self.create_session_with(model_file, device, SessionProfile::Steady)
    }

    /// Builds a session of `profile` without caching it.
    pub fn create_session_with(
        &self,
        model_file: &Path,
        device: DeviceId,
        profile: SessionProfile,
    ) -> Result<Session, EngineError> {
        self.build_session(model_file, None, device, profile)
    }

    /// Builds a session from the file, or from `bytes` (the file rewritten) when given.
    fn build_session(
        &self,
        model_file: &Path,
        bytes: Option<&[u8]>,
        device: DeviceId,
        profile: SessionProfile,
    ) -> Result<Session, EngineError> {
        if !model_file.is_file() {
            return Err(EngineError::model_missing(&self.config, model_file));
        }
        let env = self.environment()?;
        let load_err = |e: ort::Error| EngineError::model_load(&self.config, model_file, e.into());
        let level = parse_optimization(&self.config.runtime.optimization)
            .ok_or_else(|| EngineError::BadOptimization { value: self.config.runtime.optimization.clone() })?;
        let mut builder = Session::builder(env).map_err(load_err)?;
        builder = builder.with_optimization_level(level).map_err(|e| load_err(e.into()))?;
        let threads = self.config.runtime.intra_threads;
        match profile {
            SessionProfile::Steady => {
                if threads > 0 {
                    builder = builder.with_intra_threads(threads).map_err(|e| load_err(e.into()))?;
                }
            }
            SessionProfile::FastStart => {
                // ORT falls back to sequential (and its slow planning) with one inter-op
                // thread, so the pool gets at least two; kernels keep the configured count.
                let inter = if threads > 0 { threads.max(2) } else { 0 };
                builder = builder.with_parallel_execution(true).map_err(|e| load_err(e.into()))?;
                if inter > 0 {
                    builder = builder.with_inter_threads(inter).map_err(|e| load_err(e.into()))?;
                }
                if threads > 0 {
                    builder = builder.with_intra_threads(threads).map_err(|e| load_err(e.into()))?;
                }
                builder = builder.with_inter_op_spinning(self.config.runtime.spin).map_err(|e| load_err(e.into()))?;
            }
        }
        builder = builder.with_intra_op_spinning(self.config.runtime.spin).map_err(|e| load_err(e.into()))?;
        if let DeviceId::Cuda(index) = device {
            providers::preload_cuda_libraries(&runtime::runtime_dir(&self.config), &self.config.runtime.cuda_lib_dirs);
            if providers::parse_conv_search(&self.config.runtime.cudnn_conv_algo_search).is_none() {
                return Err(EngineError::BadConvSearch { value: self.config.runtime.cudnn_conv_algo_search.clone() });
            }
            let eps = providers::for_device(device, &self.config.runtime);
            builder = builder.with_execution_providers(eps).map_err(|e| EngineError::ProviderUnavailable {
                device: format!("cuda:{index}"),
                provider: GpuProvider::Cuda,
                source: e.into(),
            })?;
        }
        match bytes {
            Some(b) => builder.commit_from_memory(b).map_err(load_err),
            None => builder.commit_from_file(model_file).map_err(load_err),
        }
    }

    /// Registers `provider` on GPU `index` the way a session on that device would (CUDA
    /// libraries preloaded first), without loading a model: `Ok` means sessions there will
    /// get it; the error says why not (a missing CUDA or cuDNN library, no such device).
    pub fn probe_provider(&self, provider: GpuProvider, index: u32) -> Result<(), EngineError> {
        let env = self.environment()?;
        providers::preload_cuda_libraries(&runtime::runtime_dir(&self.config), &self.config.runtime.cuda_lib_dirs);
        let unavailable = |source: ort::Error| EngineError::ProviderUnavailable {
            device: DeviceId::Cuda(index).name(),
            provider,
            source,
        };
        let builder = Session::builder(env).map_err(unavailable)?;
        builder.with_execution_providers([provider.dispatch(index)]).map_err(|e| unavailable(e.into()))?;
        Ok(())
    }

    /// Whether the loaded runtime was built with CUDA support (false if none is loaded).
    pub fn cuda_available(&self) -> bool {
        self.environment().is_ok() && providers::cuda_compiled_in()
    }

    /// Snapshot of the loaded sessions, most recently used first, for `GET /api/v1/system`.
    pub fn loaded_sessions(&self) -> Vec<LoadedSession> {
        match self.cache.lock() {
            Ok(mut cache) => cache.snapshot(Instant::now()),
            Err(_) => Vec::new(),
        }
    }

    /// Unloads every session no job is using now, without waiting for the keep-alive
    /// (asked for by a client, ComfyUI's `/free`); returns how many went.
    pub fn unload_unused(&self) -> usize {
        match self.cache.lock() {
            Ok(mut cache) => {
                let gone = cache.drop_unused();
                for g in &gone {
                    tracing::info!(model = %g.model.display(), device = %g.device, "session unloaded on request");
                    self.count(g, |c| c.unloads += 1);
                }
                gone.len()
            }
            Err(_) => 0,
        }
    }

    /// Unloads sessions idle past the keep-alive; returns how many went.
    pub fn unload_idle(&self) -> usize {
        match self.cache.lock() {
            Ok(mut cache) => {
                let gone = cache.expire(Instant::now());
                for g in &gone {
                    tracing::info!(model = %g.model.display(), device = %g.device, "session unloaded after keep-alive");
                    self.count(g, |c| c.unloads += 1);
                }
                gone.len()
            }
            Err(_) => 0,
        }
    }

    /// Lets the sessions of the model in `dir` on `device` go after [`RELEASE_IDLE`] without
    /// a run instead of the keep-alive, until they are loaded again. ONNX Runtime's CPU arena
    /// keeps the most memory a session's run took for as long as the session lives (its
    /// `memory.enable_memory_arena_shrinkage` run option, or running without the arena,
    /// gives it back after every run: a picture then took 1.5–3× as long, measured on the
    /// demo and tiny SD models), so a big picture's memory goes back to the system only
    /// with its sessions, once the box idles.
    pub fn release_when_idle(&self, dir: &Path, device: DeviceId) {
        if let Ok(mut cache) = self.cache.lock() {
            let n = cache.shorten(dir, device, RELEASE_IDLE);
            tracing::debug!(model = %dir.display(), device = %device, sessions = n, "sessions go when idle");
        }
    }

    /// Drops any cached session of `model_file` (after `reelbox rm` or a re-pull).
    pub fn forget_model(&self, model_file: &Path) {
        if let Ok(mut cache) = self.cache.lock() {
            for gone in cache.remove_model(model_file) {
                self.count(&gone, |c| c.unloads += 1);
            }
        }
    }

    /// Loads and unloads so far by (model, device); the model is named by its path under
    /// the models directory.
    pub fn load_counts(&self) -> BTreeMap<(String, String), LoadCounts> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn count(&self, key: &Key, f: impl FnOnce(&mut LoadCounts)) {
        let models = self.config.models_dir();
        let model = key.model.strip_prefix(&models).unwrap_or(&key.model).display().to_string();
        if let Ok(mut counts) = self.counts.lock() {
            f(counts.entry((model, key.device.to_string())).or_default());
        }
    }

    /// Starts a thread that unloads idle sessions; it stops when the guard or the engine goes.
    pub fn spawn_reaper(self: &Arc<Self>) -> ReaperGuard {
        let engine: Weak<Engine> = Arc::downgrade(self);
        // Tick often enough that a session outlives its keep-alive (or the shorter
        // RELEASE_IDLE) by at most a quarter.
        let shortest = self.config.runtime.keep_alive_s.min(RELEASE_IDLE.as_secs());
        let tick = Duration::from_secs((shortest / 4).clamp(1, 30));
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new().name("reelbox-session-reaper".into()).spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(tick) {
                let Some(engine) = engine.upgrade() else { break };
                engine.unload_idle();
            }
        });
        ReaperGuard { stop: Some(stop_tx), handle: handle.ok() }
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Stops the keep-alive reaper thread when dropped.
pub struct ReaperGuard {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ReaperGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Estimated memory a session holds: the model file plus external weight files beside it
/// (`model.onnx_data`, `model.onnx.data`, ...), which ONNX Runtime reads in full.
pub fn model_bytes(model_file: &Path) -> u64 {
    let own = std::fs::metadata(model_file).map(|m| m.len()).unwrap_or(0);
    let (Some(dir), Some(name)) = (model_file.parent(), model_file.file_name().and_then(|n| n.to_str())) else {
        return own;
    };
    let stem = name.trim_end_matches(".onnx");
    let external: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n != name
                        && n.starts_with(stem)
                        && (n.ends_with("_data") || n.ends_with(".data") || n.ends_with(".pb"))
                })
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0);
    own + external
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> EngineError {
    EngineError::Poisoned { what: "session cache".into() }
}
