//! A1111's hashes for models imported before imports kept them: their `conversion.json`
//! names the checkpoint and LoRA files they were made from, so those are hashed where they
//! still are and the record gains what an import writes now (`sha256`, `model_hash`, each
//! LoRA's `a1111_hash`), with no new conversion. The daemon does it at start, on a thread of
//! its own ([`spawn`]), and `reelbox models hash` on demand.
//!
//! A file is taken for the one the model was made from only while it is unchanged since the
//! import: not modified after the record was written (the record keeps that time as
//! `imported_ms` once it is rewritten) and not while it is read. One that moved, went or
//! changed leaves the model unhashed and is said, as a pulled model is listed by name alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{CONVERSION_FILE, hashes};
use crate::config::Config;
use crate::models::{Catalog, ModelKind, ModelStore};

/// The single-file checkpoints an import converts (a folder has no hash in A1111's sense), by
/// the end of their names, so one that is gone is known for a file.
const CHECKPOINT_FILES: [&str; 2] = ["safetensors", "ckpt"];

/// Why a file a model was made from was not hashed.
#[derive(Debug, thiserror::Error)]
pub enum RehashError {
    #[error(
        "{} is not there any more (moved or removed?): import the model again from where the file is now, \
         or put it back and run `reelbox models hash {model}`",
        .path.display()
    )]
    Gone { model: String, path: PathBuf },
    #[error(
        "{} changed after the model was imported from it, so it may not be the file the model was made from: \
         import the model again to hash it",
        .path.display()
    )]
    Changed { path: PathBuf },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {reason}", .path.display())]
    Record { path: PathBuf, reason: String },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an import or pull of {model} is replacing it; its hashes are worked out at the next start")]
    Busy { model: String },
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
}

/// What one model's hashing did: the files hashed now, and why any other was not.
#[derive(Debug, Default)]
pub struct Rehashed {
    pub hashed: Vec<PathBuf>,
    pub unhashed: Vec<RehashError>,
}

/// The record's files that A1111 hashes and it has no hash of: its checkpoint file (`None`
/// for the checkpoint's place when it has one, or was made from a folder) and each LoRA's
/// index and file. Empty for a complete record, or none at all.
fn missing(record: &Value) -> (Option<PathBuf>, Vec<(usize, PathBuf)>) {
    let source = record.get("source").and_then(Value::as_str).map(PathBuf::from);
    let file = |p: &Path| {
        p.is_file()
            || (!p.exists()
                && p.extension().is_some_and(|e| CHECKPOINT_FILES.iter().any(|c| e.eq_ignore_ascii_case(c))))
    };
    let checkpoint = source.filter(|p| record.get("sha256").is_none_or(Value::is_null) && file(p));
    let loras = record.get("loras").and_then(Value::as_array).into_iter().flatten().enumerate();
    let loras = loras
        .filter(|(_, l)| l.get("a1111_hash").is_none_or(Value::is_null))
        .filter_map(|(i, l)| Some((i, PathBuf::from(l.get("file")?.as_str()?))))
        .collect();
    (checkpoint, loras)
}

/// The record in `dir` and its text, when it has one that reads.
fn read_record(dir: &Path) -> Option<(String, Value)> {
    let text = std::fs::read_to_string(dir.join(CONVERSION_FILE)).ok()?;
    let record = serde_json::from_str(&text).ok()?;
    Some((text, record))
}

/// Whether the model in `dir` was imported from files A1111 hashes and lacks a hash of one.
pub fn lacks_hashes(dir: &Path) -> bool {
    read_record(dir).is_some_and(|(_, r)| {
        let (checkpoint, loras) = missing(&r);
        checkpoint.is_some() || !loras.is_empty()
    })
}

/// When the model was imported: the time its record keeps, else the record's own mtime (an
/// import writes it once, as it installs).
fn imported_at(dir: &Path, record: &Value) -> Option<SystemTime> {
    let kept = record.get("imported_ms").and_then(Value::as_u64).map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    kept.or_else(|| std::fs::metadata(dir.join(CONVERSION_FILE)).and_then(|m| m.modified()).ok())
}

/// `path`'s length and modified time, the look it is checked unchanged by.
fn look(path: &Path) -> std::io::Result<(u64, SystemTime)> {
    let md = std::fs::metadata(path)?;
    Ok((md.len(), md.modified()?))
}

