//! Reading a job's Server-Sent Events in tests.

use futures::StreamExt;
use serde_json::Value;

/// Reads SSE events until `stop` says so (or the stream ends); returns (id, data) pairs.
pub async fn read_events(resp: reqwest::Response, mut stop: impl FnMut(&[(u64, Value)]) -> bool) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).and_then(|v| v.trim().parse().ok());
            let data =
                block.lines().find_map(|l| l.strip_prefix("data:")).and_then(|v| serde_json::from_str(v.trim()).ok());
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
