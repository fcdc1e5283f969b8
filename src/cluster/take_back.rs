//! A box that starts again takes back at once the stages its previous run had fetched and
//! not finished (kill -9, power cut). JetStream would deliver them again only once their
//! ack wait (`[cluster] ack_wait_s`, 30 s) ran out, and the job meanwhile shows the stage
//! running on this box with its progress frozen. Naking them needs the messages, which
//! died with the old process; so the box deletes its own work consumer and makes it anew:
//! the work stream keeps every message until it is acked (work-queue retention), and a
//! new consumer delivers all of them at once. Nothing is lost and, as
//! [`name_claim`](super::name_claim) made sure no other running box holds this name, no
//! stage then runs twice at once.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;

use super::Bus;
use super::protocol::box_consumer;

/// Makes the stages this box's consumer still waits acks for deliverable now. Only when no
/// other running box uses this name (`claimed`): another one's stages would run twice.
pub async fn take_back(bus: &Bus, host: &str, claimed: bool) {
    let name = box_consumer(host);
    // No consumer yet (a first start, or the head forgot this box): nothing to take back.
    let Ok(consumer) = bus.work.get_consumer::<pull::Config>(&name).await else { return };
    let pending = consumer.cached_info().num_ack_pending;
    if pending == 0 || !claimed {
        return;
    }
    // A server config from an older `reelbox cluster nats-config` refuses the delete, and a
    // refused request gets no answer at all: a few seconds is plenty for the server.
    match tokio::time::timeout(Duration::from_secs(3), bus.work.delete_consumer(&name)).await {
        Ok(Ok(_)) => {
            tracing::info!(
                "taking back {pending} stage(s) this box was running when it stopped (they would otherwise \
                 wait out [cluster] ack_wait_s)"
            );
        }
        outcome => {
            let why = outcome
                .map_or_else(|_| "no answer".to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
            tracing::info!(
                "cannot take back the {pending} stage(s) this box was running when it stopped ({why}): they run \
                 again after [cluster] ack_wait_s; `reelbox cluster nats-config --add-to FILE` updates the boxes' rights"
            );
        }
    }
}
