//! Profiles: a presenter's portrait, voice and style, created with a multipart upload
//! (or plain JSON when there are no files).

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use ulid::Ulid;
use utoipa::ToSchema;

use super::artifacts::{Upload, audio_media_type};
use super::auth::Caller;
use super::jobs::parse_id;
use super::json::ApiJson;
use super::upload_form::{file_bytes, form_error};
use super::views::ProfileView;
use super::{ApiError, AppState};
use crate::config::LimitsConfig;
use crate::config::defaults::DEFAULT_VOICE;
use crate::kinds::ParamError;
use crate::models::{Availability, Catalog, ModelKind};
use crate::pipelines::diffusion::preset::Presets;
use crate::store::records::{Profile, Style, Voice, now_ms};

/// Profile fields (JSON body, or the text fields of the multipart form).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// Unique among the owner's profiles (they are found by name); other owners may use it.
    pub name: Option<String>,
    /// Face box in portrait pixels `[x, y, w, h]` (multipart: "x,y,w,h").
    #[schema(value_type = Option<[super::views::FaceSide; 4]>, min_items = 4, max_items = 4)]
    pub face_box: Option<[u32; 4]>,
    /// Piper voice, installed or in the catalog (`reelbox pull NAME` or `piper:NAME`); renders
    /// from the profile are refused until it is installed.
    pub voice: Option<String>,
    pub speaker: Option<String>,
    pub length_scale: Option<f32>,
    pub noise_scale: Option<f32>,
    pub noise_w: Option<f32>,
    pub prompt_prefix: Option<String>,
    pub negative_prompt: Option<String>,
    pub preset: Option<String>,
    /// Diffusion model (installed or in the catalog) for the pictures and renders' keyframes
    /// made with the profile that name none (`""` clears).
    pub image_model: Option<String>,
    /// Installed lip-sync model (e.g. an imported Wav2Lip) for the presenter of the renders
    /// and lip-syncs made with the profile that name none (`""` clears: the box's default).
    pub lipsync_model: Option<String>,
    /// Installed upscaler for the upscaled renders made with the profile that name none
    /// (`""` clears: the box's default).
    pub upscale_model: Option<String>,
    /// Artifact id of an already uploaded portrait.
    pub portrait: Option<String>,
}

/// `POST /api/v1/profiles`'s JSON body as the document shows it: [`ProfileRequest`] with
/// `name` required and not blank (`PATCH` takes `ProfileRequest` as it is).
pub struct NewProfile;

impl utoipa::PartialSchema for NewProfile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
        let name = ObjectBuilder::new().schema_type(Type::String).pattern(Some("\\S"));
        let named = ObjectBuilder::new().property("name", name).required("name");
        AllOfBuilder::new().item(utoipa::openapi::Ref::from_schema_name("ProfileRequest")).item(named).into()
    }
}

impl ToSchema for NewProfile {}

/// `POST /api/v1/profiles`'s form, as the document shows it: [`ProfileRequest`]'s fields as
/// text parts (`face_box` written `x,y,w,h`), with `portrait` and `voice_sample` as files.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the form; `read_form` reads it
pub struct ProfileForm {
    #[schema(pattern = "\\S")]
    name: String,
    /// The face in the portrait: `x,y,w,h`, four whole numbers.
    #[schema(pattern = "^ *[0-9]+ *, *[0-9]+ *, *[0-9]+ *, *[0-9]+ *$")]
    face_box: Option<String>,
    voice: Option<String>,
    speaker: Option<String>,
    length_scale: Option<f32>,
    noise_scale: Option<f32>,
    noise_w: Option<f32>,
    prompt_prefix: Option<String>,
    negative_prompt: Option<String>,
    preset: Option<String>,
    image_model: Option<String>,
    lipsync_model: Option<String>,
    upscale_model: Option<String>,
    /// The presenter's picture.
    #[schema(value_type = Option<String>, format = Binary)]
    portrait: Option<Vec<u8>>,
    /// A recording of the voice.
    #[schema(value_type = Option<String>, format = Binary)]
    voice_sample: Option<Vec<u8>>,
}

/// What a profile route's `{id}` takes, for the document.
const PROFILE_REF: &str = "the profile's id, or its name (`reelbox profiles show NAME`)";

