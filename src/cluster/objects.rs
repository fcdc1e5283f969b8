//! Artifacts through the JetStream object store: uploads in chunks (the store's own), and
//! downloads into a file whose size and SHA-256 are checked against what the sender said,
//! besides the store's own digest check.

use std::path::Path;

use async_nats::jetstream::object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use super::protocol::ObjectRef;
use super::{Bus, ClusterError};
use crate::store::artifacts::sha256_file;

/// Uploads `file` as `object` (replacing one of that name); returns its size and hex SHA-256.
pub async fn upload(objects: &ObjectStore, object: &str, file: &Path) -> Result<(u64, String), ClusterError> {
    let io = |source| ClusterError::Io { path: file.to_path_buf(), source };
    let digest = {
        let path = file.to_path_buf();
        tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?
    };
    let mut f = tokio::fs::File::open(file).await.map_err(io)?;
    objects.put(object, &mut f).await.map_err(|e| ClusterError::js("object upload", e))?;
    Ok(digest)
}

/// Downloads `r` into `dest` and checks its size and digest; a damaged copy is removed.
pub async fn download(objects: &ObjectStore, r: &ObjectRef, dest: &Path) -> Result<(), ClusterError> {
    let io = |source| ClusterError::Io { path: dest.to_path_buf(), source };
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let mut object = objects.get(&r.object).await.map_err(|e| ClusterError::js("object download", e))?;
    let mut f = tokio::fs::File::create(dest).await.map_err(io)?;
    tokio::io::copy(&mut object, &mut f).await.map_err(io)?;
    f.flush().await.map_err(io)?;
    drop(f);
    let path = dest.to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
    if size != r.size || sha256 != r.sha256 {
        let _ = tokio::fs::remove_file(dest).await;
        return Err(ClusterError::Damaged {
            object: r.object.clone(),
            detail: format!("expected {} bytes sha256 {}, got {size} bytes sha256 {sha256}", r.size, r.sha256),
        });
    }
    Ok(())
}

/// Deletes objects from box `host`'s bucket, logging (not failing on) the ones already gone.
pub async fn remove(bus: &Bus, host: &str, refs: &[ObjectRef]) {
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
