//! An A1111 request as the native `image` job it runs as: its fields mapped onto the job's
//! ([`generation`]), the hires fix onto the job's `refine` ([`hires`]), and a refusal of the
//! job's back onto the request's own field names ([`request_field`]).

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::config::Config;
use crate::kinds::box_models;
use crate::kinds::image::{self, MAX_IMAGES, NO_SCHEDULE, RefineRequest};
use crate::kinds::resize::ResizeRequest;
use crate::models::{Catalog, ModelKind};
use crate::pipelines::diffusion::Family;
use crate::pipelines::diffusion::output::{LATENT_MODES, PICTURE_MODES};

use super::error::A1111Error;
use super::request::{Generation, Txt2Img};
use super::sampler::{self, FIRST_PASS, Fields};

/// The hires fix's fields, as its refusals name them.
const HIRES: Fields = Fields { sampler: "hr_sampler_name", schedule: "hr_scheduler" };
/// A1111's default hires-fix upscaler (its `hires_fix_upscaler` option).
const DEFAULT_UPSCALER: &str = "Latent";
/// A native field of the `image` job named as an A1111 request names it.
pub fn request_field(native: &str) -> String {
    let named = match native {
        "guidance" | "refine.guidance" => "cfg_scale",
        "n" => "batch_size",
        "model" => "override_settings.sd_model_checkpoint",
        "scheduler" => "sampler_name",
        "init_image" => "init_images",
        "strength" | "refine.strength" => "denoising_strength",
        "refine" | "refine.from" => "enable_hr",
        "refine.steps" | "refine.steps_mode" => "hr_second_pass_steps",
        "refine.scheduler" => "hr_sampler_name",
        "refine.schedule" => "hr_scheduler",
        "refine.upscale_model" => "hr_upscaler",
        "refine.model" => "hr_checkpoint_name",
        "refine.prompt" => "hr_prompt",
        "refine.negative_prompt" => "hr_negative_prompt",
        "refine.seed" => "seed",
        "refine.switch_at" | "refine.switch_at_step" => "refiner_switch_at",
        "clip_skip" => "override_settings.CLIP_stop_at_last_layers",
        f if f.starts_with("refine.resize") => "hr_scale",
        other => other,
    };
    named.to_string()
}

/// A native field as a request with a refiner names it: its model is `refiner_checkpoint`.
pub fn refiner_field(native: &str) -> String {
    match native {
        "refine.model" => "refiner_checkpoint".to_string(),
        other => request_field(other),
    }
}

/// A native refusal's words for what to send instead, in the words of A1111's request: its
/// second pass starts from the latent or the picture by its `hr_upscaler`, not by a `from`.
const REMEDIES: [(&str, &str); 2] = [
    ("\"from\": \"picture\"", "a picture upscaler for hr_upscaler (Lanczos, Nearest or an upscale model)"),
    ("\"from\": \"latent\"", "a Latent hr_upscaler"),
];

/// A native refusal's message as an A1111 client can act on it ([`REMEDIES`]).
pub fn request_words(message: &str) -> String {
    REMEDIES.iter().fold(message.to_string(), |m, (native, a1111)| m.replace(native, a1111))
}

/// The installed diffusion model `asked` names: its name, or its A1111 title (`name [hash]`,
/// a file name with `.safetensors`/`.ckpt`), as `sd-models` lists it, else, as A1111 picks a
/// checkpoint, its file's hash (sha256, shorthash or old hash; alone or a title's, a picture's
/// `Model hash` from PNG Info), [`Checkpoints::by_hash`](crate::models::convert::fused::Checkpoints::by_hash),
/// among this box's models and on a head its live boxes' ([`box_models::checkpoints`]). 404 naming `field`.
pub fn model_named(config: &Config, asked: &str, field: &str) -> Result<String, A1111Error> {
    let text = asked.trim();
    let (name, hash) = match text.rsplit_once(" [") {
        Some((name, hash)) if hash.ends_with(']') => (name, hash.strip_suffix(']')),
        _ => (text, None),
    };
    let candidates = [name, name.trim_end_matches(".safetensors").trim_end_matches(".ckpt")];
    let installed = |n: &str| {
        Catalog::installed_dir_of(config, ModelKind::Diffusion, n).is_some() || box_models::has(ModelKind::Diffusion, n)
    };
    if let Some(found) = candidates.into_iter().find(|n| installed(n)) {
        return Ok(found.to_string());
    }
    let checkpoints = box_models::checkpoints(&Catalog::load(config));
    let by_hash = [Some(text), hash].into_iter().flatten().find_map(|h| checkpoints.by_hash(h));
    by_hash.map(|c| c.name.clone()).ok_or_else(|| {
        A1111Error::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("{field}: {asked:?} is not an installed diffusion model; see GET /sdapi/v1/sd-models"),
        )
    })
}

