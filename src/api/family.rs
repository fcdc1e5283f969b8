//! The four families of routes, each refusing in its own clients' error shape: the native
//! API (`/api/v1`, the operations and the studio: `ErrorBody`), OpenAI's (`/v1`: its SDKs
//! read `OpenAiErrorBody`), ComfyUI's (`/prompt`, `/ws`… bare or under `/api`: its
//! clients read `ComfyErrorBody`) and AUTOMATIC1111's (`/sdapi/v1`: `A1111ErrorBody`). The layers that answer before a route's handler — the
//! Host/Origin guard (`origin.rs`), authentication and the request rate (`auth.rs`) — hand
//! their refusal to [`Family::refuse`], the one place a native [`ApiError`] becomes another
//! family's body; the OpenAPI document lists those refusals under [`Family::error_schema`]
//! (`openapi/refusals.rs`).

use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::a1111::A1111Error;
use super::comfy::error::ComfyError;
use super::openai::OpenAiError;

/// Which family of routes a request or an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Native,
    OpenAi,
    Comfy,
    A1111,
}

impl Family {
    /// The family of the route a request for `path` reaches (an unknown path is native's:
    /// its 404 is).
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/") {
            Self::OpenAi
        } else if super::comfy::serves(path) {
            Self::Comfy
        } else if super::a1111::serves(path) {
            Self::A1111
        } else {
            Self::Native
        }
    }

    /// The family of an OpenAPI operation, by its first tag (`openai`, `comfyui`, `a1111`).
    pub fn of_tag(tag: Option<&str>) -> Self {
        match tag {
            Some("openai") => Self::OpenAi,
            Some("comfyui") => Self::Comfy,
            Some("a1111") => Self::A1111,
            _ => Self::Native,
        }
    }

    /// Refusal `e` in this family's shape, its status and `Retry-After` kept.
    pub fn refuse(self, e: ApiError) -> Response {
        match self {
            Self::Native => e.into_response(),
            Self::OpenAi => OpenAiError::from(e).into_response(),
            Self::Comfy => ComfyError::from(e).into_response(),
            Self::A1111 => A1111Error::from(e).into_response(),
        }
    }

    /// The OpenAPI schema of this family's refusals.
    pub fn error_schema(self) -> &'static str {
        match self {
            Self::Native => "ErrorBody",
            Self::OpenAi => "OpenAiErrorBody",
            Self::Comfy => "ComfyErrorBody",
            Self::A1111 => "A1111ErrorBody",
        }
    }
}
