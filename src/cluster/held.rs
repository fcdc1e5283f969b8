//! A box that starts again does not run a stage the head already gave away. Restarted after
//! kill -9, a box takes back what its crashed run held ([`take_back`](super::take_back)) once
//! its old heartbeat is a TTL old; at that same moment the head counts the box gone and, a
//! second later, takes the stage back, deletes its work message and places it again with
//! the next attempt. A message the new consumer delivered just before that delete would
//! run the old attempt in full (minutes of a GPU on a render stage) for the head to discard.
//! So before running a message published before this run of the box joined, the box asks
//! the head ([`held_subject`]). The head answers under the lock its give-away takes: either
//! it still holds the run, and then keeps it for the box rather than counting the box gone
//! (its heartbeat follows within the TTL), or it gave it away, and the box acks the message
//! without running it. No answer (a head that is down, or one from before this) runs the
//! stage as before: a head that resumes the job takes its result.

use std::time::Duration;

use async_nats::jetstream::Message;

use super::Bus;
use super::protocol::{Held, StageWork, held_subject};

/// How long a box waits for the head's answer; a head that is not running answers at once
/// (the server says nobody listens).
const ASK_PATIENCE: Duration = Duration::from_secs(2);

/// The work stream's last message when this run of the box joined: a message up to it may
/// have been given away while the box was down, and is asked after before it runs. Every
/// message is asked after when the stream cannot be read.
pub async fn asks_upto(bus: &Bus) -> u64 {
    match tokio::time::timeout(ASK_PATIENCE, bus.work.get_info()).await {
        Ok(Ok(info)) => info.state.last_sequence,
        _ => u64::MAX,
    }
}

/// Whether `msg` carries a run the head gave away (then acked here, and said in the log):
/// the box must not run it. Asks only for messages up to `upto` ([`asks_upto`]).
pub async fn given_away(bus: &Bus, host: &str, msg: &Message, work: &StageWork, upto: u64) -> bool {
    let key = work.key;
    if msg.info().is_ok_and(|i| i.stream_sequence > upto) {
        return false;
    }
    let Ok(body) = serde_json::to_vec(&key) else { return false };
    let asked = tokio::time::timeout(ASK_PATIENCE, bus.client.request(held_subject(host, key.job), body.into())).await;
    let answer = match asked {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).unwrap_or(Held::Unknown),
        _ => Held::Unknown,
    };
    if answer != Held::GivenAway {
        return false;
    }
    tracing::info!(
        job = %key.job,
        stage = %work.stage,
        attempt = key.attempt,
        "skipping job {} attempt {}: the head has placed it again (or canceled it) since this box last ran",
        key.job,
        key.attempt
    );
    // Already deleted by the head, or about to be: the ack only makes sure it is gone.
    if let Err(e) = msg.ack().await {
        tracing::debug!(job = %key.job, "ack of a stage given away: {e}");
    }
    true
}
