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

/// The daemon's config, flags over the file; an error here is the settings', which a
/// restart does not mend.
fn settings(g: &Global, args: ServeArgs) -> anyhow::Result<Config> {
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
    reelbox::setup::owner::check_not_root_over(&config, "serve")?;
    reelbox::setup::owner::check_servable(&config.data_dir)?;
    Ok(config)
}

/// Runs the daemon in the foreground.
pub async fn run(g: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let config = match settings(g, args) {
        Ok(c) => c,
        Err(e) => return Ok(super::config_failure(&e)),
    };
    let daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) if e.is_config() => {
            return Ok(super::config_failure(&anyhow::Error::new(e).context("cannot start the daemon")));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot start the daemon")),
    };
    // The first stdout line tells scripts and tests where we listen. Under systemd stdout is
    // the journal, where the log already says it: once is enough there.
    if !super::fd_is_journal(1) {
        println!("reelbox listening on {}://{}", if daemon.tls { "https" } else { "http" }, daemon.addr);
        let _ = std::io::stdout().flush();
    }
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(daemon.scheduler.store().clone());
    wait_for_signal().await?;
    if let Some(w) = watchdog {
        w.abort();
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    daemon.stop().await;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Pings systemd's watchdog at half its interval while the store still answers, so a
/// wedged daemon (store writer stuck, runtime starved) is restarted by `Restart=on-failure`.
fn spawn_watchdog(store: reelbox::store::Store) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = std::time::Duration::from_micros(usec / 2);
    tracing::info!(interval_ms = period.as_millis() as u64, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.queued_len()).await {
                Ok(Ok(_)) => notify(&[sd_notify::NotifyState::Watchdog]),
                Ok(Err(e)) => tracing::error!("watchdog: store does not answer ({e}); not pinging"),
                Err(e) => tracing::error!("watchdog: check panicked ({e}); not pinging"),
            }
        }
    }))
}

pub(super) async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        r = tokio::signal::ctrl_c() => { r.context("cannot watch SIGINT")?; tracing::info!("SIGINT: shutting down") }
    }
    Ok(())
}
