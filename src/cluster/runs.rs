//! The stages a worker box runs now: how to stop each, what its heartbeat says about it, and
//! whether one stopped because the head gave it away ([`held::watch`](super::held::watch)),
//! in which case its result is never sent. One lock, held only for map changes.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::protocol::{AdvertRunning, RunKey};

/// A stage running here.
struct Running {
    cancel: CancellationToken,
    info: AdvertRunning,
    /// The head answered that it gave this run away; set together with `cancel`.
    given_away: bool,
}

/// The stages this box runs now, by run.
#[derive(Default)]
pub struct Runs(Mutex<HashMap<RunKey, Running>>);

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunKey, Running>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a stage starting; the token stops it.
    pub fn start(&self, info: AdvertRunning) -> CancellationToken {
        let cancel = CancellationToken::new();
        self.lock().insert(info.key, Running { cancel: cancel.clone(), info, given_away: false });
        cancel
    }

    /// Notes a stage's end; whether the head gave it away meanwhile (its result is not sent).
    pub fn end(&self, key: &RunKey) -> bool {
        self.lock().remove(key).is_some_and(|r| r.given_away)
    }

    /// Stops the run the head gave away, as a cancel does, marking it so; false when it
    /// ended already (its result, if sent, is discarded by the head).
    pub fn give_away(&self, key: &RunKey) -> bool {
        let mut runs = self.lock();
        let Some(r) = runs.get_mut(key) else { return false };
        r.given_away = true;
        r.cancel.cancel();
        true
    }

    /// Stops every run of `job` (the head canceled it).
    pub fn cancel_job(&self, job: Ulid) {
        self.lock().iter().filter(|(k, _)| k.job == job).for_each(|(_, r)| r.cancel.cancel());
    }

    /// Stops every run (the box stops).
    pub fn cancel_all(&self) {
        self.lock().values().for_each(|r| r.cancel.cancel());
    }

    /// The runs going now.
    pub fn keys(&self) -> Vec<RunKey> {
        self.lock().keys().copied().collect()
    }

    /// What the heartbeat says about each run.
    pub fn adverts(&self) -> Vec<AdvertRunning> {
        self.lock().values().map(|r| r.info.clone()).collect()
    }
}
