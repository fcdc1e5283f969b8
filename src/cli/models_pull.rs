//! `reelbox pull NAME`: into the configured models dir from this process, or as the
//! daemon's `model_pull` job when the daemon answers and either this user may not write
//! there (the packaged service's dir: no `sudo` needed to add a model to the service) or
//! the daemon keeps its models in another dir (another box, or a daemon started with its
//! own `--data-dir`), where a pull here would install what it never sees.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use reelbox::api::models::ModelList;
use reelbox::api::system::SystemView;
use reelbox::api::views::ArtifactView;
use reelbox::client::ClientError;
use reelbox::config::Config;
use reelbox::models::{ModelStore, PullProgress};
use reqwest::StatusCode;

use super::Global;
use super::backend::run_job;
use super::client::Client;

/// Pulls model `name` into this process's models dir with a byte progress bar.
pub async fn pull(g: &Global, store: &ModelStore, name: &str, force: bool) -> anyhow::Result<ExitCode> {
    let bar = if g.json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = |p: PullProgress| {
        bar.set_length(p.total);
        bar.set_position(p.done);
        bar.set_message(format!("{} {}", p.model, p.file));
    };
    let result = store.pull(name, force, &progress).await;
    bar.finish_and_clear();
    let report = result?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.already_installed {
        println!("{name} is already installed at {}", report.dir.display());
    } else {
        println!("{name} installed at {}", report.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the daemon `c` keeps its models in another dir than `config` names here, as
/// `GET /api/v1/system` tells its identity (`disk::dir_identity`); `false` when either
/// side cannot tell (a daemon from before it said, one that refuses this caller).
pub async fn models_elsewhere(c: &Client, config: &Config) -> bool {
    let Some(ours) = reelbox::disk::dir_identity(&config.models_dir()) else { return false };
    match c.get::<SystemView>("/api/v1/system").await {
        Ok(system) => system.disk.models_dir_id.is_some_and(|theirs| theirs != ours),
        Err(e) => {
            tracing::debug!("cannot tell the daemon's models dir: {e}");
            false
        }
    }
}

/// Why the daemon, not this process, writes the models a pull installs.
#[derive(Debug, Clone, Copy)]
pub enum PullsThere {
    /// This user may not write the models dir (the packaged service's).
    ServiceDir,
    /// The daemon's models dir is another one than this login's ([`models_elsewhere`]).
    OtherDir,
}

/// Has the daemon `c` pull those of `names` it has not installed (`reelbox demo`'s models
/// beside a daemon whose models dir this login does not set up).
pub async fn pull_missing(g: &Global, c: &Client, names: &[&str], why: PullsThere) -> anyhow::Result<()> {
    let theirs: ModelList = c.get("/api/v1/models").await?;
    for name in names {
        if !theirs.models.iter().any(|m| m.name == *name && m.state == "installed") {
            through_daemon(g, c, name, false, false, why).await?;
        }
    }
    Ok(())
}

/// Pulls `name` as the daemon's `model_pull` job (the daemon writes its own models dir),
/// following its progress; prints what a local pull prints.
pub async fn through_daemon(
    g: &Global,
    c: &Client,
    name: &str,
    force: bool,
    accept_license: bool,
    why: PullsThere,
) -> anyhow::Result<ExitCode> {
    if !g.json {
        let why = match why {
            PullsThere::ServiceDir => "the models dir is the service's",
            PullsThere::OtherDir => "the daemon keeps its models in another dir than this login's",
        };
        eprintln!("reelbox: {why}; the daemon at {} pulls {name}", c.base());
    }
    let body = serde_json::json!({"name": name, "force": force, "accept_license": accept_license});
    let job = run_job(c, g, "/api/v1/models/pull", &body, None).await.map_err(|e| {
        match e.downcast_ref::<ClientError>() {
            // A box with keys takes pulls from admin keys only; root may still pull itself.
            Some(ClientError::Status { status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, .. }) => {
                anyhow!("{e}; pull with an admin key (REELBOX_KEY), or as root: `sudo reelbox pull {name}`")
            }
            _ => e,
        }
    })?;
    let artifacts: Vec<ArtifactView> = c.get(&format!("/api/v1/jobs/{}/artifacts", job.id)).await?;
    let report = artifacts
        .iter()
        .find(|a| a.name == "pull.json")
        .ok_or_else(|| anyhow!("the daemon's pull job {} left no pull.json", job.id))?;
    let report: serde_json::Value = c.get(&report.url).await?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dir = report["dir"].as_str().unwrap_or("the daemon's models dir");
    if report["already_installed"] == true {
        println!("{name} is already installed at {dir}");
    } else {
        println!("{name} installed at {dir}");
    }
    Ok(ExitCode::SUCCESS)
}
