//! A1111's "Extras" and "PNG Info" tabs as its API serves them: `POST
//! /sdapi/v1/extra-single-image` makes a picture larger (an `upscale` job: the upscaler's model
//! if one is named, then a resize to the size asked, as A1111 resizes the upscaler's output),
//! and `POST /sdapi/v1/png-info` reads the generation parameters a picture carries (reelbox's
//! PNGs carry them as A1111 writes them) into A1111's fields.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::error::{A1111Error, read_body};
use super::infotext::{parsed, with_hires_fields, with_refiner_fields};
use super::pictures::{decoded, init_picture};
use crate::api::ApiError;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::json::ApiBytes;
use crate::api::openai::run::{job_failure, read_artifact, submit};
use crate::api::outputs::last_stage_images;
use crate::pipelines::diffusion::output::parameters_of;
use crate::store::records::JobState;

/// The upscalers that are a resize without a model, by A1111's names, as the native methods.
const RESIZERS: [(&str, &str); 3] = [("None", "lanczos"), ("Lanczos", "lanczos"), ("Nearest", "nearest-exact")];

/// The body of `POST /sdapi/v1/extra-single-image` (other fields A1111 takes, face restoring
/// and a second upscaler, are read and not run).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = A1111ExtrasSingle)]
pub struct ExtrasSingle {
    /// The picture, base64 (a `data:image/…;base64,` prefix allowed).
    pub image: String,
    /// 0: by `upscaling_resize`; 1: to `upscaling_resize_w`×`upscaling_resize_h`.
    pub resize_mode: Option<i64>,
    /// How many times larger (default 2).
    #[schema(exclusive_minimum = 0, maximum = 8)]
    pub upscaling_resize: Option<f64>,
    pub upscaling_resize_w: Option<i64>,
    pub upscaling_resize_h: Option<i64>,
    /// With `resize_mode` 1 and another shape: cut the middle out rather than stretch.
    pub upscaling_crop: Option<bool>,
    /// An installed upscale model's name, or `None`, `Lanczos`, `Nearest` (a resize alone).
    pub upscaler_1: Option<String>,
}

/// The answer of `extra-single-image`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111ExtrasAnswer)]
pub struct ExtrasAnswer {
    pub html_info: String,
    /// The larger picture, base64 PNG.
    pub image: String,
}

/// The body of `POST /sdapi/v1/png-info`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = A1111PngInfoRequest)]
pub struct PngInfoRequest {
    /// The picture, base64.
    pub image: String,
}

/// The answer of `png-info`: the parameters text, the picture's other text (none), and the
/// text read into A1111's fields (`Prompt`, `Negative prompt`, `Steps`, `Size-1`, …); a hires
/// fix's also as txt2img's fields (`enable_hr`, `hr_scale`, `hr_upscaler`, …), as PNG Info's
/// "Send to txt2img" sets them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111PngInfo)]
pub struct PngInfo {
    pub info: String,
    #[schema(value_type = Object)]
    pub items: Map<String, Value>,
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
}

/// Make a picture larger (A1111-compatible Extras).
#[utoipa::path(post, path = "/sdapi/v1/extra-single-image", operation_id = "a1111_extra_single_image", tag = "a1111",
    request_body = ExtrasSingle,
    responses((status = 200, body = ExtrasAnswer),
        (status = 409, description = "the job was canceled", body = super::error::A1111ErrorBody),
        (status = 422, description = "a field reelbox cannot run as sent; the detail names it", body = super::error::A1111ErrorBody),
        (status = 429, body = super::error::A1111ErrorBody)))]
pub async fn extra_single_image(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiBytes, ApiError>,
) -> Result<Json<ExtrasAnswer>, A1111Error> {
    let req: ExtrasSingle = read_body(&body?)?;
    let (picture, header) = init_picture(&state, &caller, "image", &req.image).await?;
    let (width, height, crop) = match req.resize_mode.unwrap_or(0) {
        0 => {
            let by = req.upscaling_resize.unwrap_or(2.0);
            if !(by > 0.0 && by <= 8.0) {
                return Err(A1111Error::field("upscaling_resize", format!("must be more than 0, at most 8, got {by}")));
            }
            let side = |s: u32| (f64::from(s) * by).round() as i64;
            (side(header.width), side(header.height), false)
        }
        1 => match (req.upscaling_resize_w, req.upscaling_resize_h) {
            (Some(w), Some(h)) => (w, h, req.upscaling_crop.unwrap_or(true)),
            _ => return Err(A1111Error::field("upscaling_resize_w", "resize_mode 1 needs upscaling_resize_w and _h")),
        },
        other => return Err(A1111Error::field("resize_mode", format!("must be 0 or 1, got {other}"))),
    };
    let upscaler = req.upscaler_1.as_deref().map(str::trim).filter(|u| !u.is_empty()).unwrap_or("None");
    let (model, method) = match RESIZERS.iter().find(|(name, _)| name.eq_ignore_ascii_case(upscaler)) {
        Some((_, method)) => (None, *method),
        None => (Some(upscaler), "lanczos"),
    };
    let mut resize = json!({"method": method, "width": width, "height": height});
    if crop {
        resize["crop"] = json!("center");
    }
    let params = json!({"input": picture.id.to_string(), "model": model, "resize": resize});
    let waiting = submit(&state, &caller, "upscale", params, false).await.map_err(|e| A1111Error {
        retry_after: e.retry_after,
        ..A1111Error::renamed(e.status, e.param.as_deref(), &e.message, request_field)
    })?;
    let job = waiting.finish().await?;
    if !matches!(job.state, JobState::Succeeded { .. }) {
        return Err(job_failure(&job).into());
    }
    let pictures = last_stage_images(&state.store, &job).map_err(|e| A1111Error::internal(e.to_string()))?;
    let first = pictures.first().ok_or_else(|| A1111Error::internal(format!("job {} made no picture", job.id)))?;
    let bytes = read_artifact(&state, first).await?;
    Ok(Json(ExtrasAnswer { html_info: String::new(), image: base64::engine::general_purpose::STANDARD.encode(&bytes) }))
}

/// The field of this request an `upscale` job's refusal names.
fn request_field(native: &str) -> String {
    match native {
        "model" => "upscaler_1",
        "input" => "image",
        f if f.starts_with("resize") => "upscaling_resize",
        other => other,
    }
    .to_string()
}

/// Read the generation parameters a picture carries (A1111-compatible PNG Info).
#[utoipa::path(post, path = "/sdapi/v1/png-info", operation_id = "a1111_png_info", tag = "a1111",
    request_body = PngInfoRequest,
    responses((status = 200, body = PngInfo),
        (status = 422, description = "not base64, or too large; the detail names `image`", body = super::error::A1111ErrorBody)))]
pub async fn png_info(
    State(state): State<AppState>,
    body: Result<ApiBytes, ApiError>,
) -> Result<Json<PngInfo>, A1111Error> {
    let req: PngInfoRequest = read_body(&body?)?;
    let bytes = decoded(&state, "image", &req.image)?;
    let info = parameters_of(&bytes).unwrap_or_default();
    let parameters = if info.is_empty() { Map::new() } else { with_refiner_fields(with_hires_fields(parsed(&info))) };
    Ok(Json(PngInfo { info, items: Map::new(), parameters }))
}
