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

use super::AppState;
use super::upload_form::{body_limit, close_after_too_large};

pub mod chain;
pub mod compile;
pub mod error;
pub mod files;
pub mod hires;
pub mod info;
pub mod literals;
pub mod messages;
pub mod nodes;
pub mod prompts;
pub mod queue;
pub mod roles;
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
    let routes: [(&str, MethodRouter<AppState>); 17] = [
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
    ];
    let mut router = Router::new();
    for (path, method) in routes {
        router = router.route(path, method.clone()).route(&format!("/api{path}"), method);
    }
    router.layer(DefaultBodyLimit::max(limits.max_body_bytes)).layer(Extension(comfy))
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
