//! Free space on the filesystems the box writes to: the data dir (the database, uploads,
//! films, render scratch) and the models dir. A home box fills up with films and models;
//! work is refused while its disk is below `limits.min_free_disk_bytes`, with a sentence
//! that says so, instead of being accepted and failing half-way with "No space left on
//! device" (or leaving the database unable to commit).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `1.5 MB`-style sizes, in decimal units as disks are sold.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Space on the filesystem holding a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Space {
    /// Bytes this process may still write (what `df` shows as available).
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Space {
    /// Whether fewer than `min` bytes are free (never with `min` 0).
    pub fn is_low(&self, min: u64) -> bool {
        self.free_bytes < min
    }
}

/// Space on the filesystem holding `dir`, read at the nearest directory that exists (a
/// models dir not made yet lives where it will be made); `None` when it cannot be read.
pub fn space(dir: &Path) -> Option<Space> {
    let existing = dir.ancestors().find(|d| d.exists())?;
    match fs4::statvfs(existing) {
        Ok(s) => Some(Space { free_bytes: s.available_space(), total_bytes: s.total_space() }),
        Err(e) => {
            tracing::debug!(dir = %existing.display(), "cannot read free space: {e}");
            None
        }
    }
}

/// Which directory `dir` is, the same string wherever on this machine it is named from
/// (another path, a symlink, a bind mount into a container): the machine's boot id, then
/// the device and inode of its nearest existing directory, then the part not made yet.
/// A CLI compares its models dir's with the daemon's to know whether they share one: the
/// same path on another box, or another `--data-dir` here, is another dir. `None` where
/// it cannot be told (no `/proc`, nothing readable).
pub fn dir_identity(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let dir = std::path::absolute(dir).ok()?;
    let existing = dir.ancestors().find(|d| d.is_dir())?;
    let meta = std::fs::metadata(existing).ok()?;
    let rest = dir.strip_prefix(existing).ok()?;
    Some(format!("{}:{}:{}:{}", boot.trim(), meta.dev(), meta.ino(), rest.display()))
}

/// Work refused because a disk is too full for it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.sentence())]
pub struct DiskLow {
    /// `data dir` or `models dir`.
    pub what: &'static str,
    pub dir: PathBuf,
    pub free: u64,
    /// Bytes the work itself would write, when known (a pull's download).
    pub needs: u64,
    /// `limits.min_free_disk_bytes`.
    pub min: u64,
}

impl DiskLow {
    /// What is short: the disk, its free space, and what it would need.
    pub fn shortage(&self) -> String {
        let kept = format!("the {} kept free for running work (limits.min_free_disk_bytes)", human_bytes(self.min));
        let short = match (self.needs, self.min) {
            (0, _) => format!("below {kept}"),
            (needs, 0) => format!("and this needs {}", human_bytes(needs)),
            (needs, _) => format!("and this needs {} besides {kept}", human_bytes(needs)),
        };
        format!(
            "the disk holding the {} ({}) has {} free, {short}",
            self.what,
            self.dir.display(),
            human_bytes(self.free)
        )
    }

    fn sentence(&self) -> String {
        format!("{}: free space on it ({}), then send again", self.shortage(), advice(self.what))
    }

    /// Why queued jobs do not start: they start by themselves once space is freed.
    pub fn waiting_text(&self) -> String {
        format!("{}: queued jobs start once space is freed ({})", self.shortage(), advice(self.what))
    }
}

/// What a disk below the floor stops, for the disk of `what` (`data dir` or `models dir`).
pub fn stops(what: &str) -> &'static str {
    if what == "models dir" { "model pulls refused" } else { "jobs wait, new work refused" }
}

/// How to free space on the disk of `what` (`data dir` or `models dir`).
pub fn advice(what: &str) -> &'static str {
    if what == "models dir" {
        "`reelbox rm NAME` removes a model you no longer use"
    } else {
        "`reelbox jobs rm ID` deletes a finished job and its files; [retention] days and `reelbox gc` sweep old ones"
    }
}

/// Refuses work that writes `needs` bytes under `dir` unless the disk would keep `min` bytes
/// free after it. A disk whose space cannot be read is let through: ENOSPC is still met
/// where a write fails.
pub fn check_room(what: &'static str, dir: &Path, needs: u64, min: u64) -> Result<(), DiskLow> {
    if needs == 0 && min == 0 {
        return Ok(());
    }
    let Some(space) = space(dir) else { return Ok(()) };
    if !space.is_low(needs.saturating_add(min)) {
        return Ok(());
    }
    Err(DiskLow { what, dir: dir.to_path_buf(), free: space.free_bytes, needs, min })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_is_the_same_dir_under_any_name_and_another_dir_is_not() {
        let root = tempfile::tempdir().expect("tempdir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(a.join("models")).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::os::unix::fs::symlink(&a, root.path().join("link")).expect("symlink");
        let id = |p: &Path| dir_identity(p).expect("identity");
        assert_eq!(id(&a.join("models")), id(&root.path().join("link/models")));
        assert_ne!(id(&a.join("models")), id(&b.join("models")));
        // Not made yet: named by where it will be made, until it is.
        assert_eq!(id(&b.join("models")), id(&root.path().join("link/../b/models")));
        assert_ne!(id(&b.join("models")), id(&b.join("other")));
    }

    #[test]
    fn sizes_read_in_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(63_200_000), "63.2 MB");
    }

    #[test]
    fn a_disk_short_of_the_minimum_refuses_naming_the_dir_and_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = space(dir.path()).expect("space").free_bytes;
        assert!(free > 0);
        check_room("data dir", dir.path(), 0, 1).expect("one byte free");
        let err = check_room("data dir", dir.path(), 0, u64::MAX).expect_err("more than any disk");
        let text = err.to_string();
        assert!(text.contains("data dir") && text.contains("limits.min_free_disk_bytes"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        let err = check_room("models dir", &dir.path().join("not/made/yet"), u64::MAX / 2, 0).expect_err("too big");
        assert!(err.to_string().contains("this needs") && err.to_string().contains("reelbox rm"), "{err}");
    }
}
