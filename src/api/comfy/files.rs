//! Pictures as ComfyUI names them. Every file is an artifact; its ComfyUI file name ends
//! with the artifact id (`ComfyUI_01J….png`), so `/view` and `LoadImage` find the
//! artifact from the name alone and nothing is looked up by path.

use axum::Extension;
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use ulid::Ulid;
use utoipa::IntoParams;

use super::Comfy;
use super::answers::UploadedImage;
use super::compile::input_error;
use super::error::{ComfyError, ComfyQuery};
use super::literals::text;
use super::uploads::{INPUT, Uploads, joined};
use super::validate::{PromptError, ValidGraph};
use crate::api::artifacts::{checked_image, store_upload};
use crate::api::auth::Caller;
use crate::api::download::{FileAnswers, serve_artifact};
use crate::api::upload_form::{file_bytes, form_error, not_a_form};
use crate::api::{ApiError, AppState};
use crate::media::picture::Header;
use crate::store::records::Artifact;
use crate::store::{StoreError, artifacts};

/// Keeps a name to characters every filesystem and URL takes.
fn clean(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .take(64)
        .collect();
    s.trim_matches('.').to_string()
}

/// A name's last part, after any `/` or `\\` (clients send Windows and POSIX paths alike).
fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The ComfyUI file name of an artifact: `<prefix>_<artifact id>.<ext>`.
pub fn file_name(prefix: &str, artifact: &Artifact) -> String {
    let base = clean(base_name(prefix));
    let ext = artifacts::extension_for(&artifact.media_type);
    if base.is_empty() { format!("{}.{ext}", artifact.id) } else { format!("{base}_{}.{ext}", artifact.id) }
}

/// The artifact id at the end of a ComfyUI file name.
pub fn artifact_id(name: &str) -> Option<Ulid> {
    let base = base_name(name);
    let stem = base.rsplit_once('.').map_or(base, |(s, _)| s);
    let tail = stem.rsplit('_').next().unwrap_or(stem);
    Ulid::from_string(tail).ok()
}

/// ComfyUI's `{filename, subfolder, type}` for an artifact.
pub fn image_ref(prefix: &str, folder: &str, artifact: &Artifact) -> Value {
    json!({"filename": file_name(prefix, artifact), "subfolder": "", "type": folder})
}

/// Whether a requested name or subfolder tries to leave its folder.
pub fn is_traversal(part: &str) -> bool {
    part.contains("..") || part.contains('\0') || part.starts_with('/') || part.starts_with('\\') || part.contains(':')
}

/// Why a graph's image name does not lead to an upload the caller may use.
#[derive(Debug, thiserror::Error)]
pub enum UploadNotFound {
    #[error("no picture was uploaded under this name (/upload/image answers the name to use)")]
    NotAnUploadName,
    /// Missing, someone else's, or not an image: the caller is not told which.
    #[error("no such uploaded image")]
    NoSuchImage,
    #[error(transparent)]
    Store(StoreError),
}

/// An uploaded picture a graph names: its artifact id and where its file is (read for masks).
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: String,
    pub path: std::path::PathBuf,
}

/// Finds the upload of an image name, or says why not.
pub type UploadLookup<'a> = &'a dyn Fn(&str) -> Result<Upload, UploadNotFound>;

/// The upload a LoadImage (or LoadImageMask) names, or its node error.
pub(super) fn uploaded(g: &ValidGraph, load_id: &str, uploads: UploadLookup) -> Result<Upload, PromptError> {
    let name = text(&g.nodes[load_id], "image");
    uploads(&name).map_err(|why| {
        input_error(
            load_id,
            &g.nodes[load_id].class_type,
            "image",
            "custom_validation_failed",
            &format!("Invalid image file: {name} ({why})"),
            &json!(name),
        )
    })
}

/// An uploaded picture the caller may use, by the name `/upload/image` answered or by the
/// client's own `subfolder/name` (the newest upload so named).
pub fn find_upload(
    state: &AppState,
    uploads: &Uploads,
    caller: &Caller,
    name: &str,
) -> Result<Artifact, UploadNotFound> {
    let id = artifact_id(name)
        .or_else(|| uploads.find(&caller.owner, INPUT, name))
        .ok_or(UploadNotFound::NotAnUploadName)?;
    match state.store.artifact(id) {
        Ok(Some(a)) if caller.may_see(&a.owner) && a.media_type.starts_with("image/") => Ok(a),
        Ok(_) => Err(UploadNotFound::NoSuchImage),
        Err(e) => Err(UploadNotFound::Store(e)),
    }
}

