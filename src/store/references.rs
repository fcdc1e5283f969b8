//! Which artifacts something still needs: the one place that decides what deleting a job
//! and the retention sweep may remove. A profile's portrait and voice sample, and every
//! artifact a queued or running job names in its parameters, are in use and never removed;
//! an artifact a finished job names is needed only while that job is kept.

use std::collections::{HashMap, HashSet};

use ulid::Ulid;

use super::records::{Job, Profile};

/// Artifact ids anything names, by who names them.
#[derive(Debug, Default)]
pub(crate) struct References {
    /// Named by a profile or a queued or running job.
    in_use: HashSet<Ulid>,
    /// Artifact → the finished jobs that name it.
    by_finished: HashMap<Ulid, Vec<Ulid>>,
}

impl References {
    /// Collects the references of all `jobs` and `profiles`.
    pub(crate) fn of<'a>(
        jobs: impl IntoIterator<Item = &'a Job>,
        profiles: impl IntoIterator<Item = &'a Profile>,
    ) -> Self {
        let mut refs = Self::default();
        for p in profiles {
            refs.in_use.extend(p.portrait.iter().chain(p.voice_sample.iter()).copied());
        }
        for job in jobs {
            let named = named_in_params(&job.params);
            if job.state.is_terminal() {
                for a in named {
                    refs.by_finished.entry(a).or_default().push(job.id);
                }
            } else {
                refs.in_use.extend(named);
            }
        }
        refs
    }

    /// True when a profile or a queued or running job uses the artifact: it is never removed.
    pub(crate) fn in_use(&self, artifact: Ulid) -> bool {
        self.in_use.contains(&artifact)
    }

    /// True when the artifact is in use, or named by a finished job that stays (is not in
    /// `leaving`).
    pub(crate) fn needed(&self, artifact: Ulid, leaving: &HashSet<Ulid>) -> bool {
        self.in_use(artifact)
            || self.by_finished.get(&artifact).is_some_and(|jobs| jobs.iter().any(|j| !leaving.contains(j)))
    }
}

/// Every id a job's parameters name: any string anywhere in them that is a ULID. Kinds put
/// artifact ids in different fields (`portrait`, `music`, `init_image`, `presenter.portrait`,
/// ...); reading them all this way needs no list that a new kind could forget to extend, and
/// a string that only looks like an id keeps an artifact longer, never shorter.
pub(crate) fn named_in_params(params: &str) -> Vec<Ulid> {
    fn walk(v: &serde_json::Value, out: &mut Vec<Ulid>) {
        match v {
            serde_json::Value::String(s) => {
                if let Ok(id) = Ulid::from_string(s.trim()) {
                    out.push(id);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(v) => walk(&v, &mut out),
        // Unreadable params (never written by reelbox): fall back to scanning the text for
        // anything id-shaped, so a damaged record still protects its inputs.
        Err(_) => out.extend(
            params
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| w.len() == 26)
                .filter_map(|w| Ulid::from_string(w).ok()),
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{JobState, Style, Voice};

    fn job(state: JobState, params: serde_json::Value) -> Job {
        Job {
            id: Ulid::new(),
            owner: "local".into(),
            kind: "render".into(),
            params: params.to_string(),
            priority: 0,
            state,
            attempts: 0,
            first_started_at: None,
            stages: vec![],
            idempotency_key: None,
            created_at: 0,
        }
    }

    #[test]
    fn ids_are_found_at_any_depth_of_the_params() {
        let (a, b, c) = (Ulid::new(), Ulid::new(), Ulid::new());
        let params = serde_json::json!({"music": a.to_string(), "presenter": {"portrait": b.to_string()},
            "list": [c.to_string()], "script": "not an id", "steps": 4});
        let mut found = named_in_params(&params.to_string());
        found.sort();
        let mut want = vec![a, b, c];
        want.sort();
        assert_eq!(found, want);
    }

    #[test]
    fn live_jobs_and_profiles_put_artifacts_in_use_and_finished_jobs_only_while_kept() {
        let (upload, portrait, output) = (Ulid::new(), Ulid::new(), Ulid::new());
        let queued = job(JobState::Queued { enqueued_at: 0, not_before: None }, serde_json::json!({"music": upload}));
        let done = job(JobState::Succeeded { started_at: 0, finished_at: 1 }, serde_json::json!({"input": output}));
        let profile = Profile {
            id: Ulid::new(),
            owner: "local".into(),
            name: "p".into(),
            portrait: Some(portrait),
            face_box: None,
            voice_sample: None,
            voice: Voice { model: "v".into(), speaker: None, length_scale: None, noise_scale: None, noise_w: None },
            style: Style::default(),
            created_at: 0,
        };
        let refs = References::of([&queued, &done], [&profile]);
        assert!(refs.in_use(upload) && refs.in_use(portrait));
        assert!(!refs.in_use(output));
        assert!(refs.needed(output, &HashSet::new()));
        assert!(!refs.needed(output, &HashSet::from([done.id])), "needed only while its finished job stays");
    }
}