/// A hires-fix choice that is its own: "Use same sampler" / "Use same scheduler" / "Use same
/// checkpoint" (`same`), and none, are the first pass's.
fn own<'a>(v: Option<&'a str>, same: &str) -> Option<&'a str> {
    v.map(str::trim).filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case(same))
}

/// A whole number of at least `min`, or a refusal naming `field`.
fn at_least(field: &str, v: Option<i64>, min: i64) -> Result<Option<i64>, A1111Error> {
    match v {
        Some(n) if n < min => Err(A1111Error::field(field, format!("must be at least {min}, got {n}"))),
        other => Ok(other),
    }
}

/// The `image` job of what both routes take (no init picture, no hires fix yet).
pub fn generation(state: &AppState, g: &Generation) -> Result<image::ImageRequest, A1111Error> {
    if g.prompt.trim().is_empty() {
        return Err(A1111Error::field("prompt", "required: reelbox draws from words, and this prompt has none"));
    }
    let seed = match g.seed {
        None | Some(-1) => None,
        Some(s) if s < -1 => return Err(A1111Error::field("seed", format!("must be -1 (random) or more, got {s}"))),
        Some(s) => Some(s),
    };
    let batch = at_least("batch_size", g.batch_size, 1)?.unwrap_or(1);
    let iterations = at_least("n_iter", g.n_iter, 1)?.unwrap_or(1);
    let n = batch.saturating_mul(iterations);
    if n > MAX_IMAGES {
        return Err(A1111Error::field(
            "batch_size",
            format!("batch_size × n_iter is {n}; reelbox makes at most {MAX_IMAGES} pictures a request"),
        ));
    }
    let model = match g.override_settings.as_ref().and_then(|o| o.get("sd_model_checkpoint")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(m)) => {
            Some(model_named(&state.config, m, "override_settings.sd_model_checkpoint")?)
        }
        Some(other) => {
            return Err(A1111Error::field(
                "override_settings.sd_model_checkpoint",
                format!("must be a model's name or title, got {other}"),
            ));
        }
    };
    let sampler = g.sampler_name.as_deref().or(g.sampler_index.as_deref());
    let sampling = sampler::native(sampler, g.scheduler.as_deref(), FIRST_PASS)?;
    Ok(image::ImageRequest {
        prompt: Some(g.prompt.clone()),
        negative_prompt: Some(g.negative_prompt.clone()).filter(|n| !n.trim().is_empty()),
        model,
        width: g.width,
        height: g.height,
        steps: g.steps,
        guidance: g.cfg_scale,
        scheduler: sampling.scheduler.map(str::to_string),
        schedule: sampling.schedule.map(str::to_string),
        // Its k-diffusion samplers' arithmetic: σ₀·noise, the fractional timestep of each σ.
        sample_as: Some("a1111".into()),
        seed,
        n: Some(n),
        // A1111's "CPU" RNG source: each picture's noise as torch.manual_seed(seed) draws it.
        noise: Some("torch_cpu".into()),
        // Nothing reads step previews here (`/progress` answers no current image).
        preview_every: Some(0),
        ..image::ImageRequest::default()
    })
}

