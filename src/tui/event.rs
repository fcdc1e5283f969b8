//! The one event type the dashboard loop handles: input, resize, data from the daemon,
//! ticks and shutdown, all arriving over one channel.

use crossterm::event::KeyEvent;

use crate::api::system::SystemView;
use crate::api::views::{ArtifactView, JobView};
use crate::gpu::TelemetrySample;

/// Something the dashboard reacts to.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Resize,
    Data(Update),
    /// Time passed (clock-driven text such as ETAs and the reconnect timer).
    Tick,
    /// SIGTERM, SIGHUP (the SSH session closed) or SIGINT.
    Shutdown,
}

/// Data from the daemon.
#[derive(Debug)]
pub enum Update {
    /// One poll's answers.
    Snapshot(Box<Snapshot>),
    /// The daemon did not answer.
    Down(String),
    /// The daemon answered 401 or 403: the key is missing, unknown or not allowed.
    Refused(String),
    /// Telemetry history sent on (re)connect, oldest first.
    History(Vec<TelemetrySample>),
    /// One live telemetry sample.
    Sample(Box<TelemetrySample>),
    /// The job shown in the detail view, with its artifacts.
    Detail(Box<JobView>, Vec<ArtifactView>),
    /// An event line of the detailed job.
    JobEvent(String, EventLine),
    /// A decoded preview of the detailed job's newest image.
    Preview(String, Preview),
    /// The result of an action (cancel, retry, ...), shown on the status line.
    Flash(String),
    /// An action the daemon refused or that did not reach it: stays on the status line
    /// until the next key, so it cannot be missed by looking away for five seconds.
    ActionFailed(String),
}

/// One poll of the daemon.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub system: SystemView,
    pub running: Vec<JobView>,
    pub queued: Vec<JobView>,
    /// Newest finished jobs first.
    pub recent: Vec<JobView>,
    /// Whether the key may pause the queue (`GET /api/v1/session`); `None` when the daemon
    /// did not say (an older one): the keys are offered, the daemon still decides.
    pub admin: Option<bool>,
}

/// A job event as the detail view lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLine {
    pub seq: u64,
    /// RFC 3339 time.
    pub at: String,
    pub text: String,
    /// Progress lines replace the previous progress line instead of piling up.
    pub progress: bool,
}

/// A small RGB image to draw with half blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub artifact: String,
    pub width: u32,
    pub height: u32,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}
