//! Reading Server-Sent Events as clients get them (the CLI's job follower, `reelbox top`);
//! the daemon writes them in [`super::events`].

/// One Server-Sent Events message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Splits an SSE byte stream into messages (chunks may cut anywhere).
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    current: SseMessage,
}

impl SseParser {
    /// Feeds bytes; returns the messages they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let msg = std::mem::take(&mut self.current);
                if !msg.data.is_empty() || !msg.event.is_empty() {
                    out.push(msg);
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // keep-alive comment
            }
            let (field, value) =
                line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_messages_survive_arbitrary_chunking() {
        let stream =
            b": keep-alive\n\nid: 7\nevent: state\ndata: {\"a\":1}\r\n\r\nevent: history\ndata: x\ndata: y\n\n";
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&stream[..cut]);
            got.extend(p.push(&stream[cut..]));
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got[0], SseMessage { event: "state".into(), id: Some("7".into()), data: "{\"a\":1}".into() });
            assert_eq!(got[1].data, "x\ny");
        }
    }
}
