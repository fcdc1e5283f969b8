//! `reelbox doctor`: each piece reelbox needs, found (with its path or version) or missing
//! (with the command that fixes it).

use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use super::system::{self, Piece};
use crate::config::{Config, env};
use crate::engine::runtime::{self as ort_runtime, DYLIB_ENV};
use crate::engine::{Engine, EngineError, GpuProvider, cuda_search_dirs, locate_cuda_libraries};
use crate::models::{InstallState, ModelStore};
use crate::pipelines::tts::espeak;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    /// Works, but something is worth knowing (e.g. a GPU the runtime cannot use).
    Warn,
    /// Nothing to fix: what the box has, said without claiming a piece was found (no GPU).
    Info,
    Missing,
}

/// One line of `reelbox doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    /// Path, version or what is wrong.
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &str, detail: String) -> Self {
        Self { name: name.into(), status: CheckStatus::Ok, detail, fix: None }
    }
    fn missing(name: &str, detail: String, fix: String) -> Self {
        Self { name: name.into(), status: CheckStatus::Missing, detail, fix: Some(fix) }
    }
    fn info(name: &str, detail: String) -> Self {
        Self { name: name.into(), status: CheckStatus::Info, detail, fix: None }
    }
    fn warn(name: &str, detail: String, fix: Option<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Warn, detail, fix }
    }
}

/// Checks every piece, once each; never fails, and only looks: it installs, makes and
/// leaves nothing (not even the data dir it checks).
pub fn doctor(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    // Before any check loads espeak-ng: the pinned copy wins over the system's.
    espeak::use_pinned(&espeak::pinned_dir(&config.data_dir));
    let runtime = ort_runtime::find(config, env::ort_dylib_path());
    // The packaged service's data dir seen from a login user that cannot look inside.
    let foreign = super::owner::check_writable(&config.data_dir, "doctor").is_err();
    match &runtime {
        Ok(info) => checks.push(Check::ok(
            "onnxruntime",
            format!("ONNX Runtime {} at {} ({})", info.version, info.path.display(), info.origin.label()),
        )),
        Err(_) if foreign => checks.push(Check::warn(
            "onnxruntime",
            format!("not found where this user can look ({} is the service's)", config.data_dir.display()),
            Some("sudo reelbox doctor".into()),
        )),
        Err(nf) => {
            let searched: Vec<String> =
                nf.rejected.iter().map(|r| format!("{} ({})", r.path.display(), r.reason)).collect();
            checks.push(Check::missing(
                "onnxruntime",
                format!(
                    "libonnxruntime.so ≥ 1.{} not found; searched: {}",
                    ort_runtime::MIN_MINOR_VERSION,
                    searched.join(", ")
                ),
                format!("reelbox setup   (or set {DYLIB_ENV} / runtime.onnxruntime to a libonnxruntime.so)"),
            ));
        }
    }

    let (gpus, note) = super::detect_gpus();
    if gpus.is_empty() {
        checks.push(Check::info(
            "gpu",
            format!("no NVIDIA GPU found{}; jobs run on the CPU", note.map(|n| format!(" ({n})")).unwrap_or_default()),
        ));
    } else {
        let names: Vec<String> =
            gpus.iter().map(|g| format!("cuda:{} {} ({} MiB)", g.index, g.name, g.memory_total >> 20)).collect();
        checks.push(Check::ok("gpu", format!("{}; {}", names.join(", "), note.unwrap_or_else(|| "driver ?".into()))));
        if runtime.is_ok() {
            checks.extend(gpu_runtime_checks(config, gpus[0].index));
        }
    }

    // One line per piece: pip and espeak-ng each had a second line of their own (the
    // python that runs pip, which espeak-ng speaks), listing them twice.
    for piece in Piece::ALL {
        checks.push(match (piece, piece.probe()) {
            (Piece::Espeak, Ok(detail)) => {
                espeak_check(piece.name()).unwrap_or_else(|| Check::ok(piece.name(), detail))
            }
            (Piece::Pip, Ok(detail)) => {
                Check::ok(piece.name(), detail.split(" from ").next().unwrap_or(&detail).into())
            }
            (_, Ok(detail)) => Check::ok(piece.name(), detail),
            (Piece::Pip, Err(e)) => Check::missing(
                piece.name(),
                format!("{e}; setup and pip: model sources need it"),
                format!("{}   (or set REELBOX_PYTHON to a Python with pip)", system::fix_for(piece)),
            ),
            (_, Err(e)) => Check::missing(piece.name(), e.to_string(), system::fix_for(piece)),
        });
    }

    if let Some(e) = crate::config::exposure::exposed(config) {
        checks.push(Check::warn("config", e.to_string(), Some(e.fix())));
    }
    let data = &config.data_dir;
    if !data.exists() && !foreign {
        // A doctor only looks: making the dir (it did) changed the machine it examined.
        checks.push(data_dir_to_make(data));
    } else if data.is_dir() && tempfile::tempfile_in(data).is_ok() {
        checks.push(Check::ok("data-dir", data.display().to_string()));
    } else if foreign {
        // Nothing to fix, but what this user sees of the models is not what the service has.
        let owner = std::fs::metadata(data).map(|m| super::owner::user_name(m.uid())).unwrap_or_default();
        checks.push(Check::warn(
            "data-dir",
            format!(
                "{} belongs to the user {owner} (the service's data); this user cannot check what is installed there",
                data.display()
            ),
            Some("sudo reelbox doctor   (setup and pulls too: sudo reelbox setup, sudo reelbox pull NAME)".into()),
        ));
        return checks;
    } else {
        checks.push(Check::missing(
            "data-dir",
            format!("{} is not writable", data.display()),
            "set data_dir in the config, or REELBOX_DATA_DIR".into(),
        ));
    }

    checks.extend(disk_checks(config));

    let store = ModelStore::new(config);
    let entries = store.list();
    for name in super::default_models(&store) {
        let entry = entries.iter().find(|e| e.name == name);
        match entry.map(|e| &e.state) {
            Some(InstallState::Installed) => checks.push(Check::ok(
                &format!("model {name}"),
                entry.and_then(|e| e.path.as_ref()).map(|p| p.display().to_string()).unwrap_or_default(),
            )),
            Some(InstallState::Damaged { problems }) => checks.push(Check::missing(
                &format!("model {name}"),
                problems.join("; "),
                format!("reelbox pull --force {name}"),
            )),
            _ => checks.push(Check::missing(
                &format!("model {name}"),
                "not installed".into(),
                format!("reelbox pull {name}"),
            )),
        }
    }
    checks
}

