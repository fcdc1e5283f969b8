//! Server-sent events in OpenAI's streaming shape (`event: NAME`, `data: {"type": NAME, ...}`),
//! for `stream: true` image requests and `stream_format: "sse"` speech. The work runs in its
//! own task; when the client hangs up, the task is dropped with its waiting job, which
//! cancels the job as a plain request's disconnect does.

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event as SseEvent, KeepAlive, KeepAliveStream, Sse};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::OpenAiError;

/// The response type of a streamed answer.
pub type EventStream = Sse<KeepAliveStream<ReceiverStream<Result<SseEvent, Infallible>>>>;

/// Where a streamed answer's work sends its events.
#[derive(Clone)]
pub struct Events(mpsc::Sender<Result<SseEvent, Infallible>>);

impl Events {
    /// Sends `data` (an object carrying its `type`) as event `type`; false once the client is gone.
    pub async fn send(&self, data: Value) -> bool {
        let name = data.get("type").and_then(Value::as_str).unwrap_or("message").to_string();
        self.0.send(Ok(SseEvent::default().event(name).data(data.to_string()))).await.is_ok()
    }
}

/// Streams what `work` sends; an error it returns becomes a last `error` event with
/// OpenAI's error body, which the SDKs raise as `APIError`.
pub fn stream<F, Fut>(work: F) -> EventStream
where
    F: FnOnce(Events) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), OpenAiError>> + Send + 'static,
{
    // Small: the work waits for a slow client rather than piling pictures up in memory.
    let (tx, rx) = mpsc::channel(4);
    let events = Events(tx.clone());
    tokio::spawn(async move {
        tokio::select! {
            result = work(events) => {
                if let Err(e) = result {
                    let body = serde_json::to_string(&e.body()).unwrap_or_default();
                    let _ = tx.send(Ok(SseEvent::default().event("error").data(body))).await;
                }
            }
            // The client hung up: dropping `work` drops its waiting job, which cancels it.
            () = tx.closed() => {}
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}
