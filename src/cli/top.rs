//! `reelbox top`: the terminal dashboard (the library's `tui` module does the work).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::Global;

/// Arguments of `reelbox top` (`--url` and `--key` are the global options).
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Watch only: cancel, retry, pause and priority keys are off.
    #[arg(long)]
    pub readonly: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub refresh: f64,
}

/// Runs the dashboard.
pub async fn run(g: &Global, args: TopArgs) -> anyhow::Result<ExitCode> {
    if !(0.1..=60.0).contains(&args.refresh) {
        bail!("--refresh must be between 0.1 and 60 seconds, got {}", args.refresh);
    }
    reelbox::tui::run(reelbox::tui::TopOptions {
        url: super::client::daemon_url(g)?.to_string(),
        key: g.key.clone(),
        cacert: g.cacert.clone(),
        readonly: args.readonly,
        refresh: Duration::from_secs_f64(args.refresh),
        reelbox: g.hint.reelbox(),
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
