//! Submission: validate, scope and priority rules, limits, quota, then a durable enqueue
//! (idempotent on the caller's key).

use super::limits::{check_params, gpu_quota_refusal};
use super::{Error, Service, Submitter};
use crate::config::LimitsConfig as Limits;
use crate::kinds::{OwnArtifacts, ParamError, ValidateCtx};
use crate::store::records::{Artifact, IdempotencyKey, Job, JobState, Stage, StageState, now_ms};
use crate::store::{Store, StoreError, Submitted};

/// Priorities a job may have; higher runs first.
const PRIORITIES: std::ops::RangeInclusive<i32> = -1000..=1000;

/// A request for one job, as every API layer hands it over.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Job kind, e.g. `testcard`, `image`, `render`.
    pub kind: String,
    /// Kind-specific parameters, validated by the kind.
    pub params: serde_json::Value,
    /// Higher runs first.
    pub priority: i32,
    /// The caller's `Idempotency-Key`: a repeat returns the earlier job; the key sent with
    /// another kind or other parameters is refused.
    pub idempotency_key: Option<String>,
}

/// What an idempotency key remembers of its request: sha256 of the kind and the parameters
/// as sent (before validation fills in defaults), so a repeat is recognised by what it asks.
fn request_digest(kind: &str, params: &serde_json::Value) -> String {
    crate::store::artifacts::sha256_bytes(format!("{kind}\n{params}").as_bytes())
}

/// Refuses a priority outside -1000..=1000, or above `limits.max_client_priority` from a
/// client key: one rule for a submission and for a later change of priority, so a client
/// cannot put its job ahead of everyone else's by changing it after it was accepted.
pub(super) fn check_priority(who: &Submitter, priority: i32, limits: &Limits) -> Result<(), Error> {
    if !PRIORITIES.contains(&priority) {
        return Err(ParamError::new("priority", "must be between -1000 and 1000").into());
    }
    if !who.admin && priority > limits.max_client_priority {
        let most = limits.max_client_priority;
        return Err(ParamError::new(
            "priority",
            format!("client keys may use priorities up to {most} (limits.max_client_priority)"),
        )
        .into());
    }
    Ok(())
}

/// The submitter's artifacts in the store, for the inputs a job names.
struct Owned<'a> {
    store: &'a Store,
    owner: &'a str,
    /// A store read error met during validation. The kinds see "none", and the submission
    /// answers this error (a 500) instead of their "no such artifact" refusal (a 400 that
    /// would send the user hunting for an upload they have).
    failed: std::sync::Mutex<Option<StoreError>>,
}

impl OwnArtifacts for Owned<'_> {
    fn artifact(&self, id: ulid::Ulid) -> Result<Option<Artifact>, StoreError> {
        self.store.owned_artifact(id, self.owner).inspect_err(|e| {
            if let Ok(mut failed) = self.failed.lock() {
                failed.get_or_insert_with(|| e.clone());
            }
        })
    }

    fn artifact_path(&self, artifact: &Artifact) -> std::path::PathBuf {
        self.store.artifacts_dir().join(&artifact.path)
    }
}

impl Service {
    /// Validates and durably queues a job; `existing` is true when an idempotent repeat
    /// returned an earlier job.
    pub async fn submit(&self, who: &Submitter, submission: Submission) -> Result<Submitted, Error> {
        let job = self.prepare(who, submission)?;
        self.enqueue(who, job).await
    }

