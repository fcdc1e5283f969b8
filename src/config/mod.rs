//! One `Config` for the whole daemon: a TOML file, `REELBOX_*` environment overrides and
//! working defaults. `assets/config.example.toml` lists every key; keep them in step.
//! [`env`](mod@env) is where the process environment is read: overrides and every other variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod cluster;
pub mod defaults;
pub mod env;
pub mod exposure;
pub mod openai;
pub mod retention;

pub use cluster::{ClusterConfig, ClusterRole};
pub use defaults::DefaultsConfig;
pub use openai::OpenAiConfig;
pub use retention::RetentionConfig;

/// Errors met while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("environment variable {var}={value:?} is not valid: {reason}")]
    Env { var: String, value: String, reason: String },
}

/// The effective configuration of a reelbox daemon or CLI invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Where the redb database, artifacts and the ONNX Runtime live.
    pub data_dir: PathBuf,
    /// Where models are installed; defaults to `<data_dir>/models`.
    pub models_dir: Option<PathBuf>,
    /// Which model a request that names none gets.
    pub defaults: DefaultsConfig,
    pub queue: QueueConfig,
    pub store: StoreConfig,
    pub workers: WorkersConfig,
    pub limits: LimitsConfig,
    pub runtime: RuntimeConfig,
    pub energy: EnergyConfig,
    /// Names the OpenAI-compatible API maps onto installed voices and models.
    pub openai: OpenAiConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    /// Which names and web pages may reach the API (DNS-rebinding and CSRF defence).
    pub server: ServerConfig,
    /// How long finished jobs and unused uploads are kept (default: forever).
    pub retention: RetentionConfig,
    /// Worker boxes through NATS JetStream; absent, this box works alone.
    pub cluster: Option<ClusterConfig>,
    /// The file this was read from, if any ([`exposure`] looks at who can read it).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// Host and Origin checks. A browser lets any web page send requests to the box, so
/// requests naming an unknown host, or sent by a page of another origin, are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Host names accepted besides IP addresses, `localhost`, this box's hostname and the
    /// LAN suffixes `.local`, `.lan`, `.internal`, `.home.arpa`; `*.example.com` matches
    /// subdomains, `*` any name (turns the check off).
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://studio.example.com`) whose pages may call the API besides the
    /// daemon's own; `*` allows every page (turns the check off).
    pub allowed_origins: Vec<String>,
}

/// Queue limits and retry policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Above this many queued jobs, submissions get 429 with `Retry-After`.
    pub max_queued: u64,
    /// Attempts per job before a retriable failure becomes final; a run the daemon died
    /// during (found running at start) counts as one.
    pub max_attempts: u32,
    /// First retry delay in seconds; doubles with each attempt.
    pub retry_backoff_s: u64,
}

/// redb tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Share one write transaction among concurrent submissions (group commit).
    /// Off makes every write its own transaction (only useful as a benchmark baseline).
    pub group_commit: bool,
    /// Most operations folded into one write transaction.
    pub max_batch: usize,
}

/// Worker pools per device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Jobs the CPU worker runs at once.
    pub cpu_concurrency: usize,
    /// Jobs each GPU worker runs at once.
    pub gpu_concurrency: usize,
    /// GPU indices reelbox may use (`CUDA_VISIBLE_DEVICES` style); empty means all.
    pub gpus: Vec<u32>,
    /// Run on NVIDIA GPUs at all; `false` keeps every job on the CPU even when GPUs and a
    /// CUDA runtime are present (a box whose card is for games, or a CPU baseline).
    pub use_gpus: bool,
}

/// Request size limits enforced at the API edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest JSON request body, bytes.
    pub max_body_bytes: usize,
    /// Largest uploaded file (portrait, voice sample, image), bytes.
    pub max_upload_bytes: usize,
    /// Longest prompt or script, characters.
    pub max_prompt_chars: usize,
    /// Largest side of a picture made or upscaled, pixels.
    pub max_image_side: u32,
    /// Memory jobs on the CPU may use together, MiB; 0 (the default) is the box's total
    /// less room for the system (`kinds::memory::cpu_budget_mib`). On a box whose pictures
    /// are made on the CPU, one picture that needs more is refused at submission, and a job
    /// waits in the queue while the CPU jobs already running hold the rest.
    pub cpu_memory_mib: u64,
    /// Largest side of a picture sent in (a portrait, a start picture, an upload), pixels:
    /// phone photos are 4032–8064 px, and each use scales them to what it needs (a
    /// portrait to the film, a start picture to the requested size).
    pub max_upload_side: u32,
    /// Most diffusion steps per image.
    pub max_steps: u32,
    /// Longest audio input or narration, seconds.
    pub max_audio_seconds: f64,
    /// Most video frames per job.
    pub max_frames: u32,
    /// Sustained requests per second per API key (token bucket refill); 0 disables.
    pub requests_per_second: f64,
    /// Requests a key may send in a burst above the sustained rate.
    pub request_burst: u32,
    /// Concurrent event streams (SSE, WebSocket) across all callers.
    pub max_streams: usize,
    /// Concurrent event streams per caller.
    pub max_streams_per_key: usize,
    /// Most scenes (paragraphs) in a render's script; each is a keyframe.
    pub max_scenes: u32,
    /// Highest priority a client (non-admin) key may give a job; admins go to 1000.
    pub max_client_priority: i32,
    /// Longest a client's job may say it runs (a testcard's steps × step_ms), seconds.
    pub max_job_seconds: u64,
    /// Jobs a client key may have queued or running when its own quota sets none.
    pub client_max_queued: u64,
    /// Bytes left free on the data dir's and the models dir's disks: jobs, uploads and
    /// model pulls that would go below are refused (HTTP 507) instead of failing half-way
    /// with a full disk; 0 turns the check off.
    pub min_free_disk_bytes: u64,
}

