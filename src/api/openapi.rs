//! The OpenAPI document of every route, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::keys::BearerAuth;
use super::{
    artifacts, error, events, gc, images, jobs, keys, media, metrics, models, profiles, renders, speech, system,
    telemetry, views,
};

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
        jobs::delete,
        jobs::pause,
        jobs::resume,
        gc::run,
        events::job_events,
        events::all_events,
        artifacts::of_job,
        artifacts::meta,
        artifacts::download,
        artifacts::upload,
        renders::create,
        profiles::list,
        profiles::create,
        profiles::show,
        profiles::update,
        profiles::remove,
        speech::create,
        images::create,
        media::lipsync,
        media::upscale,
        models::list,
        models::pull,
        system::system,
        keys::create,
        keys::list,
        keys::revoke,
        system::healthz,
        system::readyz,
        telemetry::stream,
        metrics::metrics,
        document,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        jobs::SubmitRequest,
        jobs::PatchRequest,
        jobs::JobPage,
        jobs::QueueState,
        gc::GcRequest,
        gc::GcReport,
        crate::store::Removal,
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
        system::EnergyView,
        telemetry::TelemetryView,
        telemetry::TelemetryHistory,
        crate::gpu::TelemetrySample,
        crate::gpu::HostSample,
        crate::gpu::GpuSample,
        crate::gpu::GpuProcess,
        system::SessionView,
        speech::SpeechRequest,
        images::ImageRequest,
        media::LipsyncRequest,
        media::UpscaleRequest,
        models::ModelView,
        models::ModelList,
        models::PullRequest,
        keys::CreateKeyRequest,
        keys::KeyView,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(full())
}

/// The native API's document with the compatibility layers' routes merged in.
pub fn full() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::openai::OpenAiDoc::openapi());
    doc.merge(super::comfy::ComfyDoc::openapi());
    doc
}
