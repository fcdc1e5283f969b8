//! The head's side of [`crate::cluster::held`]: it answers a box asking whether it still
//! holds a run for it, and gives a run away (its box stopped answering, or the job was
//! canceled) only under the same lock, so each run is either kept for the box that asked
//! or given away, never both. A box asking while it runs the stage (back from a network
//! cut) is answered alike but never keeps the run: only a restarted box, whose heartbeat
//! follows its question, is owed that; a box that asks and then goes is counted gone as
//! soon as its heartbeat expires. A run of a job that has ended (canceled, failed, done) or
//! is gone is given away too, whatever the head remembers: a head restarted while a box was
//! cut off, then told to cancel the job, has no verdict on the box's run, and the cancel it
//! sent reached no box.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{Head, ORPHAN_KEEP};
use crate::cluster::protocol::{HELD_SUBJECTS, Held, RUNNING_ASK, RunKey};

/// How long the head remembers giving a run away: a box cut off that long and back asks
/// about its stage then, and hears it was placed again.
const GIVEN_AWAY_KEEP: Duration = Duration::from_secs(24 * 3600);

/// What the head last decided about a run a box may ask after.
enum Verdict {
    /// Its box (restarted) asked and keeps it: not counted gone until a heartbeat TTL passed.
    Kept(Instant),
    /// Taken back from this box: the box must not run it.
    GivenAway(String, Instant),
}

/// The head's verdicts on runs boxes may ask after; always changed with `waiting` locked.
#[derive(Default)]
pub(super) struct Told(HashMap<RunKey, Verdict>);

impl Told {
    /// The answer to `host` asking after `key`; `holds`: the head waits for it from `host`,
    /// and then keeps it for the box from now on if `keeps` (a restarted box asking).
    /// `other_run`: the head waits for another run of the same stage (another attempt, or
    /// another box), whose result it takes; this one's it would discard. That holds without
    /// a verdict too: a head restarted since it gave the run away remembers no verdict, but
    /// runs the stage again.
    fn answer(&mut self, key: RunKey, host: &str, holds: bool, keeps: bool, other_run: bool) -> Held {
        if holds {
            if keeps {
                self.0.insert(key, Verdict::Kept(Instant::now()));
            }
            return Held::Yes;
        }
        match self.0.get(&key) {
            Some(Verdict::GivenAway(h, _)) if h == host => Held::GivenAway,
            _ if other_run => Held::GivenAway,
            _ => Held::Unknown,
        }
    }

    /// Records `key` as given away from `host`, unless its box asked for it within `keep`;
    /// whether it was given away.
    fn give_away(&mut self, key: RunKey, host: &str, keep: Option<Duration>) -> bool {
        if let (Some(Verdict::Kept(t)), Some(keep)) = (self.0.get(&key), keep)
            && t.elapsed() < keep
        {
            return false;
        }
        self.0.insert(key, Verdict::GivenAway(host.to_string(), Instant::now()));
        true
    }

    /// Forgets a box's keep older than `kept` (its heartbeat came, or it went, long before)
    /// and a give-away older than `given`: kept much longer, since a box cut off for longer
    /// than a keep (a long stage on a box off the network for an hour) still asks when it is
    /// back, and only a verdict stops its run; a few bytes a give-away.
    fn expire(&mut self, kept: Duration, given: Duration) {
        self.0.retain(|_, v| match v {
            Verdict::Kept(t) => t.elapsed() <= kept,
            Verdict::GivenAway(_, t) => t.elapsed() <= given,
        });
    }
}

impl Head {
    /// Answers the boxes' questions until the head stops.
    pub(super) async fn answer_held(self: Arc<Self>) {
        let mut asks = match self.bus.client.subscribe(HELD_SUBJECTS).await {
            Ok(s) => s,
            Err(e) => return tracing::error!("cannot answer boxes asking after their stages: {e}"),
        };
        loop {
            let ask = tokio::select! {
                a = asks.next() => a,
                _ = self.stop.cancelled() => return,
            };
            let Some(ask) = ask else { return };
            // `reelbox.progress.HOST.held.JOB`: the subject proves the box (per-box rights).
            let host = ask.subject.split('.').nth(2).unwrap_or_default();
            let (Some(reply), Ok(key)) = (ask.reply.clone(), serde_json::from_slice::<RunKey>(&ask.payload)) else {
                continue;
            };
            let restarted = !ask.subject.ends_with(RUNNING_ASK);
            let answer = {
                let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let holds = waiting.get(&key).is_some_and(|(h, _)| h == host);
                let other_run = waiting.keys().any(|k| k.job == key.job && k.stage == key.stage && *k != key);
                self.told.lock().unwrap_or_else(|p| p.into_inner()).answer(key, host, holds, restarted, other_run)
            };
            let answer = if answer == Held::Unknown && self.job_ended(key.job) { Held::GivenAway } else { answer };
            if answer == Held::Yes && restarted {
                tracing::info!(job = %key.job, stage = key.stage, attempt = key.attempt, host,
                    "worker {host} started again and takes back its stage: the head still waits for it");
            }
            let body = serde_json::to_vec(&answer).unwrap_or_default();
            if let Err(e) = self.bus.client.publish(reply, body.into()).await {
                tracing::debug!("cannot answer {host}: {e}");
            }
        }
    }

