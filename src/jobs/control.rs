//! What happens to jobs after submission: look-up within the submitter's scope, listing,
//! cancel, retry, reprioritise and delete.

use ulid::Ulid;

use super::submit::check_priority;
use super::{Error, Service, Submitter, parse_id};
use crate::kinds::ParamError;
use crate::scheduler::ControlError;
use crate::store::records::{Job, JobStatus};
use crate::store::{JobFilter, Removal};

/// The longest reason a cancel may give, in characters: a sentence, which views, tables
/// and the dashboard show on one line.
pub const CANCEL_REASON_MAX_CHARS: usize = 200;

/// The page sizes a job listing takes (`limit`); the API's `ListQuery` names the same bounds
/// in its OpenAPI document, held to these by a build-time check.
pub const PAGE_SIZES: std::ops::RangeInclusive<usize> = 1..=500;

/// What a cancel by `who` of a job of `owner` keeps as why: the reason given (after "canceled
/// by an admin (…): " when `who` is not the owner), else who canceled. A reason past
/// [`CANCEL_REASON_MAX_CHARS`] or of more than one line is refused naming `reason`; a blank
/// one is no reason.
fn cancel_reason(who: &Submitter, owner: &str, given: Option<String>) -> Result<String, ParamError> {
    let given = given.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if let Some(r) = &given {
        let chars = r.chars().count();
        if chars > CANCEL_REASON_MAX_CHARS {
            let most = CANCEL_REASON_MAX_CHARS;
            return Err(ParamError::new("reason", format!("must be at most {most} characters; it has {chars}")));
        }
        if r.chars().any(char::is_control) {
            return Err(ParamError::new(
                "reason",
                "must be one line of text, without line breaks or control characters",
            ));
        }
    }
    let by_admin = (who.owner != owner).then(|| format!("canceled by an admin ({})", who.label));
    Ok(match (by_admin, given) {
        (None, Some(reason)) => reason,
        (None, None) => "canceled by its owner".to_string(),
        (Some(by), Some(reason)) => format!("{by}: {reason}"),
        (Some(by), None) => by,
    })
}

/// Which jobs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only jobs in this state.
    pub state: Option<JobStatus>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<usize>,
    /// The last job id of the previous page.
    pub cursor: Option<String>,
}

/// A page of jobs and the cursor of the next one, if there is more.
#[derive(Debug, Clone)]
pub struct JobList {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

impl Service {
    /// A job the submitter may see; another owner's job is reported as missing, never
    /// forbidden, so ids do not leak.
    pub fn visible(&self, who: &Submitter, raw_id: &str) -> Result<Job, Error> {
        let id = parse_id("job", raw_id)?;
        match self.store().job(id)? {
            Some(job) if who.may_see(&job.owner) => Ok(job),
            _ => Err(Error::JobNotFound(raw_id.to_string())),
        }
    }

    /// A page of the jobs the submitter may see.
    pub fn list(&self, who: &Submitter, req: ListRequest) -> Result<JobList, Error> {
        let limit = req.limit.unwrap_or(50);
        if !PAGE_SIZES.contains(&limit) {
            let (least, most) = (PAGE_SIZES.start(), PAGE_SIZES.end());
            return Err(ParamError::new("limit", format!("must be between {least} and {most}")).into());
        }
        let cursor: Option<Ulid> = req
            .cursor
            .as_deref()
            .map(|c| {
                Ulid::from_string(c)
                    .map_err(|_| ParamError::new("cursor", format!("{c:?} is not a next_cursor this API handed out")))
            })
            .transpose()?;
        // A mistyped kind (`imgae`) would list nothing and look like no jobs.
        if let Some(kind) = req.kind.as_deref().filter(|k| self.scheduler.kind(k).is_none()) {
            return Err(Error::UnknownKind { kind: kind.to_string(), known: self.scheduler.kind_names().join(", ") });
        }
        let filter = JobFilter { state: req.state, kind: req.kind, owner: who.owner_filter() };
        let mut jobs = self.store().list_jobs(&filter, cursor, limit + 1)?;
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next_cursor = if more { jobs.last().map(|j| j.id.to_string()) } else { None };
        Ok(JobList { jobs, next_cursor })
    }

    /// Cancels a queued or running job, keeping on it the `reason` the submitter gave (one
    /// line, at most [`CANCEL_REASON_MAX_CHARS`] characters; 400 naming `reason` otherwise)
    /// or, without one, who canceled it.
    pub async fn cancel(&self, who: &Submitter, raw_id: &str, reason: Option<String>) -> Result<Job, Error> {
        let job = self.visible(who, raw_id)?;
        self.cancel_job(who, &job, reason).await
    }

