//! `POST /v1/images/generations`: an `image` job, waited for, answered in OpenAI's shape.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::image_output::{Answer, ResponseFormat, Usage, b64, describe};
use super::rejoin::is_retry;
use super::run::{Progress, Waiting, job_failure, read_artifact, submit};
use super::stream::{Events, stream};
use super::{JOB_HEADER, OpenAiError, parse_body};
use crate::api::json::ApiBytes;

use crate::api::auth::Caller;
use crate::api::origin::base_url;
use crate::api::outputs::{final_images, is_preview};
use crate::api::{ApiError, AppState};
use crate::config::Config;
use crate::kinds::box_models;
use crate::kinds::image::{self, wire_int};
use crate::models::{Catalog, ModelKind};
use crate::pipelines::diffusion::preset::Presets;
use crate::store::records::{Artifact, Job, JobState};

/// Body of `POST /v1/images/generations` (OpenAI's fields plus reelbox extensions; other
/// OpenAI fields such as `style`, `user`, `moderation` or `safety_identifier` are accepted
/// and ignored).
// Named apart from the native `ImageRequest`: with one name, the OpenAPI document described
// this route with the native body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OpenAiImageRequest)]
pub struct ImageRequest {
    /// What to draw (not blank).
    #[schema(pattern = "\\S")]
    pub prompt: String,
    /// An installed diffusion model, a preset name, or an OpenAI model name (→ the default model).
    pub model: Option<String>,
    /// Pictures to make (1–8; OpenAI allows 10).
    #[schema(minimum = 1, maximum = 8)]
    pub n: Option<u32>,
    /// `WIDTHxHEIGHT` (multiples of 8), or `auto`.
    #[schema(pattern = "^(auto|[0-9]{1,5}[xX][0-9]{1,5})$")]
    pub size: Option<String>,
    /// `url` (default; an absolute `/api/v1/artifacts/ID?expires=&sig=` link that works
    /// without a key for `openai.image_url_lifetime_s`) or `b64_json` (the default for GPT
    /// image model names, as OpenAI answers them).
    #[schema(pattern = "^(url|b64_json)$")]
    pub response_format: Option<String>,
    /// `low` → preset fast, `standard`/`medium` → quality, `hd`/`high`/`xhigh`/`max` → max, `auto`.
    #[schema(pattern = "^(auto|low|standard|medium|hd|high|xhigh|max)$")]
    pub quality: Option<String>,
    /// `png` (default), `jpeg` or `webp` (lossless); other formats need `b64_json`.
    #[schema(pattern = "^(png|jpeg|jpg|webp)$")]
    pub output_format: Option<String>,
    /// JPEG quality 0–100 (default 100).
    #[schema(minimum = 0, maximum = 100)]
    pub output_compression: Option<i64>,
    /// `transparent`, `opaque` or `auto`: accepted; pictures are always opaque (the response says so).
    pub background: Option<String>,
    /// `true`: answer as server-sent events (`image_generation.partial_image` from the step
    /// previews, then one `image_generation.completed` per picture).
    #[serde(default)]
    pub stream: bool,
    /// Step previews to send as partial images when streaming (0–3, default 0).
    #[schema(maximum = 3)]
    pub partial_images: Option<u32>,
    /// Extension: what the picture should not show.
    pub negative_prompt: Option<String>,
    /// Extension: seed for reproducible pictures (at most 2⁵³ − 1).
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    pub seed: Option<u64>,
    /// Extension: denoising steps (1 or more; at most `limits.max_steps`).
    #[schema(minimum = 1)]
    pub steps: Option<u32>,
}

/// OpenAI's image response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: i64,
    pub data: Vec<ImageData>,
    /// `WIDTHxHEIGHT` of the pictures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The quality used: `low`, `medium`, `high`, `xhigh` or `max` (see
    /// `image_output::quality_used`; absent only for a preset of the box's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// `png`, `jpeg` or `webp`.
    pub output_format: String,
    /// Always `opaque`.
    pub background: String,
    /// Token counts, all 0 (reelbox counts no tokens).
    pub usage: Usage,
}

/// One picture, as base64 or a URL.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