/// A data dir not made yet: `reelbox setup` (or `reelbox serve`) makes it, when this user
/// may write where it goes. Asked without writing anything: an anonymous temporary file in
/// the nearest folder that exists, gone when closed.
fn data_dir_to_make(data: &std::path::Path) -> Check {
    let parent = data.ancestors().skip(1).find(|a| a.is_dir());
    match parent {
        Some(p) if tempfile::tempfile_in(p).is_ok() => Check::warn(
            "data-dir",
            format!("{} is not made yet", data.display()),
            Some("reelbox setup   (makes it, with the runtime, espeak-ng and the default models in it)".into()),
        ),
        _ => Check::missing(
            "data-dir",
            format!(
                "{} does not exist and this user cannot make it{}",
                data.display(),
                parent.map(|p| format!(" ({} is not writable)", p.display())).unwrap_or_default()
            ),
            "set data_dir in the config, or REELBOX_DATA_DIR, to a folder this user can write; or sudo reelbox setup"
                .into(),
        ),
    }
}

/// Free space on the data dir's and the models dir's disks: below
/// `limits.min_free_disk_bytes` the daemon refuses new jobs, uploads and pulls.
fn disk_checks(config: &Config) -> Vec<Check> {
    let min = config.limits.min_free_disk_bytes;
    [("data dir", config.data_dir.clone()), ("models dir", config.models_dir())]
        .into_iter()
        .filter_map(|(what, dir)| {
            let name = format!("disk ({what})");
            let space = crate::disk::space(&dir)?;
            let human = crate::disk::human_bytes;
            let detail =
                format!("{} free of {} ({})", human(space.free_bytes), human(space.total_bytes), dir.display());
            Some(if space.is_low(min) {
                let (min, stops) = (human(min), crate::disk::stops(what));
                let why = format!("{detail}: below limits.min_free_disk_bytes ({min}): {stops}");
                Check::warn(&name, why, Some(format!("free space: {}", crate::disk::advice(what))))
            } else {
                Check::ok(&name, detail)
            })
        })
        .collect()
}