    /// [`Service::cancel`] of a job already read as one the submitter may see (ComfyUI's
    /// queue and interrupt pick theirs from a listing).
    pub async fn cancel_job(&self, who: &Submitter, job: &Job, reason: Option<String>) -> Result<Job, Error> {
        let why = cancel_reason(who, &job.owner, reason)?;
        Ok(self.scheduler.cancel(job.id, Some(why)).await?)
    }

    /// Cancels every queued and running job of `owner` (a revoked key's) through the same
    /// path as [`Service::cancel`], each keeping `reason` (also on its `canceled` event); how
    /// many it canceled. Finished jobs and their files stay; one that ends meanwhile stays as it ended.
    pub async fn cancel_all_of(&self, owner: &str, reason: &str) -> Result<u64, Error> {
        // One pass over the owner's jobs, a page at a time (a listing per state read the
        // whole table once per state).
        const PAGE: usize = 500;
        let filter = JobFilter { state: None, kind: None, owner: Some(owner.to_string()) };
        let (mut ids, mut before) = (Vec::new(), None);
        loop {
            let page = self.store().list_jobs(&filter, before, PAGE)?;
            before = page.last().map(|j| j.id);
            let more = page.len() == PAGE;
            let live = page.into_iter().filter(|j| matches!(j.state.status(), JobStatus::Queued | JobStatus::Running));
            ids.extend(live.map(|j| j.id));
            if !more {
                break;
            }
        }
        let mut canceled = 0;
        for id in ids {
            match self.scheduler.cancel(id, Some(reason.to_string())).await {
                Ok(_) => canceled += 1,
                Err(ControlError::WrongState(..)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(canceled)
    }

    /// Re-queues a failed or canceled job.
    pub async fn retry(&self, who: &Submitter, raw_id: &str) -> Result<Job, Error> {
        let job = self.visible(who, raw_id)?;
        Ok(self.scheduler.retry(job.id).await?)
    }

    /// Changes a job's priority: one that may still run (a failed or canceled job keeps it
    /// for a retry); a succeeded job's has nothing left to order.
    pub async fn reprioritise(&self, who: &Submitter, raw_id: &str, priority: i32) -> Result<Job, Error> {
        check_priority(who, priority, &self.config().limits)?;
        let job = self.visible(who, raw_id)?;
        if job.state.status() == JobStatus::Succeeded {
            let may = "queued, running, failed or canceled";
            return Err(ControlError::WrongState(JobStatus::Succeeded, may, "reprioritised").into());
        }
        let job = self
            .store()
            .update_job(job.id, true, move |j| {
                j.priority = priority;
                Ok(vec![])
            })
            .await?;
        Ok(job)
    }

    /// Deletes a finished job with its artifacts and events.
    pub async fn delete(&self, who: &Submitter, raw_id: &str) -> Result<Removal, Error> {
        let job = self.visible(who, raw_id)?;
        Ok(self.store().delete_job(job.id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(owner: &str, label: &str) -> Submitter {
        Submitter {
            owner: owner.into(),
            label: label.into(),
            admin: owner == "admin",
            max_queued: None,
            gpu_seconds_per_day: None,
        }
    }

    #[test]
    fn a_cancel_keeps_the_reason_given_or_who_canceled() {
        let (kid, admin) = (who("kid", "key \"kid\""), who("admin", "key \"mum\""));
        let reason =
            |w: &Submitter, r: Option<&str>| cancel_reason(w, "kid", r.map(str::to_string)).map_err(|e| e.field);
        assert_eq!(reason(&kid, None).as_deref(), Ok("canceled by its owner"));
        assert_eq!(reason(&kid, Some("  wrong prompt ")).as_deref(), Ok("wrong prompt"));
        assert_eq!(reason(&kid, Some(" ")).as_deref(), Ok("canceled by its owner"), "blank is no reason");
        assert_eq!(reason(&admin, None).as_deref(), Ok("canceled by an admin (key \"mum\")"));
        assert_eq!(reason(&admin, Some("too loud")).as_deref(), Ok("canceled by an admin (key \"mum\"): too loud"));
        let most = "é".repeat(CANCEL_REASON_MAX_CHARS);
        assert_eq!(reason(&kid, Some(&most)).as_deref(), Ok(most.as_str()), "characters count, not bytes");
        assert_eq!(reason(&kid, Some(&format!("{most}e"))), Err("reason".to_string()));
        assert_eq!(reason(&kid, Some("one\ntwo")), Err("reason".to_string()));
    }
}
