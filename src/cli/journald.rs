//! Logging to journald under systemd. `tracing-journald` (0.3) puts every field of an event
//! into a hidden `F_*` journal field and has no option to show them in `MESSAGE`, so
//! `journalctl -u reelbox` said "job failed" with no job id. This layer writes the fields
//! twice: into `MESSAGE` as the terminal output does (`job failed: … job=01M… kind=testcard`),
//! and as the same `F_*` fields, so `journalctl F_JOB=…` still finds them.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Where systemd's journald reads native-protocol datagrams.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// A `tracing` layer sending each event to journald as one datagram.
pub struct Journald {
    socket: UnixDatagram,
    identifier: String,
}

impl Journald {
    /// Connects to journald's socket at `path` (fails when there is no journald).
    pub fn connect(path: &Path, identifier: &str) -> std::io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Self { socket, identifier: identifier.to_string() })
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Journald {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let record = payload(event, &self.identifier);
        // A datagram too large for the socket (a very long message): the line still reaches
        // the journal through stderr, which systemd connects to it.
        if self.socket.send(&record.datagram).is_err() {
            eprintln!("{}", record.message);
        }
    }
}

/// One event in journald's native protocol, and its `MESSAGE` text.
pub struct Record {
    pub datagram: Vec<u8>,
    pub message: String,
}

/// Formats `event` as journald's native protocol: `MESSAGE` (the text with its fields as
/// `key=value`), `PRIORITY`, the identifier, target and source line, and each field as `F_NAME`.
pub fn payload(event: &Event<'_>, identifier: &str) -> Record {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut message = fields.message;
    for (name, value) in &fields.pairs {
        if !message.is_empty() {
            message.push(' ');
        }
        let _ = write!(message, "{name}={value}");
    }
    let meta = event.metadata();
    let mut datagram = Vec::new();
    put(&mut datagram, "MESSAGE", &message);
    put(&mut datagram, "PRIORITY", priority(*meta.level()));
    put(&mut datagram, "SYSLOG_IDENTIFIER", identifier);
    put(&mut datagram, "TARGET", meta.target());
    if let Some(file) = meta.file() {
        put(&mut datagram, "CODE_FILE", file);
    }
    if let Some(line) = meta.line() {
        put(&mut datagram, "CODE_LINE", &line.to_string());
    }
    for (name, value) in &fields.pairs {
        put(&mut datagram, &field_name(name), value);
    }
    Record { datagram, message }
}

/// syslog priorities, as tracing-journald maps them.
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "5",
        Level::DEBUG => "6",
        _ => "7",
    }
}

/// `job` → `F_JOB`: journal field names are upper case letters, digits and `_`.
fn field_name(name: &str) -> String {
    let mut out = String::from("F_");
    out.extend(name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }));
    out
}

/// Appends one field; a value with a newline goes length-prefixed, as the protocol asks.
fn put(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

/// The message and the other fields of an event, in the order written.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// What `journalctl -u reelbox` shows: the message with its fields, and the fields kept.
    #[test]
    fn the_journal_message_carries_the_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.sock");
        let journal = UnixDatagram::bind(&path).expect("fake journald");
        let layer = Journald::connect(&path, "reelbox").expect("connect");
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let job = "01M95D1SJ9EX07RQKKQ7KS2RAP";
            tracing::error!(job, kind = "testcard", attempt = 1, "job failed: stage card: testcard asked to fail");
        });
        let mut buf = vec![0u8; 65536];
        let n = journal.recv(&mut buf).expect("datagram");
        let text = String::from_utf8_lossy(&buf[..n]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(
                &"MESSAGE=job failed: stage card: testcard asked to fail job=01M95D1SJ9EX07RQKKQ7KS2RAP kind=testcard attempt=1"
            ),
            "{text}"
        );
        for want in ["PRIORITY=3", "SYSLOG_IDENTIFIER=reelbox", "F_JOB=01M95D1SJ9EX07RQKKQ7KS2RAP", "F_ATTEMPT=1"] {
            assert!(lines.contains(&want), "no {want} in {text}");
        }
    }
}
