//! Artifacts between the head and a box: small ones inside the work or result message
//! (`[cluster] inline_kib` in all per message), the rest through the box's object bucket
//! in chunks (the store's own). Either way the receiver writes a file whose size and
//! SHA-256 are checked against what the sender said, besides the store's own digest check.

use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::protocol::ObjectRef;
use super::{Bus, ClusterError};
use crate::store::artifacts::sha256_file;

/// Base64 of inline bytes in messages.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An artifact on its way: its size, hex SHA-256, and its bytes (base64) when inline.
pub struct Packed {
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// The base64 bytes when it travels inside the message.
    pub inline: Option<String>,
}

/// Sends `file` for a stage of box `host`: inside the message when it fits what is left of
/// `budget` (bytes; it then uses that up), else uploaded as `object` (replacing one of that
/// name) to the box's bucket.
pub async fn pack(bus: &Bus, host: &str, object: &str, file: &Path, budget: &mut u64) -> Result<Packed, ClusterError> {
    let io = |source| ClusterError::Io { path: file.to_path_buf(), source };
    // Small files are read here, not on the blocking pool: each hop there costs more than
    // reading 128 KiB, and the stage waits for it.
    let size = std::fs::metadata(file).map_err(io)?.len();
    if size <= *budget {
        let bytes = std::fs::read(file).map_err(io)?;
        *budget = budget.saturating_sub(bytes.len() as u64);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        return Ok(Packed { size: bytes.len() as u64, sha256, inline: Some(B64.encode(&bytes)) });
    }
    let (size, sha256) = {
        let path = file.to_path_buf();
        tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?
    };
    let objects = bus.bucket(host).await?;
    let mut f = tokio::fs::File::open(file).await.map_err(io)?;
    objects.put(object, &mut f).await.map_err(|e| ClusterError::js("object upload", e))?;
    Ok(Packed { size, sha256, inline: None })
}

/// Writes `r` (from its message, or from box `host`'s bucket) into `dest` and checks its
/// size and digest; a damaged copy is removed.
pub async fn download(bus: &Bus, host: &str, r: &ObjectRef, dest: &Path) -> Result<(), ClusterError> {
    let io = |source| ClusterError::Io { path: dest.to_path_buf(), source };
    if let Some(text) = &r.inline {
        return write_inline(r, text, dest);
    }
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let objects = bus.bucket(host).await?;
    let mut object = objects.get(&r.object).await.map_err(|e| ClusterError::js("object download", e))?;
    let mut f = tokio::fs::File::create(dest).await.map_err(io)?;
    tokio::io::copy(&mut object, &mut f).await.map_err(io)?;
    f.flush().await.map_err(io)?;
    drop(f);
    check(r, dest).await
}

/// Writes an inline artifact after checking its bytes in memory (small: done here, as
/// `pack` reads it); damaged bytes write nothing.
fn write_inline(r: &ObjectRef, text: &str, dest: &Path) -> Result<(), ClusterError> {
    let bytes = B64.decode(text).map_err(|e| ClusterError::Damaged {
        object: r.object.clone(),
        detail: format!("its inline bytes are not base64: {e}"),
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != r.size || sha256 != r.sha256 {
        return Err(damaged(r, bytes.len() as u64, &sha256));
    }
    let io = |source| ClusterError::Io { path: dest.to_path_buf(), source };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(dest, bytes).map_err(io)
}

/// Checks a received file's size and digest against its ref; removes a damaged one.
async fn check(r: &ObjectRef, dest: &Path) -> Result<(), ClusterError> {
    let io = |source| ClusterError::Io { path: dest.to_path_buf(), source };
    let path = dest.to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
    if size != r.size || sha256 != r.sha256 {
        let _ = tokio::fs::remove_file(dest).await;
        return Err(damaged(r, size, &sha256));
    }
    Ok(())
}

/// The error for bytes that do not match their ref.
fn damaged(r: &ObjectRef, size: u64, sha256: &str) -> ClusterError {
    ClusterError::Damaged {
        object: r.object.clone(),
        detail: format!("expected {} bytes sha256 {}, got {size} bytes sha256 {sha256}", r.size, r.sha256),
    }
}

/// Deletes objects from box `host`'s bucket, logging (not failing on) the ones already
/// gone; inline ones are nowhere to delete.
pub async fn remove(bus: &Bus, host: &str, refs: &[ObjectRef]) {
    let refs: Vec<&ObjectRef> = refs.iter().filter(|r| r.inline.is_none()).collect();
    if refs.is_empty() {
        return;
    }
    let objects = match bus.bucket(host).await {
        Ok(b) => b,
        Err(e) => return tracing::debug!(box = host, "cannot delete objects: {e}"),
    };
    for r in refs {
        if let Err(e) = objects.delete(&r.object).await {
            tracing::debug!(object = %r.object, "cannot delete object: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_bytes_are_written_only_when_they_match_their_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = b"a tiny card";
        let text = B64.encode(bytes);
        let r = ObjectRef {
            object: "out-x-0".into(),
            id: ulid::Ulid::new(),
            name: "card.png".into(),
            media_type: "image/png".into(),
            stage: None,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            inline: Some(text.clone()),
        };
        let good = dir.path().join("in/good.png");
        write_inline(&r, &text, &good).expect("matching bytes are written");
        assert_eq!(std::fs::read(&good).expect("written"), bytes);
        let bad = dir.path().join("bad.png");
        let tampered = B64.encode(b"a tiny cart");
        let e = write_inline(&r, &tampered, &bad).expect_err("other bytes are refused");
        assert!(e.to_string().contains("arrived damaged") && !bad.exists(), "{e}");
        let e = write_inline(&r, "not base64!", &bad).expect_err("not base64");
        assert!(e.to_string().contains("not base64") && !bad.exists(), "{e}");
    }
}