/// List profiles.
#[utoipa::path(get, path = "/api/v1/profiles", operation_id = "list_profiles", responses((status = 200, body = Vec<ProfileView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<ProfileView>>, ApiError> {
    let profiles = state.store.profiles(caller.owner_filter().as_deref())?;
    Ok(Json(profiles.iter().map(ProfileView::from).collect()))
}

/// One profile.
#[utoipa::path(get, path = "/api/v1/profiles/{id}", operation_id = "show_profile", params(("id" = String, Path, description = PROFILE_REF)), responses((status = 200, body = ProfileView), (status = 404, body = super::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProfileView>, ApiError> {
    Ok(Json(ProfileView::from(&visible_profile(&state, &caller, &id)?)))
}

/// Delete a profile with its portrait and voice sample (unless a job or another profile
/// uses them), freeing their bytes from the owner's storage quota.
#[utoipa::path(delete, path = "/api/v1/profiles/{id}", params(("id" = String, Path, description = PROFILE_REF)), responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = visible_profile(&state, &caller, &id)?;
    state.store.delete_profile(p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a profile's fields. A new name the owner already uses for another profile is
/// refused (409 `name_taken` naming `name` and that profile's id).
#[utoipa::path(patch, path = "/api/v1/profiles/{id}", params(("id" = String, Path, description = PROFILE_REF)), request_body = ProfileRequest,
    responses((status = 200, body = ProfileView), (status = 400, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ProfileRequest>,
) -> Result<Json<ProfileView>, ApiError> {
    let mut p = visible_profile(&state, &caller, &id)?;
    apply(&state, &caller, &mut p, req)?;
    let p = state.store.put_profile(p).await?;
    Ok(Json(ProfileView::from(&p)))
}

/// Create a profile: multipart with text fields plus `portrait` (image) and
/// `voice_sample` (audio) files, or JSON without files. A name the owner already uses is
/// refused (409 `name_taken` naming `name` and the existing profile's id); other owners'
/// names do not count.
#[utoipa::path(post, path = "/api/v1/profiles", operation_id = "create_profile", request_body(description = "JSON, or a form with the same fields as text and `portrait` and `voice_sample` files",
        content((NewProfile = "application/json"), (ProfileForm = "multipart/form-data"))),
    responses((status = 201, body = ProfileView), (status = 400, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, Json<ProfileView>), ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (fields, uploads) = if multipart {
        let form = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_multipart", e.body_text()))?;
        read_form(form, &state.config.limits).await?
    } else {
        let ApiJson(fields) = ApiJson::<ProfileRequest>::from_request(req, &state).await?;
        (fields, Vec::new())
    };
    let name =
        fields.name.clone().filter(|n| !n.trim().is_empty()).ok_or_else(|| ApiError::field("name", "is required"))?;
    let mut profile = Profile {
        id: state.store.new_id(),
        owner: caller.owner.clone(),
        name,
        portrait: None,
        face_box: None,
        voice_sample: None,
        voice: Voice {
            // The box's default voice (the one `models list` tags), else the built-in one.
            model: Catalog::default_model(&state.config, ModelKind::Tts).unwrap_or_else(|| DEFAULT_VOICE.into()),
            speaker: None,
            length_scale: None,
            noise_scale: None,
            noise_w: None,
        },
        style: Style::default(),
        created_at: now_ms(),
    };
    // Validate every upload before storing any, so a bad file leaves nothing behind.
    let mut checked = Vec::new();
    let mut uploaded_portrait = None;
    for up in uploads {
        let media_type = match up.field {
            "portrait" => {
                let header = super::artifacts::checked_image(&state, &up.bytes)
                    .await
                    .map_err(|m| ApiError::field("portrait", m.to_string()))?;
                uploaded_portrait = Some((header.width, header.height));
                header.format.to_mime_type()
            }
            _ => {
                super::artifacts::checked_audio(&state, &up.bytes)
                    .await
                    .map_err(|m| ApiError::field("voice_sample", m.to_string()))?;
                audio_media_type(&up.file_name, &up.bytes)
            }
        };
        checked.push((up, media_type));
    }
    apply(&state, &caller, &mut profile, fields)?;
    // A face box is checked against an uploaded portrait's header before anything is kept.
    if let (Some(b), Some((w, h))) = (profile.face_box, uploaded_portrait) {
        face_box_fits(b, w, h)?;
    }
    // A name the owner already uses is refused before the uploads cost anything.
    state.store.check_profile_name(&profile)?;
    // All new files together against the storage quota first, so a portrait is not kept
    // when the voice sample after it cannot fit (each store still re-checks atomically);
    // a file the key already holds costs nothing.
    let mut total = 0u64;
    for (up, _) in &mut checked {
        if !up.hash(&state, &caller).await? {
            total = total.saturating_add(up.bytes.len() as u64);
        }
    }
    if total > 0 {
        super::artifacts::check_room(&state, &caller, total)?;
    }
    for (up, media_type) in checked {
        let field = up.field;
        let art = up.store(&state, &caller, media_type, "profile").await?.artifact;
        match field {
            "portrait" => profile.portrait = Some(art.id),
            _ => profile.voice_sample = Some(art.id),
        }
    }
    // A portrait named by artifact id (not uploaded here) is read from the store.
    if uploaded_portrait.is_none()
        && let (Some(b), Some(pid)) = (profile.face_box, profile.portrait)
    {
        check_face_box(&state, pid, b)?;
    }
    let profile = state.store.put_profile(profile).await?;
    Ok((StatusCode::CREATED, Json(ProfileView::from(&profile))))
}

/// The caller's profile by id or by name (as renders take it); one it may not see is
/// missing.
fn visible_profile(state: &AppState, caller: &Caller, raw: &str) -> Result<Profile, ApiError> {
    state.jobs.find_profile(&caller.into(), "id", raw)?.ok_or_else(|| ApiError::not_found("profile", raw))
}

fn apply(state: &AppState, caller: &Caller, p: &mut Profile, r: ProfileRequest) -> Result<(), ApiError> {
    if let Some(n) = r.name {
        // Trimmed and composed: "anna " and "anna", or "Müller" from a Mac and typed, look
        // the same in a list and must not be two names.
        let n = crate::text::clean(&n);
        let n = n.trim();
        if n.is_empty() || n.len() > 200 {
            return Err(ApiError::field("name", "must be 1–200 characters"));
        }
        p.name = n.to_string();
    }
    if let Some(v) = r.voice {
        p.voice.model = known_model(state, "voice", ModelKind::Tts, v.trim())?;
    }
    if r.speaker.is_some() {
        p.voice.speaker = r.speaker;
    }
    for (field, value, slot) in [
        ("length_scale", r.length_scale, &mut p.voice.length_scale),
        ("noise_scale", r.noise_scale, &mut p.voice.noise_scale),
        ("noise_w", r.noise_w, &mut p.voice.noise_w),
    ] {
        if let Some(v) = value {
            if !(0.0..=4.0).contains(&v) {
                return Err(ApiError::field(field, "must be between 0 and 4"));
            }
            *slot = Some(v);
        }
    }
    if let Some(s) = r.prompt_prefix {
        p.style.prompt_prefix = s;
    }
    if let Some(s) = r.negative_prompt {
        p.style.negative_prompt = s;
    }
    if let Some(name) = r.preset {
        // Checked now, not when a render from the profile is refused for it ("" clears).
        let name = name.trim();
        p.style.preset = if name.is_empty() {
            None
        } else {
            Presets::check(&state.config.data_dir, Some(name)).map_err(|e| ApiError::field("preset", e.to_string()))?;
            Some(name.to_string())
        };
    }
    if let Some(m) = r.image_model {
        p.style.image_model = picture_model(state, m)?;
    }
    if let Some(m) = r.lipsync_model {
        p.style.lipsync_model = stage_model(state, "lipsync_model", ModelKind::Lipsync, &m)?;
    }
    if let Some(m) = r.upscale_model {
        p.style.upscale_model = stage_model(state, "upscale_model", ModelKind::Upscale, &m)?;
    }
    if let Some(raw) = r.portrait {
        let id = parse_id("portrait", &raw).map_err(|_| ApiError::field("portrait", "must be an artifact id"))?;
        match state.store.artifact(id)? {
            Some(a) if caller.may_see(&a.owner) && a.media_type.starts_with("image/") => p.portrait = Some(id),
            _ => return Err(ApiError::field("portrait", format!("no image artifact {raw}"))),
        }
    }
    if let Some(b) = r.face_box {
        if b[2] == 0 || b[3] == 0 {
            return Err(ApiError::field("face_box", "width and height must be positive"));
        }
        p.face_box = Some(b);
        if let Some(pid) = p.portrait {
            check_face_box(state, pid, b)?;
        }
    }
    Ok(())
}

/// The profile's picture model: `None` for an empty name, else a diffusion model that is
/// installed or that the catalog can pull.
fn picture_model(state: &AppState, name: String) -> Result<Option<String>, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    known_model(state, "image_model", ModelKind::Diffusion, name).map(Some)
}

