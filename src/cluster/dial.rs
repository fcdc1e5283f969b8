//! A head's link to its NATS server at start. A server that answers within
//! [`HEAD_FIRST_WAIT`] is attached before the scheduler starts (results that came while the
//! head was down are in hand before recovered jobs run again). One that does not (switched
//! off, or a NATS box still booting after a power cut) must not keep the studio down: the
//! daemon serves its API, web page and local work, and the head keeps dialling in the
//! background, attaching the worker boxes once the server answers.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ClusterError, Head};
use crate::config::ClusterConfig;
use crate::scheduler::Scheduler;

/// How long the daemon's start waits for the NATS server before it serves without it.
pub const HEAD_FIRST_WAIT: Duration = Duration::from_secs(5);

/// Pause between background attempts once one has failed (each waits for the server as long
/// as a first connection does).
const RETRY_EVERY: Duration = Duration::from_secs(10);

impl ClusterError {
    /// Whether the server could not be reached (or its JetStream answered an error), which
    /// time may mend, rather than a setting that must be fixed (credentials, TLS, an address
    /// that is not a NATS server, another box's seed).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClusterError::Connect { .. } | ClusterError::JetStream { .. })
    }
}

/// Says that this box leads a cluster, and whether it works too, and lets its telemetry
/// show the worker boxes' GPUs.
pub fn connected(scheduler: &Scheduler, cluster: &ClusterConfig, head: &Arc<Head>) {
    tracing::info!(nats = cluster.nats_server(), local_work = cluster.local_work, "cluster head connected");
    scheduler.telemetry().attach_remote(super::telemetry::readings(head));
}

/// Keeps dialling the NATS server in the background until it answers (or `stop` fires),
/// then attaches the worker boxes to the running scheduler.
pub fn reconnect(scheduler: Arc<Scheduler>, cluster: ClusterConfig, stop: CancellationToken, why: String) {
    let nats = cluster.nats_server().to_string();
    let meanwhile = if cluster.local_work {
        "this box serves and runs jobs itself meanwhile"
    } else {
        "this box serves meanwhile; jobs wait for a worker box (local_work = false)"
    };
    tracing::warn!("cannot reach NATS at {nats} yet ({why}); {meanwhile}, and keeps trying");
    tokio::spawn(async move {
        loop {
            let attempt = tokio::select! {
                r = Head::start(cluster.clone(), scheduler.store().clone(), stop.clone()) => r,
                _ = stop.cancelled() => return,
            };
            match attempt {
                Ok(head) => {
                    connected(&scheduler, &cluster, &head);
                    scheduler.connect_remote(head);
                    return;
                }
                Err(e) => tracing::warn!("cannot reach NATS at {nats} yet: {e}; trying again in {RETRY_EVERY:?}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}
