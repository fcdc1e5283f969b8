//! The OpenAI-compatible subset under `/v1`: image generation, speech and the model list.
//! Requests become ordinary jobs (same queue, owner and artifacts as the native API); the
//! client waits on its request, and a disconnect cancels the job unless the same request
//! comes again ([`rejoin`]). Errors use OpenAI's
//! shape so the official SDKs raise their usual exceptions.

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::auth::Caller;
use super::upload_form::{body_limit, close_after_too_large};
use super::{ApiError, AppState};
use crate::models::{Catalog, ModelKind};

pub mod edits;
pub mod error;
pub mod image_output;
pub mod images;
pub mod rejoin;
pub mod run;
pub mod speech;
pub mod stream;
pub mod transcode;

pub use error::OpenAiError;

/// Response header naming the job that answered a request (to find it in the native API).
pub const JOB_HEADER: &str = "x-reelbox-job";

/// The `/v1` routes.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/images/generations", post(images::generations))
        .route("/v1/audio/speech", post(speech::speech))
        .route("/v1/models", get(models))
        .route("/v1/models/{model}", get(model))
        .route(
            "/v1/images/edits",
            post(edits::edits)
                .layer(DefaultBodyLimit::max(body_limit(&state.config.limits, 1)))
                .layer(axum::middleware::map_response(close_after_too_large)),
        )
        .route("/v1/images/variations", post(no_variations))
        .route("/v1/{*rest}", axum::routing::any(not_served))
        .route("/images/generations", post(missing_v1))
        .route("/images/edits", post(missing_v1))
        .route("/images/variations", post(missing_v1))
        .route("/audio/speech", post(missing_v1))
        .route("/chat/completions", post(missing_v1))
        // Before the native fallback is set on the merged router, which keeps this one.
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
}

/// 405 on a `/v1` route, in OpenAI's shape (the native one left the SDKs' `type` empty).
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> OpenAiError {
    OpenAiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; see /openapi.json", uri.path()),
    )
}

/// 404 `model_not_found` naming `model`: `name` is not one of `what` (the images' and the
/// speech route's refusal of a model the box does not have, as OpenAI 404s both).
pub fn model_not_found(name: &str, what: &str) -> OpenAiError {
    OpenAiError {
        param: Some("model".into()),
        ..OpenAiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("the model {name:?} is not {what}; see GET /v1/models"),
        )
    }
}

/// `images.create_variation`: not served, said in OpenAI's shape (the SDKs raise
/// `NotFoundError` with this message) with what does the same job on the box.
async fn no_variations() -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        "unsupported_endpoint",
        "reelbox makes no variations without a prompt; images.edit with the picture and a prompt redraws it \
         (image-to-image)",
    )
}

/// Any other path under `/v1`; the message lists the served ones from [`OpenAiDoc`], the
/// routes' own annotations, so a route added there is named here too.
async fn not_served(uri: axum::http::Uri) -> OpenAiError {
    let doc = OpenAiDoc::openapi();
    let served: Vec<&str> = doc.paths.paths.keys().map(String::as_str).filter(|p| !p.contains('{')).collect();
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        "unsupported_endpoint",
        format!("reelbox does not serve {}; its OpenAI API is {}", uri.path(), served.join(", ")),
    )
}

/// The message for an OpenAI client whose `base_url` lacks `/v1`; `base` is the URL it
/// reached the box at (`origin::base_url`).
pub fn missing_v1_error(base: &str) -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        "missing_v1",
        format!("OpenAI clients reach reelbox at base_url {base}/v1 (this request left out /v1)"),
    )
}

/// An OpenAI path without `/v1`: a client whose `base_url` lacks it.
async fn missing_v1(State(state): State<AppState>, headers: axum::http::HeaderMap) -> OpenAiError {
    missing_v1_error(&crate::api::origin::base_url(&headers, &state.config))
}

/// Whether a request comes from an OpenAI SDK (they send `X-Stainless-*` headers), for
/// paths OpenAI and ComfyUI share (`/models`).
pub fn from_openai_sdk(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("x-stainless-lang")
}

