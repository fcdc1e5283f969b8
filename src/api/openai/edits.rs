//! `POST /v1/images/edits` (the SDKs' `images.edit`): the picture sent is redrawn after the
//! prompt as an image-to-image `image` job — the whole picture, as ComfyUI's img2img does,
//! or with a `mask` (a PNG of the picture's size, transparent where to redraw) only that
//! part of it, the `image` kind's inpainting. `strength` (an extension, 0–1, default the
//! image kind's 0.75) says how far the picture may change.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::image_output::Answer;
use super::images::{ImageRequest, image_params, respond};
use super::{OpenAiCaller, OpenAiError, parse_body};
use crate::api::artifacts::checked_image;
use crate::api::comfy::files::store_picture;
use crate::api::upload_form::{file_bytes, form_error, not_a_form};
use crate::api::{ApiError, AppState};
use crate::media::picture::Header;

/// Form fields sent as text that the request reads as numbers or a flag.
const NUMBERS: [&str; 5] = ["n", "output_compression", "partial_images", "seed", "steps"];

/// A form's text field as the JSON value the request reads (a number that does not parse
/// stays text, so the refusal names the field).
fn typed(name: &str, text: String) -> Value {
    if NUMBERS.contains(&name) {
        return text.trim().parse::<u64>().map(Value::from).unwrap_or(Value::String(text));
    }
    match (name, text.as_str()) {
        ("stream", "true") => Value::Bool(true),
        ("stream", "false") => Value::Bool(false),
        _ => Value::String(text),
    }
}

/// The picture's size for the job when the request gives none: its own as it is seen (a
/// phone photo's EXIF orientation applied), scaled down to fit `limits.max_image_side`, each
/// side rounded down to a multiple of 8 (A1111's img2img takes it too).
pub fn own_size(header: &Header, max_side: u32) -> Option<(u32, u32)> {
    // A phone photo (4032×3024) is larger than pictures are made: its shape, scaled to fit.
    let scale = (f64::from(max_side) / f64::from(header.width.max(header.height))).min(1.0);
    let fit = |side: u32| ((f64::from(side) * scale) as u32) / 8 * 8;
    let (w, h) = (fit(header.width), fit(header.height));
    (w >= 64 && h >= 64).then_some((w, h))
}

/// The edit form, as the document shows it: the picture beside the generation request's
/// fields, each a text part (`typed` reads the numbers and `stream` back).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // only describes the form
pub struct EditForm {
    /// The picture to redraw (one).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// A PNG the size of `image` whose transparent pixels say where to redraw (one without
    /// transparency: its white); the rest comes back as it was sent.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    /// How far the picture may change, 0–1 (default 0.75).
    #[schema(minimum = 0.0, maximum = 1.0)]
    strength: Option<f64>,
    #[serde(flatten)]
    request: ImageRequest,
}

/// Redraw a picture after a prompt, or the part a mask says (OpenAI-compatible
/// `images.edit`, image-to-image and inpainting).
#[utoipa::path(post, path = "/v1/images/edits", tag = "openai",
    request_body(content_type = "multipart/form-data", content = EditForm),
    responses((status = 200, description = "the pictures; with `stream: true` server-sent events",
            content((super::images::ImagesResponse = "application/json"), (crate::api::openapi::ServerSentEvent = "text/event-stream"))),
        (status = 400, body = super::error::OpenAiErrorBody),
        (status = 404, description = "`model_not_found`: no such diffusion model or preset", body = super::error::OpenAiErrorBody),
        (status = 413, body = super::error::OpenAiErrorBody, description = "`upload_too_large`: the picture is past `limits.max_upload_bytes`")))]
