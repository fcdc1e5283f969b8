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
//!
//! A box cut off from the bus (its process runs on, its packets go nowhere) is counted gone
//! the same way, and its stage placed again, while it runs on. So a box also asks about
//! every stage it runs each time its connection comes back and at each heartbeat
//! ([`watch`], on [`running_held_subject`], which the head never keeps a run for): given
//! away, the stage stops as a cancel stops it, sends no result, and its slot takes new work.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::Message;
use tokio_util::sync::CancellationToken;

use super::Bus;
use super::protocol::{Held, Outcome, RunKey, StageWork, held_subject, running_held_subject};
use super::runs::Runs;

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
    if ask(bus, held_subject(host, key.job), key).await != Held::GivenAway {
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

/// The head's answer about `key` on `subject`; [`Held::Unknown`] when none comes.
async fn ask(bus: &Bus, subject: String, key: RunKey) -> Held {
    let Ok(body) = serde_json::to_vec(&key) else { return Held::Unknown };
    match tokio::time::timeout(ASK_PATIENCE, bus.client.request(subject, body.into())).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).unwrap_or(Held::Unknown),
        _ => Held::Unknown,
    }
}

/// Until `stop`: asks the head about each stage in `runs` whenever the connection comes
/// back and every `every` (the heartbeat's pace: a head may give a run away just after the
/// box is back, before its heartbeat is seen), and stops each one it gave away. Not while
/// the connection is down (nothing would answer); an unknown answer leaves a run going.
pub async fn watch(bus: Bus, host: String, runs: Arc<Runs>, every: Duration, stop: CancellationToken) {
    let mut returns = bus.reach.returns();
    loop {
        tokio::select! {
            _ = returns.changed() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if bus.client.connection_state() != State::Connected {
            continue;
        }
        for key in runs.keys() {
            if ask(&bus, running_held_subject(&host, key.job), key).await == Held::GivenAway && runs.give_away(&key) {
                tracing::debug!(job = %key.job, attempt = key.attempt, "the head gave this run away: stopping it");
            }
        }
    }
}

/// Ends a run stopped by [`watch`]: says so in the log and acks its message (the head
/// deleted it when it gave the run away; the ack only makes sure it is gone). No result is
/// sent: the head waits for another run's. Outputs of a run that finished before its stop
/// took hold are deleted here, as the head, which deletes a late result's, never sees them.
pub async fn stopped(bus: &Bus, host: &str, msg: &Message, key: RunKey, outcome: &Outcome, ms: u64) {
    if let Outcome::Done { outputs } = outcome {
        super::objects::remove(bus, host, outputs).await;
    }
    tracing::info!(
        job = %key.job,
        attempt = key.attempt,
        ms,
        "stopped job {} attempt {}: the head placed it again (or canceled it) while this box was cut off",
        key.job,
        key.attempt
    );
    if let Err(e) = msg.ack().await {
        tracing::debug!(job = %key.job, "ack of a stage given away: {e}");
    }
}
