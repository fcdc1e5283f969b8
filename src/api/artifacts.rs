//! Artifacts over the API: a job's list, metadata, download (served by [`super::download`])
//! and uploads.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::Caller;
use super::download::{FileAnswers, download_name, serve_artifact};
use super::jobs::{parse_id, visible_job};
use super::links::Reader;
use super::upload_form::{file_bytes, form_error};
use super::views::ArtifactView;
use super::{ApiError, AppState};
use crate::media::picture::{self, Header, PictureError};
use crate::media::probe::{ProbeError, probe_audio};
use crate::store::artifacts;
use crate::store::records::now_ms;
use crate::store::records::{Artifact, Job};
use crate::store::uploads::Uploaded;

/// Loads artifact metadata the caller may see (404 otherwise).
pub fn visible_artifact(state: &AppState, caller: &Caller, raw: &str) -> Result<Artifact, ApiError> {
    let id = parse_id("artifact", raw)?;
    match state.store.artifact(id)? {
        Some(a) if caller.may_see(&a.owner) => Ok(a),
        _ => Err(ApiError::not_found("artifact", raw)),
    }
}

/// Artifacts of a job, in stage order.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/artifacts", params(("id" = String, Path)), responses((status = 200, body = Vec<ArtifactView>)))]
pub async fn of_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ArtifactView>>, ApiError> {
    let job = visible_job(&state, &caller, &id)?;
    let mut out = Vec::new();
    for stage in &job.stages {
        for a in &stage.artifacts {
            if let Some(art) = state.store.artifact(*a)? {
                out.push(ArtifactView::of_job(&art, Some(&job)));
            }
        }
    }
    Ok(Json(out))
}