pub async fn edits(
    State(state): State<AppState>,
    caller: OpenAiCaller,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, OpenAiError> {
    let caller = caller.0?;
    let bad_form =
        |e: String| OpenAiError::param("image", format!("send a multipart form with the picture as image: {e}"));
    let mut form = form.map_err(|r| OpenAiError::from(not_a_form("image", &r)))?;
    let limits = &state.config.limits;
    // Past the limit, the native refusal (413 `upload_too_large`) in OpenAI's shape.
    let broke_off = |e: MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => OpenAiError::from(form_error("image", limits, e)),
        _ => bad_form(e.body_text()),
    };
    let mut fields = Map::new();
    let mut pictures = Vec::new();
    let mut masks = Vec::new();
    let mut strength = None;
    while let Some(field) = form.next_field().await.map_err(broke_off)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" | "image[]" => {
                let file = field.file_name().unwrap_or("image.png").to_string();
                pictures.push((file, file_bytes(field, "image", limits).await?));
            }
            "mask" => {
                let file = field.file_name().unwrap_or("mask.png").to_string();
                masks.push((file, file_bytes(field, "mask", limits).await?));
            }
            _ => {
                let text = field.text().await.map_err(|e| OpenAiError::param(&name, e.body_text()))?;
                if name == "strength" {
                    let s = text.trim().parse::<f64>();
                    strength = Some(s.map_err(|_| OpenAiError::param("strength", "strength must be a number 0–1"))?);
                } else {
                    fields.insert(name.clone(), typed(&name, text));
                }
            }
        }
    }
    let (file, bytes) = match pictures.len() {
        1 => pictures.remove(0),
        0 => return Err(OpenAiError::param("image", "send the picture to edit as the multipart field image")),
        n => return Err(OpenAiError::param("image", format!("reelbox edits one picture at a time; got {n}"))),
    };
    // Read once; a picture it refuses is refused after the other fields, as it always was.
    let checked = checked_image(&state, &bytes).await.map_err(|e| ApiError::field("image", e.to_string()));
    if !fields.contains_key("size")
        && let Ok(header) = &checked
        && let Some((w, h)) = own_size(header, state.config.limits.max_image_side)
    {
        fields.insert("size".into(), Value::String(format!("{w}x{h}")));
    }
    let body = serde_json::to_vec(&fields).map_err(|e| OpenAiError::internal(e.to_string()))?;
    let req: ImageRequest = parse_body(&body)?;
    let answer = Answer::of(&req)?.for_edit();
    let mut params = image_params(&state.config, &req)?;
    let checked = checked?;
    let mask = match masks.len() {
        0 => None,
        1 => {
            let (name, mask) = masks.remove(0);
            let header = checked_mask(&state, &mask, &checked).await?;
            Some((name, mask, header))
        }
        n => return Err(OpenAiError::param("mask", format!("send one mask; got {n}"))),
    };
    let picture = store_picture(&state, &caller, &file, bytes, &checked).await?;
    if let Some((name, mask, header)) = mask {
        params.mask = Some(store_picture(&state, &caller, &name, mask, &header).await?.id.to_string());
    }
    params.init_image = Some(picture.id.to_string());
    params.strength = strength;
    respond(state, &caller, &headers, params, answer, req.stream).await
}

/// A mask as OpenAI takes one: a PNG of the picture's size (`picture`); its header.
async fn checked_mask(state: &AppState, bytes: &[u8], picture: &Header) -> Result<Header, OpenAiError> {
    let header = checked_image(state, bytes)
        .await
        .map_err(|e| OpenAiError::param("mask", format!("Invalid mask image: {e}")))?;
    if header.format != image::ImageFormat::Png {
        return Err(OpenAiError::param("mask", "Invalid mask image: the mask must be a PNG file"));
    }
    if (header.width, header.height) != (picture.width, picture.height) {
        return Err(OpenAiError::param(
            "mask",
            format!(
                "Invalid mask image: the mask must be the same size as image ({}x{}); got {}x{}",
                picture.width, picture.height, header.width, header.height
            ),
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_json_the_request_reads() {
        assert_eq!(typed("n", "2".into()), Value::from(2));
        assert_eq!(typed("n", "two".into()), Value::from("two"));
        assert_eq!(typed("stream", "true".into()), Value::Bool(true));
        assert_eq!(typed("size", "64x64".into()), Value::from("64x64"));
    }
}