/// The espeak-ng check, `name`d as its piece, once it loads: which one speaks. Piper's own
/// build is fine; any other (the system's, an older setup's) is a warning naming its
/// version, since only that build writes Piper's phonemes. `None` when none loads (the
/// piece's probe says why).
fn espeak_check(name: &str) -> Option<Check> {
    let e = espeak::loaded().ok()?;
    Some(if let Some(why) = e.mismatch() {
        Check::warn(name, why, Some(espeak::SETUP_PINS.into()))
    } else if e.pinned {
        Check::ok(name, format!("pinned espeak-ng {} at {} (Piper's phonemes)", e.version, e.library))
    } else {
        Check::ok(name, format!("the system's espeak-ng {} ({}), Piper's own build", e.version, e.library))
    })
}

/// On a box with an NVIDIA GPU and an ONNX Runtime: whether the CUDA provider really
/// registers (the libraries it needs load), where each CUDA/cuDNN library was found, and
/// whether TensorRT is there.
fn gpu_runtime_checks(config: &Config, gpu: u32) -> Vec<Check> {
    let mut checks = Vec::new();
    let engine = Engine::new(config);
    let fix = GpuProvider::Cuda.fix();
    match engine.probe_provider(GpuProvider::Cuda, gpu) {
        Ok(()) => checks.push(Check::ok("cuda-provider", format!("CUDAExecutionProvider registers on cuda:{gpu}"))),
        Err(e) => {
            // The engine's message carries the same fix; the check shows it on its own line.
            let why = match e {
                EngineError::ProviderUnavailable { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            checks.push(Check::missing("cuda-provider", format!("GPUs stay idle: {why}"), fix.into()));
        }
    }
    let dirs =
        cuda_search_dirs(&ort_runtime::runtime_dir(config), &config.runtime.cuda_lib_dirs, env::ld_library_path());
    for lib in locate_cuda_libraries(&dirs) {
        let name = format!("cuda-lib {}", lib.name);
        match lib.found {
            Some((path, origin)) => checks.push(Check::ok(&name, format!("{} ({})", path.display(), origin.label()))),
            None => checks.push(Check::warn(
                &name,
                "not found in reelbox's or the system's library dirs".into(),
                Some(fix.into()),
            )),
        }
    }
    let tensorrt = engine.probe_provider(GpuProvider::TensorRt, gpu);
    checks.push(match (tensorrt, config.runtime.tensorrt) {
        (Ok(()), on) => Check::ok(
            "tensorrt",
            format!(
                "TensorrtExecutionProvider registers on cuda:{gpu}{}",
                if on { "" } else { " (off: runtime.tensorrt = false)" }
            ),
        ),
        (Err(e), false) => Check::ok("tensorrt", format!("not available, not used (runtime.tensorrt = false): {e}")),
        (Err(e), true) => Check::warn(
            "tensorrt",
            format!("runtime.tensorrt is on but {e}; the CUDA provider runs instead"),
            Some("install TensorRT 10 (libnvinfer.so.10) or set runtime.tensorrt = false".into()),
        ),
    });
    checks
}

/// The checks as aligned text lines for a terminal.
pub fn render_checks(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let mark = match c.status {
            CheckStatus::Ok => "found  ",
            CheckStatus::Warn => "warning",
            CheckStatus::Info => "info   ",
            CheckStatus::Missing => "MISSING",
        };
        out.push_str(&format!("{mark}  {:width$}  {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:9}{:width$}  fix: {fix}\n", "", ""));
        }
    }
    out
}
