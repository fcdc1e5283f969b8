//! Finding `libonnxruntime.so` at run time. The binary links nothing (ort's `load-dynamic`),
//! so the library is looked for in a fixed order and its version checked before ort sees
//! it: ort's own check panics on a too-old library deep inside the first API call.

use std::ffi::{CStr, OsString};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;

/// File name the runtime directory and system directories are searched for.
pub const LIBRARY_NAME: &str = "libonnxruntime.so";
/// Environment variable ort itself honours; we honour it too, after the config.
pub const DYLIB_ENV: &str = crate::config::env::ORT_DYLIB_PATH;
/// The ONNX Runtime version `reelbox setup` installs.
pub const SETUP_VERSION: &str = "1.31.1";
/// Smallest ONNX Runtime minor version (`1.N`) whose C API this build calls.
pub const MIN_MINOR_VERSION: u32 = ort::MINOR_VERSION;

/// System library directories searched last, in order.
pub const SYSTEM_LIB_DIRS: &[&str] =
    &["/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"];

/// Where a candidate path came from, for messages and `reelbox doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `runtime.onnxruntime` in the config (or `REELBOX_ONNXRUNTIME`).
    Config,
    /// The `ORT_DYLIB_PATH` environment variable.
    Env,
    /// `<data>/runtime/`, where `reelbox setup` installs it.
    DataDir,
    /// A system library directory.
    System,
}

impl Origin {
    /// How the origin is named in messages.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Config => "config runtime.onnxruntime",
            Origin::Env => DYLIB_ENV,
            Origin::DataDir => "reelbox runtime dir",
            Origin::System => "system library dir",
        }
    }
}

/// One place the library may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub origin: Origin,
}

/// The directory `reelbox setup` installs ONNX Runtime into.
pub fn runtime_dir(config: &Config) -> PathBuf {
    config.data_dir.join("runtime")
}

/// Candidate library paths in search order: config, `ORT_DYLIB_PATH` (passed in so tests
/// need not touch the process environment), `<data>/runtime/`, system directories.
pub fn candidates(config: &Config, env_path: Option<OsString>) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(p) = &config.runtime.onnxruntime {
        out.push(Candidate { path: p.clone(), origin: Origin::Config });
    }
    if let Some(p) = env_path.filter(|p| !p.is_empty()) {
        out.push(Candidate { path: PathBuf::from(p), origin: Origin::Env });
    }
    out.push(Candidate { path: runtime_dir(config).join(LIBRARY_NAME), origin: Origin::DataDir });
    for dir in SYSTEM_LIB_DIRS {
        out.push(Candidate { path: Path::new(dir).join(LIBRARY_NAME), origin: Origin::System });
    }
    out
}

/// A library that was found and whose version is new enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeInfo {
    pub path: PathBuf,
    pub origin: Origin,
    /// Version string the library reports, e.g. `1.31.1`.
    pub version: String,
}

/// Why one candidate was passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub path: PathBuf,
    pub origin: Origin,
    pub reason: String,
}

/// The runtime could not be found or none of the found libraries is usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ONNX Runtime (libonnxruntime.so ≥ 1.{min}) not found; searched: {searched}. Fix: run `{setup_cmd}` \
     (installs ONNX Runtime {setup} into {runtime_dir}), or point runtime.onnxruntime in the config or \
     ORT_DYLIB_PATH at a libonnxruntime.so ≥ 1.{min}",
    min = MIN_MINOR_VERSION,
    setup = SETUP_VERSION,
    searched = describe(.rejected),
    runtime_dir = .runtime_dir.display(),
    setup_cmd = setup_command(.runtime_dir)
)]
pub struct NotFound {
    pub rejected: Vec<Rejected>,
    pub runtime_dir: PathBuf,
}

/// The setup command for whoever reads a message about `dir` (in a data dir): the packaged
/// service's data dir is root's to set up (setup hands what it writes to the service's user).
pub fn setup_command(dir: &Path) -> &'static str {
    if dir.starts_with(crate::config::SYSTEM_DATA_DIR) { "sudo reelbox setup" } else { "reelbox setup" }
}

