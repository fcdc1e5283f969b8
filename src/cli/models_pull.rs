//! `reelbox pull NAME`: into the configured models dir from this process, or, when this
//! user may not write there (the packaged service's dir) and the daemon answers, as the
//! daemon's `model_pull` job, so a user needs no `sudo` to add a model to the service.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use reelbox::api::views::ArtifactView;
use reelbox::client::ClientError;
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

/// Pulls `name` as the daemon's `model_pull` job (the daemon writes its own models dir),
/// following its progress; prints what a local pull prints.
pub async fn through_daemon(
    g: &Global,
    c: &Client,
    name: &str,
    force: bool,
    accept_license: bool,
) -> anyhow::Result<ExitCode> {
    if !g.json {
        eprintln!("reelbox: the models dir is the service's; the daemon at {} pulls {name}", c.base());
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
