//! The OpenAPI document of every route, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::keys::BearerAuth;

mod refusals;
use super::{
    artifacts, cluster, error, events, gc, images, jobs, keys, media, metrics, model_rm, models, presets, profiles,
    renders, samplers, speech, system, telemetry, views, web,
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
        renders::plan,
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
        model_rm::remove,
        presets::list,
        samplers::list,
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
        images::Refine,
        renders::RenderBody,
        renders::PresenterBody,
        renders::RenderPlanView,
        renders::ScenePlanView,
        media::LipsyncRequest,
        media::UpscaleRequest,
        models::ModelView,
        models::LoraView,
        models::ModelList,
        models::PullRequest,
        models::ImportBody,
        model_rm::ModelRemoved,
        model_rm::ProfileNaming,
        presets::PresetView,
        presets::PresetList,
        samplers::SamplerChoiceView,
        samplers::SamplerList,
        keys::CreateKeyRequest,
        keys::KeyView,
        keys::RevokedKeyView,
        web::session::LoginRequest,
        web::session::BrowserSession,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object, description = "OpenAPI 3.1 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(full())
}

/// The native API's document with the compatibility layers' routes merged in.
pub fn full() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::openai::OpenAiDoc::openapi());
    doc.merge(super::comfy::ComfyDoc::openapi());
    doc.merge(super::a1111::A1111Doc::openapi());
    describe_params(&mut doc);
    optional_bodies(&mut doc);
    refusals::describe(&mut doc);
    doc
}

/// The operations of `doc`, each once.
fn operations(doc: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// An optional body (`request_body = Option<T>`) is `T` or nothing: the routes read no body
/// as `T`'s defaults (`ApiJsonOrDefault`, ComfyUI's `parse_or_default`) and refuse a JSON
/// `null`, so the schema utoipa writes for it, `T` or `null`, becomes `T` alone, not required.
fn optional_bodies(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Required, Schema};
    for op in operations(doc) {
        let Some(body) = op.request_body.as_mut() else { continue };
        for content in body.content.values_mut() {
            let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else { continue };
            let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == utoipa::openapi::schema::Type::Null.into());
            let mut others = one_of.items.iter().filter(|s| !is_null(s));
            if let (Some(only), None, true) = (others.next(), others.next(), one_of.items.iter().any(is_null)) {
                content.schema = Some(only.clone());
                body.required = Some(Required::False);
            }
        }
    }
}

/// A body of raw bytes (a file) as the document shows it: a `binary` string.
pub struct Bytes;

impl utoipa::PartialSchema for Bytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Bytes {}

/// One server-sent event as the document shows a stream's items: its `event` name and its
/// `data`, a JSON text (what `text/event-stream` answers carry).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only describes the events
pub struct ServerSentEvent {
    event: Option<String>,
    data: String,
    id: Option<String>,
}

/// What a record id in a path looks like: a ULID (26 Crockford base-32 characters, the
/// first at most 7), which is all `jobs::parse_id` accepts.
pub const ULID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

/// What an `Idempotency-Key` takes (`jobs::idempotency_key`): 1–255 visible ASCII characters,
/// not starting or ending with a space (HTTP drops those).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]([ -~]*[!-~])?$";

/// Describes the parameters many routes share in one place rather than on each route's
/// annotation, so generated clients and fuzzers send values the routes accept: an `{id}`
/// path parameter as a ULID (unless its route describes it: profiles and keys are also found
/// by name), as is the jobs list's `cursor` (a job id), every `Idempotency-Key` header as
/// what it takes.
fn describe_params(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    for op in operations(doc) {
        for p in op.parameters.iter_mut().flatten() {
            let schema = match (&p.parameter_in, p.name.as_str()) {
                (ParameterIn::Path, "id") if p.description.is_none() => ObjectBuilder::new()
                    .pattern(Some(ULID_PATTERN))
                    .min_length(Some(26))
                    .max_length(Some(26))
                    .description(Some("a record id (ULID)")),
                (ParameterIn::Query, "cursor") => ObjectBuilder::new()
                    .pattern(Some(ULID_PATTERN))
                    .description(Some("`next_cursor` of the previous page (a job id, ULID)")),
                (ParameterIn::Header, "Idempotency-Key") => ObjectBuilder::new()
                    .pattern(Some(IDEMPOTENCY_KEY_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .description(Some("1–255 visible ASCII characters")),
                _ => continue,
            };
            p.schema = Some(schema.schema_type(Type::String).into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_schema_name_means_two_schemas() {
        // Merging keeps one schema of a name: a ComfyUI `QueueView` once replaced the native
        // one, and the native queue's answers no longer fit the document.
        let mut seen = std::collections::BTreeMap::new();
        for doc in
            [ApiDoc::openapi(), super::super::openai::OpenAiDoc::openapi(), super::super::comfy::ComfyDoc::openapi()]
        {
            for (name, schema) in doc.components.into_iter().flat_map(|c| c.schemas) {
                let json = serde_json::to_value(&schema).expect("json");
                if let Some(other) = seen.insert(name.clone(), json.clone()) {
                    assert_eq!(other, json, "two schemas named {name}");
                }
            }
        }
    }

    #[test]
    fn every_id_in_a_path_is_described_as_a_ulid_or_as_what_its_route_takes() {
        let doc = serde_json::to_value(full()).expect("json");
        let mut ids = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for op in item.as_object().expect("item").values() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "id" && p["in"] == "path" {
                        ids += 1;
                        // Profiles and keys are found by name too: any text, said so.
                        let by_name = path.starts_with("/api/v1/profiles/") || path.starts_with("/api/v1/keys/");
                        if by_name {
                            assert!(p["description"].as_str().is_some_and(|d| d.contains("name")), "{path}: {p}");
                            assert!(p["schema"]["pattern"].is_null(), "{path}: {p}");
                        } else {
                            assert_eq!(p["schema"]["pattern"], ULID_PATTERN, "{path}");
                        }
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
        // The jobs list's filters take the same kinds, and a cursor is a job id.
        let list = doc["paths"]["/api/v1/jobs"]["get"]["parameters"].as_array().expect("list parameters");
        let param = |name: &str| list.iter().find(|p| p["name"] == name).map(|p| p["schema"]["pattern"].clone());
        assert_eq!(param("kind"), Some(serde_json::Value::from(pattern)));
        assert_eq!(param("cursor"), Some(serde_json::Value::from(ULID_PATTERN)));
        let states: Vec<&str> = crate::store::records::JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(param("state"), Some(serde_json::Value::from(format!("^({})$", states.join("|")))));
        // What the routes accept fits the pattern's shape: 26 characters, the first 0-7.
        let id = ulid::Ulid::new().to_string();
        assert_eq!(id.len(), 26);
        assert!(('0'..='7').contains(&id.chars().next().unwrap_or('z')), "{id}");
    }
}
