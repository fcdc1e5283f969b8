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
    let parameters = if info.is_empty() { Map::new() } else { with_hires_fields(parsed(&info)) };
    Ok(Json(PngInfo { info, items: Map::new(), parameters }))
}

/// A parameters text read as A1111's `parse_generation_parameters` reads it: the prompt's
/// lines, the `Negative prompt:` ones, and the last line's `Key: value` pairs (a quoted value
/// unquoted, a `W x H` size as `Key-1` and `Key-2`), every value a string.
pub fn parsed(text: &str) -> Map<String, Value> {
    let mut lines: Vec<&str> = text.trim().lines().collect();
    let last = lines.pop().unwrap_or_default();
    let pairs = pairs(last);
    if pairs.len() < 3 {
        lines.push(last);
    }
    let (mut prompt, mut negative, mut in_negative) = (Vec::new(), Vec::new(), false);
    for line in lines {
        let line = line.trim();
        match line.strip_prefix("Negative prompt:") {
            Some(rest) => {
                in_negative = true;
                negative.push(rest.trim());
            }
            None if in_negative => negative.push(line),
            None => prompt.push(line),
        }
    }
    let mut out = Map::new();
    out.insert("Prompt".into(), json!(prompt.join("\n")));
    out.insert("Negative prompt".into(), json!(negative.join("\n")));
    for (key, value) in pairs {
        match value.split_once('x').map(|(w, h)| (w.trim(), h.trim())) {
            Some((w, h)) if !w.is_empty() && w.chars().chain(h.chars()).all(|c| c.is_ascii_digit()) => {
                out.insert(format!("{key}-1"), json!(w));
                out.insert(format!("{key}-2"), json!(h));
            }
            _ => {
                out.insert(key, json!(value));
            }
        }
    }
    out
}

/// `parameters` with its hires keys also as txt2img's fields, when it has a hires fix: as A1111's
/// PNG Info sets them, "Denoising strength" and "Hires upscale", "Hires resize" or "Hires
/// upscaler"; its sampler and schedule "Use same …" unless the second pass had its own.
fn with_hires_fields(mut parameters: Map<String, Value>) -> Map<String, Value> {
    let text = |key: &str| parameters.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| text(key).and_then(|v| v.parse::<f64>().ok()).map(Value::from);
    let whole = |key: &str| text(key).and_then(|v| v.parse::<i64>().ok());
    let resized = parameters.contains_key("Hires resize-1");
    let hires = ["Hires upscale", "Hires upscaler"].iter().any(|k| parameters.contains_key(*k)) || resized;
    if !(hires && parameters.contains_key("Denoising strength")) {
        return parameters;
    }
    let fields = [
        ("enable_hr", Some(json!(true))),
        ("denoising_strength", number("Denoising strength")),
        ("hr_scale", number("Hires upscale").or(Some(json!(2.0)))),
        ("hr_resize_x", Some(json!(whole("Hires resize-1").unwrap_or(0)))),
        ("hr_resize_y", Some(json!(whole("Hires resize-2").unwrap_or(0)))),
        ("hr_upscaler", text("Hires upscaler").map(Value::from)),
        ("hr_second_pass_steps", Some(json!(whole("Hires steps").unwrap_or(0)))),
        ("hr_sampler_name", Some(json!(text("Hires sampler").unwrap_or_else(|| "Use same sampler".into())))),
        ("hr_scheduler", Some(json!(text("Hires schedule type").unwrap_or_else(|| "Use same scheduler".into())))),
        ("hr_prompt", Some(json!(text("Hires prompt").unwrap_or_default()))),
        ("hr_negative_prompt", Some(json!(text("Hires negative prompt").unwrap_or_default()))),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            parameters.insert(field.to_string(), value);
        }
    }
    parameters
}

/// The `Key: value` pairs of a parameters text's last line; a value in JSON's quotes may hold
/// commas, colons and escaped quotes (A1111's `quote`).
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match closing_quote(quoted) {
                Some(end) => {
                    let value = serde_json::from_str(&after[..end + 2]).unwrap_or_else(|_| quoted[..end].to_string());
                    (value, quoted[end + 1..].trim_start_matches(','))
                }
                None => (quoted.to_string(), ""),
            },
            None => match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            },
        };
        if key.is_empty() || !key.chars().next().is_some_and(char::is_alphanumeric) {
            break;
        }
        out.push((key.to_string(), value));
        rest = next.trim();
    }
    out
}

/// Where the quote that ends a quoted value is in `text` (after its opening one): the first not
/// escaped by a backslash.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{parsed, with_hires_fields};
    use serde_json::json;

    #[test]
    fn a_parameters_text_reads_into_a1111s_fields() {
        let text = "a red door\non a hill\nNegative prompt: blur\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, \
                    CFG scale: 6.5, Seed: 1234, Size: 96x64, Model: \"tiny, sd\", RNG: CPU, Version: reelbox 0.1.0";
        let p = parsed(text);
        assert_eq!(p["Prompt"], json!("a red door\non a hill"));
        assert_eq!(p["Negative prompt"], json!("blur"));
        assert_eq!(
            (&p["Steps"], &p["Sampler"], &p["Schedule type"]),
            (&json!("20"), &json!("DPM++ 2M"), &json!("Karras"))
        );
        assert_eq!((&p["Size-1"], &p["Size-2"], &p["Seed"]), (&json!("96"), &json!("64"), &json!("1234")));
        assert_eq!(p["Model"], json!("tiny, sd"), "a quoted value keeps its comma");
        assert_eq!(p["Version"], json!("reelbox 0.1.0"));
        // A quoted value is JSON's: its escaped quotes are the value's.
        let p = parsed("a\nSteps: 2, Sampler: Euler, Hires prompt: \"a \\\"red\\\", door\", Hires upscale: 2");
        assert_eq!((&p["Hires prompt"], &p["Hires upscale"]), (&json!("a \"red\", door"), &json!("2")));
        // A hires fix's keys also read as txt2img's fields.
        let p = with_hires_fields(parsed(
            "a\nSteps: 4, Sampler: Euler, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 64x64, Model: m, \
             Denoising strength: 0.6, Hires sampler: DDIM, Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Latent",
        ));
        let fields = ["enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength"];
        let got: Vec<_> = fields.iter().map(|f| p[*f].clone()).collect();
        assert_eq!(got, [json!(true), json!(1.5), json!("Latent"), json!(3), json!(0.6)]);
        assert_eq!((&p["hr_sampler_name"], &p["hr_scheduler"]), (&json!("DDIM"), &json!("Use same scheduler")));
        assert!(with_hires_fields(parsed("a\nSteps: 4, Sampler: Euler, Seed: 5")).get("enable_hr").is_none());
        // A text with no settings line is all prompt.
        assert_eq!(parsed("just words")["Prompt"], json!("just words"));
    }
}