/// Hashes `path` with `hash` when it is the file the model was made from (there, and
/// unchanged since `imported` and while read); `None` when `stop` was set.
fn hash_unchanged<T>(
    model: &str,
    path: &Path,
    imported: Option<SystemTime>,
    hash: impl FnOnce(&Path) -> std::io::Result<Option<T>>,
) -> Result<Option<T>, RehashError> {
    let read = |source| RehashError::Read { path: path.to_path_buf(), source };
    let before = match look(path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RehashError::Gone { model: model.to_string(), path: path.to_path_buf() });
        }
        Err(e) => return Err(read(e)),
    };
    if imported.is_none_or(|at| before.1 > at) {
        return Err(RehashError::Changed { path: path.to_path_buf() });
    }
    let hashed = hash(path).map_err(read)?;
    if look(path).map_err(read)? != before {
        return Err(RehashError::Changed { path: path.to_path_buf() });
    }
    Ok(hashed)
}

/// Works out the hashes model `name` (installed in `dir`) lacks and writes them into its
/// record, atomically, under the lock an import or pull of the name holds; stops early
/// (writing what it has) when `stop` is set.
pub fn rehash(store: &ModelStore, name: &str, dir: &Path, stop: &AtomicBool) -> Rehashed {
    let mut done = Rehashed::default();
    let record_path = dir.join(CONVERSION_FILE);
    let Some((text, mut record)) = read_record(dir) else {
        let reason = "no import record (only `reelbox models import` keeps the files a model was made from)";
        done.unhashed.push(RehashError::Record { path: record_path, reason: reason.into() });
        return done;
    };
    let imported = imported_at(dir, &record);
    let (checkpoint, loras) = missing(&record);
    if let Some(path) = checkpoint {
        match hash_unchanged(name, &path, imported, |p| hashes::checkpoint(p, stop)) {
            Ok(Some(h)) => {
                record["sha256"] = h.sha256.into();
                record["model_hash"] = h.model_hash.into();
                done.hashed.push(path);
            }
            Ok(None) => {}
            Err(e) => done.unhashed.push(e),
        }
    }
    for (i, path) in loras {
        match hash_unchanged(name, &path, imported, |p| hashes::lora(p, stop)) {
            Ok(Some(hash)) => {
                record["loras"][i]["a1111_hash"] = hash.into();
                done.hashed.push(path);
            }
            Ok(None) => {}
            Err(e) => done.unhashed.push(e),
        }
    }
    if done.hashed.is_empty() {
        return done;
    }
    if let Some(at) = imported.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        // The rewrite moves the record's mtime on: the import's time is kept in it.
        record["imported_ms"] = (at.as_millis() as u64).into();
    }
    if let Err(e) = write(store, name, dir, &text, &record) {
        done.hashed.clear();
        done.unhashed.push(e);
    }
    done
}

/// Writes `record` over the model's record while it still reads `was` (an import may have
/// replaced the model meanwhile; a removal, taken it away).
fn write(store: &ModelStore, name: &str, dir: &Path, was: &str, record: &Value) -> Result<(), RehashError> {
    let path = dir.join(CONVERSION_FILE);
    let _lock = store.try_lock_name(name)?.ok_or_else(|| RehashError::Busy { model: name.to_string() })?;
    if read_record(dir).is_none_or(|(now, _)| now != was) {
        return Err(RehashError::Busy { model: name.to_string() });
    }
    let text = serde_json::to_string_pretty(record)
        .map_err(|e| RehashError::Record { path: path.clone(), reason: e.to_string() })?;
    crate::durable::write(&path, text.as_bytes())
        .map_err(|source| RehashError::Write { path: path.clone(), source })?;
    store.record_rewrite(name, CONVERSION_FILE, &path)?;
    Catalog::forget(store.models_dir());
    Ok(())
}

/// Records in model `name`'s installed manifest the record an earlier rehash rewrote without
/// (the record keeps `imported_ms` once rewritten), which left the model listed as damaged.
fn mend_manifest(store: &ModelStore, name: &str, dir: &Path) -> Result<(), RehashError> {
    let rewritten = read_record(dir).is_some_and(|(_, r)| r.get("imported_ms").is_some());
    if !rewritten {
        return Ok(());
    }
    let _lock = store.try_lock_name(name)?.ok_or_else(|| RehashError::Busy { model: name.to_string() })?;
    Ok(store.record_rewrite(name, CONVERSION_FILE, &dir.join(CONVERSION_FILE))?)
}