/// Names OpenAI gives its image models; they select the configured default model.
pub fn is_openai_image_model(name: &str) -> bool {
    name.starts_with("dall-e") || is_gpt_image_model(name)
}

/// OpenAI's GPT image models (`gpt-image-1`, `gpt-image-2.5-flare`, `chatgpt-image-latest`),
/// which answer base64 unless asked otherwise.
pub fn is_gpt_image_model(name: &str) -> bool {
    name.starts_with("gpt-image") || name.starts_with("chatgpt-image")
}

/// Parses OpenAI's `size` (`1024x1024`); `auto` leaves the size to the preset.
pub fn parse_size(size: &str, max_side: u32) -> Result<Option<(u32, u32)>, OpenAiError> {
    if size == "auto" {
        return Ok(None);
    }
    let bad = |why: &str| OpenAiError::param("size", format!("invalid size {size:?}: {why}"));
    let (w, h) = size.split_once(['x', 'X']).ok_or_else(|| bad("expected WIDTHxHEIGHT, e.g. 512x512"))?;
    let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| bad("width and height must be whole numbers"));
    let (w, h) = (parse(w)?, parse(h)?);
    if w < 64 || h < 64 || w > max_side || h > max_side {
        return Err(bad(&format!("each side must be between 64 and {max_side} pixels")));
    }
    if w % 8 != 0 || h % 8 != 0 {
        return Err(bad("each side must be a multiple of 8"));
    }
    Ok(Some((w, h)))
}

/// OpenAI's `quality` → a reelbox preset (`None` for `auto`).
pub fn quality_preset(quality: &str) -> Result<Option<&'static str>, OpenAiError> {
    match quality {
        "auto" => Ok(None),
        "low" => Ok(Some("fast")),
        "standard" | "medium" => Ok(Some("quality")),
        "hd" | "high" | "xhigh" | "max" => Ok(Some("max")),
        other => Err(OpenAiError::param(
            "quality",
            format!("invalid quality {other:?}; use low, medium, high, xhigh, max, standard, hd or auto"),
        )),
    }
}

/// Names of the generation presets (`<data_dir>/presets.toml` or the built-in ones).
pub fn preset_names(config: &Config) -> Vec<String> {
    let presets = Presets::load(&config.data_dir).unwrap_or_else(|_| Presets::builtin());
    presets.names().into_iter().map(str::to_owned).collect()
}

/// Which installed model (and preset) a request's `model` means.
pub fn resolve_model(config: &Config, requested: Option<&str>) -> Result<(String, Option<String>), OpenAiError> {
    let catalog = Catalog::load(config);
    let default_model = || -> Result<String, OpenAiError> {
        // Passed over when not installed, as `[defaults]` is.
        if let Some(name) = &config.openai.default_image_model
            && (catalog.find(ModelKind::Diffusion, name).is_some() || box_models::has(ModelKind::Diffusion, name))
        {
            return Ok(name.clone());
        }
        // The diffusion default `models list` tags, as the native route uses (on a head,
        // its worker boxes' when it has none).
        let default = catalog.default_name(ModelKind::Diffusion, config);
        default.or_else(|| box_models::default_model(config, ModelKind::Diffusion)).ok_or_else(|| OpenAiError {
            param: Some("model".into()),
            ..OpenAiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                Catalog::no_default(config, ModelKind::Diffusion),
            )
        })
    };
    match requested {
        None | Some("") => Ok((default_model()?, None)),
        Some(name) if is_openai_image_model(name) => Ok((default_model()?, None)),
        Some(name) if preset_names(config).iter().any(|p| p == name) => Ok((default_model()?, Some(name.to_string()))),
        Some(name) => match catalog.find(ModelKind::Diffusion, name) {
            Some(m) => Ok((m.name().to_string(), None)),
            None if box_models::has(ModelKind::Diffusion, name) => Ok((name.to_string(), None)),
            None => {
                // A model of another kind is said as one (400), as the native routes say it.
                catalog
                    .refuse_other_kind(name, ModelKind::Diffusion)
                    .map_err(|e| OpenAiError::param("model", e.to_string()))?;
                Err(super::model_not_found(name, "an installed diffusion model or preset"))
            }
        },
    }
}

