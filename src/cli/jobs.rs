//! `reelbox jobs ...`, `reelbox submit` and `reelbox queue ...`: mirrors of the daemon's
//! job routes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use reelbox::api::jobs::JobPage;
use reelbox::api::views::JobView;
use reelbox::store::Removal;
use reelbox::store::records::JobStatus;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::follow::{Follow, follow};
use super::models::human_bytes;
use super::{Global, table};

/// `reelbox jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// List jobs, newest first.
    List {
        /// Only this state (queued, running, succeeded, failed, canceled).
        #[arg(long)]
        state: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one job with its stages.
    Show {
        /// The job id, or its last characters as `reelbox top` shows them.
        id: String,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job id, or its last characters as `reelbox top` shows them.
        id: String,
        /// Why, in a line (at most 200 characters): the job shows it. Without it the job
        /// says who canceled it.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Re-queue a failed or canceled job.
    Retry {
        /// The job id, or its last characters as `reelbox top` shows them.
        id: String,
    },
    /// Follow a job's progress until it ends.
    Watch {
        /// The job id, or its last characters as `reelbox top` shows them.
        id: String,
    },
    /// Delete finished jobs (succeeded, failed or canceled) with their files and events,
    /// freeing their disk space; files a profile or a queued job uses stay.
    Rm {
        /// Job ids, or their last characters as `reelbox top` shows them.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Save a finished job's results (a render's film and subtitles, an image job's
    /// pictures, ...) as files.
    Get {
        /// The job id, or its last characters as `reelbox top` shows them.
        id: String,
        /// Folder to save into.
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
        /// Every file of every stage (keyframes, narration, ...), also of a job that failed.
        #[arg(long)]
        all: bool,
        /// Replace files that are there.
        #[arg(long)]
        force: bool,
    },
}

/// Deletes each job in turn: one that cannot go (still running, not found) is said on
/// standard error and the rest still go; the exit status is 1 when any stayed.
async fn remove(c: &Client, g: &Global, ids: &[String]) -> anyhow::Result<ExitCode> {
    let mut removed = Vec::new();
    let mut failed = false;
    for given in ids {
        let removal = async {
            let id = super::job_ref::resolve(c, given).await?;
            let r = c.send::<Removal>(c.request(Method::DELETE, &format!("/api/v1/jobs/{id}"))).await?;
            anyhow::Ok((id, r))
        };
        match removal.await {
            Ok((id, r)) => {
                if !g.json {
                    let kept =
                        if r.kept_in_use > 0 { format!(" ({} kept: in use)", r.kept_in_use) } else { String::new() };
                    println!("removed {id}: {} files, {}{kept}", r.artifacts, human_bytes(r.bytes));
                }
                removed.push(json!({"id": id, "removed": r}));
            }
            Err(e) => {
                eprintln!("{given}: {e:#}");
                failed = true;
            }
        }
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&removed)?);
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `reelbox submit KIND --param k=v ...`
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Job kind (testcard, speech, image, render, ...).
    pub kind: String,
    /// A parameter as key=value; the value is read as JSON when it parses, else as text.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Idempotency key: submitting again with the same key returns the same job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Follow the job until it ends.
    #[arg(long)]
    pub wait: bool,
}

/// `reelbox queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Stop starting new jobs.
    Pause,
    /// Start jobs again.
    Resume,
}

