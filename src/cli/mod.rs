//! Command-line interface. Commands that produce or inspect jobs talk to the daemon over
//! its HTTP API (`--url`, `REELBOX_URL`); only `serve` opens the store itself.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use reelbox::config::env;

mod backend;
mod bench;
mod bench_cluster;
mod bench_gpu;
mod bench_models;
mod bench_render;
mod bench_top;
mod client;
mod cluster;
mod follow;
mod gc;
mod hint;
mod image;
mod job_ref;
mod jobs;
mod jobs_get;
mod journald;
mod keys;
mod lipsync;
mod man;
mod models;
mod models_hash;
mod models_import;
mod models_pull;
mod models_rm;
mod profiles;
mod refine_arg;
mod render;
mod resize_arg;
mod say;
mod serve;
mod setup;
mod status;
mod table;
mod text_file;
mod top;
mod typed_flags;
mod upscale;
mod voices;
mod worker;

/// Default daemon URL for clients.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8470";

/// reelbox: a private AI film studio for your GPU box.
#[derive(Debug, Parser)]
#[command(name = "reelbox", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every client command shares: under a heading of their own in every command's
/// help, after the command's own options, which are what its reader came for.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Daemon URL.
    #[arg(long, global = true, env = "REELBOX_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// API key (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "REELBOX_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Extra CA certificate (PEM) to trust, for a daemon serving HTTPS with its own certificate.
    #[arg(long, global = true, env = "REELBOX_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Config file (default: /etc/reelbox/config.toml, then $XDG_CONFIG_HOME/reelbox/config.toml).
    #[arg(long, global = true, env = "REELBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Why the config that names the daemon's URL could not be read (neither --url nor
    /// REELBOX_URL given): a client command refuses with it instead of trying the default URL.
    #[arg(skip)]
    pub config_error: Option<String>,
    /// What a `reelbox …` command printed for the user to run next repeats of these options.
    #[arg(skip)]
    pub hint: hint::Hint,
    /// The flags typed for the command that runs: a daemon's refusal of one is said with it.
    #[arg(skip)]
    pub typed: typed_flags::TypedFlags,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(serve::ServeArgs),
    /// Worker boxes of the cluster (`status`, `nats-config`).
    Cluster {
        #[command(subcommand)]
        action: cluster::ClusterAction,
    },
    /// Join a head's cluster and run the stages it hands out (README "More than one box").
    Worker(worker::WorkerArgs),
    /// Show the effective configuration (alone: `config show`).
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// List, inspect, cancel, retry and follow jobs (alone: `jobs list`).
    Jobs {
        #[command(subcommand)]
        action: Option<jobs::JobsAction>,
    },
    /// Submit a job of any kind.
    Submit(jobs::SubmitArgs),
    /// Pause or resume the queue.
    Queue {
        #[command(subcommand)]
        action: jobs::QueueAction,
    },
    /// Manage presenter profiles (alone: `profiles list`).
    Profiles {
        #[command(subcommand)]
        action: Option<profiles::ProfilesAction>,
    },
    /// Dashboard of GPUs and the queue, with job actions (like nvtop plus pueue).
    Top(top::TopArgs),
    /// The running daemon on one screen: version, address, devices, jobs, disk, models.
    Status,
    /// Measure throughput (prints ratios against a baseline run side by side).
    Bench {
        #[command(subcommand)]
        what: bench::BenchWhat,
    },
    /// Install ONNX Runtime, system pieces and the default models (safe to run again).
    Setup(setup::SetupArgs),
    /// Check every piece reelbox needs; exit code 1 when one is missing.
    Doctor(setup::DoctorArgs),
    /// Manage the installed models (alone: `models list`).
    Models {
        #[command(subcommand)]
        action: Option<models::ModelsAction>,
    },
    /// Pull a model (same as `reelbox models pull`).
    Pull {
        /// A catalog name (`reelbox models list --available`) or a Piper voice as `piper:NAME`.
        name: String,
        /// Fetch again even when installed.
        #[arg(long)]
        force: bool,
        /// Accept the model's non-commercial licence (remembered; asked once per model).
        #[arg(long)]
        accept_license: bool,
    },
    /// List every Piper voice (`reelbox pull piper:NAME` installs one).
    Voices {
        #[command(subcommand)]
        action: Option<voices::VoicesAction>,
    },
    /// Remove an installed model (same as `reelbox models rm`).
    Rm {
        /// The installed model's name (`reelbox models list`).
        name: String,
        /// Remove it even though queued or running jobs name it (they fail).
        #[arg(long)]
        force: bool,
    },
    /// Say TEXT into a WAV file (on the daemon when one answers).
    Say(say::SayArgs),
    /// Draw PROMPT into a PNG file (on the daemon when one answers).
    // Boxed: its flags (the resize and the second pass) make it the largest by far.
    Image(Box<image::ImageArgs>),
    /// Render a script into a narrated, lip-synced, subtitled MP4.
    Render(render::RenderArgs),
    /// Make a picture or video larger with the upscale model.
    Upscale(upscale::UpscaleArgs),
    /// Lip-sync a portrait (photo or video) to a narration or to text it speaks.
    Lipsync(lipsync::LipsyncArgs),
    /// Render the bundled demo (runs setup first when pieces are missing).
    Demo(render::DemoArgs),
    /// Remove finished jobs and unused uploads older than `[retention]` allows, and files
    /// a crash left behind (on the daemon when one answers; needs an admin key there).
    Gc(gc::GcArgs),
    /// Create, list and revoke API keys (alone: `keys list`).
    Keys {
        #[command(subcommand)]
        action: Option<keys::KeysAction>,
    },
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Write man pages (reelbox.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// `reelbox config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective config (file + environment + defaults) as TOML (JSON with --json).
    Show,
}

