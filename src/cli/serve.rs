//! `reelbox serve`: run the daemon until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelbox::config::Config;
use reelbox::daemon::Daemon;

use super::Global;

/// Arguments of `reelbox serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Data directory (database, artifacts, runtime).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Models directory.
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

/// Runs the daemon in the foreground.
pub async fn run(g: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let mut config = Config::load(g.config.as_deref())?;
    if let Some(b) = args.bind {
        config.bind = b;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(m) = args.models_dir {
        config.models_dir = Some(m);
    }
    let daemon = Daemon::start(config).await.context("cannot start the daemon")?;
    // The first stdout line tells scripts and tests where we listen.
    println!("reelbox listening on {}://{}", if daemon.tls { "https" } else { "http" }, daemon.addr);
    let _ = std::io::stdout().flush();
    notify(&[sd_notify::NotifyState::Ready]);
    wait_for_signal().await?;
    notify(&[sd_notify::NotifyState::Stopping]);
    daemon.stop().await;
    Ok(ExitCode::SUCCESS)
}

fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!("sd_notify: {e}");
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        r = tokio::signal::ctrl_c() => { r.context("cannot watch SIGINT")?; tracing::info!("SIGINT: shutting down") }
    }
    Ok(())
}
