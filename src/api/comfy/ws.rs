//! `/ws?clientId=`: ComfyUI's execution messages, translated from the store's event
//! broadcast. A client hears about its own prompts (and prompts sent without a client
//! id, which ComfyUI broadcasts); `status` goes to everyone. A socket opened with a key
//! is closed (policy, with the revoke message as its reason) when the key is revoked.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use ulid::Ulid;
use utoipa::IntoParams;

use super::Comfy;
use super::messages::{self, Message};
use super::prompts::PromptMeta;
use super::queue::queue_remaining;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::outputs::{final_images, is_preview};
use crate::store::records::{Event, EventBody, JobStatus, StageStatus, now_ms};
use crate::store::{Store, StoreError};

/// Query of `/ws`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The id the client also sends as `client_id` with its prompts.
    #[serde(rename = "clientId")]
    pub client_id: Option<String>,
}

/// Open the message stream.
#[utoipa::path(get, path = "/ws", tag = "comfyui", params(WsQuery),
    responses((status = 101, description = "WebSocket of ComfyUI execution messages")))]
pub async fn ws(
    upgrade: WebSocketUpgrade,
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    Query(q): Query<WsQuery>,
) -> Response {
    // A socket is a stream like SSE: it takes a slot for as long as it is open.
    let permit = match state.gate.streams.acquire(&caller, &state.config.limits) {
        Ok(p) => p,
        Err(e) => return super::error::ComfyError::from(e).into_response(),
    };
    let client_id = q.client_id.filter(|c| !c.is_empty()).unwrap_or_else(|| Ulid::new().to_string().to_lowercase());
    upgrade.on_upgrade(move |socket| async move {
        Session { state, comfy, caller, client_id, reached: HashMap::new(), opened_at_seq: 0, last_seq: None }
            .run(socket)
            .await;
        drop(permit);
    })
}

struct Session {
    state: AppState,
    comfy: Comfy,
    caller: Caller,
    client_id: String,
    /// Prompts whose `execution_start` this connection has sent, with how many nodes of
    /// their execution order it has sent `executing` for.
    reached: HashMap<Ulid, usize>,
    /// The newest stored event when the connection opened.
    opened_at_seq: u64,
    /// The newest event this connection has handled (or caught up to).
    last_seq: Option<u64>,
}

/// What one store event becomes on the socket.
enum Out {
    Text(Message),
    Binary(Vec<u8>),
}

