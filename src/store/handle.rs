//! The swappable database handle. After an I/O error during a commit (a full disk, most
//! often) redb poisons its `Database`: every later transaction fails with
//! `StorageError::PreviousIo` until the file is closed and opened again. So the store does
//! not own one `Database` for life; readers and the writer thread fetch the current one
//! from here, and the writer swaps in a fresh one after a failed commit. The handle also
//! remembers whether the last commit worked, which `/readyz` reports.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::StoreError;

/// How long a reopen waits for readers of the old handle to let go of its file lock.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The current database plus the health of the last write.
pub(crate) struct DbHandle {
    data_dir: PathBuf,
    path: PathBuf,
    /// `None` between dropping a poisoned handle and a successful reopen.
    current: RwLock<Option<Arc<Database>>>,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl DbHandle {
    /// Wraps a freshly opened database.
    pub(crate) fn new(data_dir: &Path, path: &Path, db: Database) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            path: path.to_path_buf(),
            current: RwLock::new(Some(Arc::new(db))),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }
    }

    /// The data dir, for error messages.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The database to use now; fails while a reopen has not yet succeeded.
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| self.unavailable())
    }

    fn unavailable(&self) -> StoreError {
        let why = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        StoreError::Unwritable {
            dir: self.data_dir.clone(),
            reason: why.unwrap_or_else(|| "the database is being reopened".into()),
        }
    }

    /// Records the outcome of a commit.
    pub(crate) fn set_health(&self, error: Option<&StoreError>) {
        self.healthy.store(error.is_none(), Ordering::Release);
        if let Some(e) = error {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }

    /// `None` when the last commit worked, else why it failed.
    pub(crate) fn write_error(&self) -> Option<String> {
        if self.healthy.load(Ordering::Acquire) {
            return None;
        }
        Some(self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default())
    }

    /// True when the current handle refuses new write transactions (redb latched an I/O
    /// error) or there is none; only the writer thread calls it, between batches.
    pub(crate) fn poisoned(&self) -> bool {
        match self.get() {
            // An uncommitted transaction is rolled back on drop; it only tests the handle.
            Ok(db) => db.begin_write().is_err(),
            Err(_) => true,
        }
    }

    /// Drops the poisoned database and opens the file again. The file lock belongs to the
    /// old handle until every reader's transaction on it has ended, so this waits for those
    /// (they are short), and the open waits while redb still sees the lock held.
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let old = self.current.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(old) = old {
            let weak = Arc::downgrade(&old);
            drop(old);
            let t0 = Instant::now();
            while weak.strong_count() > 0 && t0.elapsed() < RELEASE_WAIT {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // `open_locked` waits out a lock still held by a read transaction of the old handle.
        let db = super::lock::open_locked(&self.data_dir, &self.path).map_err(|e| {
            let e = StoreError::Unwritable { dir: self.data_dir.clone(), reason: e.to_string() };
            self.set_health(Some(&e));
            e
        })?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        tracing::warn!("reopened {} after a failed write", self.path.display());
        Ok(())
    }
}

/// META key the readiness probe writes.
const PROBE_KEY: &str = "write_probe_at";
/// File the readiness probe writes in the data dir.
const PROBE_FILE: &str = ".write-probe";

impl super::Store {
    /// `Ok` when the store can take writes now, else why not (naming the data dir). Checks
    /// the database (the last commit's outcome, re-probed with a tiny durable write when it
    /// failed, so recovery shows without waiting for real traffic) and the filesystem (a
    /// small file, since redb may reuse freed pages inside its file on a full disk while
    /// artifact writes already fail).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if self.db.write_error().is_some() {
            self.write(true, |ctx| {
                ctx.txn.open_table(super::META)?.insert(PROBE_KEY, super::records::now_ms().max(0) as u64)?;
                Ok(())
            })
            .await?;
        }
        let dir = self.db.data_dir().to_path_buf();
        tokio::task::spawn_blocking(move || probe_file(&dir))
            .await
            .map_err(|e| StoreError::Db(format!("probe task failed: {e}")))?
    }
}

/// Writes and removes a 4 KiB file; no fsync, as readiness is polled often and a full
/// disk already refuses the write itself.
fn probe_file(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(PROBE_FILE);
    let result = std::fs::write(&path, [0u8; 4096]);
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| StoreError::Unwritable { dir: dir.to_path_buf(), reason: e.to_string() })
}
