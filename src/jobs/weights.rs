//! Each job's stage weights, worked out once: a render's come from planning its whole script
//! again, and `reelbox top`, the web studio and `jobs list` show the same jobs every second.
//! Weights follow from a job's kind and parameters alone, which never change after it is
//! accepted, so a job id keeps its weights for as long as the daemon runs; the jobs shown
//! lately are remembered, bounded, whatever build wrote their records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ulid::Ulid;

use super::Service;
use crate::kinds::even_weights;
use crate::store::records::Job;

/// Jobs remembered per generation: more than one poll of `reelbox top` asks about (100
/// running, 200 queued, 30 of each finished state), so a dashboard's jobs stay remembered.
const GENERATION: usize = 1024;

/// The weights of the jobs shown lately, in two generations: a full current generation
/// becomes the previous one (dropping the one before), and a job found only in the previous
/// one moves back to the current. At most 2 × [`GENERATION`] jobs; a job shown at least
/// once per generation is never worked out again.
#[derive(Default)]
pub(super) struct WeightCache {
    generations: Mutex<[HashMap<Ulid, Arc<[f64]>>; 2]>,
}

impl WeightCache {
    /// `job`'s weights, from `work_out` the first time it is asked (outside the lock: a
    /// render's plan must not hold up the views of other jobs).
    fn get_or(&self, job: Ulid, work_out: impl FnOnce() -> Arc<[f64]>) -> Arc<[f64]> {
        if let Some(found) = self.remembered(job) {
            return found;
        }
        let weights = work_out();
        self.remember(job, weights.clone());
        weights
    }

    fn remembered(&self, job: Ulid) -> Option<Arc<[f64]>> {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = g[0].get(&job) {
            return Some(w.clone());
        }
        let w = g[1].remove(&job)?;
        Self::insert(&mut g, job, w.clone());
        Some(w)
    }

    fn remember(&self, job: Ulid, weights: Arc<[f64]>) {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        Self::insert(&mut g, job, weights);
    }

    fn insert(g: &mut [HashMap<Ulid, Arc<[f64]>>; 2], job: Ulid, weights: Arc<[f64]>) {
        if g[0].len() >= GENERATION && !g[0].contains_key(&job) {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(job, weights);
    }
}

impl Service {
    /// Each of `job`'s stages' share of its time, in the order of its stages: its kind's
    /// [`JobKind::stage_weights`](crate::kinds::JobKind::stage_weights), worked out once per
    /// job; alike for a kind this build does not know.
    pub fn stage_weights(&self, job: &Job) -> Arc<[f64]> {
        self.weights.get_or(job.id, || {
            let names: Vec<_> = job.stages.iter().map(|s| s.name).collect();
            let weights = match self.scheduler.kind(&job.kind) {
                Some(kind) => kind.stage_weights(&serde_json::from_str(&job.params).unwrap_or_default(), &names),
                None => even_weights(&names),
            };
            weights.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job shown again is not worked out again; the cache stays bounded, and a job shown
    /// once per generation stays in it however many others come and go.
    #[test]
    fn weights_are_worked_out_once_per_job_and_the_cache_stays_bounded() {
        let cache = WeightCache::default();
        let worked = std::cell::Cell::new(0);
        let ask = |id: Ulid| {
            cache.get_or(id, || {
                worked.set(worked.get() + 1);
                Arc::from([1.0])
            })
        };
        let watched = Ulid::new();
        for round in 0..3 * GENERATION {
            ask(watched);
            ask(Ulid::new());
            if round == 0 {
                assert_eq!(worked.get(), 2);
            }
        }
        assert_eq!(worked.get(), 1 + 3 * GENERATION, "the watched job was worked out once");
        let g = cache.generations.lock().expect("lock");
        assert!(g[0].len() + g[1].len() <= 2 * GENERATION);
    }
}
