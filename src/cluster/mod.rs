//! Worker boxes through NATS JetStream. The head (the box with the store and the API)
//! publishes runnable stages to a work-queue stream, one subject per box; workers
//! (`reelbox worker`) advertise their devices and models in a KV bucket with a TTL,
//! run stages through the same kind code, and return outputs through the object store.
//! NATS carries work and bytes and never decides: the head's store stays the truth.
//!
//! - [`protocol`]: messages and names; [`bus`]: connecting and the streams, bucket, store;
//! - [`objects`]: artifacts in and out of the object store, digest-checked;
//! - [`permissions`]: the nats-server configuration with one user per box;
//! - [`head`]: the scheduler's [`RemoteBoxes`](crate::scheduler::RemoteBoxes);
//! - [`reach`]: whether the NATS server answers now, said in the log when it changes;
//! - [`sweep`]: the head forgets boxes long gone; [`leftovers`]: what a box leaves on the server;
//!   [`last_seen`]: when each box was last seen, kept across head restarts;
//! - [`telemetry`]: worker boxes' GPU readings folded into the head's samples;
//! - [`name_claim`]: a box refuses to join under a name another running box uses;
//!   [`take_back`]: a box that starts again takes back the stages it was running;
//!   [`held`]: and asks the head before running one the head may have given away, and
//!   while running one (back from a network cut), stopping it when the head gave it away;
//! - [`worker`] and [`worker_sink`]: the worker box's loop and its stage sink; [`runs`]: the
//!   stages it runs now.

pub mod bus;
pub mod dial;
pub mod head;
pub mod held;
pub mod last_seen;
pub mod leftovers;
pub mod name_claim;
pub mod objects;
pub mod permissions;
pub mod protocol;
pub mod reach;
pub mod runs;
pub mod sweep;
pub mod take_back;
pub mod telemetry;
pub mod worker;
pub mod worker_sink;

pub use bus::Bus;
pub use dial::HEAD_FIRST_WAIT;
pub use head::Head;

/// What can go wrong talking to NATS or moving artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The `[cluster]` settings cannot work.
    #[error(transparent)]
    Config(#[from] crate::config::cluster::BadCluster),
    /// The box name is not usable.
    #[error(transparent)]
    Name(#[from] crate::gpu::remote::BadBoxName),
    /// Connecting to the NATS server failed.
    #[error(
        "cannot connect to NATS at {url}: {source}; is `nats-server -js` running there, on that port, \
         and reachable from this box? (the address is [cluster] nats_url, or a worker's --join)"
    )]
    Connect {
        /// The server.
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// Something answered at the address but never greeted as a NATS server does.
    #[error(
        "{url} accepted the connection but sent no NATS greeting within {secs} s: is that the NATS server's \
         port (4222 unless set otherwise) and not, say, the head's HTTP API (8470)? Fix [cluster] nats_url \
         (a worker's --join)"
    )]
    NotNats {
        /// The address.
        url: String,
        /// How long it was given.
        secs: u64,
    },
    /// The server refused this box's credentials (or their absence).
    #[error("NATS at {url} refused {credential}: {source}")]
    Refused {
        /// The server.
        url: String,
        /// Which credential was offered, naming its setting.
        credential: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// TLS with the server failed (unknown CA, no TLS where it is required, bad client cert).
    #[error("TLS with NATS at {url} failed ({hint}): {source}")]
    Tls {
        /// The server.
        url: String,
        /// Which setting to look at.
        hint: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server does not let this credential use this box's own subjects: another box's seed.
    #[error("{0}")]
    WrongUser(String),
    /// A credentials or TLS file could not be read.
    #[error("cannot read {path} ({setting}): {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The setting that named it.
        setting: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A JetStream request failed (stream, consumer, bucket, publish, fetch).
    #[error("NATS JetStream: {what}: {source}")]
    JetStream {
        /// What was being done.
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
    /// An artifact's bytes did not match its digest or size after transfer.
    #[error("artifact {object} arrived damaged: {detail}")]
    Damaged {
        /// The object.
        object: String,
        /// Expected against found.
        detail: String,
    },
    /// Another running box already sends heartbeats under this box's name.
    #[error(
        "another box already calls itself {name} (reelbox worker pid {pid} on machine {machine:?}, up since \
         {since}): give this box its own name with --name NAME or [cluster] name in its config (the default \
         is the hostname, which cloned machines share)"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// The other box's machine.
        machine: String,
        /// Its process id.
        pid: u32,
        /// When it started (RFC 3339).
        since: String,
    },
    /// A local file of an artifact could not be read or written.
    #[error("artifact file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    /// Wraps a JetStream failure with what was being done.
    pub fn js(what: &'static str, source: impl Into<async_nats::Error>) -> Self {
        ClusterError::JetStream { what, source: source.into() }
    }
}

impl crate::kinds::Failure for ClusterError {
    fn is_retriable(&self) -> bool {
        // Transfers and the server come back; bad settings do not.
        !matches!(
            self,
            ClusterError::Config(_)
                | ClusterError::Name(_)
                | ClusterError::Refused { .. }
                | ClusterError::Tls { .. }
                | ClusterError::WrongUser(_)
                | ClusterError::NameTaken { .. }
        )
    }
}

/// This machine's hostname (empty when unreadable).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// This box's name: `[cluster] name`, else the hostname's first label (cut to a valid name).
pub fn box_name(config: &crate::config::ClusterConfig) -> Result<crate::gpu::BoxName, ClusterError> {
    if let Some(name) = &config.name {
        return Ok(crate::gpu::BoxName::new(name)?);
    }
    let host = hostname();
    let label: String = host
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(crate::gpu::remote::MAX_BOX_NAME)
        .collect();
    Ok(crate::gpu::BoxName::new(if label.is_empty() { "box" } else { &label })?)
}
