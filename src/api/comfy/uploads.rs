//! The names clients gave their uploads. `/upload/image` answers a name carrying the
//! artifact id (`red_01J….png`), which `LoadImage` and `/view` find without any lookup; but
//! ComfyUI keeps the client's own name (`red.png`, or `pics/red.png` with a `subfolder`,
//! replaced on `overwrite`), and scripts that upload `input.png` then name `input.png` in
//! their graph without reading the answer. This index maps each caller's own names to the
//! newest upload under that name, kept as one JSON file (`durable::write`) under
//! `<data_dir>/comfy/uploads.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ulid::Ulid;

/// Most names kept; past it the oldest uploads' names are forgotten (their id names still work).
const MAX_NAMES: usize = 10_000;

/// Upload names per owner: `(owner, "subfolder/name")` → the newest artifact uploaded so.
#[derive(Clone)]
pub struct Uploads {
    path: PathBuf,
    names: Arc<Mutex<BTreeMap<String, Ulid>>>,
    /// Held from taking a snapshot of `names` until it is on disk, so writes land in the order
    /// their snapshots were taken and the file always ends with the newest names.
    writing: Arc<tokio::sync::Mutex<()>>,
}

fn key(owner: &str, name: &str) -> String {
    format!("{owner}\n{}", name.trim_start_matches(['/', '\\']).replace('\\', "/"))
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
        let names = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { path, names: Arc::new(Mutex::new(names)), writing: Arc::default() }
    }

    /// The newest upload `owner` gave `name` (`red.png`, `pics/red.png`).
    pub fn find(&self, owner: &str, name: &str) -> Option<Ulid> {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).get(&key(owner, name)).copied()
    }

    /// Records an upload under the client's name; a later upload of the same name replaces
    /// it, as ComfyUI's `overwrite` does. Failing to keep the file only costs the name.
    pub async fn record(&self, owner: &str, name: &str, artifact: Ulid) {
        {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            names.insert(key(owner, name), artifact);
            if names.len() > MAX_NAMES
                && let Some(oldest) = names.iter().min_by_key(|(_, id)| **id).map(|(k, _)| k.clone())
            {
                names.remove(&oldest);
            }
        }
        let _writing = self.writing.lock().await;
        // The whole index (up to MAX_NAMES names, hundreds of KB) is encoded under the lock
        // but written after it is released, on a blocking thread: lookups never wait on disk.
        let snapshot = serde_json::to_vec(&*self.names.lock().unwrap_or_else(|p| p.into_inner()));
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
        uploads.record("alice", &joined("pics/", "red.png"), a).await;
        uploads.record("alice", &joined("pics", "red.png"), b).await;
        assert_eq!(uploads.find("alice", "pics/red.png"), Some(b));
        assert_eq!(uploads.find("bob", "pics/red.png"), None);
        assert_eq!(uploads.find("alice", "red.png"), None);
        assert_eq!(Uploads::open(dir.path()).find("alice", "pics/red.png"), Some(b));
    }
}