/// The model `params` draws with: its own, else `caller`'s default.
fn drawing(state: &AppState, caller: &Caller, params: &image::ImageRequest) -> Option<String> {
    params.model.clone().or_else(|| super::info::current(state, caller))
}

/// A1111's "Clip skip" setting, `CLIP_stop_at_last_layers`, as sent under `field`: a whole
/// number from 1 to 12 (its slider's range), or a refusal naming `field`.
pub fn stop_at_last_layers(v: &serde_json::Value, field: &str) -> Result<u32, A1111Error> {
    v.as_f64()
        .filter(|f| f.fract() == 0.0 && (1.0..=12.0).contains(f))
        .map(|f| f as u32)
        .ok_or_else(|| A1111Error::field(field, format!("must be a whole number from 1 to 12, got {v}")))
}

/// A1111's "Clip skip" (`override_settings.CLIP_stop_at_last_layers`, else what the caller set
/// through `options`) as the job's `clip_skip`, where A1111 reads it: on SD 1.x/2.x models,
/// not SDXL's (its SDXL text encoders leave the setting be); 1, the model's own, as none (so
/// models that give their last layer only draw as they do).
pub fn clip_skip(
    state: &AppState,
    caller: &Caller,
    g: &Generation,
    params: &image::ImageRequest,
) -> Result<Option<i64>, A1111Error> {
    let skip = match g.override_settings.as_ref().and_then(|o| o.get("CLIP_stop_at_last_layers")) {
        None | Some(serde_json::Value::Null) => super::info::clip_skip_set(state, caller),
        Some(v) => stop_at_last_layers(v, "override_settings.CLIP_stop_at_last_layers")?,
    };
    let family = drawing(state, caller, params)
        .and_then(|m| image::diffusion_model("model", &m, &state.config).ok())
        .map(|i| i.family);
    Ok((skip > 1 && family == Some(Family::Sd)).then_some(i64::from(skip)))
}

/// A1111's refiner (`refiner_checkpoint`, `refiner_switch_at`) as the job's base → refiner
/// split, `refine.switch_at` (its step worked out on the first pass's schedule by A1111's own
/// rule, `samplers::a1111_switch_step`) going on with the first pass's sampler run
/// (`refine.continue: run`), as A1111 swaps the model inside its one run. Where A1111 swaps before the first step (no
/// `refiner_switch_at`, or 0) the refiner is the job's `model`; none where it never swaps (1,
/// or a refiner that is the model drawing: `params`' own, else `caller`'s default, as A1111
/// runs none and writes none into the pictures' text), nor for `None` or empty.
pub fn refiner(
    state: &AppState,
    caller: &Caller,
    g: &Generation,
    params: &mut image::ImageRequest,
) -> Result<Option<RefineRequest>, A1111Error> {
    let asked = g.refiner_checkpoint.as_deref().map(str::trim);
    let Some(name) = asked.filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("none")) else {
        return Ok(None);
    };
    let model = model_named(&state.config, name, "refiner_checkpoint")?;
    if drawing(state, caller, params).as_deref() == Some(model.as_str()) {
        return Ok(None);
    }
    match g.refiner_switch_at {
        Some(at) if !(at.is_finite() && (0.0..=1.0).contains(&at)) => {
            Err(A1111Error::field("refiner_switch_at", format!("must be 0 to 1, got {at}")))
        }
        Some(at) if at >= 1.0 => Ok(None),
        Some(at) if at > 0.0 => {
            // One sampler run goes on across the swap, its history and step noise with it.
            let continues = Some("run".to_string());
            Ok(Some(RefineRequest { model: Some(model), switch_at: Some(at), continues, ..RefineRequest::default() }))
        }
        _ => {
            params.model = Some(model);
            Ok(None)
        }
    }
}