/// Artifact metadata; a picture's with its upright `width` and `height`.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/meta", params(("id" = String, Path)), responses((status = 200, body = ArtifactView)))]
pub async fn meta(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ArtifactView>, ApiError> {
    let art = visible_artifact(&state, &caller, &id)?;
    let picture = if art.media_type.starts_with("image/") {
        let path = state.store.artifacts_dir().join(&art.path);
        tokio::task::spawn_blocking(move || picture::header_at(&path).ok()).await.ok().flatten()
    } else {
        None
    };
    Ok(Json(ArtifactView::of_job(&art, job_of(&state, &art)?.as_ref()).with_picture(picture)))
}

/// The job that made `art`, when one did and it is still kept (its downloads' names).
fn job_of(state: &AppState, art: &Artifact) -> Result<Option<Job>, ApiError> {
    Ok(match art.job {
        Some(id) => state.store.job(id)?,
        None => None,
    })
}

/// Download an artifact's bytes (supports `Range` and `If-None-Match`), with a key, or
/// without one through a signed link (`?expires=&key=&sig=`, as the OpenAI image routes
/// answer), while the key that shared it stands; its fetches count against that key's rate.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}", security(("api_key" = []), ()),
    params(("id" = String, Path), ("expires" = Option<u64>, Query, description = "a signed link's expiry, Unix seconds"),
        ("key" = Option<String>, Query, description = "a signed link's sharing key (its id), when a key asked for the link"),
        ("sig" = Option<String>, Query, description = "a signed link's signature: with `expires`, opens this artifact without a key")),
    responses(FileAnswers,
        (status = 401, body = super::error::ErrorBody, description = "neither a key nor a signed link"),
        (status = 403, body = super::error::ErrorBody, description = "`bad_link` (altered), `link_expired` or `link_revoked` (the sharing key was revoked)"),
        (status = 429, body = super::error::ErrorBody, description = "`rate_limited`: the sharing key's `limits.requests_per_second`"),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let art = reader.artifact(&state, &id)?;
    let name = download_name(&art, job_of(&state, &art)?.as_ref());
    serve_artifact(&state, &art, &name, &headers).await
}

/// An uploaded file, before it is stored.
pub struct Upload {
    pub field: &'static str,
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// The bytes' sha256 when already known ([`Upload::hash`]), so they are hashed once.
    pub sha256: Option<String>,
}

impl Upload {
    /// Stores the file (see [`store_upload`]) under the name it was sent with, or
    /// `<field>.<ext>` when it came without one; `stage` says what brought it in (`upload`,
    /// `profile`).
    pub async fn store(
        self,
        state: &AppState,
        caller: &Caller,
        media_type: &str,
        stage: &str,
    ) -> Result<Uploaded, ApiError> {
        let Upload { field, file_name, bytes, sha256 } = self;
        let name = |a: &Artifact| {
            if file_name.is_empty() {
                format!("{field}.{}", artifacts::extension_for(&a.media_type))
            } else {
                file_name
            }
        };
        let hashed = match sha256 {
            Some(known) => (bytes, known),
            None => hashed_off_runtime(bytes).await?,
        };
        store_hashed(state, caller, hashed, media_type, stage, name).await
    }

    /// Hashes the bytes (once) and says whether the caller already holds them: then storing
    /// them costs nothing against its storage quota or the disk.
    pub async fn hash(&mut self, state: &AppState, caller: &Caller) -> Result<bool, ApiError> {
        let (bytes, sha256) = hashed_off_runtime(std::mem::take(&mut self.bytes)).await?;
        self.bytes = bytes;
        let held = state.store.holds_upload(&caller.owner, &sha256)?;
        self.sha256 = Some(sha256);
        Ok(held)
    }
}

/// Upload bytes with their sha256 (hex), hashed on a blocking thread (an upload may be
/// 32 MiB); the bytes go there and back rather than being copied.
async fn hashed_off_runtime(bytes: Vec<u8>) -> Result<(Vec<u8>, String), ApiError> {
    tokio::task::spawn_blocking(move || {
        let sha256 = artifacts::sha256_bytes(&bytes);
        (bytes, sha256)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))
}

/// `POST /api/v1/artifacts`'s form, as the document shows it (the route reads its parts
/// one by one; other parts are passed over).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only describes the form
pub struct UploadForm {
    /// The file: a picture, a sound or an MP4 video.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload an input file (image, audio or MP4 video) as an artifact: multipart field `file`.
/// The same bytes sent again by the same key are answered with the artifact that holds
/// them (200 instead of 201), costing no more storage; it keeps its first `created_at`.
#[utoipa::path(post, path = "/api/v1/artifacts", request_body(content_type = "multipart/form-data", content = UploadForm),
    responses((status = 201, body = ArtifactView, description = "stored"),
        (status = 200, body = ArtifactView, description = "this key uploaded the same bytes before: that artifact, its `created_at` when it was first sent, kept as long as a fresh upload"),
        (status = 400, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody, description = "`upload_too_large`: the file is past `limits.max_upload_bytes`; or `quota_exceeded`")))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<ArtifactView>), ApiError> {
    let mut form = form.map_err(|r| super::upload_form::not_a_form("file", &r))?;
    let limits = &state.config.limits;
    while let Some(field) = form.next_field().await.map_err(|e| form_error("file", limits, e))? {
        if field.name() != Some("file") {
            continue;
        }
        let file_name = field.file_name().unwrap_or("upload").to_string();
        let bytes = file_bytes(field, "file", limits).await?;
        let (media_type, picture) = upload_media_type(&state, &file_name, &bytes).await?;
        let up = Upload { field: "file", file_name, bytes, sha256: None }
            .store(&state, &caller, media_type, "upload")
            .await?;
        let status = if up.existing { StatusCode::OK } else { StatusCode::CREATED };
        return Ok((status, Json(ArtifactView::from(&up.artifact).with_picture(picture))));
    }
    Err(ApiError::field("file", "is required (multipart field `file`)"))
}

/// Checks an uploaded picture against `limits.max_upload_side` (header first, then a bounded
/// decode) on a blocking thread, so big decodes never stall the async runtime; returns its
/// format and upright size.
pub async fn checked_image(state: &AppState, bytes: &[u8]) -> Result<Header, UploadCheckError> {
    let limit = state.config.limits.max_upload_side;
    off_runtime(bytes, "image", move |b| Ok(picture::check(b, limit)?)).await
}

/// Why an uploaded file was refused; its text is the 400's message.
#[derive(Debug, thiserror::Error)]
pub enum UploadCheckError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The blocking check's thread died (a panic in a decoder).
    #[error("the {what} check stopped: {source}")]
    Stopped { what: &'static str, source: tokio::task::JoinError },
}

impl UploadCheckError {
    /// Whether the file was readable but over a `[limits]` size (named as such, not as unreadable).
    pub fn is_over_limit(&self) -> bool {
        matches!(self, Self::Probe(p) if p.is_over_limit())
    }

    /// Whether the bytes are no picture at all (so may still be audio or video); a picture
    /// in a format reelbox cannot read (HEIC, AVIF) is one, refused as such.
    pub fn is_not_a_picture(&self) -> bool {
        matches!(self, Self::Probe(ProbeError::Picture(PictureError::NotAPicture)))
    }
}

