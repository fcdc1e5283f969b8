//! The OpenAPI document of every route, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::keys::BearerAuth;
use super::{artifacts, error, events, jobs, keys, ops_metrics, profiles, system, views};

/// The API description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "reelbox", description = "A private AI film studio for a home GPU box."),
    modifiers(&BearerAuth),
    paths(
        jobs::submit,
        jobs::list,
        jobs::show,
        jobs::cancel,
        jobs::retry,
        jobs::patch,
        jobs::pause,
        jobs::resume,
        events::job_events,
        events::all_events,
        artifacts::of_job,
        artifacts::meta,
        artifacts::download,
        profiles::list,
        profiles::create,
        profiles::show,
        profiles::update,
        profiles::remove,
        system::system,
        keys::create,
        keys::list,
        keys::revoke,
        system::healthz,
        ops_metrics::serve,
        system::readyz,
        document,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        jobs::SubmitRequest,
        jobs::PatchRequest,
        jobs::JobPage,
        jobs::QueueState,
        views::JobView,
        views::ProgressView,
        views::StageView,
        views::ArtifactView,
        views::ProfileView,
        views::VoiceView,
        views::StyleView,
        profiles::ProfileRequest,
        system::SystemView,
        system::DeviceView,
        system::QueueView,
        keys::CreateKeyRequest,
        keys::KeyView,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
