//! Reading a job's Server-Sent Events in tests, split by the library's own parser (the one
//! the CLI and `reelbox top` follow jobs with).

use futures::StreamExt;
use reelbox::api::sse::SseParser;
use serde_json::Value;

/// Reads SSE events until `stop` says so (or the stream ends); returns (id, data) pairs.
/// Messages without a numeric id or JSON data (keep-alives) are skipped.
pub async fn read_events(resp: reqwest::Response, mut stop: impl FnMut(&[(u64, Value)]) -> bool) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut parser = SseParser::default();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        for msg in parser.push(&chunk) {
            let id = msg.id.as_deref().and_then(|v| v.trim().parse().ok());
            let data = serde_json::from_str(&msg.data).ok();
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
                if stop(&out) {
                    return out;
                }
            }
        }
    }
    out
}
