//! The last reading of the catalog, kept while the disk looks the same. `Catalog::load` is
//! asked per request (ComfyUI's `/object_info`, OpenAI's models and speech, image
//! parameters), per placement pass on a head with boxes and per worker heartbeat; reading
//! parses every manifest and walks every model folder, while looking costs one `read_dir`
//! of the models dir and of each manifest dir and a `stat` of each entry.
//!
//! What is looked at: each of those dirs and its entries as `stat` sees them (inode, size,
//! modified and changed times; a link's target too). A pull, an import or an `rm`, this
//! daemon's or a CLI's run without it, or a folder copied in by hand, adds, replaces or
//! removes an entry or changes a model folder's own list of files, so the next look
//! differs and the catalog is read again. What only a deeper look would see (a file cut
//! short inside `unet/` by hand) is read at the latest [`REREAD_AFTER`] later; this
//! process's own changes ([`forget`], from the `ModelStore` writers) at once.
//!
//! A file system stamps times in steps (a jiffy, a second on some), so a change in the same
//! step as the one before it may leave the same times: a reading is kept only once its
//! newest time is [`SETTLED`] older than the look, as git treats a "racily clean" index.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::Catalog;
use crate::models::ModelStore;

/// The longest a reading is answered without reading again.
pub const REREAD_AFTER: Duration = Duration::from_secs(30);

/// How much older than the look its newest time must be for a reading to be kept (2 s: the
/// coarsest step of the file systems a models dir lives on, FAT's).
pub const SETTLED: Duration = Duration::from_secs(2);

/// Readings kept at once (one per models dir a process lists; tests use several).
const KEEP: usize = 4;

/// One entry as `stat` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    /// Modified and changed times, nanoseconds since the epoch.
    mtime: i128,
    ctime: i128,
    /// A link's target.
    target: Option<Box<Stamp>>,
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            ino: md.ino(),
            len: md.len(),
            mtime: ns(md.mtime(), md.mtime_nsec()),
            ctime: ns(md.ctime(), md.ctime_nsec()),
            target: None,
        }
    }

    /// `path` itself and, for a link, its target; `None` when it is not there.
    fn read(path: &Path) -> Option<Self> {
        let md = std::fs::symlink_metadata(path).ok()?;
        let mut stamp = Self::of(&md);
        if md.file_type().is_symlink() {
            stamp.target = std::fs::metadata(path).ok().map(|t| Box::new(Self::of(&t)));
        }
        Some(stamp)
    }

    /// The newest time in it, nanoseconds since the epoch.
    fn newest(&self) -> i128 {
        let own = self.mtime.max(self.ctime);
        self.target.as_ref().map_or(own, |t| own.max(t.newest()))
    }
}

/// What a set of dirs looks like: each dir, then its entries by name (those starting with
/// a dot, the installer's staging, lock and state dirs, left out: no reading lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Look(Vec<(PathBuf, Option<OsString>, Option<Stamp>)>);

impl Look {
    fn of(dirs: &[PathBuf]) -> Self {
        let mut out = Vec::new();
        for dir in dirs {
            out.push((dir.clone(), None, std::fs::metadata(dir).ok().map(|md| Stamp::of(&md))));
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            let mut entries: Vec<(PathBuf, Option<OsString>, Option<Stamp>)> = rd
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| (dir.clone(), Some(e.file_name()), Stamp::read(&e.path())))
                .collect();
            entries.sort_by(|a, b| a.1.cmp(&b.1));
            out.extend(entries);
        }
        Self(out)
    }

    /// Whether every time in it is [`SETTLED`] older than `at`.
    fn settled_by(&self, at: SystemTime) -> bool {
        let Ok(at) = at.duration_since(SystemTime::UNIX_EPOCH) else { return false };
        let limit = (at.saturating_sub(SETTLED)).as_nanos() as i128;
        self.0.iter().filter_map(|(_, _, s)| s.as_ref()).all(|s| s.newest() < limit)
    }
}

