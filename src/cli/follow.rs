//! Following a job to its end, as `jobs watch`, `submit --wait` and every command that runs
//! a job (`render`, `image`, ...) do: a progress bar on a terminal, one plain line per stage
//! elsewhere (a script, a pipe, cron), every event as JSON with `--json`. A box that stops
//! answering (a restart, a reboot, an upgrade) is waited for, not given up on: the job is
//! the box's and goes on there, so the follower picks its stream up again where it broke.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reelbox::api::views::JobView;
use reelbox::store::records::JobStatus;
use reqwest::Method;
use serde_json::Value;

use super::client::{Client, no_answer};

/// How long a follower waits for a box that stopped answering: a restart takes seconds, a
/// reboot or an upgrade minutes.
const OUTAGE_WAIT: Duration = Duration::from_secs(600);
/// How often a box that does not answer is asked again, and how long each ask may take.
const OUTAGE_POLL: Duration = Duration::from_secs(2);
/// A stream silent this long is dead: the daemon sends a keep-alive every 15 s, and a box
/// that lost power sends nothing that would end the connection.
const SILENT_STREAM: Duration = Duration::from_secs(45);
/// Streams in a row that may end with nothing new before the follower stops: the daemon
/// ends a job's stream only after its final state, or when it stops (then it does not answer).
const EMPTY_STREAMS: u32 = 20;

/// How [`follow`] shows a job's progress.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Print every event as a JSON line on stdout.
    pub events_to_stdout: bool,
    /// Show progress on stderr: a bar on a terminal, a plain line per stage elsewhere.
    pub progress: bool,
}

/// Follows a job's event stream until it ends and returns the final job. A stream that
/// drops before the job ends is resumed with `Last-Event-ID`; a box that stops answering
/// is waited for (said once on stderr) up to [`OUTAGE_WAIT`].
pub async fn follow(c: &Client, id: &str, how: Follow) -> anyhow::Result<JobView> {
    follow_after(c, id, how, None).await
}

