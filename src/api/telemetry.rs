//! `GET /api/v1/telemetry`: Server-Sent Events of device telemetry — the kept history
//! first (one `history` event), then one `sample` event per sampling interval.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::json::ApiQuery;
use super::{ApiError, AppState};
use crate::gpu::TelemetrySample;

/// Query of the telemetry stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// Send the kept history first (default true).
    pub history: Option<bool>,
}

/// Telemetry as `/api/v1/system` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TelemetryView {
    /// `nvml`, `fake` or `none`.
    pub source: String,
    pub interval_ms: u64,
    /// The newest sample.
    pub latest: Option<TelemetrySample>,
}

/// Data of the `history` event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TelemetryHistory {
    pub interval_ms: u64,
    /// Oldest first.
    pub samples: Vec<TelemetrySample>,
}

type Stream = Sse<axum::response::sse::KeepAliveStream<ReceiverStream<Result<SseEvent, Infallible>>>>;

/// Live device telemetry.
#[utoipa::path(get, path = "/api/v1/telemetry", params(TelemetryQuery),
    responses((status = 200, body = crate::api::openapi::ServerSentEvent, content_type = "text/event-stream",
        description = "one `history` event (TelemetryHistory), then `sample` events (TelemetrySample)")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TelemetryQuery>,
) -> Result<Stream, ApiError> {
    let permit = state.gate.streams.acquire(&caller, &state.config.limits)?;
    let (tx, rx) = mpsc::channel(16);
    let telemetry = state.scheduler.telemetry().clone();
    // Subscribe before reading the history so no sample falls between the two.
    let mut live = telemetry.subscribe();
    let interval_ms = telemetry.interval().as_millis() as u64;
    tokio::spawn(async move {
        // The stream's slot is held for as long as this task feeds it.
        let _permit = permit;
        let mut last = 0;
        if q.history.unwrap_or(true) {
            let samples: Vec<TelemetrySample> = telemetry.history().iter().map(|s| (**s).clone()).collect();
            last = samples.last().map(|s| s.at_ms).unwrap_or(0);
            let event = SseEvent::default().event("history").json_data(TelemetryHistory { interval_ms, samples });
            if let Ok(e) = event
                && tx.send(Ok(e)).await.is_err()
            {
                return;
            }
        }
        drop(telemetry);
        loop {
            tokio::select! {
                got = live.recv() => match got {
                    Ok(s) if s.at_ms > last => {
                        last = s.at_ms;
                        if let Ok(e) = SseEvent::default().event("sample").json_data(&*s)
                            && tx.send(Ok(e)).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
                _ = state.shutdown.cancelled() => return,
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}
