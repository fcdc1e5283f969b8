//! The single writer thread. redb allows one write transaction at a time, so instead of
//! making callers queue for it, they hand their writes here; the thread folds everything
//! waiting into one transaction and answers each caller after that commit.
//!
//! A failed commit (ENOSPC, EIO) is never retried: its callers get
//! [`StoreError::Unwritable`] naming the data dir, and because redb may have latched the
//! error into its `Database` (`PreviousIo` on every later transaction), the thread then
//! reopens the file before the next batch (see [`super::handle`]). Whether the last commit
//! worked is kept on the handle for `/readyz`.

use std::sync::Arc;
use std::sync::mpsc;

use redb::{Durability, ReadableTable, WriteTransaction};
use tokio::sync::{broadcast, oneshot};
use ulid::Ulid;

use super::codec::{decode, encode};
use super::handle::DbHandle;
use super::records::{Event, EventBody, Job, JobState, now_ms};
use super::{EVENTS, JOB_EVENTS, JOBS, META, QUEUE, StoreError};

/// META key of the event id reservation: no id at or above it has ever been visible.
pub(super) const SEQ_RESERVED: &str = "event_seq_reserved";

/// Ids reserved per durable reservation write. Progress events commit without an fsync;
/// reserving ahead keeps them that way but for one fsync per this many events, and a
/// crash skips at most this many ids.
const SEQ_BLOCK: u64 = 1024;

/// Where event numbering starts when the store opens.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeqStart {
    /// The next id to hand out.
    pub next: u64,
    /// The durable reservation (see [`SEQ_RESERVED`]).
    pub reserved: u64,
}

type Finisher = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Task = Box<dyn FnOnce(&mut WriteCtx) -> Finisher + Send>;

struct Op {
    durable: bool,
    task: Task,
}

/// What a write closure sees: the shared transaction plus event bookkeeping.
pub struct WriteCtx<'t> {
    pub txn: &'t WriteTransaction,
    next_seq: &'t mut u64,
    published: &'t mut Vec<Event>,
}

impl WriteCtx<'_> {
    /// Records an event of `job`; it is broadcast after the commit.
    pub fn event(&mut self, job: &Job, body: EventBody) -> Result<(), StoreError> {
        let event = Event { seq: *self.next_seq, job: job.id, owner: job.owner.clone(), at: now_ms(), body };
        self.txn.open_table(EVENTS)?.insert(event.seq, encode(&event).as_slice())?;
        self.txn.open_table(JOB_EVENTS)?.insert((job.id.0, event.seq), ())?;
        *self.next_seq += 1;
        self.published.push(event);
        Ok(())
    }

    /// Reads a job inside the transaction.
    pub fn job(&self, id: Ulid) -> Result<Option<Job>, StoreError> {
        let table = self.txn.open_table(JOBS)?;
        let got = table.get(id.0)?;
        got.map(|g| decode(g.value())).transpose().map_err(Into::into)
    }

    /// Writes a job, keeping the queue index in step with its state.
    pub fn put_job(&mut self, old: Option<&Job>, job: &Job) -> Result<(), StoreError> {
        let mut queue = self.txn.open_table(QUEUE)?;
        if let Some(key) = old.and_then(queue_key) {
            queue.remove(key)?;
        }
        if let Some(key) = queue_key(job) {
            queue.insert(key, ())?;
        }
        self.txn.open_table(JOBS)?.insert(job.id.0, encode(job).as_slice())?;
        if job.state.is_terminal() && old.is_none_or(|o| !o.state.is_terminal()) {
            super::recovery::forget_crashes(self.txn, job.id)?;
        }
        super::quota::on_job_write(self.txn, old, job)
    }

    /// Read-modify-write of one job with its events.
    pub fn update_job(
        &mut self,
        id: Ulid,
        f: impl FnOnce(&mut Job) -> Result<Vec<EventBody>, StoreError>,
    ) -> Result<Job, StoreError> {
        let old = self.job(id)?.ok_or_else(|| StoreError::NotFound { what: "job", id: id.to_string() })?;
        let mut job = old.clone();
        let events = f(&mut job)?;
        self.put_job(Some(&old), &job)?;
        for e in events {
            self.event(&job, e)?;
        }
        Ok(job)
    }
}