/// Runs a blocking check of uploaded bytes on a blocking thread (`what` names it if the
/// thread dies).
async fn off_runtime<T: Send + 'static>(
    bytes: &[u8],
    what: &'static str,
    check: impl FnOnce(&[u8]) -> Result<T, ProbeError> + Send + 'static,
) -> Result<T, UploadCheckError> {
    let owned = bytes.to_vec();
    let checked = tokio::task::spawn_blocking(move || check(&owned)).await;
    Ok(checked.map_err(|source| UploadCheckError::Stopped { what, source })??)
}

/// Decides what an upload is by decoding it: image (with its header), audio, or (ffprobe)
/// MP4 video.
async fn upload_media_type(
    state: &AppState,
    file_name: &str,
    bytes: &[u8],
) -> Result<(&'static str, Option<Header>), ApiError> {
    // The magic bytes tell a picture at once: audio and video skip the picture check
    // (it copies the whole body to a blocking thread to say the same).
    if !matches!(picture::format_of(&bytes[..bytes.len().min(32)]), Err(PictureError::NotAPicture)) {
        match checked_image(state, bytes).await {
            Ok(header) => return Ok((header.format.to_mime_type(), Some(header))),
            Err(why) if why.is_not_a_picture() => {}
            Err(why) => return Err(ApiError::field("file", why.to_string())),
        }
    }
    let is_video = file_name.to_ascii_lowercase().ends_with(".mp4") || bytes.get(4..8) == Some(b"ftyp".as_slice());
    if is_video {
        let tmp = state.store.artifacts_dir().join(format!("probe-{}.partial", state.store.new_id()));
        let probed = match tokio::fs::write(&tmp, bytes).await {
            Ok(()) => {
                let path = tmp.clone();
                tokio::task::spawn_blocking(move || crate::media::ffprobe::probe(&path)).await.ok().and_then(Result::ok)
            }
            Err(_) => None,
        };
        let _ = tokio::fs::remove_file(&tmp).await;
        if let Some(media) = probed
            && let Some(video) = media.video()
        {
            // A video input is as long as every job made from it: held to the same limits.
            let seconds = video.duration_s.or(media.duration_s).unwrap_or(0.0);
            let fps = video.fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(25.0);
            crate::kinds::bounds::media_fits(seconds, fps, &state.config.limits)
                .map_err(|m| ApiError::field("file", format!("this video is {m}")))?;
            return Ok(("video/mp4", None));
        }
    }
    match checked_audio(state, bytes).await {
        Ok(_) => Ok((audio_media_type(file_name, bytes), None)),
        Err(why) if why.is_over_limit() => Err(ApiError::field("file", why.to_string())),
        Err(why) => Err(ApiError::field("file", format!("not a readable image, audio or MP4 file ({why})"))),
    }
}

/// Checks uploaded audio against `limits.max_audio_seconds` (stated length first, then a
/// decode that stops at the limit) on a blocking thread; returns its duration, seconds.
pub async fn checked_audio(state: &AppState, bytes: &[u8]) -> Result<f64, UploadCheckError> {
    let limit = state.config.limits.max_audio_seconds;
    off_runtime(bytes, "audio", move |b| probe_audio(b, limit)).await
}

/// Media type of an audio upload (its content was checked by decoding): what its first bytes
/// say, else its file name's extension, else WAV. The bytes first, so one file is one type
/// whatever name it is sent under (a re-send is the same upload, `store_hashed`).
pub fn audio_media_type(file_name: &str, bytes: &[u8]) -> &'static str {
    let by_content = match bytes {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => Some("audio/wav"),
        [b'f', b'L', b'a', b'C', ..] => Some("audio/flac"),
        [b'O', b'g', b'g', b'S', ..] => Some("audio/ogg"),
        [b'I', b'D', b'3', ..] => Some("audio/mpeg"),
        // A frame sync: ADTS AAC has layer bits 00, MPEG audio (an MP3 without a tag) not.
        [0xFF, b, ..] if b & 0xF6 == 0xF0 => Some("audio/aac"),
        [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some("audio/mpeg"),
        _ => None,
    };
    if let Some(media_type) = by_content {
        return media_type;
    }
    match file_name.rsplit('.').next().map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("mp3") => "audio/mpeg",
        Some("flac") => "audio/flac",
        Some("ogg" | "oga" | "opus") => "audio/ogg",
        Some("aac" | "m4a") => "audio/aac",
        _ => "audio/wav",
    }
}

