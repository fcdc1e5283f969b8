//! The names clients gave their uploads. `/upload/image` answers a name carrying the
//! artifact id (`red_01J….png`), which `LoadImage` and `/view` find without any lookup; but
//! ComfyUI keeps the client's own name (`red.png`, or `pics/red.png` with a `subfolder`,
//! replaced on `overwrite`), and scripts that upload `input.png` then name `input.png` in
//! their graph without reading the answer. This index maps each caller's own names to the
//! newest upload under that name, kept as one JSON file (`durable::write`) under
//! `<data_dir>/comfy/uploads.json`. It also keeps the folder (`type`) each upload was sent
//! to, as ComfyUI stores an upload sent with `type=temp` in its temp folder: `/view` finds it
//! there and not in `input`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ulid::Ulid;

/// Most names kept; past it the oldest uploads' names are forgotten (their id names still work).
const MAX_NAMES: usize = 10_000;

/// What the file keeps.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Index {
    /// `(owner, "subfolder/name", folder)` → the newest artifact uploaded so.
    names: BTreeMap<String, Ulid>,
    /// The folders each upload was sent to; an upload not here (a native one, or one kept
    /// before folders were) is in `input` alone.
    #[serde(default)]
    folders: BTreeMap<Ulid, BTreeSet<String>>,
}

impl Index {
    /// The file's index; the first layout was the names alone, all in `input`.
    fn read(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(bytes).ok().or_else(|| {
            let names = serde_json::from_slice::<BTreeMap<String, Ulid>>(bytes).ok()?;
            Some(Self { names, folders: BTreeMap::new() })
        })
    }
}

/// Upload names per owner and folder, and the folders of each upload.
#[derive(Clone)]
pub struct Uploads {
    path: PathBuf,
    index: Arc<Mutex<Index>>,
    /// Held from taking a snapshot of `names` until it is on disk, so writes land in the order
    /// their snapshots were taken and the file always ends with the newest names.
    writing: Arc<tokio::sync::Mutex<()>>,
}

/// The folder an upload goes to without a `type`, and the one `LoadImage` reads.
pub const INPUT: &str = "input";

/// `owner\nname` for `input` (the first layout's keys), `owner\nname\nfolder` for the others.
fn key(owner: &str, folder: &str, name: &str) -> String {
    let name = name.trim_start_matches(['/', '\\']).replace('\\', "/");
    if folder == INPUT { format!("{owner}\n{name}") } else { format!("{owner}\n{name}\n{folder}") }
}

/// `subfolder/name` as a graph's `LoadImage` names it (ComfyUI's own form).
pub fn joined(subfolder: &str, name: &str) -> String {
    let sub = subfolder.trim_matches(['/', '\\']);
    if sub.is_empty() { name.to_string() } else { format!("{sub}/{name}") }
}

impl Uploads {
    /// Reads the index under `<data_dir>/comfy/` (empty when absent or unreadable).
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join("comfy").join("uploads.json");
        let index = std::fs::read(&path).ok().and_then(|b| Index::read(&b)).unwrap_or_default();
        Self { path, index: Arc::new(Mutex::new(index)), writing: Arc::default() }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest upload `owner` gave `name` (`red.png`, `pics/red.png`) in `folder`.
    pub fn find(&self, owner: &str, folder: &str, name: &str) -> Option<Ulid> {
        self.index().names.get(&key(owner, folder, name)).copied()
    }

    /// Whether upload `artifact` was sent to `folder` (`input` for one sent without a type).
    pub fn holds(&self, artifact: Ulid, folder: &str) -> bool {
        self.index().folders.get(&artifact).map_or(folder == INPUT, |f| f.contains(folder))
    }

    /// Records an upload to `folder` under the client's name; a later upload of the same
    /// name there replaces it, as ComfyUI's `overwrite` does. Failing to keep the file only
    /// costs the name and the folder.
    pub async fn record(&self, owner: &str, folder: &str, name: &str, artifact: Ulid) {
        {
            let mut index = self.index();
            index.names.insert(key(owner, folder, name), artifact);
            if index.names.len() > MAX_NAMES
                && let Some(oldest) = index.names.iter().min_by_key(|(_, id)| **id).map(|(k, _)| k.clone())
            {
                index.names.remove(&oldest);
            }
            index.folders.entry(artifact).or_default().insert(folder.to_string());
            if index.folders.len() > MAX_NAMES {
                index.folders.pop_first();
            }
        }
        let _writing = self.writing.lock().await;
        // The whole index (up to MAX_NAMES names, hundreds of KB) is encoded under the lock
        // but written after it is released, on a blocking thread: lookups never wait on disk.
        let snapshot = serde_json::to_vec(&*self.index());
        let path = self.path.clone();
        let written = match snapshot {
            Ok(bytes) => tokio::task::spawn_blocking(move || crate::durable::write(&path, &bytes))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), "cannot keep ComfyUI upload names: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_newest_upload_of_a_name_wins_per_owner_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uploads = Uploads::open(dir.path());
        let (a, b) = (Ulid::new(), Ulid::new());
        uploads.record("alice", INPUT, &joined("pics/", "red.png"), a).await;
        uploads.record("alice", INPUT, &joined("pics", "red.png"), b).await;
        assert_eq!(uploads.find("alice", INPUT, "pics/red.png"), Some(b));
        assert_eq!(uploads.find("bob", INPUT, "pics/red.png"), None);
        assert_eq!(uploads.find("alice", INPUT, "red.png"), None);
        assert_eq!(Uploads::open(dir.path()).find("alice", INPUT, "pics/red.png"), Some(b));
    }

    #[tokio::test]
    async fn an_upload_is_in_the_folders_it_was_sent_to_and_the_first_layout_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = Ulid::new();
        std::fs::create_dir_all(dir.path().join("comfy")).expect("dir");
        let first = serde_json::json!({ key("alice", INPUT, "old.png"): old.to_string() });
        std::fs::write(dir.path().join("comfy/uploads.json"), first.to_string()).expect("write");
        let uploads = Uploads::open(dir.path());
        assert_eq!(uploads.find("alice", INPUT, "old.png"), Some(old));
        assert!(uploads.holds(old, INPUT) && !uploads.holds(old, "temp"));

        let scratch = Ulid::new();
        uploads.record("alice", "temp", "s.png", scratch).await;
        let reopened = Uploads::open(dir.path());
        assert_eq!(
            (reopened.find("alice", "temp", "s.png"), reopened.find("alice", INPUT, "s.png")),
            (Some(scratch), None)
        );
        assert!(reopened.holds(scratch, "temp") && !reopened.holds(scratch, INPUT));
        assert_eq!(reopened.find("alice", INPUT, "old.png"), Some(old));
    }
}