/// Entry point: runs the command and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    settle_url(&mut cli.global, &matches);
    cli.global.hint = hint::Hint::of(&cli.global, &matches);
    cli.global.typed = typed_flags::TypedFlags::of(&matches);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reelbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reelbox: {}", reelbox::error_text::chain_text(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Neither --url nor REELBOX_URL given (`matches`): a daemon this box's config binds
/// elsewhere is the one meant, so `g.url` becomes the config's (or the config's error is kept).
fn settle_url(g: &mut Global, matches: &clap::ArgMatches) {
    if matches.value_source("url") == Some(clap::parser::ValueSource::DefaultValue) {
        match client::url_of_config(g.config.as_deref()) {
            Ok(Some(url)) => g.url = url,
            Ok(None) => {}
            Err(e) => g.config_error = Some(reelbox::error_text::chain_text(&e)),
        }
    }
}

/// Exit status of a daemon (`serve`, `worker`) that cannot start because of its settings:
/// sysexits' `EX_CONFIG`. The units name it in `RestartPreventExitStatus=`, so systemd stops
/// instead of restarting the service every few seconds until someone edits the config.
const EXIT_CONFIG: u8 = 78;

/// Says a daemon's settings error as `main` says any error, and exits with [`EXIT_CONFIG`].
fn config_failure(e: &anyhow::Error) -> ExitCode {
    eprintln!("reelbox: {}", reelbox::error_text::chain_text(e.as_ref()));
    ExitCode::from(EXIT_CONFIG)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Serve(args) => serve::run(&g, args).await,
        Command::Worker(args) => worker::run(&g, args).await,
        Command::Cluster { action } => cluster::run(&g, action).await,
        Command::Config { action: None | Some(ConfigAction::Show) } => {
            let config = reelbox::config::Config::load(g.config.as_deref())?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&config)?);
            } else {
                print!("{}", config.to_toml());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { action } => jobs::run(&g, action.unwrap_or_default()).await,
        Command::Submit(args) => jobs::submit(&g, args).await,
        Command::Queue { action } => jobs::queue(&g, action).await,
        Command::Profiles { action } => profiles::run(&g, action.unwrap_or_default()).await,
        Command::Top(args) => top::run(&g, args).await,
        Command::Status => status::run(&g).await,
        Command::Bench { what } => bench::run(&g, what).await,
        Command::Setup(args) => setup::run_setup(&g, args).await,
        Command::Doctor(args) => setup::run_doctor(&g, args),
        Command::Models { action } => models::run(&g, action.unwrap_or_default()).await,
        Command::Pull { name, force, accept_license } => {
            models::run(&g, models::ModelsAction::Pull { name, force, accept_license }).await
        }
        Command::Voices { action } => voices::run(&g, action.unwrap_or_default()).await,
        Command::Rm { name, force } => models::run(&g, models::ModelsAction::Rm { name, force }).await,
        Command::Say(args) => say::run(&g, args).await,
        Command::Image(args) => image::run(&g, *args).await,
        Command::Render(args) => render::run(&g, args).await,
        Command::Upscale(args) => upscale::run(&g, args).await,
        Command::Lipsync(args) => lipsync::run(&g, args).await,
        Command::Demo(args) => render::demo(&g, args).await,
        Command::Keys { action } => keys::run(&g, action.unwrap_or_default()).await,
        Command::Gc(args) => gc::run(&g, args).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "reelbox", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            man::generate(<Cli as clap::CommandFactory>::command(), &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            if g.json {
                println!("{}", serde_json::json!({"version": env!("CARGO_PKG_VERSION")}));
            } else {
                println!("reelbox {}", env!("CARGO_PKG_VERSION"));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `reelbox jobs list | head`: once the reader has gone, `println!` (or `eprintln!` into a
/// closed pipe) panics with a broken pipe. That is the reader's choice, not a failure: exit
/// quietly with the shell's code for SIGPIPE (128 + 13), not a panic message and backtrace.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to std") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Initialises logging: human lines on a terminal, JSON when `REELBOX_LOG_FORMAT=json`,
/// and straight to journald, fields in the message and kept apart, when systemd runs us
/// (stderr is the `JOURNAL_STREAM`) or `REELBOX_LOG_FORMAT=journald`.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let asked = env::log_filter();
    let mut filter =
        asked.as_deref().and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    // symphonia logs an ERROR for every file its probe cannot read (`probe reach EOF`): a
    // user's upload that is not audio, which reelbox already answers with a 400. The probe
    // returns the same as an error, so its own line is only noise, unless asked for by name.
    if !asked.is_some_and(|f| f.contains("symphonia"))
        && let Ok(quiet) = "symphonia_core::probe=off".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let format = env::log_format();
    let journald = format == "journald" || (format.is_empty() && fd_is_journal(2));
    if journald {
        match journald::Journald::connect(std::path::Path::new(journald::JOURNALD_SOCKET), "reelbox") {
            Ok(layer) => {
                let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
                return;
            }
            Err(e) => eprintln!("reelbox: journald unavailable ({e}); logging to stderr"),
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// True when file descriptor `fd` (1 or 2) is the journal stream systemd gave us (not
/// merely inherited).
fn fd_is_journal(fd: u8) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = env::journal_stream() else { return false };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}