/// The profile's lip-sync or upscale model (`field`, of `kind`): `None` for an empty name,
/// else one that is installed, as a render running it requires; another is refused naming
/// `field` (a model of another kind, the pull that installs it, or the close names).
fn stage_model(state: &AppState, field: &str, kind: ModelKind, name: &str) -> Result<Option<String>, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    crate::kinds::inputs::require_model_file(field, kind, name, &state.config)?;
    Ok(Some(name.to_string()))
}

/// `name` when it is a model of `kind` that is installed or known to the catalog (pullable:
/// a client may create a profile before pulling its voice); else an error naming `field`
/// with the close names. A render from the profile is refused at submission until it is
/// installed.
fn known_model(state: &AppState, field: &str, kind: ModelKind, name: &str) -> Result<String, ApiError> {
    crate::kinds::inputs::require_kind(field, kind, name, &state.config)?;
    match Availability::of(&state.config, kind, name) {
        refused @ (Availability::Unknown { .. } | Availability::Gone { .. }) => {
            Err(ParamError::unavailable_model(field, kind, name, &refused).into())
        }
        Availability::Installed | Availability::Pullable { .. } => Ok(name.to_string()),
    }
}

fn check_face_box(state: &AppState, portrait: Ulid, b: [u32; 4]) -> Result<(), ApiError> {
    let Some(art) = state.store.artifact(portrait)? else { return Ok(()) };
    // Upright, as the face box is drawn on it (a phone photo's EXIF orientation applied).
    let dims = crate::media::picture::header_at(&state.store.artifacts_dir().join(&art.path)).ok();
    match dims {
        Some(crate::media::picture::Header { width, height, .. }) => face_box_fits(b, width, height),
        None => Ok(()),
    }
}