    /// Gives `key` away from `host` unless the box asked for it within the last heartbeat
    /// TTL (a box that restarted keeps what it took back); `false` when it keeps it.
    pub(super) fn give_away(&self, key: RunKey, host: &str) -> bool {
        self.release_unless(key, host, Some(Duration::from_secs(self.cluster.heartbeat_ttl_s)))
    }

    /// Stops waiting for `key` and answers `host` "given away" from now on.
    pub(super) fn release(&self, key: RunKey, host: &str) {
        self.release_unless(key, host, None);
    }

    /// [`Head::release`] unless the box asked for `key` within `keep`; both locks held
    /// throughout (`waiting`, then `told`, as the answers take them), so an answer "yes"
    /// and a give-away never both happen.
    fn release_unless(&self, key: RunKey, host: &str, keep: Option<Duration>) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let given = self.told.lock().unwrap_or_else(|p| p.into_inner()).give_away(key, host, keep);
        if given {
            waiting.remove(&key);
        }
        given
    }

    /// Whether `job` has ended or is gone from the store: no run of it will be taken. A store
    /// that cannot be read says nothing (the box runs on, as with no answer).
    fn job_ended(&self, job: ulid::Ulid) -> bool {
        match self.store.job(job) {
            Ok(Some(j)) => j.state.is_terminal(),
            Ok(None) => true,
            Err(e) => {
                tracing::debug!(%job, "cannot read the job a box asks after: {e}");
                false
            }
        }
    }

    /// Forgets what was told long ago.
    pub(super) fn expire_told(&self) {
        self.told.lock().unwrap_or_else(|p| p.into_inner()).expire(ORPHAN_KEEP, GIVEN_AWAY_KEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(attempt: u32) -> RunKey {
        RunKey { job: ulid::Ulid::new(), stage: 0, attempt }
    }

    #[test]
    fn a_run_given_away_is_said_so_to_its_box_only() {
        let mut told = Told::default();
        let k = key(1);
        assert_eq!(told.answer(k, "attic", false, true, false), Held::Unknown, "a head that knows nothing says so");
        assert!(told.give_away(k, "attic", Some(Duration::from_secs(2))));
        assert_eq!(told.answer(k, "attic", false, true, false), Held::GivenAway);
        assert_eq!(told.answer(k, "den", false, true, false), Held::Unknown, "another box never held it");
    }

    #[test]
    fn a_run_its_restarted_box_asked_for_is_kept_for_a_ttl_then_may_go() {
        let mut told = Told::default();
        let k = key(1);
        assert_eq!(told.answer(k, "attic", true, true, false), Held::Yes);
        assert!(!told.give_away(k, "attic", Some(Duration::from_secs(60))), "kept for the box that asked");
        assert!(told.give_away(k, "attic", Some(Duration::ZERO)), "a box gone again loses it after the TTL");
        assert_eq!(told.answer(k, "attic", false, true, false), Held::GivenAway);
    }

    #[test]
    fn a_cancel_gives_a_run_away_even_when_its_box_asked() {
        let mut told = Told::default();
        let k = key(2);
        told.answer(k, "attic", true, true, false);
        assert!(told.give_away(k, "attic", None));
        assert_eq!(told.answer(k, "attic", false, true, false), Held::GivenAway);
        told.expire(Duration::ZERO, Duration::from_secs(600));
        assert_eq!(told.answer(k, "attic", false, true, false), Held::GivenAway, "kept a while");
        told.expire(Duration::ZERO, Duration::ZERO);
        assert_eq!(told.answer(k, "attic", false, true, false), Held::Unknown, "forgotten after a while");
    }

    #[test]
    fn a_head_that_runs_the_stage_again_says_so_without_a_verdict() {
        // Restarted since it gave the run away: no verdict, but another attempt of the stage
        // runs (elsewhere or queued on this box), and this one's result would be discarded.
        let mut told = Told::default();
        let k = key(1);
        assert_eq!(told.answer(k, "attic", false, false, true), Held::GivenAway);
        assert_eq!(told.answer(k, "attic", false, true, true), Held::GivenAway, "a restarted box skips it too");
        assert_eq!(told.answer(k, "attic", true, false, true), Held::Yes, "the run it waits for is never given away");
    }

    #[test]
    fn a_box_asking_while_it_runs_never_keeps_the_run_from_being_given_away() {
        let mut told = Told::default();
        let k = key(1);
        assert_eq!(told.answer(k, "attic", true, false, false), Held::Yes, "still held: the box runs on");
        assert!(told.give_away(k, "attic", Some(Duration::from_secs(60))), "its heartbeat alone keeps it");
        assert_eq!(told.answer(k, "attic", false, false, false), Held::GivenAway, "back from a cut, it stops");
    }

    #[test]
    fn a_give_away_outlives_a_keep_for_a_box_cut_off_long() {
        let mut told = Told::default();
        let (kept, given) = (key(1), key(2));
        told.answer(kept, "attic", true, true, false);
        told.give_away(given, "den", None);
        // Both are older than a keep lasts: the keep goes, the give-away stays.
        told.expire(Duration::ZERO, GIVEN_AWAY_KEEP);
        assert!(told.give_away(kept, "attic", Some(Duration::from_secs(60))), "its keep is forgotten");
        assert_eq!(told.answer(given, "den", false, false, false), Held::GivenAway, "back after long, it still stops");
    }
}