fn queue_key(job: &Job) -> Option<(i64, i64, u128)> {
    match job.state {
        JobState::Queued { enqueued_at, .. } => Some((-i64::from(job.priority), enqueued_at, job.id.0)),
        _ => None,
    }
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: Arc<std::sync::Mutex<Option<mpsc::Sender<Op>>>>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the thread; `max_batch` 1 turns group commit off.
    pub(super) fn start(
        db: Arc<DbHandle>,
        seq: SeqStart,
        max_batch: usize,
        events: broadcast::Sender<Arc<Event>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("reelbox-store-writer".into())
            .spawn(move || run(db, rx, seq, max_batch, events))
            .map_err(|e| tracing::error!("cannot start the store writer: {e}"))
            .ok();
        Self { tx: Arc::new(std::sync::Mutex::new(Some(tx))), thread: Arc::new(std::sync::Mutex::new(thread)) }
    }

    fn send<R: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<R, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let task: Task = Box::new(move |ctx| {
            let result = f(ctx);
            Box::new(move |commit_err: Option<&StoreError>| {
                let out = match commit_err {
                    Some(e) => Err(e.clone()),
                    None => result,
                };
                let _ = reply.send(out);
            })
        });
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().ok_or(StoreError::Closed)?.send(Op { durable, task }).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Queues a write and waits for its commit.
    pub async fn submit<R: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.send(durable, f)?.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a write and blocks the calling (non-async) thread until its commit.
    pub fn submit_blocking<R: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.send(durable, f)?.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Lets the thread drain what is queued, then waits for it to stop, so the database
    /// file is released when this returns.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

fn run(
    handle: Arc<DbHandle>,
    rx: mpsc::Receiver<Op>,
    seq: SeqStart,
    max_batch: usize,
    events: broadcast::Sender<Arc<Event>>,
) {
    let SeqStart { next: mut next_seq, mut reserved } = seq;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut durable = batch.iter().any(|op| op.durable);
        let seq_before = next_seq;
        let mut published = Vec::new();
        let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
        let outcome = (|| -> Result<Option<u64>, StoreError> {
            if handle.get().is_err() {
                // An earlier reopen failed (the disk was still full); try again now.
                handle.reopen()?;
            }
            let db = handle.get()?;
            let mut txn = db.begin_write()?;
            {
                let mut ctx = WriteCtx { txn: &txn, next_seq: &mut next_seq, published: &mut published };
                for op in batch.drain(..) {
                    finishers.push((op.task)(&mut ctx));
                }
            }
            // An id is visible once published, even from a commit a crash may undo; the
            // reservation covering it must be durable first, or a restart would number
            // new events from the last stored one and hand out seen ids again.
            let reserve = (next_seq > reserved).then(|| next_seq.saturating_add(SEQ_BLOCK));
            if let Some(r) = reserve {
                txn.open_table(META)?.insert(SEQ_RESERVED, r)?;
                durable = true;
            }
            txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
            txn.commit()?;
            Ok(reserve)
        })();
        let err = match outcome {
            Ok(reserve) => {
                reserved = reserve.unwrap_or(reserved);
                None
            }
            Err(e) => Some(unwritable(&handle, e)),
        };
        handle.set_health(err.as_ref());
        if let Some(e) = &err {
            tracing::error!("store write failed: {e}");
            next_seq = seq_before;
            published.clear();
            // The batch is answered as failed, never replayed: its closures have run and
            // their callers decide. Only the handle is renewed, if redb latched the error.
            if handle.poisoned()
                && let Err(e) = handle.reopen()
            {
                tracing::error!("cannot reopen the store: {e}");
            }
        }
        for f in finishers {
            f(err.as_ref());
        }
        for e in published {
            let _ = events.send(Arc::new(e));
        }
    }
}

/// A commit failure as callers see it: naming the data dir, with redb's reason (for a full
/// disk, "No space left on device"). Errors of the callers' own closures (not found,
/// conflicts, full queue) pass through unchanged.
fn unwritable(handle: &DbHandle, e: StoreError) -> StoreError {
    match e {
        StoreError::Db(reason) => StoreError::Unwritable { dir: handle.data_dir().to_path_buf(), reason },
        other => other,
    }
}