/// The `image` job parameters for a request.
pub fn image_params(config: &Config, req: &ImageRequest) -> Result<image::ImageRequest, OpenAiError> {
    if req.prompt.trim().is_empty() {
        return Err(OpenAiError::param("prompt", "prompt must not be empty"));
    }
    let size = req.size.as_deref().map(|s| parse_size(s, config.limits.max_image_side)).transpose()?.flatten();
    let (model, mut preset) = resolve_model(config, req.model.as_deref())?;
    if let Some(q) = req.quality.as_deref()
        && let Some(p) = quality_preset(q)?
    {
        preset = Some(p.to_string());
    }
    // The same error the job's validation gives such a seed.
    let seed = req.seed.map(|s| wire_int("seed", s)).transpose().map_err(|e| OpenAiError::from(ApiError::from(e)))?;
    Ok(image::ImageRequest {
        prompt: Some(req.prompt.clone()),
        model: Some(model),
        n: Some(i64::from(req.n.unwrap_or(1))),
        width: size.map(|(w, _)| i64::from(w)),
        height: size.map(|(_, h)| i64::from(h)),
        preset,
        negative_prompt: req.negative_prompt.clone(),
        seed,
        steps: req.steps.map(i64::from),
        // Step previews serve only a stream's partial images; otherwise each would be one
        // more stored artifact in the job's list and the dashboard, and nobody reads it.
        preview_every: (!(req.stream && req.partial_images.unwrap_or(0) > 0)).then_some(0),
        ..image::ImageRequest::default()
    })
}

/// Renames the `image` kind's field names to the OpenAI request's.
fn openai_param(field: &str) -> &str {
    match field {
        "width" | "height" => "size",
        "preset" => "quality",
        "init_image" => "image",
        other => other,
    }
}

/// Generate pictures (OpenAI-compatible).
#[utoipa::path(post, path = "/v1/images/generations", request_body = ImageRequest, tag = "openai",
    responses((status = 200, description = "the pictures; with `stream: true` server-sent events",
            content((ImagesResponse = "application/json"), (crate::api::openapi::ServerSentEvent = "text/event-stream"))),
        (status = 400, body = super::error::OpenAiErrorBody), (status = 404, body = super::error::OpenAiErrorBody)))]
pub async fn generations(
    State(state): State<AppState>,
    caller: super::OpenAiCaller,
    headers: HeaderMap,
    body: Result<ApiBytes, ApiError>,
) -> Result<Response, OpenAiError> {
    let caller = caller.0?;
    let req: ImageRequest = parse_body(&body?.0)?;
    let answer = Answer::of(&req)?;
    let params = image_params(&state.config, &req)?;
    respond(state, &caller, &headers, params, answer, req.stream).await
}

/// Queues the `image` job and answers its pictures as JSON, or as events when `streamed`.
pub async fn respond(
    state: AppState,
    caller: &Caller,
    headers: &HeaderMap,
    params: image::ImageRequest,
    answer: Answer,
    streamed: bool,
) -> Result<Response, OpenAiError> {
    let params =
        serde_json::to_value(params).map_err(|e| OpenAiError::internal(format!("cannot encode params: {e}")))?;
    let waiting = submit(&state, caller, "image", params, is_retry(headers)).await.map_err(|mut e| {
        if let Some(p) = e.param.as_deref() {
            e.param = Some(openai_param(p).to_string());
        }
        e
    })?;
    let id = waiting.id();
    let mut resp = if streamed {
        stream(move |events| stream_pictures(state, waiting, answer, events)).into_response()
    } else {
        answer_pictures(&state, headers, caller.key_id, waiting, &answer).await?
    };
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert(JOB_HEADER, v);
    }
    Ok(resp)
}

/// The finished pictures of a job that ended (an error unless it succeeded).
fn pictures(state: &AppState, job: Job) -> Result<(Job, Vec<Artifact>), OpenAiError> {
    if !matches!(job.state, JobState::Succeeded { .. }) {
        return Err(job_failure(&job));
    }
    let images = final_images(&state.store, &job).map_err(|e| OpenAiError::internal(e.to_string()))?;
    if images.is_empty() {
        return Err(OpenAiError::internal(format!("job {} finished without pictures", job.id)));
    }
    Ok((job, images))
}

