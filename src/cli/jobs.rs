//! `reelbox jobs ...`, `reelbox submit` and `reelbox queue ...`: mirrors of the daemon's
//! job routes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reelbox::api::jobs::JobPage;
use reelbox::api::views::JobView;
use reelbox::store::Removal;
use reelbox::store::records::JobStatus;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
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
    Show { id: String },
    /// Cancel a queued or running job.
    Cancel {
        id: String,
        /// Why, in a line (at most 200 characters): the job shows it. Without it the job
        /// says who canceled it.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Re-queue a failed or canceled job.
    Retry { id: String },
    /// Follow a job's progress until it ends.
    Watch { id: String },
    /// Delete finished jobs (succeeded, failed or canceled) with their files and events,
    /// freeing their disk space; files a profile or a queued job uses stay.
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Save a finished job's results (a render's film and subtitles, an image job's
    /// pictures, ...) as files.
    Get {
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
    for id in ids {
        let req = c.request(Method::DELETE, &format!("/api/v1/jobs/{id}"));
        match c.send::<Removal>(req).await {
            Ok(r) => {
                if !g.json {
                    let kept =
                        if r.kept_in_use > 0 { format!(" ({} kept: in use)", r.kept_in_use) } else { String::new() };
                    println!("removed {id}: {} files, {}{kept}", r.artifacts, human_bytes(r.bytes));
                }
                removed.push(json!({"id": id, "removed": r}));
            }
            Err(e) => {
                eprintln!("{id}: {e:#}");
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
        JobsAction::Show { id } => {
            let job: JobView = c.get(&format!("/api/v1/jobs/{id}")).await?;
            print_job(g, &job)?;
        }
        JobsAction::Cancel { id, reason } => {
            let job: JobView = c.post(&format!("/api/v1/jobs/{id}/cancel"), &json!({"reason": reason})).await?;
            print_job(g, &job)?;
        }
        JobsAction::Retry { id } => {
            let job: JobView = c.post(&format!("/api/v1/jobs/{id}/retry"), &json!({})).await?;
            print_job(g, &job)?;
        }
        JobsAction::Watch { id } => return watch(&c, g, &id).await,
        JobsAction::Rm { ids } => return remove(&c, g, &ids).await,
        JobsAction::Get { id, output, all, force } => {
            super::jobs_get::run(&c, g, super::jobs_get::GetArgs { id, dir: output, all, force }).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// Follows a job's event stream with a progress bar; exit code 1 unless it succeeded.
pub async fn watch(c: &Client, g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let job = follow(c, id, Follow { events_to_stdout: g.json, bar: !g.json }).await?;
    if !g.json {
        print_job(g, &job)?;
    }
    Ok(if job.state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How [`follow`] shows a job's progress.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Print every event as a JSON line on stdout.
    pub events_to_stdout: bool,
    /// Draw a progress bar on stderr.
    pub bar: bool,
}

/// Follows a job's event stream until it ends and returns the final job. The stream is
/// resumed with `Last-Event-ID` when it drops before the job ends.
pub async fn follow(c: &Client, id: &str, how: Follow) -> anyhow::Result<JobView> {
    let bar = if how.bar { ProgressBar::new(1) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // The stage names, so the bar can say "stage 3 of 7" (a job of one stage says its name),
    // and, while the job waits its turn, that it does and why.
    let view = c.get::<JobView>(&format!("/api/v1/jobs/{id}")).await.ok();
    if let Some(v) = view.as_ref().filter(|v| v.state == JobStatus::Queued) {
        bar.set_prefix("queued");
        bar.set_message(v.waiting.clone().unwrap_or_else(|| "waiting for the jobs ahead of it".into()));
    }
    let stages: Vec<String> = view.map(|j| j.stages.into_iter().map(|s| s.name).collect()).unwrap_or_default();
    let mut last_id: Option<String> = None;
    let mut final_state: Option<String> = None;
    for _attempt in 0..20 {
        let mut req = c.request(Method::GET, &format!("/api/v1/jobs/{id}/events"));
        if let Some(l) = &last_id {
            req = req.header("Last-Event-ID", l);
        }
        let resp = match c.send_raw(req).await {
            Ok(r) => r,
            Err(e) if last_id.is_some() => {
                bar.set_message(format!("reconnecting: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut stream = resp.bytes_stream();
        let mut parser = reelbox::api::sse::SseParser::default();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            for msg in parser.push(&chunk) {
                if msg.id.is_some() {
                    last_id = msg.id;
                }
                let Ok(ev) = serde_json::from_str::<Value>(&msg.data) else { continue };
                if how.events_to_stdout {
                    println!("{ev}");
                }
                if let Some(s) = show_event(&bar, &stages, &ev) {
                    final_state = Some(s);
                }
            }
            if final_state.is_some() {
                break;
            }
        }
        if final_state.is_some() {
            break;
        }
    }
    bar.finish_and_clear();
    c.get(&format!("/api/v1/jobs/{id}")).await
}

/// "stage 3/7 narration" for a job of several stages, the name alone for one.
fn stage_label(stages: &[String], stage: &str) -> String {
    let name = stage.replace('_', " ");
    match stages.iter().position(|s| s == stage) {
        Some(i) if stages.len() > 1 => format!("stage {}/{} {name}", i + 1, stages.len()),
        _ => name,
    }
}

/// Shows one event on the bar; returns the job's final state when the event ends it.
fn show_event(bar: &ProgressBar, stages: &[String], ev: &Value) -> Option<String> {
    match ev["type"].as_str() {
        Some("progress") => {
            bar.set_prefix(stage_label(stages, ev["stage"].as_str().unwrap_or("")));
            bar.set_length(ev["total"].as_u64().unwrap_or(1).max(1));
            bar.set_position(ev["step"].as_u64().unwrap_or(0));
            // What the stage is at ("scene 2/3: step 4/25"), and how long it has left.
            let what = ev["message"].as_str().filter(|m| !m.is_empty() && !stages.iter().any(|s| s == m));
            // Time left at the stage's pace so far (the bar is reset when a stage starts).
            let (pos, len) = (bar.position(), bar.length().unwrap_or(1));
            let eta = match pos {
                0 => String::new(),
                _ => {
                    let left = bar.elapsed().as_secs_f64() * (len.saturating_sub(pos)) as f64 / pos as f64;
                    format!("about {}s left in this stage", left.ceil())
                }
            };
            bar.set_message(
                [what.unwrap_or(""), &eta].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", "),
            );
        }
        Some("stage") if ev["state"] == "running" => {
            // A new stage starts its bar (and its time left) from zero.
            bar.reset();
            bar.set_length(1);
            bar.set_prefix(stage_label(stages, ev["stage"].as_str().unwrap_or("")));
            bar.set_message("");
        }
        Some("stage") => {}
        Some("log") => {
            bar.println(format!("{}: {}", ev["level"].as_str().unwrap_or(""), ev["message"].as_str().unwrap_or("")))
        }
        Some("state") => {
            let s = ev["state"].as_str().unwrap_or("");
            if ["succeeded", "failed", "canceled"].contains(&s) {
                return Some(s.to_string());
            }
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_says_which_stage_of_how_many_in_words() {
        let stages: Vec<String> = ["plan", "keyframes", "narration", "talking_head"].map(String::from).to_vec();
        assert_eq!(stage_label(&stages, "talking_head"), "stage 4/4 talking head");
        assert_eq!(stage_label(&stages[..1], "plan"), "plan", "one stage needs no count");
        assert_eq!(stage_label(&stages, "new_stage"), "new stage", "a stage this CLI does not know");
    }

    #[test]
    fn progress_shows_what_the_stage_is_at_and_a_new_stage_starts_from_zero() {
        let bar = ProgressBar::hidden();
        let stages: Vec<String> = ["plan", "keyframes"].map(String::from).to_vec();
        let progress = json!({"type": "progress", "stage": "keyframes", "step": 1, "total": 3,
                              "message": "scene 1/3: step 8/8"});
        show_event(&bar, &stages, &progress);
        assert_eq!(bar.prefix(), "stage 2/2 keyframes");
        assert!(bar.message().starts_with("scene 1/3: step 8/8, about "), "{}", bar.message());
        show_event(&bar, &stages, &json!({"type": "stage", "stage": "plan", "state": "running"}));
        assert_eq!((bar.position(), bar.prefix(), bar.message()), (0, "stage 1/2 plan".to_string(), String::new()));
        let done = json!({"type": "state", "state": "succeeded"});
        assert_eq!(show_event(&bar, &stages, &done).as_deref(), Some("succeeded"));
    }
}
