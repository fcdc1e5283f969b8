//! `reelbox worker`: join a head's cluster and run the stages it hands out, until
//! SIGTERM/SIGINT. Settings come from `[cluster]` (with `role = "worker"`) and the flags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelbox::config::{ClusterConfig, ClusterRole, Config};
use tokio_util::sync::CancellationToken;

use super::Global;

/// Arguments of `reelbox worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The head's NATS server (`nats://HEAD:4222`); default `[cluster] nats_url`.
    #[arg(long)]
    pub join: Option<String>,
    /// This box's name in device names (`NAME/cuda:0`); default `[cluster] name`, else the hostname.
    #[arg(long)]
    pub name: Option<String>,
    /// Data directory (models, scratch space).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Models directory (default `<data-dir>/models`).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(long)]
    pub creds: Option<PathBuf>,
}

/// The effective `[cluster]` of a worker: the config's, with the flags over it.
fn cluster_of(config: &Config, args: &WorkerArgs) -> anyhow::Result<ClusterConfig> {
    let mut cluster = config.cluster.clone().unwrap_or_default();
    if config.cluster.is_none() && args.join.is_none() {
        // reelbox-worker.service enabled on a box not yet set up for it lands here.
        anyhow::bail!(
            "no head to work for: give --join nats://HEAD:4222, or add a [cluster] section with \
             role = \"worker\" and nats_url = \"nats://HEAD:4222\" to the config \
             (/etc/reelbox/config.toml for reelbox-worker.service; README \"More than one box\")"
        );
    }
    cluster.role = ClusterRole::Worker;
    if let Some(url) = &args.join {
        cluster.nats_url = url.clone();
    }
    if let Some(name) = &args.name {
        cluster.name = Some(name.clone());
    }
    if let Some(creds) = &args.creds {
        cluster.creds = Some(creds.clone());
        cluster.token = None;
        cluster.nkey = None;
    }
    if let Err(e) = cluster.check() {
        // Name the flag the user typed, not the config key it overrode.
        let flag = match e.key {
            "nats_url" if args.join.is_some() => "--join",
            "name" if args.name.is_some() => "--name",
            _ => return Err(e).context("invalid cluster settings"),
        };
        anyhow::bail!("{flag}: {}", e.reason);
    }
    Ok(cluster)
}

/// The worker's config and `[cluster]`, flags over the file; an error here is the
/// settings', which a restart does not mend.
fn settings(g: &Global, args: &WorkerArgs) -> anyhow::Result<(Config, ClusterConfig)> {
    let mut config = Config::load(g.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(m) = &args.models_dir {
        config.models_dir = Some(m.clone());
    }
    let cluster = cluster_of(&config, args)?;
    reelbox::setup::owner::check_not_root_over(&config, "worker")?;
    Ok((config, cluster))
}

/// Runs a worker box in the foreground.
pub async fn run(g: &Global, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let (mut config, cluster) = match settings(g, &args) {
        Ok(s) => s,
        Err(e) => return Ok(super::config_failure(&e)),
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    reelbox::config::exposure::warn_if_exposed(&config);
    // A worker holds no API keys: none of the head's secrets are in its config or on the wire.
    config.cluster = Some(cluster.clone());
    // Started, not joined yet: the log says "worker joined the cluster" (or why it waits).
    let name = reelbox::cluster::box_name(&cluster).map(|n| n.to_string()).unwrap_or_default();
    let joining = format!("reelbox worker started: joining {} as {name}", cluster.nats_url);
    let stop = CancellationToken::new();
    let mut worker = tokio::spawn(reelbox::cluster::worker::run(config, cluster, stop.clone()));
    println!("{joining}");
    super::serve::notify(&[sd_notify::NotifyState::Ready]);
    let ended = tokio::select! {
        r = super::serve::wait_for_signal() => {
            r?;
            super::serve::notify(&[sd_notify::NotifyState::Stopping]);
            stop.cancel();
            worker.await
        }
        // The worker stops by itself only when it cannot work (no NATS, bad settings).
        ended = &mut worker => ended,
    };
    ended.context("worker task failed")?.context("worker failed")?;
    Ok(ExitCode::SUCCESS)
}
