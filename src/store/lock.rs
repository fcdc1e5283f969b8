//! Ownership of a data dir. redb's file lock on `reelbox.redb` decides who owns it; the
//! owner then writes its PID beside it, so a second process that finds the lock taken can
//! say whom by. Nothing in the dir may be changed (orphans removed, tables created) before
//! the lock is held: the files could be another live daemon's work in progress.

use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError};

use super::StoreError;

/// The file holding the PID of the process that owns the data dir.
pub const PID_FILE: &str = "reelbox.pid";

/// Opens (creating if needed) the database, failing with [`StoreError::InUse`] when another
/// process holds it; once the lock is ours, records this process's PID.
pub fn open_locked(data_dir: &Path, db_path: &Path) -> Result<Database, StoreError> {
    let db = match Database::create(db_path) {
        Ok(db) => db,
        Err(DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::InUse { dir: data_dir.to_path_buf(), holder: holder(data_dir) });
        }
        Err(e) => return Err(StoreError::Open { path: db_path.to_path_buf(), reason: e.to_string() }),
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

/// Who holds the lock, as the error names it.
pub(super) fn holder(data_dir: &Path) -> String {
    let pid = std::fs::read_to_string(data_dir.join(PID_FILE)).ok().and_then(|s| s.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => format!("PID {pid}"),
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
}