/// The pictures as one JSON answer; their links are shared by `key`, the caller's.
async fn answer_pictures(
    state: &AppState,
    headers: &HeaderMap,
    key: Option<ulid::Ulid>,
    waiting: Waiting,
    answer: &Answer,
) -> Result<Response, OpenAiError> {
    let (job, images) = pictures(state, waiting.finish().await?)?;
    let base = base_url(headers, &state.config);
    // Like OpenAI's, a link works without a key for a while (an `<img src>`, a chat UI),
    // while the key that asked for it stands.
    let lifetime_s = state.config.openai.image_url_lifetime_s;
    let mut data = Vec::with_capacity(images.len());
    for a in images {
        let item = match answer.format {
            ResponseFormat::Url => ImageData {
                b64_json: None,
                url: Some(format!("{base}{}", state.links.path_for(a.id, key, lifetime_s))),
                revised_prompt: None,
            },
            ResponseFormat::B64 => {
                let b64 = b64(read_artifact(state, &a).await?, answer.output, answer.compression).await?;
                ImageData { b64_json: Some(b64), url: None, revised_prompt: None }
            }
        };
        data.push(item);
    }
    let d = describe(&job, answer.quality.as_deref(), answer.output);
    let body = ImagesResponse {
        created: chrono::Utc::now().timestamp(),
        data,
        size: d.size,
        quality: d.quality,
        output_format: d.output_format.into(),
        background: d.background.into(),
        usage: Usage::default(),
    };
    Ok(Json(body).into_response())
}

/// The pictures as OpenAI's image stream: step previews as partial images (as many as
/// asked), then one `image_generation.completed` event per picture.
async fn stream_pictures(
    state: AppState,
    mut waiting: Waiting,
    answer: Answer,
    events: Events,
) -> Result<(), OpenAiError> {
    let event = |kind: &str, b64: String, job: Option<&Job>| {
        let d = job.map(|j| describe(j, answer.quality.as_deref(), answer.output));
        json!({
            "type": kind, "b64_json": b64, "created_at": chrono::Utc::now().timestamp(),
            "size": d.as_ref().and_then(|d| d.size.clone()).unwrap_or_else(|| "auto".into()),
            "quality": d.as_ref().and_then(|d| d.quality.clone()).or_else(|| answer.quality.clone())
                .unwrap_or_else(|| "auto".into()),
            "output_format": answer.output.name(), "background": "opaque",
        })
    };
    let mut partials = 0;
    let job = loop {
        match waiting.next().await? {
            Progress::Preview(id) if partials < answer.partial_images => {
                let Ok(Some(a)) = state.store.artifact(id) else { continue };
                if !is_preview(&a) {
                    continue;
                }
                let mut e = event(
                    &format!("{}.partial_image", answer.events),
                    b64(read_artifact(&state, &a).await?, answer.output, answer.compression).await?,
                    None,
                );
                e["partial_image_index"] = json!(partials);
                if !events.send(e).await {
                    return Ok(());
                }
                partials += 1;
            }
            Progress::Preview(_) => {}
            Progress::Done(job) => break job,
        }
    };
    let (job, images) = pictures(&state, job)?;
    for a in images {
        let mut e = event(
            &format!("{}.completed", answer.events),
            b64(read_artifact(&state, &a).await?, answer.output, answer.compression).await?,
            Some(&job),
        );
        e["usage"] = json!(Usage::default());
        if !events.send(e).await {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_name_the_size_param() {
        assert_eq!(parse_size("512x384", 2048).expect("ok"), Some((512, 384)));
        assert_eq!(parse_size("auto", 2048).expect("ok"), None);
        for bad in ["512", "axb", "0x512", "513x512", "4096x4096", "512x-8", ""] {
            let e = parse_size(bad, 2048).expect_err(bad);
            assert_eq!(e.param.as_deref(), Some("size"), "{bad}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn quality_maps_onto_presets() {
        assert_eq!(quality_preset("hd").expect("ok"), Some("max"));
        assert_eq!(quality_preset("standard").expect("ok"), Some("quality"));
        assert_eq!(quality_preset("low").expect("ok"), Some("fast"));
        assert_eq!(quality_preset("auto").expect("ok"), None);
        assert!(quality_preset("ultra").is_err());
    }
}
