//! The dashboard's only link to the daemon: its HTTP API, through the crate's one
//! [`ApiClient`]. Polls feed [`Update`]s into the event channel; the telemetry and
//! job-event streams are read as Server-Sent Events and reconnect by themselves when the
//! daemon restarts.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::app::Command;
use super::event::{Event, EventLine, Snapshot, Update};
use super::format::{parse_time, short_id};
use crate::api::system::SystemView;
use crate::api::telemetry::TelemetryHistory;
use crate::api::views::{ArtifactView, JobView};
use crate::client::{ApiClient, ClientError};
use crate::gpu::TelemetrySample;

/// Finished jobs shown under the queue.
const RECENT: usize = 30;
/// Failed jobs kept under those, however old.
const FAILED_KEPT: usize = 10;
/// Longest a plain request may take before the daemon counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may take to open; the dashboard shows the daemon down after it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An error as the status bar words it: short, without the URL the header already shows.
pub fn status_line(e: &ClientError) -> String {
    match e {
        ClientError::Unreachable { .. } => "connection refused".into(),
        ClientError::Request { source, .. } if source.is_timeout() => "timed out".into(),
        ClientError::Request { source, .. } | ClientError::Body { source, .. } => source.to_string(),
        ClientError::Status { status, message } => format!("{status}: {message}"),
        ClientError::Unreadable { .. } => e.to_string(),
    }
}

async fn get<T: serde::de::DeserializeOwned>(client: &ApiClient, path: &str) -> Result<T, ClientError> {
    client.get_json(path, Some(REQUEST_TIMEOUT)).await
}

/// One poll: system, running, queued and recent jobs; and whether the key is an admin's,
/// asked only while `admin` is not known yet (who a key is does not change between polls).
pub async fn snapshot(client: &ApiClient, admin: Option<bool>) -> Result<Snapshot, ClientError> {
    #[derive(serde::Deserialize)]
    struct Page {
        jobs: Vec<JobView>,
    }
    // Finished jobs are asked for by state: the newest jobs of any state are all queued
    // once a hundred wait, and the recent list went empty.
    let [succeeded, failed, canceled] =
        ["succeeded", "failed", "canceled"].map(|state| format!("/api/v1/jobs?state={state}&limit={RECENT}"));
    /// Who the key is, as `GET /api/v1/session` says.
    #[derive(serde::Deserialize)]
    struct Caller {
        admin: bool,
    }
    let lists = async {
        tokio::try_join!(
            get::<SystemView>(client, "/api/v1/system"),
            get::<Page>(client, "/api/v1/jobs?state=running&limit=100"),
            get::<Page>(client, "/api/v1/jobs?state=queued&limit=200"),
            get::<Page>(client, &succeeded),
            get::<Page>(client, &failed),
            get::<Page>(client, &canceled),
        )
    };
    let who = async {
        match admin {
            Some(known) => Some(known),
            // Not part of the poll's success: a daemon from before the route still draws.
            None => get::<Caller>(client, "/api/v1/session").await.ok().map(|c| c.admin),
        }
    };
    let (lists, admin) = tokio::join!(lists, who);
    let (system, running, queued, succeeded, failed, canceled) = lists?;
    Ok(Snapshot {
        system,
        running: running.jobs,
        queued: queued.jobs,
        recent: recent([succeeded, failed, canceled].map(|p| p.jobs)),
        admin,
    })
}

/// The [`RECENT`] last finished jobs of the three lists, newest end first, plus the last
/// [`FAILED_KEPT`] failures older than those: the header counts failed jobs, and `/fail`
/// must find them after a busy hour of successes.
fn recent(lists: [Vec<JobView>; 3]) -> Vec<JobView> {
    let newest_end = |j: &JobView| std::cmp::Reverse(parse_time(j.finished_at.as_deref()).unwrap_or(0));
    let mut all: Vec<JobView> = lists.into_iter().flatten().collect();
    all.sort_by_key(newest_end);
    let older = all.split_off(RECENT.min(all.len()));
    all.extend(older.into_iter().filter(|j| j.state == "failed").take(FAILED_KEPT));
    all
}

/// Carries out an action; the answer is a line for the status bar.
pub async fn act(client: &ApiClient, cmd: &Command) -> Result<String, ClientError> {
    let (req, done) = match cmd {
        Command::Cancel(id) => (
            client.request(Method::POST, &format!("/api/v1/jobs/{id}/cancel")),
            format!("cancel sent to {}", short_id(id)),
        ),
        Command::Retry(id) => {
            (client.request(Method::POST, &format!("/api/v1/jobs/{id}/retry")), format!("re-queued {}", short_id(id)))
        }
        Command::SetPaused(true) => (client.request(Method::POST, "/api/v1/queue/pause"), "queue paused".into()),
        Command::SetPaused(false) => (client.request(Method::POST, "/api/v1/queue/resume"), "queue resumed".into()),
        Command::SetPriority(id, p) => (
            client.request(Method::PATCH, &format!("/api/v1/jobs/{id}")).json(&serde_json::json!({"priority": p})),
            format!("priority of {} is now {p}", short_id(id)),
        ),
        Command::Quit | Command::Follow(_) | Command::Unfollow => return Ok(String::new()),
    };
    client.send(req.timeout(REQUEST_TIMEOUT)).await.map(|_| done)
}

/// A job and its artifacts.
async fn job(client: &ApiClient, id: &str) -> Result<(JobView, Vec<ArtifactView>), ClientError> {
    let (job, artifacts) = (format!("/api/v1/jobs/{id}"), format!("/api/v1/jobs/{id}/artifacts"));
    tokio::try_join!(get(client, &job), get(client, &artifacts))
}

