//! Server-Sent Events: stored events first (from `Last-Event-ID`), then live ones. The
//! subscription is taken before the replay so nothing falls between the two. A job's
//! stream starts at its first event; the box-wide stream at what happens next, since its
//! history is every event the box kept (without retention, all it ever sent).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use ulid::Ulid;
use utoipa::IntoParams;

use super::auth::Caller;
use super::jobs::visible_job;
use super::json::ApiQuery;
use super::limits::StreamPermit;
use super::views::time;
use super::{ApiError, AppState};
use crate::store::records::{Event, EventBody};

/// Query of the event streams.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (same as the `Last-Event-ID` header); `0` replays every
    /// stored event. Without either, `/api/v1/events` starts with the next event and a
    /// job's stream with its first.
    pub after: Option<u64>,
}

type EventStream = Sse<axum::response::sse::KeepAliveStream<ReceiverStream<Result<SseEvent, Infallible>>>>;

/// Events of one job; the stream ends after the job's final state.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = crate::api::openapi::ServerSentEvent, content_type = "text/event-stream", description = "the job's events")))]
pub async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<EventStream, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    let after = last_event_id(&headers, q.after)?.unwrap_or(0);
    let permit = state.gate.streams.acquire(&caller, &state.config.limits)?;
    Ok(stream(state, caller, Some(job.id), after, permit))
}

/// Events of all jobs the caller may see, from the next one on (`after` or `Last-Event-ID`
/// replays from an id).
#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery),
    responses((status = 200, body = crate::api::openapi::ServerSentEvent, content_type = "text/event-stream", description = "every job's events")))]
pub async fn all_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<EventStream, ApiError> {
    let after = match last_event_id(&headers, q.after)? {
        Some(after) => after,
        // Read before the stream subscribes: an event sent in between is replayed, not lost.
        None => state.store.last_event_seq()?,
    };
    let permit = state.gate.streams.acquire(&caller, &state.config.limits)?;
    Ok(stream(state, caller, None, after, permit))
}

/// The id a client resumes after: `Last-Event-ID`, else `?after=`; none when it sent neither.
fn last_event_id(headers: &HeaderMap, after: Option<u64>) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::field("Last-Event-ID", "must be an event id (a number)")),
        None => Ok(after),
    }
}

/// The JSON an event is sent as.
pub fn event_json(e: &Event) -> serde_json::Value {
    let mut v = json!({"seq": e.seq, "job": e.job.to_string(), "at": time(e.at), "type": e.body.kind()});
    let extra = match &e.body {
        EventBody::State { state, error } => json!({"state": state, "error": error}),
        EventBody::Stage { stage, state } => json!({"stage": stage, "state": state}),
        EventBody::Progress { stage, step, total, message } => {
            json!({"stage": stage, "step": step, "total": total, "message": message})
        }
        EventBody::Log { level, message } => json!({"level": level, "message": message}),
        EventBody::Artifact { stage, artifact, media_type } => {
            json!({"stage": stage, "artifact": artifact.to_string(), "media_type": media_type, "url": format!("/api/v1/artifacts/{artifact}")})
        }
    };
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

fn is_final(e: &Event) -> bool {
    matches!(&e.body, EventBody::State { state, .. } if state.is_terminal())
}

fn stream(state: AppState, caller: Caller, job: Option<Ulid>, after: u64, permit: StreamPermit) -> EventStream {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        // Holds the stream's slot until the task ends (client gone, job final, shutdown).
        let _permit = permit;
        let mut live = state.store.subscribe();
        let mut last = after;
        let wanted = |e: &Event| job.is_none_or(|j| j == e.job) && caller.may_see(&e.owner);
        // Replay; also used to catch up after the live channel lagged.
        macro_rules! replay {
            () => {{
                loop {
                    let batch = match state.store.events_after(job, last, 500) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!("event replay failed: {e}");
                            return;
                        }
                    };
                    if batch.is_empty() {
                        break;
                    }
                    for e in batch {
                        last = e.seq;
                        if !wanted(&e) {
                            continue;
                        }
                        // A final event in the history need not be the job's end: a job
                        // retried after it is queued again, and its history goes on. The
                        // stream ends once the whole history is sent and the job is final.
                        if tx.send(Ok(to_sse(&e))).await.is_err() {
                            return;
                        }
                    }
                }
                if job.is_some() && job_is_final(&state, job) {
                    return;
                }
            }};
        }
        replay!();
        loop {
            tokio::select! {
                got = live.recv() => match got {
                    Ok(e) => {
                        let e: Arc<Event> = e;
                        if e.seq <= last || !wanted(&e) {
                            continue;
                        }
                        last = e.seq;
                        if tx.send(Ok(to_sse(&e))).await.is_err() {
                            return;
                        }
                        if job.is_some() && is_final(&e) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => replay!(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
                _ = state.shutdown.cancelled() => return,
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

fn job_is_final(state: &AppState, job: Option<Ulid>) -> bool {
    job.and_then(|id| state.store.job(id).ok().flatten()).is_some_and(|j| j.state.is_terminal())
}

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default().id(e.seq.to_string()).event(e.body.kind()).data(event_json(e).to_string())
}
