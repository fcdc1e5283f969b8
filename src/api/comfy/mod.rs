//! The ComfyUI-compatible subset, at ComfyUI's bare paths and under `/api/`: queue a
//! workflow graph (`/prompt`), watch it (`/ws`), read results (`/history`, `/view`),
//! upload inputs, and describe the nodes and models reelbox has.
//!
//! Unlike ComfyUI, the queue and history survive restarts (prompts are `image` jobs in the
//! store, their ComfyUI records are files beside it) and API keys apply.

use axum::Extension;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post};
use utoipa::OpenApi;

use crate::config::LimitsConfig;

use std::sync::LazyLock;

use super::AppState;
use super::upload_form::{body_limit, close_after_too_large};

pub mod answers;
pub mod chain;
pub mod clip_layer;
pub mod compile;
pub mod error;
pub mod files;
pub mod hires;
pub mod info;
pub mod inpaint;
pub mod ksampler;
pub mod literals;
pub mod loaders;
pub mod lora_target;
pub mod loras;
pub mod mask_chain;
pub mod mask_ops;
pub mod masks;
pub mod messages;
pub mod nodes;
pub mod prompts;
pub mod queue;
pub mod roles;
pub mod split;
pub mod uploads;
pub mod validate;
pub mod ws;

/// State the ComfyUI routes share.
#[derive(Clone)]
pub struct Comfy {
    pub prompts: prompts::Prompts,
    pub uploads: uploads::Uploads,
}

/// The ComfyUI routes, each at its bare path and under `/api`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let comfy = Comfy {
        prompts: prompts::Prompts::open(&state.config.data_dir, &state.store),
        uploads: uploads::Uploads::open(&state.config.data_dir),
    };
    let limits = &state.config.limits;
    let mut router = Router::new();
    for (path, method) in table(limits) {
        router = router.route(path, method.clone()).route(&format!("/api{path}"), method);
    }
    router.layer(DefaultBodyLimit::max(limits.max_body_bytes)).layer(Extension(comfy))
}

/// Each route's bare path and its handlers.
fn table(limits: &LimitsConfig) -> [(&'static str, MethodRouter<AppState>); 17] {
    [
        ("/prompt", get(queue::get_prompt).post(queue::post_prompt)),
        ("/queue", get(queue::get_queue).post(queue::post_queue)),
        ("/interrupt", post(queue::interrupt)),
        ("/history", get(queue::history).post(queue::post_history)),
        ("/history/{prompt_id}", get(queue::history_one)),
        ("/view", get(files::view)),
        (
            "/upload/image",
            post(files::upload_image)
                .layer(DefaultBodyLimit::max(body_limit(limits, 1)))
                .layer(axum::middleware::map_response(close_after_too_large)),
        ),
        ("/system_stats", get(info::system_stats)),
        ("/object_info", get(info::object_info)),
        ("/object_info/{node_class}", get(info::object_info_one)),
        ("/models", get(info::model_folders)),
        ("/models/{folder}", get(info::models_in)),
        ("/embeddings", get(info::embeddings)),
        ("/extensions", get(info::extensions)),
        ("/features", get(info::features)),
        ("/free", post(info::free)),
        ("/ws", get(ws::ws)),
    ]
}

/// The bare paths [`table`] mounts, read from it once (so they are written in one place).
static PATHS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| table(&LimitsConfig::default()).into_iter().map(|(path, _)| path).collect());

/// Whether a request for `path` reaches one of these routes (bare or under `/api`), for the
/// layers that refuse before routing in ComfyUI's shape (`api::family`).
pub fn serves(path: &str) -> bool {
    let bare = path.strip_prefix("/api").filter(|p| p.starts_with('/')).unwrap_or(path);
    PATHS.iter().any(|route| {
        let (route, asked) = (route.split('/'), bare.split('/'));
        // A `{name}` segment takes any one segment, as the router matches it.
        route.clone().count() == asked.clone().count()
            && route.zip(asked).all(|(r, a)| r == a || (r.starts_with('{') && !a.is_empty()))
    })
}

/// The OpenAPI description of these routes (bare paths; each is also under `/api`).
#[derive(OpenApi)]
#[openapi(
    components(schemas(
        queue::PromptRequest,
        queue::ClearOrDelete,
        queue::InterruptRequest,
        info::FreeRequest,
        error::ComfyErrorBody,
        error::ComfyErrorDetail
    )),
    paths(
        queue::post_prompt,
        queue::get_prompt,
        queue::get_queue,
        queue::post_queue,
        queue::interrupt,
        queue::history,
        queue::history_one,
        queue::post_history,
        files::view,
        files::upload_image,
        info::system_stats,
        info::object_info,
        info::object_info_one,
        info::model_folders,
        info::models_in,
        info::embeddings,
        info::extensions,
        info::features,
        info::free,
        ws::ws,
    )
)]
pub struct ComfyDoc;

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn comfyuis_paths_are_told_from_the_native_and_openai_ones() {
        for path in
            ["/prompt", "/api/prompt", "/history/abc", "/api/history/abc", "/upload/image", "/api/ws", "/models"]
        {
            assert!(serves(path), "{path}");
        }
        for path in ["/api/v1/jobs", "/api/v1/models", "/v1/models", "/healthz", "/models/a/b", "/history/", "/api"] {
            assert!(!serves(path), "{path}");
        }
    }
}
