//! The OpenAPI document of every route, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::keys::BearerAuth;
use super::{
    artifacts, cluster, error, events, gc, images, jobs, keys, media, metrics, models, presets, profiles, renders,
    speech, system, telemetry, views, web,
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
        models::import,
        presets::list,
        system::system,
        cluster::status,
        keys::create,
        keys::list,
        keys::revoke,
        system::healthz,
        system::readyz,
        telemetry::stream,
        metrics::metrics,
        web::session::login,
        web::session::show,
        web::session::logout,
        document,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        jobs::SubmitRequest,
        jobs::PatchRequest,
        jobs::CancelRequest,
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
        cluster::ClusterView,
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
        images::Resize,
        renders::RenderBody,
        renders::PresenterBody,
        media::LipsyncRequest,
        media::UpscaleRequest,
        models::ModelView,
        models::ModelList,
        models::PullRequest,
        models::ImportBody,
        presets::PresetView,
        presets::PresetList,
        keys::CreateKeyRequest,
        keys::KeyView,
        keys::RevokedKeyView,
        web::session::LoginRequest,
        web::session::BrowserSession,
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
    describe_ids(&mut doc);
    doc
}

/// What a record id in a path looks like: a ULID (26 Crockford base-32 characters, the
/// first at most 7), which is all `jobs::parse_id` accepts.
pub const ULID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

/// Gives every `{id}` path parameter the ULID pattern, in one place rather than on each
/// route's annotation, so generated clients and fuzzers send ids the routes accept.
fn describe_ids(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "id" && p.parameter_in == ParameterIn::Path {
                    let schema = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(ULID_PATTERN))
                        .min_length(Some(26))
                        .max_length(Some(26))
                        .description(Some("a record id (ULID)"));
                    p.schema = Some(schema.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_in_a_path_is_described_as_a_ulid() {
        let doc = serde_json::to_value(full()).expect("json");
        let mut ids = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for op in item.as_object().expect("item").values() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "id" && p["in"] == "path" {
                        ids += 1;
                        assert_eq!(p["schema"]["pattern"], ULID_PATTERN, "{path}");
                    }
                }
            }
        }
        assert!(ids >= 10, "only {ids} id parameters found");
        // The job kinds the document names are exactly the ones this build knows.
        let pattern = doc["components"]["schemas"]["SubmitRequest"]["properties"]["kind"]["pattern"].as_str();
        let mut listed: Vec<&str> = pattern
            .and_then(|p| p.strip_prefix("^(")?.strip_suffix(")$"))
            .map(|p| p.split('|').collect())
            .unwrap_or_default();
        let mut known: Vec<&str> = crate::kinds::registry().iter().map(|k| k.name()).collect();
        listed.sort_unstable();
        known.sort_unstable();
        assert_eq!(listed, known);
        // What the routes accept fits the pattern's shape: 26 characters, the first 0-7.
        let id = ulid::Ulid::new().to_string();
        assert_eq!(id.len(), 26);
        assert!(('0'..='7').contains(&id.chars().next().unwrap_or('z')), "{id}");
    }
}
