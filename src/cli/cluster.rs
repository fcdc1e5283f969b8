//! `reelbox cluster status`: the worker boxes as their heartbeats describe them, read
//! straight from the NATS server's heartbeat bucket (works on the head or any box that
//! can reach NATS with the `[cluster]` credentials).

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reelbox::cluster::Bus;
use reelbox::config::Config;

use super::Global;

/// `reelbox cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Boxes, their devices, free GPU memory, running stages and last heartbeat.
    Status {
        /// The NATS server; default `[cluster] nats_url`.
        #[arg(long)]
        nats: Option<String>,
    },
}

/// Runs a `cluster` subcommand.
pub async fn run(g: &Global, action: ClusterAction) -> anyhow::Result<ExitCode> {
    let ClusterAction::Status { nats } = action;
    let config = Config::load(g.config.as_deref())?;
    if config.cluster.is_none() && nats.is_none() {
        anyhow::bail!("--nats: give the NATS server (nats://HEAD:4222), or set [cluster] nats_url");
    }
    let mut cluster = config.cluster.unwrap_or_default();
    if let Some(url) = nats {
        cluster.nats_url = url;
    }
    let bus =
        tokio::time::timeout(std::time::Duration::from_secs(15), Bus::connect(&cluster, "reelbox cluster status"))
            .await
            .with_context(|| format!("no answer from NATS at {}", cluster.nats_url))??;
    let boxes = bus.adverts().await.context("cannot read the heartbeat bucket")?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&boxes)?);
        return Ok(ExitCode::SUCCESS);
    }
    if boxes.is_empty() {
        println!("no worker boxes (none sent a heartbeat within {} s)", cluster.heartbeat_ttl_s);
        return Ok(ExitCode::SUCCESS);
    }
    let now = reelbox::time::now_ms();
    let mut rows = Vec::new();
    for b in &boxes {
        for d in &b.devices {
            let running: Vec<String> = b
                .running
                .iter()
                .filter(|r| r.device == d.device)
                .map(|r| format!("{} {}", r.key.job, r.stage))
                .collect();
            let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
            rows.push(vec![
                b.host.clone(),
                format!("{}/{}", b.host, d.device),
                d.name.clone(),
                d.slots.to_string(),
                opt(d.free_mib),
                opt(d.total_mib),
                d.util.map_or_else(|| "-".into(), |u| format!("{u}%")),
                if running.is_empty() { "-".into() } else { running.join(", ") },
                format!("{:.1}s ago", (now - b.at_ms) as f64 / 1000.0),
            ]);
        }
    }
    super::table::print(
        &["BOX", "DEVICE", "NAME", "SLOTS", "FREE MIB", "TOTAL MIB", "UTIL", "RUNNING", "HEARTBEAT"],
        &rows,
    );
    for b in &boxes {
        println!(
            "{}: reelbox {}, models: {}",
            b.host,
            b.version,
            if b.models.is_empty() { "-".into() } else { b.models.join(", ") }
        );
    }
    Ok(ExitCode::SUCCESS)
}