/// Refuses a face box that does not fit in a `w`×`h` portrait (as it is seen, upright).
fn face_box_fits(b: [u32; 4], w: u32, h: u32) -> Result<(), ApiError> {
    if b[0].saturating_add(b[2]) > w || b[1].saturating_add(b[3]) > h {
        return Err(ApiError::field("face_box", format!("{b:?} does not fit in the {w}×{h} portrait")));
    }
    Ok(())
}

async fn read_form(mut form: Multipart, limits: &LimitsConfig) -> Result<(ProfileRequest, Vec<Upload>), ApiError> {
    let mut text = serde_json::Map::new();
    let mut uploads = Vec::new();
    // A form that breaks off between fields is named by the file last begun (the one that
    // ran past the limit), else the portrait.
    let mut last_file = "portrait";
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(form_error(last_file, limits, e)),
        };
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "portrait" | "voice_sample" => {
                let file_name = field.file_name().unwrap_or_default().to_string();
                let field_name = if name == "portrait" { "portrait" } else { "voice_sample" };
                last_file = field_name;
                let bytes = file_bytes(field, field_name, limits).await?;
                uploads.push(Upload { field: field_name, file_name, bytes, sha256: None });
            }
            _ => {
                let value = field.text().await.map_err(|e| form_error(&name, limits, e))?;
                let json = match name.as_str() {
                    "face_box" => serde_json::json!(
                        super::views::parse_face_box(&value).map_err(|e| ApiError::field("face_box", e.to_string()))?
                    ),
                    "length_scale" | "noise_scale" | "noise_w" => {
                        serde_json::json!(
                            value
                                .trim()
                                .parse::<f32>()
                                .map_err(|_| ApiError::field(name.clone(), "must be a number"))?
                        )
                    }
                    _ => serde_json::Value::String(value),
                };
                text.insert(name, json);
            }
        }
    }
    let fields: ProfileRequest = serde_json::from_value(serde_json::Value::Object(text)).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_owned);
        ApiError { field, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_param", e.to_string()) }
    })?;
    Ok((fields, uploads))
}