/// [`follow`] from after event `after` (an id of the job's stream) on: a retried job's
/// stream holds its earlier tries, which a follower of the retry must not show again.
pub async fn follow_after(c: &Client, id: &str, how: Follow, after: Option<String>) -> anyhow::Result<JobView> {
    let progress = Progress::new(how.progress);
    // The stage names, so progress can say "stage 3 of 7" (a job of one stage says its
    // name), and, while the job waits its turn, that it does and why.
    let view = c.get::<JobView>(&format!("/api/v1/jobs/{id}")).await.ok();
    if let Some(v) = view.as_ref().filter(|v| v.state == JobStatus::Queued) {
        // Only the box knows why a job waits; a job read in the moment before the scheduler
        // takes it (an empty queue) has no reason, and none is made up for it.
        progress.queued(id, v.waiting.as_deref());
    }
    // A box that never answered is a wrong `--url` (or a box that is off), not an outage.
    let mut contacted = view.is_some();
    let stages: Vec<String> = view.map(|j| j.stages.into_iter().map(|s| s.name).collect()).unwrap_or_default();
    let mut outage = Outage::default();
    let mut last_id = after;
    let mut empty_streams = 0;
    'streams: loop {
        let mut req = c.request(Method::GET, &format!("/api/v1/jobs/{id}/events"));
        if let Some(l) = &last_id {
            req = req.header("Last-Event-ID", l);
        }
        let resp = match c.send_raw(req).await {
            Ok(r) => r,
            Err(e) if contacted && no_answer(&e) => {
                outage.wait(c, id, &progress).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        contacted = true;
        outage.over(c, id, &progress);
        let mut stream = resp.bytes_stream();
        let mut parser = reelbox::api::sse::SseParser::default();
        let mut got_any = false;
        loop {
            let chunk = match tokio::time::timeout(SILENT_STREAM, stream.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                // Ended or broke (the daemon stopped): open it again where it left off.
                Ok(None | Some(Err(_))) => break,
                Err(_silent) => {
                    outage.wait(c, id, &progress).await?;
                    continue 'streams;
                }
            };
            for msg in parser.push(&chunk) {
                got_any = true;
                if msg.id.is_some() {
                    last_id = msg.id;
                }
                let Ok(ev) = serde_json::from_str::<Value>(&msg.data) else { continue };
                if how.events_to_stdout {
                    println!("{ev}");
                }
                // A retried job's stream holds the end of its earlier try: the job goes on.
                let ended = final_state(&ev).is_some();
                if ended && !still_ended(c, id).await {
                    continue;
                }
                progress.event(id, &stages, &ev);
                if ended {
                    break 'streams;
                }
            }
        }
        empty_streams = if got_any { 0 } else { empty_streams + 1 };
        if empty_streams > EMPTY_STREAMS {
            return Err(anyhow!(
                "the box at {} keeps ending job {id}'s event stream; `{}` follows it again",
                c.base(),
                c.command(&format!("jobs watch {id}"))
            ));
        }
        if !got_any {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let job = loop {
        match c.get(&format!("/api/v1/jobs/{id}")).await {
            Err(e) if no_answer(&e) => outage.wait(c, id, &progress).await?,
            got => break got,
        }
    };
    outage.over(c, id, &progress);
    progress.finish();
    job
}

/// Retries job `id` (`POST .../retry`) and returns it with the id its event stream resumes
/// after to show only the retry: the event before the retry's own `queued` one, read from the
/// box-wide stream opened before the retry (it starts after the box's newest event, and the
/// job, failed or canceled, sends nothing until the retry). None when that stream does not
/// say within [`SILENT_STREAM`]; then the job's whole stream is followed.
pub async fn retry(c: &Client, id: &str) -> anyhow::Result<(JobView, Option<String>)> {
    let watch = c.send_raw(c.request(Method::GET, "/api/v1/events")).await?;
    let job: JobView = c.post(&format!("/api/v1/jobs/{id}/retry"), &serde_json::json!({})).await?;
    let mut stream = watch.bytes_stream();
    let mut parser = reelbox::api::sse::SseParser::default();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(SILENT_STREAM, stream.next()).await {
        for msg in parser.push(&chunk) {
            let ours = serde_json::from_str::<Value>(&msg.data).is_ok_and(|ev| ev["job"] == job.id.as_str());
            if let Some(seq) = msg.id.and_then(|s| s.parse::<u64>().ok()).filter(|_| ours) {
                return Ok((job, Some(seq.saturating_sub(1).to_string())));
            }
        }
    }
    Ok((job, None))
}

/// Whether job `id` is in a final state now, asked when its stream says it ended: a retry
/// (`reelbox jobs retry`) queues it again after that end, which the stream replays first.
/// A job that cannot be read now counts as ended: the end is fetched after (waiting for a box
/// that does not answer), and says what is wrong.
async fn still_ended(c: &Client, id: &str) -> bool {
    c.get::<JobView>(&format!("/api/v1/jobs/{id}")).await.map_or(true, |j| j.state.is_terminal())
}

/// A box that stopped answering while a job is followed: when it stopped.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Waits until the box answers again. Says once that it waits (the job stays on the
    /// box), asks every [`OUTAGE_POLL`], and gives up after [`OUTAGE_WAIT`] naming how to
    /// pick the job up later.
    async fn wait(&mut self, c: &Client, id: &str, progress: &Progress) -> anyhow::Result<()> {
        let since = *self.since.get_or_insert_with(|| {
            progress.say(&format!(
                "reelbox: the box at {} does not answer; still waiting for job {id} (Ctrl-C stops waiting; \
                 the job stays on the box)",
                c.base()
            ));
            Instant::now()
        });
        loop {
            // Asked after a pause, so a box that answers its health check but not yet the
            // job's stream (still starting) is not asked in a tight loop.
            tokio::time::sleep(OUTAGE_POLL).await;
            if c.answers(OUTAGE_POLL).await {
                return Ok(());
            }
            if since.elapsed() >= OUTAGE_WAIT {
                return Err(anyhow!(
                    "the box at {} has not answered for {} minutes; stopped waiting for job {id}, which stays on \
                     the box: `{}` follows it again, `{}` saves what it made once it is done",
                    c.base(),
                    OUTAGE_WAIT.as_secs() / 60,
                    c.command(&format!("jobs watch {id}")),
                    c.command(&format!("jobs get {id} -o DIR"))
                ));
            }
        }
    }

    /// The box answered again: says so when it had stopped.
    fn over(&mut self, c: &Client, id: &str, progress: &Progress) {
        if self.since.take().is_some() {
            progress.say(&format!("reelbox: the box at {} answers again; following job {id}", c.base()));
        }
    }
}

/// Where progress goes.
enum Progress {
    /// A terminal: a bar redrawn in place.
    Bar(ProgressBar),
    /// A pipe, a file, cron's mail: one plain line per stage start and end, and the final
    /// state (a bar there is either nothing or carriage returns).
    Lines,
    /// Nothing but what must be said (`--json`, whose events go to stdout).
    Quiet,
}

impl Progress {
    fn new(show: bool) -> Self {
        if !show {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// Says `line` on stderr, above the bar when there is one.
    fn say(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| eprintln!("{line}")),
            Progress::Lines | Progress::Quiet => eprintln!("{line}"),
        }
    }

    /// The job waits its turn, for `why`.
    fn queued(&self, id: &str, why: Option<&str>) {
        match self {
            Progress::Bar(bar) => {
                bar.set_prefix("queued");
                bar.set_message(why.unwrap_or_default().to_string());
            }
            Progress::Lines => match why {
                Some(why) => eprintln!("job {id} queued: {why}"),
                None => eprintln!("job {id} queued"),
            },
            Progress::Quiet => {}
        }
    }

    /// Shows one event of job `id`.
    fn event(&self, id: &str, stages: &[String], ev: &Value) {
        match self {
            Progress::Bar(bar) => show_event(bar, stages, ev),
            Progress::Lines => {
                if let Some(line) = event_line(id, stages, ev) {
                    eprintln!("{line}");
                }
            }
            Progress::Quiet => {}
        }
    }

    fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The job's final state when `ev` ends it.
fn final_state(ev: &Value) -> Option<&str> {
    let state = ev["state"].as_str().filter(|s| ["succeeded", "failed", "canceled"].contains(s));
    state.filter(|_| ev["type"] == "state")
}

/// "stage 3/7 narration" for a job of several stages, the name alone for one.
fn stage_label(stages: &[String], stage: &str) -> String {
    let name = stage.replace('_', " ");
    match stages.iter().position(|s| s == stage) {
        Some(i) if stages.len() > 1 => format!("stage {}/{} {name}", i + 1, stages.len()),
        _ => name,
    }
}

/// The plain line an event of job `id` gets where no bar can be drawn: a stage's start and
/// end, a log line, the final state; progress steps get none (a line each would flood a log).
fn event_line(id: &str, stages: &[String], ev: &Value) -> Option<String> {
    match ev["type"].as_str()? {
        "stage" => {
            let label = stage_label(stages, ev["stage"].as_str().unwrap_or(""));
            let what = match ev["state"].as_str()? {
                "running" => "started",
                other => other,
            };
            Some(format!("{label}: {what}"))
        }
        "log" => Some(format!("{}: {}", ev["level"].as_str().unwrap_or(""), ev["message"].as_str().unwrap_or(""))),
        "state" => final_state(ev).map(|s| format!("job {id} {s}")),
        _ => None,
    }
}

/// Shows one event on the bar.
fn show_event(bar: &ProgressBar, stages: &[String], ev: &Value) {
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
        Some("log") => {
            bar.println(format!("{}: {}", ev["level"].as_str().unwrap_or(""), ev["message"].as_str().unwrap_or("")))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(final_state(&done), Some("succeeded"));
        assert_eq!(final_state(&json!({"type": "stage", "stage": "plan", "state": "failed"})), None);
    }

    #[test]
    fn without_a_terminal_each_stage_start_and_end_and_the_end_is_one_line() {
        let stages: Vec<String> = ["plan", "keyframes"].map(String::from).to_vec();
        let line = |ev: Value| event_line("J1", &stages, &ev);
        assert_eq!(
            line(json!({"type": "stage", "stage": "keyframes", "state": "running"})).as_deref(),
            Some("stage 2/2 keyframes: started")
        );
        assert_eq!(
            line(json!({"type": "stage", "stage": "keyframes", "state": "done"})).as_deref(),
            Some("stage 2/2 keyframes: done")
        );
        assert_eq!(line(json!({"type": "progress", "stage": "keyframes", "step": 1, "total": 3})), None);
        assert_eq!(line(json!({"type": "state", "state": "running"})), None);
        assert_eq!(line(json!({"type": "state", "state": "canceled"})).as_deref(), Some("job J1 canceled"));
    }
}