/// The hires fix of a txt2img request as the job's `refine` (`None` without `enable_hr`).
pub fn hires(config: &Config, req: &Txt2Img) -> Result<Option<RefineRequest>, A1111Error> {
    if req.enable_hr != Some(true) {
        return Ok(None);
    }
    let upscaler = req.hr_upscaler.as_deref().map(str::trim).filter(|u| !u.is_empty()).unwrap_or(DEFAULT_UPSCALER);
    let latent = LATENT_MODES.iter().find(|m| m.name.eq_ignore_ascii_case(upscaler));
    let picture = PICTURE_MODES.iter().find(|m| m.name.eq_ignore_ascii_case(upscaler));
    let (from, method, upscale_model) = match (latent, picture) {
        (Some(m), _) => ("latent", m.method, None),
        (None, Some(m)) => ("picture", m.method, None),
        (None, None) if Catalog::installed_dir_of(config, ModelKind::Upscale, upscaler).is_some() => {
            ("picture", "lanczos", Some(upscaler.to_string()))
        }
        (None, None) => {
            return Err(A1111Error::field(
                "hr_upscaler",
                format!("{upscaler:?} is not an upscaler reelbox has; see GET /sdapi/v1/upscalers"),
            ));
        }
    };
    let (x, y) = (at_least("hr_resize_x", req.hr_resize_x, 0)?, at_least("hr_resize_y", req.hr_resize_y, 0)?);
    let (x, y) = (x.unwrap_or(0), y.unwrap_or(0));
    let resize = if x > 0 || y > 0 {
        // A1111 scales to cover the size asked, then cuts the middle: ImageScale's center crop.
        ResizeRequest { width: Some(x), height: Some(y), crop: Some("center".into()), ..ResizeRequest::default() }
    } else {
        let scale = req.hr_scale.unwrap_or(2.0);
        if !(scale.is_finite() && scale > 0.0) {
            return Err(A1111Error::field("hr_scale", format!("must be more than 0, got {scale}")));
        }
        let g = &req.generation;
        match (g.width, g.height, &upscale_model) {
            // As A1111 works the size out: each side times the scale, cut down to whole pixels.
            (Some(w), Some(h), _) => ResizeRequest {
                width: Some((w as f64 * scale) as i64),
                height: Some((h as f64 * scale) as i64),
                ..ResizeRequest::default()
            },
            (_, _, None) => ResizeRequest { scale_by: Some(scale), ..ResizeRequest::default() },
            (_, _, Some(_)) => {
                return Err(A1111Error::field(
                    "width",
                    "the hires fix through an upscale model needs width and height sent, to scale them by hr_scale",
                ));
            }
        }
    };
    let steps = match at_least("hr_second_pass_steps", req.hr_second_pass_steps, 0)? {
        None | Some(0) => None,
        steps => steps,
    };
    let g = &req.generation;
    let hr_sampler = own(req.hr_sampler_name.as_deref(), "Use same sampler");
    let hr_schedule = own(req.hr_scheduler.as_deref(), "Use same scheduler");
    // Neither its own: the first pass's sampler over the first pass's schedule. Its own
    // sampler that reads no schedule (DDIM, PLMS) samples over none, not the first pass's.
    let sampling = if hr_sampler.is_some() || hr_schedule.is_some() {
        let first = g.sampler_name.as_deref().or(g.sampler_index.as_deref());
        let schedule = hr_schedule.or(g.scheduler.as_deref());
        match sampler::native(hr_sampler.or(first), schedule, HIRES)? {
            sampler::Sampling { scheduler: Some(s), schedule: None } => {
                sampler::Sampling { scheduler: Some(s), schedule: Some(NO_SCHEDULE) }
            }
            sampling => sampling,
        }
    } else {
        sampler::Sampling { scheduler: None, schedule: None }
    };
    let checkpoint = own(req.hr_checkpoint_name.as_deref(), "Use same checkpoint")
        .map(|c| model_named(config, c, "hr_checkpoint_name"))
        .transpose()?;
    let text = |t: &Option<String>| t.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
    Ok(Some(RefineRequest {
        from: Some(from.to_string()),
        model: checkpoint,
        upscale_model,
        resize: Some(ResizeRequest { method: Some(method.to_string()), ..resize }),
        strength: Some(req.denoising_strength.unwrap_or(0.75)),
        steps,
        // A1111's hires pass always runs its steps (`hr_second_pass_steps`, else the first
        // pass's) over the last of a ⌊steps ÷ strength⌋-step schedule: `sample_img2img` is
        // given them, and `setup_img2img_steps` counts so when it is.
        steps_mode: Some("run".to_string()),
        scheduler: sampling.scheduler.map(str::to_string),
        schedule: sampling.schedule.map(str::to_string),
        prompt: text(&req.hr_prompt),
        negative_prompt: text(&req.hr_negative_prompt),
        ..RefineRequest::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_fields_are_named_as_the_request_names_them() {
        assert_eq!(request_field("guidance"), "cfg_scale");
        assert_eq!(request_field("refine.resize.width"), "hr_scale");
        assert_eq!(request_field("width"), "width");
    }

    #[test]
    fn the_hires_fix_becomes_a_refine_of_the_same_scale() {
        let config = Config::default();
        let mut req = Txt2Img { enable_hr: Some(true), ..Txt2Img::default() };
        req.generation.width = Some(100);
        req.generation.height = Some(64);
        req.hr_scale = Some(1.5);
        let refine = hires(&config, &req).expect("ok").expect("a refine");
        assert_eq!(refine.from.as_deref(), Some("latent"));
        let resize = refine.resize.expect("a resize");
        assert_eq!((resize.width, resize.height, resize.method.as_deref()), (Some(150), Some(96), Some("bilinear")));
        assert_eq!(refine.strength, Some(0.75));
        req.hr_upscaler = Some("Lanczos".into());
        req.hr_resize_x = Some(128);
        let refine = hires(&config, &req).expect("ok").expect("a refine");
        let resize = refine.resize.expect("a resize");
        assert_eq!((resize.width, resize.height, resize.crop.as_deref()), (Some(128), Some(0), Some("center")));
        req.hr_upscaler = Some("4x-Nonesuch".into());
        assert!(hires(&config, &req).is_err_and(|e| e.detail.starts_with("hr_upscaler:")));
        req.enable_hr = None;
        assert_eq!(hires(&config, &req).expect("ok"), None);
    }

    #[test]
    fn the_hires_schedule_is_the_second_passs_own() {
        let config = Config::default();
        let mut req = Txt2Img { enable_hr: Some(true), ..Txt2Img::default() };
        req.generation.sampler_name = Some("Euler a".into());
        req.generation.scheduler = Some("Normal".into());
        let sampling = |req: &Txt2Img| {
            let refine = hires(&config, req).expect("ok").expect("a refine");
            (refine.scheduler, refine.schedule)
        };
        assert_eq!(sampling(&req), (None, None), "the first pass's, left to the job");
        req.hr_scheduler = Some("Use same scheduler".into());
        assert_eq!(sampling(&req), (None, None));
        req.hr_scheduler = Some("Karras".into());
        assert_eq!(sampling(&req), (Some("euler_a".into()), Some("karras".into())));
        req.hr_sampler_name = Some("DPM++ 2M".into());
        req.hr_scheduler = Some("Use same scheduler".into());
        assert_eq!(sampling(&req), (Some("dpmpp_2m".into()), Some("normal".into())), "the first pass's schedule");
        // A1111's DDIM and PLMS read no schedule: the second pass samples over none.
        req.hr_sampler_name = Some("DDIM".into());
        req.generation.scheduler = Some("Karras".into());
        assert_eq!(sampling(&req), (Some("ddim".into()), Some("none".into())), "not the first pass's Karras");
        req.hr_sampler_name = Some("PLMS".into());
        assert_eq!(sampling(&req), (Some("pndm".into()), Some("none".into())));
        req.hr_sampler_name = Some("DPM++ 2M".into());
        req.hr_scheduler = Some("Beta".into());
        assert!(hires(&config, &req).is_err_and(|e| e.detail.starts_with("hr_scheduler:")));
        assert_eq!(request_field("refine.schedule"), "hr_scheduler");
    }
}