/// Polls the daemon every `refresh` (or when `wake` fires) until the channel closes.
pub async fn poll(client: ApiClient, tx: mpsc::Sender<Event>, refresh: Duration, wake: Arc<Notify>) {
    // Asked again after a failed poll: the daemon may have restarted with other keys.
    let mut admin = None;
    loop {
        let polled = snapshot(&client, admin).await;
        admin = polled.as_ref().ok().and_then(|s| s.admin);
        let update = match polled {
            Ok(s) => Update::Snapshot(Box::new(s)),
            Err(
                e @ ClientError::Status {
                    status: reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN,
                    ..
                },
            ) => Update::Refused(status_line(&e)),
            Err(e) => Update::Down(status_line(&e)),
        };
        if tx.send(Event::Data(update)).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Follows `/api/v1/telemetry`, reconnecting after `retry` when it drops.
pub async fn telemetry(client: ApiClient, tx: mpsc::Sender<Event>, retry: Duration) {
    loop {
        let tx2 = tx.clone();
        let result = client
            .follow("/api/v1/telemetry", None, |msg| {
                let update = match msg.event.as_str() {
                    "history" => {
                        serde_json::from_str::<TelemetryHistory>(&msg.data).ok().map(|h| Update::History(h.samples))
                    }
                    "sample" => {
                        serde_json::from_str::<TelemetrySample>(&msg.data).ok().map(|s| Update::Sample(Box::new(s)))
                    }
                    _ => None,
                };
                update.is_none_or(|u| tx2.try_send(Event::Data(u)).is_ok() || !tx2.is_closed())
            })
            .await;
        if tx.is_closed() {
            return;
        }
        if let Err(e) = result {
            tracing::debug!("telemetry stream: {e}");
        }
        tokio::time::sleep(retry).await;
    }
}

/// Follows one job for the detail view: its record and artifacts every `refresh`, a
/// preview when a new image appears, and its events as they happen.
pub async fn follow(client: ApiClient, tx: mpsc::Sender<Event>, id: String, refresh: Duration) {
    let events = tokio::spawn(follow_events(client.clone(), tx.clone(), id.clone(), refresh));
    let mut shown: Option<String> = None;
    loop {
        if let Ok((job, artifacts)) = job(&client, &id).await {
            let newest_image = artifacts.iter().rev().find(|a| a.media_type.starts_with("image/")).cloned();
            let final_state = matches!(job.state.as_str(), "succeeded" | "failed" | "canceled");
            if tx.send(Event::Data(Update::Detail(Box::new(job), artifacts))).await.is_err() {
                break;
            }
            if let Some(a) = newest_image.filter(|a| shown.as_deref() != Some(a.id.as_str()))
                && let Ok(bytes) = client.bytes(&a.url, REQUEST_TIMEOUT).await
            {
                let decoded = tokio::task::spawn_blocking(move || super::draw::preview::decode(&a.id, &bytes)).await;
                if let Ok(Some(p)) = decoded {
                    shown = Some(p.artifact.clone());
                    if tx.send(Event::Data(Update::Preview(id.clone(), p))).await.is_err() {
                        break;
                    }
                }
            }
            if final_state && shown.is_some() {
                // Nothing will change any more but the events task may still catch up.
                tokio::time::sleep(refresh * 5).await;
                continue;
            }
        }
        tokio::time::sleep(refresh).await;
    }
    events.abort();
}

async fn follow_events(client: ApiClient, tx: mpsc::Sender<Event>, id: String, retry: Duration) {
    let mut last: Option<String> = None;
    loop {
        let path = format!("/api/v1/jobs/{id}/events");
        let result = client
            .follow(&path, last.clone().as_deref(), |msg| {
                if msg.id.is_some() {
                    last = msg.id.clone();
                }
                match serde_json::from_str::<Value>(&msg.data).ok().and_then(|v| event_line(&v)) {
                    Some(line) => {
                        tx.try_send(Event::Data(Update::JobEvent(id.clone(), line))).is_ok() || !tx.is_closed()
                    }
                    None => true,
                }
            })
            .await;
        if tx.is_closed() {
            return;
        }
        if result.is_ok() {
            // The daemon ends a job's stream after its final state; wait for a retry.
            tokio::time::sleep(retry * 5).await;
        } else {
            tokio::time::sleep(retry).await;
        }
    }
}

/// A job event JSON (as `/api/v1/jobs/{id}/events` sends it) as one line of text.
pub fn event_line(v: &Value) -> Option<EventLine> {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let kind = v["type"].as_str()?;
    let text = match kind {
        "state" => match v["error"].as_str() {
            Some(e) => format!("state → {} ({e})", s("state")),
            None => format!("state → {}", s("state")),
        },
        "stage" => format!("stage {} → {}", s("stage"), s("state")),
        "progress" => {
            let msg = v["message"].as_str().map(|m| format!(" {m}")).unwrap_or_default();
            format!("progress {} {}/{}{msg}", s("stage"), v["step"], v["total"])
        }
        "log" => format!("[{}] {}", s("level"), s("message")),
        "artifact" => format!("artifact {} ({}) from {}", short_id(&s("artifact")), s("media_type"), s("stage")),
        other => other.to_string(),
    };
    Some(EventLine { seq: v["seq"].as_u64()?, at: s("at"), text, progress: kind == "progress" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_each() {
        let v = serde_json::json!({"seq": 3, "at": "2025-01-01T10:00:00.000Z", "type": "progress", "stage": "card", "step": 2, "total": 5, "message": null});
        let line = event_line(&v).expect("line");
        assert_eq!(line.text, "progress card 2/5");
        assert!(line.progress);
        let v = serde_json::json!({"seq": 4, "at": "", "type": "state", "state": "failed", "error": "boom"});
        assert_eq!(event_line(&v).expect("line").text, "state → failed (boom)");
    }
}
