//! The process environment, read in one place: every variable reelbox looks at has one
//! typed function here, so a reader finds what the environment can change in one file,
//! and the rest of the crate takes values rather than reading the process state.
//!
//! `REELBOX_*` overrides of config keys are applied by [`Config::apply_env`]; the default
//! directories follow systemd (`STATE_DIRECTORY`) and XDG (`XDG_DATA_HOME`,
//! `XDG_CONFIG_HOME`, `HOME`).

use std::ffi::OsString;
use std::path::PathBuf;

use super::{AuthMode, Config, ConfigError, SYSTEM_DATA_DIR};

/// Names the ONNX Runtime library to load, searched before the configured one.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";
/// Fake GPUs for tests and benchmarks: comma-separated memory sizes in MiB.
pub const REELBOX_FAKE_GPUS: &str = "REELBOX_FAKE_GPUS";

/// A variable's value when set and not empty (an empty value means "unset" for reelbox).
fn non_empty(var: &str) -> Option<OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

/// `ORT_DYLIB_PATH`: the `libonnxruntime.so` to try first, as given.
pub fn ort_dylib_path() -> Option<OsString> {
    std::env::var_os(ORT_DYLIB_PATH)
}

/// `REELBOX_FFMPEG`: the ffmpeg binary to run instead of `ffmpeg` on `PATH`.
pub fn ffmpeg() -> Option<PathBuf> {
    std::env::var_os("REELBOX_FFMPEG").map(PathBuf::from)
}

/// `REELBOX_FFPROBE`: the ffprobe binary to run instead of `ffprobe` on `PATH`.
pub fn ffprobe() -> Option<PathBuf> {
    std::env::var_os("REELBOX_FFPROBE").map(PathBuf::from)
}

/// `REELBOX_SHARE_DIR`: a directory of shipped files searched before the system one.
pub fn share_dir() -> Option<PathBuf> {
    non_empty("REELBOX_SHARE_DIR").map(PathBuf::from)
}

/// `REELBOX_PYTHON`: the Python that runs `pip download` instead of `python3`.
pub fn python() -> Option<String> {
    std::env::var("REELBOX_PYTHON").ok().filter(|s| !s.is_empty())
}

/// `REELBOX_CONVERT_PYENV`: the Python environment (a venv directory) model conversions
/// run in, instead of the managed `<data>/pyenv/convert-<hash>`; created there on first use
/// like the managed one. Tests and CI point it at one cached environment outside the data dir.
pub fn convert_pyenv() -> Option<PathBuf> {
    non_empty("REELBOX_CONVERT_PYENV").map(PathBuf::from)
}

/// `REELBOX_FAKE_GPUS`: the fake GPU list, when set to something other than blanks.
pub fn fake_gpus() -> Option<String> {
    std::env::var(REELBOX_FAKE_GPUS).ok().filter(|s| !s.trim().is_empty())
}

/// `ESPEAK_DATA_PATH`: where espeak-ng looks for its data (reported when it fails to start).
pub fn espeak_data_path() -> Option<String> {
    std::env::var("ESPEAK_DATA_PATH").ok()
}

/// `HF_ENDPOINT`: the Hugging Face hub to fetch `hf:` sources from (a mirror, a test server).
pub fn hf_endpoint() -> Option<String> {
    std::env::var("HF_ENDPOINT").ok().filter(|s| !s.trim().is_empty())
}

/// `HF_TOKEN`: the token sent to the Hugging Face hub (never to its CDN) for gated repositories.
pub fn hf_token() -> Option<String> {
    std::env::var("HF_TOKEN").ok().filter(|s| !s.trim().is_empty())
}

/// `NO_COLOR`: true when set and not empty (no-color.org).
pub fn no_color() -> bool {
    non_empty("NO_COLOR").is_some()
}

/// `TERM`: the terminal's type (`dumb` for one that takes no cursor or colour codes).
pub fn term() -> Option<String> {
    std::env::var("TERM").ok()
}

/// `REELBOX_LOG`: the log filter directives (`info`, `reelbox=debug`, ...).
pub fn log_filter() -> Option<String> {
    std::env::var("REELBOX_LOG").ok()
}

/// `REELBOX_LOG_FORMAT`: `json`, `journald`, or empty for human lines.
pub fn log_format() -> String {
    std::env::var("REELBOX_LOG_FORMAT").unwrap_or_default()
}

/// `JOURNAL_STREAM`: the `device:inode` of the journal stream systemd connected us to.
pub fn journal_stream() -> Option<OsString> {
    std::env::var_os("JOURNAL_STREAM")
}

/// `PATH`: the directories programs are looked up in.
pub fn search_path() -> Vec<PathBuf> {
    std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).collect()).unwrap_or_default()
}