impl Session {
    async fn run(mut self, mut socket: WebSocket) {
        // Where a catch-up starts if the socket lags before handling any event.
        self.opened_at_seq = self.state.store.last_event_seq().unwrap_or(0);
        // Subscribed before the first message, so nothing falls between status and events.
        let mut events = self.state.store.subscribe();
        // Closes the socket when its key is revoked, as event streams end (`key_revoked`).
        let key = self.caller.key_id.map(|k| crate::api::keys::key_revoked(&self.state, k));
        let mut revoked = std::pin::pin!(async move {
            match key {
                Some(revoked) => revoked.await,
                None => std::future::pending().await,
            }
        });
        let hello = messages::status(queue_remaining(&self.state), Some(&self.client_id));
        if send(&mut socket, Out::Text(hello)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                got = events.recv() => match got {
                    Ok(e) => {
                        // After a catch-up the channel still holds events it already covered.
                        if self.last_seq.is_some_and(|l| e.seq <= l) {
                            continue;
                        }
                        self.last_seq = Some(e.seq);
                        for out in self.translate(&e).await {
                            if send(&mut socket, out).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "ComfyUI socket fell behind the event stream; catching up");
                        for out in self.catch_up().await {
                            if send(&mut socket, out).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                incoming = socket.recv() => match incoming {
                    // Clients send nothing ComfyUI acts on; the socket lives until they close it.
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                key = &mut revoked => {
                    let reason = crate::api::keys::revoked_close_reason(key.as_ref());
                    tracing::info!(client = %self.client_id, "a ComfyUI socket of a revoked key closed");
                    let frame = CloseFrame { code: close_code::POLICY, reason: reason.into() };
                    let _ = socket.send(WsMessage::Close(Some(frame))).await;
                    return;
                }
                _ = self.state.shutdown.cancelled() => {
                    let _ = socket.send(WsMessage::Close(None)).await;
                    return;
                }
            }
        }
    }

    /// After the socket lagged: the messages of the state changes it missed, from the
    /// store, so every prompt of this client still gets its end (`execution_success` or
    /// error, then `executing` null) and a restart's re-queue; missed progress and
    /// previews are stale and stay dropped.
    async fn catch_up(&mut self) -> Vec<Out> {
        let (store, after) = (self.state.store.clone(), self.last_seq.unwrap_or(self.opened_at_seq));
        let missed = match tokio::task::spawn_blocking(move || missed_states(&store, after)).await {
            Ok(Ok(missed)) => missed,
            Ok(Err(e)) => {
                tracing::warn!("ComfyUI socket catch-up failed: {e}");
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!("ComfyUI socket catch-up stopped: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for e in &missed.events {
            if let Some(meta) = self.comfy.prompts.by_job(e.job).filter(|m| self.wants(m, e)) {
                self.prompt_messages(&meta, e, &mut out).await;
            }
        }
        self.last_seq = Some(missed.last_seq);
        // One queue status for the whole gap instead of one per missed state change.
        out.push(Out::Text(messages::status(queue_remaining(&self.state), None)));
        out
    }

    /// True when this connection should hear about a prompt.
    fn wants(&self, meta: &PromptMeta, e: &Event) -> bool {
        self.caller.may_see(&e.owner) && meta.client_id.as_ref().is_none_or(|c| *c == self.client_id)
    }

    async fn translate(&mut self, e: &Arc<Event>) -> Vec<Out> {
        let mut out = Vec::new();
        let meta = self.comfy.prompts.by_job(e.job).filter(|m| self.wants(m, e));
        if let Some(meta) = meta {
            self.prompt_messages(&meta, e, &mut out).await;
        }
        if matches!(e.body, EventBody::State { .. }) {
            out.push(Out::Text(messages::status(queue_remaining(&self.state), None)));
        }
        out
    }

    fn start(&mut self, meta: &PromptMeta, out: &mut Vec<Out>) {
        if self.reached.contains_key(&meta.job) {
            return;
        }
        self.reached.insert(meta.job, 0);
        let now = now_ms();
        out.push(Out::Text(messages::execution_start(meta, now)));
        out.push(Out::Text(messages::execution_cached(meta, now)));
        // The loaders and encoders run inside the job's first stage, before its node.
        if let Some((node, _)) = meta.roles.first_node() {
            self.advance(meta, Some(node), out);
        }
    }

    /// Sends `executing` for each node after those already sent, up to `node` (every node
    /// when `None`), and `executed` for the outputs among them with their stage's pictures.
    fn advance(&mut self, meta: &PromptMeta, node: Option<&str>, out: &mut Vec<Out>) {
        let order = meta.roles.execution_order();
        let from = self.reached.get(&meta.job).copied().unwrap_or(0);
        let to = node.and_then(|n| order.iter().position(|o| o == n)).map_or(order.len(), |i| i + 1);
        let mut images = None;
        for id in order.iter().take(to).skip(from) {
            out.push(Out::Text(messages::executing(meta, Some(id))));
            if meta.roles.outputs.iter().any(|o| o.id == *id) {
                // Read once, when the first output is reached: its stage has finished.
                let images = images.get_or_insert_with(|| match self.state.store.job(meta.job) {
                    Ok(Some(job)) => final_images(&self.state.store, &job).unwrap_or_default(),
                    _ => Vec::new(),
                });
                out.push(Out::Text(messages::executed(meta, id, images)));
            }
        }
        if to > from {
            self.reached.insert(meta.job, to);
        }
    }

    fn finish(&mut self, meta: &PromptMeta, end: Message, out: &mut Vec<Out>) {
        out.push(Out::Text(end));
        out.push(Out::Text(messages::executing(meta, None)));
        self.reached.remove(&meta.job);
    }

    /// The node that was running when the prompt's job stopped, from the store.
    fn stopped_node<'m>(&self, meta: &'m PromptMeta) -> Option<(&'m str, &'m str)> {
        match self.state.store.job(meta.job) {
            Ok(Some(job)) => messages::stopped_node(meta, &job),
            _ => meta.roles.first_node(),
        }
    }

    async fn prompt_messages(&mut self, meta: &PromptMeta, e: &Event, out: &mut Vec<Out>) {
        match &e.body {
            EventBody::State { state, error } => match state {
                JobStatus::Running => self.start(meta, out),
                JobStatus::Succeeded => {
                    self.start(meta, out);
                    self.advance(meta, None, out);
                    self.finish(meta, messages::execution_success(meta, e.at), out);
                }
                JobStatus::Failed => {
                    self.start(meta, out);
                    let node = self.stopped_node(meta);
                    self.advance(meta, node.map(|(id, _)| id), out);
                    let error = error.clone().unwrap_or_else(|| "the job failed".into());
                    self.finish(meta, messages::execution_error(meta, node, &error, e.at), out);
                }
                JobStatus::Canceled => {
                    // A prompt deleted while pending never started: ComfyUI sends nothing for it.
                    if self.reached.contains_key(&meta.job) {
                        let node = self.stopped_node(meta);
                        self.finish(meta, messages::execution_interrupted(meta, error.as_deref(), e.at, node), out);
                    }
                }
                // Re-queued (retry, restart): it will start again.
                JobStatus::Queued => {
                    self.reached.remove(&meta.job);
                }
            },
            // A later stage's node (the upscale after the sampler) starts executing.
            EventBody::Stage { stage, state: StageStatus::Running } => {
                self.start(meta, out);
                if let Some((node, _)) = meta.roles.node_of(*stage) {
                    self.advance(meta, Some(node), out);
                }
            }
            EventBody::Progress { stage, step, total, .. } => {
                self.start(meta, out);
                if let Some((node, _)) = meta.roles.node_of(*stage) {
                    self.advance(meta, Some(node), out);
                    out.push(Out::Text(messages::progress(meta, node, *step, *total)));
                }
            }
            EventBody::Artifact { artifact, media_type, .. } => {
                let Ok(Some(a)) = self.state.store.artifact(*artifact) else { return };
                if !is_preview(&a) {
                    return;
                }
                let path = self.state.store.artifacts_dir().join(&a.path);
                if let Ok(bytes) = tokio::fs::read(&path).await
                    && let Some(frame) = messages::preview_frame(media_type, &bytes)
                {
                    self.start(meta, out);
                    out.push(Out::Binary(frame));
                }
            }
            EventBody::Stage { .. } | EventBody::Log { .. } => {}
        }
    }
}

/// State changes stored after some event, and the newest event id read.
struct Missed {
    events: Vec<Event>,
    last_seq: u64,
}

/// The state-change events stored after `after` (all jobs; the caller filters by prompt).
fn missed_states(store: &Store, after: u64) -> Result<Missed, StoreError> {
    let mut missed = Missed { events: Vec::new(), last_seq: after };
    loop {
        let batch = store.events_after(None, missed.last_seq, 500)?;
        let Some(last) = batch.last() else { return Ok(missed) };
        missed.last_seq = last.seq;
        missed.events.extend(batch.into_iter().filter(|e| matches!(e.body, EventBody::State { .. })));
    }
}

async fn send(socket: &mut WebSocket, out: Out) -> Result<(), axum::Error> {
    match out {
        Out::Text((kind, data)) => {
            socket.send(WsMessage::Text(json!({"type": kind, "data": data}).to_string().into())).await
        }
        Out::Binary(bytes) => socket.send(WsMessage::Binary(bytes.into())).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Job, JobState};

    fn job() -> Job {
        Job {
            id: Ulid::new(),
            owner: "local".into(),
            kind: "image".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Queued { enqueued_at: 1, not_before: None },
            attempts: 0,
            first_started_at: None,
            stages: vec![],
            idempotency_key: None,
            created_at: 1,
        }
    }

    fn progress(n: u64) -> EventBody {
        EventBody::Progress { stage: crate::store::records::StageName::Generate, step: n, total: n, message: None }
    }

    #[tokio::test]
    async fn a_socket_that_lagged_past_a_prompts_end_still_gets_its_state_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let opened_at = store.last_event_seq().expect("seq");
        let mut live = store.subscribe();
        let job = store.submit(job(), 100).await.expect("submit").job;
        // A burst bigger than the broadcast buffer, the prompt's end in the middle of it.
        let j = job.clone();
        store.write(false, move |ctx| (0..3000).try_for_each(|n| ctx.event(&j, progress(n)))).await.expect("burst");
        store
            .update_job(job.id, true, |j| {
                j.state = JobState::Succeeded { started_at: 1, finished_at: 2 };
                Ok(vec![EventBody::State { state: JobStatus::Succeeded, error: None }])
            })
            .await
            .expect("finish");
        let j = job.clone();
        store.write(false, move |ctx| (0..3000).try_for_each(|n| ctx.event(&j, progress(n)))).await.expect("burst");
        // The writer publishes a batch's events after answering it; a later write's answer
        // means everything before it is out.
        store.write(false, |_| Ok(())).await.expect("barrier");
        let got = live.recv().await;
        assert!(matches!(got, Err(RecvError::Lagged(_))), "the socket's receiver fell behind: {got:?}");

        let missed = missed_states(&store, opened_at).expect("catch up");
        let states: Vec<&str> = missed
            .events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::State { state, .. } => Some(state.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(states, ["queued", "succeeded"]);
        assert_eq!(missed.events.len(), 2, "missed progress stays dropped");
        assert_eq!(missed.last_seq, store.last_event_seq().expect("seq"), "the catch-up reaches the newest event");
        store.close();
    }
}