/// The installed diffusion models of `store` that lack a hash their record's files give,
/// as `(name, dir)`, sorted by name.
pub fn lacking(store: &ModelStore) -> Vec<(String, PathBuf)> {
    let catalog = Catalog::of(store);
    let models = catalog.installed(ModelKind::Diffusion).filter_map(|m| Some((m.name().to_string(), m.dir()?)));
    models.filter(|(_, dir)| lacks_hashes(dir)).map(|(n, d)| (n, d.to_path_buf())).collect()
}

/// The daemon's hashing of older imports, on a thread of its own; dropping it stops the
/// hashing at its next megabyte and waits for the thread.
pub struct AtStart {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AtStart {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts hashing, off the async runtime, the installed diffusion models of `config` whose
/// import kept no A1111 hash, logging each one hashed and why any other is not.
pub fn spawn(config: &Config) -> AtStart {
    let stop = Arc::new(AtomicBool::new(false));
    let store = ModelStore::new(config);
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("rehash".into()).spawn(move || {
        let catalog = Catalog::of(&store);
        for m in catalog.installed(ModelKind::Diffusion) {
            if let (name, Some(dir)) = (m.name(), m.dir())
                && let Err(e) = mend_manifest(&store, name, dir)
            {
                tracing::warn!(model = %name, "cannot record its rehashed import record in its manifest: {e}");
            }
        }
        for (name, dir) in lacking(&store) {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            let done = rehash(&store, &name, &dir, &flag);
            if !done.hashed.is_empty() {
                let title = super::fused::Checkpoint::read(&name, &dir, None).title();
                let files: Vec<String> = done.hashed.iter().map(|p| p.display().to_string()).collect();
                tracing::info!(model = %name, "A1111's hashes worked out from {}: A1111 clients list it as {title}", files.join(", "));
            }
            for why in &done.unhashed {
                tracing::warn!(model = %name, "{name} is listed without an A1111 hash: {why}");
            }
        }
    });
    let thread = thread.map_err(|e| tracing::warn!("cannot start hashing older imports: {e}")).ok();
    AtStart { stop, thread }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_missing_hashes_are_its_files_a1111_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = dir.path().join("sd.safetensors");
        std::fs::write(&ckpt, b"weights").expect("write");
        let record = serde_json::json!({"source": ckpt, "loras": [
            {"file": "/l/ink.safetensors", "scale": 1.0}, {"file": "/l/film.pt", "scale": 0.5, "a1111_hash": "ab"}]});
        let (c, l) = missing(&record);
        assert_eq!((c, l), (Some(ckpt.clone()), vec![(0, PathBuf::from("/l/ink.safetensors"))]));
        let hashed = serde_json::json!({"source": ckpt, "sha256": "00"});
        assert_eq!(missing(&hashed), (None, vec![]));
        let folder = serde_json::json!({"source": dir.path()});
        assert_eq!(missing(&folder), (None, vec![]), "a folder has no hash");
        let gone = serde_json::json!({"source": "/gone/sd.CKPT"});
        assert_eq!(missing(&gone).0, Some(PathBuf::from("/gone/sd.CKPT")), "a file, by its name");
        assert_eq!(missing(&serde_json::json!({"source": "/gone/sd-folder"})).0, None);
    }

    #[test]
    fn a_file_changed_after_the_import_is_not_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = dir.path().join("sd.safetensors");
        std::fs::write(&ckpt, b"weights").expect("write");
        let modified = look(&ckpt).expect("look").1;
        let hash = |_: &Path| Ok(Some(()));
        assert!(matches!(hash_unchanged("sd", &ckpt, Some(modified), hash), Ok(Some(()))), "made, then imported");
        let before = modified - Duration::from_secs(1);
        assert!(matches!(hash_unchanged("sd", &ckpt, Some(before), hash), Err(RehashError::Changed { .. })));
        let gone = hash_unchanged("sd", &dir.path().join("x.ckpt"), Some(modified), hash);
        let text = gone.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("not there any more") && text.contains("reelbox models hash sd"), "{text}");
    }
}