/// Who may call the API. See `assets/config.example.toml` for the modes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `keys` (API keys; open on loopback while none exist) or `trusted-proxy`.
    pub mode: AuthMode,
    /// Header carrying the signed-in user in `trusted-proxy` mode.
    pub user_header: String,
    /// Peer addresses (IPs or CIDR blocks) allowed to set `user_header`.
    pub trusted_proxies: Vec<String>,
    /// Proxy users that are admins.
    pub admin_users: Vec<String>,
    /// Most queued jobs per proxy user (keys carry their own quotas).
    pub proxy_user_max_queued: Option<u64>,
    /// GPU-seconds per UTC day per proxy user.
    pub proxy_user_gpu_seconds_per_day: Option<u64>,
    /// Most bytes of artifacts per proxy user.
    pub proxy_user_max_storage_bytes: Option<u64>,
    /// Serve `/metrics` without a key (for a scraper on the LAN).
    pub public_metrics: bool,
}

/// How callers are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// `Authorization: Bearer` API keys.
    Keys,
    /// A reverse proxy authenticates and names the user in a header; keys still work.
    TrustedProxy,
}

/// Optional HTTPS without a reverse proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`, the API is served over HTTPS.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The scheme the API is served with: `https` with a certificate and its key (the
    /// daemon refuses to start with one alone).
    pub fn scheme(&self) -> &'static str {
        if self.cert.is_some() && self.key.is_some() { "https" } else { "http" }
    }
}

/// ONNX Runtime settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Explicit path to `libonnxruntime.so`; searched first.
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads per session; 0 lets ONNX Runtime choose.
    pub intra_threads: usize,
    /// Graph optimisation: `disable`, `basic`, `extended` or `all`.
    pub optimization: String,
    /// Seconds an idle model session stays loaded.
    pub keep_alive_s: u64,
    /// Memory budget for loaded sessions per device, MiB (0 = unlimited).
    pub device_budget_mib: u64,
    /// Use the TensorRT execution provider on GPUs when available.
    pub tensorrt: bool,
    /// Extra directories holding the CUDA and cuDNN libraries the CUDA provider needs
    /// (e.g. a Python environment's `site-packages/nvidia/*/lib`), searched after
    /// `<data_dir>/runtime/cuda/` where `reelbox setup --gpu yes` puts them.
    pub cuda_lib_dirs: Vec<PathBuf>,
    /// How cuDNN picks convolution algorithms on GPUs: `heuristic` (default), `exhaustive`
    /// (benchmarks every algorithm for every new input shape: best for fixed shapes, but
    /// measured 3.8 s instead of 0.2 s for a narration whose sentences all differ in
    /// length), or `default`.
    pub cudnn_conv_algo_search: String,
    /// Let CUDA matrix products and convolutions use TF32 (Ampere and newer): faster, with
    /// outputs a few 8-bit levels off the CPU's.
    pub cuda_tf32: bool,
    /// Let idle intra-op threads spin-wait for work. Off by default: spinning saves
    /// microseconds per operator on an idle machine but steals cores from everything else
    /// on a shared box (measured: ~25% slower Piper synthesis under contention).
    pub spin: bool,
}