/// Refuses an upload of `size` bytes that would take the data dir's disk below
/// `limits.min_free_disk_bytes`, or plainly cannot fit the caller's `max_storage_bytes`,
/// before its bytes are written; [`commit_upload`] decides the quota for real.
pub fn check_room(state: &AppState, caller: &Caller, size: u64) -> Result<(), ApiError> {
    let min_free = state.config.limits.min_free_disk_bytes;
    crate::disk::check_room("data dir", state.store.data_dir(), size, min_free)?;
    let Some(limit) = caller.max_storage_bytes else { return Ok(()) };
    let used = state.store.owner_bytes(&caller.owner)?;
    Ok(crate::store::storage::within(&caller.label, used, size, limit)?)
}

/// Commits an uploaded artifact's record within the caller's `max_storage_bytes` (checked
/// in the write transaction, so concurrent uploads cannot overshoot); a refused upload's
/// file is removed so it does not linger until the orphan sweep, as is one that the
/// caller's same bytes, stored meanwhile, make a copy.
pub async fn commit_upload(state: &AppState, caller: &Caller, art: Artifact) -> Result<Uploaded, ApiError> {
    let path = state.store.artifacts_dir().join(&art.path);
    let put = state.store.put_upload_within(art, caller.max_storage_bytes).await;
    let kept = put.as_ref().is_ok_and(|up| !up.existing);
    if !kept && let Err(rm) = tokio::fs::remove_file(&path).await {
        tracing::warn!(path = %path.display(), "could not remove a refused or repeated upload: {rm}");
    }
    put.map_err(|e| e.naming_owner(&caller.label).into())
}

/// Stores validated upload bytes durably as an artifact of the caller at `stage`, within its
/// storage quota; `name` names it from its record (ComfyUI's names carry the artifact id).
/// Bytes the caller already uploaded are answered with that upload (`existing`), its name
/// kept, and cost nothing.
pub async fn store_upload(
    state: &AppState,
    caller: &Caller,
    bytes: Vec<u8>,
    media_type: &str,
    stage: &str,
    name: impl FnOnce(&Artifact) -> String,
) -> Result<Uploaded, ApiError> {
    // Hashed once, before anything is written or counted: a copy is never written, and a
    // key at its quota may still send again what it holds.
    store_hashed(state, caller, hashed_off_runtime(bytes).await?, media_type, stage, name).await
}

/// [`store_upload`] of bytes with their sha256.
async fn store_hashed(
    state: &AppState,
    caller: &Caller,
    (bytes, sha256): (Vec<u8>, String),
    media_type: &str,
    stage: &str,
    name: impl FnOnce(&Artifact) -> String,
) -> Result<Uploaded, ApiError> {
    if let Some(artifact) = state.store.reuse_upload(&caller.owner, &sha256, stage, media_type).await? {
        return Ok(Uploaded { artifact, existing: true });
    }
    check_room(state, caller, bytes.len() as u64)?;
    let id = state.store.new_id();
    let dir = state.store.artifacts_dir().to_path_buf();
    let ext = artifacts::extension_for(media_type);
    let stored =
        tokio::task::spawn_blocking(move || artifacts::write_hashed(&dir, &id.to_string(), ext, &bytes, sha256))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    let mut art = Artifact {
        id,
        owner: caller.owner.clone(),
        job: None,
        stage: Some(stage.into()),
        name: String::new(),
        media_type: media_type.to_string(),
        size: stored.size,
        sha256: stored.sha256,
        path: stored.rel_path,
        created_at: now_ms(),
    };
    art.name = name(&art);
    commit_upload(state, caller, art).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audio_files_type_is_what_its_bytes_are_whatever_its_name() {
        assert_eq!(audio_media_type("memo.mp3", b"RIFF\x24\0\0\0WAVEfmt "), "audio/wav");
        assert_eq!(audio_media_type("memo", b"fLaC\0\0\0\x22"), "audio/flac");
        assert_eq!(audio_media_type("memo.wav", b"OggS\0\x02"), "audio/ogg");
        assert_eq!(audio_media_type("memo.bin", b"ID3\x04\0"), "audio/mpeg");
        assert_eq!(audio_media_type("memo", &[0xFF, 0xFB, 0x90, 0x64]), "audio/mpeg");
        assert_eq!(audio_media_type("memo", &[0xFF, 0xF1, 0x50, 0x80]), "audio/aac");
        // Bytes that say nothing: the name, else WAV.
        assert_eq!(audio_media_type("memo.m4a", b"\0\0\0\x20ftypM4A "), "audio/aac");
        assert_eq!(audio_media_type("memo", b"\0\0\0\x20ftypM4A "), "audio/wav");
    }
}
