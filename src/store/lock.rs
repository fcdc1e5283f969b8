//! Ownership of a data dir. redb's file lock on `reelbox.redb` decides who owns it; the
//! owner then writes its PID beside it, so a second process that finds the lock taken can
//! say whom by. Nothing in the dir may be changed (orphans removed, tables created) before
//! the lock is held: the files could be another live daemon's work in progress.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError};

use super::StoreError;

/// The file holding the PID of the process that owns the data dir.
pub const PID_FILE: &str = "reelbox.pid";

/// How long a held lock is waited for before it is refused. Commands that read or repair
/// the store with no daemon (`reelbox rm`, `gc`, `keys create --offline`) hold it for
/// milliseconds; a daemon started by systemd in that moment would otherwise exit "in use"
/// (78, which systemd does not restart) and stay down. A second daemon is refused this much
/// later.
const HELD_WAIT: Duration = Duration::from_secs(2);

/// Opens (creating if needed) the database, failing with [`StoreError::InUse`] when another
/// process still holds it after [`HELD_WAIT`]; once the lock is ours, records this
/// process's PID.
pub fn open_locked(data_dir: &Path, db_path: &Path) -> Result<Database, StoreError> {
    let t0 = Instant::now();
    let db = loop {
        match Database::create(db_path) {
            Ok(db) => break db,
            Err(DatabaseError::DatabaseAlreadyOpen) if t0.elapsed() < HELD_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse { dir: data_dir.to_path_buf(), holder: holder(data_dir) });
            }
            Err(e) => return Err(StoreError::Open { path: db_path.to_path_buf(), reason: e.to_string() }),
        }
    };
    let pid_file = data_dir.join(PID_FILE);
    // Only a nicer error message for a later second process depends on it, so a failure
    // to write it must not stop the daemon.
    if let Err(e) = write_pid(&pid_file) {
        tracing::warn!("cannot write {}: {e}", pid_file.display());
    }
    Ok(db)
}

fn write_pid(pid_file: &Path) -> std::io::Result<()> {
    // Written aside and renamed, so a reader never sees half a number.
    let tmp = PathBuf::from(format!("{}.tmp", pid_file.display()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, pid_file)
}

/// Who holds the lock, as the error names it. The PID file names the last daemon; one that
/// is no longer running (killed, the lock now a short-lived command's) is not named as the
/// holder.
pub(super) fn holder(data_dir: &Path) -> String {
    let pid = std::fs::read_to_string(data_dir.join(PID_FILE)).ok().and_then(|s| s.trim().parse::<u32>().ok());
    match pid {
        Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => format!("PID {pid}"),
        Some(pid) => format!("another process ({PID_FILE} names PID {pid}, which is no longer running)"),
        None => format!("another process (no readable {PID_FILE})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_database_is_refused_naming_the_holder_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reelbox.redb");
        let _held = open_locked(dir.path(), &path).expect("first open");
        let pid = std::fs::read_to_string(dir.path().join(PID_FILE)).expect("pid file");
        assert_eq!(pid.trim(), std::process::id().to_string());
        let Err(err) = open_locked(dir.path(), &path) else { panic!("a second open must be refused") };
        assert_eq!(err.to_string(), format!("data dir {} in use by PID {}", dir.path().display(), std::process::id()));
    }

    #[test]
    fn a_lock_held_for_a_moment_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reelbox.redb");
        // As `reelbox rm` holds it with no daemon: a plain open, for a few hundred ms.
        let held = Database::create(&path).expect("held open");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        open_locked(dir.path(), &path).expect("open once the brief holder let go");
        release.join().expect("holder thread");
    }

    #[test]
    fn a_pid_file_naming_a_dead_process_is_not_called_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Above the kernel's pid_max (4194304 at most): never a running process.
        std::fs::write(dir.path().join(PID_FILE), "4999999\n").expect("pid file");
        assert_eq!(
            holder(dir.path()),
            format!("another process ({PID_FILE} names PID 4999999, which is no longer running)")
        );
    }
}
