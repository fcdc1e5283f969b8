//! `reelbox jobs ...`, `reelbox submit` and `reelbox queue ...`: mirrors of the daemon's
//! job routes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use reelbox::api::jobs::JobPage;
use reelbox::api::views::JobView;
use reelbox::store::Removal;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::follow::{Follow, follow};
use super::models::human_bytes;
use super::{Global, table};

#[path = "jobs_show.rs"]
mod show;
use show::print_job;

/// How many jobs `reelbox jobs list` lists unless told.
const LIST_LIMIT: usize = 50;

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
        #[arg(long, default_value_t = LIST_LIMIT)]
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
    /// Re-queue a failed or canceled job (a render from its last finished stage).
    Retry {
        /// The job id, or its last characters as `reelbox top` shows them.
        id: String,
        /// Follow the job until it ends, as `reelbox render` does (Ctrl-C cancels it again).
        #[arg(long)]
        wait: bool,
        /// Save the render's film here once it is done (subtitles beside it); implies --wait.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace the film and subtitle files that are there.
        #[arg(long)]
        force: bool,
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
        /// Folder to save into (made when it is not there).
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

/// `reelbox jobs` alone: the newest jobs, as `jobs list` lists them.
impl Default for JobsAction {
    fn default() -> Self {
        Self::List { state: None, kind: None, limit: LIST_LIMIT }
    }
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
            show::show(&c, g, &job).await?;
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
        JobsAction::Retry { id: given, wait, output, force } if wait || output.is_some() => {
            return retry_and_wait(g, &given, output.as_deref(), force).await;
        }
        JobsAction::Retry { id: given, .. } => {
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

/// `jobs retry --wait` / `-o FILE`: retries the job, follows it as `reelbox render` does and
/// saves a render's film to `output`. Without a daemon it runs one here on the data dir (the
/// job a render there made is in it), as `reelbox render` did.
async fn retry_and_wait(g: &Global, given: &str, output: Option<&Path>, force: bool) -> anyhow::Result<ExitCode> {
    if let Some(path) = output {
        super::render::check_film_output(path, force)?;
    }
    let reach = super::backend::Reach::new(g).await?;
    let c = &reach.client;
    let result = async {
        let id = super::job_ref::resolve(c, given).await?;
        if output.is_some() {
            let job: JobView = c.get(&format!("/api/v1/jobs/{id}")).await?;
            if job.kind != "render" {
                anyhow::bail!(
                    "-o FILE saves a render's film, and job {id} is a {} job: `{}`, then `{}` saves its files",
                    job.kind,
                    c.command(&format!("jobs retry {id} --wait")),
                    c.command(&format!("jobs get {id} -o DIR"))
                );
            }
        }
        // Followed from the retry on: the earlier try's stages are not shown again.
        let (job, after) = super::follow::retry(c, &id).await?;
        if !g.json {
            eprintln!("job {id} queued again on {}", c.place());
        }
        let job = super::backend::follow_job(c, g, &job.id, output, after).await?;
        match output {
            Some(path) => super::render::save_film(c, g, &job, path).await,
            None => print_job(g, &job),
        }
    }
    .await;
    reach.close().await;
    result.map(|_| ExitCode::SUCCESS)
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

/// Follows a job's event stream with its progress; exit code 1 unless it succeeded.
pub async fn watch(c: &Client, g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let job = follow(c, id, Follow { events_to_stdout: g.json, progress: !g.json }).await?;
    if !g.json {
        print_job(g, &job)?;
    }
    Ok(if job.state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
