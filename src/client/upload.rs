//! Local files sent to the box (`reelbox upscale photo.jpg`, `render --music`, `profiles
//! create --portrait`): each is held to the box's `limits.max_upload_bytes` before a byte
//! is sent. A box answers a larger upload by closing the connection mid-body, which a
//! client reads as a failed request, as though the box were down.

use std::path::{Path, PathBuf};

use reqwest::multipart::Part;
use serde::Deserialize;

use super::{ApiClient, ClientError};
use crate::api::system::LimitsView;
use crate::disk::human_bytes;

/// A local file read for an upload, within the box's limit.
#[derive(Debug)]
pub struct LocalFile {
    /// The file's own name (the box names the upload after it).
    pub name: String,
    pub bytes: Vec<u8>,
}

impl LocalFile {
    /// The file as a multipart form part.
    pub fn part(self) -> Part {
        Part::bytes(self.bytes).file_name(self.name)
    }
}

/// Why a local file was not sent.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{what} {}: cannot read it: {source}", path.display())]
    Read {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} {}: the file is {}; the box takes files up to {} (limits.max_upload_bytes in its config): send a smaller file, or ask whoever runs the box to raise the limit",
        path.display(), human_bytes(*size), human_bytes(*limit)
    )]
    TooLarge { what: String, path: PathBuf, size: u64, limit: u64 },
    /// The box's limit could not be asked for.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The part of `/api/v1/system` an upload needs.
#[derive(Deserialize)]
struct SystemLimits {
    #[serde(default)]
    limits: LimitsView,
}

impl ApiClient {
    /// The box's `limits.max_upload_bytes`; `None` from a daemon that does not say.
    pub async fn upload_limit(&self) -> Result<Option<u64>, ClientError> {
        let system: SystemLimits = self.get_json("/api/v1/system", None).await?;
        Ok(Some(system.limits.max_upload_bytes).filter(|b| *b > 0))
    }

    /// Reads `path`, given as `what` (the flag the user typed), to be uploaded: one larger
    /// than the box takes is refused by its size on disk, before it is read or sent.
    pub async fn local_file(&self, path: &Path, what: &str) -> Result<LocalFile, UploadError> {
        let read_error = |source| UploadError::Read { what: what.to_string(), path: path.to_path_buf(), source };
        let size = tokio::fs::metadata(path).await.map_err(read_error)?.len();
        if let Some(limit) = self.upload_limit().await?
            && size > limit
        {
            return Err(UploadError::TooLarge { what: what.to_string(), path: path.to_path_buf(), size, limit });
        }
        let bytes = tokio::fs::read(path).await.map_err(read_error)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
        Ok(LocalFile { name, bytes })
    }
}