/// Query of `GET /view`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewQuery {
    /// A file name: no `..`, `/`, `\` or `:`.
    #[param(pattern = "^(?!.*\\.\\.)[^/\\\\:\\u0000]+$")]
    pub filename: String,
    /// A folder inside `type`'s: no `..` or `:`, not starting with `/` or `\`.
    #[serde(default)]
    #[param(pattern = "^(?!.*\\.\\.)(?![/\\\\])[^:\\u0000]*$")]
    pub subfolder: String,
    /// `output`, `input` or `temp`.
    #[serde(rename = "type", default)]
    #[param(pattern = "^(output|input|temp)$")]
    pub folder: Option<String>,
}

/// A picture by its ComfyUI name (`filename`, `subfolder`, `type`).
#[utoipa::path(get, path = "/view", tag = "comfyui", params(ViewQuery),
    responses(FileAnswers, (status = 400, description = "bad or escaping name", body = super::error::ComfyErrorBody),
        (status = 404, description = "no such picture", body = super::error::ComfyErrorBody)))]
pub async fn view(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    ComfyQuery(q): ComfyQuery<ViewQuery>,
    headers: HeaderMap,
) -> Result<Response, ComfyError> {
    if q.filename.is_empty() || is_traversal(&q.filename) || q.filename.contains(['/', '\\']) {
        return Err(ApiError::field("filename", "must be a file name: not empty, no '..', '/', '\\' or ':'").into());
    }
    if is_traversal(&q.subfolder) {
        return Err(ApiError::field("subfolder", "must stay inside its folder: no '..', leading '/' or ':'").into());
    }
    if let Some(f) = &q.folder
        && !["output", "input", "temp"].contains(&f.as_str())
    {
        return Err(ApiError::field("type", "must be output, input or temp").into());
    }
    let folder = q.folder.as_deref().unwrap_or(INPUT);
    let own_name = || comfy.uploads.find(&caller.owner, folder, &joined(&q.subfolder, &q.filename));
    let Some(id) = artifact_id(&q.filename).or_else(own_name) else {
        return Err(ApiError::not_found("file", &q.filename).into());
    };
    // A folder named holds its own files, as in ComfyUI: what clients sent to it (`input`
    // unless the upload said `type`), and in `output` and `temp` what prompts made
    // (SaveImage's and PreviewImage's pictures); without a type the name alone finds it.
    let in_folder = |a: &Artifact, f: &str| match a.job {
        Some(_) => f != INPUT,
        None => comfy.uploads.holds(a.id, f),
    };
    match state.store.artifact(id)? {
        // Saved under the name asked for, so downloads of different prompts do not collide.
        Some(a) if caller.may_see(&a.owner) && q.folder.as_deref().is_none_or(|f| in_folder(&a, f)) => {
            Ok(serve_artifact(&state, &a, &q.filename, &headers).await?)
        }
        _ => Err(ApiError::not_found("file", &q.filename).into()),
    }
}

/// `/upload/image`'s form, as the document shows it (other parts are passed over).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only describes the form
pub struct ImageUploadForm {
    /// The picture.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// A folder for the name, inside `type`'s (ComfyUI's mask editor sends `clipspace`).
    #[schema(pattern = "^(?!.*\\.\\.)(?![/\\\\])[^:\\u0000]*$")]
    subfolder: Option<String>,
    /// `input` (default), `temp` or `output` (another word is `input`).
    #[schema(rename = "type")]
    folder: Option<String>,
}

/// Upload a picture for `LoadImage` (multipart field `image`).
#[utoipa::path(post, path = "/upload/image", tag = "comfyui", request_body(content_type = "multipart/form-data", content = ImageUploadForm),
    responses((status = 200, body = UploadedImage), (status = 400, description = "no image or not a picture", body = super::error::ComfyErrorBody),
        (status = 413, description = "`upload_too_large`: the picture is past `limits.max_upload_bytes`", body = super::error::ComfyErrorBody)))]