/// The OpenAPI description of these routes, merged into `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(images::generations, edits::edits, speech::speech, models, model),
    components(schemas(
        error::OpenAiErrorBody,
        error::OpenAiErrorDetail,
        images::ImageRequest,
        images::ImagesResponse,
        images::ImageData,
        image_output::Usage,
        image_output::TokenDetails,
        speech::SpeechRequest,
        speech::VoiceChoice,
        ModelList,
        ModelObject
    ))
)]
pub struct OpenAiDoc;

/// Parses a JSON body whatever its content type, refused in OpenAI's shape with the native
/// routes' words (`crate::api::json::read_json`).
pub fn parse_body<T: DeserializeOwned + PartialSchema>(body: &[u8]) -> Result<T, OpenAiError> {
    crate::api::json::read_json(body).map_err(|u| OpenAiError {
        param: u.field,
        ..OpenAiError::new(StatusCode::BAD_REQUEST, "invalid_request", u.message)
    })
}

/// OpenAI's list of models.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = OpenAiModelList)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelObject>,
}

/// One model in OpenAI's shape.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds the model was installed.
    pub created: i64,
    pub owned_by: String,
}

/// Installed diffusion models and voices, this box's and (on a head) its live worker
/// boxes', each once; one only a box has says it was installed at 0, unknown here.
fn model_objects(state: &AppState) -> Vec<ModelObject> {
    let listed = |kind| matches!(kind, ModelKind::Diffusion | ModelKind::Tts);
    let object = |id: &str, created| ModelObject {
        id: id.to_string(),
        object: "model".into(),
        created,
        owned_by: "reelbox".into(),
    };
    let catalog = Catalog::load(&state.config);
    let mut objects: Vec<ModelObject> = catalog
        .models()
        .iter()
        .filter(|m| m.dir().is_some() && listed(m.kind()))
        .map(|m| object(m.name(), m.created))
        .collect();
    for m in crate::kinds::box_models::live_models().into_iter().filter(|m| listed(m.kind)) {
        if !objects.iter().any(|o| o.id == m.name) {
            objects.push(object(&m.name, 0));
        }
    }
    objects.sort_by(|a, b| a.id.cmp(&b.id));
    objects
}

/// Installed diffusion models and voices.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList)))]
pub async fn models(State(state): State<AppState>, caller: OpenAiCaller) -> Result<Json<ModelList>, OpenAiError> {
    caller.0?;
    Ok(Json(ModelList { object: "list".into(), data: model_objects(&state) }))
}

/// One installed model.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai", params(("model" = String, Path)),
    responses((status = 200, body = ModelObject), (status = 404, body = error::OpenAiErrorBody)))]
pub async fn model(
    State(state): State<AppState>,
    caller: OpenAiCaller,
    Path(name): Path<String>,
) -> Result<Json<ModelObject>, OpenAiError> {
    caller.0?;
    let objects = model_objects(&state);
    // OpenAI's own names stand for the box's default model or voice, as the routes take them.
    let alias = if images::is_openai_image_model(&name) {
        images::resolve_model(&state.config, Some(&name)).ok().map(|(m, _)| m)
    } else if speech::is_openai_speech_model(&name) {
        crate::kinds::box_models::default_anywhere(&state.config, ModelKind::Tts)
    } else {
        None
    };
    let found = objects.into_iter().find(|m| m.id == name || alias.as_ref() == Some(&m.id));
    found
        .map(|m| Json(ModelObject { id: name.clone(), ..m }))
        .ok_or_else(|| model_not_found(&name, "an installed diffusion model or voice"))
}

/// The caller of an OpenAI route, with a failed authentication kept as a value so the
/// handler can answer it in OpenAI's error shape.
pub struct OpenAiCaller(pub Result<Caller, ApiError>);

impl axum::extract::FromRequestParts<AppState> for OpenAiCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(Self(Ok(c.clone())));
        }
        Ok(Self(super::auth::authenticate(state, parts)))
    }
}
