//! What ComfyUI clients know about a prompt beyond its job: the prompt id they use, the
//! client that sent it, its number, graph and node roles. Kept durably as one JSON file per
//! job under `<data_dir>/comfy/prompts/`, written (temp file, fsync, rename) before the job
//! is queued, so every queued prompt has its record; a record whose job never got queued
//! (a crash in between) is removed at start. An in-memory index answers lookups by job id,
//! by prompt id and by client.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::compile::Roles;
use crate::store::Store;

/// Everything kept about a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub job: Ulid,
    pub prompt_id: String,
    pub number: i64,
    pub client_id: Option<String>,
    pub roles: Roles,
    pub graph: serde_json::Value,
    pub extra_data: serde_json::Value,
}

/// The parts of a record kept in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptMeta {
    pub job: Ulid,
    pub prompt_id: String,
    pub number: i64,
    pub client_id: Option<String>,
    pub roles: Roles,
}

impl From<&PromptRecord> for PromptMeta {
    fn from(r: &PromptRecord) -> Self {
        Self {
            job: r.job,
            prompt_id: r.prompt_id.clone(),
            number: r.number,
            client_id: r.client_id.clone(),
            roles: r.roles.clone(),
        }
    }
}

/// Failure to keep a record.
#[derive(Debug, thiserror::Error)]
#[error("prompt record {path}: {reason}")]
pub struct PromptStoreError {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Default)]
struct Index {
    by_job: BTreeMap<Ulid, Arc<PromptMeta>>,
    by_prompt: HashMap<String, Ulid>,
    next_number: i64,
}

/// The prompt records of one daemon.
#[derive(Clone)]
pub struct Prompts {
    dir: PathBuf,
    index: Arc<RwLock<Index>>,
}

impl Prompts {
    /// Loads the records under `<data_dir>/comfy/prompts`, dropping those whose job is not in `store`.
    pub fn open(data_dir: &Path, store: &Store) -> Self {
        let dir = data_dir.join("comfy").join("prompts");
        let mut index = Index::default();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    // Temp files of a write a crash interrupted.
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                let record = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<PromptRecord>(&b).ok());
                let Some(record) = record else {
                    tracing::warn!(path = %path.display(), "ignoring an unreadable ComfyUI prompt record");
                    continue;
                };
                if !matches!(store.job(record.job), Ok(Some(_))) {
                    tracing::info!(job = %record.job, "removing a prompt record whose job was never queued");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                index.next_number = index.next_number.max(record.number + 1);
                index.by_prompt.insert(record.prompt_id.clone(), record.job);
                index.by_job.insert(record.job, Arc::new(PromptMeta::from(&record)));
            }
        }
        Self { dir, index: Arc::new(RwLock::new(index)) }
    }

    fn path(&self, job: Ulid) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    /// The next prompt number (ComfyUI shows it as the queue position).
    pub fn next_number(&self) -> i64 {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let n = index.next_number;
        index.next_number += 1;
        n
    }

    /// True when a prompt id is taken.
    pub fn prompt_id_taken(&self, prompt_id: &str) -> bool {
        self.index.read().unwrap_or_else(|p| p.into_inner()).by_prompt.contains_key(prompt_id)
    }

    /// Writes a record durably and indexes it.
    pub async fn put(&self, record: PromptRecord) -> Result<Arc<PromptMeta>, PromptStoreError> {
        let path = self.path(record.job);
        let bytes =
            serde_json::to_vec(&record).map_err(|e| PromptStoreError { path: path.clone(), reason: e.to_string() })?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || crate::durable::write(&target, &bytes))
            .await
            .map_err(|e| PromptStoreError { path: path.clone(), reason: e.to_string() })?
            .map_err(|e| PromptStoreError { path: path.clone(), reason: e.to_string() })?;
        let meta = Arc::new(PromptMeta::from(&record));
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.by_prompt.insert(record.prompt_id.clone(), record.job);
        index.by_job.insert(record.job, meta.clone());
        Ok(meta)
    }

    /// Forgets a prompt (a refused submission, or `POST /history` deleting its job).
    pub fn remove(&self, job: Ulid) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        if let Some(meta) = index.by_job.remove(&job) {
            index.by_prompt.remove(&meta.prompt_id);
        }
        drop(index);
        let _ = std::fs::remove_file(self.path(job));
    }

    /// The prompt of a job, if a ComfyUI client sent it.
    pub fn by_job(&self, job: Ulid) -> Option<Arc<PromptMeta>> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).by_job.get(&job).cloned()
    }

    /// The prompt with a ComfyUI prompt id.
    pub fn by_prompt_id(&self, prompt_id: &str) -> Option<Arc<PromptMeta>> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.by_prompt.get(prompt_id).and_then(|job| index.by_job.get(job)).cloned()
    }

    /// Every prompt, newest first.
    pub fn all_newest_first(&self) -> Vec<Arc<PromptMeta>> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).by_job.values().rev().cloned().collect()
    }

    /// The full record (graph and extra data) from disk.
    pub fn record(&self, job: Ulid) -> Option<PromptRecord> {
        let bytes = std::fs::read(self.path(job)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