pub async fn upload_image(
    State(state): State<AppState>,
    Extension(comfy): Extension<Comfy>,
    caller: Caller,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<UploadedImage>, ComfyError> {
    let mut form = form.map_err(|r| not_a_form("image", &r))?;
    let mut image: Option<(String, Vec<u8>)> = None;
    let mut folder = INPUT.to_string();
    let mut subfolder = String::new();
    let limits = &state.config.limits;
    while let Some(field) = form.next_field().await.map_err(|e| form_error("image", limits, e))? {
        match field.name().unwrap_or_default() {
            "image" => {
                let name = field.file_name().unwrap_or("image.png").to_string();
                image = Some((name, file_bytes(field, "image", limits).await?));
            }
            "subfolder" => {
                subfolder = field.text().await.map_err(|e| form_error("subfolder", limits, e))?;
                if is_traversal(&subfolder) {
                    return Err(ApiError::field("subfolder", "must stay inside the input folder").into());
                }
            }
            "type" => {
                let t = field.text().await.map_err(|e| form_error("type", limits, e))?;
                if ["input", "temp", "output"].contains(&t.as_str()) {
                    folder = t;
                }
            }
            _ => {}
        }
    }
    let (original, bytes) =
        image.ok_or_else(|| ApiError::field("image", "send the picture as multipart field \"image\""))?;
    let header = checked_image(&state, &bytes).await.map_err(|e| ApiError::field("image", e.to_string()))?;
    let art = store_picture(&state, &caller, &original, bytes, &header).await?;
    // Also under the client's own name: the newest upload of a name is what it means, as
    // ComfyUI's `overwrite` replaces the file (without it ComfyUI would rename; the answer's
    // name is the one to use either way).
    comfy.uploads.record(&caller.owner, &folder, &joined(&subfolder, base_name(&original)), art.id).await;
    // Named from this upload, not the stored record: a picture the caller sent before (as
    // a native upload, a portrait) is answered with its artifact, whose name may carry no id.
    // The subfolder echoed as ComfyUI does (its mask editor sends `clipspace`); the name
    // carries the artifact id, so it is found under any subfolder.
    Ok(Json(UploadedImage { name: sent_name(&original, &art), subfolder, folder }))
}

/// The ComfyUI name of `artifact` as a picture sent as `original`: `<stem>_<id>.<ext>`.
fn sent_name(original: &str, artifact: &Artifact) -> String {
    let base = base_name(original);
    file_name(base.rsplit_once('.').map_or(base, |(s, _)| s), artifact)
}

/// Keeps an uploaded picture that `checked_image` passed (its `header`) as an upload artifact
/// named `<stem>_<id>.<ext>`, within the caller's storage quota; a picture the caller sent
/// before is that upload. ComfyUI's `/upload/image` and OpenAI's image edits share it.
pub async fn store_picture(
    state: &AppState,
    caller: &Caller,
    original: &str,
    bytes: Vec<u8>,
    header: &Header,
) -> Result<Artifact, ApiError> {
    let mime = header.format.to_mime_type();
    Ok(store_upload(state, caller, bytes, mime, "upload", |a| sent_name(original, a)).await?.artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(media_type: &str) -> Artifact {
        Artifact {
            id: Ulid::from_string("01J9ZQ3V6T8X4M2N5P7R9S1T3V").expect("ulid"),
            owner: "local".into(),
            job: None,
            stage: None,
            name: String::new(),
            media_type: media_type.into(),
            size: 0,
            sha256: String::new(),
            path: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn file_names_carry_the_artifact_id_back() {
        let a = artifact("image/png");
        let name = file_name("ComfyUI", &a);
        assert_eq!(name, "ComfyUI_01J9ZQ3V6T8X4M2N5P7R9S1T3V.png");
        assert_eq!(artifact_id(&name), Some(a.id));
        assert_eq!(file_name("my run/../x y", &a), "x_y_01J9ZQ3V6T8X4M2N5P7R9S1T3V.png");
        assert_eq!(artifact_id("clipspace/cat_01J9ZQ3V6T8X4M2N5P7R9S1T3V.jpg"), Some(a.id));
        assert_eq!(artifact_id("ComfyUI_00001_.png"), None);
    }

    #[test]
    fn escaping_names_are_traversal() {
        for bad in ["../x.png", "a/../../b", "/etc/passwd", "\\\\server\\x", "C:x"] {
            assert!(is_traversal(bad), "{bad}");
        }
        assert!(!is_traversal("ComfyUI_01J9ZQ3V6T8X4M2N5P7R9S1T3V.png"));
        assert!(!is_traversal(""));
    }
}
