//! Job events: every event by daemon-wide sequence number (`EVENTS`, the SSE id) with a
//! per-job index (`JOB_EVENTS`), so a stream resumes from any id it last saw.

use redb::{ReadableDatabase, ReadableTable};
use ulid::Ulid;

use super::codec::decode;
use super::records::{Event, EventBody, Job};
use super::{EVENTS, JOB_EVENTS, Store, StoreError};

impl Store {
    /// Stored events after `after` (exclusive), of one job or all, oldest first.
    pub fn events_after(&self, job: Option<Ulid>, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        match job {
            Some(job) => {
                let index = txn.open_table(JOB_EVENTS)?;
                for entry in index.range((job.0, after.saturating_add(1))..=(job.0, u64::MAX))? {
                    let (k, _) = entry?;
                    if let Some(v) = events.get(k.value().1)? {
                        out.push(decode(v.value())?);
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            None => {
                for entry in events.range(after.saturating_add(1)..)? {
                    let (_, v) = entry?;
                    out.push(decode(v.value())?);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Id of the newest stored event (0 when there is none).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.get()?.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        Ok(events.last()?.map(|(k, _)| k.value()).unwrap_or(0))
    }

    /// Appends events that need no durability of their own (progress, logs).
    pub fn append_events_blocking(&self, job: &Job, bodies: Vec<EventBody>) -> Result<(), StoreError> {
        let job = job.clone();
        self.write_blocking(false, move |ctx| {
            for b in bodies {
                ctx.event(&job, b)?;
            }
            Ok(())
        })
    }
}