    /// A validated job with its id, not yet queued (for layers that record more about it
    /// first, like ComfyUI's prompt records).
    pub fn prepare(&self, who: &Submitter, s: Submission) -> Result<Job, Error> {
        let scheduler = &self.scheduler;
        let kind = scheduler
            .kind(&s.kind)
            .ok_or_else(|| Error::UnknownKind { kind: s.kind.clone(), known: scheduler.kind_names().join(", ") })?;
        if kind.admin_only() && !who.admin {
            return Err(Error::AdminOnly { kind: s.kind });
        }
        let limits = &self.config().limits;
        check_priority(who, s.priority, limits)?;
        check_params(&s.kind, &s.params, limits)?;
        self.check_gpu_quota(who)?;
        let idempotency_key = s
            .idempotency_key
            .map(|key| Box::new(IdempotencyKey { key, request: Some(request_digest(&s.kind, &s.params)) }));
        let artifacts = Owned { store: self.store(), owner: &who.owner, failed: Default::default() };
        let params = kind.validate(s.params, &ValidateCtx { config: self.config(), artifacts: &artifacts });
        if let Some(e) = artifacts.failed.into_inner().ok().flatten() {
            return Err(e.into());
        }
        let params = params?;
        // After the parameters, so a bad field is named first. A 4xx, not a 503: nothing
        // changes by retrying until someone runs `reelbox setup`, and a box without its
        // runtime must still answer every request without a server error.
        if kind.needs_runtime(&params)
            && let Err(e) = scheduler.engine().runtime()
        {
            return Err(Error::RuntimeMissing(e));
        }
        scheduler.check_fits(kind.as_ref(), &params).map_err(|m| ParamError::new("params", m.to_string()))?;
        scheduler.check_ram(kind.as_ref(), &params)?;
        scheduler.check_device(kind.as_ref(), &params).map_err(|why| ParamError::new("model", why.to_string()))?;
        if let Some(secs) = kind.declared_seconds(&params)
            && !who.admin
            && secs > limits.max_job_seconds as f64
        {
            return Err(ParamError::new(
                "params",
                format!(
                    "this job would run {secs:.0} s; client keys may queue jobs up to {} s (limits.max_job_seconds)",
                    limits.max_job_seconds
                ),
            )
            .into());
        }
        let stages = kind
            .stages(&params)
            .into_iter()
            .map(|name| Stage { name, state: StageState::Pending, artifacts: Vec::new(), energy_wh: None })
            .collect();
        let now = now_ms();
        Ok(Job {
            id: self.store().new_id(),
            owner: who.owner.clone(),
            kind: s.kind,
            params: params.to_string(),
            priority: s.priority,
            state: JobState::Queued { enqueued_at: now, not_before: None },
            attempts: 0,
            first_started_at: None,
            stages,
            idempotency_key,
            created_at: now,
        })
    }

    /// Durably queues a job made by [`Service::prepare`] within the submitter's queue quota.
    pub async fn enqueue(&self, who: &Submitter, job: Job) -> Result<Submitted, Error> {
        let limits = &self.config().limits;
        // Every job writes its outputs, events and scratch under the data dir. Checked after
        // the parameters (a bad field is named first), and a repeat of a job queued before
        // the disk filled is answered with that job, as always.
        if let Err(low) = crate::disk::check_room("data dir", self.store().data_dir(), 0, limits.min_free_disk_bytes) {
            if let Some(key) = &job.idempotency_key
                && let Some(found) = self.store().idempotent_job(&job.owner, key)?
            {
                return Ok(Submitted { job: found, existing: true });
            }
            return Err(low.into());
        }
        // A client key without its own quota still cannot fill the whole queue.
        let own = who.max_queued.or((!who.admin).then_some(limits.client_max_queued));
        let gpu = self.gpu_reservation(who, &job);
        let submitted = match self.store().submit_with_quotas(job, self.config().queue.max_queued, own, gpu).await {
            Err(StoreError::GpuQuotaExceeded { used_ms, reserved_ms, estimate_ms, limit_ms, .. }) => {
                return Err(gpu_quota_refusal(who, used_ms, reserved_ms, estimate_ms, limit_ms).into());
            }
            other => other.map_err(|e| e.naming_owner(&who.label))?,
        };
        if !submitted.existing {
            self.scheduler.notify();
        }
        Ok(submitted)
    }
}