/// `LD_LIBRARY_PATH`: the dynamic loader's extra library directories, as given.
pub fn ld_library_path() -> Option<OsString> {
    std::env::var_os("LD_LIBRARY_PATH")
}

/// The data dir when no config names one: systemd's `StateDirectory=`, else
/// `$XDG_DATA_HOME/reelbox`, else `~/.local/share/reelbox`, else the system dir.
pub(super) fn default_data_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("STATE_DIRECTORY") {
        // systemd's StateDirectory= hands us the path; it may list several, take the first.
        if let Some(first) = state.to_string_lossy().split(':').next() {
            return PathBuf::from(first);
        }
    }
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("reelbox");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".local/share/reelbox");
    }
    PathBuf::from(SYSTEM_DATA_DIR)
}

/// The user's config file: `$XDG_CONFIG_HOME/reelbox/config.toml`, else under `~/.config`.
pub(super) fn user_config_file() -> Option<PathBuf> {
    let base = non_empty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("reelbox/config.toml"))
}

/// One `REELBOX_*` override from the process environment (UTF-8 values only).
pub(super) fn process_var(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

impl Config {
    /// Applies `REELBOX_*` overrides read through `get` (injectable for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                var: var.into(),
                value: value.clone(),
                reason: e.to_string(),
            })
        }
        if let Some(v) = get("REELBOX_BIND") {
            self.bind = parse("REELBOX_BIND", v)?;
        }
        if let Some(v) = get("REELBOX_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("REELBOX_MODELS_DIR") {
            self.models_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("REELBOX_MAX_QUEUED") {
            self.queue.max_queued = parse("REELBOX_MAX_QUEUED", v)?;
        }
        if let Some(v) = get("REELBOX_CPU_CONCURRENCY") {
            self.workers.cpu_concurrency = parse("REELBOX_CPU_CONCURRENCY", v)?;
        }
        if let Some(v) = get("REELBOX_CPU_MEMORY_MIB") {
            self.limits.cpu_memory_mib = parse("REELBOX_CPU_MEMORY_MIB", v)?;
        }
        if let Some(v) = get("REELBOX_GROUP_COMMIT") {
            self.store.group_commit = parse("REELBOX_GROUP_COMMIT", v)?;
        }
        if let Some(v) = get("REELBOX_AUTH_MODE") {
            self.auth.mode = match v.as_str() {
                "keys" => AuthMode::Keys,
                "trusted-proxy" => AuthMode::TrustedProxy,
                _ => {
                    return Err(ConfigError::Env {
                        var: "REELBOX_AUTH_MODE".into(),
                        value: v,
                        reason: "must be keys or trusted-proxy".into(),
                    });
                }
            };
        }
        if let Some(v) = get("REELBOX_ONNXRUNTIME") {
            self.runtime.onnxruntime = Some(PathBuf::from(v));
        }
        if let Some(v) = get("REELBOX_CUDA_LIB_DIRS") {
            self.runtime.cuda_lib_dirs = std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect();
        }
        let list = |v: String| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        if let Some(v) = get("REELBOX_ALLOWED_HOSTS") {
            self.server.allowed_hosts = list(v);
        }
        if let Some(v) = get("REELBOX_ALLOWED_ORIGINS") {
            self.server.allowed_origins = list(v);
        }
        if let Some(v) = get("REELBOX_USE_GPUS") {
            self.workers.use_gpus = parse("REELBOX_USE_GPUS", v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_win_over_file_values() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "REELBOX_BIND").then(|| "0.0.0.0:9000".to_string())).expect("valid env");
        assert_eq!(c.bind.port(), 9000);
    }

    #[test]
    fn gpu_env_overrides_turn_gpus_off_and_add_cuda_library_dirs() {
        let mut c = Config::default();
        assert!(c.workers.use_gpus, "GPUs are used by default");
        c.apply_env(|k| match k {
            "REELBOX_USE_GPUS" => Some("false".into()),
            "REELBOX_CUDA_LIB_DIRS" => Some("/venv/nvidia/cu13/lib::/venv/nvidia/cudnn/lib".into()),
            _ => None,
        })
        .expect("valid env");
        assert!(!c.workers.use_gpus);
        assert_eq!(
            c.runtime.cuda_lib_dirs,
            vec![PathBuf::from("/venv/nvidia/cu13/lib"), PathBuf::from("/venv/nvidia/cudnn/lib")]
        );
        let err = c.apply_env(|k| (k == "REELBOX_USE_GPUS").then(|| "sometimes".into())).expect_err("not a bool");
        assert!(err.to_string().contains("REELBOX_USE_GPUS"), "{err}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let mut c = Config::default();
        let err = c.apply_env(|k| (k == "REELBOX_MAX_QUEUED").then(|| "lots".to_string())).expect_err("must fail");
        assert!(err.to_string().contains("REELBOX_MAX_QUEUED"), "{err}");
    }
}