/// A reading kept with the look it was taken after.
struct Kept {
    /// The models dir, then the manifest dirs.
    dirs: Vec<PathBuf>,
    look: Look,
    read_at: Instant,
    catalog: Catalog,
}

static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

/// `store`'s catalog: the kept reading while its dirs look as they did, else a new one.
pub(super) fn catalog(store: &ModelStore) -> Catalog {
    let mut dirs = vec![store.models_dir().to_path_buf()];
    dirs.extend(store.manifest_dirs().iter().cloned());
    let looked_at = SystemTime::now();
    // Looked before reading: a change while reading makes the next look differ.
    let look = Look::of(&dirs);
    {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let same = kept.iter().find(|k| k.dirs == dirs && k.look == look && k.read_at.elapsed() < REREAD_AFTER);
        if let Some(k) = same {
            return k.catalog.clone();
        }
    }
    let catalog = super::read::read(store);
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    kept.retain(|k| k.dirs != dirs);
    if look.settled_by(looked_at) {
        if kept.len() >= KEEP {
            kept.remove(0);
        }
        kept.push(Kept { dirs, look, read_at: Instant::now(), catalog: catalog.clone() });
    }
    catalog
}

/// Drops the reading of `models_dir` ([`Catalog::forget`]).
pub(super) fn forget(models_dir: &Path) {
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).retain(|k| k.dirs.first().is_none_or(|d| d != models_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A models dir with one voice, stamped `secs` ago so its reading can be kept.
    fn models_aged(secs: u64) -> (tempfile::TempDir, ModelStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let models = dir.path().join("models");
        add_voice(&models, "voice-a");
        age(&models, secs);
        (dir, ModelStore::with_dirs(models, Vec::new(), Vec::new()))
    }

    fn add_voice(models: &Path, name: &str) {
        let voice = models.join(name);
        std::fs::create_dir_all(&voice).expect("mkdir");
        std::fs::write(voice.join(format!("{name}.onnx")), "x").expect("write");
        std::fs::write(voice.join(format!("{name}.onnx.json")), "{}").expect("write");
    }

    /// Sets the modified time of `models` and everything in it `secs` into the past.
    fn age(models: &Path, secs: u64) {
        let when = SystemTime::now() - Duration::from_secs(secs);
        let mut stack = vec![models.to_path_buf()];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).expect("read").flatten().map(|e| e.path()));
            }
            std::fs::File::open(&p).and_then(|f| f.set_modified(when)).expect("set mtime");
        }
    }

    fn names(store: &ModelStore) -> Vec<String> {
        catalog(store).models().iter().map(|m| m.name().to_string()).collect()
    }

    #[test]
    fn a_settled_reading_is_kept_until_an_entry_changes() {
        let (_dir, store) = models_aged(60);
        // Set back by hand, the times are old but the inodes' changed times are now: the
        // first reading is not kept, the second is (after the changed times settle).
        let first = catalog(&store);
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        let second = catalog(&store);
        assert_ne!(first.reading(), second.reading(), "a reading taken within SETTLED of a change is not kept");
        assert_eq!(catalog(&store).reading(), second.reading(), "nothing changed: the same reading");

        add_voice(store.models_dir(), "voice-b");
        assert_eq!(names(&store), ["voice-a", "voice-b"], "a folder copied in shows at once");
        std::fs::remove_dir_all(store.models_dir().join("voice-a")).expect("rm");
        assert_eq!(names(&store), ["voice-b"], "a folder removed goes at once");
    }

    #[test]
    fn a_change_inside_a_model_folder_and_this_process_s_own_are_read_again() {
        let (_dir, store) = models_aged(60);
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        let kept = catalog(&store);
        assert_eq!(catalog(&store).reading(), kept.reading());
        // A voice's config removed by hand: its folder's own entries change.
        std::fs::remove_file(store.models_dir().join("voice-a/voice-a.onnx.json")).expect("rm");
        assert!(names(&store).is_empty(), "a folder that no longer shows a voice is not listed");
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        let kept = catalog(&store);
        forget(store.models_dir());
        assert_ne!(catalog(&store).reading(), kept.reading(), "forgotten: read again");
    }
}