fn describe(rejected: &[Rejected]) -> String {
    rejected
        .iter()
        .map(|r| format!("{} ({}: {})", r.path.display(), r.origin.label(), r.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds the first candidate that exists and reports a version ≥ [`MIN_MINOR_VERSION`].
pub fn find(config: &Config, env_path: Option<OsString>) -> Result<RuntimeInfo, NotFound> {
    let mut rejected = Vec::new();
    for c in candidates(config, env_path) {
        let reason = match probe_version(&c.path) {
            Ok(version) => match minor_version(&version) {
                Some(minor) if minor >= MIN_MINOR_VERSION => {
                    return Ok(RuntimeInfo { path: c.path, origin: c.origin, version });
                }
                _ => format!("version {version} is older than 1.{MIN_MINOR_VERSION}"),
            },
            Err(reason) => reason.to_string(),
        };
        rejected.push(Rejected { path: c.path, origin: c.origin, reason });
    }
    Err(NotFound { rejected, runtime_dir: runtime_dir(config) })
}

/// `1.31.1` → 31; `None` unless the major version is 1.
pub fn minor_version(version: &str) -> Option<u32> {
    let mut parts = version.trim().split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Why a candidate library did not say its version.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no such file")]
    Missing,
    #[error("not a file")]
    NotAFile,
    #[error("cannot load: {0}")]
    Load(#[source] libloading::Error),
    #[error("does not export OrtGetApiBase (not ONNX Runtime?)")]
    NotOnnxRuntime(#[source] libloading::Error),
    #[error("OrtGetApiBase returned null")]
    NullBase,
    #[error("no version string")]
    NoVersion,
}

/// Loads the library just long enough to ask its version.
#[allow(unsafe_code)] // loads libonnxruntime.so by hand; see the SAFETY note inside
pub fn probe_version(path: &Path) -> Result<String, ProbeError> {
    if !path.exists() {
        return Err(ProbeError::Missing);
    }
    if !path.is_file() {
        return Err(ProbeError::NotAFile);
    }
    // SAFETY: loading runs the library's initialisers; ONNX Runtime's are side-effect free
    // apart from allocating its globals. The symbol's signature is ONNX Runtime's stable
    // C entry point, the same one ort declares.
    unsafe {
        let lib = libloading::Library::new(path).map_err(ProbeError::Load)?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").map_err(ProbeError::NotOnnxRuntime)?;
        let base = get_base();
        if base.is_null() {
            return Err(ProbeError::NullBase);
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return Err(ProbeError::NoVersion);
        }
        Ok(CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_is_config_env_data_dir_then_system() {
        let mut c = Config { data_dir: PathBuf::from("/data"), ..Config::default() };
        c.runtime.onnxruntime = Some(PathBuf::from("/cfg/libonnxruntime.so"));
        let found = candidates(&c, Some("/env/libonnxruntime.so".into()));
        let origins: Vec<_> = found.iter().map(|c| c.origin).collect();
        assert_eq!(&origins[..3], &[Origin::Config, Origin::Env, Origin::DataDir]);
        assert_eq!(found[2].path, PathBuf::from("/data/runtime/libonnxruntime.so"));
        assert!(found[3..].iter().all(|c| c.origin == Origin::System));
    }

    #[test]
    fn empty_env_value_is_ignored() {
        let c = Config::default();
        assert!(candidates(&c, Some(OsString::new())).iter().all(|c| c.origin != Origin::Env));
    }

    #[test]
    fn minor_version_parses_release_strings() {
        assert_eq!(minor_version("1.31.1"), Some(31));
        assert_eq!(minor_version("1.9.0"), Some(9));
        assert_eq!(minor_version("2.0.0"), None);
        assert_eq!(minor_version("garbage"), None);
    }

    #[test]
    fn not_found_lists_every_place_and_the_fix() {
        let mut c = Config { data_dir: std::env::temp_dir().join("reelbox-no-such-data-dir"), ..Config::default() };
        c.runtime.onnxruntime = Some(PathBuf::from("/nonexistent/libonnxruntime.so"));
        let err = find(&c, Some("/also/missing.so".into())).expect_err("nothing there");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
        assert!(msg.contains("/also/missing.so"), "{msg}");
        assert!(msg.contains("reelbox setup"), "{msg}");
        assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_onnx_runtime_is_rejected_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, b"not an ELF file").expect("write");
        let reason = probe_version(&fake).expect_err("not loadable").to_string();
        assert!(reason.contains("cannot load"), "{reason}");
    }
}
