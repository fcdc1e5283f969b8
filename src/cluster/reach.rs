//! Whether the head's NATS server answers now. While it does not, the head cannot see its
//! boxes' heartbeats nor send them work: boxes last seen longer than a heartbeat TTL ago are
//! not listed or placed on (a stage sent then burnt attempts on publishes nobody acked),
//! and a stage already on a box is not given up for a heartbeat the head cannot read.
//! Both roles say in their log, once each way, when the server goes and comes back: the
//! client alone said only `client error: nats: IO error`, over and over, at INFO.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::connection::State;

/// The last finding about the NATS server, and since when it holds.
pub struct Reach {
    found: Mutex<(bool, Instant)>,
    /// The server, as `[cluster] nats_url` (a worker's `--join`) names it.
    url: String,
    /// What this box does while the server is away, for the log.
    meanwhile: &'static str,
    /// Counts the server's returns: a box asks the head about its running stages at each
    /// (`held::watch`), as the head may have given them away meanwhile.
    returns: tokio::sync::watch::Sender<u64>,
}

impl Reach {
    /// Answering since long ago: a box that is simply missing at the start is gone.
    pub fn new(url: &str, meanwhile: &'static str) -> Self {
        let long_ago = Instant::now().checked_sub(Duration::from_secs(3600)).unwrap_or_else(Instant::now);
        let returns = tokio::sync::watch::Sender::new(0);
        Self { found: Mutex::new((true, long_ago)), url: url.to_string(), meanwhile, returns }
    }

    /// Changes each time the server answers again after it did not.
    pub fn returns(&self) -> tokio::sync::watch::Receiver<u64> {
        self.returns.subscribe()
    }

    /// A request to the server was answered.
    pub fn answered(&self) {
        self.set(true);
    }

    /// A request to the server went unanswered (timed out, or the connection is down).
    pub fn unanswered(&self) {
        self.set(false);
    }

    fn set(&self, answering: bool) {
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if found.0 == answering {
            return;
        }
        *found = (answering, Instant::now());
        let url = &self.url;
        if answering {
            tracing::info!("NATS at {url} answers again");
            self.returns.send_modify(|n| *n += 1);
        } else {
            tracing::warn!(
                "NATS at {url} ([cluster] nats_url) does not answer; {}, and the connection keeps trying",
                self.meanwhile
            );
        }
    }

    /// Whether the server answers now: the last request was answered and the client is connected.
    pub fn answers(&self, client: &async_nats::Client) -> bool {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).0 && client.connection_state() == State::Connected
    }

    /// Whether the server has answered for at least `ttl`: long enough for every box still
    /// up to have sent a heartbeat since it came back, so a missing one means a box gone.
    pub fn settled(&self, client: &async_nats::Client, ttl: Duration) -> bool {
        let since = self.found.lock().unwrap_or_else(|p| p.into_inner()).1;
        self.answers(client) && since.elapsed() >= ttl
    }
}
