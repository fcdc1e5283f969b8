//! The AUTOMATIC1111-compatible subset under `/sdapi/v1`, what Open WebUI's "Automatic1111"
//! engine, SillyTavern, the Krita and Photoshop plugins and many scripts speak: txt2img and
//! img2img (inpainting included) as ordinary `image` jobs (same queue, owner, artifacts and
//! quotas as the native API), waited for on the request, plus the models, samplers and the
//! one setting those clients read and change. Authentication is the daemon's keys (A1111's
//! `--api-auth` Basic credentials carry a key as their password, `api::auth`); refusals come
//! in A1111's shape (`error.rs`).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use utoipa::OpenApi;

use super::AppState;
use super::upload_form::{body_limit, close_after_too_large};

pub mod embeddings;
pub mod error;
pub mod extras;
pub mod generate;
pub mod info;
pub mod infotext;
pub mod params;
pub mod pictures;
pub mod request;
pub mod sampler;

pub use error::A1111Error;

/// The prefix every route of this API is under.
pub const PREFIX: &str = "/sdapi/";

/// Whether a request for `path` is this API's (for the layers that refuse before routing,
/// `api::family`).
pub fn serves(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// The `/sdapi/v1` routes.
pub fn routes(state: &AppState) -> Router<AppState> {
    let limits = &state.config.limits;
    // An img2img body carries its picture and mask as base64: 4 characters for 3 bytes.
    let pictures = body_limit(limits, 3);
    Router::new()
        .route("/sdapi/v1/txt2img", post(generate::txt2img))
        .route(
            "/sdapi/v1/img2img",
            post(generate::img2img)
                .layer(DefaultBodyLimit::max(pictures))
                .layer(axum::middleware::map_response(close_after_too_large)),
        )
        .route(
            "/sdapi/v1/extra-single-image",
            post(extras::extra_single_image)
                .layer(DefaultBodyLimit::max(pictures))
                .layer(axum::middleware::map_response(close_after_too_large)),
        )
        .route(
            "/sdapi/v1/png-info",
            post(extras::png_info)
                .layer(DefaultBodyLimit::max(pictures))
                .layer(axum::middleware::map_response(close_after_too_large)),
        )
        .route("/sdapi/v1/sd-models", get(info::sd_models))
        .route("/sdapi/v1/options", get(info::get_options).post(info::set_options))
        .route("/sdapi/v1/samplers", get(info::samplers))
        .route("/sdapi/v1/schedulers", get(info::schedulers))
        .route("/sdapi/v1/upscalers", get(info::upscalers))
        .route("/sdapi/v1/latent-upscale-modes", get(info::latent_upscale_modes))
        .route("/sdapi/v1/progress", get(info::progress))
        .route("/sdapi/v1/interrupt", post(info::interrupt))
        .route("/sdapi/v1/cmd-flags", get(info::cmd_flags))
        .route("/sdapi/v1/loras", get(info::loras))
        .route("/sdapi/v1/embeddings", get(embeddings::embeddings))
        .route("/sdapi/v1/refresh-embeddings", post(embeddings::refresh_embeddings))
        .route("/sdapi/v1/sd-vae", get(info::sd_vae))
        .route("/sdapi/v1/sd-modules", get(info::sd_modules))
        .route("/sdapi/{*rest}", axum::routing::any(not_served))
        // Before the native fallback is set on the merged router, which keeps this one.
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
}

/// Any other path under `/sdapi`, in A1111's shape, naming the served ones.
async fn not_served(uri: axum::http::Uri) -> A1111Error {
    let doc = A1111Doc::openapi();
    let served: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
    A1111Error::new(
        StatusCode::NOT_FOUND,
        format!("reelbox does not serve {}; its A1111 API is {}", uri.path(), served.join(", ")),
    )
}

/// 405 on an `/sdapi` route, in A1111's shape.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> A1111Error {
    A1111Error::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}; see /openapi.json", uri.path()))
}

/// The OpenAPI description of these routes, merged into `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(
        generate::txt2img,
        generate::img2img,
        extras::extra_single_image,
        extras::png_info,
        info::sd_models,
        embeddings::embeddings,
        embeddings::refresh_embeddings,
        info::get_options,
        info::set_options,
        info::samplers,
        info::schedulers,
        info::upscalers,
        info::latent_upscale_modes,
        info::progress,
        info::interrupt,
        info::cmd_flags,
        info::loras,
        info::sd_vae,
        info::sd_modules,
    ),
    components(schemas(
        error::A1111ErrorBody,
        request::Generation,
        request::Txt2Img,
        request::Img2Img,
        request::ImageResponse,
        extras::ExtrasSingle,
        extras::ExtrasAnswer,
        extras::PngInfoRequest,
        extras::PngInfo,
        info::SdModel,
        info::SdVae,
        embeddings::Embeddings,
        embeddings::EmbeddingItem,
        info::Upscaler,
        info::LatentMode,
        info::Progress,
        sampler::SamplerItem,
        sampler::ScheduleItem,
    ))
)]
pub struct A1111Doc;

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn a1111_paths_are_told_from_the_others() {
        assert!(serves("/sdapi/v1/txt2img") && serves("/sdapi/v2/anything"));
        assert!(!serves("/api/v1/jobs") && !serves("/v1/models") && !serves("/sdapi"));
    }
}