/// Energy accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyConfig {
    /// Electricity price per kWh; when set, jobs show a cost next to their energy.
    pub price_per_kwh: Option<f64>,
    /// Currency label shown with costs (`EUR`, `USD`, ...).
    pub currency: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8470)),
            data_dir: env::default_data_dir(),
            models_dir: None,
            defaults: DefaultsConfig::default(),
            queue: QueueConfig::default(),
            store: StoreConfig::default(),
            workers: WorkersConfig::default(),
            limits: LimitsConfig::default(),
            runtime: RuntimeConfig::default(),
            energy: EnergyConfig::default(),
            openai: OpenAiConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            server: ServerConfig::default(),
            retention: RetentionConfig::default(),
            cluster: None,
            file: None,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_queued: 10_000, max_attempts: 3, retry_backoff_s: 5 }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { group_commit: true, max_batch: 512 }
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self { cpu_concurrency: 2, gpu_concurrency: 1, gpus: Vec::new(), use_gpus: true }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_upload_bytes: 32 << 20,
            max_prompt_chars: 8_000,
            max_image_side: 2048,
            cpu_memory_mib: 0,
            max_upload_side: 8192,
            max_steps: 150,
            max_audio_seconds: 600.0,
            // 600 s (max_audio_seconds) at 25 fps: every render stage streams its frames.
            max_frames: 15_000,
            requests_per_second: 20.0,
            request_burst: 100,
            max_streams: 256,
            max_streams_per_key: 16,
            max_scenes: 50,
            max_client_priority: 100,
            max_job_seconds: 3600,
            client_max_queued: 100,
            min_free_disk_bytes: 1 << 30,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Keys,
            user_header: "X-Webui-Email".into(),
            trusted_proxies: Vec::new(),
            admin_users: Vec::new(),
            proxy_user_max_queued: None,
            proxy_user_gpu_seconds_per_day: None,
            proxy_user_max_storage_bytes: None,
            public_metrics: false,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            onnxruntime: None,
            intra_threads: 0,
            optimization: "all".into(),
            keep_alive_s: 300,
            device_budget_mib: 0,
            tensorrt: false,
            cuda_lib_dirs: Vec::new(),
            cudnn_conv_algo_search: "heuristic".into(),
            cuda_tf32: true,
            spin: false,
        }
    }
}

/// The system service's data dir, used when running as the `reelbox` system user.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/reelbox";
/// Where distro packages put read-only data: bundled model manifests and demo models.
pub const SYSTEM_SHARE_DIR: &str = "/usr/share/reelbox";
/// Reads an `IP:port`, saying what is wanted when given a host name (`localhost:8470`):
/// the daemon binds an address, it does not resolve names.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP:port; write an address, e.g. \"127.0.0.1:8470\" (this box only) or \"0.0.0.0:8470\" (the LAN)"
        ))
    })
}

/// The system-wide config file, read when present and no `--config` is given.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/reelbox/config.toml";

impl Config {
    /// Loads the config: `explicit` file, else the system file when present, else the
    /// user's XDG file when present, else defaults; then applies `REELBOX_*` overrides.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => [Some(PathBuf::from(SYSTEM_CONFIG_FILE)), env::user_config_file()]
                .into_iter()
                .flatten()
                .find(|p| p.is_file()),
        };
        let mut config = match file {
            Some(path) => Self::from_file(&path)?,
            None => Self::default(),
        };
        config.apply_env(env::process_var)?;
        Ok(config)
    }

    /// Parses one TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: Self = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source: Box::new(source) })?;
        Ok(Self { file: Some(path.to_path_buf()), ..config })
    }

    /// Directory models are installed into.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// Directory finished artifacts are stored in.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// Path of the redb database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("reelbox.redb")
    }

    /// The effective config as TOML, for `reelbox config show`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/config.example.toml");
        let parsed = Config::from_file(&path).expect("example parses");
        let defaults = Config::default();
        assert_eq!(parsed.bind, defaults.bind);
        assert_eq!(parsed.queue.max_queued, defaults.queue.max_queued);
        assert_eq!(parsed.limits.max_body_bytes, defaults.limits.max_body_bytes);
        assert_eq!(parsed.limits.max_frames, defaults.limits.max_frames);
        assert_eq!(parsed.limits.requests_per_second, defaults.limits.requests_per_second);
        assert_eq!(parsed.limits.max_streams_per_key, defaults.limits.max_streams_per_key);
        assert_eq!(parsed.auth.mode, defaults.auth.mode);
        assert_eq!(parsed.auth.user_header, defaults.auth.user_header);
        assert!(parsed.tls.cert.is_none() && parsed.tls.key.is_none());
        assert_eq!(parsed.retention, defaults.retention);
        assert_eq!(parsed.defaults, defaults.defaults);
        assert_eq!(parsed.openai, defaults.openai);
        assert!(!parsed.retention.enabled(), "nothing is removed unless configured");
        assert!(parsed.cluster.is_none(), "no NATS unless [cluster] is set");
        let with_cluster: Config = toml::from_str(&example_cluster_section(&path)).expect("[cluster] parses");
        assert_eq!(with_cluster.cluster, Some(ClusterConfig::default()), "the commented [cluster] lists the defaults");
    }

    /// The example's commented-out `[cluster]` section, uncommented.
    fn example_cluster_section(path: &Path) -> String {
        let text = std::fs::read_to_string(path).expect("example reads");
        let start = text.find("# [cluster]").expect("example has [cluster]");
        text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}
