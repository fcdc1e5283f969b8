//! `reelbox bench render`: where the demo render's wall time goes. Each stage's wall time
//! is set beside the time spent inside model runs and blocked on ffmpeg; the overhead is
//! wall / (model + ffmpeg), overlaps counted once. The render runs in a daemon started in
//! this process (the spans are kept here) on a temporary data dir over the installed models.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Args;
use reelbox::busy::{self, Busy, Span};
use reelbox::config::Config;
use reelbox::store::records::{Job, JobState, StageState};
use serde_json::json;

use super::Global;
use super::backend::{Reach, run_job, save_artifacts};
use super::render::{demo_inputs, demo_request, setup_demo};

/// Arguments of `reelbox bench render`.
#[derive(Debug, Args)]
pub struct BenchRenderArgs {
    /// Renders to measure; the first one also loads the models (cold), later ones are warm.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Keep the last run's film here.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
}

/// One row of the table: a stage or the whole render.
struct Row {
    name: String,
    wall_s: f64,
    model_s: f64,
    ffmpeg_s: f64,
    busy_s: f64,
}

impl Row {
    fn new(name: &str, spans: &[Span], from_ms: i64, to_ms: i64) -> Self {
        let (a, b) = (from_ms * 1000, to_ms * 1000);
        Row {
            name: name.to_string(),
            wall_s: (to_ms - from_ms).max(0) as f64 / 1000.0,
            model_s: busy::covered(spans, Some(Busy::Model), a, b),
            ffmpeg_s: busy::covered(spans, Some(Busy::Ffmpeg), a, b),
            busy_s: busy::covered(spans, None, a, b),
        }
    }

    /// Wall time over busy time; `None` for a stage that neither runs a model nor ffmpeg.
    fn overhead(&self) -> Option<f64> {
        (self.busy_s > 0.0).then(|| self.wall_s / self.busy_s)
    }

    fn json(&self) -> serde_json::Value {
        json!({"stage": self.name, "wall_s": self.wall_s, "model_s": self.model_s, "ffmpeg_s": self.ffmpeg_s,
               "busy_s": self.busy_s, "overhead": self.overhead()})
    }
}

fn rows(job: &Job, spans: &[Span]) -> anyhow::Result<Vec<Row>> {
    let JobState::Succeeded { started_at, finished_at } = job.state else {
        return Err(anyhow!("render {} ended {}", job.id, job.state.name()));
    };
    let mut out: Vec<Row> = job
        .stages
        .iter()
        .filter_map(|s| match s.state {
            StageState::Done { started_at, finished_at, .. } => {
                Some(Row::new(s.name.as_str(), spans, started_at, finished_at))
            }
            _ => None,
        })
        .collect();
    out.push(Row::new("total", spans, started_at, finished_at));
    Ok(out)
}

fn print_table(title: &str, rows: &[Row]) {
    println!("{title}");
    println!("{:<14} {:>8} {:>8} {:>9} {:>8} {:>9}", "stage", "wall s", "model s", "ffmpeg s", "other s", "overhead");
    for r in rows {
        let overhead = r.overhead().map_or_else(|| "-".to_string(), |o| format!("{o:.3}"));
        println!(
            "{:<14} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>9}",
            r.name,
            r.wall_s,
            r.model_s,
            r.ffmpeg_s,
            r.wall_s - r.busy_s,
            overhead
        );
    }
}

/// Runs `reelbox bench render`.
pub async fn run(g: &Global, a: BenchRenderArgs) -> anyhow::Result<ExitCode> {
    let inputs = demo_inputs()?;
    let mut config = Config::load(g.config.as_deref())?;
    setup_demo(&config, &inputs).await?;
    let runtime = reelbox::engine::runtime::find(&config, reelbox::config::env::ort_dylib_path())?;
    config.runtime.onnxruntime = Some(runtime.path);
    config.models_dir = Some(config.models_dir());
    let data = tempfile::tempdir().context("cannot make a temporary data dir")?;
    config.data_dir = data.path().to_path_buf();
    let reach = Reach::start(g, config).await?;
    let (c, daemon) = (&reach.client, reach.own().ok_or_else(|| anyhow!("the benchmark daemon is not running"))?);
    let quiet = Global { json: true, ..g.clone() };

    busy::record(true);
    let result = async {
        let mut report = Vec::new();
        for i in 1..=a.runs.max(1) {
            let body = demo_request(c, &inputs).await?;
            let view = run_job(c, &quiet, "/api/v1/renders", &body, None).await?;
            let id = view.id.parse().map_err(|_| anyhow!("the daemon answered a bad job id {}", view.id))?;
            let job = daemon.scheduler.store().job(id)?.ok_or_else(|| anyhow!("render {id} vanished"))?;
            let table = rows(&job, &busy::spans())?;
            let title = if i == 1 { "cold: the first render also loads its models" } else { "warm" };
            if !g.json {
                print_table(&format!("run {i} ({title}), demo render {}", job.id), &table);
                println!();
            }
            report.push(
                json!({"run": i, "job": job.id.to_string(), "stages": table.iter().map(Row::json).collect::<Vec<_>>()}),
            );
            if i == a.runs.max(1)
                && let Some(out) = &a.output
            {
                save_artifacts(c, &view, out, |x| x.name == "film.mp4").await?;
            }
        }
        Ok::<_, anyhow::Error>(report)
    }
    .await;
    busy::record(false);
    reach.close().await;
    let report = result?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("overhead = wall / (model run + ffmpeg wait), overlaps counted once; goal <= 1.15");
    }
    Ok(ExitCode::SUCCESS)
}
