//! The self-check of a converted Stable Diffusion (1.x/2.x or SDXL): one UNet step on the converter's
//! random inputs, the check prompt's conditioning one text encoder layer short of the model's
//! own (clip skip), and a full image at the converter's fixed seed through reelbox's own
//! pipeline ([`generate`]), each against what PyTorch/diffusers gave.

use std::time::Duration;

use serde::Deserialize;

use super::{ImportError, SelfCheck, max_abs_diff};
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::models::convert::Conversion;
use crate::pipelines::diffusion::onnx::{float_input, timestep_input};
use crate::pipelines::diffusion::{
    DiffusionError, GenerateRequest, Hooks, ReplayNoise, SchedulerChoice, SdModel, generate, prompt_embeddings,
};

/// The parts whose sessions the check opens (forgotten before the files move).
pub const PARTS: [&str; 5] = ["text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder"];

/// What the converter ran through diffusers (its RESULT's `details.check`).
#[derive(Debug, Deserialize)]
struct Recipe {
    prompt: String,
    steps: u32,
    guidance: f32,
    size: u32,
    scheduler: String,
    timestep: f64,
}

/// Compares the staged model with the converter's references; the larger of the two
/// differences is the check's result.
pub fn check(engine: &Engine, device: DeviceId, conv: &Conversion, tolerance: f32) -> Result<SelfCheck, ImportError> {
    let refused = |reason: String| ImportError::Refused { input: conv.request.input.clone(), reason };
    let recipe: Recipe = conv
        .result
        .details
        .get("check")
        .cloned()
        .ok_or_else(|| refused("the converter described no self-check".into()))
        .and_then(|v| {
            serde_json::from_value(v).map_err(|e| refused(format!("the converter's self-check recipe: {e}")))
        })?;
    let model = SdModel::load(conv.staging(), engine, device)?;

    let (sample, sample_shape) = conv.tensor("unet_sample")?;
    let (hidden, hidden_shape) = conv.tensor("unet_hidden")?;
    let (unet_expected, _) = conv.tensor("unet_expected")?;
    let batch = sample_shape.first().copied().unwrap_or(1);
    let mut feeds = vec![
        float_input(&model.unet.sample, sample_shape, &sample)?,
        timestep_input(&model.unet.timestep, recipe.timestep, batch)?,
        float_input(&model.unet.hidden, hidden_shape, &hidden)?,
    ];
    // SDXL's added conditioning, on the converter's inputs too.
    let added: Vec<_> = [(&model.unet.text_embeds, "unet_text_embeds"), (&model.unet.time_ids, "unet_time_ids")]
        .into_iter()
        .filter_map(|(info, name)| info.as_ref().map(|info| conv.tensor(name).map(|t| (info, t))))
        .collect::<Result<_, _>>()?;
    for (info, (values, shape)) in &added {
        feeds.push(float_input(info, shape.clone(), values)?);
    }
    let mut clock = Duration::ZERO;
    let outs = model.unet.part.run(feeds, &mut clock)?;
    let unet_got = outs.get(model.unet.output).ok_or_else(|| refused("the exported UNet gave no output".into()))?;
    let unet_diff = max_abs_diff(&unet_expected, &unet_got.data).ok_or_else(|| {
        refused(format!("the UNet gave {} values, PyTorch {}", unet_got.data.len(), unet_expected.len()))
    })?;

    // Clip skip: the prompt read one layer short of the model's own, as PyTorch reads it;
    // not where no layer is left before (a test model's text encoder of two layers).
    let (skip_expected, _) = conv.tensor("clip_skip_expected")?;
    let skip = model.info.family.own_clip_skip() + 1;
    // (By its encoder's depth: the staged model's conversion.json, which says it gives every
    // layer, is written after this check.)
    let skip_diff = if model.info.text_layers.is_some_and(|layers| layers < skip) {
        None
    } else {
        let got = prompt_embeddings(&model, &recipe.prompt, Some(skip))?;
        Some(max_abs_diff(&skip_expected, &got).ok_or_else(|| {
            refused(format!("clip skip {skip} gave {} values, PyTorch {}", got.len(), skip_expected.len()))
        })?)
    };

    let (latents, _) = conv.tensor("latents")?;
    let (image_expected, _) = conv.tensor("image_expected")?;
    let req = GenerateRequest {
        prompt: recipe.prompt,
        negative_prompt: Some(String::new()),
        width: recipe.size,
        height: recipe.size,
        steps: recipe.steps,
        steps_mode: crate::pipelines::diffusion::StepsMode::Schedule,
        guidance: recipe.guidance,
        scheduler: SchedulerChoice::parse(&recipe.scheduler).map_err(DiffusionError::from)?,
        scheduler_config: None,
        count: 1,
        init: None,
        max_side: recipe.size.max(64),
        stop_at: None,
        clip_skip: None,
        first_pass_steps: None,
        embeddings: Vec::new(),
    };
    let out = generate(&model, &req, &mut ReplayNoise::new(Vec::new()), Some(&latents), &Hooks::default())?;
    let image = out.images.first().ok_or_else(|| refused("reelbox's pipeline made no image".into()))?;
    let image_diff = max_abs_diff(&image_expected, &image.data).ok_or_else(|| {
        refused(format!("the image has {} values, diffusers' {}", image.data.len(), image_expected.len()))
    })?;
    let diffs = [Some(unet_diff), skip_diff, Some(image_diff)];
    let worst =
        diffs.into_iter().flatten().fold(0.0_f32, |w, d| if w.is_nan() || d.is_nan() { f32::NAN } else { w.max(d) });
    let skipped = match skip_diff {
        Some(d) => format!("the prompt at clip skip {skip} (difference {d:e})"),
        None => format!("not the prompt at clip skip {skip} (its text encoder has fewer layers)"),
    };
    Ok(SelfCheck {
        compared: format!(
            "one UNet step (difference {unet_diff:e}), {skipped} and a {}-step {}x{} image at a fixed seed \
             (difference {image_diff:e})",
            recipe.steps, recipe.size, recipe.size
        ),
        max_abs_diff: worst,
        tolerance,
    })
}
