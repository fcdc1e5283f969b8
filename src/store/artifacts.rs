//! Artifact bytes on disk. A file is written to a temp name, fsynced and renamed before
//! its record is committed, so a record never points at a half-written file; temp files
//! a crash left behind are removed at start.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::durable::{self, TEMP_SUFFIX, sync_dir};

use super::StoreError;

/// Where an artifact's bytes landed.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// Path relative to the artifacts dir.
    pub rel_path: String,
    pub size: u64,
    pub sha256: String,
}

fn file_err(path: &Path, e: std::io::Error) -> StoreError {
    // The path is inside the data dir; say plainly which resource ran out.
    let reason = if e.kind() == std::io::ErrorKind::StorageFull {
        format!("{e}: the filesystem holding the data dir is full")
    } else {
        e.to_string()
    };
    StoreError::File { path: path.to_path_buf(), reason }
}

/// Relative path for an artifact id: sharded by the id's last two characters so no
/// directory grows without bound.
fn rel_path(id: &str, ext: &str) -> String {
    let shard = &id[id.len().saturating_sub(2)..];
    if ext.is_empty() { format!("{shard}/{id}") } else { format!("{shard}/{id}.{ext}") }
}

/// Writes `bytes` durably as artifact `id`.
pub fn write_bytes(dir: &Path, id: &str, ext: &str, bytes: &[u8]) -> Result<StoredFile, StoreError> {
    write_hashed(dir, id, ext, bytes, sha256_bytes(bytes))
}

/// As [`write_bytes`] for bytes whose sha256 (hex) the caller already has: an upload is
/// hashed before it is written, to find the owner's copy of the same bytes.
pub fn write_hashed(dir: &Path, id: &str, ext: &str, bytes: &[u8], sha256: String) -> Result<StoredFile, StoreError> {
    let rel = rel_path(id, ext);
    let dest = dir.join(&rel);
    durable::write(&dest, bytes).map_err(|e| file_err(&dest, e))?;
    Ok(StoredFile { rel_path: rel, size: bytes.len() as u64, sha256 })
}

/// The sha256 (hex) of bytes in memory, as artifact records keep it.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Moves (or copies, across filesystems) a finished file in as artifact `id`.
pub fn adopt_file(dir: &Path, id: &str, ext: &str, src: &Path) -> Result<StoredFile, StoreError> {
    let (size, sha256) = hash_file(src)?;
    let rel = rel_path(id, ext);
    let dest = dir.join(&rel);
    let parent = dest.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| file_err(&parent, e))?;
    let tmp = durable::temp_of(&dest);
    if std::fs::rename(src, &tmp).is_err() {
        std::fs::copy(src, &tmp).map_err(|e| file_err(&tmp, e))?;
    }
    // A moved file keeps its old modification time; stamping it now keeps the sweep's
    // grace period for files whose record is about to commit (see `files_older_than`).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .and_then(|f| {
            f.set_modified(std::time::SystemTime::now())?;
            f.sync_all()
        })
        .map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, &dest).map_err(|e| file_err(&dest, e))?;
    sync_dir(&parent);
    Ok(StoredFile { rel_path: rel, size, sha256 })
}

/// Size and sha256 (hex) of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let read = sha256_read(&mut File::open(path)?, |_, _| true)?;
    // `each` never stops it.
    Ok(read.unwrap_or_default())
}

/// Size and sha256 (hex) of all that `r` gives, read 1 MiB at a time: the one hashing loop of
/// the crate. `each` sees every chunk with its offset from where `r` stood (A1111's old model
/// hash reads one window of the same read) and stops the read by answering `false` (a
/// canceled import): `None` then.
pub fn sha256_read(
    r: &mut impl Read,
    mut each: impl FnMut(u64, &[u8]) -> bool,
) -> std::io::Result<Option<(u64, String)>> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if !each(size, &buf[..n]) {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Some((size, hex::encode(hasher.finalize()))))
}

/// Size and sha256 of a file, as a store error naming the path.
pub fn hash_file(path: &Path) -> Result<(u64, String), StoreError> {
    sha256_file(path).map_err(|e| file_err(path, e))
}

/// Removes temp files a crash left in the artifacts dir.
pub fn remove_orphans(dir: &Path) {
    let Ok(shards) = std::fs::read_dir(dir) else { return };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
        for f in files.flatten() {
            let p = f.path();
            if p.to_string_lossy().ends_with(TEMP_SUFFIX) {
                match std::fs::remove_file(&p) {
                    Ok(()) => tracing::info!("removed orphaned temp file {}", p.display()),
                    Err(e) => tracing::warn!("cannot remove orphaned temp file {}: {e}", p.display()),
                }
            }
        }
    }
}

/// Finished artifact files (not temp files) last modified before `cutoff`, as paths
/// relative to `dir` (the form records keep) with their sizes.
pub fn files_older_than(dir: &Path, cutoff: std::time::SystemTime) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir) else { return out };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Ok(meta) = f.metadata() else { continue };
            let old = meta.modified().is_ok_and(|m| m < cutoff);
            if meta.is_file() && old && !name.ends_with(TEMP_SUFFIX) {
                out.push((format!("{shard_name}/{name}"), meta.len()));
            }
        }
    }
    out
}

/// Removes artifact files by relative path; one already gone is fine, other failures are
/// logged (the file is then an orphan the next sweep retries).
pub fn remove_files(dir: &Path, rel_paths: &[String]) {
    for rel in rel_paths {
        let path = dir.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove artifact file {}: {e}", path.display()),
        }
    }
}

/// Every media type an artifact is stored as, with its file extension: what jobs write and
/// what uploads are read as. Downloads serve a file under its media type, so the API's
/// document lists these for them (`api::download::FileAnswers`).
pub const MEDIA_TYPES: [(&str, &str); 14] = [
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/webp", "webp"),
    ("audio/wav", "wav"),
    // WAV under its older name.
    ("audio/x-wav", "wav"),
    ("audio/mpeg", "mp3"),
    ("audio/flac", "flac"),
    ("audio/ogg", "ogg"),
    ("audio/aac", "aac"),
    ("video/mp4", "mp4"),
    ("application/json", "json"),
    // A first pass's latent kept for a second pass from it (`kinds::image::latent`).
    ("application/x-npy", "npy"),
    ("text/vtt", "vtt"),
    ("application/x-subrip", "srt"),
];

/// File extension for a media type (`bin` for one not in [`MEDIA_TYPES`]).
pub fn extension_for(media_type: &str) -> &'static str {
    MEDIA_TYPES.iter().find(|(m, _)| *m == media_type).map_or("bin", |(_, ext)| ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_temp_files_are_removed_and_finished_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = write_bytes(dir.path(), "01ARTIFACTAA", "png", b"png").expect("write");
        let orphan = dir.path().join("AA/01CRASHED.png.partial");
        std::fs::write(&orphan, b"half").expect("write orphan");
        remove_orphans(dir.path());
        assert!(!orphan.exists());
        assert!(dir.path().join(kept.rel_path).exists());
    }
}