/// Runs a `jobs` action.
pub async fn run(g: &Global, action: JobsAction) -> anyhow::Result<ExitCode> {
    let c = Client::new(g)?;
    let id = |given: String| {
        let c = &c;
        async move { super::job_ref::resolve(c, &given).await }
    };
    match action {
        JobsAction::List { state, kind, limit } => {
            let mut path = format!("/api/v1/jobs?limit={limit}");
            if let Some(s) = state {
                path.push_str(&format!("&state={s}"));
            }
            if let Some(k) = kind {
                path.push_str(&format!("&kind={k}"));
            }
            let page: JobPage = c.get(&path).await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                let rows: Vec<Vec<String>> = page
                    .jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.clone(),
                            j.kind.clone(),
                            j.state.to_string(),
                            j.priority.to_string(),
                            format!("{:.0}%", j.progress.fraction * 100.0),
                            j.created_at.clone(),
                            j.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table::print(&["ID", "KIND", "STATE", "PRIO", "PROGRESS", "CREATED", "ERROR/REASON"], &rows);
            }
        }
        JobsAction::Show { id: given } => {
            let id = id(given).await?;
            let job: JobView = c.get(&format!("/api/v1/jobs/{id}")).await?;
            print_job(g, &job)?;
        }
        JobsAction::Cancel { id: given, reason } => {
            let id = id(given).await?;
            let job: JobView = c.post(&format!("/api/v1/jobs/{id}/cancel"), &json!({"reason": reason})).await?;
            let job = settled(&c, job).await?;
            print_job(g, &job)?;
            if !job.state.is_terminal() {
                let note = "cancel requested; the running stage stops at its next step";
                if g.json { eprintln!("reelbox: {note}") } else { println!("{note}") }
            }
        }
        JobsAction::Retry { id: given } => {
            let id = id(given).await?;
            let job: JobView = c.post(&format!("/api/v1/jobs/{id}/retry"), &json!({})).await?;
            print_job(g, &job)?;
        }
        JobsAction::Watch { id: given } => return watch(&c, g, &id(given).await?).await,
        JobsAction::Rm { ids } => return remove(&c, g, &ids).await,
        JobsAction::Get { id: given, output, all, force } => {
            let id = id(given).await?;
            super::jobs_get::run(&c, g, super::jobs_get::GetArgs { id, dir: output, all, force }).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `jobs cancel` waits for a running job to reach its final state: a stage stops
/// at its next step, mostly well within a second.
const CANCEL_SETTLE: Duration = Duration::from_secs(5);

/// The job once its cancel has taken effect, or as it is after [`CANCEL_SETTLE`]: the
/// answer to a cancel is the running job, and "running" would read as refused.
async fn settled(c: &Client, mut job: JobView) -> anyhow::Result<JobView> {
    let t0 = Instant::now();
    while !job.state.is_terminal() && t0.elapsed() < CANCEL_SETTLE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = c.get(&format!("/api/v1/jobs/{}", job.id)).await?;
    }
    Ok(job)
}

/// Submits a job from `--param` pairs.
pub async fn submit(g: &Global, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(g)?;
    let mut params = serde_json::Map::new();
    for p in &args.params {
        let (k, v) = p.split_once('=').with_context(|| format!("--param {p:?} must be KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        params.insert(k.to_string(), value);
    }
    let body = json!({"kind": args.kind, "params": params, "priority": args.priority});
    let mut req = c.request(Method::POST, "/api/v1/jobs").json(&body);
    if let Some(k) = &args.idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let job: JobView = c.send(req).await?;
    if args.wait {
        if !g.json {
            eprintln!("submitted {}", job.id);
        }
        return watch(&c, g, &job.id).await;
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        println!("{}", job.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// Pauses or resumes the queue.
pub async fn queue(g: &Global, action: QueueAction) -> anyhow::Result<ExitCode> {
    let c = Client::new(g)?;
    let path = match action {
        QueueAction::Pause => "/api/v1/queue/pause",
        QueueAction::Resume => "/api/v1/queue/resume",
    };
    let v: Value = c.post(path, &json!({})).await?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", if v["paused"].as_bool() == Some(true) { "queue paused" } else { "queue running" });
    }
    Ok(ExitCode::SUCCESS)
}

fn print_job(g: &Global, job: &JobView) -> anyhow::Result<()> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(job)?);
        return Ok(());
    }
    println!("job      {}", job.id);
    println!("kind     {}", job.kind);
    println!("state    {}", job.state);
    println!("priority {}", job.priority);
    println!("attempts {}", job.attempts);
    println!("progress {:.0}%", job.progress.fraction * 100.0);
    if let Some(w) = &job.waiting {
        println!("waiting  {w}");
    }
    if let Some(e) = &job.error {
        // A canceled job's `error` is why it was canceled, not a fault.
        let label = if job.state == JobStatus::Canceled { "reason" } else { "error" };
        println!("{label:<8} {e}");
    }
    let rows: Vec<Vec<String>> = job
        .stages
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.state.to_string(),
                s.device.clone().unwrap_or_default(),
                s.started_at.clone().unwrap_or_default(),
                s.finished_at.clone().unwrap_or_default(),
                s.artifacts.join(","),
            ]
        })
        .collect();
    table::print(&["STAGE", "STATE", "DEVICE", "STARTED", "FINISHED", "ARTIFACTS"], &rows);
    Ok(())
}

/// Follows a job's event stream with its progress; exit code 1 unless it succeeded.
pub async fn watch(c: &Client, g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let job = follow(c, id, Follow { events_to_stdout: g.json, progress: !g.json }).await?;
    if !g.json {
        print_job(g, &job)?;
    }
    Ok(if job.state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
